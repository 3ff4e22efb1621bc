package bench

import "unsafe"

// addrOf returns the address of b's first byte, for a process_vm_writev
// into this process's own memory. b must stay mapped while the address is
// in use; it is memory from mmap, which the garbage collector never moves.
func addrOf(b []byte) uintptr { return uintptr(unsafe.Pointer(&b[0])) }
