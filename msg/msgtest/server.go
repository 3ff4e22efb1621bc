// Package msgtest is a fake message endpoint for tests: a node's side
// of the protocol of ferry/msg on a unix SOCK_SEQPACKET socket, in one
// process, without root. It sends each connection its HELLO, answers
// SENDs by a rule (by default it routes between its own connections),
// can inject MSGs and raw packets, and records what it was sent. It
// follows the rules a node's server must follow (see ferry/msg), so it
// is also their reference.
package msgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/msg"
	"ferry/msg/wire"
)

// Send is a SEND the server received.
type Send struct {
	From    msg.ID // the sending connection's id
	To      msg.ID
	Seq     uint32
	Payload []byte
}

// Result is a rule's answer to a SEND.
type Result struct {
	Code wire.Code
	Text string
	// Silent: send no RESULT (the rule injected something else, or the
	// test wants the sender left waiting).
	Silent bool
}

// Rule decides the answer to a SEND; it runs on the sending
// connection's reader goroutine and may call the server's methods.
type Rule func(s *Server, snd Send) Result

// Route is the default rule: deliver to a connection with that id, or
// refuse with CodeUnknownID.
func Route(s *Server, snd Send) Result {
	if err := s.Inject(snd.To, snd.From, snd.Payload); err != nil {
		return Result{Code: wire.CodeUnknownID, Text: fmt.Sprintf("unknown id %v: no such process", snd.To)}
	}
	return Result{}
}

// Config configures a Server; the zero value is usable.
type Config struct {
	// ID assigns the id of the n-th connection (from 0), given its
	// peer's credentials. Default: job "t1-1", the peer's pid.
	ID func(n int, cred *unix.Ucred) msg.ID
	// Rule answers SENDs; default Route.
	Rule Rule
	// MaxPayload is announced in HELLO; default wire.MaxPayload.
	MaxPayload uint32
	// Hello, if set, replaces the HELLO packet sent to a connection.
	Hello func(id msg.ID) []byte
}

// Server is a running fake endpoint.
type Server struct {
	cfg  Config
	path string
	ln   *net.UnixListener
	wg   sync.WaitGroup // the accept loop and the connections' readers

	mu      sync.Mutex // guards the fields below
	n       int
	conns   map[msg.ID]*net.UnixConn
	all     map[*net.UnixConn]bool
	sends   []Send
	changed chan struct{}
	closed  bool
}

// New starts a server in a temporary directory of tb and stops it when
// the test ends.
func New(tb testing.TB, cfg Config) *Server {
	tb.Helper()
	s, err := Start(tb.TempDir(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// Start listens on dir/msg.sock.
func Start(dir string, cfg Config) (*Server, error) {
	if cfg.ID == nil {
		cfg.ID = func(_ int, cred *unix.Ucred) msg.ID { return msg.ID{Job: "t1-1", PID: int(cred.Pid)} }
	}
	if cfg.Rule == nil {
		cfg.Rule = Route
	}
	if cfg.MaxPayload == 0 {
		cfg.MaxPayload = wire.MaxPayload
	}
	path := filepath.Join(dir, "msg.sock")
	ln, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("msgtest: %w", err)
	}
	s := &Server{cfg: cfg, path: path, ln: ln, conns: map[msg.ID]*net.UnixConn{},
		all: map[*net.UnixConn]bool{}, changed: make(chan struct{})}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Path is the socket's path (for FERRY_MSG_SOCKET).
func (s *Server) Path() string { return s.path }

// Close stops the server, closes every connection and waits for its
// goroutines.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.all {
		c.Close()
	}
	s.mu.Unlock()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.all[c] = true
		n := s.n
		s.n++
		s.mu.Unlock()
		s.wg.Add(1)
		go s.serve(c, n)
	}
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := rc.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, cerr
}

func (s *Server) serve(c *net.UnixConn, n int) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.all, c)
		for id, cc := range s.conns {
			if cc == c {
				delete(s.conns, id)
			}
		}
		s.notifyLocked()
		s.mu.Unlock()
		c.Close()
	}()
	cred, err := peerCred(c)
	if err != nil {
		return
	}
	id := s.cfg.ID(n, cred)
	hello, _ := wire.Append(nil, &wire.Packet{Type: wire.TypeHello, MaxPayload: s.cfg.MaxPayload, ID: id.String()})
	if s.cfg.Hello != nil {
		hello = s.cfg.Hello(id)
	}
	s.mu.Lock()
	s.conns[id] = c
	s.notifyLocked()
	s.mu.Unlock()
	if _, err := c.Write(hello); err != nil {
		return
	}
	buf := make([]byte, wire.MaxPacket)
	for {
		nr, _, flags, _, err := c.ReadMsgUnix(buf, nil)
		if err != nil || nr == 0 {
			return // closed by the process (or by Close)
		}
		if !s.handle(c, id, buf[:nr], flags&unix.MSG_TRUNC != 0) {
			return
		}
	}
}

// handle answers one packet; false means the connection is to be closed
// (after an ERROR).
func (s *Server) handle(c *net.UnixConn, from msg.ID, b []byte, truncated bool) bool {
	reply := func(t wire.Type, seq uint32, code wire.Code, text string) {
		pkt, _ := wire.Append(nil, &wire.Packet{Type: t, Seq: seq, Code: code, Text: text})
		c.Write(pkt)
	}
	a := wire.Check(b, truncated)
	if a.Reply != nil {
		reply(a.Reply.Type, a.Reply.Seq, a.Reply.Code, a.Reply.Text)
		return !a.Close
	}
	p := a.Send
	to, err := msg.ParseID(p.ID)
	if err != nil {
		reply(wire.TypeResult, p.Seq, wire.CodeMalformed, fmt.Sprintf("destination: %v", err))
		return true
	}
	snd := Send{From: from, To: to, Seq: p.Seq, Payload: append([]byte{}, p.Payload...)}
	s.mu.Lock()
	s.sends = append(s.sends, snd)
	s.notifyLocked()
	s.mu.Unlock()
	if r := s.cfg.Rule(s, snd); !r.Silent {
		reply(wire.TypeResult, p.Seq, r.Code, r.Text)
	}
	return true
}

// ErrNoConn: no connection has that id.
var ErrNoConn = errors.New("msgtest: no connection with that id")

// Inject sends a MSG from from to the connection with id to.
func (s *Server) Inject(to, from msg.ID, payload []byte) error {
	pkt, err := wire.Append(nil, &wire.Packet{Type: wire.TypeMsg, ID: from.String(), Payload: payload})
	if err != nil {
		return err
	}
	return s.InjectRaw(to, pkt)
}

// InjectRaw sends pkt, as it is, to the connection with id to.
func (s *Server) InjectRaw(to msg.ID, pkt []byte) error {
	s.mu.Lock()
	c := s.conns[to]
	s.mu.Unlock()
	if c == nil {
		return fmt.Errorf("%w: %v", ErrNoConn, to)
	}
	_, err := c.Write(pkt)
	return err
}

// Sends is every SEND received so far, in order.
func (s *Server) Sends() []Send {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Send{}, s.sends...)
}

// WaitConn waits until a connection with id to is open.
func (s *Server) WaitConn(ctx context.Context, id msg.ID) error {
	return s.waitFor(ctx, func() bool { return s.conns[id] != nil })
}

// WaitSends waits until at least n SENDs were received.
func (s *Server) WaitSends(ctx context.Context, n int) ([]Send, error) {
	err := s.waitFor(ctx, func() bool { return len(s.sends) >= n })
	return s.Sends(), err
}

// WaitAny waits until some connection is open and returns its id.
func (s *Server) WaitAny(ctx context.Context) (msg.ID, error) {
	var id msg.ID
	err := s.waitFor(ctx, func() bool {
		for k := range s.conns {
			id = k
			return true
		}
		return false
	})
	return id, err
}

func (s *Server) waitFor(ctx context.Context, ok func() bool) error {
	for {
		s.mu.Lock()
		if ok() {
			s.mu.Unlock()
			return nil
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}
