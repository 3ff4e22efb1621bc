package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"ferry/internal/job"
	"ferry/msg"
	"ferry/msg/wire"
)

// The job's message endpoint (package msg), served by the node: a
// SOCK_SEQPACKET socket per job, made by the node in the job's directory,
// bound by the init at job.MsgMount inside the job and held by it, so
// that processes may connect while no node runs (they wait in the
// backlog). The node accepts, names each process by its pid in the job,
// and delivers SENDs between processes of the jobs on this node.
//
// Today's limits, said in every refusal: messages to a job on another
// node are not carried yet (RESULT unreachable), and a job holding an
// endpoint connection cannot migrate (the dump refuses the connection).

// maxQueued bounds the messages waiting for one process (not connected
// yet, or not reading).
const maxQueued = 1024

// endpoints is the node's table of connected processes and messages
// waiting for one.
type endpoints struct {
	mu    sync.Mutex // guards the fields below
	conns map[string]*epConn
	queue map[string][][]byte // MSG packets for a process not connected
}

// epConn is one connected process; out feeds its writer, so that a
// process not reading never blocks another's send.
type epConn struct {
	id  string
	c   *net.UnixConn
	out chan []byte
}

// newEndpoint makes the job's endpoint socket in its directory.
func (n *Node) newEndpoint(id string) (*os.File, string, error) {
	path := filepath.Join(n.jobDir(id), "msg.sock")
	os.Remove(path)
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, "", fmt.Errorf("message endpoint: %w", err)
	}
	ln.SetUnlinkOnClose(false)
	defer ln.Close()
	// Any process of the job may connect (a job of a user other than
	// root too): who it is comes from its credentials.
	if err := os.Chmod(path, 0o666); err != nil {
		return nil, "", fmt.Errorf("message endpoint: %w", err)
	}
	f, err := ln.File()
	if err != nil {
		return nil, "", fmt.Errorf("message endpoint: %w", err)
	}
	return f, path, nil
}

// serveEndpoint accepts the job's processes until the job ends here.
func (n *Node) serveEndpoint(j *localJob, f *os.File) {
	fl, err := net.FileListener(f)
	f.Close()
	if err != nil {
		n.log.Error("message endpoint", "job", j.info.ID, "err", err)
		return
	}
	ln := fl.(*net.UnixListener)
	n.goBg(func() {
		select {
		case <-j.done:
		case <-n.quit:
		}
		ln.Close()
	})
	n.goBg(func() {
		for {
			c, err := ln.AcceptUnix()
			if err != nil {
				return
			}
			n.goBg(func() { n.serveProcess(j, c) })
		}
	})
}

// serveProcess speaks the endpoint protocol with one process.
func (n *Node) serveProcess(j *localJob, c *net.UnixConn) {
	defer c.Close()
	id, err := n.processID(j, c)
	if err != nil {
		pkt, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeError, Code: wire.CodeDenied, Text: err.Error()})
		c.Write(pkt)
		return
	}
	e := &epConn{id: id, c: c, out: make(chan []byte, maxQueued+16)} // room for the queue, the hello and answers
	hello, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeHello, MaxPayload: wire.MaxPayload, ID: id})
	e.out <- hello
	n.eps.mu.Lock()
	if n.eps.conns == nil {
		n.eps.conns, n.eps.queue = map[string]*epConn{}, map[string][][]byte{}
	}
	// A process that connects again takes its id over.
	n.eps.conns[id] = e
	for _, m := range n.eps.queue[id] {
		e.out <- m
	}
	delete(n.eps.queue, id)
	n.eps.mu.Unlock()
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case p := <-e.out:
				if _, err := c.Write(p); err != nil {
					return
				}
			case <-done:
				return
			}
		}
	}()
	defer func() {
		n.eps.mu.Lock()
		if n.eps.conns[id] == e {
			delete(n.eps.conns, id)
		}
		n.eps.mu.Unlock()
	}()
	buf := make([]byte, wire.MaxPacket)
	for {
		nr, _, flags, _, err := c.ReadMsgUnix(buf, nil)
		if err != nil || nr == 0 {
			return
		}
		if !n.handlePacket(e, buf[:nr], flags&unix.MSG_TRUNC != 0) {
			return
		}
	}
}

// processID names the connected process: its job and its pid in the job.
func (n *Node) processID(j *localJob, c *net.UnixConn) (string, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return "", err
	}
	var cred *unix.Ucred
	var cerr error
	rc.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cerr != nil {
		return "", fmt.Errorf("the caller's credentials: %w", cerr)
	}
	in := j.init
	if in == nil {
		return "", errors.New("the job has no namespace of its own")
	}
	pid, err := job.PIDIn(in.NSPath(), int(cred.Pid))
	if err != nil {
		return "", fmt.Errorf("pid %d is not a process of job %s: %w", cred.Pid, j.info.ID, err)
	}
	return j.info.ID + "." + strconv.Itoa(pid), nil
}

// handlePacket answers one packet of a process; false closes the
// connection (after an ERROR).
func (n *Node) handlePacket(e *epConn, b []byte, truncated bool) bool {
	reply := func(t wire.Type, seq uint32, code wire.Code, text string) {
		pkt, _ := wire.Append(nil, &wire.Packet{Type: t, Seq: seq, Code: code, Text: text})
		e.out <- pkt
	}
	a := wire.Check(b, truncated)
	if a.Reply != nil {
		reply(a.Reply.Type, a.Reply.Seq, a.Reply.Code, a.Reply.Text)
		return !a.Close
	}
	p := a.Send
	code, text := n.deliverLocal(e.id, p.ID, p.Payload)
	reply(wire.TypeResult, p.Seq, code, text)
	return true
}

// deliverLocal hands a message to a process of a job on this node: to
// its connection, or to the queue it reads when it connects.
func (n *Node) deliverLocal(from, to string, payload []byte) (wire.Code, string) {
	dest, err := msg.ParseID(to)
	if err != nil {
		return wire.CodeMalformed, fmt.Sprintf("destination: %v", err)
	}
	n.mu.Lock()
	j := n.jobs[dest.Job]
	n.mu.Unlock()
	if j == nil {
		if node := n.moved[dest.Job]; node != "" {
			return wire.CodeUnreachable, fmt.Sprintf("%s: its job moved to node %s; messages between nodes are not carried yet", to, node)
		}
		if jobNode(dest.Job) != n.cfg.ID {
			return wire.CodeUnreachable, fmt.Sprintf("%s: its job is not on node %s; messages between nodes are not carried yet", to, n.cfg.ID)
		}
		return wire.CodeUnknownID, fmt.Sprintf("%s: no such job", to)
	}
	info := j.snapshot()
	switch info.State {
	case stateExited, stateLost:
		return wire.CodeEnded, fmt.Sprintf("%s: job %s has ended", to, dest.Job)
	case stateMoved:
		return wire.CodeUnreachable, fmt.Sprintf("%s: its job moved to node %s; messages between nodes are not carried yet", to, info.MovedTo)
	case stateRunning:
	default:
		return wire.CodeUnreachable, fmt.Sprintf("%s: job %s is %s", to, dest.Job, info.State)
	}
	if j.init == nil {
		return wire.CodeUnknownID, fmt.Sprintf("%s: job %s is an adopted process, without a message endpoint", to, dest.Job)
	}
	if _, err := job.HostPID(j.init.NSPath(), dest.PID); err != nil {
		return wire.CodeUnknownID, fmt.Sprintf("%s: job %s has no process %d", to, dest.Job, dest.PID)
	}
	pkt, err := wire.Append(nil, &wire.Packet{Type: wire.TypeMsg, ID: from, Payload: payload})
	if err != nil {
		return wire.CodeMalformed, err.Error()
	}
	n.eps.mu.Lock()
	defer n.eps.mu.Unlock()
	if n.eps.conns == nil {
		n.eps.conns, n.eps.queue = map[string]*epConn{}, map[string][][]byte{}
	}
	if c := n.eps.conns[to]; c != nil {
		select {
		case c.out <- pkt:
			return wire.CodeOK, ""
		default:
			return wire.CodeUnreachable, fmt.Sprintf("%s: %d messages already wait for it to read", to, maxQueued)
		}
	}
	if len(n.eps.queue[to]) >= maxQueued {
		return wire.CodeUnreachable, fmt.Sprintf("%s: %d messages already wait for it to connect", to, maxQueued)
	}
	n.eps.queue[to] = append(n.eps.queue[to], pkt)
	return wire.CodeOK, ""
}

// jobNode is the node that created a job (its id's part before the last '-').
func jobNode(jobID string) string {
	if i := strings.LastIndexByte(jobID, '-'); i > 0 {
		return jobID[:i]
	}
	return ""
}
