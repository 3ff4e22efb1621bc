package fds

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// deepDir makes directories under a fresh temporary directory until the
// path is longer than PATH_MAX and returns it, opened, with its path.
func deepDir(t *testing.T) (int, string) {
	t.Helper()
	top, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cur, err := unix.Open(top, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	path := top
	for i := 0; len(path) < kernel.PathMax+100; i++ {
		name := strings.Repeat(string(rune('a'+i%26)), 200)
		if err := unix.Mkdirat(cur, name, 0o755); err != nil {
			t.Fatal(err)
		}
		next, err := unix.Openat(cur, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		unix.Close(cur)
		if err != nil {
			t.Fatal(err)
		}
		cur, path = next, path+"/"+name
	}
	t.Cleanup(func() { unix.Close(cur); os.RemoveAll(top) })
	return cur, path
}

func TestFDLinkLong(t *testing.T) {
	dir, path := deepDir(t)
	file, err := unix.Openat(dir, "f", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(file)
	sub, err := unix.Openat(dir, ".", unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sub)
	// A file in a directory nobody holds open.
	if err := unix.Mkdirat(dir, "x", 0o755); err != nil {
		t.Fatal(err)
	}
	lone, err := unix.Openat(dir, "x/g", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(lone)
	gone, err := unix.Openat(dir, "h", unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(gone)
	if err := unix.Unlinkat(dir, "h", 0); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		fd      int
		want    string
		wantErr string
	}{
		{"directory", dir, path, ""},
		{"O_PATH directory", sub, path, ""},
		{"file in a directory held open", file, path + "/f", ""},
		{"file in no directory held open", lone, "", "not directly in the working directory"},
		{"removed file", gone, "", "removed regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := fdLink(os.Getpid(), tt.fd)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("got %d bytes, want %d", len(got), len(tt.want))
			}
		})
	}
}
