package kernel

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Compile-time checks that the Go structs match the C layouts the request
// codes in uffd.go encode: an index out of range fails the build.
var (
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioAPIArg{})-24]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioRange{})-16]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioRegisterArg{})-32]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioCopyArg{})-40]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioZeropageArg{})-32]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioWriteprotectArg{})-24]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioContinueArg{})-32]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioPoisonArg{})-32]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdioMoveArg{})-40]
	_ = [1]struct{}{}[unsafe.Sizeof(UffdMsg{})-UffdMsgSize]
)

// Userfaultfd wraps userfaultfd(2). flags: O_CLOEXEC, O_NONBLOCK,
// UFFD_USER_MODE_ONLY. Without CAP_SYS_PTRACE the kernel requires
// UFFD_USER_MODE_ONLY unless vm.unprivileged_userfaultfd is 1.
func Userfaultfd(flags int) (int, error) {
	fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, uintptr(flags), 0, 0)
	if e != 0 {
		return -1, os.NewSyscallError("userfaultfd", e)
	}
	return int(fd), nil
}

// UserfaultfdIocNew wraps ioctl(USERFAULTFD_IOC_NEW) on an open
// /dev/userfaultfd and returns the new userfaultfd.
func UserfaultfdIocNew(devFd int, flags int) (int, error) {
	for {
		fd, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(devFd), USERFAULTFD_IOC_NEW, uintptr(flags))
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return -1, os.NewSyscallError("ioctl(USERFAULTFD_IOC_NEW)", e)
		}
		return int(fd), nil
	}
}

// uffdIoctl issues one userfaultfd ioctl. Requests that make partial
// progress report it in their argument, so EINTR is retried only when
// retry is set (idempotent requests).
func uffdIoctl(fd int, req uintptr, arg unsafe.Pointer, name string, retry bool) error {
	for {
		_, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
		if e == unix.EINTR && retry {
			continue
		}
		if e != 0 {
			return os.NewSyscallError("ioctl("+name+")", e)
		}
		return nil
	}
}

// UffdioAPI wraps ioctl(UFFDIO_API), the handshake that must come first.
// arg.API must be UFFD_API; with arg.Features = 0 the kernel fills in every
// feature it supports. EINVAL on a second call or for unsupported features.
func UffdioAPI(fd int, arg *UffdioAPIArg) error {
	err := uffdIoctl(fd, UFFDIO_API, unsafe.Pointer(arg), "UFFDIO_API", true)
	runtime.KeepAlive(arg)
	return err
}

// UffdioRegister wraps ioctl(UFFDIO_REGISTER).
func UffdioRegister(fd int, arg *UffdioRegisterArg) error {
	err := uffdIoctl(fd, UFFDIO_REGISTER, unsafe.Pointer(arg), "UFFDIO_REGISTER", true)
	runtime.KeepAlive(arg)
	return err
}

// UffdioUnregister wraps ioctl(UFFDIO_UNREGISTER).
func UffdioUnregister(fd int, r *UffdioRange) error {
	err := uffdIoctl(fd, UFFDIO_UNREGISTER, unsafe.Pointer(r), "UFFDIO_UNREGISTER", true)
	runtime.KeepAlive(r)
	return err
}

// UffdioWake wraps ioctl(UFFDIO_WAKE): wake threads waiting on faults in r
// after a *_MODE_DONTWAKE resolution.
func UffdioWake(fd int, r *UffdioRange) error {
	err := uffdIoctl(fd, UFFDIO_WAKE, unsafe.Pointer(r), "UFFDIO_WAKE", true)
	runtime.KeepAlive(r)
	return err
}

// UffdioCopy wraps ioctl(UFFDIO_COPY). EEXIST: the page is already mapped;
// EAGAIN: interrupted by a change of the mm, arg.Copy bytes were copied.
func UffdioCopy(fd int, arg *UffdioCopyArg) error {
	err := uffdIoctl(fd, UFFDIO_COPY, unsafe.Pointer(arg), "UFFDIO_COPY", false)
	runtime.KeepAlive(arg)
	return err
}

// UffdioZeropage wraps ioctl(UFFDIO_ZEROPAGE); progress in arg.Zeropage.
func UffdioZeropage(fd int, arg *UffdioZeropageArg) error {
	err := uffdIoctl(fd, UFFDIO_ZEROPAGE, unsafe.Pointer(arg), "UFFDIO_ZEROPAGE", false)
	runtime.KeepAlive(arg)
	return err
}

// UffdioWriteprotect wraps ioctl(UFFDIO_WRITEPROTECT): protect (mode WP) or
// unprotect the range. On a UFFD_FEATURE_WP_ASYNC fd a write to a protected
// page just clears the protection, which PAGEMAP_SCAN reports as written.
func UffdioWriteprotect(fd int, arg *UffdioWriteprotectArg) error {
	err := uffdIoctl(fd, UFFDIO_WRITEPROTECT, unsafe.Pointer(arg), "UFFDIO_WRITEPROTECT", true)
	runtime.KeepAlive(arg)
	return err
}

// ReadUffdMsgs wraps read(2) on a userfaultfd: it fills msgs with whole
// messages and returns how many. A non-blocking fd with nothing pending
// returns EAGAIN.
func ReadUffdMsgs(fd int, msgs []UffdMsg) (int, error) {
	if len(msgs) == 0 {
		return 0, nil
	}
	b := unsafe.Slice((*byte)(unsafe.Pointer(&msgs[0])), len(msgs)*UffdMsgSize)
	for {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, os.NewSyscallError("read(userfaultfd)", err)
		}
		return n / UffdMsgSize, nil
	}
}
