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
//	                              (sender: 0, not known yet)
//	'M' kind(1) code(u32) core(1) driver → stand-in: take this status
//	'T' kind(1) code(u32) core(1) away stand-in → driver: its child's
//	                              status changed (waitid)
//
// A continue it takes from the driver comes as a SIGCONT (the stand-in is
// stopped and cannot read), which it reports like any other: the driver
// knows its own.
package standin

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
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
	case 'M', 'T':
		b := []byte{m.Type, byte(m.Status.Kind), 0, 0, 0, 0, 0}
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
	case (b[0] == 'M' || b[0] == 'T') && len(b) == 7:
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

// Listen is the driver's side: a SOCK_SEQPACKET listener at path for
// stand-ins to connect to, and a receive timeout for its connections.
func Listen(path string) (int, error) {
	ln, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(ln, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(ln)
		return -1, fmt.Errorf("bind %s: %w", path, err)
	}
	if err := unix.Listen(ln, 16); err != nil {
		unix.Close(ln)
		return -1, os.NewSyscallError("listen", err)
	}
	return ln, nil
}

// Main is `ferry standin [--away] --connect PATH` (or --leader): it never returns while
// the process has a status to take on.
//
// With --away it is the other end's stand-in, for the moved process's
// parent (restore.Parent): it reports the signals sent to it (by the
// moved process, to its parent) like the home one, and every change of
// its child's status that waitid tells; it exits once it has no child
// left.
func Main(args []string) int {
	if len(args) == 1 && args[0] == "--leader" {
		return leader()
	}
	away := len(args) > 0 && args[0] == "--away"
	if away {
		args = args[1:]
	}
	if len(args) != 2 || args[0] != "--connect" {
		fmt.Fprintln(os.Stderr, "usage: ferry standin [--away] --connect PATH")
		return 2
	}
	err := run(args[1], away)
	if err == errNoChild {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "ferry standin (pid %d): %v\n", os.Getpid(), err)
	}
	// The driver is gone for good, or the connection is broken: nothing
	// tells what became of the process. As if its node died (deputy).
	dieBy(unix.SIGKILL, false)
	return 1
}

// leader is `ferry standin --leader`: away, the stand-in of the leader of
// the moved process's session and group (restore.Parent.Leader), which
// has no part to play but to lead them: it ignores signals, reaps its
// child (the parent's stand-in) and ends when it has none.
func leader() int {
	signal.Ignore()
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0
		}
	}
}

// errNoChild ends an away stand-in: its child is gone, and told.
var errNoChild = errors.New("no child left")

func run(path string, away bool) error {
	// Every signal but SIGKILL and SIGSTOP (which cannot be caught) comes
	// to the channel: os/signal, not a signalfd, since the Go runtime
	// takes some signals on threads of its own (SIGCHLD, SIGTERM...).
	// Those sent while the process was switched stayed pending (the exec
	// left them blocked) and come now. SIGURG is the runtime's own
	// (preemption): not told.
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs)
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
	type packet struct {
		b   []byte
		err error
	}
	packets := make(chan packet)
	readConn := func(c int) {
		for {
			buf := make([]byte, 64)
			n, err := unix.Read(c, buf)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err == nil && n == 0 {
				err = errors.New("closed")
			}
			packets <- packet{buf[:max(n, 0)], err}
			if err != nil {
				return
			}
		}
	}
	go readConn(conn)
	if away {
		if err := reapChildren(conn); err != nil {
			return err
		}
	}
	for {
		select {
		case sig := <-sigs:
			n := sig.(syscall.Signal)
			switch {
			case n == unix.SIGURG:
			case away && n == unix.SIGCHLD:
				// Its child's news: told as a status (the home
				// parent has its SIGCHLD from its own child).
				if err := reapChildren(conn); err != nil {
					return err
				}
			case n == unix.SIGCHLD && reapOld():
				// At home: the old copies of the children that moved
				// with the process, killed at the switch. Their end
				// is not the moved process's news.
			default:
				if _, err := unix.Write(conn, Msg{Type: 'S', Sig: int(n)}.Encode()); err != nil {
					return fmt.Errorf("report signal %d: %w", n, err)
				}
			}
		case p := <-packets:
			if p.err != nil {
				unix.Close(conn)
				if err := redial(); err != nil {
					return fmt.Errorf("the driver went away (read: %v), and did not come back: %w", p.err, err)
				}
				go readConn(conn)
				continue
			}
			m, err := Decode(p.b)
			if err != nil || m.Type != 'M' || away {
				return fmt.Errorf("from the driver: %+v %v", m, err)
			}
			take(m.Status)
		}
	}
}

// reapOld reaps, at home, whatever children the stand-in has (the old
// copies of the moved process's children) and reports whether there were
// any.
func reapOld() bool {
	reaped := false
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if err != nil || pid <= 0 {
			return reaped
		}
		reaped = true
	}
}

// reapChildren reports every change of the stand-in's children waitid
// has, and errNoChild once none is left.
func reapChildren(conn int) error {
	for {
		var si unix.Siginfo
		err := unix.Waitid(unix.P_ALL, 0, &si, unix.WEXITED|unix.WSTOPPED|unix.WCONTINUED|unix.WNOHANG, nil)
		if errors.Is(err, unix.ECHILD) {
			return errNoChild
		}
		if err != nil {
			return fmt.Errorf("waitid: %w", err)
		}
		code, status, pid := kernel.WaitidInfo(&si)
		if pid == 0 {
			return nil // nothing new
		}
		var st deputy.Status
		switch code {
		case kernel.CLD_EXITED:
			st = deputy.Status{Kind: deputy.Exited, Code: status}
		case kernel.CLD_KILLED:
			st = deputy.Status{Kind: deputy.Killed, Code: status}
		case kernel.CLD_DUMPED:
			st = deputy.Status{Kind: deputy.Killed, Code: status, Core: true}
		case kernel.CLD_STOPPED, kernel.CLD_TRAPPED:
			st = deputy.Status{Kind: deputy.Stopped, Code: status}
		case kernel.CLD_CONTINUED:
			st = deputy.Status{Kind: deputy.Continued, Code: int(unix.SIGCONT)}
		default:
			continue
		}
		if _, err := unix.Write(conn, Msg{Type: 'T', Status: st}.Encode()); err != nil {
			return fmt.Errorf("report the child's status: %w", err)
		}
	}
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
		// It runs again already: the driver's SIGCONT did it.
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
// and returns when it is continued, sig caught again.
func stopBy(sig unix.Signal) {
	if sig == unix.SIGSTOP {
		raise(sig)
		return
	}
	restore, err := kernel.SigDefault(sig)
	raise(sig)
	if err == nil {
		restore() // the runtime's handler, for the next one
	}
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
