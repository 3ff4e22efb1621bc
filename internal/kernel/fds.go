package kernel

// ABI used by internal/fds for file descriptors: kcmp(2), the AF_UNIX
// sock_diag netlink query, timerfd's checkpoint ioctl and the x86-64
// layout of struct epoll_event.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// kcmp types (include/uapi/linux/kcmp.h).
const (
	kcmpFile  = 0 // KCMP_FILE
	kcmpVM    = 1 // KCMP_VM
	kcmpFiles = 2 // KCMP_FILES
	kcmpFS    = 3 // KCMP_FS
)

// Kcmp object kinds KcmpOrder compares.
const (
	KcmpFilesTable = kcmpFiles // the fd table (CLONE_FILES)
	KcmpFSStruct   = kcmpFS    // cwd, root and umask (CLONE_FS)
	KcmpMemory     = kcmpVM    // the address space (CLONE_VM, vfork)
)

// KcmpOrder wraps kcmp(pid1, pid2, kind) for a per-process object (kind:
// KcmpFilesTable, KcmpFSStruct): 0 when the two processes share it, -1 or
// 1 otherwise (the kernel's order of the objects' obfuscated addresses: a
// total order to sort by).
func KcmpOrder(pid1, pid2, kind int) (int, error) {
	for {
		r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), uintptr(kind), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, os.NewSyscallError("kcmp", errno)
		}
		switch r {
		case 0:
			return 0, nil
		case 1:
			return -1, nil
		case 2:
			return 1, nil
		}
		return 0, fmt.Errorf("kcmp: unordered answer %d", r)
	}
}

// KcmpFile wraps kcmp(pid1, pid2, KCMP_FILE, fd1, fd2). It reports whether
// fd1 of pid1 and fd2 of pid2 refer to the same open file description; the
// kernel answers 0 for equal and 1, 2 or 3 otherwise. Needs CONFIG_KCMP and
// ptrace access to both processes.
func KcmpFile(pid1, fd1, pid2, fd2 int) (bool, error) {
	for {
		r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid1), uintptr(pid2), kcmpFile,
			uintptr(fd1), uintptr(fd2), 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return false, os.NewSyscallError("kcmp", errno)
		}
		return r == 0, nil
	}
}

// timerfd ioctls (include/uapi/linux/timerfd.h).
const (
	// TFD_IOC_SET_TICKS is _IOW('T', 0, __u64): set the number of expirations
	// a read(2) returns (needs CONFIG_CHECKPOINT_RESTORE).
	tfdIocSetTicks = 0x40085400
)

// sock_diag for AF_UNIX (include/uapi/linux/sock_diag.h, unix_diag.h).
const (
	udiagShowName     = 0x01 // UDIAG_SHOW_NAME
	udiagShowVFS      = 0x02 // UDIAG_SHOW_VFS
	udiagShowPeer     = 0x04 // UDIAG_SHOW_PEER
	udiagShowIcons    = 0x08 // UDIAG_SHOW_ICONS
	udiagShowRqlen    = 0x10 // UDIAG_SHOW_RQLEN
	unixDiagName      = 0    // UNIX_DIAG_NAME
	unixDiagVFS       = 1    // UNIX_DIAG_VFS
	unixDiagPeer      = 2    // UNIX_DIAG_PEER
	unixDiagIcons     = 3    // UNIX_DIAG_ICONS
	unixDiagRqlen     = 4    // UNIX_DIAG_RQLEN
	unixDiagShutdown  = 6    // UNIX_DIAG_SHUTDOWN
	sizeofUnixDiagReq = 24   // struct unix_diag_req
	sizeofUnixDiagMsg = 16   // struct unix_diag_msg
	inetDiagNoCookie  = ^uint32(0)
)

// Shutdown bits reported by UNIX_DIAG_SHUTDOWN (include/net/sock.h).
// Go names rather than C names, so that they cannot collide with other
// users of the same headers in this package.
const (
	UnixRcvShutdown  = 1 // RCV_SHUTDOWN
	UnixSendShutdown = 2 // SEND_SHUTDOWN
)

// States of AF_UNIX sockets (include/net/tcp_states.h).
const (
	UnixEstablished = 1  // TCP_ESTABLISHED
	UnixClose       = 7  // TCP_CLOSE
	UnixListen      = 10 // TCP_LISTEN
)

// UnixDiag is what sock_diag reports about one AF_UNIX socket.
type UnixDiag struct {
	Ino   uint32
	Type  uint8 // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
	State uint8 // UnixEstablished, UnixListen, UnixClose
	// Peer is the inode of the connected peer; 0 when unconnected or when
	// the peer was closed.
	Peer uint32
	// Name is the bound address: a path, "@name" for the abstract
	// namespace, "" when unbound.
	Name     string
	Shutdown uint8 // UnixRcvShutdown | UnixSendShutdown
	// RQueue: bytes queued for reading (stream, seqpacket) or the length of
	// the first datagram; for a listener, the accept backlog.
	RQueue uint32
	WQueue uint32
	// VFSDev (as stat reports st_dev) and VFSIno name the socket file
	// of a socket bound to a path (an accepted connection shares its
	// listener's); 0 otherwise.
	VFSDev uint64
	VFSIno uint32
	// Icons are, for a listener, the inodes of the client sockets whose
	// connections wait in its backlog, oldest first (0: client closed).
	Icons []uint32
}

// UnixDiagLookup asks sock_diag (NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY) about
// the AF_UNIX socket with inode ino in the caller's network namespace. An
// unknown inode gives ENOENT.
func UnixDiagLookup(ino uint32) (*UnixDiag, error) {
	all, err := unixDiag(ino)
	if err != nil {
		return nil, err
	}
	for _, d := range all {
		if d.Ino == ino {
			return d, nil
		}
	}
	return nil, fmt.Errorf("sock_diag: no answer for unix socket inode %d", ino)
}

// UnixDiagAll returns every AF_UNIX socket of the caller's network
// namespace that sock_diag reports (those with a file: an embryo of a
// connection not accepted yet has none and is not listed).
func UnixDiagAll() ([]*UnixDiag, error) { return unixDiag(0) }

// unixDiag sends one SOCK_DIAG_BY_FAMILY request: for inode ino, or a dump
// of all sockets when ino is 0.
func unixDiag(ino uint32) ([]*UnixDiag, error) {
	s, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	defer unix.Close(s)

	req := make([]byte, unix.SizeofNlMsghdr+sizeofUnixDiagReq)
	ne := binary.NativeEndian
	flags := uint16(unix.NLM_F_REQUEST)
	if ino == 0 {
		flags |= unix.NLM_F_DUMP
	}
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(req[6:], flags)
	ne.PutUint32(req[8:], 1) // seq
	b := req[unix.SizeofNlMsghdr:]
	b[0] = unix.AF_UNIX
	ne.PutUint32(b[4:], ^uint32(0)) // all states
	ne.PutUint32(b[8:], ino)
	ne.PutUint32(b[12:], udiagShowName|udiagShowVFS|udiagShowPeer|udiagShowIcons|udiagShowRqlen)
	ne.PutUint32(b[16:], inetDiagNoCookie)
	ne.PutUint32(b[20:], inetDiagNoCookie)
	if err := unix.Sendto(s, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, os.NewSyscallError("sendto(sock_diag)", err)
	}

	buf := make([]byte, 64<<10)
	var out []*UnixDiag
	for {
		n, _, err := unix.Recvfrom(s, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, os.NewSyscallError("recvfrom(sock_diag)", err)
		}
		ds, done, err := parseUnixDiag(buf[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, ds...)
		if done || ino != 0 {
			return out, nil
		}
	}
}

// parseUnixDiag decodes the unix_diag_msg answers in one netlink read;
// done reports NLMSG_DONE (the end of a dump).
func parseUnixDiag(msg []byte) (out []*UnixDiag, done bool, err error) {
	ne := binary.NativeEndian
	for len(msg) >= unix.SizeofNlMsghdr {
		l := int(ne.Uint32(msg[0:]))
		typ := ne.Uint16(msg[4:])
		if l < unix.SizeofNlMsghdr || l > len(msg) {
			return nil, false, errors.New("sock_diag: truncated netlink message")
		}
		body := msg[unix.SizeofNlMsghdr:l]
		msg = msg[min(nlAlign(l), len(msg)):]
		switch typ {
		case unix.NLMSG_ERROR:
			if len(body) < 4 {
				return nil, false, errors.New("sock_diag: short error message")
			}
			if e := int32(ne.Uint32(body)); e != 0 {
				return nil, false, os.NewSyscallError("sock_diag", syscall.Errno(-e))
			}
			continue
		case unix.NLMSG_DONE:
			done = true
			continue
		case unix.SOCK_DIAG_BY_FAMILY:
		default:
			continue
		}
		if len(body) < sizeofUnixDiagMsg {
			return nil, false, errors.New("sock_diag: short unix_diag_msg")
		}
		d := &UnixDiag{Type: body[1], State: body[2], Ino: ne.Uint32(body[4:])}
		attrs := body[sizeofUnixDiagMsg:]
		for len(attrs) >= 4 {
			al := int(ne.Uint16(attrs[0:]))
			at := ne.Uint16(attrs[2:]) & 0x3fff // strip NLA_F_NESTED, NLA_F_NET_BYTEORDER
			if al < 4 || al > len(attrs) {
				break
			}
			p := attrs[4:al]
			switch at {
			case unixDiagName:
				if len(p) > 0 && p[0] == 0 {
					d.Name = "@" + string(p[1:])
				} else {
					d.Name = string(trimNul(p))
				}
			case unixDiagVFS:
				if len(p) >= 8 {
					d.VFSIno = ne.Uint32(p)
					raw := ne.Uint32(p[4:]) // the kernel's dev_t: major << 20 | minor
					d.VFSDev = unix.Mkdev(raw>>20, raw&0xfffff)
				}
			case unixDiagPeer:
				if len(p) >= 4 {
					d.Peer = ne.Uint32(p)
				}
			case unixDiagIcons:
				for ; len(p) >= 4; p = p[4:] {
					d.Icons = append(d.Icons, ne.Uint32(p))
				}
			case unixDiagRqlen:
				if len(p) >= 8 {
					d.RQueue = ne.Uint32(p)
					d.WQueue = ne.Uint32(p[4:])
				}
			case unixDiagShutdown:
				if len(p) >= 1 {
					d.Shutdown = p[0]
				}
			}
			attrs = attrs[min(nlAlign(al), len(attrs)):]
		}
		out = append(out, d)
	}
	return out, done, nil
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

func trimNul(b []byte) []byte {
	for i, c := range b {
		if c == 0 {
			return b[:i]
		}
	}
	return b
}

// SizeofEpollEvent is sizeof(struct epoll_event) on x86-64, where the struct
// is packed (include/uapi/linux/eventpoll.h, EPOLL_PACKED): u32 events, u64 data.
const SizeofEpollEvent = 12

// PutEpollEvent writes one struct epoll_event in the x86-64 layout into b,
// which must hold SizeofEpollEvent bytes. Used to build arguments for an
// epoll_ctl executed in another process.
func PutEpollEvent(b []byte, events uint32, data uint64) {
	binary.LittleEndian.PutUint32(b[0:], events)
	binary.LittleEndian.PutUint64(b[4:], data)
}

// FIONREAD (asm-generic/ioctls.h, the same number as TIOCINQ): bytes
// queued for reading; inotify and fanotify answer it with the size of
// their queued events.
const FIONREAD = 0x541b

// OpenNoATime opens path for reading without updating its access time
// (O_NOATIME: reading and mmap then leave atime alone), as ferry must when
// it reads or maps a process's files. O_NOATIME needs the file's owner or
// CAP_FOWNER; without either the file is opened plainly.
func OpenNoATime(path string, flag int) (*os.File, error) {
	f, err := os.OpenFile(path, flag|unix.O_NOATIME, 0)
	if errors.Is(err, unix.EPERM) {
		f, err = os.OpenFile(path, flag, 0)
	}
	return f, err
}
