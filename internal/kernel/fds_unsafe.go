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

// Futimens sets the access and modification times (ns since the epoch) of
// the file fd refers to: utimensat(fd, NULL, times, 0).
func Futimens(fd int, atimeNs, mtimeNs int64) error {
	ts := [2]unix.Timespec{unix.NsecToTimespec(atimeNs), unix.NsecToTimespec(mtimeNs)}
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return os.NewSyscallError("utimensat", e)
	}
	return nil
}
