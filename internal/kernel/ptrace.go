package kernel

import (
	"golang.org/x/sys/unix"
)

// Syscall restart codes a thread interrupted inside a system call carries in
// rax (include/linux/errno.h; kernel-internal, never seen by user space).
const (
	ERESTARTSYS           = 512
	ERESTARTNOINTR        = 513
	ERESTARTNOHAND        = 514
	ERESTART_RESTARTBLOCK = 516
)

// Syscall numbers used when rewriting interrupted calls (x86-64).
const (
	SYS_RESTART_SYSCALL = 219
	SYS_NANOSLEEP       = 35
	SYS_CLOCK_NANOSLEEP = 230
)

// PtraceRegs is struct user_regs_struct (arch/x86/include/asm/user_64.h).
type PtraceRegs = unix.PtraceRegs

// RegsWords is the number of 64-bit words in PtraceRegs.
const RegsWords = 27

// XstateMax is the buffer offered for NT_X86_XSTATE; the kernel trims the
// iovec to the real size (2432 bytes on these machines, more with AVX-512).
const XstateMax = 16384

// RseqConfig is struct ptrace_rseq_configuration (include/uapi/linux/ptrace.h).
type RseqConfig struct {
	RseqAbiPointer uint64
	RseqAbiSize    uint32
	Signature      uint32
	Flags          uint32
	Pad            uint32
}

// PeekSiginfoArgs is struct ptrace_peeksiginfo_args.
type PeekSiginfoArgs struct {
	Off   uint64
	Flags uint32
	Nr    int32
}

// SiginfoSize is sizeof(siginfo_t).
const SiginfoSize = 128

// Wait status helpers for ptrace stops (see ptrace(2) "Stopped states").

// StopEvent returns the PTRACE_EVENT_* number of a stop, 0 for none.
func StopEvent(ws unix.WaitStatus) int { return int(ws>>16) & 0xff }

// CloneArgs is struct clone_args (include/uapi/linux/sched.h), version 2
// (with set_tid and cgroup).
type CloneArgs struct {
	Flags      uint64
	Pidfd      uint64
	ChildTID   uint64
	ParentTID  uint64
	ExitSignal uint64
	Stack      uint64
	StackSize  uint64
	TLS        uint64
	SetTID     uint64
	SetTIDSize uint64
	Cgroup     uint64
}

// CloneArgsSize is sizeof(struct clone_args) for CLONE_ARGS_SIZE_VER2.
const CloneArgsSize = 88

// PrctlMMMap is struct prctl_mm_map (include/uapi/linux/prctl.h).
type PrctlMMMap struct {
	StartCode  uint64
	EndCode    uint64
	StartData  uint64
	EndData    uint64
	StartBrk   uint64
	Brk        uint64
	StartStack uint64
	ArgStart   uint64
	ArgEnd     uint64
	EnvStart   uint64
	EnvEnd     uint64
	Auxv       uint64 // user pointer to the auxv words
	AuxvSize   uint32
	ExeFd      uint32
}

// PrctlMMMapSize is sizeof(struct prctl_mm_map).
const PrctlMMMapSize = 104

// Kernel sigaction layout for rt_sigaction on x86-64
// (arch/x86/include/uapi/asm/signal.h, struct sigaction with sa_restorer).
type KSigaction struct {
	Handler  uint64
	Flags    uint64
	Restorer uint64
	Mask     uint64
}

// SA_RESTORER is required by x86-64 rt_sigaction for user handlers.
const SA_RESTORER = 0x04000000

// StackT is stack_t.
type StackT struct {
	SP    uint64
	Flags int32
	_     int32
	Size  uint64
}

// Itimerval is struct itimerval (timeval pairs, 64-bit).
type Itimerval struct {
	IntervalSec, IntervalUsec int64
	ValueSec, ValueUsec       int64
}

// Itimerspec is struct itimerspec.
type Itimerspec struct {
	IntervalSec, IntervalNsec int64
	ValueSec, ValueNsec       int64
}

// Sigevent is struct sigevent as timer_create reads it (64 bytes).
type Sigevent struct {
	Value  uint64
	Signo  int32
	Notify int32
	TID    int32
	_      [44]byte
}

// PR_TIMER_CREATE_RESTORE_IDS makes timer_create take the ID from
// *created_timer_id (include/uapi/linux/prctl.h, 6.15+).
const (
	PR_TIMER_CREATE_RESTORE_IDS     = 77
	PR_TIMER_CREATE_RESTORE_IDS_OFF = 0
	PR_TIMER_CREATE_RESTORE_IDS_ON  = 1
)

// PTRACE_GET_SYSCALL_INFO (Linux 5.3) and the op values of struct
// ptrace_syscall_info: what kind of stop a SIGTRAP stop is.
const (
	PTRACE_GET_SYSCALL_INFO     = 0x420e
	PTRACE_SYSCALL_INFO_NONE    = 0
	PTRACE_SYSCALL_INFO_ENTRY   = 1
	PTRACE_SYSCALL_INFO_EXIT    = 2
	PTRACE_SYSCALL_INFO_SECCOMP = 3
	ptraceSyscallInfoSize       = 88
)

// Seccomp through ptrace (include/uapi/linux/ptrace.h, seccomp.h).
const (
	PTRACE_SECCOMP_GET_FILTER   = 0x420c
	PTRACE_SECCOMP_GET_METADATA = 0x420d
	// PTRACE_O_SUSPEND_SECCOMP lets the tracer's injected system calls
	// past the tracee's seccomp filters (and strict mode) while it is
	// traced; it needs CAP_SYS_ADMIN.
	PTRACE_O_SUSPEND_SECCOMP = 1 << 21

	SECCOMP_MODE_STRICT     = 1
	SECCOMP_MODE_FILTER     = 2
	SECCOMP_SET_MODE_FILTER = 1
	SECCOMP_FILTER_FLAG_LOG = 1 << 1
	SECCOMP_RET_ACTION_FULL = 0xffff0000
	SECCOMP_RET_USER_NOTIF  = 0x7fc00000
	SizeofSockFilter        = 8 // struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
	SizeofSockFprog         = 16
	bpfRetK                 = 0x06 // BPF_RET | BPF_K
)

// SeccompUserNotif tells whether classic BPF program code (struct
// sock_filter array) can return SECCOMP_RET_USER_NOTIF: such a filter
// hands system calls to a supervisor through a listener fd.
func SeccompUserNotif(code []byte) bool {
	for i := 0; i+SizeofSockFilter <= len(code); i += SizeofSockFilter {
		op := uint16(code[i]) | uint16(code[i+1])<<8
		k := uint32(code[i+4]) | uint32(code[i+5])<<8 | uint32(code[i+6])<<16 | uint32(code[i+7])<<24
		if op == bpfRetK && k&SECCOMP_RET_ACTION_FULL == SECCOMP_RET_USER_NOTIF {
			return true
		}
	}
	return false
}
