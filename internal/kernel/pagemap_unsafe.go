package kernel

import (
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Layout checks (see uffd_unsafe.go).
var (
	_ = [1]struct{}{}[unsafe.Sizeof(PmScanArg{})-PmScanArgSize]
	_ = [1]struct{}{}[unsafe.Sizeof(PageRegion{})-PageRegionSize]
)

// PagemapScan wraps ioctl(PAGEMAP_SCAN) on an open /proc/PID/pagemap fd. It
// sets arg.Size, fills the regions arg.Vec points at (see SetVec) and
// returns how many. The walk stops early, with arg.WalkEnd < arg.End, when
// the vector fills up or arg.MaxPages is reached: call again from WalkEnd.
// On error arg.WalkEnd still tells how far the walk got, so EINTR is not
// retried here. ENOTTY: the kernel predates 6.7.
func PagemapScan(fd int, arg *PmScanArg) (int, error) {
	arg.Size = PmScanArgSize
	n, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), PAGEMAP_SCAN, uintptr(unsafe.Pointer(arg)))
	runtime.KeepAlive(arg)
	if e != 0 {
		return 0, os.NewSyscallError("ioctl(PAGEMAP_SCAN)", e)
	}
	return int(n), nil
}
