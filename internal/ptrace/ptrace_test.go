package ptrace

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/testutil"
)

// startBusy starts a process that keeps running and has several threads
// (a Go program: the test binary itself, told to spin).
func startBusy(t *testing.T) *exec.Cmd { t.Helper(); return startBusyEnv(t) }

// startBusyEnv is startBusy with more environment for the helper.
func startBusyEnv(t *testing.T, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperBusy$")
	cmd.Env = append(append(os.Environ(), "FERRY_PTRACE_HELPER=1"), env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait until the Go runtime has started its threads.
	testutil.Poll(t, 5*time.Second, 5*time.Millisecond, "helper started its threads", func() (bool, string) {
		tids, _ := Tasks(cmd.Process.Pid)
		return len(tids) >= 3, fmt.Sprintf("%d threads", len(tids))
	})
	return cmd
}

// TestHelperBusy is the child process of the tests above, not a test.
func TestHelperBusy(t *testing.T) {
	if os.Getenv("FERRY_PTRACE_HELPER") != "1" {
		t.Skip("helper process")
	}
	if os.Getenv("FERRY_PTRACE_HELPER_TRAP") != "" {
		signal.Notify(make(chan os.Signal, 1), unix.SIGTRAP)
	}
	for i := 0; ; i++ {
		time.Sleep(time.Millisecond)
		_ = i
	}
}

func TestFreezeInjectThaw(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace")
	}
	cmd := startBusy(t)
	pid := cmd.Process.Pid
	tr := NewTracer()
	defer tr.Close()
	err := tr.Do(context.Background(), func() error {
		fz, err := Freeze(pid, 5*time.Second, nil)
		if err != nil {
			return err
		}
		defer fz.Thaw(false)
		tids, _ := Tasks(pid)
		if len(fz.TIDs) != len(tids) || fz.TIDs[0] != pid {
			t.Errorf("frozen threads %v, want all of %v with the leader first", fz.TIDs, tids)
		}
		for _, tid := range fz.TIDs {
			st, err := procfs.TaskStat(pid, tid)
			if err != nil {
				return err
			}
			if st.State != 't' {
				t.Errorf("thread %d state %c after Freeze, want t", tid, st.State)
			}
		}
		addr, _, err := FindSyscall(pid)
		if err != nil {
			return err
		}
		for _, tid := range fz.TIDs[:2] {
			in, err := NewInjector(tid, addr)
			if err != nil {
				return err
			}
			before := in.Saved()
			got, err := in.Syscall(unix.SYS_GETPID)
			if err != nil || int(got) != pid {
				t.Errorf("injected getpid in %d = %d, %v; want %d", tid, got, err, pid)
			}
			got, err = in.Syscall(unix.SYS_GETTID)
			if err != nil || int(got) != tid {
				t.Errorf("injected gettid in %d = %d, %v; want %d", tid, got, err, tid)
			}
			// An error comes back as an errno.
			if _, err := in.Syscall(unix.SYS_CLOSE, 1<<20); err != unix.EBADF {
				t.Errorf("injected close(bad fd) error = %v, want EBADF", err)
			}
			if err := in.Restore(); err != nil {
				return err
			}
			var after kernel.PtraceRegs
			if err := kernel.PtraceGetRegs(tid, &after); err != nil {
				return err
			}
			if after != before {
				t.Errorf("thread %d registers not restored:\n got %+v\nwant %+v", tid, after, before)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Thawed: untraced and running again.
	st, err := procfs.Status(pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.TracerPID != 0 {
		t.Fatalf("still traced by %d after Thaw", st.TracerPID)
	}
}

func TestFreezeRefusesMissing(t *testing.T) {
	tr := NewTracer()
	defer tr.Close()
	err := tr.Do(context.Background(), func() error {
		_, err := Freeze(1<<30, time.Second, nil)
		return err
	})
	if err == nil {
		t.Fatal("Freeze of a nonexistent pid succeeded")
	}
}
