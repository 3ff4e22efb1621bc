package node

// A process of a job moved apart (the chapter's coprocesses on different
// nodes, issue 10): `ferry migrate JOB --pid P --to N`. The job's home
// node plans the move (package coproc), asks N to prepare a part of the
// job (a PID namespace with P's parent as a stand-in, new pipes for the
// relayed streams), and runs a sending agent that dumps P alone and, at
// the commit, turns P into its home stand-in in place (dump.Held.Replace).
// Each node then holds one end of the relay (package relay, the protocol
// of package deputy) over a connection of its own on the nodes' TLS port
// (ALPN "ferry-relay"; the home node dials, again after a break), and
// serves its stand-in's unix connection (package standin).

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/agent"
	"ferry/internal/coproc"
	"ferry/internal/deputy"
	"ferry/internal/job"
	"ferry/internal/migrate"
	"ferry/internal/procfs"
	"ferry/internal/relay"
	"ferry/internal/standin"
)

const alpnRelay = "ferry-relay"

// relayPeerTimeout: a relay whose link to the other node stays down this
// long ends: home reports the moved process killed by SIGKILL, away kills
// it (package deputy).
const relayPeerTimeout = 10 * time.Second

// relayWindow bounds the bytes of one relayed stream on their way (read
// at one end, not yet written at the other): what a full pipe holds
// back, and what keeps the link busy.
const relayWindow = 2 << 20

// Part is a process of a job that runs on another node than the job's
// home (ferry ps).
type Part struct {
	PID  int    `json:"pid"`
	Node string `json:"node"`
	Move string `json:"move"`
}

// coprocInRequest asks a node to prepare the arrival of a process moved
// apart from its job.
type coprocInRequest struct {
	Move    string `json:"move"`
	Job     string `json:"job"`
	Home    string `json:"home"`
	PID     int    `json:"pid"`
	Parent  int    `json:"parent"`
	Session bool   `json:"session"` // the parent leads the session
	// Leader leads the session and group of the process and its parent
	// (neither of which does): a stand-in of its own there.
	Leader  int             `json:"leader,omitempty"`
	Streams []deputy.Stream `json:"streams"`
	// Ends: the descriptors that carry them, a pipe's one stream or a
	// socketpair's two.
	Ends    []relayEnd `json:"ends"`
	LastPID int        `json:"last_pid"`
	Info    JobInfo    `json:"info"`
}

type coprocInReply struct {
	Addr string `json:"addr"`
}

// part is one relay end on this node.
type part struct {
	move  string
	side  deputy.Side
	peer  string
	end   *relay.End
	conns chan net.Conn
	// committed: the new copy was let run (away side).
	committed chan struct{}
	done      chan struct{}

	// Home: the request the part was made with (its parent, session,
	// leader, PID block), its ends, and, as it moves on, the node and
	// move its relay's link goes to now.
	mu         sync.Mutex
	base       coprocInRequest
	ends       []relayEnd
	link       string
	dialCancel context.CancelFunc
	moving     bool
	// Away: its ends as the process holds them (role → kind and inode,
	// the image's names), leaving once it moves on (its stand-in's news
	// is not the process's any more), stop ends the relay end.
	roles   map[string]string
	leaving atomic.Bool
	stop    context.CancelFunc
	nsPath  string // the part's PID namespace
	pid     int    // the moved process, in the job's numbering
}

func (n *Node) addPart(p *part) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.parts == nil {
		n.parts = map[string]*part{}
	}
	n.parts[p.move] = p
}

func (n *Node) dropPart(move string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.parts, move)
}

func (n *Node) findPart(move string) *part {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.parts[move]
}

// pidBlock is where the forks of a part away continue its job's PID
// sequence: a block above the PIDs its home hands out in order, and below
// the top of the range where restore helpers run (job.parkPIDs). The
// home node assigns it: Sprite's rule, the home is the PID authority.
func pidBlock(seq int) int {
	max := 32768
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if v, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			max = v
		}
	}
	span := max / 16
	return max/2 + (seq%4)*span
}

// coprocOut moves one process of job j (req.PID) to req.To, the rest of
// the job staying here.
func (n *Node) coprocOut(ctx context.Context, j *localJob, req MigrateRequest, progress func(migrate.Progress)) (*migrate.Report, error) {
	mode, err := migrate.ParseMode(req.Mode)
	if err != nil {
		return nil, err
	}
	if mode == migrate.Postcopy {
		return nil, fmt.Errorf("a process moved apart from its job moves by freeze or precopy (postcopy not yet): %w", coproc.ErrRefused)
	}
	n.inFlight.Add(1)
	defer n.inFlight.Done()
	if n.stopping.Load() {
		return nil, fmt.Errorf("migrate job %s: node %s: %w", j.info.ID, n.cfg.ID, errStopping)
	}
	j.mu.Lock()
	info, in := j.info, j.init
	j.mu.Unlock()
	if info.State != stateRunning || in == nil {
		return nil, fmt.Errorf("job %s is %s here: only a running job's process moves apart", info.ID, info.State)
	}
	if info.Home != n.cfg.ID {
		return nil, fmt.Errorf("job %s is away from its home %s: its processes move apart only from home: %w", info.ID, info.Home, coproc.ErrRefused)
	}
	for _, p := range info.Parts {
		if p.PID == req.PID {
			return n.coprocOnward(ctx, j, req, p) // on, or back home
		}
	}
	if req.To == n.cfg.ID {
		return nil, fmt.Errorf("pid %d of job %s already runs on %s", req.PID, j.info.ID, req.To)
	}
	if _, err := n.peerURL(req.To); err != nil {
		return nil, err
	}
	ns := in.NSPath()
	host, err := job.HostPID(ns, req.PID)
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", info.ID, err)
	}
	members, err := job.Members(ns)
	if err != nil {
		return nil, err
	}
	if st, err := procfs.Stat(host); err == nil && st.PPID == in.PID && !info.KeepTogether {
		return nil, fmt.Errorf("pid %d is the job's main process: it moves with the whole job (ferry migrate %s --to %s): %w",
			req.PID, info.ID, req.To, coproc.ErrRefused)
	}
	name := func(h int) int {
		if h == in.PID {
			return 1
		}
		v, _ := job.PIDIn(ns, h)
		return v
	}
	msgConn := func(pid int) error {
		if n.hasEndpointConn(fmt.Sprintf("%s.%d", info.ID, pid)) {
			return fmt.Errorf("pid %d holds a connection to the job's message endpoint (%s): a process moved apart cannot keep one yet: %w",
				pid, job.MsgMount, coproc.ErrRefused)
		}
		return nil
	}
	if err := msgConn(req.PID); err != nil {
		return nil, err
	}
	plan, err := coproc.Make(append(members, in.PID), host, req.Alone,
		coproc.Policy{KeepTogether: info.KeepTogether, NoSeparateWaiting: info.NoSeparateWaiting, Name: name})
	if err != nil {
		return nil, fmt.Errorf("job %s: %w", info.ID, err)
	}
	for _, q := range plan.Moved[1:] {
		if err := msgConn(name(q)); err != nil {
			return nil, err
		}
	}
	ends, err := relayEnds(plan.Streams)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", req.PID, err)
	}
	var stdio []string
	for _, e := range ends {
		stdio = append(stdio, fmt.Sprintf("%s:%d=%s", e.Kind, e.inode, e.role()))
	}
	sort.Strings(stdio)
	parent, err := job.PIDIn(ns, plan.Parent)
	if err != nil {
		return nil, err
	}
	sid, err := job.PIDIn(ns, plan.SID)
	if err != nil {
		return nil, err
	}
	leader := 0
	if plan.Leader != 0 {
		if leader, err = job.PIDIn(ns, plan.Leader); err != nil {
			return nil, err
		}
	}
	n.mu.Lock()
	n.moveSeq++
	seq := n.moveSeq
	n.mu.Unlock()
	move := fmt.Sprintf("%s.%d-%d", info.ID, req.PID, seq)
	streams := make([]deputy.Stream, len(plan.Streams))
	for i, s := range plan.Streams {
		streams[i] = deputy.Stream{ID: s.ID, Dir: s.Dir}
	}

	// The home stand-in's connection, made before it exists.
	sockName := "standin-" + move + ".sock"
	hostSock := filepath.Join(n.cfg.Scratch, sockName)
	os.Remove(hostSock)
	ln, err := standin.Listen(hostSock)
	if err != nil {
		return nil, err
	}
	os.Chmod(hostSock, 0o666) // the stand-in runs as the job's owner (serveStandin checks it is it)
	lnOwned := true
	defer func() {
		if lnOwned {
			unix.Close(ln)
			os.Remove(hostSock)
		}
	}()

	var rep coprocInReply
	if err := n.call(ctx, req.To, http.MethodPost, "/v1/peer/coproc", coprocInRequest{Move: move, Job: info.ID, Home: n.cfg.ID,
		PID: req.PID, Parent: parent, Session: sid == parent, Leader: leader, Streams: streams, Ends: ends, LastPID: pidBlock(seq), Info: info}, &rep); err != nil {
		return nil, fmt.Errorf("prepare %s: %w", req.To, err)
	}
	args := []string{"--to", rep.Addr, "--pid", strconv.Itoa(req.PID), "--mode", string(mode), "--job", info.ID,
		"--stdio", strings.Join(stdio, ","), "--standin", filepath.Join(job.ScratchMount, sockName), "--standin-exe", n.cfg.Exe}
	if req.MaxFreeze > 0 {
		args = append(args, "--max-freeze", req.MaxFreeze.String())
	}
	ag, err := n.startAgent(ns, "send", args)
	if err != nil {
		return nil, err
	}
	// The ends of the streams the process held, taken from it while it
	// is frozen (before-commit): its stand-in keeps none.
	var pulled map[deputy.StreamID]*os.File
	closePulled := func() {
		for _, f := range pulled {
			f.Close()
		}
		pulled = nil
	}
	report, agentErr := n.followSend(ctx, ag, move, req.To, "/v1/peer/coproc/"+move+"/committed", progress, func() error {
		var err error
		pulled, err = pullFDs(ends)
		return err
	})
	if report == nil || !report.Committed {
		closePulled()
		return report, agentErr
	}
	// It runs there. The home end of the relay.
	lnOwned = false
	p := &part{move: move, side: deputy.Home, peer: req.To, conns: make(chan net.Conn, 4), done: make(chan struct{}),
		base: coprocInRequest{Move: move, Job: info.ID, Home: n.cfg.ID, PID: req.PID, Parent: parent, Session: sid == parent,
			Leader: leader, Streams: streams, Ends: ends, LastPID: pidBlock(seq), Info: info},
		ends: ends, link: move}
	eofOnly := map[deputy.StreamID]bool{}
	for _, s := range plan.Streams {
		if s.SharedRead {
			eofOnly[s.ID] = true
		}
	}
	p.end = &relay.End{Config: deputy.Config{Side: deputy.Home, Streams: streams, PeerTimeout: relayPeerTimeout, Window: relayWindow},
		FDs: pulled, EOFOnly: eofOnly, Log: n.log.With("move", move),
		Kill: func(target, sig int) error {
			if target == 0 {
				return nil
			}
			h, err := job.HostPID(ns, target)
			if err != nil {
				return err
			}
			return unix.Kill(h, unix.Signal(sig))
		}}
	sc := &standinConn{}
	p.end.Mirror = sc.mirror
	p.end.Init()
	n.addPart(p)
	j.mu.Lock()
	j.info.Parts = append(j.info.Parts, Part{PID: req.PID, Node: req.To, Move: move})
	j.mu.Unlock()
	n.saveJob(j)
	rctx, cancel := n.partContext()
	p.stop = cancel
	n.goBg(func() {
		defer cancel()
		defer n.dropPart(move)
		defer os.Remove(hostSock)
		defer close(p.done)
		go n.serveStandin(rctx, ln, sc, p.end, 0, nil, func() int { return host })
		// The stand-in killed at home (SIGKILL cannot be caught, or its
		// job ended and its init killed what was left): the moved
		// process goes too. After its own end, a no-op.
		onExit(host, func() {
			if !sc.final() {
				p.end.Caught(0, int(unix.SIGKILL))
			}
		})
		dctx, dcancel := context.WithCancel(rctx)
		p.mu.Lock()
		p.dialCancel = dcancel
		p.mu.Unlock()
		go n.dialRelay(dctx, req.To, move, p.conns)
		if err := p.end.Run(rctx, p.conns); err != nil && !errors.Is(err, context.Canceled) {
			n.log.Error("relay ended", "move", move, "err", err)
		}
		j.mu.Lock()
		for i, q := range j.info.Parts {
			if q.PID == req.PID {
				j.info.Parts = append(j.info.Parts[:i:i], j.info.Parts[i+1:]...)
				break
			}
		}
		j.mu.Unlock()
		n.saveJob(j)
	})
	return report, nil
}

// hasEndpointConn reports whether process id (job.pid) is connected to
// its job's message endpoint here.
func (n *Node) hasEndpointConn(id string) bool {
	n.eps.mu.Lock()
	defer n.eps.mu.Unlock()
	p := n.eps.procs[id]
	return p != nil && p.conn != nil && !p.conn.closed
}

// onExit calls f once process pid has ended (or at once if it cannot be
// watched); it returns whether it watches.
func onExit(pid int, f func()) bool {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		f()
		return false
	}
	go func() {
		defer unix.Close(fd)
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for {
			if _, err := unix.Poll(pfd, -1); err != unix.EINTR {
				break
			}
		}
		f()
	}()
	return true
}

// partContext is the life of a relay end: it ends with the node. (The
// other end then gives up after its PeerTimeout: the moved process is
// killed, its parent told SIGKILL; a restarted node does not take parts
// back yet.)
func (n *Node) partContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		select {
		case <-n.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// relayEnd is one descriptor of the moved process that leads home: a
// pipe's end (one stream) or a socketpair's (a stream each way).
type relayEnd struct {
	Kind    string            `json:"kind"` // "pipe" or "socket"
	Streams []deputy.StreamID `json:"streams"`
	// Role names it in the agents' --stdio and --relayed lists; it stays
	// the same as the process moves on.
	Role   string `json:"role"`
	inode  uint64
	holder int // a moved process's fd on it
	pid    int // that process (the node's PID)
}

// role names the end in the agents' --stdio and --relayed lists.
func (e relayEnd) role() string {
	if e.Role != "" {
		return e.Role
	}
	return fmt.Sprintf("relay-%d", e.Streams[0])
}

// relayEnds groups a plan's streams by the descriptor carrying them.
func relayEnds(streams []coproc.Stream) ([]relayEnd, error) {
	var out []relayEnd
	at := map[string]int{}
	for _, s := range streams {
		if s.Kind == "fifo" {
			return nil, fmt.Errorf("a FIFO shared with the job is not relayed yet: %w", coproc.ErrRefused)
		}
		key := fmt.Sprintf("%s:%d", s.Kind, s.Inode)
		if i, ok := at[key]; ok {
			out[i].Streams = append(out[i].Streams, s.ID)
			continue
		}
		fd, pid := -1, 0
		for q, fds := range s.Holders {
			if pid == 0 || q < pid {
				fd, pid = fds[0], q
			}
		}
		at[key] = len(out)
		out = append(out, relayEnd{Kind: s.Kind, Streams: []deputy.StreamID{s.ID}, Role: fmt.Sprintf("relay-%d", s.ID),
			inode: s.Inode, holder: fd, pid: pid})
	}
	return out, nil
}

// followSend answers a sending agent of a process moved apart until it
// ends: progress, the frozen and before-commit questions (beforeCommit,
// the process frozen, may refuse the commit), resolve (asked of node to
// at the path committed). It returns the report and, without a commit,
// why.
func (n *Node) followSend(ctx context.Context, ag *agentProc, move, to, committed string, progress func(migrate.Progress),
	beforeCommit func() error) (*migrate.Report, error) {
	var report *migrate.Report
	var agentErr error
	for {
		ev, err := ag.Next()
		if err != nil {
			if err != io.EOF {
				agentErr = errors.Join(agentErr, err)
			}
			break
		}
		switch ev.Kind {
		case agent.Progress:
			if ev.Progress != nil && progress != nil {
				progress(*ev.Progress)
			}
		case agent.Frozen:
			ag.Answer(agent.Answer{To: agent.Frozen})
		case agent.BeforeCommit:
			ans := agent.Answer{To: agent.BeforeCommit}
			if err := beforeCommit(); err != nil {
				ans.Err = agent.EncodeError(err)
			}
			ag.Answer(ans)
		case agent.Resolve:
			var ok bool
			err := n.call(ctx, to, http.MethodGet, committed, nil, &ok)
			ans := agent.Answer{To: agent.Resolve, Committed: ok && err == nil}
			if err != nil {
				ans.Err = agent.EncodeError(err)
			}
			ag.Answer(ans)
		case agent.Committed, agent.Report:
			if ev.Report != nil {
				report = ev.Report
			}
		case agent.Failed:
			agentErr = ev.Err.Err()
		case agent.Warning:
			n.log.Warn("sending agent", "move", move, "warning", ev.Message)
		default:
			n.log.Warn("sending agent: unexpected event", "move", move, "event", ev.Kind)
		}
	}
	werr := ag.Wait()
	if (report == nil || !report.Committed) && agentErr == nil {
		agentErr = fmt.Errorf("the sending agent ended without a commit: %v", werr)
	}
	return report, agentErr
}

// pullFDs takes, from the frozen processes, the fd of each end
// (pidfd_getfd: the same open file description), for its streams.
func pullFDs(ends []relayEnd) (map[deputy.StreamID]*os.File, error) {
	out := map[deputy.StreamID]*os.File{}
	fail := func(err error) (map[deputy.StreamID]*os.File, error) {
		for _, f := range out {
			f.Close()
		}
		return nil, err
	}
	pidfds := map[int]int{}
	defer func() {
		for _, fd := range pidfds {
			unix.Close(fd)
		}
	}()
	for _, e := range ends {
		pidfd, ok := pidfds[e.pid]
		if !ok {
			var err error
			if pidfd, err = unix.PidfdOpen(e.pid, 0); err != nil {
				return fail(os.NewSyscallError("pidfd_open", err))
			}
			pidfds[e.pid] = pidfd
		}
		fd, err := unix.PidfdGetfd(pidfd, e.holder, 0)
		if err != nil {
			return fail(fmt.Errorf("take fd %d of pid %d: %w", e.holder, e.pid, os.NewSyscallError("pidfd_getfd", err)))
		}
		// Its flags stay as they are: the open file may be shared with
		// processes that stay (os.File copes with either mode).
		f := os.NewFile(uintptr(fd), e.role())
		for _, id := range e.Streams {
			out[id] = f
		}
	}
	return out, nil
}

// standinConn is the node's side of a stand-in's connection.
type standinConn struct {
	mu sync.Mutex
	fd int
	// pending: a status that came before the stand-in connected.
	pending []deputy.Status
	// ended: the moved process's end was told (its stand-in exits by it).
	ended bool
}

func (c *standinConn) final() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ended
}

func (c *standinConn) mirror(s deputy.Status) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.Final() {
		c.ended = true
	}
	if c.fd <= 0 {
		c.pending = append(c.pending, s)
		return nil
	}
	_, err := unix.Write(c.fd, standin.Msg{Type: 'M', Status: s}.Encode())
	return err
}

func (c *standinConn) set(fd int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.fd = fd
	for _, s := range c.pending {
		unix.Write(fd, standin.Msg{Type: 'M', Status: s}.Encode())
	}
	c.pending = nil
}

// serveStandin accepts the stand-in's connections on ln (again, if it
// reconnects) and tells end what it reports: the signals it caught (for
// target: 0 at home, the moved process; its parent's PID away, where
// the moved process sent them) and, away, its child's statuses.
//
// Only the stand-in itself (by SO_PEERCRED, its node PID from who) is
// heard: the socket is open to every user, since a job's processes run
// as its owner.
func (n *Node) serveStandin(ctx context.Context, ln int, sc *standinConn, end *relay.End, target int, mute func() bool, who func() int) {
	stop := context.AfterFunc(ctx, func() { unix.Shutdown(ln, unix.SHUT_RDWR) })
	defer stop()
	defer unix.Close(ln)
	for ctx.Err() == nil {
		c, _, err := unix.Accept4(ln, unix.SOCK_CLOEXEC)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.ECONNABORTED) {
				continue
			}
			return
		}
		if cred, err := unix.GetsockoptUcred(c, unix.SOL_SOCKET, unix.SO_PEERCRED); err != nil || int(cred.Pid) != who() {
			unix.Close(c)
			continue
		}
		closeC := context.AfterFunc(ctx, func() { unix.Shutdown(c, unix.SHUT_RDWR) })
		first := true
		buf := make([]byte, 64)
		for {
			k, err := unix.Read(c, buf)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil || k == 0 {
				break
			}
			m, err := standin.Decode(buf[:k])
			if err != nil {
				n.log.Warn("stand-in", "err", err)
				break
			}
			switch {
			case mute != nil && mute():
				// The process moved on: its old parent's stand-in
				// sees it go; that is not its news.
			case first && m.Type == 'H':
				first = false
				sc.set(c)
			case m.Type == 'S':
				end.Caught(target, m.Sig)
			case m.Type == 'T':
				end.ProcState(m.Status)
			default:
				n.log.Warn("stand-in: unexpected message", "type", string(m.Type))
			}
		}
		closeC()
		sc.set(-1)
		unix.Close(c)
	}
}

// dialRelay keeps a connection to peer's end of the relay move: a new
// one each time the last one closed, until ctx ends.
func (n *Node) dialRelay(ctx context.Context, peer, move string, conns chan<- net.Conn) {
	for ctx.Err() == nil {
		c, err := n.relayConn(ctx, peer, move)
		if err != nil {
			n.log.Debug("relay: connect", "move", move, "peer", peer, "err", err)
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
			continue
		}
		wc := &watchedConn{Conn: c, closed: make(chan struct{})}
		select {
		case conns <- wc:
		case <-ctx.Done():
			c.Close()
			return
		}
		select {
		case <-wc.closed:
		case <-ctx.Done():
			return
		}
	}
}

func (n *Node) relayConn(ctx context.Context, peer, move string) (net.Conn, error) {
	m, ok := n.cl.Lookup(peer)
	if !ok {
		return nil, fmt.Errorf("node %s is not a member", peer)
	}
	d := tls.Dialer{Config: n.id.ClientConfig(alpnRelay), NetDialer: &net.Dialer{Timeout: 5 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", m.RPC)
	if err != nil {
		return nil, err
	}
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, move+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	c.SetWriteDeadline(time.Time{})
	return c, nil
}

// watchedConn tells when it was closed.
type watchedConn struct {
	net.Conn
	once   sync.Once
	closed chan struct{}
}

func (w *watchedConn) Close() error {
	w.once.Do(func() { close(w.closed) })
	return w.Conn.Close()
}

// handleRelayConn takes a relay connection from another node (ALPN
// ferry-relay): its first line names the move.
func (n *Node) handleRelayConn(c *tls.Conn) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := readLine(c)
	c.SetReadDeadline(time.Time{})
	if err != nil {
		c.Close()
		return
	}
	p := n.findPart(line)
	if p == nil || p.side != deputy.Away {
		n.log.Debug("relay connection for no part here", "move", line)
		c.Close()
		return
	}
	select {
	case p.conns <- c:
	case <-p.done:
		c.Close()
	case <-time.After(10 * time.Second):
		c.Close()
	}
}

// readLine reads one line byte by byte (nothing after it is consumed).
func readLine(r io.Reader) (string, error) {
	var b []byte
	one := make([]byte, 1)
	for len(b) < 256 {
		if _, err := io.ReadFull(r, one); err != nil {
			return "", err
		}
		if one[0] == '\n' {
			return string(b), nil
		}
		b = append(b, one[0])
	}
	return "", errors.New("line too long")
}

// handleCoprocIn prepares the arrival of a process moved apart from its
// job: a part of the job with its parent as a stand-in.
func (n *Node) handleCoprocIn(w http.ResponseWriter, r *http.Request) {
	var req coprocInRequest
	if !decodeBody(w, r, &req) {
		return
	}
	addr, err := n.prepareCoprocIn(req)
	if err != nil {
		httpError(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, coprocInReply{Addr: addr})
}

// handleCoprocCommitted answers whether the new copy of a move runs here.
func (n *Node) handleCoprocCommitted(w http.ResponseWriter, r *http.Request) {
	p := n.findPart(r.PathValue("move"))
	ok := false
	n.mu.Lock()
	if c := n.homeComing[r.PathValue("move")]; c != nil {
		select {
		case <-c:
			ok = true
		default:
		}
	}
	n.mu.Unlock()
	if p != nil {
		select {
		case <-p.committed:
			ok = true
		default:
		}
	}
	writeJSON(w, ok)
}

func (n *Node) prepareCoprocIn(req coprocInRequest) (string, error) {
	if n.stopping.Load() {
		return "", fmt.Errorf("node %s: %w", n.cfg.ID, errStopping)
	}
	if req.Move == "" || strings.ContainsAny(req.Move, "/\n") || req.PID <= 1 || req.Parent <= 1 {
		return "", fmt.Errorf("a malformed request for a process moved apart: %+v", req)
	}
	if n.findPart(req.Move) != nil {
		return "", fmt.Errorf("move %s is already here", req.Move)
	}
	dir := filepath.Join(n.cfg.StateDir, "parts", req.Move)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	var procEnds []*os.File
	relayFDs := map[deputy.StreamID]*os.File{}
	var roles []string
	names := map[string]string{} // role → "pipe:INO" or "socket:INO" as the process holds it
	cleanup := func() {
		for _, f := range procEnds {
			f.Close()
		}
		for _, f := range relayFDs {
			f.Close()
		}
		os.RemoveAll(dir)
	}
	dirs := map[deputy.StreamID]deputy.Dir{}
	for _, s := range req.Streams {
		dirs[s.ID] = s.Dir
	}
	for _, e := range req.Ends {
		var proc, mine *os.File
		switch {
		case e.Kind == "pipe" && len(e.Streams) == 1:
			rf, wf, err := os.Pipe()
			if err != nil {
				cleanup()
				return "", err
			}
			proc, mine = wf, rf
			if dirs[e.Streams[0]] == deputy.ToAway {
				proc, mine = rf, wf
			}
			// Room for a window's worth: the relay keeps the link busy
			// while the process reads (the kernel may give less).
			unix.FcntlInt(wf.Fd(), unix.F_SETPIPE_SZ, relayWindow)
		case e.Kind == "socket" && (len(e.Streams) == 1 || len(e.Streams) == 2):
			sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				cleanup()
				return "", os.NewSyscallError("socketpair", err)
			}
			proc, mine = os.NewFile(uintptr(sp[0]), "socket"), os.NewFile(uintptr(sp[1]), "socket")
		default:
			cleanup()
			return "", fmt.Errorf("a malformed relayed end: %+v", e)
		}
		procEnds = append(procEnds, proc)
		for _, id := range e.Streams {
			relayFDs[id] = mine
		}
		roles = append(roles, e.role())
		var st unix.Stat_t
		if err := unix.Fstat(int(proc.Fd()), &st); err == nil {
			names[e.role()] = fmt.Sprintf("%s:%d", e.Kind, st.Ino)
		}
	}
	top := req.Parent // the part's first process: its init waits for it
	if req.Leader > 1 {
		top = req.Leader
	}
	in, err := job.StartInit(job.InitSpec{Exe: n.cfg.Exe, MainPID: top, Scratch: n.cfg.Scratch,
		Control: filepath.Join(dir, "control.sock"), ExitFile: filepath.Join(dir, "exit")})
	if err != nil {
		cleanup()
		return "", err
	}
	sockName := "standin-away-" + req.Move + ".sock"
	hostSock := filepath.Join(n.cfg.Scratch, sockName)
	os.Remove(hostSock)
	ln, err := standin.Listen(hostSock)
	if err != nil {
		in.Kill()
		cleanup()
		return "", err
	}
	host, _, _ := net.SplitHostPort(n.cfg.Listen)
	if host == "" {
		host = "127.0.0.1"
	}
	args := []string{"--listen", net.JoinHostPort(host, "0"), "--control", filepath.Join(dir, "control.sock"),
		"--parent", strconv.Itoa(req.Parent), "--standin", filepath.Join(job.ScratchMount, sockName),
		"--standin-exe", n.cfg.Exe, "--relayed", strings.Join(roles, ","), "--last-pid", strconv.Itoa(req.LastPID)}
	if req.Session {
		args = append(args, "--parent-session")
	}
	if req.Leader > 1 {
		args = append(args, "--leader", strconv.Itoa(req.Leader))
	}
	if o := ownerFlag(req.Info); o != "" {
		args = append(args, "--owner", o)
	}
	ag, err := n.startAgent(in.NSPath(), "recv", args, procEnds...)
	for _, f := range procEnds {
		f.Close()
	}
	procEnds = nil
	fail := func(err error) (string, error) {
		in.Kill()
		unix.Close(ln)
		os.Remove(hostSock)
		cleanup()
		return "", err
	}
	if err != nil {
		return fail(err)
	}
	addr, err := awaitListening(ag, in.Kill)
	if err != nil {
		return fail(err)
	}
	p := &part{move: req.Move, side: deputy.Away, peer: req.Home, conns: make(chan net.Conn, 4),
		committed: make(chan struct{}), done: make(chan struct{}), roles: names}
	n.addPart(p)
	n.goBg(func() { n.followCoprocIn(p, req, in, ag, ln, hostSock, relayFDs, dir) })
	return addr, nil
}

// followRecv follows the receiving agent of a process moved apart until
// it ends: committed is closed at its commit; it returns whether the new
// copy was let run, and else why not.
func (n *Node) followRecv(ag *agentProc, move string, committed chan struct{}) (bool, error) {
	released := false
	var agentErr error
	for {
		ev, err := ag.Next()
		if err != nil {
			break
		}
		switch ev.Kind {
		case agent.Committed:
			close(committed)
		case agent.Released:
			released = true
		case agent.Failed:
			agentErr = ev.Err.Err()
		case agent.Warning:
			n.log.Warn("receiving agent", "move", move, "warning", ev.Message)
		}
	}
	if werr := ag.Wait(); agentErr == nil && !released {
		agentErr = fmt.Errorf("the receiving agent: %v", werr)
	}
	return released, agentErr
}

// followCoprocIn follows the receiving agent of a process moved apart
// and, once it runs here, serves the away end of its relay until the
// process is gone and home knows.
func (n *Node) followCoprocIn(p *part, req coprocInRequest, in *job.Init, ag *agentProc, ln int, hostSock string,
	relayFDs map[deputy.StreamID]*os.File, dir string) {
	defer close(p.done)
	defer n.dropPart(p.move)
	released, agentErr := n.followRecv(ag, p.move, p.committed)
	if !released {
		n.log.Warn("a process moved apart did not arrive; nothing kept here", "move", p.move, "err", agentErr)
		in.Kill()
		unix.Close(ln)
		os.Remove(hostSock)
		for _, f := range relayFDs {
			f.Close()
		}
		os.RemoveAll(dir)
		return
	}
	n.log.Info("a process moved apart runs here", "move", p.move, "job", req.Job, "pid", req.PID)
	ns := in.NSPath()
	host, herr := job.HostPID(ns, req.PID)
	p.end = &relay.End{Config: deputy.Config{Side: deputy.Away, Streams: req.Streams, PeerTimeout: relayPeerTimeout, Window: relayWindow}, FDs: relayFDs,
		Log: n.log.With("move", p.move),
		Kill: func(target, sig int) error {
			if herr != nil {
				return herr
			}
			return unix.Kill(host, unix.Signal(sig))
		}}
	p.end.Init()
	ctx, cancel := n.partContext()
	defer cancel()
	p.mu.Lock()
	p.stop, p.nsPath, p.pid = cancel, ns, req.PID
	p.mu.Unlock()
	go n.serveStandin(ctx, ln, &standinConn{}, p.end, req.Parent, p.leaving.Load, func() int {
		h, _ := job.HostPID(ns, req.Parent)
		return h
	})
	if err := p.end.Run(ctx, p.conns); err != nil && !p.leaving.Load() {
		if !errors.Is(err, context.Canceled) {
			n.log.Error("relay ended", "move", p.move, "err", err)
		}
		unix.Kill(host, unix.SIGKILL)
	}
	os.Remove(hostSock)
	if ctx.Err() != nil && !p.leaving.Load() {
		return // the node stops
	}
	select {
	case <-in.Done():
	case <-time.After(10 * time.Second):
		in.Kill()
	}
	os.RemoveAll(dir)
}
