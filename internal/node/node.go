// Package node is the ferry daemon: one per machine. It keeps the jobs
// that run here (each in its own PID namespace, package job), carries
// their standard streams, answers the CLI on a unix socket, talks to the
// other nodes over mutual TLS, and runs migrations by starting agents
// (package agent) on both sides.
//
// What belongs here: the node's job table and its HTTP API (api.go), job
// I/O and logs (jobs.go, logs.go), routing a request to the node where a
// job is now, and the node's part of a migration (outgoing.go: the
// source's steps; migration.go: the destination's): preparing the
// destination, draining and carrying stdio at the commit, settling an
// in-doubt commit. What does not: membership (package cluster),
// certificates (package pki), the migration protocol and transaction
// (package migrate), the agents and their protocol (package agent).
//
// One TLS port serves two protocols, told apart by ALPN: "http/1.1" for
// the node API between nodes, "ferry-gossip" for membership.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/cluster"
	"ferry/internal/ipc"
	"ferry/internal/job"
	"ferry/internal/pki"
	"ferry/internal/store"
)

// Config configures a node.
type Config struct {
	ID       string
	Listen   string // host:port of the node's TLS port
	StateDir string
	PKIDir   string   // default StateDir/pki
	Join     []string // addresses of nodes to join
	// Socket is the control socket (default StateDir/ferry.sock).
	Socket string
	// Scratch is this node's directory for jobs' files, seen by every
	// job at job.ScratchMount (default StateDir/scratch).
	Scratch string
	// Group may use the control socket besides root.
	Group string
	// Exe is ferry's executable, for job inits and agents (default: this one).
	Exe string
	// Faults injects migration failures (tests): agent side "send" or
	// "recv" → fault name.
	Faults map[string]string
	// StopJobs: when the node stops, its jobs end too. By default they
	// run on, and a node started on the same state directory takes them
	// back (an upgrade, a restart).
	StopJobs bool
	// Forwarding is the message-forwarding mechanism of the jobs that do
	// not choose one (resend, origin, link, update, auto; default auto).
	Forwarding string
	Log        *slog.Logger
}

// Node is a running ferry daemon.
type Node struct {
	cfg  Config
	log  *slog.Logger
	id   *pki.Identity
	cl   *cluster.Cluster
	peer *http.Client
	// msgPeer carries the messages' envelopes: one kept-alive connection
	// per peer while messages flow, closed soon after they stop.
	msgPeer *http.Client
	gid     int // -1: root only

	// bg counts the goroutines the node starts besides Run's own (job
	// watchers, migration followers, agent waits); Run waits for them
	// after the jobs are stopped. quit is closed when Run shuts down.
	bg   sync.WaitGroup
	quit chan struct{}
	// leaving is set when the node stops and leaves its jobs running.
	leaving atomic.Bool
	// stopping is set when the node starts to stop: no migration starts
	// then; inFlight counts those under way from here, which it lets
	// finish. (Arrivals are not waited for: the source decides them, and
	// one not yet committed ends with the node's connection to its init.)
	stopping atomic.Bool
	inFlight sync.WaitGroup

	db       *store.DB // the node's state on disk
	logWatch *logWatch
	peers    peerCache  // other nodes' jobs, as last seen
	eps      endpoints  // the jobs' message endpoints' connections
	msgs     *msgRouter // the routing of messages between nodes

	// settle are the migrations recover found at their commit, for Run
	// to decide once the node is in the cluster again.
	settle []func()

	mu   sync.Mutex // guards the fields below
	jobs map[string]*localJob
	// parts: the relay ends of processes moved apart from their jobs,
	// by move (coproc.go); moveSeq numbers those moves.
	parts   map[string]*part
	moveSeq int
	// homeComing: processes coming home, by the name their old node
	// asks about (closed once the new copy at home committed).
	homeComing map[string]chan struct{}
	// moved remembers where jobs that left went, for routing.
	moved map[string]string
	// committed: jobs whose incoming migration committed here, by id.
	committed map[string]bool
}

const alpnHTTP = "http/1.1"
const alpnGossip = "ferry-gossip"

// New loads the node's identity and prepares its state directory.
func New(cfg Config) (*Node, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.ID == "" || cfg.Listen == "" || cfg.StateDir == "" {
		return nil, errors.New("node: --id, --listen and --state are required")
	}
	if err := checkFaults(cfg.Faults); err != nil {
		return nil, err
	}
	for _, p := range []*string{&cfg.StateDir, &cfg.PKIDir, &cfg.Socket, &cfg.Scratch} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return nil, err
			}
			*p = abs
		}
	}
	if cfg.PKIDir == "" {
		cfg.PKIDir = filepath.Join(cfg.StateDir, "pki")
	}
	if cfg.Socket == "" {
		cfg.Socket = filepath.Join(cfg.StateDir, "ferry.sock")
	}
	if cfg.Scratch == "" {
		cfg.Scratch = filepath.Join(cfg.StateDir, "scratch")
	}
	if err := os.MkdirAll(cfg.Scratch, 0o755); err != nil {
		return nil, fmt.Errorf("scratch directory: %w", err)
	}
	if err := job.PrepareScratchMount(); err != nil {
		return nil, fmt.Errorf("scratch mount point: %w", err)
	}
	if cfg.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Exe = exe
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "jobs"), 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	id, err := pki.Load(cfg.PKIDir, cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("node identity (create it with `ferry init`): %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Log.With("node", cfg.ID), id: id, gid: -1, quit: make(chan struct{}),
		jobs: map[string]*localJob{}, moved: map[string]string{}, committed: map[string]bool{}}
	if cfg.Group != "" {
		g, err := user.LookupGroup(cfg.Group)
		if err != nil {
			return nil, fmt.Errorf("control socket group: %w", err)
		}
		n.gid, _ = strconv.Atoi(g.Gid)
	}
	mech := ipc.Auto
	if cfg.Forwarding != "" {
		if mech, err = ipc.ParseMechanism(cfg.Forwarding); err != nil {
			return nil, err
		}
	}
	n.msgs = newMsgRouter(n, mech)
	n.msgPeer = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     id.ClientConfig(alpnHTTP),
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     senderIdle + time.Second,
	}}
	n.peer = &http.Client{Transport: &http.Transport{
		TLSClientConfig:     id.ClientConfig(alpnHTTP),
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     30 * time.Second,
	}}
	return n, nil
}

// openState opens the node's store and the watch on its logs, and takes
// back what a previous daemon on this state directory left: its jobs,
// the migrations it was in.
func (n *Node) openState() error {
	db, err := store.Open(filepath.Join(n.cfg.StateDir, "node.db"))
	if err != nil {
		return err
	}
	n.db = db
	if n.logWatch, err = newLogWatch(); err != nil {
		n.log.Warn("job logs are polled", "err", err)
	} else {
		go n.logWatch.run()
	}
	return n.recover()
}

// closeState closes what openState opened.
func (n *Node) closeState() {
	if n.logWatch != nil {
		n.logWatch.Close()
	}
	if n.db != nil {
		n.db.Close()
	}
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// Run serves until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	if err := n.openState(); err != nil {
		return err
	}
	defer n.closeState()
	// Orphans in this node's process tree (agents' leftovers) are reaped
	// here, at once, instead of by the machine's init.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		// Not fatal: the machine's init reaps them instead.
		n.log.Warn("cannot become a child subreaper; orphans go to init",
			"err", fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err))
	}
	// Descriptors the node inherited from whoever started it must not
	// leak into jobs (a job holding a pipe to the outside could not move).
	closeOnExecAll()
	ln, err := tls.Listen("tcp", n.cfg.Listen, n.id.ServerConfig(alpnHTTP, alpnGossip, alpnRelay))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", n.cfg.Listen, err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	n.cl, err = cluster.New(cluster.Config{ID: n.cfg.ID, Addr: addr, RPC: addr, TLS: n.id, Log: n.log,
		OnJoin: n.savePeer})
	if err != nil {
		return fmt.Errorf("membership: %w", err)
	}
	defer n.cl.Shutdown()

	os.Remove(n.cfg.Socket)
	uln, err := net.Listen("unix", n.cfg.Socket)
	if err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	defer uln.Close()
	perm := os.FileMode(0o600)
	if n.gid >= 0 {
		perm = 0o660
		if err := os.Chown(n.cfg.Socket, 0, n.gid); err != nil {
			return fmt.Errorf("control socket: group %s: %w", n.cfg.Group, err)
		}
	}
	if err := os.Chmod(n.cfg.Socket, perm); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}

	httpConns := make(chan net.Conn)
	peerLn := &chanListener{c: httpConns, addr: ln.Addr(), done: make(chan struct{})}
	peerSrv := &http.Server{Handler: peerCaller(n.routes(true)), MaxHeaderBytes: maxHeaderBytes}
	ctlSrv := &http.Server{Handler: n.checkCaller(n.routes(false)), ConnContext: saveConn, MaxHeaderBytes: maxHeaderBytes}
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); peerSrv.Serve(peerLn) }()
	go func() { defer wg.Done(); ctlSrv.Serve(uln) }()
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				peerLn.Close()
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); n.dispatch(ctx, c.(*tls.Conn), httpConns, peerLn.done) }()
		}
	}()
	wg.Add(1)
	go func() { defer wg.Done(); n.refreshPeers(ctx) }()
	wg.Add(1)
	go func() { defer wg.Done(); n.msgs.run(ctx) }()
	for _, f := range n.settle {
		n.goBg(f)
	}
	n.settle = nil
	// The seeds, and the members this node knew before it restarted.
	join := append(append([]string{}, n.cfg.Join...), n.knownPeers()...)
	if len(join) > 0 {
		// The seeds may not be up yet: keep trying until one answers.
		wg.Add(1)
		go func() {
			defer wg.Done()
			for attempt := 0; ; attempt++ {
				_, err := n.cl.Join(join)
				if err == nil {
					return
				}
				if attempt%10 == 0 {
					n.log.Warn("join", "seeds", join, "err", err)
				}
				select {
				case <-time.After(300 * time.Millisecond):
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	n.log.Info("node running", "listen", addr, "socket", n.cfg.Socket)
	<-ctx.Done()
	n.stopping.Store(true)
	n.finishMigrations(migrationGrace)
	n.cl.Leave(time.Second)
	ln.Close()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	peerSrv.Shutdown(sctx)
	ctlSrv.Shutdown(sctx)
	peerSrv.Close()
	ctlSrv.Close()
	wg.Wait()
	if n.msgs != nil {
		n.msgs.stopJournal()
	}
	close(n.quit)
	n.stopJobs()
	n.waitBackground(bgWait)
	return nil
}

// migrationGrace bounds how long a stopping node lets the migrations under
// way finish (those still running after it settle when the node is back).
const migrationGrace = 60 * time.Second

// finishMigrations waits for the migrations under way, for d at most.
func (n *Node) finishMigrations(d time.Duration) {
	done := make(chan struct{})
	go func() { n.inFlight.Wait(); close(done) }()
	select {
	case <-done:
		return
	default:
	}
	n.log.Info("stopping: letting the migrations under way finish", "at most", d)
	select {
	case <-done:
	case <-time.After(d):
		n.log.Warn("stopping with migrations under way; the next node on this state directory settles them")
	}
}

// errStopping refuses a migration while the node stops.
var errStopping = errors.New("the node is stopping")

// bgWait bounds how long Run waits for the node's goroutines once the
// jobs are killed: they end when the jobs' inits and agents are gone.
const bgWait = 10 * time.Second

// goBg runs f on a goroutine Run waits for when it shuts down.
func (n *Node) goBg(f func()) {
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		f()
	}()
}

// waitBackground waits for the goroutines started by goBg, for d at most.
func (n *Node) waitBackground(d time.Duration) bool {
	done := make(chan struct{})
	go func() { n.bg.Wait(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		n.log.Warn("shutdown: goroutines of jobs or migrations still running", "waited", d)
		return false
	}
}

// dispatch sends a TLS connection to HTTP or to membership by ALPN.
func (n *Node) dispatch(ctx context.Context, c *tls.Conn, httpConns chan<- net.Conn, done <-chan struct{}) {
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := c.HandshakeContext(hctx)
	cancel()
	if err != nil {
		n.log.Debug("refused a connection", "remote", c.RemoteAddr(), "err", err)
		c.Close()
		return
	}
	switch c.ConnectionState().NegotiatedProtocol {
	case alpnGossip:
		n.cl.Transport().HandleConn(c)
		return
	case alpnRelay:
		n.handleRelayConn(c)
		return
	}
	select {
	case httpConns <- c:
	case <-done:
		c.Close()
	}
}

type chanListener struct {
	c    chan net.Conn
	addr net.Addr
	done chan struct{}
	once sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}
func (l *chanListener) Addr() net.Addr { return l.addr }

type connKey struct{}

func saveConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// stopJobs lets go of every job here when the node stops: they run on
// (their inits hold their stdio and record their exit) unless the node
// was told to stop them.
func (n *Node) stopJobs() {
	if !n.cfg.StopJobs {
		n.leaving.Store(true)
	}
	n.mu.Lock()
	jobs := make([]*localJob, 0, len(n.jobs))
	for _, j := range n.jobs {
		jobs = append(jobs, j)
	}
	n.mu.Unlock()
	running := 0
	for _, j := range jobs {
		j.mu.Lock()
		in := j.init
		j.mu.Unlock()
		if in == nil {
			continue
		}
		if n.cfg.StopJobs {
			in.Kill()
			continue
		}
		select {
		case <-in.Done():
		default:
			running++
		}
		in.Detach()
	}
	if running > 0 {
		n.log.Info("jobs keep running; a node started on this state directory takes them back", "jobs", running)
	}
}

// closeOnExecAll marks every descriptor above stderr close-on-exec.
func closeOnExecAll() {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range ents {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
}
