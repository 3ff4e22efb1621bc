package kernel

import (
	"encoding/binary"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// GetsockoptPeerGroups wraps getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS): the
// supplementary groups of the process that connected a unix socket (or
// created a socketpair), as they were at connect(2) — the groups that go
// with SO_PEERCRED's uid and gid (Linux 4.13, net/core/sock.c). The
// kernel answers ERANGE with the size it needs when the buffer is short.
func GetsockoptPeerGroups(fd int) ([]uint32, error) {
	buf := make([]byte, 64*4)
	for {
		n := uint32(len(buf))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&n)), 0)
		runtime.KeepAlive(buf)
		switch {
		case e == unix.EINTR:
			continue
		case e == unix.ERANGE && int(n) > len(buf):
			buf = make([]byte, n)
			continue
		case e != 0:
			return nil, os.NewSyscallError("getsockopt(SO_PEERGROUPS)", e)
		}
		return parseGroups(buf[:n]), nil
	}
}

// parseGroups reads an array of gid_t (u32, native order: little endian on
// x86-64).
func parseGroups(b []byte) []uint32 {
	out := make([]uint32, 0, len(b)/4)
	for ; len(b) >= 4; b = b[4:] {
		out = append(out, binary.LittleEndian.Uint32(b))
	}
	return out
}
