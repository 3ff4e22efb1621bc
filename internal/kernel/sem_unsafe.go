package kernel

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// semctlPtr is semctl with a pointer argument (union semun's buf/array).
func semctlPtr(id, num, cmd int, b []byte) (int, error) {
	for {
		r, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), uintptr(num), uintptr(cmd),
			uintptr(unsafe.Pointer(&b[0])), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(r), nil
	}
}

func semop(id int, b []byte, n int) error {
	for {
		_, _, errno := unix.Syscall(unix.SYS_SEMOP, uintptr(id), uintptr(unsafe.Pointer(&b[0])), uintptr(n))
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}
