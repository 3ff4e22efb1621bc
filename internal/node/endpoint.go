package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/ipc"
	"ferry/internal/job"
	"ferry/msg/wire"
)

// The job's message endpoint (package msg), served by the node: a
// SOCK_SEQPACKET socket per job, made by the node in the job's directory,
// bound by the init at job.MsgMount inside the job and held by it, so
// that processes may connect while no node runs (they wait in the
// backlog). The node accepts, names each process by its pid in the job,
// hands its SENDs to the router (msgroute.go) and writes what the router
// delivers, and each SEND's RESULT once the receiver's node acknowledged
// it (or the router gave up), as MSG and RESULT packets.
//
// A process's packets wait in its queue (epProc.queue) until its writer
// puts them in the socket, so that a process that does not read never
// blocks another's send. A migration pauses the writers of the frozen job
// (nothing more enters its sockets, whose unread packets the dump then
// takes), drains its SENDs, and carries each process's queue and the
// SENDs still waiting for their outcome to the destination (epCarry).
// There the receiving agent reconnects each process's socket and
// announces it (RESUME, REQUEUE: what was unread in the old socket); the
// node writes that first, then the carried queue, then what comes.

// endpoints is the node's table of the jobs' processes that have (or
// had, or will have) an endpoint connection.
type endpoints struct {
	mu    sync.Mutex // guards the fields below and every epProc, epConn
	cond  *sync.Cond // signalled when a queue, a pause or a connection changes
	procs map[string]*epProc
	// agents are the pids of the receiving agents of incoming
	// migrations, by job: only they may RESUME a connection.
	agents map[int]string
}

// epProc is one process of a job, by its id.
type epProc struct {
	id, job string
	// gen counts the process's connections: RESULTs of SENDs made on an
	// older one are dropped (its sequence numbers are not the new one's).
	// A connection carried by a migration keeps its gen.
	gen    uint64
	conn   *epConn // nil while not connected
	queue  [][]byte
	paused bool // the job is frozen for a migration: write nothing
	// counts, for ferry where
	sends, written int
	lastSend       uint32
}

// epConn is one connection, served by a reader (serveProcess) and a
// writer goroutine.
type epConn struct {
	c       *net.UnixConn
	p       *epProc
	closed  bool
	writing bool
	// drain asks the reader to read what is in the socket without
	// blocking and report on the channel (a migration froze the job).
	drain chan chan struct{}
}

func (e *endpoints) init() {
	if e.procs == nil {
		e.procs, e.agents = map[string]*epProc{}, map[int]string{}
		e.cond = sync.NewCond(&e.mu)
	}
}

// proc returns the record of id, made if needed. e.mu held.
func (e *endpoints) proc(id, jobID string) *epProc {
	e.init()
	p := e.procs[id]
	if p == nil {
		p = &epProc{id: id, job: jobID}
		e.procs[id] = p
	}
	return p
}

// push queues a packet for process id (delivered by the router, or a
// RESULT).
func (e *endpoints) push(id, jobID string, pkt []byte) {
	e.mu.Lock()
	p := e.proc(id, jobID)
	p.queue = append(p.queue, pkt)
	e.cond.Broadcast()
	e.mu.Unlock()
}

// result queues the RESULT of a SEND made on connection generation gen.
func (e *endpoints) result(id string, gen uint64, seq uint32, code wire.Code, text string) {
	pkt, err := wire.Append(nil, &wire.Packet{Type: wire.TypeResult, Seq: seq, Code: code, Text: text})
	if err != nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	p := e.procs[id]
	if p == nil || p.gen != gen {
		return // that connection is gone: nobody waits for the answer
	}
	p.queue = append(p.queue, pkt)
	e.cond.Broadcast()
}

// genOf is process id's connection generation now.
func (e *endpoints) genOf(id string) uint64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if p := e.procs[id]; p != nil {
		return p.gen
	}
	return 0
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

// serveProcess speaks the endpoint protocol with one process (or with
// the receiving agent that carries its connection).
func (n *Node) serveProcess(j *localJob, c *net.UnixConn) {
	cred, err := peerCred(c)
	if err != nil {
		c.Close()
		n.log.Warn("message endpoint", "job", j.info.ID, "err", err)
		return
	}
	buf := make([]byte, wire.MaxRequeue)
	n.eps.mu.Lock()
	n.eps.init()
	agentJob := n.eps.agents[int(cred.Pid)]
	n.eps.mu.Unlock()
	var p *epProc
	var requeue [][]byte
	if agentJob != "" {
		if agentJob != j.info.ID {
			c.Close()
			n.log.Warn("message endpoint: an agent of another job connected", "job", j.info.ID, "agent_job", agentJob)
			return
		}
		var id string
		if id, requeue, err = readResume(c, buf, j.info.ID); err != nil {
			c.Close()
			n.log.Warn("message endpoint: carried connection", "job", j.info.ID, "err", err)
			return
		}
		n.eps.mu.Lock()
		p = n.eps.proc(id, j.info.ID)
		n.eps.mu.Unlock()
	} else {
		id, err := n.processID(j, int(cred.Pid))
		if err != nil {
			pkt, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeError, Code: wire.CodeDenied, Text: err.Error()})
			c.Write(pkt)
			c.Close()
			return
		}
		hello, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeHello, MaxPayload: wire.MaxPayload, ID: id})
		n.eps.mu.Lock()
		p = n.eps.proc(id, j.info.ID)
		p.gen++ // a process that connects again takes its id over
		// RESULTs queued for its last connection answer SENDs this one
		// did not make.
		p.queue = slices.DeleteFunc(p.queue, func(pkt []byte) bool {
			t, _, ok := wire.Header(pkt)
			return ok && t == wire.TypeResult
		})
		requeue = [][]byte{hello}
		n.eps.mu.Unlock()
	}
	n.eps.mu.Lock()
	key := fmt.Sprintf("%s#%d", p.id, p.gen)
	n.eps.mu.Unlock()
	n.holdConn(j, c, key)
	n.serveConn(j, c, p, key, requeue, buf)
}

// holdConn gives the job's init a copy of the node's end of a
// connection, so that the connection outlives this daemon (the next one
// takes it back, takeHeldConn). A connection the init cannot hold ends
// with the daemon (its process connects again).
func (n *Node) holdConn(j *localJob, c *net.UnixConn, key string) {
	err := j.askInit(func(ctx context.Context, in *job.Init) error { return in.HoldConn(ctx, key, c) })
	if err != nil {
		n.log.Debug("message endpoint: the init does not hold the connection", "job", j.info.ID, "key", key, "err", err)
	}
}

// dropConn has the init let go of a connection the node ended.
func (n *Node) dropConn(j *localJob, key string) {
	j.askInit(func(ctx context.Context, in *job.Init) error { return in.DropConn(ctx, key) })
}

// askInit runs one command of the job's init (none: nil), 5 s at most.
func (j *localJob) askInit(f func(context.Context, *job.Init) error) error {
	j.mu.Lock()
	in := j.init
	j.mu.Unlock()
	if in == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return f(ctx, in)
}

// takeHeldConn serves a connection the job's init held while no daemon
// ran. After a clean stop (the journal has the state the last daemon
// left) the process notices nothing: what it wrote meanwhile is read
// now, its SENDs waiting for their outcome get it. After a crash the
// outcome of SENDs the last daemon took may be lost with it: the
// connection ends with an ERROR saying so, and the process connects
// again.
func (n *Node) takeHeldConn(j *localJob, key string, f *os.File) {
	defer f.Close()
	fc, err := net.FileConn(f)
	if err != nil {
		n.log.Warn("message endpoint: a held connection", "job", j.info.ID, "key", key, "err", err)
		n.dropConn(j, key)
		return
	}
	c, ok := fc.(*net.UnixConn)
	id, genText, _ := strings.Cut(key, "#")
	gen, gerr := strconv.ParseUint(genText, 10, 64)
	pid, perr := ipc.ParseID(id)
	if !ok || gerr != nil || perr != nil || pid.Job != j.info.ID {
		fc.Close()
		n.log.Warn("message endpoint: a held connection with a bad key", "job", j.info.ID, "key", key)
		n.dropConn(j, key)
		return
	}
	n.eps.mu.Lock()
	p := n.eps.proc(id, j.info.ID)
	current := p.gen == gen
	n.eps.mu.Unlock()
	if !current || n.msgs == nil || !n.msgs.cleanStart {
		why := "the node restarted after a crash: the outcome of messages sent and not yet answered is unknown; connect again"
		if !current {
			why = "the node restarted and lost this connection's state; connect again"
		}
		pkt, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeError, Code: wire.CodeUnreachable, Text: why})
		c.Write(pkt)
		c.Close()
		n.dropConn(j, key)
		n.log.Info("message endpoint: a held connection ended", "job", j.info.ID, "process", id, "why", why)
		return
	}
	n.serveConn(j, c, p, key, nil, make([]byte, wire.MaxRequeue))
}

// serveConn serves process p's connection c: what the process writes
// goes to the router, what is queued for it is written.
func (n *Node) serveConn(j *localJob, c *net.UnixConn, p *epProc, key string, requeue [][]byte, buf []byte) {
	defer func() {
		c.Close()
		select {
		case <-n.quit:
			// The init keeps the connection for the next daemon.
		default:
			n.dropConn(j, key)
		}
	}()
	e := &epConn{c: c, p: p, drain: make(chan chan struct{}, 1)}
	n.eps.mu.Lock()
	if old := p.conn; old != nil {
		old.closed = true
		old.c.SetDeadline(time.Now())
	}
	p.conn = e
	p.queue = append(requeue, p.queue...)
	n.eps.cond.Broadcast()
	n.eps.mu.Unlock()
	// The node stopping ends the connection (the process waits in the
	// backlog for the next node, or is carried by a migration).
	stopClose := make(chan struct{})
	defer close(stopClose)
	go func() {
		select {
		case <-n.quit:
			c.SetDeadline(time.Now())
			n.eps.mu.Lock()
			e.closed = true
			n.eps.cond.Broadcast()
			n.eps.mu.Unlock()
		case <-stopClose:
		}
	}()
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); n.eps.write(e) }()
	defer func() {
		n.eps.mu.Lock()
		e.closed = true
		if p.conn == e {
			p.conn = nil
		}
		n.eps.cond.Broadcast()
		n.eps.mu.Unlock()
		c.SetWriteDeadline(time.Now())
		<-writerDone
	}()
	for {
		nr, _, flags, _, err := c.ReadMsgUnix(buf[:wire.MaxPacket], nil)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			n.eps.mu.Lock()
			closed := e.closed
			n.eps.mu.Unlock()
			if closed {
				return
			}
			// (a deadline passed fails raw reads too: clear it first)
			c.SetReadDeadline(time.Time{})
			select {
			case done := <-e.drain:
				ok := n.drainConn(e, buf)
				close(done)
				if !ok {
					return
				}
			default:
			}
			continue
		}
		if err != nil || nr == 0 {
			return
		}
		if !n.handlePacket(e, buf[:nr], flags&unix.MSG_TRUNC != 0) {
			return
		}
	}
}

// drainConn reads, without blocking, every packet the process wrote
// before it froze. False: the connection ended.
func (n *Node) drainConn(e *epConn, buf []byte) bool {
	rc, err := e.c.SyscallConn()
	if err != nil {
		return false
	}
	for {
		var nr, flags int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			nr, _, flags, _, rerr = unix.Recvmsg(int(fd), buf[:wire.MaxPacket], nil, unix.MSG_DONTWAIT)
			return true
		}); err != nil {
			return false
		}
		if errors.Is(rerr, unix.EAGAIN) {
			return true
		}
		if rerr != nil || nr == 0 {
			return false
		}
		if !n.handlePacket(e, buf[:nr], flags&unix.MSG_TRUNC != 0) {
			return false
		}
	}
}

// write is a connection's writer: it puts the process's queue in the
// socket, one packet at a time, unless the job is paused.
func (eps *endpoints) write(e *epConn) {
	eps.mu.Lock()
	defer eps.mu.Unlock()
	for {
		p := e.p
		for !e.closed && (p.paused || len(p.queue) == 0 || p.conn != e) {
			eps.cond.Wait()
		}
		if e.closed {
			return
		}
		pkt := p.queue[0]
		p.queue = p.queue[1:]
		e.writing = true
		eps.mu.Unlock()
		_, err := e.c.Write(pkt)
		eps.mu.Lock()
		if err == nil {
			p.written++
		}
		e.writing = false
		eps.cond.Broadcast()
		if err != nil {
			// Not written (a packet goes whole or not at all): it waits
			// for the next connection, or for the migration's carry.
			p.queue = append([][]byte{pkt}, p.queue...)
			if errors.Is(err, os.ErrDeadlineExceeded) && !e.closed {
				e.c.SetWriteDeadline(time.Time{})
				continue
			}
			return
		}
	}
}

// readResume reads the agent's RESUME and its REQUEUE packets.
func readResume(c *net.UnixConn, buf []byte, jobID string) (string, [][]byte, error) {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	defer c.SetReadDeadline(time.Time{})
	nr, _, _, _, err := c.ReadMsgUnix(buf, nil)
	if err != nil {
		return "", nil, err
	}
	p, err := wire.Parse(buf[:nr])
	if err != nil {
		return "", nil, err
	}
	if p.Type != wire.TypeResume {
		return "", nil, fmt.Errorf("%v from the receiving agent, want RESUME", p.Type)
	}
	id, err := ipc.ParseID(p.ID)
	if err != nil || id.Job != jobID {
		return "", nil, fmt.Errorf("RESUME of %q: not a process of job %s", p.ID, jobID)
	}
	var out [][]byte
	for i := uint32(0); i < p.Seq; i++ {
		nr, _, flags, _, err := c.ReadMsgUnix(buf, nil)
		if err != nil {
			return "", nil, fmt.Errorf("REQUEUE %d of %d: %w", i+1, p.Seq, err)
		}
		if flags&unix.MSG_TRUNC != 0 {
			return "", nil, fmt.Errorf("REQUEUE %d of %d: truncated", i+1, p.Seq)
		}
		q, err := wire.Parse(buf[:nr])
		if err != nil || q.Type != wire.TypeRequeue {
			return "", nil, fmt.Errorf("REQUEUE %d of %d: %v", i+1, p.Seq, err)
		}
		out = append(out, append([]byte(nil), q.Payload...))
	}
	return p.ID, out, nil
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	rc.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if cerr != nil {
		return nil, fmt.Errorf("the caller's credentials: %w", cerr)
	}
	return cred, nil
}

// processID names the connected process: its job and its pid in the job.
func (n *Node) processID(j *localJob, pid int) (string, error) {
	in := j.init
	if in == nil {
		return "", errors.New("the job has no namespace of its own")
	}
	nspid, err := job.PIDIn(in.NSPath(), pid)
	if err != nil {
		return "", fmt.Errorf("pid %d is not a process of job %s: %w", pid, j.info.ID, err)
	}
	return j.info.ID + "." + strconv.Itoa(nspid), nil
}

// handlePacket answers one packet of a process; false closes the
// connection (after an ERROR).
func (n *Node) handlePacket(e *epConn, b []byte, truncated bool) bool {
	id := e.p.id
	a := wire.Check(b, truncated)
	if a.Reply != nil {
		pkt, _ := wire.Append(nil, a.Reply)
		n.eps.push(id, e.p.job, pkt)
		return !a.Close
	}
	p := a.Send
	// The connection's generation now: a carried one takes its gen
	// when the job's state arrives, after the agent connected it.
	n.eps.mu.Lock()
	e.p.sends++
	e.p.lastSend = p.Seq
	gen := e.p.gen
	n.eps.mu.Unlock()
	from, _ := ipc.ParseID(id)
	to, err := ipc.ParseID(p.ID)
	if err != nil {
		n.eps.result(id, gen, p.Seq, wire.CodeMalformed, fmt.Sprintf("destination: %v", err))
		return true
	}
	if code, text := n.msgs.precheck(to); code != wire.CodeOK {
		n.eps.result(id, gen, p.Seq, code, text)
		return true
	}
	n.msgs.send(from, to, append([]byte(nil), p.Payload...), sendWait{proc: id, gen: gen, connSeq: p.Seq})
	return true
}

// pause stops writing into the sockets of job's processes and drains
// what they sent (the job is frozen). It returns each connection's
// socket inode (the node's side) → process id, for the dump to name the
// job's sides.
func (eps *endpoints) pause(jobID string) map[uint64]string {
	eps.mu.Lock()
	eps.init()
	var conns []*epConn
	for _, p := range eps.procs {
		if p.job != jobID {
			continue
		}
		p.paused = true
		if p.conn != nil {
			conns = append(conns, p.conn)
			p.conn.c.SetWriteDeadline(time.Now())
		}
	}
	for _, c := range conns {
		for c.writing {
			eps.cond.Wait()
		}
	}
	eps.mu.Unlock()
	ids := map[uint64]string{}
	for _, c := range conns {
		done := make(chan struct{})
		c.drain <- done
		c.c.SetReadDeadline(time.Now())
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		if ino, err := sockInode(c.c); err == nil {
			ids[ino] = c.p.id
		}
	}
	return ids
}

// resume writes again into the job's sockets (a migration rolled back).
func (eps *endpoints) resume(jobID string) {
	eps.mu.Lock()
	defer eps.mu.Unlock()
	for _, p := range eps.procs {
		if p.job == jobID {
			p.paused = false
		}
	}
	if eps.cond != nil {
		eps.cond.Broadcast()
	}
}

// forget drops the job's processes (it ended here, or moved away).
func (eps *endpoints) forget(jobID string) {
	eps.mu.Lock()
	defer eps.mu.Unlock()
	for id, p := range eps.procs {
		if p.job == jobID {
			if p.conn != nil {
				p.conn.closed = true
				p.conn.c.SetDeadline(time.Now())
			}
			delete(eps.procs, id)
		}
	}
	if eps.cond != nil {
		eps.cond.Broadcast()
	}
}

// queued counts the packets waiting in the node for the job's processes.
func (eps *endpoints) queued(jobID string) int {
	eps.mu.Lock()
	defer eps.mu.Unlock()
	k := 0
	for _, p := range eps.procs {
		if p.job == jobID {
			k += len(p.queue)
		}
	}
	return k
}

// epCarryProc is a process's endpoint state carried by a migration.
type epCarryProc struct {
	ID    string   `json:"id"`
	Gen   uint64   `json:"gen"`
	Queue [][]byte `json:"queue,omitempty"`
}

// export is the paused job's endpoint state to carry.
func (eps *endpoints) export(jobID string) []epCarryProc {
	eps.mu.Lock()
	defer eps.mu.Unlock()
	var out []epCarryProc
	for _, p := range eps.procs {
		if p.job == jobID {
			out = append(out, epCarryProc{ID: p.id, Gen: p.gen, Queue: append([][]byte(nil), p.queue...)})
		}
	}
	return out
}

// adopt takes a carried job's endpoint state: after what the agent
// re-queued from the old socket, before what comes.
func (eps *endpoints) adopt(jobID string, procs []epCarryProc) {
	eps.mu.Lock()
	defer eps.mu.Unlock()
	for _, c := range procs {
		p := eps.proc(c.ID, jobID)
		p.gen = c.Gen
		p.queue = append(p.queue, c.Queue...)
	}
	eps.cond.Broadcast()
}

func sockInode(c *net.UnixConn) (uint64, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var st unix.Stat_t
	var serr error
	rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) })
	return st.Ino, serr
}
