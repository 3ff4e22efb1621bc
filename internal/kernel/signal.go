package kernel

import (
	"encoding/binary"
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
// back to the runtime's own handler), and returns what puts the old one
// back. For a process about to die or stop by sig.
func SigDefault(sig unix.Signal) (restore func() error, err error) {
	act, old := kSigaction{}, kSigaction{} // SIG_DFL is 0
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&act)), uintptr(unsafe.Pointer(&old)), 8, 0, 0)
	if e != 0 {
		return nil, os.NewSyscallError("rt_sigaction", e)
	}
	return func() error {
		_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig), uintptr(unsafe.Pointer(&old)), 0, 8, 0, 0)
		if e != 0 {
			return os.NewSyscallError("rt_sigaction", e)
		}
		return nil
	}, nil
}

// si_code values of SIGCHLD (include/uapi/asm-generic/siginfo.h).
const (
	CLD_EXITED = iota + 1
	CLD_KILLED
	CLD_DUMPED
	CLD_TRAPPED
	CLD_STOPPED
	CLD_CONTINUED
)

// WaitidInfo reads si_code, si_status and si_pid of a waitid result.
func WaitidInfo(si *unix.Siginfo) (code, status, pid int) {
	b := (*[128]byte)(unsafe.Pointer(si))
	code = int(int32(binary.LittleEndian.Uint32(b[8:])))
	pid = int(int32(binary.LittleEndian.Uint32(b[16:])))
	status = int(int32(binary.LittleEndian.Uint32(b[24:])))
	return
}
