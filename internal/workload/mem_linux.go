package workload

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapAnon returns size bytes of private anonymous memory outside the Go heap,
// so the garbage collector never scans it and a checkpoint sees it as one
// plain anonymous mapping.
func mapAnon(size int) ([]byte, error) {
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	// With transparent huge pages a single 4 KiB write marks a whole 2 MiB
	// page dirty, and the dirty rate a migration sees would be hundreds of
	// times the configured one. Best effort: EINVAL without THP support.
	_ = unix.Madvise(b, unix.MADV_NOHUGEPAGE)
	return b, nil
}

// unmapAnon releases memory from mapAnon.
func unmapAnon(b []byte) error {
	return os.NewSyscallError("munmap", unix.Munmap(b))
}
