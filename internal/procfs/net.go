package procfs

import (
	"encoding/binary"
	"net/netip"
)

// UnixSocket is one line of /proc/PID/net/unix, the unix sockets of pid's
// network namespace (net/unix/af_unix.c, unix_seq_show):
//
//	"%pK: %08X %08X %08X %04X %02X %5lu" [" " path]
//
// (address, refcount, protocol, flags, type, state, inode).
type UnixSocket struct {
	Flags uint32 // __SO_ACCEPTCON (1<<16) for a listener
	Type  uint16 // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
	State uint8  // SS_UNCONNECTED… (include/uapi/linux/net.h)
	Inode uint64
	// Path is the bound name, "@name" for an abstract one (the kernel
	// prints its NULs as '@'); empty when unbound.
	Path string
}

// UnixAcceptCon is __SO_ACCEPTCON in UnixSocket.Flags: a listening socket
// (include/linux/net.h).
const UnixAcceptCon = 1 << 16

// NetUnix reads /proc/PID/net/unix.
func NetUnix(pid int) ([]UnixSocket, error) {
	var out []UnixSocket
	err := eachLine(pidPath(pid, "net/unix"), 1, func(line []byte) error {
		s, err := parseUnixLine(line)
		if err == nil {
			out = append(out, s)
		}
		return err
	})
	return out, err
}

func parseUnixLine(line []byte) (UnixSocket, error) {
	var s UnixSocket
	var f [7][]byte
	rest := line
	for i := range f {
		if f[i], rest = nextField(rest); len(f[i]) == 0 {
			return s, errorString("want 7 fields and a path")
		}
	}
	flags, err1 := parseHex(f[3])
	typ, err2 := parseHex(f[4])
	st, err3 := parseHex(f[5])
	ino, err4 := parseUint(f[6])
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil || flags>>32 != 0 || typ>>16 != 0 || st>>8 != 0 {
		return s, errorString("bad flags, type, state or inode")
	}
	s.Flags, s.Type, s.State, s.Inode = uint32(flags), uint16(typ), uint8(st), ino
	if len(rest) > 0 && rest[0] == ' ' {
		s.Path = string(rest[1:]) // names may hold blanks: all of the rest
	}
	return s, nil
}

// InetSocket is one line of /proc/PID/net/{tcp,tcp6,udp,udp6}
// (net/ipv4/tcp_ipv4.c get_tcp4_sock and its siblings):
//
//	"%4d: %08X:%04X %08X:%04X %02X %08X:%08X %02X:%08lX %08X %5u %8d %lu …"
//
// (slot, local, remote, state, queues, timer, retransmits, uid, timeout,
// inode). Addresses are printed as 32-bit words in host byte order.
type InetSocket struct {
	Local, Remote netip.AddrPort
	State         uint8 // TCP_ESTABLISHED…; TCP_LISTEN is 0x0A
	Inode         uint64
}

// TCPListen is TCP_LISTEN in InetSocket.State (include/net/tcp_states.h).
const TCPListen = 0x0A

// NetInet reads /proc/PID/net/TABLE, table one of "tcp", "tcp6", "udp",
// "udp6".
func NetInet(pid int, table string) ([]InetSocket, error) {
	var out []InetSocket
	err := eachLine(pidPath(pid, "net/"+table), 1, func(line []byte) error {
		s, err := parseInetLine(line)
		if err == nil {
			out = append(out, s)
		}
		return err
	})
	return out, err
}

func parseInetLine(line []byte) (InetSocket, error) {
	var s InetSocket
	var f [10][]byte
	rest := line
	for i := range f {
		if f[i], rest = nextField(rest); len(f[i]) == 0 {
			return s, errorString("want at least 10 fields")
		}
	}
	var err error
	if s.Local, err = parseInetAddr(f[1]); err != nil {
		return s, errorString("bad local address")
	}
	if s.Remote, err = parseInetAddr(f[2]); err != nil {
		return s, errorString("bad remote address")
	}
	st, err1 := parseHex(f[3])
	ino, err2 := parseUint(f[9])
	if err1 != nil || err2 != nil || st>>8 != 0 {
		return s, errorString("bad state or inode")
	}
	s.State, s.Inode = uint8(st), ino
	return s, nil
}

// parseInetAddr parses "0100007F:0FA0" (IPv4) or 32 hex digits and a port
// (IPv6): each 32-bit word of the address in host (little-endian) order.
func parseInetAddr(b []byte) (netip.AddrPort, error) {
	i := len(b) - 5
	if i < 0 || b[i] != ':' || (i != 8 && i != 32) {
		return netip.AddrPort{}, errSyntax
	}
	port, err := parseHex(b[i+1:])
	if err != nil {
		return netip.AddrPort{}, err
	}
	var ip [16]byte
	for w := 0; w < i/8; w++ {
		v, err := parseHex(b[8*w : 8*w+8])
		if err != nil {
			return netip.AddrPort{}, err
		}
		binary.LittleEndian.PutUint32(ip[4*w:], uint32(v))
	}
	addr := netip.AddrFrom16(ip)
	if i == 8 {
		addr = netip.AddrFrom4([4]byte(ip[:4]))
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
}

// BootTime reads btime of /proc/stat: when the system booted, in seconds
// since the epoch.
func BootTime() (int64, error) {
	const path = "/proc/stat"
	var bt int64 = -1
	err := withFile(path, false, func(b []byte) error {
		for n := 1; len(b) > 0; n++ {
			var line []byte
			line, b = nextLine(b)
			key, rest := nextField(line)
			if string(key) != "btime" {
				continue
			}
			v, err := parseInt(trimSpace(rest))
			if err != nil {
				return lineErr(path, n, "bad btime %q", rest)
			}
			bt = v
			return nil
		}
		return fileErr(path, "no btime line")
	})
	if err != nil {
		return 0, err
	}
	return bt, nil
}
