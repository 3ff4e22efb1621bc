package kernel

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TimerfdSetTicks wraps ioctl(fd, TFD_IOC_SET_TICKS, &ticks): the number of
// expirations the next read(2) of timerfd fd returns.
func TimerfdSetTicks(fd int, ticks uint64) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), tfdIocSetTicks, uintptr(unsafe.Pointer(&ticks)))
		runtime.KeepAlive(&ticks)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return os.NewSyscallError("ioctl(TFD_IOC_SET_TICKS)", errno)
		}
		return nil
	}
}
