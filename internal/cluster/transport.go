package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"ferry/internal/pki"
)

// ALPN is the TLS application protocol of gossip connections. A node's
// shared TLS listener hands connections that negotiated it to
// Transport.HandleConn.
const ALPN = "ferry-gossip"

const (
	headerMagic   = "FGSP"
	headerVersion = 1

	kindPacket byte = 1
	kindStream byte = 2

	// maxPacket bounds one inbound packet frame; memberlist packets are far
	// smaller (UDPBufferSize), this only stops a peer making us allocate.
	maxPacket = 1 << 20
	// packetQueue is how many outbound packets may wait per peer; more are
	// dropped, as UDP would.
	packetQueue = 128
	// packetIdle closes an outbound packet connection unused this long; the
	// receiver gives up on it after twice as long.
	packetIdle = 30 * time.Second
	// ioTimeout bounds a dial + handshake + header, a header read, and one
	// packet write.
	ioTimeout = 5 * time.Second
)

// ErrBadHeader is wrapped by every error about a malformed connection header.
var ErrBadHeader = errors.New("bad gossip header")

// header opens every gossip connection, sent by the dialing node right after
// the TLS handshake:
//
//	magic "FGSP" | version (1 byte, 1) | kind (1 byte: 1 packet, 2 stream) |
//	len(id) (1 byte) | id | len(addr) (1 byte) | addr
//
// id is the sender's node id and must equal the CN of its certificate; addr
// is its advertised gossip address ("ip:port"), where replies to packets go.
// A packet connection then carries frames: length (4 bytes, big endian) |
// payload, each one memberlist packet. A stream connection carries one
// memberlist stream as is.
type header struct {
	kind byte
	id   string
	addr string
}

func (h header) marshal() ([]byte, error) {
	if h.kind != kindPacket && h.kind != kindStream {
		return nil, fmt.Errorf("%w: kind %d", ErrBadHeader, h.kind)
	}
	if h.id == "" || len(h.id) > 255 || len(h.addr) > 255 {
		return nil, fmt.Errorf("%w: id %q or addr %q empty or too long", ErrBadHeader, h.id, h.addr)
	}
	b := make([]byte, 0, len(headerMagic)+4+len(h.id)+len(h.addr))
	b = append(b, headerMagic...)
	b = append(b, headerVersion, h.kind, byte(len(h.id)))
	b = append(b, h.id...)
	b = append(b, byte(len(h.addr)))
	b = append(b, h.addr...)
	return b, nil
}

// readHeader reads exactly one header from r and nothing beyond it, so that
// a stream can be handed on with its first byte unread.
func readHeader(r io.Reader) (header, error) {
	var fixed [len(headerMagic) + 3]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return header{}, fmt.Errorf("%w: %w", ErrBadHeader, err)
	}
	if string(fixed[:len(headerMagic)]) != headerMagic {
		return header{}, fmt.Errorf("%w: magic %q", ErrBadHeader, fixed[:len(headerMagic)])
	}
	rest := fixed[len(headerMagic):]
	if rest[0] != headerVersion {
		return header{}, fmt.Errorf("%w: unsupported version %d", ErrBadHeader, rest[0])
	}
	h := header{kind: rest[1]}
	if h.kind != kindPacket && h.kind != kindStream {
		return header{}, fmt.Errorf("%w: kind %d", ErrBadHeader, h.kind)
	}
	id := make([]byte, rest[2])
	if _, err := io.ReadFull(r, id); err != nil {
		return header{}, fmt.Errorf("%w: id: %w", ErrBadHeader, err)
	}
	var n [1]byte
	if _, err := io.ReadFull(r, n[:]); err != nil {
		return header{}, fmt.Errorf("%w: addr length: %w", ErrBadHeader, err)
	}
	addr := make([]byte, n[0])
	if _, err := io.ReadFull(r, addr); err != nil {
		return header{}, fmt.Errorf("%w: addr: %w", ErrBadHeader, err)
	}
	h.id, h.addr = string(id), string(addr)
	if h.id == "" {
		return header{}, fmt.Errorf("%w: empty id", ErrBadHeader)
	}
	return h, nil
}

// TransportConfig configures a Transport.
type TransportConfig struct {
	// ID is this node's id; it must be the CN of TLS's certificate.
	ID string
	// Addr is the advertised "host:port" other nodes dial for gossip; a
	// host name is resolved once, here.
	Addr string
	// TLS holds the node's certificate and the cluster CA.
	TLS *pki.Identity
	// Log receives transport events; nil discards them.
	Log *slog.Logger
}

// Transport is a memberlist.NodeAwareTransport that carries memberlist's
// packets and streams over mutual TLS connections (ALPN "ferry-gossip").
// Packets to one peer share a long-lived connection, framed; each stream is
// a connection of its own. Inbound connections come from HandleConn, fed
// either by the node's shared TLS listener or by Serve.
//
// Every inbound connection must carry a certificate of the cluster CA whose
// CN equals the node id in the connection header, and an outbound connection
// to a named node must reach a server whose CN is that name.
type Transport struct {
	id        string
	ident     *pki.Identity
	log       *slog.Logger
	advertise netip.AddrPort
	client    *tls.Config
	server    *tls.Config

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn

	// ctx is cancelled by Shutdown; it bounds every dial and channel send.
	ctx    context.Context
	cancel context.CancelFunc
	// wg counts every goroutine the transport starts; Shutdown waits for it.
	wg sync.WaitGroup

	mu       sync.Mutex // guards the fields below
	closed   bool
	senders  map[memberlist.Address]*sender
	inbound  map[net.Conn]struct{} // connections read by the transport
	listener net.Listener
	// dialed maps each address this node dialed to the node id whose
	// verified certificate answered there last.
	dialed map[string]string
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// sender owns the outbound packet connection to one peer.
type sender struct {
	to    memberlist.Address
	queue chan []byte // frames, length prefix included
}

// NewTransport returns a transport with no listener of its own: inbound
// connections reach it through HandleConn.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.TLS == nil {
		return nil, errors.New("new transport: no TLS identity")
	}
	if cfg.ID != cfg.TLS.ID() {
		return nil, fmt.Errorf("new transport: node id %q is not the certificate's %q", cfg.ID, cfg.TLS.ID())
	}
	ap, err := advertiseAddr(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("new transport: %w", err)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Transport{
		id:        cfg.ID,
		ident:     cfg.TLS,
		log:       log,
		advertise: ap,
		client:    cfg.TLS.ClientConfig(ALPN),
		server:    cfg.TLS.ServerConfig(ALPN),
		packetCh:  make(chan *memberlist.Packet, 256),
		streamCh:  make(chan net.Conn),
		ctx:       ctx,
		cancel:    cancel,
		senders:   make(map[memberlist.Address]*sender),
		inbound:   make(map[net.Conn]struct{}),
		dialed:    make(map[string]string),
	}, nil
}

// ListenTransport is NewTransport with a TLS listener of its own on cfg.Addr,
// which may have port 0: Addr then reports the port chosen.
func ListenTransport(cfg TransportConfig) (*Transport, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("listen transport: %w", err)
	}
	cfg.Addr = ln.Addr().String()
	t, err := NewTransport(cfg)
	if err != nil {
		ln.Close()
		return nil, err
	}
	if err := t.Serve(ln); err != nil {
		ln.Close()
		return nil, err
	}
	return t, nil
}

// advertiseAddr resolves the advertised "host:port" to one IP and port, the
// form memberlist gossips.
func advertiseAddr(addr string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		ta, rerr := net.ResolveTCPAddr("tcp", addr)
		if rerr != nil {
			return netip.AddrPort{}, fmt.Errorf("advertised address %q: %w", addr, rerr)
		}
		ap = ta.AddrPort()
	}
	if ap.Addr().IsUnspecified() {
		return netip.AddrPort{}, fmt.Errorf("advertised address %q: unspecified ip", addr)
	}
	if ap.Port() == 0 {
		return netip.AddrPort{}, fmt.Errorf("advertised address %q: port 0", addr)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}

// Addr returns the advertised gossip address, "ip:port".
func (t *Transport) Addr() string { return t.advertise.String() }

// Serve accepts plain TCP connections on ln in a goroutine of the transport,
// makes the TLS handshake (ALPN "ferry-gossip") and hands each to HandleConn.
// Shutdown closes ln.
func (t *Transport) Serve(ln net.Listener) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return errors.New("serve: transport shut down")
	}
	if t.listener != nil {
		return errors.New("serve: already serving")
	}
	t.listener = ln
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if t.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
					return
				}
				// E.g. out of file descriptors: wait, do not spin.
				t.log.Warn("gossip accept failed", "err", err)
				select {
				case <-t.ctx.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			t.HandleConn(tls.Server(c, t.server))
		}
	}()
	return nil
}

// HandleConn takes an inbound gossip connection and returns at once; the
// transport owns c from then on and closes it. c must be a TLS connection
// (*tls.Conn or anything with ConnectionState) that negotiated ALPN
// "ferry-gossip"; if its handshake is not done yet, HandleConn does it.
func (t *Transport) HandleConn(c net.Conn) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close()
		return
	}
	t.inbound[c] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	go func() {
		defer t.wg.Done()
		keep, err := t.serveConn(c)
		if err != nil && t.ctx.Err() == nil {
			t.log.Warn("gossip connection refused", "remote", c.RemoteAddr().String(), "err", err)
		}
		t.mu.Lock()
		delete(t.inbound, c)
		t.mu.Unlock()
		if !keep {
			c.Close()
		}
	}()
}

type tlsConn interface {
	ConnectionState() tls.ConnectionState
}

// serveConn checks an inbound connection and serves it. keep reports whether
// c was handed to memberlist, which then closes it.
func (t *Transport) serveConn(c net.Conn) (keep bool, err error) {
	if err := c.SetDeadline(time.Now().Add(ioTimeout)); err != nil {
		return false, fmt.Errorf("set deadline: %w", err)
	}
	if hc, ok := c.(interface{ HandshakeContext(context.Context) error }); ok {
		if err := hc.HandshakeContext(t.ctx); err != nil {
			return false, fmt.Errorf("tls handshake: %w", err)
		}
	}
	tc, ok := c.(tlsConn)
	if !ok {
		return false, fmt.Errorf("not a TLS connection (%T)", c)
	}
	cs := tc.ConnectionState()
	if cs.NegotiatedProtocol != ALPN {
		return false, fmt.Errorf("application protocol %q, want %q", cs.NegotiatedProtocol, ALPN)
	}
	peer, err := t.ident.VerifyPeer(cs)
	if err != nil {
		return false, err
	}
	h, err := readHeader(c)
	if err != nil {
		return false, err
	}
	if h.id != peer {
		return false, fmt.Errorf("peer %q claims to be node %q", peer, h.id)
	}
	from, err := netip.ParseAddrPort(h.addr)
	if err != nil {
		return false, fmt.Errorf("%w: addr %q of node %q: %w", ErrBadHeader, h.addr, peer, err)
	}
	if h.kind == kindStream {
		if err := c.SetDeadline(time.Time{}); err != nil {
			return false, fmt.Errorf("clear deadline: %w", err)
		}
		select {
		case t.streamCh <- c:
			return true, nil
		case <-t.ctx.Done():
			return false, nil
		}
	}
	return false, t.readPackets(c, net.TCPAddrFromAddrPort(from), peer)
}

// readPackets delivers the packet frames of c to memberlist until c ends.
func (t *Transport) readPackets(c net.Conn, from net.Addr, peer string) error {
	r := bufio.NewReader(c)
	var size [4]byte
	for {
		if err := c.SetReadDeadline(time.Now().Add(2 * packetIdle)); err != nil {
			return fmt.Errorf("set deadline: %w", err)
		}
		if _, err := io.ReadFull(r, size[:]); err != nil {
			if t.ctx.Err() == nil && !errors.Is(err, io.EOF) {
				t.log.Debug("gossip packet connection ended", "node", peer, "err", err)
			}
			return nil
		}
		n := binary.BigEndian.Uint32(size[:])
		if n > maxPacket {
			return fmt.Errorf("packet of %d bytes from node %q, limit %d", n, peer, maxPacket)
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			if t.ctx.Err() == nil {
				t.log.Debug("gossip packet connection ended", "node", peer, "err", err)
			}
			return nil
		}
		p := &memberlist.Packet{Buf: buf, From: from, Timestamp: time.Now()}
		select {
		case t.packetCh <- p:
		case <-t.ctx.Done():
			return nil
		}
	}
}

// dial opens a gossip connection of the given kind to a peer and sends the
// header. If to.Name is set, the peer's certificate must name that node.
func (t *Transport) dial(ctx context.Context, to memberlist.Address, kind byte) (*tls.Conn, error) {
	hdr, err := header{kind: kind, id: t.id, addr: t.advertise.String()}.marshal()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	d := tls.Dialer{Config: t.client}
	nc, err := d.DialContext(ctx, "tcp", to.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", to.String(), err)
	}
	c := nc.(*tls.Conn)
	cs := c.ConnectionState()
	peer, err := t.ident.VerifyPeer(cs)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: %w", to.String(), err)
	}
	t.mu.Lock()
	t.dialed[to.Addr] = peer
	t.mu.Unlock()
	if to.Name != "" && peer != to.Name {
		c.Close()
		return nil, fmt.Errorf("dial %s: answered by node %q", to.String(), peer)
	}
	if cs.NegotiatedProtocol != ALPN {
		c.Close()
		return nil, fmt.Errorf("dial %s: application protocol %q, want %q", to.String(), cs.NegotiatedProtocol, ALPN)
	}
	if deadline, ok := ctx.Deadline(); ok {
		_ = c.SetWriteDeadline(deadline)
	}
	if _, err := c.Write(hdr); err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: write header: %w", to.String(), err)
	}
	_ = c.SetWriteDeadline(time.Time{})
	return c, nil
}

// dialedID returns the node id whose certificate answered the last dial to
// addr ("ip:port").
func (t *Transport) dialedID(addr string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	id, ok := t.dialed[addr]
	return id, ok
}

// FinalAdvertiseAddr implements memberlist.Transport: the advertised address
// is fixed by the configuration.
func (t *Transport) FinalAdvertiseAddr(string, int) (net.IP, int, error) {
	return net.IP(t.advertise.Addr().AsSlice()), int(t.advertise.Port()), nil
}

// WriteTo implements memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport. Delivery is best
// effort: the packet is queued for the peer's connection and dropped if the
// queue is full or the peer cannot be reached.
func (t *Transport) WriteToAddress(b []byte, to memberlist.Address) (time.Time, error) {
	if len(b) > maxPacket {
		return time.Time{}, fmt.Errorf("write to %s: packet of %d bytes, limit %d", to.String(), len(b), maxPacket)
	}
	frame := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(frame, uint32(len(b)))
	copy(frame[4:], b)

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return time.Time{}, errors.New("write to: transport shut down")
	}
	s, ok := t.senders[to]
	if !ok {
		s = &sender{to: to, queue: make(chan []byte, packetQueue)}
		t.senders[to] = s
		t.wg.Add(1)
		go t.runSender(s)
	}
	select {
	case s.queue <- frame:
	default:
		t.log.Debug("gossip packet dropped: queue full", "to", to.String())
	}
	return time.Now(), nil
}

// runSender writes the queued packets of s to its peer, dialing when needed,
// and ends when the transport shuts down or the peer has been idle a while.
func (t *Transport) runSender(s *sender) {
	defer t.wg.Done()
	var conn *tls.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	idle := time.NewTimer(packetIdle)
	defer idle.Stop()
	for {
		select {
		case <-t.ctx.Done():
			return
		case <-idle.C:
			// Remove s only with an empty queue, under the lock that
			// WriteToAddress queues under, so no packet is stranded.
			t.mu.Lock()
			if len(s.queue) == 0 {
				delete(t.senders, s.to)
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
			idle.Reset(packetIdle)
		case frame := <-s.queue:
			idle.Reset(packetIdle)
			if conn == nil {
				c, err := t.dial(t.ctx, s.to, kindPacket)
				if err != nil {
					t.log.Debug("gossip packets dropped", "to", s.to.String(), "err", err)
					t.drain(s)
					continue
				}
				conn = c
			}
			_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := conn.Write(frame); err != nil {
				t.log.Debug("gossip packet dropped", "to", s.to.String(), "err", err)
				conn.Close()
				conn = nil
			}
		}
	}
}

// drain drops the packets queued for an unreachable peer: they are stale by
// the time a new dial could succeed.
func (t *Transport) drain(s *sender) {
	for {
		select {
		case <-s.queue:
		default:
			return
		}
	}
}

// PacketCh implements memberlist.Transport.
func (t *Transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// DialTimeout implements memberlist.Transport.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: a stream
// connection of its own to the peer.
func (t *Transport) DialAddressTimeout(to memberlist.Address, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	return t.dial(ctx, to, kindStream)
}

// StreamCh implements memberlist.Transport.
func (t *Transport) StreamCh() <-chan net.Conn { return t.streamCh }

// Shutdown implements memberlist.Transport: it closes the listener of Serve
// and every connection the transport reads, and waits for its goroutines.
// Streams already handed to memberlist are memberlist's to close.
func (t *Transport) Shutdown() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	ln := t.listener
	conns := make([]net.Conn, 0, len(t.inbound))
	for c := range t.inbound {
		conns = append(conns, c)
	}
	t.mu.Unlock()

	t.cancel()
	var err error
	if ln != nil {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = fmt.Errorf("close gossip listener: %w", cerr)
		}
	}
	for _, c := range conns {
		c.Close()
	}
	t.wg.Wait()
	return err
}
