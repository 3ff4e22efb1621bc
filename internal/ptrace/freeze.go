package ptrace

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// Frozen is a process whose every thread is seized and in a ptrace stop.
type Frozen struct {
	PID  int
	PPID int   // parent at freeze time
	TIDs []int // leader first
	// WasStopped is true when the process was in group-stop before.
	WasStopped bool
	// Delayed lists threads that were in uninterruptible sleep and how
	// long freezing waited for their system call to end (delayed blocking).
	Delayed map[int]time.Duration
	// Swallowed holds, per thread, a signal whose delivery stop was
	// reported instead of the interrupt stop: it was dequeued and must be
	// given back (on detach, or re-queued in an image).
	Swallowed map[int]unix.Signal
	// FrozenAt is when the last thread stopped.
	FrozenAt time.Time
	detached bool
}

// ErrBusy is returned when a thread stays in uninterruptible sleep longer
// than the freeze allows.
var ErrBusy = errors.New("thread stays in uninterruptible sleep")

// Freeze seizes and stops every thread of pid. A thread in uninterruptible
// sleep (state D) stops only when its system call ends: Freeze waits up to
// maxDelay for that, and records the wait. On error every thread already
// seized is released and the process runs on untouched.
// Must run on the tracer thread.
func Freeze(pid int, maxDelay time.Duration, log *slog.Logger) (*Frozen, error) {
	st, err := procfs.Stat(pid)
	if err != nil {
		return nil, fmt.Errorf("process %d: %w", pid, err)
	}
	switch st.State {
	case 'Z', 'X':
		return nil, fmt.Errorf("process %d is a zombie", pid)
	case 't':
		return nil, fmt.Errorf("process %d is already being traced", pid)
	}
	f := &Frozen{PID: pid, PPID: st.PPID, WasStopped: st.State == 'T', Delayed: map[int]time.Duration{},
		Swallowed: map[int]unix.Signal{}}
	seized := map[int]bool{}
	for round := 0; ; round++ {
		tids, err := Tasks(pid)
		if err != nil {
			f.release()
			return nil, fmt.Errorf("list threads of %d: %w", pid, err)
		}
		var fresh []int
		for _, tid := range tids {
			if seized[tid] {
				continue
			}
			opts := unix.PTRACE_O_TRACESYSGOOD
			if ts, err := procfs.TaskStatus(pid, tid); err == nil && ts.Seccomp != 0 {
				// ferry's injected system calls must get past the
				// thread's filters (or strict mode) unseen.
				opts |= kernel.PTRACE_O_SUSPEND_SECCOMP
			}
			if err := kernel.PtraceSeize(tid, opts); err != nil {
				if errors.Is(err, unix.ESRCH) {
					continue // exited meanwhile
				}
				f.release()
				if errors.Is(err, unix.EPERM) && opts&kernel.PTRACE_O_SUSPEND_SECCOMP != 0 {
					return nil, fmt.Errorf("seize thread %d of %d, which runs under seccomp: %w (suspending its filters for ferry's system calls needs CAP_SYS_ADMIN)", tid, pid, err)
				}
				if errors.Is(err, unix.EPERM) {
					return nil, fmt.Errorf("seize thread %d of %d: %w (is it traced by a debugger, or owned by another user namespace?)", tid, pid, err)
				}
				return nil, fmt.Errorf("seize thread %d of %d: %w", tid, pid, err)
			}
			seized[tid] = true
			f.TIDs = append(f.TIDs, tid)
			if err := unix.PtraceInterrupt(tid); err != nil && err != unix.ESRCH {
				f.release()
				return nil, fmt.Errorf("interrupt thread %d: %w", tid, err)
			}
			fresh = append(fresh, tid)
		}
		if len(fresh) == 0 {
			break
		}
		for _, tid := range fresh {
			start := time.Now()
			inD := false
			if ts, err := procfs.TaskStat(pid, tid); err == nil && ts.State == 'D' {
				inD = true // uninterruptible: it stops when its call ends
			}
			ws, ok, err := WaitTimeout(tid, maxDelay)
			if err != nil {
				f.release()
				return nil, err
			}
			if !ok {
				f.release()
				return nil, fmt.Errorf("freeze %d: thread %d: %w for more than %v", pid, tid, ErrBusy, maxDelay)
			}
			if inD {
				f.Delayed[tid] = time.Since(start)
			}
			if ws.Exited() || ws.Signaled() {
				f.drop(tid)
				continue
			}
			if ws.Stopped() && kernel.StopEvent(ws) == 0 && ws.StopSignal() != unix.SIGTRAP {
				// A signal-delivery stop came first: the signal is dequeued.
				f.Swallowed[tid] = ws.StopSignal()
				if log != nil {
					log.Debug("signal dequeued while freezing; it will be given back", "tid", tid, "signal", ws.StopSignal())
				}
			}
		}
		if round > 100 {
			f.release()
			return nil, fmt.Errorf("freeze %d: threads keep appearing", pid)
		}
	}
	// Leader first.
	if i := slices.Index(f.TIDs, pid); i > 0 {
		f.TIDs[0], f.TIDs[i] = f.TIDs[i], f.TIDs[0]
	}
	if len(f.TIDs) == 0 || f.TIDs[0] != pid {
		f.release()
		return nil, fmt.Errorf("freeze %d: %w", pid, ErrExited)
	}
	f.FrozenAt = time.Now()
	return f, nil
}

func (f *Frozen) drop(tid int) {
	f.TIDs = slices.DeleteFunc(f.TIDs, func(t int) bool { return t == tid })
}

// release detaches every seized thread, giving back swallowed signals.
func (f *Frozen) release() {
	for _, tid := range f.TIDs {
		sig := f.Swallowed[tid]
		_ = detach(tid, sig)
	}
	f.detached = true
}

func detach(tid int, sig unix.Signal) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(tid), 0, uintptr(sig), 0, 0)
	if e != 0 && e != unix.ESRCH {
		return e
	}
	return nil
}

// Thaw detaches every thread and lets the process run on; with stopped
// (or when it was stopped before) it is left in group-stop instead.
func (f *Frozen) Thaw(stopped bool) error {
	if f.detached {
		return nil
	}
	if stopped || f.WasStopped {
		if err := unix.Kill(f.PID, unix.SIGSTOP); err != nil {
			return fmt.Errorf("stop %d: %w", f.PID, err)
		}
	}
	var first error
	for _, tid := range f.TIDs {
		if err := detach(tid, f.Swallowed[tid]); err != nil && first == nil {
			first = fmt.Errorf("detach %d: %w", tid, err)
		}
	}
	f.detached = true
	return first
}

// Kill kills the frozen process and waits until it is gone (reaped by its
// parent, or a zombie that no longer runs).
func (f *Frozen) Kill() error {
	if err := unix.Kill(f.PID, unix.SIGKILL); err != nil && err != unix.ESRCH {
		return fmt.Errorf("kill %d: %w", f.PID, err)
	}
	f.detached = true
	// Traced threads report their death to us; collect those reports so
	// the parent can reap the process. The leader reports last, once the
	// other threads are gone.
	for _, tid := range f.TIDs[1:] {
		for {
			ws, err := Wait(tid)
			if err != nil || ws.Exited() || ws.Signaled() {
				break
			}
		}
	}
	if f.PPID == os.Getpid() {
		// We are also the parent: wait for the zombie without reaping it,
		// so whoever started the process (an exec.Cmd) collects it.
		var info unix.Siginfo
		for {
			err := unix.Waitid(unix.P_PID, f.PID, &info, unix.WEXITED|unix.WNOWAIT|unix.WALL, nil)
			if err != unix.EINTR {
				return nil
			}
		}
	}
	for {
		ws, err := Wait(f.PID)
		if err != nil || ws.Exited() || ws.Signaled() {
			return nil
		}
	}
}

// Detach lets a traced process (stopped) go on.
func Detach(pid int) error { return detach(pid, 0) }
