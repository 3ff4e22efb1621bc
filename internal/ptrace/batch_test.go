package ptrace

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/testutil"
)

// TestBatch runs a table of system calls in a frozen process with one
// stop: results in order, a failure stops the table and is reported with
// its errno, registers come back intact.
func TestBatch(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for ptrace")
	}
	cmd := startBusy(t)
	pid := cmd.Process.Pid
	err := onFrozen(pid, func() error {
		addr, _, err := FindSyscall(pid)
		if err != nil {
			return err
		}
		in, err := NewInjector(pid, addr)
		if err != nil {
			return err
		}
		before := in.Saved()
		area, err := in.Syscall(unix.SYS_MMAP, 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return err
		}
		in.SetBatchArea(area, 64<<10)
		cases := []struct {
			name  string
			calls []Call
			want  []uint64
			fails bool
		}{
			{"ids", []Call{{Nr: unix.SYS_GETPID}, {Nr: unix.SYS_GETTID}, {Nr: unix.SYS_GETPPID}},
				[]uint64{uint64(pid), uint64(pid), uint64(os.Getpid())}, false},
			{"stops at a failure", []Call{{Nr: unix.SYS_GETPID}, {Nr: unix.SYS_CLOSE, Args: [6]uint64{1 << 20}}, {Nr: unix.SYS_GETPID}},
				[]uint64{uint64(pid), negErrno(unix.EBADF)}, true},
			{"many", manyGetpid(2000), nil, false},
		}
		for _, tc := range cases {
			got, err := in.Batch(tc.calls)
			if (err != nil) != tc.fails {
				t.Errorf("%s: err = %v, want failure %v", tc.name, err, tc.fails)
			}
			if tc.want == nil {
				if len(got) != len(tc.calls) {
					t.Errorf("%s: %d results for %d calls", tc.name, len(got), len(tc.calls))
				}
				for i, r := range got {
					if r != uint64(pid) {
						t.Errorf("%s: result %d = %d, want %d", tc.name, i, r, pid)
						break
					}
				}
				continue
			}
			if len(got) != len(tc.want) {
				t.Errorf("%s: results %v, want %v", tc.name, got, tc.want)
				continue
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("%s: results %v, want %v", tc.name, got, tc.want)
					break
				}
			}
		}
		in.Syscall(unix.SYS_MUNMAP, area, 64<<10)
		if err := in.Restore(); err != nil {
			return err
		}
		var after kernel.PtraceRegs
		if err := kernel.PtraceGetRegs(pid, &after); err != nil {
			return err
		}
		if after != before {
			t.Errorf("registers not restored after batches")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func manyGetpid(n int) []Call {
	c := make([]Call, n)
	for i := range c {
		c[i].Nr = unix.SYS_GETPID
	}
	return c
}

func negErrno(e unix.Errno) uint64 { return uint64(-int64(e)) }

// TestInjectLeavesSIGTRAP: the program's SIGTRAP is its own. Injected
// calls and batches into a thread with a SIGTRAP handler, with and
// without a SIGTRAP pending for that very thread, leave the handler
// installed and the signal pending (a trap forced by the injection resets
// the handler to SIG_DFL when the thread blocks SIGTRAP, and takes a
// pending one's place).
func TestInjectLeavesSIGTRAP(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root for ptrace")
	}
	for _, pending := range []bool{false, true} {
		t.Run(fmt.Sprintf("pending=%v", pending), func(t *testing.T) { testInjectLeavesSIGTRAP(t, pending) })
	}
}

func testInjectLeavesSIGTRAP(t *testing.T, pending bool) {
	cmd := startBusyEnv(t, "FERRY_PTRACE_HELPER_TRAP=1")
	pid := cmd.Process.Pid
	const trap = 1 << (unix.SIGTRAP - 1)
	testutil.Poll(t, 5*time.Second, 5*time.Millisecond, "helper installed its SIGTRAP handler", func() (bool, string) {
		st, err := procfs.Status(pid)
		if err != nil {
			t.Fatal(err)
		}
		return st.SigCgt&trap != 0, ""
	})
	err := onFrozen(pid, func() error {
		if pending {
			if err := unix.Tgkill(pid, pid, unix.SIGTRAP); err != nil {
				return err
			}
		}
		addr, _, err := FindSyscall(pid)
		if err != nil {
			return err
		}
		in, err := NewInjector(pid, addr)
		if err != nil {
			return err
		}
		if got, err := in.Syscall(unix.SYS_GETPID); err != nil || int(got) != pid {
			t.Errorf("injected getpid = %d, %v", got, err)
		}
		area, err := in.Syscall(unix.SYS_MMAP, 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return err
		}
		in.SetBatchArea(area, 64<<10)
		if got, err := in.Batch(manyGetpid(10)); err != nil || len(got) != 10 || got[9] != uint64(pid) {
			t.Errorf("batch = %v, %v", got, err)
		}
		if _, err := in.Syscall(unix.SYS_MUNMAP, area, 64<<10); err != nil {
			return err
		}
		if err := in.Restore(); err != nil {
			return err
		}
		st, err := procfs.TaskStatus(pid, pid)
		if err != nil {
			return err
		}
		if st.SigCgt&trap == 0 {
			t.Error("SIGTRAP handler reset by the injection")
		}
		if pending && st.SigPnd&trap == 0 {
			t.Error("the thread's pending SIGTRAP was taken by the injection")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// onFrozen runs fn on a tracer thread while pid is frozen, and thaws it.
func onFrozen(pid int, fn func() error) error {
	tr := NewTracer()
	defer tr.Close()
	return tr.Do(context.Background(), func() error {
		fz, err := Freeze(pid, 5*time.Second, nil)
		if err != nil {
			return err
		}
		defer fz.Thaw(false)
		return fn()
	})
}
