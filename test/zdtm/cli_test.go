package zdtm

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRestoreTruncatedImage: every file of a good image cut in half;
// restore must fail and say "truncated".
func TestRestoreTruncatedImage(t *testing.T) {
	badImage(t, "truncated", func(path string, size int64) error {
		return os.Truncate(path, size/2)
	})
}

// TestRestoreCorruptedImage: one byte flipped in the middle of every file
// of a good image (past a 64-byte header where there is room); restore must
// fail and say "checksum".
func TestRestoreCorruptedImage(t *testing.T) {
	badImage(t, "checksum", func(path string, size int64) error {
		if size == 0 {
			return nil
		}
		off := size / 2
		if size > 130 && off < 64 {
			off = 64
		}
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return err
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			return err
		}
		b[0] ^= 0x5a
		_, err = f.WriteAt(b, off)
		return err
	})
}

// badImage dumps mem_anon, damages a copy of the image with damage, and
// requires `ferry restore` of it to fail with want in its error.
func badImage(t *testing.T, want string, damage func(path string, size int64) error) {
	prepare(t, true)
	r := newRun(t, findCase(t, "mem_anon"))
	r.start()
	r.dumpKill("img")
	bad := filepath.Join(r.base, "img-bad")
	if err := os.CopyFS(bad, os.DirFS(filepath.Join(r.base, "img"))); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(bad, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return damage(path, info.Size())
	})
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := r.ferry("restore", "--dir", bad)
	if code == 0 {
		// Do not leave a process restored from a damaged image behind.
		if m := restoredRe.FindStringSubmatch(stdout); m != nil && m[1] == strconv.Itoa(r.pid) {
			if fd, err := unix.PidfdOpen(r.pid, 0); err == nil {
				r.pidfd = fd
			}
		}
		r.fatalf("ferry restore of a damaged image exited 0")
	}
	if !strings.Contains(strings.ToLower(stderr), want) {
		r.fatalf("ferry restore of a damaged image: stderr does not mention %q", want)
	}
}

// TestDumpNonexistent: dumping a pid that does not exist fails and names it.
func TestDumpNonexistent(t *testing.T) {
	prepare(t, true)
	const pid = 999999 // above any default pid_max
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
		t.Skipf("pid %d exists here", pid)
	}
	r := newRun(t, testCase{name: "dump_nonexistent"})
	_, stderr, code := r.ferry("dump", strconv.Itoa(pid), "--dir", filepath.Join(r.base, "img"))
	if code == 0 {
		r.fatalf("ferry dump of nonexistent pid %d exited 0", pid)
	}
	if !strings.Contains(stderr, strconv.Itoa(pid)) {
		r.fatalf("ferry dump of nonexistent pid: stderr does not name pid %d", pid)
	}
}

// TestDumpRefusesUnsupported: a process holding a resource ferry cannot
// carry yet — a TCP socket (listening on 127.0.0.1 only) —
// cannot be dumped; the error names the pid, the fd and the resource, and
// the process is left untouched: running, untraced, and it still passes
// its own checks.
func TestDumpRefusesUnsupported(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fd       int
		resource string
	}{
		{"fd_tcp_listen", 10, "tcp"},
		{"fd_inotify_queued", 10, "inotify"},
		{"fd_pidfd_foreign", 10, "pidfd"},
		{"sys_seccomp_notif", 10, "seccomp notification listener"},
		{"fd_mqueue", 10, "posix message queue"},
		{"fd_unix_listen_pending_data", 11, "unix socket"},
		{"fd_unix_zd_lclosed", 10, "unix socket"},
		{"zd_leader_exit", -1, "main thread has exited"},
		{"zd_vfork", -1, "made by vfork"},
		{"zs_pty_hup", 20, "pty slave whose master was closed"},
		{"zs_pidfd_dead", 20, "pidfd of a process that exited"},
		{"zs_inotify_storm", -1, "inotify watch"},
	} {
		t.Run(tc.name, func(t *testing.T) { testDumpRefuses(t, tc.name, tc.fd, tc.resource) })
	}
}

func testDumpRefuses(t *testing.T, name string, fd int, resource string) {
	prepare(t, true)
	r := newRun(t, findCase(t, name))
	r.start()
	_, stderr, code := r.ferry("dump", strconv.Itoa(r.pid), "--dir", filepath.Join(r.base, "img"))
	if code == 0 {
		if waitGone(r.pidfd, 0) {
			r.reapCurrent()
		}
		r.fatalf("ferry dump of a process with a %s exited 0", resource)
	}
	low := strings.ToLower(stderr)
	if !strings.Contains(low, resource) {
		r.fatalf("refused dump: stderr does not mention %s", resource)
	}
	if !regexp.MustCompile(`\b` + strconv.Itoa(r.pid) + `\b`).MatchString(stderr) {
		r.fatalf("refused dump: stderr does not name pid %d", r.pid)
	}
	if fd >= 0 && !regexp.MustCompile(`\b`+strconv.Itoa(fd)+`\b`).MatchString(stderr) {
		r.fatalf("refused dump: stderr does not name fd %d", fd)
	}
	r.checkAlive("after a refused dump", false)
	r.goAndCheck()
}

// TestInspect: `ferry inspect` of a fresh image names the pid, in text and
// as valid JSON, and leaves the image restorable.
func TestInspect(t *testing.T) {
	prepare(t, true)
	r := newRun(t, findCase(t, "thread_tls"))
	r.start()
	r.dumpKill("img")
	img := filepath.Join(r.base, "img")
	pidRe := regexp.MustCompile(`\b` + strconv.Itoa(r.pid) + `\b`)
	text, _, code := r.ferry("inspect", img)
	if code != 0 {
		r.fatalf("ferry inspect exited %d", code)
	}
	if !pidRe.MatchString(text) {
		r.fatalf("ferry inspect does not name pid %d", r.pid)
	}
	js, _, code := r.ferry("inspect", img, "--json")
	if code != 0 {
		r.fatalf("ferry inspect --json exited %d", code)
	}
	if !json.Valid([]byte(js)) {
		r.fatalf("ferry inspect --json printed invalid JSON")
	}
	if !pidRe.MatchString(js) {
		r.fatalf("ferry inspect --json does not name pid %d", r.pid)
	}
	r.restore("img")
	r.goAndCheck()
}
