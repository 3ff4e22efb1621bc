package msg

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ferry/msg/wire"
)

// DefaultPath is where a job's message endpoint is, on every node.
const DefaultPath = "/run/ferry/msg.sock"

// PathEnv, when set, overrides DefaultPath (for tests).
const PathEnv = "FERRY_MSG_SOCKET"

// MaxPayload is the largest payload a message may carry.
const MaxPayload = wire.MaxPayload

// dialTimeout bounds Dial's wait for the node's HELLO.
const dialTimeout = 10 * time.Second

// Conn is a process's connection to its node's message endpoint. Its
// methods may be called from several goroutines at once.
//
// No goroutine reads the socket in the background: a packet is read
// only by a call that needs one (Send waiting for its RESULT, Recv
// waiting for a MSG), so that the socket polls readable while a message
// is waiting in it. A message read by a call other than Recv is queued
// in the Conn; see Fd for what that means for polling.
type Conn struct {
	uc         *net.UnixConn
	rc         syscall.RawConn
	id         ID
	maxPayload int

	wmu sync.Mutex // serializes writes and the write deadline

	// rtok is the reading token: only its holder reads the socket, and
	// it alone touches rbuf and the read deadline.
	rtok chan struct{}
	rbuf []byte

	mu      sync.Mutex // guards the fields below
	seq     uint32     // last sequence number handed out
	queue   []received // MSGs read but not yet returned by Recv
	results map[uint32]*pending
	broken  error         // once set, the connection is unusable (queued MSGs still readable)
	changed chan struct{} // closed and replaced when queue, results or broken change
}

type received struct {
	from    ID
	payload []byte
}

type pending struct {
	to        ID
	done      bool
	err       error
	abandoned bool // its Send gave up (context); drop the result when it arrives
}

// Ticket names a message sent by TrySend, whose result is collected
// with Result or TryResult.
type Ticket struct {
	seq uint32
	to  ID
}

// Seq is the message's sequence number on this connection.
func (t Ticket) Seq() uint32 { return t.seq }

// To is the message's destination.
func (t Ticket) To() ID { return t.to }

// Dial connects to the endpoint at $FERRY_MSG_SOCKET, or DefaultPath,
// and waits (at most 10 s) for the node's HELLO.
func Dial() (*Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), dialTimeout)
	defer cancel()
	return DialPath(ctx, "")
}

// DialPath connects to the endpoint at path ("" means $FERRY_MSG_SOCKET
// or DefaultPath) and waits for the node's HELLO until ctx is done.
func DialPath(ctx context.Context, path string) (*Conn, error) {
	if path == "" {
		path = os.Getenv(PathEnv)
	}
	if path == "" {
		path = DefaultPath
	}
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		return nil, fmt.Errorf("message endpoint: %w", err)
	}
	uc := nc.(*net.UnixConn)
	rc, err := uc.SyscallConn()
	if err != nil {
		uc.Close()
		return nil, fmt.Errorf("message endpoint: %w", err)
	}
	c := &Conn{
		uc:      uc,
		rc:      rc,
		rtok:    make(chan struct{}, 1),
		rbuf:    make([]byte, wire.MaxPacket),
		results: make(map[uint32]*pending),
		changed: make(chan struct{}),
	}
	p, err := c.readPacket(ctx, false)
	if err == nil && p.Type != wire.TypeHello {
		err = fmt.Errorf("%w: first packet is %v, want HELLO", ErrProtocol, p.Type)
	}
	var id ID
	if err == nil {
		if id, err = ParseID(p.ID); err != nil {
			err = fmt.Errorf("%w: HELLO: %w", ErrProtocol, err)
		}
	}
	if err != nil {
		uc.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("message endpoint %s: no HELLO: %w", path, ctx.Err())
		}
		return nil, fmt.Errorf("message endpoint %s: %w", path, err)
	}
	c.id = id
	c.maxPayload = MaxPayload
	if p.MaxPayload < uint32(c.maxPayload) {
		c.maxPayload = int(p.MaxPayload)
	}
	return c, nil
}

// ID is this process's id, as its node knows it.
func (c *Conn) ID() ID { return c.id }

// MaxPayload is the largest payload this connection's node takes
// (MaxPayload unless the node said less in its HELLO).
func (c *Conn) MaxPayload() int { return c.maxPayload }

// Send sends payload to the process to and waits until the node reports
// the outcome: nil once the message is delivered (held by the
// receiver's endpoint), otherwise a *SendError matching
// ErrUndeliverable and ErrUnknownID, ErrReceiverEnded, ErrUnreachable,
// ... A payload over MaxPayload is refused with ErrTooBig before
// anything is sent. If ctx ends first the message may still be
// delivered; Send then returns ctx's error.
func (c *Conn) Send(ctx context.Context, to ID, payload []byte) error {
	t, err := c.send(ctx, to, payload, false)
	if err != nil {
		return err
	}
	err = c.Result(ctx, t)
	if err != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		c.mu.Lock()
		if p := c.results[t.seq]; p != nil {
			if p.done {
				delete(c.results, t.seq)
			} else {
				p.abandoned = true
			}
		}
		c.mu.Unlock()
		return fmt.Errorf("send to %v: outcome unknown: %w", to, err)
	}
	return err
}

// TrySend sends payload to the process to without blocking: if the
// socket cannot take the packet now it returns ErrWouldBlock and nothing
// was sent. Otherwise the outcome arrives later and is held until it is
// collected with Result or TryResult (uncollected outcomes stay in
// memory, a few dozen bytes each).
func (c *Conn) TrySend(to ID, payload []byte) (Ticket, error) {
	return c.send(context.Background(), to, payload, true)
}

func (c *Conn) send(ctx context.Context, to ID, payload []byte, nonblock bool) (Ticket, error) {
	if len(payload) > c.maxPayload {
		return Ticket{}, fmt.Errorf("send to %v: %w: %d bytes, limit %d", to, ErrTooBig, len(payload), c.maxPayload)
	}
	dst := to.String()
	if _, err := ParseID(dst); err != nil {
		return Ticket{}, fmt.Errorf("send: %w", err)
	}
	c.mu.Lock()
	if c.broken != nil {
		err := c.broken
		c.mu.Unlock()
		return Ticket{}, fmt.Errorf("send to %v: %w", to, err)
	}
	c.seq++
	if c.seq == 0 {
		c.seq = 1
	}
	t := Ticket{seq: c.seq, to: to}
	c.results[t.seq] = &pending{to: to}
	c.mu.Unlock()

	pkt, err := wire.Append(make([]byte, 0, wire.HeaderLen+1+len(dst)+len(payload)),
		&wire.Packet{Type: wire.TypeSend, Seq: t.seq, ID: dst, Payload: payload})
	if err == nil {
		err = c.write(ctx, pkt, nonblock)
	}
	if err != nil {
		c.mu.Lock()
		delete(c.results, t.seq)
		c.mu.Unlock()
		if errors.Is(err, ErrWouldBlock) {
			return Ticket{}, err
		}
		return Ticket{}, fmt.Errorf("send to %v: %w", to, err)
	}
	return t, nil
}

// write sends one packet. With nonblock it returns ErrWouldBlock rather
// than wait for room in the socket.
func (c *Conn) write(ctx context.Context, pkt []byte, nonblock bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if ctx.Done() != nil && !nonblock {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			c.uc.SetWriteDeadline(time.Unix(1, 0))
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired
				c.uc.SetWriteDeadline(time.Time{})
			}
		}()
	}
	var werr error
	err := c.rc.Write(func(fd uintptr) bool {
		_, werr = unix.SendmsgN(int(fd), pkt, nil, nil, unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT)
		if werr == unix.EINTR {
			return false
		}
		return !(werr == unix.EAGAIN && !nonblock)
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return c.fail(err)
	case werr == unix.EAGAIN:
		return ErrWouldBlock
	case werr != nil:
		return c.fail(os.NewSyscallError("sendmsg", werr))
	}
	return nil
}

// Result waits for the outcome of the message t names (see Send).
func (c *Conn) Result(ctx context.Context, t Ticket) error {
	return c.result(ctx, t, false)
}

func (c *Conn) result(ctx context.Context, t Ticket, nonblock bool) error {
	var out error
	err := c.wait(ctx, nonblock, func() bool {
		p := c.results[t.seq]
		switch {
		case p == nil:
			out = fmt.Errorf("message %d to %v: no such outcome pending (collected already?)", t.seq, t.to)
		case p.done:
			out = p.err
			delete(c.results, t.seq)
		case c.broken != nil:
			out = fmt.Errorf("send to %v: %w", t.to, c.broken)
			delete(c.results, t.seq)
		default:
			return false
		}
		return true
	})
	if err != nil {
		return err
	}
	return out
}

// TryResult reports the outcome of the message t names if it is known
// without waiting: done is false (and err ErrWouldBlock) if not yet.
func (c *Conn) TryResult(t Ticket) (done bool, err error) {
	err = c.result(context.Background(), t, true)
	if errors.Is(err, ErrWouldBlock) {
		return false, err
	}
	return true, err
}

// Recv waits for a message and returns its sender and payload. Once the
// connection has failed, messages already read are still returned, then
// the failure.
func (c *Conn) Recv(ctx context.Context) (from ID, payload []byte, err error) {
	return c.recv(ctx, false)
}

func (c *Conn) recv(ctx context.Context, nonblock bool) (from ID, payload []byte, err error) {
	var m received
	var out error
	err = c.wait(ctx, nonblock, func() bool {
		if len(c.queue) > 0 {
			m = c.queue[0]
			c.queue[0] = received{}
			c.queue = c.queue[1:]
			return true
		}
		if c.broken != nil {
			out = fmt.Errorf("recv: %w", c.broken)
			return true
		}
		return false
	})
	if err == nil {
		err = out
	}
	return m.from, m.payload, err
}

// TryRecv returns a message if one is waiting, and ErrWouldBlock
// otherwise; it never blocks.
func (c *Conn) TryRecv() (from ID, payload []byte, err error) {
	return c.recv(context.Background(), true)
}

// Pending is the number of messages read from the socket (by Send or
// Result) and queued in the Conn, which Recv returns without the socket
// being readable.
func (c *Conn) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.queue)
}

// Fd is the socket's descriptor, to be polled (for POLLIN) with a
// process's other descriptors; it must not be read, written or closed.
// When it polls readable, call TryRecv until ErrWouldBlock. Messages
// that a concurrent Send read off the socket are queued in the Conn and
// do not make Fd readable: drain TryRecv (or check Pending) before
// polling again.
func (c *Conn) Fd() int {
	fd := -1
	c.rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// SyscallConn gives raw access to the socket, for poll-style waiting
// (RawConn.Read with a function that returns false to wait). The same
// rules as for Fd hold.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return c.rc, nil }

// Close closes the connection. Calls waiting in other goroutines return
// ErrClosed.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.broken == nil {
		c.broken = ErrClosed
	}
	c.notifyLocked()
	c.mu.Unlock()
	return c.uc.Close()
}

// wait calls done (with mu held) until it returns true, reading packets
// when it holds the reading token. With nonblock it does not wait: it
// returns ErrWouldBlock once nothing more can be read without waiting.
func (c *Conn) wait(ctx context.Context, nonblock bool, done func() bool) error {
	for {
		c.mu.Lock()
		if done() {
			c.mu.Unlock()
			return nil
		}
		changed := c.changed
		c.mu.Unlock()
		if nonblock {
			select {
			case c.rtok <- struct{}{}:
			default:
				return ErrWouldBlock // another call is reading
			}
			err := c.readAndDispatch(ctx, true)
			<-c.rtok
			if errors.Is(err, ErrWouldBlock) {
				c.mu.Lock()
				ok := done()
				c.mu.Unlock()
				if ok {
					return nil
				}
				return ErrWouldBlock
			}
			continue
		}
		select {
		case c.rtok <- struct{}{}:
			err := c.readAndDispatch(ctx, false)
			<-c.rtok
			if err != nil && ctx.Err() != nil {
				return ctx.Err()
			}
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readAndDispatch reads one packet (the caller holds rtok) and files it:
// a MSG in the queue, a RESULT with its pending send, anything wrong as
// the connection's failure. It returns ctx's error, ErrWouldBlock
// (nonblock and nothing to read) or the connection's failure.
func (c *Conn) readAndDispatch(ctx context.Context, nonblock bool) error {
	p, err := c.readPacket(ctx, nonblock)
	if err != nil {
		if errors.Is(err, ErrWouldBlock) || ctx.Err() != nil {
			return err
		}
		return c.fail(err)
	}
	switch p.Type {
	case wire.TypeHello:
		if p.ID != c.id.String() {
			return c.fail(fmt.Errorf("%w: HELLO again, with id %q (was %v)", ErrProtocol, p.ID, c.id))
		}
		return nil // a node that re-established the connection says hello again
	case wire.TypeMsg:
		from, err := ParseID(p.ID)
		if err != nil {
			return c.fail(fmt.Errorf("%w: MSG: sender: %w", ErrProtocol, err))
		}
		c.mu.Lock()
		c.queue = append(c.queue, received{from: from, payload: append([]byte{}, p.Payload...)})
		c.notifyLocked()
		c.mu.Unlock()
		return nil
	case wire.TypeResult:
		c.mu.Lock()
		defer c.mu.Unlock()
		pd := c.results[p.Seq]
		if pd == nil || pd.done {
			return c.failLocked(fmt.Errorf("%w: RESULT for message %d, which is not waiting for one", ErrProtocol, p.Seq))
		}
		if pd.abandoned {
			delete(c.results, p.Seq)
			return nil
		}
		pd.done = true
		if p.Code != wire.CodeOK {
			pd.err = &SendError{To: pd.to, Seq: p.Seq, Code: p.Code, Text: p.Text}
		}
		c.notifyLocked()
		return nil
	case wire.TypeError:
		return c.fail(&NodeError{Code: p.Code, Text: p.Text})
	}
	return c.fail(fmt.Errorf("%w: unexpected %v from the node", ErrProtocol, p.Type))
}

// readPacket reads and parses one packet; the caller holds rtok (or is
// DialPath). nonblock: ErrWouldBlock if none is waiting.
func (c *Conn) readPacket(ctx context.Context, nonblock bool) (*wire.Packet, error) {
	if ctx.Done() != nil && !nonblock {
		fired := make(chan struct{})
		stop := context.AfterFunc(ctx, func() {
			c.uc.SetReadDeadline(time.Unix(1, 0))
			close(fired)
		})
		defer func() {
			if !stop() {
				<-fired
				c.uc.SetReadDeadline(time.Time{})
			}
		}()
	}
	var n, flags int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, _, flags, _, rerr = unix.Recvmsg(int(fd), c.rbuf, nil, unix.MSG_DONTWAIT)
		if rerr == unix.EINTR {
			return false
		}
		return !(rerr == unix.EAGAIN && !nonblock)
	})
	switch {
	case err != nil && ctx.Err() != nil:
		return nil, ctx.Err()
	case err != nil:
		return nil, err
	case rerr == unix.EAGAIN:
		return nil, ErrWouldBlock
	case rerr != nil:
		return nil, fmt.Errorf("%w: %w", ErrClosed, os.NewSyscallError("recvmsg", rerr))
	case n == 0:
		return nil, fmt.Errorf("%w: the node closed the connection", ErrClosed)
	case flags&unix.MSG_TRUNC != 0:
		t, _, _ := wire.Header(c.rbuf[:n])
		return nil, fmt.Errorf("%w: %v packet over %d bytes (truncated on receipt)", ErrProtocol, t, wire.MaxPacket)
	}
	p, err := wire.Parse(c.rbuf[:n])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
	}
	return p, nil
}

// fail records err as the connection's failure (the first one wins)
// and returns the recorded failure.
func (c *Conn) fail(err error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failLocked(err)
}

func (c *Conn) failLocked(err error) error {
	if c.broken == nil {
		if errors.Is(err, net.ErrClosed) {
			err = ErrClosed
		}
		c.broken = err
		c.notifyLocked()
	}
	return c.broken
}

func (c *Conn) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}
