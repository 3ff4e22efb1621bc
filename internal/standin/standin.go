// Package standin is the home stand-in of a process moved away alone
// (Sprite's home node, MOSIX's deputy; the relay itself is package
// deputy). Once the process runs on the other node, the original at home
// is turned into `ferry standin` in place (ptrace.Frozen.ExecInPlace): the
// same PID, the same parent, group and session, the same pipe ends. It
// catches every signal sent to it and reports it to its driver, and takes
// on the status the moved process reports — it exits with its code, dies
// by its signal, stops by its signal — so that the parent's wait sees
// the child it forked.
//
// What belongs here: the stand-in's program (Main) and the driver's side
// of its connection (Conn). What does not: what the driver does with
// signals and statuses (the relay, package deputy; the node).
//
// # The connection
//
// A unix SOCK_SEQPACKET connection to a path given on the command line,
// made from the stand-in's mount namespace (the job's). One packet per
// message, the first byte its type:
//
//	'H' version(1) pid(u32)       stand-in → driver, first
//	'S' sig(u32) sender(i32)      stand-in → driver: a signal it caught
//	                              (sender: its PID in the job, 0 outside)
//	'M' kind(1) code(u32) core(1) driver → stand-in: take this status
//
// A continue it takes from the driver comes as SIGCONT queued with
// kernel.SigQueueMark (the stand-in is stopped and cannot read): that
// one is not reported back.
package standin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/deputy"
	"ferry/internal/kernel"
)

// Version is the connection's version.
const Version = 1

// ErrMessage is wrapped by errors about malformed messages.
var ErrMessage = errors.New("malformed stand-in message")

// Msg is one message of the connection.
type Msg struct {
	Type   byte // 'H', 'S', 'M'
	PID    int  // H
	Sig    int  // S
	Sender int  // S
	Status deputy.Status
}

// Encode returns m's packet.
func (m Msg) Encode() []byte {
	switch m.Type {
	case 'H':
		b := []byte{'H', Version, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[2:], uint32(m.PID))
		return b
	case 'S':
		b := []byte{'S', 0, 0, 0, 0, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[1:], uint32(m.Sig))
		binary.LittleEndian.PutUint32(b[5:], uint32(int32(m.Sender)))
		return b
	case 'M':
		b := []byte{'M', byte(m.Status.Kind), 0, 0, 0, 0, 0}
		binary.LittleEndian.PutUint32(b[2:], uint32(m.Status.Code))
		if m.Status.Core {
			b[6] = 1
		}
		return b
	}
	return nil
}

// Decode parses a packet.
func Decode(b []byte) (Msg, error) {
	if len(b) == 0 {
		return Msg{}, fmt.Errorf("empty packet: %w", ErrMessage)
	}
	m := Msg{Type: b[0]}
	switch {
	case b[0] == 'H' && len(b) == 6:
		if b[1] != Version {
			return Msg{}, fmt.Errorf("stand-in speaks version %d, want %d: %w", b[1], Version, ErrMessage)
		}
		m.PID = int(binary.LittleEndian.Uint32(b[2:]))
	case b[0] == 'S' && len(b) == 9:
		m.Sig = int(binary.LittleEndian.Uint32(b[1:]))
		m.Sender = int(int32(binary.LittleEndian.Uint32(b[5:])))
		if m.Sig < 1 || m.Sig > 64 {
			return Msg{}, fmt.Errorf("signal %d: %w", m.Sig, ErrMessage)
		}
	case b[0] == 'M' && len(b) == 7:
		m.Status = deputy.Status{Kind: deputy.StatusKind(b[1]), Code: int(binary.LittleEndian.Uint32(b[2:])), Core: b[6] == 1}
		if m.Status.Kind < deputy.Exited || m.Status.Kind > deputy.Continued || b[6] > 1 ||
			(m.Status.Kind != deputy.Exited && (m.Status.Code < 1 || m.Status.Code > 64)) ||
			(m.Status.Kind == deputy.Exited && m.Status.Code > 255) {
			return Msg{}, fmt.Errorf("status %v: %w", m.Status, ErrMessage)
		}
	default:
		return Msg{}, fmt.Errorf("packet %q of %d bytes: %w", b[0], len(b), ErrMessage)
	}
	return m, nil
}

// Main is `ferry standin --connect PATH`: it never returns while the
// process has a status to take on.
func Main(args []string) int {
	if len(args) != 2 || args[0] != "--connect" {
		fmt.Fprintln(os.Stderr, "usage: ferry standin --connect PATH")
		return 2
	}
	if err := run(args[1]); err != nil {
		fmt.Fprintf(os.Stderr, "ferry standin (pid %d): %v\n", os.Getpid(), err)
	}
	// The driver is gone for good, or the connection is broken: nothing
	// tells what became of the process. As if its node died (deputy).
	dieBy(unix.SIGKILL, false)
	return 1
}

func run(path string) error {
	// Every signal stays blocked (as the exec left them): they queue for
	// the signalfd. SIGKILL and SIGSTOP cannot be caught.
	var all unix.Sigset_t
	for i := range all.Val {
		all.Val[i] = ^uint64(0)
	}
	if err := unix.PthreadSigmask(unix.SIG_BLOCK, &all, nil); err != nil {
		return fmt.Errorf("block signals: %w", err)
	}
	sfd, err := unix.Signalfd(-1, &all, unix.SFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("signalfd: %w", err)
	}
	var conn int
	dial := func() error {
		c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		if err := unix.Connect(c, &unix.SockaddrUnix{Name: path}); err != nil {
			unix.Close(c)
			return err
		}
		if _, err := unix.Write(c, Msg{Type: 'H', PID: os.Getpid()}.Encode()); err != nil {
			unix.Close(c)
			return err
		}
		conn = c
		return nil
	}
	// The driver may be restarting: it gets 30 s to be back.
	redial := func() error {
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := dial()
			if err == nil || time.Now().After(deadline) {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := redial(); err != nil {
		return fmt.Errorf("connect to %s: %w", path, err)
	}
	buf := make([]byte, 64)
	infos := make([]byte, 16*sizeofSiginfo)
	for {
		fds := []unix.PollFd{{Fd: int32(sfd), Events: unix.POLLIN}, {Fd: int32(conn), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("poll: %w", err)
		}
		if fds[0].Revents&unix.POLLIN != 0 {
			n, err := unix.Read(sfd, infos)
			if err != nil && !errors.Is(err, unix.EAGAIN) {
				return fmt.Errorf("read signalfd: %w", err)
			}
			for off := 0; off+sizeofSiginfo <= n; off += sizeofSiginfo {
				sig, code, sender, val := siginfo(infos[off:])
				if sig == unix.SIGCONT && code == -1 && val == kernel.SigQueueMark {
					continue // the driver's continue (see the package comment)
				}
				if _, err := unix.Write(conn, Msg{Type: 'S', Sig: int(sig), Sender: sender}.Encode()); err != nil {
					return fmt.Errorf("report signal %d: %w", sig, err)
				}
			}
		}
		if fds[1].Revents != 0 {
			n, rerr := unix.Read(conn, buf)
			if rerr != nil || n == 0 {
				unix.Close(conn)
				if err := redial(); err != nil {
					return fmt.Errorf("the driver went away (read: %v), and did not come back: %w", rerr, err)
				}
				continue
			}
			m, err := Decode(buf[:n])
			if err != nil || m.Type != 'M' {
				return fmt.Errorf("from the driver: %v", err)
			}
			take(m.Status)
		}
	}
}

// sizeofSiginfo is the size of struct signalfd_siginfo.
const sizeofSiginfo = 128

// siginfo reads a struct signalfd_siginfo.
func siginfo(b []byte) (sig unix.Signal, code int32, sender int, val int32) {
	sig = unix.Signal(binary.LittleEndian.Uint32(b[0:]))
	code = int32(binary.LittleEndian.Uint32(b[8:]))
	sender = int(binary.LittleEndian.Uint32(b[12:]))
	val = int32(binary.LittleEndian.Uint64(b[56:])) // ssi_int
	return
}

// take gives the process the moved one's status.
func take(s deputy.Status) {
	switch s.Kind {
	case deputy.Exited:
		unix.Exit(s.Code)
	case deputy.Killed:
		dieBy(unix.Signal(s.Code), s.Core)
	case deputy.Stopped:
		stopBy(unix.Signal(s.Code))
	case deputy.Continued:
		// It runs again already: the driver's queued SIGCONT did it.
	}
}

// dieBy ends the process by sig, with a core (if the limits let one be
// written) when core is set, so that wait reports the same.
func dieBy(sig unix.Signal, core bool) {
	lim := &unix.Rlimit{}
	if core {
		lim.Cur, lim.Max = unix.RLIM_INFINITY, unix.RLIM_INFINITY
	}
	unix.Setrlimit(unix.RLIMIT_CORE, lim)
	kernel.SigDefault(sig)
	raise(sig)
	unix.Exit(128 + int(sig)) // a signal whose default is not to die
}

// stopBy stops the process by sig (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU)
// and returns when it is continued.
func stopBy(sig unix.Signal) {
	if sig != unix.SIGSTOP {
		kernel.SigDefault(sig)
	}
	raise(sig)
}

// raise delivers sig to this thread with it unblocked here, then blocks
// it again.
func raise(sig unix.Signal) {
	var one unix.Sigset_t
	one.Val[(sig-1)/64] = 1 << ((uint(sig) - 1) % 64)
	unix.Tgkill(os.Getpid(), unix.Gettid(), sig)
	unix.PthreadSigmask(unix.SIG_UNBLOCK, &one, nil)
	unix.PthreadSigmask(unix.SIG_BLOCK, &one, nil)
}
