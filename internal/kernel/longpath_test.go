package kernel

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSplitLongPath(t *testing.T) {
	tests := []struct {
		name, path string
		max        int
		want       []string
		wantErr    bool
	}{
		{"short", "/a/b", 10, []string{"/a/b"}, false},
		{"cut", "/aaa/bbb/ccc", 6, []string{"/aaa", "bbb", "ccc"}, false},
		{"several per piece", "/a/b/c/d/e/f", 6, []string{"/a/b", "c/d/e", "f"}, false},
		{"relative", "aaa/bbb/ccc", 8, []string{"aaa/bbb", "ccc"}, false},
		{"trailing slash", "/aaa/bbb/", 6, []string{"/aaa", "bbb/"}, false},
		{"double slash", "/aaa//bbb/ccc", 7, []string{"/aaa/", "bbb", "ccc"}, false},
		{"component too long", "/abcdefgh/x", 6, nil, true},
		{"relative component too long", "abcdefgh/x", 6, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SplitLongPath(tt.path, tt.max)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			for _, p := range got {
				if len(p) >= tt.max {
					t.Errorf("piece %q is not shorter than %d", p, tt.max)
				}
			}
		})
	}
}

// dirent64 encodes one struct linux_dirent64 padded to 8 bytes.
func dirent64(ino uint64, typ uint8, name string) []byte {
	n := (19 + len(name) + 1 + 7) &^ 7
	b := make([]byte, n)
	binary.LittleEndian.PutUint64(b[0:], ino)
	binary.LittleEndian.PutUint64(b[8:], 1)
	binary.LittleEndian.PutUint16(b[16:], uint16(n))
	b[18] = typ
	copy(b[19:], name)
	return b
}

func TestParseDirents(t *testing.T) {
	tests := []struct {
		name    string
		buf     []byte
		want    []Dirent
		wantErr bool
	}{
		{"empty", nil, nil, false},
		{"two", append(dirent64(2, unix.DT_DIR, "."), dirent64(77, unix.DT_REG, "file.txt")...),
			[]Dirent{{2, unix.DT_DIR, "."}, {77, unix.DT_REG, "file.txt"}}, false},
		{"truncated header", dirent64(5, unix.DT_REG, "x")[:10], nil, true},
		{"record longer than buffer", dirent64(5, unix.DT_REG, "abcdef")[:22], nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseDirents(tt.buf)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err %v, want error %v", err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestJoinReversed(t *testing.T) {
	tests := []struct {
		names []string
		want  string
	}{
		{nil, "/"},
		{[]string{"a"}, "/a"},
		{[]string{"c", "b", "a"}, "/a/b/c"},
	}
	for _, tt := range tests {
		if got := JoinReversed(tt.names); got != tt.want {
			t.Errorf("JoinReversed(%q) = %q, want %q", tt.names, got, tt.want)
		}
	}
}

// TestDirPathLong makes a directory deeper than PATH_MAX, finds its path
// back from an fd with DirPath and opens a file there with OpenLong.
func TestDirPathLong(t *testing.T) {
	top, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tfd, err := unix.Open(top, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	cur, want := tfd, top
	for i := range 24 {
		name := strings.Repeat(string(rune('a'+i)), 200)
		if err := unix.Mkdirat(cur, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(cur, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(cur)
		cur, want = next, want+"/"+name
	}
	defer unix.Close(cur)
	t.Cleanup(func() { os.RemoveAll(top) })
	if len(want) < PathMax {
		t.Fatalf("test path only %d bytes", len(want))
	}
	if _, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(cur)); err == nil {
		t.Log("readlink gave a path longer than PATH_MAX (no ENAMETOOLONG)")
	}
	got, err := DirPath(cur)
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("DirPath: %d bytes, want %d (%.80q...)", len(got), len(want), got)
	}
	ffd, err := unix.Openat(cur, "f", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	var a, b unix.Stat_t
	unix.Fstat(ffd, &a)
	unix.Close(ffd)
	fd, err := OpenLong(want+"/f", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	unix.Fstat(fd, &b)
	if a.Ino != b.Ino || a.Dev != b.Dev {
		t.Fatalf("OpenLong opened inode %d, want %d", b.Ino, a.Ino)
	}
	if name, err := FindEntry(cur, a.Dev, a.Ino); err != nil || name != "f" {
		t.Fatalf("FindEntry = %q, %v; want f", name, err)
	}
}
