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

// f_owner_ex types.
const (
	F_OWNER_TID  = 0
	F_OWNER_PID  = 1
	F_OWNER_PGRP = 2
)

// FOwnerEx is struct f_owner_ex (include/uapi/asm-generic/fcntl.h): who
// gets the SIGIO of a file with O_ASYNC.
type FOwnerEx struct {
	Type int32 // F_OWNER_TID, F_OWNER_PID, F_OWNER_PGRP
	PID  int32
}

// GetOwnerEx wraps fcntl(fd, F_GETOWN_EX).
func GetOwnerEx(fd int) (FOwnerEx, error) {
	var o FOwnerEx
	_, _, e := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_GETOWN_EX, uintptr(unsafe.Pointer(&o)))
	if e != 0 {
		return o, os.NewSyscallError("fcntl(F_GETOWN_EX)", e)
	}
	return o, nil
}

// SetOwnerEx wraps fcntl(fd, F_SETOWN_EX).
func SetOwnerEx(fd int, o FOwnerEx) error {
	_, _, e := unix.Syscall(unix.SYS_FCNTL, uintptr(fd), unix.F_SETOWN_EX, uintptr(unsafe.Pointer(&o)))
	if e != 0 {
		return os.NewSyscallError("fcntl(F_SETOWN_EX)", e)
	}
	return nil
}

// kcmpEpollTfd is KCMP_EPOLL_TFD (include/uapi/linux/kcmp.h).
const kcmpEpollTfd = 7

// KcmpEpollTfd reports whether fd1 of pid1 is the file of the epoll item
// registered with fd number tfd (the toff-th such item) in epoll fd efd of
// pid2: kcmp(pid1, pid2, KCMP_EPOLL_TFD, fd1, &kcmp_epoll_slot).
func KcmpEpollTfd(pid1, fd1, pid2, efd, tfd int, toff uint64) (bool, error) {
	slot := struct {
		Efd, Tfd uint32
		Toff     uint64
	}{uint32(efd), uint32(tfd), toff}
	for {
		r, _, e := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), kcmpEpollTfd,
			uintptr(fd1), uintptr(unsafe.Pointer(&slot)), 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return false, os.NewSyscallError("kcmp(KCMP_EPOLL_TFD)", e)
		}
		return r == 0, nil
	}
}

// Sendmsg sends p with control data oob on the connected socket fd, as
// sendmsg(2) does: unlike unix.Sendmsg, an empty p stays empty (a
// zero-length SOCK_SEQPACKET record carrying files is a record of its own,
// where unix.Sendmsg would add a byte).
func Sendmsg(fd int, p, oob []byte, flags int) (int, error) {
	var msg unix.Msghdr
	var iov unix.Iovec
	if len(p) > 0 {
		iov.Base = &p[0]
		iov.SetLen(len(p))
		msg.Iov = &iov
		msg.SetIovlen(1)
	}
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	n, _, errno := unix.Syscall(unix.SYS_SENDMSG, uintptr(fd), uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	runtime.KeepAlive(p)
	runtime.KeepAlive(oob)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}
