package ptrace

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// ExecInPlace turns the frozen process into another program, path with
// argv and envp, keeping what makes it itself for the others: its PID,
// its parent, process group, session, credentials, and the fds in keep
// (their close-on-exec flag is cleared; every other fd is closed first).
// It is how a process moved away alone leaves its stand-in at home
// (package deputy): its parent still has the child it forked.
//
// The signal mask stays all-blocked across the exec, so a signal sent to
// the process meanwhile stays pending for the new program (which takes
// it once it unblocks it) instead of meeting a default disposition. Threads
// other than the leader are ended first (an injected exit each). On
// success the process runs the new program, detached; on error it may be
// left damaged (its memory and fds are the old program's no longer):
// only call it once the process has a new life elsewhere.
// Must run on the tracer thread.
func (f *Frozen) ExecInPlace(path string, argv, envp []string, keep []int) error {
	return f.execInPlace(path, argv, envp, keep, false)
}

// ExecTraced is ExecInPlace without letting go: the process is left
// stopped at the new program's first instruction, traced (the restore of
// a process that comes home takes it from there, restore.Options.Into).
func (f *Frozen) ExecTraced(path string, argv, envp []string) error {
	return f.execInPlace(path, argv, envp, nil, true)
}

func (f *Frozen) execInPlace(path string, argv, envp []string, keep []int, traced bool) error {
	if f.detached {
		return fmt.Errorf("exec in %d: not frozen", f.PID)
	}
	if err := unix.Access(path, unix.X_OK); err != nil {
		return fmt.Errorf("exec in %d: %s: %w", f.PID, path, err)
	}
	addr, _, err := FindSyscall(f.PID)
	if err != nil {
		return err
	}
	// The other threads go first: exec would end them anyway, waiting
	// for their tracer (us) meanwhile.
	for _, tid := range slices.Clone(f.TIDs[1:]) {
		in, err := NewInjector(tid, addr)
		if err != nil {
			return err
		}
		if err := in.AvoidTraps(); err != nil {
			return err
		}
		if _, err := in.RawSyscall(unix.SYS_EXIT, 0); err != nil && !errors.Is(err, ErrExited) {
			return fmt.Errorf("exec in %d: end thread %d: %w", f.PID, tid, err)
		}
		f.drop(tid)
	}
	in, err := NewInjector(f.PID, addr)
	if err != nil {
		return err
	}
	if err := in.AvoidTraps(); err != nil {
		return err
	}
	fds, err := procfs.FDs(f.PID)
	if err != nil {
		return fmt.Errorf("exec in %d: %w", f.PID, err)
	}
	for _, fd := range fds {
		if slices.Contains(keep, fd) {
			if _, err := in.Syscall(unix.SYS_FCNTL, uint64(fd), unix.F_SETFD, 0); err != nil {
				return fmt.Errorf("exec in %d: keep fd %d: %w", f.PID, fd, err)
			}
			continue
		}
		if _, err := in.Syscall(unix.SYS_CLOSE, uint64(fd)); err != nil {
			return fmt.Errorf("exec in %d: close fd %d: %w", f.PID, fd, err)
		}
	}
	if err := in.Exec(path, argv, envp); err != nil {
		return fmt.Errorf("exec in %d: %w", f.PID, err)
	}
	f.TIDs = []int{f.PID}
	if traced {
		f.detached = true // no longer the Frozen's: the caller's
		return nil
	}
	if err := detach(f.PID, 0); err != nil {
		return fmt.Errorf("exec in %d: detach: %w", f.PID, err)
	}
	f.detached = true
	return nil
}

// Exec makes the thread (the leader of a process with no other thread)
// run execve(path, argv, envp), from the call's entry stop to its exit
// stop: on success it sits at the new program's first instruction, still
// traced; the registers the Injector saved are of no use any more.
func (in *Injector) Exec(path string, argv, envp []string) error {
	// path, argv and envp in memory of the process's own.
	blob, offs := execBlob(path, argv, envp)
	size := uint64(len(blob)+4095) &^ 4095
	mem, err := in.Syscall(unix.SYS_MMAP, 0, size, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	for _, o := range offs {
		// Pointers are offsets until the blob's address is known.
		binary.LittleEndian.PutUint64(blob[o:], binary.LittleEndian.Uint64(blob[o:])+mem)
	}
	if err := WriteMem(in.TID, mem, blob); err != nil {
		return err
	}
	argvAt := mem + uint64(len(path)+1)
	envpAt := argvAt + uint64(8*(len(argv)+1))
	// The exec itself: from its entry stop to its exit stop, at the new
	// program's first instruction.
	regs := in.saved
	regs.Rip = in.Addr
	regs.Rax = unix.SYS_EXECVE
	regs.Orig_rax = ^uint64(0)
	regs.Rdi, regs.Rsi, regs.Rdx = mem, argvAt, envpAt
	regs.Eflags &^= 0x100
	if err := kernel.PtraceSetRegs(in.TID, &regs); err != nil {
		return fmt.Errorf("set registers: %w", err)
	}
	entered := false
	for {
		if err := unix.PtraceSyscall(in.TID, 0); err != nil {
			return fmt.Errorf("resume to the call: %w", err)
		}
		exit, err := in.waitSyscallStop(&entered, func(uint64) bool { return true })
		if err != nil {
			return err
		}
		if exit {
			break
		}
	}
	if err := kernel.PtraceGetRegs(in.TID, &regs); err != nil {
		return fmt.Errorf("get registers: %w", err)
	}
	if r := int64(regs.Rax); r < 0 && r > -4096 {
		return fmt.Errorf("execve %s: %w", path, unix.Errno(-r))
	}
	in.restored = true
	return nil
}

// execBlob lays out path, then argv's and envp's pointer arrays (as
// offsets into the blob, at offs), then the strings.
func execBlob(path string, argv, envp []string) (blob []byte, offs []int) {
	var b bytes.Buffer
	b.WriteString(path)
	b.WriteByte(0)
	arrays := b.Len()
	n := len(argv) + 1 + len(envp) + 1
	b.Write(make([]byte, 8*n))
	blob = b.Bytes()
	var strs []byte
	at := func(i int, s string) {
		o := arrays + 8*i
		binary.LittleEndian.PutUint64(blob[o:], uint64(len(blob)+len(strs)))
		offs = append(offs, o)
		strs = append(strs, s...)
		strs = append(strs, 0)
	}
	for i, s := range argv {
		at(i, s)
	}
	for i, s := range envp {
		at(len(argv)+1+i, s)
	}
	return append(blob, strs...), offs
}
