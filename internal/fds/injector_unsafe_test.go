package fds

import (
	"fmt"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// localInjector is a test double for the restore engine's Injector: it
// executes the system calls in the test process itself, where the test has
// installed the restored files at the target's fd numbers. Scratch memory
// is an mmap'd page outside the Go heap, so its address stays valid.
type localInjector struct {
	page  []byte
	calls []string
}

func newLocalInjector(t *testing.T) *localInjector {
	t.Helper()
	page, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatalf("mmap scratch page: %v", err)
	}
	t.Cleanup(func() { unix.Munmap(page) })
	return &localInjector{page: page}
}

func (l *localInjector) Scratch(b []byte) (uint64, error) {
	if len(b) > len(l.page) {
		return 0, fmt.Errorf("scratch: %d bytes do not fit in %d", len(b), len(l.page))
	}
	copy(l.page, b)
	return uint64(uintptr(unsafe.Pointer(&l.page[0]))), nil
}

func (l *localInjector) Syscall(nr uintptr, args ...uint64) (uint64, error) {
	if len(args) > 6 {
		return 0, fmt.Errorf("syscall %d: %d arguments", nr, len(args))
	}
	var a [6]uintptr
	for i, v := range args {
		a[i] = uintptr(v)
	}
	l.calls = append(l.calls, fmt.Sprintf("%d%v", nr, args))
	r, _, errno := unix.Syscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if errno != 0 {
		return 0, errno
	}
	return uint64(r), nil
}
