package ptrace

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// Call is one system call of a batch.
type Call struct {
	Nr   uintptr
	Args [6]uint64
}

// batchStub runs a table of system calls: r12 points at entries of 64
// bytes (nr, six arguments, result), r13 counts them. It stops at the
// first call that fails; done, it makes one more call (getpid), a marker
// whose exit stop ends a batch run under PTRACE_SYSCALL, and traps (int3),
// which ends a batch run under PTRACE_CONT.
//
//	loop: test r13, r13        4d 85 ed
//	      jz done              74 3a
//	      mov rax, [r12]       49 8b 04 24
//	      mov rdi, [r12+8]     49 8b 7c 24 08
//	      mov rsi, [r12+16]    49 8b 74 24 10
//	      mov rdx, [r12+24]    49 8b 54 24 18
//	      mov r10, [r12+32]    4d 8b 54 24 20
//	      mov r8, [r12+40]     4d 8b 44 24 28
//	      mov r9, [r12+48]     4d 8b 4c 24 30
//	      syscall              0f 05
//	      mov [r12+56], rax    49 89 44 24 38
//	      cmp rax, -4095       48 3d 01 f0 ff ff
//	      jae done             73 09
//	      add r12, 64          49 83 c4 40
//	      dec r13              49 ff cd
//	      jmp loop             eb c1
//	done: mov eax, 39          b8 27 00 00 00
//	      syscall              0f 05
//	      int3                 cc
var batchStub = []byte{
	0x4d, 0x85, 0xed,
	0x74, 0x3a,
	0x49, 0x8b, 0x04, 0x24,
	0x49, 0x8b, 0x7c, 0x24, 0x08,
	0x49, 0x8b, 0x74, 0x24, 0x10,
	0x49, 0x8b, 0x54, 0x24, 0x18,
	0x4d, 0x8b, 0x54, 0x24, 0x20,
	0x4d, 0x8b, 0x44, 0x24, 0x28,
	0x4d, 0x8b, 0x4c, 0x24, 0x30,
	0x0f, 0x05,
	0x49, 0x89, 0x44, 0x24, 0x38,
	0x48, 0x3d, 0x01, 0xf0, 0xff, 0xff,
	0x73, 0x09,
	0x49, 0x83, 0xc4, 0x40,
	0x49, 0xff, 0xcd,
	0xeb, 0xc1,
	0xb8, 0x27, 0x00, 0x00, 0x00,
	0x0f, 0x05,
	0xcc,
}

const (
	batchEntry = 64
	batchTable = 256 // offset of the table in the batch area
)

// SetBatchArea gives the injector memory of the target that is readable,
// writable and executable, for Batch: the stub and its table go there.
func (in *Injector) SetBatchArea(addr, size uint64) {
	in.batchAddr, in.batchSize, in.stubWritten = addr, size, false
}

// Batch runs calls in order in the thread with a single stop (one
// injection instead of one per call): a process with many mappings is
// rebuilt in a fraction of the time. It stops at the first call that
// fails. It returns the result of every call that ran (the failed one
// last, as -errno) and, if one failed, an error naming it. Without a
// batch area it injects the calls one by one. Calls that create tasks
// (clone) must not be batched.
func (in *Injector) Batch(calls []Call) ([]uint64, error) {
	if in.batchAddr == 0 {
		var res []uint64
		for _, c := range calls {
			r, err := in.Syscall(c.Nr, c.Args[:]...)
			res = append(res, r)
			if err != nil {
				return res, fmt.Errorf("syscall %d: %w", c.Nr, err)
			}
		}
		return res, nil
	}
	if !in.stubWritten {
		if err := WriteMem(in.TID, in.batchAddr, batchStub); err != nil {
			return nil, fmt.Errorf("write the batch stub: %w", err)
		}
		in.stubWritten = true
	}
	per := int((in.batchSize - batchTable) / batchEntry)
	var res []uint64
	for len(calls) > 0 {
		n := min(len(calls), per)
		r, err := in.batch(calls[:n])
		res = append(res, r...)
		if err != nil {
			return res, err
		}
		calls = calls[n:]
	}
	return res, nil
}

// runToTrap resumes the thread until the stub's int3 (PTRACE_CONT).
func (in *Injector) runToTrap() error {
	sig := 0
	for {
		if err := unix.PtraceCont(in.TID, sig); err != nil {
			return fmt.Errorf("continue: %w", err)
		}
		sig = 0
		ws, err := Wait(in.TID)
		if err != nil {
			return err
		}
		if ws.Exited() || ws.Signaled() {
			return fmt.Errorf("%w (%s)", ErrExited, Describe(ws))
		}
		if !ws.Stopped() {
			continue
		}
		if kernel.StopEvent(ws) != 0 {
			continue // a group-stop or event stop: go on
		}
		s := ws.StopSignal()
		if s == unix.SIGTRAP {
			break // the stub's int3
		}
		switch s {
		case unix.SIGSEGV, unix.SIGBUS, unix.SIGILL, unix.SIGFPE:
			var r kernel.PtraceRegs
			kernel.PtraceGetRegs(in.TID, &r)
			return fmt.Errorf("%v at %#x", s, r.Rip)
		}
		// Everything blockable is blocked; a stop signal is remembered
		// and suppressed, as with single calls.
		in.StopSeen = s
	}
	in.atSyscallStop = false
	return nil
}

func (in *Injector) batch(calls []Call) ([]uint64, error) {
	table := make([]byte, len(calls)*batchEntry)
	for i, c := range calls {
		e := table[i*batchEntry:]
		binary.LittleEndian.PutUint64(e[0:], uint64(c.Nr))
		for j, a := range c.Args {
			binary.LittleEndian.PutUint64(e[8+8*j:], a)
		}
	}
	tableAddr := in.batchAddr + batchTable
	if err := WriteMem(in.TID, tableAddr, table); err != nil {
		return nil, fmt.Errorf("write the batch table: %w", err)
	}
	regs := in.saved
	regs.Rip = in.batchAddr
	regs.R12, regs.R13 = tableAddr, uint64(len(calls))
	regs.Orig_rax = ^uint64(0)
	regs.Eflags &^= 0x100
	if err := kernel.PtraceSetRegs(in.TID, &regs); err != nil {
		return nil, fmt.Errorf("inject a batch into %d: set registers: %w", in.TID, err)
	}
	trapEnd := in.batchAddr + uint64(len(batchStub))
	if in.trapOK {
		if err := in.runToTrap(); err != nil {
			return nil, fmt.Errorf("inject a batch into %d: %w", in.TID, err)
		}
	} else {
		// The int3 would touch the program's SIGTRAP (ignored or
		// pending): run from system-call stop to stop instead, to the
		// marker's exit.
		marker := trapEnd - 1
		entered := false
		for {
			if err := unix.PtraceSyscall(in.TID, 0); err != nil {
				return nil, fmt.Errorf("inject a batch into %d: resume: %w", in.TID, err)
			}
			exit, err := in.waitSyscallStop(&entered, func(ip uint64) bool { return ip == marker })
			if err != nil {
				return nil, fmt.Errorf("inject a batch into %d: %w", in.TID, err)
			}
			if exit {
				break
			}
		}
		in.atSyscallStop = true
		trapEnd = marker
	}
	var r kernel.PtraceRegs
	if err := kernel.PtraceGetRegs(in.TID, &r); err != nil {
		return nil, fmt.Errorf("inject a batch into %d: get registers: %w", in.TID, err)
	}
	if r.Rip != trapEnd {
		return nil, fmt.Errorf("inject a batch into %d: trapped at %#x, not at the end of the stub", in.TID, r.Rip)
	}
	ran := len(calls) - int(r.R13)
	if r.R13 != 0 {
		ran++ // the failed call is still counted in r13
	}
	out := make([]byte, ran*batchEntry)
	if err := ReadMem(in.TID, tableAddr, out); err != nil {
		return nil, fmt.Errorf("read the batch results: %w", err)
	}
	res := make([]uint64, ran)
	for i := range res {
		res[i] = binary.LittleEndian.Uint64(out[i*batchEntry+56:])
	}
	if r.R13 != 0 {
		last := res[ran-1]
		return res, fmt.Errorf("syscall %d: %w", calls[ran-1].Nr, unix.Errno(-int64(last)))
	}
	return res, nil
}
