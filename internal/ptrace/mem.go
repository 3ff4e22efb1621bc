package ptrace

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ReadMem reads len(b) bytes at addr of pid with process_vm_readv, falling
// back to /proc/PID/mem for ranges it cannot read (PROT_NONE).
func ReadMem(pid int, addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	n, err := unix.ProcessVMReadv(pid, local, remote, 0)
	if err == nil && n == len(b) {
		return nil
	}
	return memFile(pid, addr, b, false)
}

// ReadMemShared reads like ReadMem but through /proc/PID/mem only, for
// memory shared copy-on-write with another process: process_vm_readv pins
// the pages it reads, and pinning an anonymous page that is not exclusive
// makes the kernel unshare it (a copy for the reader's target), which
// would end the sharing in a process left running.
func ReadMemShared(pid int, addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	return memFile(pid, addr, b, false)
}

// WriteMem writes b at addr of pid with process_vm_writev, falling back to
// /proc/PID/mem (which can write read-only pages).
func WriteMem(pid int, addr uint64, b []byte) error {
	if len(b) == 0 {
		return nil
	}
	local := []unix.Iovec{{Base: &b[0], Len: uint64(len(b))}}
	remote := []unix.RemoteIovec{{Base: uintptr(addr), Len: len(b)}}
	n, err := unix.ProcessVMWritev(pid, local, remote, 0)
	if err == nil && n == len(b) {
		return nil
	}
	return memFile(pid, addr, b, true)
}

func memFile(pid int, addr uint64, b []byte, write bool) error {
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), flag, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	var n int
	if write {
		n, err = f.WriteAt(b, int64(addr))
	} else {
		n, err = f.ReadAt(b, int64(addr))
	}
	if err != nil || n != len(b) {
		op := "read"
		if write {
			op = "write"
		}
		return fmt.Errorf("%s %d bytes at %#x of %d: %w", op, len(b), addr, pid, err)
	}
	return nil
}
