package feature

import (
	"os"
	"runtime"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// The few raw calls the probes make that neither x/sys/unix nor
// internal/kernel wrap yet. They are private on purpose: clone3 here is a
// fork of a Go process that is only safe because the child exits at once,
// and the rest are one-line prctl/rseq/timer_create uses that belong in
// internal/kernel (prctl.go, rseq.go, timer.go) once that package grows them.

// addrOf returns the address of b's first byte, to hand to the kernel.
// b must be non-empty and kept alive by the caller while the kernel uses it.
func addrOf(b []byte) uint64 {
	return uint64(uintptr(unsafe.Pointer(&b[0])))
}

// prctlGetInt calls a prctl that stores an int at arg2
// (PR_GET_CHILD_SUBREAPER, ...).
func prctlGetInt(option int) (int, error) {
	var v int32
	_, _, e := unix.Syscall6(unix.SYS_PRCTL, uintptr(option), uintptr(unsafe.Pointer(&v)), 0, 0, 0, 0)
	if e != 0 {
		return 0, os.NewSyscallError("prctl", e)
	}
	return int(v), nil
}

// prctlMMMapSize asks prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE) for the size of
// struct prctl_mm_map; it changes nothing but needs CONFIG_CHECKPOINT_RESTORE.
func prctlMMMapSize() (uint32, error) {
	var size uint32
	_, _, e := unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP_SIZE,
		uintptr(unsafe.Pointer(&size)), 0, 0, 0)
	if e != 0 {
		return 0, os.NewSyscallError("prctl(PR_SET_MM_MAP_SIZE)", e)
	}
	return size, nil
}

// timerCreateWithID calls timer_create(clock, NULL, &id) with id preset:
// under PR_TIMER_CREATE_RESTORE_IDS the kernel takes the ID from there
// instead of allocating one. A NULL sigevent means SIGALRM; the timer is
// never armed.
func timerCreateWithID(clock int, id int32) (int32, error) {
	_, _, e := unix.Syscall(unix.SYS_TIMER_CREATE, uintptr(clock), 0, uintptr(unsafe.Pointer(&id)))
	if e != 0 {
		return 0, os.NewSyscallError("timer_create", e)
	}
	return id, nil
}

// rseq(2) registration of the original 32-byte struct rseq
// (include/uapi/linux/rseq.h); RSEQ_SIG is the x86 abort signature.
const (
	rseqLen = 32
	rseqSig = 0x53053053
)

// rseqRegister registers a 32-byte-aligned struct rseq inside area (at least
// 2*rseqLen bytes, kept alive for the thread's life) for the calling thread
// and returns its address. EBUSY: the thread has one already (glibc).
func rseqRegister(area []byte) (uint64, error) {
	addr := (addrOf(area) + rseqLen - 1) &^ (rseqLen - 1)
	_, _, e := unix.Syscall6(unix.SYS_RSEQ, uintptr(addr), rseqLen, 0, rseqSig, 0, 0)
	if e != 0 {
		return 0, os.NewSyscallError("rseq", e)
	}
	return addr, nil
}

// forkWithTID forks the calling process with clone3 and set_tid = [tid]
// (innermost PID namespace only) and returns the child's PID. The child
// exits at once with status 0 without running any Go code: it is a copy of
// one thread of a multithreaded runtime. Signals are blocked around the
// call so that no handler can run in the child either.
func forkWithTID(tid int32) (int, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	tids := [1]int32{tid}
	args := kernel.CloneArgs{
		ExitSignal: uint64(unix.SIGCHLD),
		SetTID:     uint64(uintptr(unsafe.Pointer(&tids[0]))),
		SetTIDSize: 1,
	}
	var all, old unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_SETMASK, &all, &old); err != nil {
		return 0, err
	}
	pid, errno := clone3ExitChild(&args, unix.CLONE_ARGS_SIZE_VER1)
	unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	runtime.KeepAlive(&tids)
	if errno != 0 {
		return 0, os.NewSyscallError("clone3", errno)
	}
	return int(pid), nil
}

// clone3ExitChild is the fork itself: raw calls only, no stack growth, no
// race instrumentation, so that the child reaches exit_group untouched.
//
//go:nosplit
//go:norace
func clone3ExitChild(args *kernel.CloneArgs, size uintptr) (uintptr, syscall.Errno) {
	r, _, e := syscall.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(args)), size, 0)
	if e == 0 && r == 0 {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	return r, e
}
