package dirty

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// addrOf returns the address of b's first byte, to tell the test where
// the helper's memory is.
func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }

// mapFixed maps fresh anonymous memory over b, replacing its VMA.
func mapFixed(b []byte) error {
	_, _, e := unix.Syscall6(unix.SYS_MMAP, uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED, ^uintptr(0), 0)
	if e != 0 {
		return e
	}
	return nil
}
