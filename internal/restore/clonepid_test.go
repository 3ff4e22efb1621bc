package restore

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/procfs"
)

// TestCloneRetry runs cloneRetry with clone3 and /proc answers made up:
// a zombie that goes away is waited for, and a PID that stays taken fails
// by the deadline (also when /proc never shows its holder, which used to
// spin for ever) with an error that names the PID and the holder.
func TestCloneRetry(t *testing.T) {
	eexist := os.NewSyscallError("clone3", unix.EEXIST) // as a wrapper would return it
	zombie := &procfs.ProcStat{PID: 4242, Comm: "worker", State: 'Z', PPID: 1}
	live := &procfs.ProcStat{PID: 4242, Comm: "sshd", State: 'S', PPID: 1}
	notThere := func(int) (*procfs.ProcStat, error) { return nil, unix.ENOENT }
	tests := []struct {
		name     string
		freeAt   int // clone succeeds on this call (0: never)
		stat     func(int) (*procfs.ProcStat, error)
		wantErr  bool
		wantText []string
	}{
		{"free at once", 1, notThere, false, nil},
		{"zombie reaped", 3, func(int) (*procfs.ProcStat, error) { return zombie, nil }, false, nil},
		{"holder not in /proc, then free", 3, notThere, false, nil},
		{"live holder", 0, func(int) (*procfs.ProcStat, error) { return live, nil }, true, []string{"pid 4242", `"sshd"`}},
		{"zombie never reaped", 0, func(int) (*procfs.ProcStat, error) { return zombie, nil }, true, []string{"pid 4242", `"worker"`, "zombie", "after waiting"}},
		{"holder never in /proc", 0, notThere, true, []string{"pid 4242", "/proc does not show", "after waiting"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			clone := func() (uint64, error) {
				calls++
				if calls == tc.freeAt {
					return 4242, nil
				}
				return 0, eexist
			}
			done := make(chan struct{})
			var r uint64
			var err error
			go func() {
				defer close(done)
				r, err = cloneRetry(4242, clone, tc.stat, 50*time.Millisecond, time.Millisecond)
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("cloneRetry did not return")
			}
			if !tc.wantErr {
				if err != nil || r != 4242 {
					t.Fatalf("got %d, %v; want 4242", r, err)
				}
				return
			}
			if !errors.Is(err, ErrPIDTaken) || !errors.Is(err, unix.EEXIST) {
				t.Fatalf("err = %v, want ErrPIDTaken and EEXIST", err)
			}
			for _, w := range tc.wantText {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}
