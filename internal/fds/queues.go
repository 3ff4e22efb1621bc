package fds

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
)

// Reading the bytes queued in a pipe or a unix socket without consuming
// them: the target keeps reading its data as if nothing happened.

// peekPipe copies the bytes buffered in the pipe whose readable end is fd,
// with tee(2) into a scratch pipe (tee duplicates buffer references and
// leaves the source untouched), and returns the sizes of the packets at
// their start (see image.FD.PipePackets); size is the pipe's capacity.
//
// Packets survive the copy: tee keeps each buffer's PIPE_BUF_FLAG_PACKET
// (set by a writer in O_DIRECT mode), and read(2) stops at the end of such
// a buffer whatever the reader's flags, so reading the scratch pipe with a
// buffer larger than its content returns one packet per read. A read also
// stops when the pipe runs dry, so a sentinel byte is written after the
// copy, into a buffer of its own (tee clears the merge flag of the copied
// buffers): a read that ends before the sentinel ended on a packet, one
// that reaches into it held ordinary bytes. A read may return ordinary
// bytes before its packet (O_DIRECT toggled on the writer, a packet after
// a full page); they are recorded as part of it, as the read saw them.
func peekPipe(fd, size int) ([]byte, []int, error) {
	n, err := unix.IoctlGetInt(fd, unix.TIOCINQ) // FIONREAD
	if err != nil {
		return nil, nil, os.NewSyscallError("ioctl(FIONREAD)", err)
	}
	if n == 0 {
		return nil, nil, nil
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return nil, nil, os.NewSyscallError("pipe2", err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	// A slot for a copy of every buffer, and one for the sentinel.
	if err := growPipe(p[1], size+os.Getpagesize()); err != nil {
		if err := growPipe(p[1], size); err != nil {
			return nil, nil, fmt.Errorf("scratch pipe of %d bytes: %w", size, err)
		}
	}
	var copied int64
	for {
		copied, err = unix.Tee(fd, p[1], n, unix.SPLICE_F_NONBLOCK)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return nil, nil, os.NewSyscallError("tee", err)
	}
	if int(copied) != n {
		return nil, nil, fmt.Errorf("tee copied %d of %d buffered bytes", copied, n)
	}
	sentinel := true
	if err := writeAll(p[1], []byte{0}); errors.Is(err, unix.EAGAIN) {
		sentinel = false // every slot taken and the scratch pipe could not grow
	} else if err != nil {
		return nil, nil, err
	}

	buf := make([]byte, n+1)
	var packets []int
	for got := 0; got < n; {
		m, err := unix.Read(p[0], buf[got:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, nil, os.NewSyscallError("read", err)
		}
		if m == 0 {
			return nil, nil, errors.New("scratch pipe ended early")
		}
		got += m
		switch {
		case got < n:
			packets = append(packets, m) // stopped with data left: a packet ended
		case got == n && (sentinel || len(packets) > 0):
			// Stopped before the sentinel: a packet. Without a sentinel
			// the last read is taken for a packet when the others were.
			packets = append(packets, m)
		}
	}
	return buf[:n], packets, nil
}

// growPipe makes the capacity of pipe fd at least size.
func growPipe(fd, size int) error {
	cur, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return os.NewSyscallError("fcntl(F_GETPIPE_SZ)", err)
	}
	if cur >= size {
		return nil
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, size); err != nil {
		return pipeSizeError(size, err)
	}
	return nil
}

// peekSocket returns what is queued for reading on unix socket fd: one
// element per message (zero-length datagrams included); for SOCK_STREAM
// the bytes in as few elements as the file descriptors in flight allow
// (see below). It walks the queue with MSG_PEEK and SO_PEEK_OFF, and puts
// the socket's peek offset back as it was.
//
// rights holds, per element, ferry's duplicates of the files sent with it
// (SCM_RIGHTS; a peek installs copies and leaves the originals queued),
// nil when no element carries any; the caller owns them, also on error.
// A stream read stops at the end of a buffer that carries files, and the
// files come with the bytes read up to there: each stream element ends
// where such a read ended, with that read's files.
//
// from holds, for a datagram socket, the address each message was sent
// from ("" unnamed), nil when none was named. creds holds the credentials
// queued with each message, as a receiver with SO_PASSCRED reads them
// (nil when the socket does not pass credentials, or none came); a
// stream read does not join bytes of different credentials, so neither
// does an element.
//
// A SOCK_SEQPACKET socket whose receive side is shut down (its peer gone,
// or shut down for writing) reports end-of-file as a zero-length read;
// trailing zero-length records are therefore dropped there. Otherwise a
// zero-length read is a zero-length packet: the kernel returns 0 only for
// one, and marks it peeked, so that the next peek at the same offset
// passes it. (A zero-length packet peeked before, by the process or an
// earlier dump, is passed the same way, and not seen: nothing tells it
// is there.)
func peekSocket(fd, typ int) (q [][]byte, rights [][]int, from []string, creds []image.SockCred, err error) {
	defer func() {
		if err != nil {
			closeRights(rights)
			q, rights, from, creds = nil, nil, nil, nil
		}
	}()
	orig, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return nil, nil, nil, nil, os.NewSyscallError("getsockopt(SO_PEEK_OFF)", err)
	}
	setOff := func(off int) error {
		return os.NewSyscallError("setsockopt(SO_PEEK_OFF)", unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off))
	}
	if err := setOff(0); err != nil {
		return nil, nil, nil, nil, err
	}
	defer func() {
		if e := setOff(orig); e != nil && err == nil {
			err = e
		}
	}()
	inq, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return nil, nil, nil, nil, os.NewSyscallError("ioctl(SIOCINQ)", err)
	}

	buf := make([]byte, max(inq, 64<<10))
	// Room for the most files one message can carry (SCM_MAX_FD) and
	// for credentials (SO_PASSCRED).
	oob := make([]byte, unix.CmsgSpace(scmMaxFD*4)+unix.CmsgSpace(unix.SizeofUcred))
	off, total := 0, 0
	var stream []byte
	hasFDs, named, credited := false, false, false
	add := func(b []byte, fds []int, sender string, cred image.SockCred) {
		q = append(q, b)
		rights = append(rights, fds)
		from = append(from, sender)
		creds = append(creds, cred)
		hasFDs = hasFDs || len(fds) > 0
		named = named || sender != ""
		credited = credited || cred.PID != 0
	}
	var streamCred image.SockCred // of the stream bytes gathered so far
	for {
		flags := unix.MSG_PEEK | unix.MSG_DONTWAIT | unix.MSG_CMSG_CLOEXEC
		if typ != unix.SOCK_STREAM {
			flags |= unix.MSG_TRUNC // report the real length of a datagram
		}
		n, oobn, rflags, sa, err := unix.Recvmsg(fd, buf, oob, flags)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break // queue walked to its end
		}
		if err != nil {
			return q, rights, from, creds, os.NewSyscallError("recvmsg(MSG_PEEK)", err)
		}
		fds, cred, ferr := parseControl(oob[:oobn])
		if ferr == nil && rflags&unix.MSG_CTRUNC != 0 {
			ferr = errors.New("control data truncated")
		}
		if ferr != nil {
			closeRights([][]int{fds})
			return q, rights, from, creds, fmt.Errorf("files in flight at byte %d of the queue: %w", total, ferr)
		}
		if n == 0 && typ == unix.SOCK_STREAM && len(fds) == 0 {
			break // end of stream
		}
		if n == 0 && typ == unix.SOCK_SEQPACKET && total >= inq && len(fds) == 0 && readShut(fd) {
			break // end of file, see above
		}
		if typ != unix.SOCK_STREAM && (n > len(buf) || rflags&unix.MSG_TRUNC != 0) {
			// The peek moved the offset by what fitted only; retry bigger.
			closeRights([][]int{fds})
			if err := setOff(off); err != nil {
				return q, rights, from, creds, err
			}
			buf = make([]byte, n)
			continue
		}
		if typ == unix.SOCK_STREAM {
			if len(stream) > 0 && cred != streamCred {
				add(stream, nil, "", streamCred) // a read stops where the sender changes
				stream = nil
			}
			stream, streamCred = append(stream, buf[:n]...), cred
			if len(fds) > 0 {
				add(stream, fds, "", streamCred)
				stream = nil
			}
		} else {
			sender := ""
			if u, ok := sa.(*unix.SockaddrUnix); ok {
				sender = u.Name
			}
			add(append([]byte{}, buf[:n]...), fds, sender, cred)
		}
		off += n
		total += n
	}
	if len(stream) > 0 {
		add(stream, nil, "", streamCred)
	}
	if !hasFDs {
		rights = nil
	}
	if !named {
		from = nil
	}
	if !credited {
		creds = nil
	}
	return q, rights, from, creds, nil
}

// readShut tells whether socket fd's receive side is shut down (POLLRDHUP),
// so that a read may end with end-of-file; true when poll fails.
func readShut(fd int) bool {
	p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
	for {
		_, err := unix.Poll(p, 0)
		if err == unix.EINTR {
			continue
		}
		return err != nil || p[0].Revents&unix.POLLRDHUP != 0
	}
}

// scmMaxFD is the most files one message can carry (SCM_MAX_FD).
const scmMaxFD = 253

// parseRights returns the files of the SCM_RIGHTS messages in oob.
func parseRights(oob []byte) ([]int, error) {
	fds, _, err := parseControl(oob)
	return fds, err
}

// parseControl returns the files of the SCM_RIGHTS messages in oob and the
// credentials of its SCM_CREDENTIALS (zero PID: none, or the kernel's
// "nobody" for a message sent without them).
func parseControl(oob []byte) (fds []int, cred image.SockCred, err error) {
	if len(oob) == 0 {
		return nil, cred, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, cred, fmt.Errorf("parse control data: %w", err)
	}
	for i := range msgs {
		if msgs[i].Header.Level != unix.SOL_SOCKET {
			continue
		}
		switch msgs[i].Header.Type {
		case unix.SCM_RIGHTS:
			got, err := unix.ParseUnixRights(&msgs[i])
			if err != nil {
				closeRights([][]int{fds})
				return nil, cred, fmt.Errorf("parse SCM_RIGHTS: %w", err)
			}
			fds = append(fds, got...)
		case unix.SCM_CREDENTIALS:
			uc, err := unix.ParseUnixCredentials(&msgs[i])
			if err != nil {
				closeRights([][]int{fds})
				return nil, cred, fmt.Errorf("parse SCM_CREDENTIALS: %w", err)
			}
			if uc.Pid != 0 {
				cred = image.SockCred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}
			}
		}
	}
	return fds, cred, nil
}

func closeRights(rights [][]int) {
	for _, fds := range rights {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}
