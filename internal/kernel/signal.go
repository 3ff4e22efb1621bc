package kernel

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// kSigaction is struct sigaction as the kernel takes it (x86-64).
type kSigaction struct {
	handler  uintptr
	flags    uint64
	restorer uintptr
	mask     uint64
}

// SigDefault sets sig's disposition to SIG_DFL for the whole process,
// under the Go runtime's feet (os/signal cannot: Reset gives a signal
// back to the runtime's own handler). For a process about to die or stop
// by sig.
func SigDefault(sig unix.Signal) error {
	act := kSigaction{} // SIG_DFL is 0
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), 0, 8, 0, 0)
	if e != 0 {
		return os.NewSyscallError("rt_sigaction", e)
	}
	return nil
}

// SigQueueMark is the value ferry's own queued signals carry (SI_QUEUE),
// so that a stand-in can tell them from the others.
const SigQueueMark = 0x66657279 // "fery"

// SigQueue sends sig to pid with si_code SI_QUEUE and SigQueueMark as its
// value (rt_sigqueueinfo).
func SigQueue(pid int, sig unix.Signal) error {
	var info [128]byte
	*(*int32)(unsafe.Pointer(&info[0])) = int32(sig)
	*(*int32)(unsafe.Pointer(&info[8])) = -1 // SI_QUEUE
	*(*int32)(unsafe.Pointer(&info[16])) = int32(os.Getpid())
	*(*uint32)(unsafe.Pointer(&info[20])) = uint32(os.Getuid())
	*(*int32)(unsafe.Pointer(&info[24])) = SigQueueMark // si_value.sival_int
	_, _, e := unix.RawSyscall(unix.SYS_RT_SIGQUEUEINFO, uintptr(pid), uintptr(sig), uintptr(unsafe.Pointer(&info[0])))
	if e != 0 {
		return os.NewSyscallError("rt_sigqueueinfo", e)
	}
	return nil
}
