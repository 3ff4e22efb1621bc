package ptrace

import (
	"context"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
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
	tr := NewTracer()
	defer tr.Close()
	err := tr.Do(context.Background(), func() error {
		fz, err := Freeze(pid, 5*time.Second, nil)
		if err != nil {
			return err
		}
		defer fz.Thaw(false)
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
