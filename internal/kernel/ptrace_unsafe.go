package kernel

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

func ptrace4(req int, pid int, addr, data uintptr) error {
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, uintptr(req), uintptr(pid), addr, data, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// PtraceSeize wraps PTRACE_SEIZE with options.
func PtraceSeize(pid int, options int) error {
	return ptrace4(unix.PTRACE_SEIZE, pid, 0, uintptr(options))
}

// PtraceGetRegs reads NT_PRSTATUS with PTRACE_GETREGSET.
func PtraceGetRegs(tid int, regs *PtraceRegs) error {
	iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(regs)), Len: uint64(unsafe.Sizeof(*regs))}
	err := ptrace4(unix.PTRACE_GETREGSET, tid, uintptr(unix.NT_PRSTATUS), uintptr(unsafe.Pointer(&iov)))
	return err
}

// PtraceSetRegs writes NT_PRSTATUS with PTRACE_SETREGSET.
func PtraceSetRegs(tid int, regs *PtraceRegs) error {
	iov := unix.Iovec{Base: (*byte)(unsafe.Pointer(regs)), Len: uint64(unsafe.Sizeof(*regs))}
	return ptrace4(unix.PTRACE_SETREGSET, tid, uintptr(unix.NT_PRSTATUS), uintptr(unsafe.Pointer(&iov)))
}

// PtraceGetXstate reads NT_X86_XSTATE; the result is trimmed to the kernel's size.
func PtraceGetXstate(tid int) ([]byte, error) {
	buf := make([]byte, XstateMax)
	iov := unix.Iovec{Base: &buf[0], Len: uint64(len(buf))}
	if err := ptrace4(unix.PTRACE_GETREGSET, tid, uintptr(unix.NT_X86_XSTATE), uintptr(unsafe.Pointer(&iov))); err != nil {
		return nil, err
	}
	return buf[:iov.Len], nil
}

// PtraceSetXstate writes NT_X86_XSTATE.
func PtraceSetXstate(tid int, x []byte) error {
	if len(x) == 0 {
		return nil
	}
	iov := unix.Iovec{Base: &x[0], Len: uint64(len(x))}
	return ptrace4(unix.PTRACE_SETREGSET, tid, uintptr(unix.NT_X86_XSTATE), uintptr(unsafe.Pointer(&iov)))
}

// PtraceGetSigmask wraps PTRACE_GETSIGMASK.
func PtraceGetSigmask(tid int) (uint64, error) {
	var m uint64
	err := ptrace4(unix.PTRACE_GETSIGMASK, tid, 8, uintptr(unsafe.Pointer(&m)))
	return m, err
}

// PtraceSetSigmask wraps PTRACE_SETSIGMASK.
func PtraceSetSigmask(tid int, m uint64) error {
	return ptrace4(unix.PTRACE_SETSIGMASK, tid, 8, uintptr(unsafe.Pointer(&m)))
}

// PtracePeekSiginfo reads up to n queued siginfos from off; shared selects
// the process-wide queue.
func PtracePeekSiginfo(tid int, off uint64, n int, shared bool) ([][]byte, error) {
	buf := make([]byte, n*SiginfoSize)
	args := PeekSiginfoArgs{Off: off, Nr: int32(n)}
	if shared {
		args.Flags = unix.PTRACE_PEEKSIGINFO_SHARED
	}
	r, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_PEEKSIGINFO, uintptr(tid),
		uintptr(unsafe.Pointer(&args)), uintptr(unsafe.Pointer(&buf[0])), 0, 0)
	if e != 0 {
		return nil, e
	}
	out := make([][]byte, 0, r)
	for i := 0; i < int(r); i++ {
		out = append(out, buf[i*SiginfoSize:(i+1)*SiginfoSize])
	}
	return out, nil
}

// PtraceGetRseq wraps PTRACE_GET_RSEQ_CONFIGURATION.
func PtraceGetRseq(tid int) (RseqConfig, error) {
	var c RseqConfig
	r, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_GET_RSEQ_CONFIGURATION, uintptr(tid),
		unsafe.Sizeof(c), uintptr(unsafe.Pointer(&c)), 0, 0)
	if e != 0 {
		return c, e
	}
	_ = r
	return c, nil
}

// GetRobustList wraps get_robust_list(2) for another thread.
func GetRobustList(tid int) (head, length uint64, err error) {
	_, _, e := unix.Syscall(unix.SYS_GET_ROBUST_LIST, uintptr(tid),
		uintptr(unsafe.Pointer(&head)), uintptr(unsafe.Pointer(&length)))
	if e != 0 {
		return 0, 0, e
	}
	return head, length, nil
}

// Bytes views a fixed-size ABI struct as bytes, for writing it into a target.
func Bytes[T any](v *T) []byte {
	return unsafe.Slice((*byte)(unsafe.Pointer(v)), unsafe.Sizeof(*v))
}

// RegsToWords and WordsToRegs convert between PtraceRegs and the image's
// raw word slice.
func RegsToWords(r *PtraceRegs) []uint64 {
	w := unsafe.Slice((*uint64)(unsafe.Pointer(r)), RegsWords)
	return append([]uint64(nil), w...)
}

// WordsToRegs is the inverse of RegsToWords.
func WordsToRegs(w []uint64, r *PtraceRegs) {
	copy(unsafe.Slice((*uint64)(unsafe.Pointer(r)), RegsWords), w)
}

// PtraceSyscallInfo returns the op and instruction pointer of
// PTRACE_GET_SYSCALL_INFO for a stopped tracee: op is
// PTRACE_SYSCALL_INFO_ENTRY/EXIT at a system-call stop, NONE at any other
// stop (a signal-delivery stop).
func PtraceSyscallInfo(tid int) (op int, ip uint64, err error) {
	var buf [ptraceSyscallInfoSize]byte
	if err := ptrace4(PTRACE_GET_SYSCALL_INFO, tid, uintptr(len(buf)), uintptr(unsafe.Pointer(&buf[0]))); err != nil {
		return 0, 0, err
	}
	return int(buf[0]), *(*uint64)(unsafe.Pointer(&buf[8])), nil
}

// PtraceSeccompFilter returns the classic BPF program of seccomp filter
// index of stopped tracee tid (PTRACE_SECCOMP_GET_FILTER; index 0 is the
// newest), as the raw array of struct sock_filter. ENOENT: no filter at
// that index.
func PtraceSeccompFilter(tid, index int) ([]byte, error) {
	n, _, e := unix.Syscall6(unix.SYS_PTRACE, PTRACE_SECCOMP_GET_FILTER, uintptr(tid), uintptr(index), 0, 0, 0)
	if e != 0 {
		return nil, e
	}
	buf := make([]byte, int(n)*SizeofSockFilter)
	if n == 0 {
		return buf, nil
	}
	m, _, e := unix.Syscall6(unix.SYS_PTRACE, PTRACE_SECCOMP_GET_FILTER, uintptr(tid), uintptr(index),
		uintptr(unsafe.Pointer(&buf[0])), 0, 0)
	if e != 0 {
		return nil, e
	}
	if m != n {
		return nil, unix.EAGAIN // the filter changed under a stopped tracee: cannot happen
	}
	return buf, nil
}

// PtraceSeccompFlags returns the flags seccomp filter index of tid was
// installed with, as far as the kernel tells (SECCOMP_FILTER_FLAG_LOG;
// PTRACE_SECCOMP_GET_METADATA).
func PtraceSeccompFlags(tid, index int) (uint64, error) {
	md := struct{ FilterOff, Flags uint64 }{FilterOff: uint64(index)}
	_, _, e := unix.Syscall6(unix.SYS_PTRACE, PTRACE_SECCOMP_GET_METADATA, uintptr(tid), unsafe.Sizeof(md),
		uintptr(unsafe.Pointer(&md)), 0, 0)
	if e != 0 {
		return 0, e
	}
	return md.Flags, nil
}

// PtracePeekAllSiginfo reads the whole queue (thread or, with shared, the
// process-wide one), in the kernel's order, however long it is.
func PtracePeekAllSiginfo(tid int, shared bool) ([][]byte, error) {
	const batch = 256
	var out [][]byte
	for {
		got, err := PtracePeekSiginfo(tid, uint64(len(out)), batch, shared)
		if err != nil {
			return nil, fmt.Errorf("PTRACE_PEEKSIGINFO tid %d at %d: %w", tid, len(out), err)
		}
		out = append(out, got...)
		if len(got) < batch {
			return out, nil
		}
	}
}
