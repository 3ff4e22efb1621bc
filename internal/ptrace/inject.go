package ptrace

import (
	"bytes"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// Injector executes system calls inside one ptrace-stopped thread. It saves
// the thread's registers and signal mask when created and puts them back
// in Restore. While it is active every blockable signal is blocked in the
// thread, so a signal that arrives meanwhile stays queued instead of being
// consumed by a single-step.
//
// An Injector must only be used on the tracer thread.
type Injector struct {
	TID int
	// Addr is the address of a `syscall` instruction (0f 05) in the target.
	Addr uint64

	saved     kernel.PtraceRegs
	savedMask uint64
	restored  bool

	scratch     uint64
	scratchSize uint64

	// The batch area (SetBatchArea): stub and call table.
	batchAddr, batchSize uint64
	stubWritten          bool

	// atSyscallStop: the thread sits in the exit stop of an injected call.
	atSyscallStop bool
	// trapOK: forced traps leave the program's SIGTRAP alone (NewInjector).
	trapOK bool

	// Events collects the IDs of tasks created by injected clone calls.
	Events []int
	// StopSeen is set when a stop signal (SIGSTOP etc.) arrived while
	// injecting and was suppressed by the single-step; the caller treats
	// the process as stopped.
	StopSeen unix.Signal
}

// NewInjector prepares tid for injection. addr is a `syscall` instruction,
// see FindSyscall.
func NewInjector(tid int, addr uint64) (*Injector, error) {
	in := &Injector{TID: tid, Addr: addr}
	if err := kernel.PtraceGetRegs(tid, &in.saved); err != nil {
		return nil, fmt.Errorf("get registers of %d: %w", tid, err)
	}
	m, err := kernel.PtraceGetSigmask(tid)
	if err != nil {
		return nil, fmt.Errorf("get signal mask of %d: %w", tid, err)
	}
	in.savedMask = m
	// A single-step or an int3 forces a SIGTRAP on the thread. That leaves
	// the program's state alone when SIGTRAP is not blocked (a blocked or
	// ignored one has its handler reset to SIG_DFL), not ignored, and not
	// pending (a pending one would be taken in its place): then the
	// injector steps with SIGTRAP unblocked, one stop per call. Otherwise
	// it runs to system-call stops, two per call, with everything blocked.
	mask := ^uint64(0)
	if st, err := procfs.Status(tid); err == nil && (st.SigPnd|st.ShdPnd|st.SigIgn)&trapBit == 0 {
		in.trapOK = true
		mask &^= trapBit
	}
	if err := kernel.PtraceSetSigmask(tid, mask); err != nil {
		return nil, fmt.Errorf("block signals in %d: %w", tid, err)
	}
	return in, nil
}

// Saved returns the registers the thread had before injection.
func (in *Injector) Saved() kernel.PtraceRegs { return in.saved }

// SavedMask returns the thread's signal mask from before injection.
func (in *Injector) SavedMask() uint64 { return in.savedMask }

// SetSaved replaces the registers Restore will put back.
func (in *Injector) SetSaved(r kernel.PtraceRegs) { in.saved = r }

// SetSavedMask replaces the signal mask Restore will put back.
func (in *Injector) SetSavedMask(m uint64) { in.savedMask = m }

// SetScratch tells the injector where it may write syscall arguments.
func (in *Injector) SetScratch(addr, size uint64) { in.scratch, in.scratchSize = addr, size }

// ScratchAddr returns the scratch area's address and size.
func (in *Injector) ScratchAddr() (uint64, uint64) { return in.scratch, in.scratchSize }

// Scratch writes b at the start of the scratch area and returns its address.
func (in *Injector) Scratch(b []byte) (uint64, error) { return in.ScratchAt(0, b) }

// ScratchAt writes b at offset off of the scratch area.
func (in *Injector) ScratchAt(off uint64, b []byte) (uint64, error) {
	if in.scratch == 0 {
		return 0, fmt.Errorf("inject into %d: no scratch memory", in.TID)
	}
	if off+uint64(len(b)) > in.scratchSize {
		return 0, fmt.Errorf("inject into %d: %d bytes do not fit the scratch area", in.TID, len(b))
	}
	if err := WriteMem(in.TID, in.scratch+off, b); err != nil {
		return 0, err
	}
	return in.scratch + off, nil
}

// ReadScratch reads n bytes at offset off of the scratch area.
func (in *Injector) ReadScratch(off uint64, n int) ([]byte, error) {
	b := make([]byte, n)
	if err := ReadMem(in.TID, in.scratch+off, b); err != nil {
		return nil, err
	}
	return b, nil
}

// Syscall runs system call nr with args in the thread and returns its
// result. A result in [-4095, -1] is returned as a unix.Errno error.
func (in *Injector) Syscall(nr uintptr, args ...uint64) (uint64, error) {
	r, err := in.RawSyscall(nr, args...)
	if err != nil {
		return 0, err
	}
	if int64(r) < 0 && int64(r) > -4096 {
		return r, unix.Errno(-int64(r))
	}
	return r, nil
}

// RawSyscall is Syscall without errno interpretation.
func (in *Injector) RawSyscall(nr uintptr, args ...uint64) (uint64, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("inject: %d arguments", len(args))
	}
	var a [6]uint64
	copy(a[:], args)
	regs := in.saved
	regs.Rip = in.Addr
	regs.Rax = uint64(nr)
	regs.Orig_rax = ^uint64(0) // keep the kernel's restart logic out
	regs.Rdi, regs.Rsi, regs.Rdx, regs.R10, regs.R8, regs.R9 = a[0], a[1], a[2], a[3], a[4], a[5]
	// Clear the trap flag the thread may carry; single-step sets its own.
	regs.Eflags &^= 0x100
	if err := kernel.PtraceSetRegs(in.TID, &regs); err != nil {
		return 0, fmt.Errorf("inject syscall %d into %d: set registers: %w", nr, in.TID, err)
	}
	if in.trapOK {
		if err := in.stepOver(nr); err != nil {
			return 0, err
		}
	} else {
		// Run to the call's exit stop: system-call stops are not signals.
		entered := false
		for {
			if err := unix.PtraceSyscall(in.TID, 0); err != nil {
				return 0, fmt.Errorf("inject syscall %d into %d: resume to the call: %w", nr, in.TID, err)
			}
			exit, err := in.waitSyscallStop(&entered, func(ip uint64) bool { return ip == in.Addr+2 })
			if err != nil {
				return 0, fmt.Errorf("inject syscall %d into %d: %w", nr, in.TID, err)
			}
			if exit {
				break
			}
		}
		in.atSyscallStop = true
	}
	if err := kernel.PtraceGetRegs(in.TID, &regs); err != nil {
		return 0, fmt.Errorf("inject syscall %d into %d: get registers: %w", nr, in.TID, err)
	}
	if regs.Rip != in.Addr+2 {
		// The trap was a SIGTRAP sent to the frozen program meanwhile, not
		// the step's.
		return 0, fmt.Errorf("inject syscall %d into %d: a SIGTRAP arrived at %#x before the call ran", nr, in.TID, regs.Rip)
	}
	return regs.Rax, nil
}

// stepOver single-steps the thread over the syscall instruction: one
// stop, the trap the step forces. Only when trapOK.
func (in *Injector) stepOver(nr uintptr) error {
	for {
		if err := unix.PtraceSingleStep(in.TID); err != nil {
			return fmt.Errorf("inject syscall %d into %d: single-step: %w", nr, in.TID, err)
		}
	again:
		ws, err := Wait(in.TID)
		if err != nil {
			return err
		}
		if ws.Exited() || ws.Signaled() {
			return fmt.Errorf("inject syscall %d into %d: %w (%s)", nr, in.TID, ErrExited, Describe(ws))
		}
		if !ws.Stopped() {
			goto again
		}
		switch ev := kernel.StopEvent(ws); {
		case ev == unix.PTRACE_EVENT_CLONE || ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK:
			msg, err := unix.PtraceGetEventMsg(in.TID)
			if err != nil {
				return fmt.Errorf("inject: clone event message: %w", err)
			}
			in.Events = append(in.Events, int(msg))
			continue // step on to the end of the syscall
		case ev != 0:
			continue
		}
		sig := ws.StopSignal()
		if sig == unix.SIGTRAP {
			in.atSyscallStop = false
			return nil
		}
		switch sig {
		case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE:
			// A fault of our own making (the syscall instruction is not
			// where we think): stepping again would fault forever.
			var regs kernel.PtraceRegs
			kernel.PtraceGetRegs(in.TID, &regs)
			return fmt.Errorf("inject syscall %d into %d: %v at %#x", nr, in.TID, sig, regs.Rip)
		}
		// A group-stop signal is remembered and suppressed; anything else
		// cannot be dequeued while blocked, except SIGKILL.
		in.StopSeen = sig
	}
}

// trapBit is SIGTRAP in a signal mask.
const trapBit = 1 << (unix.SIGTRAP - 1)

// AvoidTraps makes the injector stop at system-call stops only, from now
// on: the caller is about to give the program an ignored or a pending
// SIGTRAP (a restore), which a forced trap would disturb.
func (in *Injector) AvoidTraps() error {
	if !in.trapOK {
		return nil
	}
	in.trapOK = false
	if err := kernel.PtraceSetSigmask(in.TID, ^uint64(0)); err != nil {
		return fmt.Errorf("block signals in %d: %w", in.TID, err)
	}
	return nil
}

// waitSyscallStop waits for the thread's next stop after a PTRACE_SYSCALL
// and reports whether it is the exit stop of the injected call: an exit
// stop after an entry stop, at an instruction pointer end accepts. Clone
// events are collected, stop signals remembered (and suppressed), faults
// of our own making returned as errors.
func (in *Injector) waitSyscallStop(entered *bool, end func(ip uint64) bool) (bool, error) {
	for {
		ws, err := Wait(in.TID)
		if err != nil {
			return false, err
		}
		if ws.Exited() || ws.Signaled() {
			return false, fmt.Errorf("%w (%s)", ErrExited, Describe(ws))
		}
		if !ws.Stopped() {
			continue
		}
		switch ev := kernel.StopEvent(ws); {
		case ev == unix.PTRACE_EVENT_CLONE || ev == unix.PTRACE_EVENT_FORK || ev == unix.PTRACE_EVENT_VFORK:
			msg, err := unix.PtraceGetEventMsg(in.TID)
			if err != nil {
				return false, fmt.Errorf("clone event message: %w", err)
			}
			in.Events = append(in.Events, int(msg))
			return false, nil
		case ev != 0:
			return false, nil // an event or group stop: go on
		}
		sig := ws.StopSignal()
		if sig == unix.SIGTRAP || sig == unix.SIGTRAP|0x80 {
			op, ip, err := kernel.PtraceSyscallInfo(in.TID)
			if err != nil {
				return false, fmt.Errorf("PTRACE_GET_SYSCALL_INFO: %w", err)
			}
			switch op {
			case kernel.PTRACE_SYSCALL_INFO_ENTRY:
				*entered = true
				return false, nil
			case kernel.PTRACE_SYSCALL_INFO_EXIT:
				// An exit without our entry is the end of a call the
				// thread was stopped in before (it was skipped).
				return *entered && end(ip), nil
			}
			// A SIGTRAP signal: everything blockable is blocked, so only a
			// forced one gets here, which nothing injected raises.
			return false, fmt.Errorf("a forced SIGTRAP at a stop of an injected call")
		}
		switch sig {
		case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE:
			// A fault of our own making (the code is not where we think):
			// going on would fault forever.
			var regs kernel.PtraceRegs
			kernel.PtraceGetRegs(in.TID, &regs)
			return false, fmt.Errorf("%v at %#x", sig, regs.Rip)
		}
		// A group-stop signal is remembered and suppressed; anything else
		// cannot be dequeued while blocked, except SIGKILL.
		in.StopSeen = sig
		return false, nil
	}
}

// Restore puts back the registers and signal mask the thread had.
func (in *Injector) Restore() error {
	if in.restored {
		return nil
	}
	in.restored = true
	if in.atSyscallStop && restarts(&in.saved) {
		// The thread was frozen inside a system call the kernel restarts
		// when it resumes from a stop in signal delivery; it sits in a
		// system-call exit stop now, from which it would return the
		// restart code to the program. Trap it into a stop in signal
		// delivery first (PTRACE_INTERRUPT, then resume).
		if err := in.reenterSignalStop(); err != nil {
			return fmt.Errorf("restore %d: %w", in.TID, err)
		}
	}
	if err := kernel.PtraceSetRegs(in.TID, &in.saved); err != nil {
		return fmt.Errorf("restore registers of %d: %w", in.TID, err)
	}
	if err := kernel.PtraceSetSigmask(in.TID, in.savedMask); err != nil {
		return fmt.Errorf("restore signal mask of %d: %w", in.TID, err)
	}
	return nil
}

// restarts reports whether registers are those of a thread interrupted
// in a system call that the kernel restarts (orig_rax a call, rax a
// restart code).
func restarts(r *kernel.PtraceRegs) bool {
	if int64(r.Orig_rax) < 0 {
		return false
	}
	switch -int64(r.Rax) {
	case kernel.ERESTARTSYS, kernel.ERESTARTNOINTR, kernel.ERESTARTNOHAND, kernel.ERESTART_RESTARTBLOCK:
		return true
	}
	return false
}

// reenterSignalStop moves a thread from a system-call exit stop to a
// PTRACE_EVENT_STOP in signal delivery, with the registers of the stub's
// call (rax a result, never a restart code).
func (in *Injector) reenterSignalStop() error {
	if err := unix.PtraceInterrupt(in.TID); err != nil {
		return fmt.Errorf("PTRACE_INTERRUPT: %w", err)
	}
	if err := unix.PtraceCont(in.TID, 0); err != nil {
		return fmt.Errorf("resume to the interrupt: %w", err)
	}
	for {
		ws, err := Wait(in.TID)
		if err != nil {
			return err
		}
		if ws.Exited() || ws.Signaled() {
			return fmt.Errorf("%w (%s)", ErrExited, Describe(ws))
		}
		if ws.Stopped() && kernel.StopEvent(ws) == unix.PTRACE_EVENT_STOP {
			in.atSyscallStop = false
			return nil
		}
		if ws.Stopped() && kernel.StopEvent(ws) == 0 {
			if s := ws.StopSignal(); s != unix.SIGTRAP && s != unix.SIGTRAP|0x80 {
				in.StopSeen = s
			}
		}
		if err := unix.PtraceCont(in.TID, 0); err != nil {
			return fmt.Errorf("resume to the interrupt: %w", err)
		}
	}
}

// Pull takes fd tfd of process pid (the injector's process) into ferry —
// the same open file description, close-on-exec — and closes the target's
// copy, so ferry holds the only one. Used for objects that must be created
// by the target itself, such as a userfaultfd (it belongs to its creator's
// address space).
func (in *Injector) Pull(pid int, tfd uint64) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		in.Syscall(unix.SYS_CLOSE, tfd)
		return -1, os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	fd, err := unix.PidfdGetfd(pidfd, int(tfd), 0)
	if err != nil {
		in.Syscall(unix.SYS_CLOSE, tfd)
		return -1, os.NewSyscallError("pidfd_getfd", err)
	}
	if _, err := in.Syscall(unix.SYS_CLOSE, tfd); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("close fd %d in process %d: %w", tfd, pid, err)
	}
	return fd, nil
}

// FindSyscall locates a `syscall` instruction in pid's [vdso] and returns
// its address together with the vdso's start.
func FindSyscall(pid int) (addr, vdso uint64, err error) {
	start, end, err := specialMapping(pid, "[vdso]")
	if err != nil {
		return 0, 0, err
	}
	buf := make([]byte, end-start)
	if err := ReadMem(pid, start, buf); err != nil {
		return 0, 0, fmt.Errorf("read vdso of %d: %w", pid, err)
	}
	i := bytes.Index(buf, []byte{0x0f, 0x05})
	if i < 0 {
		return 0, 0, fmt.Errorf("no syscall instruction in the vdso of %d", pid)
	}
	return start + uint64(i), start, nil
}

func specialMapping(pid int, name string) (uint64, uint64, error) {
	maps, err := procfs.Maps(pid)
	if err != nil {
		return 0, 0, err
	}
	for _, m := range maps {
		if m.Name == name {
			return m.Start, m.End, nil
		}
	}
	return 0, 0, fmt.Errorf("process %d has no %s mapping", pid, name)
}
