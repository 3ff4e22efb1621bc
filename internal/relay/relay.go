// Package relay runs one end of the coprocess relay (the state machine of
// package deputy) over real descriptors: the stream fds it reads and
// writes, a connection to the other end that may break and be made again,
// and what the stand-in it serves tells (signals, statuses).
//
// What belongs here: End, its goroutines (one owns the deputy.Relay; one
// per stream fd waits on it; one per connection reads frames), and the
// mapping from actions to system calls. What does not: the protocol's
// rules (package deputy), the stand-in processes (package standin), who
// connects the ends (the node).
package relay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/deputy"
)

// End is one end of the relay.
type End struct {
	Config deputy.Config
	// FDs are the stream fds: for a stream this end reads, the fd it
	// reads (a pipe's read end, a socket); for one it writes, the fd it
	// writes. End closes them as the relay says.
	FDs map[deputy.StreamID]*os.File
	// Kill performs a signal the other end caught (target 0: the moved
	// process, else a process of the job by PID).
	Kill func(target, sig int) error
	// Mirror gives the stand-in the moved process's status (home).
	Mirror func(deputy.Status) error
	// EOFOnly lists streams this end reads only for their end of file:
	// a pipe end that a process here reads too keeps its bytes for it.
	EOFOnly map[deputy.StreamID]bool
	Log     *slog.Logger

	events chan deputy.Event
	r      *deputy.Relay
	// givenBack: the process took its fds back (GiveBack).
	givenBack atomic.Bool
	// rmu is held by a reader while it reads; held stops them (HoldReads).
	rmu  sync.Mutex
	held bool
	// muted: frames are kept, not sent (Mute), while the process moves
	// on from this end; mutedSends are they.
	muted      bool
	mutedSends []deputy.Frame
	conn       net.Conn
	w          *bufio.Writer
	allow      map[deputy.StreamID]chan int
	writes     map[deputy.StreamID]chan []byte
	closed     map[deputy.StreamID]bool
}

// Caught tells the other end of a signal a stand-in caught: after the
// bytes waiting in the fds this end reads now (written before it).
func (e *End) Caught(target, sig int) {
	e.post(deputy.Caught{Target: target, Sig: sig, Queued: e.queued()})
}

// ProcState tells home of the moved process's status (away), after the
// bytes it wrote before.
func (e *End) ProcState(s deputy.Status) { e.post(deputy.ProcState{Status: s, Queued: e.queued()}) }

// queued is how many bytes wait in each fd this end reads (FIONREAD),
// no read under way (rmu): a byte is either there or already read and
// its Read posted.
func (e *End) queued() map[deputy.StreamID]int {
	e.rmu.Lock()
	defer e.rmu.Unlock()
	q := map[deputy.StreamID]int{}
	for _, s := range e.Config.Streams {
		if (e.Config.Side == deputy.Home) != (s.Dir == deputy.ToAway) || e.EOFOnly[s.ID] {
			continue // not read here, or never relayed: no barrier
		}
		rc, err := e.FDs[s.ID].SyscallConn()
		if err != nil {
			continue
		}
		rc.Control(func(fd uintptr) {
			if n, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil { // FIONREAD
				q[s.ID] = n
			}
		})
	}
	return q
}

// PeerDead tells the end the other node is gone for good.
func (e *End) PeerDead() { e.post(deputy.PeerDead{}) }

func (e *End) post(ev deputy.Event) { e.events <- ev }

// Init prepares the End; call it before Caught, ProcState or Run.
func (e *End) Init() {
	e.events = make(chan deputy.Event, 256)
	if e.Log == nil {
		e.Log = slog.Default()
	}
}

// Run relays until the relay is done (nil), a protocol violation (an
// error wrapping deputy.ErrProtocol) or ctx ends. conns brings each new
// connection to the other end; a broken one is closed and the next one
// awaited.
func (e *End) Run(ctx context.Context, conns <-chan net.Conn) error {
	if e.events == nil {
		e.Init()
	}
	e.r = deputy.New(e.Config, time.Now())
	e.allow = map[deputy.StreamID]chan int{}
	e.writes = map[deputy.StreamID]chan []byte{}
	e.closed = map[deputy.StreamID]bool{}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer func() {
		if e.conn != nil {
			e.conn.Close()
		}
		for id := range e.FDs {
			e.closeFD(id)
		}
	}()
	for _, s := range e.Config.Streams {
		f := e.FDs[s.ID]
		if f == nil {
			return fmt.Errorf("stream %d has no fd", s.ID)
		}
		if (e.Config.Side == deputy.Home) == (s.Dir == deputy.ToAway) {
			ch := make(chan int, 1)
			e.allow[s.ID] = ch
			if e.EOFOnly[s.ID] {
				go e.hangup(ctx, s.ID, f, ch)
				continue
			}
			go e.reader(ctx, s.ID, f, ch)
		} else {
			ch := make(chan []byte, 1024) // a Write never waits for the fd: the window bounds what is queued
			e.writes[s.ID] = ch
			go e.writer(ctx, s.ID, f, ch)
		}
	}
	if err := e.apply(e.r.Start()); err != nil {
		return err
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	// Once done, the end lingers a moment: the other end may still wait
	// for the acknowledgement of its last frames.
	var linger <-chan time.Time
	for {
		var ev deputy.Event
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c := <-conns:
			if e.conn != nil {
				e.conn.Close()
			}
			e.conn, e.w = c, bufio.NewWriterSize(c, 64<<10)
			go e.readFrames(ctx, c)
			ev = deputy.LinkUp{}
		case ev = <-e.events:
			if c, ok := ev.(call); ok {
				err := e.apply(c.f(e.r))
				close(c.done)
				if err == nil {
					err = e.r.Err()
				}
				if err != nil {
					return err
				}
				continue
			}
			if d, ok := ev.(linkLost); ok {
				if d.c != e.conn {
					continue // an older connection's end
				}
				e.conn.Close()
				e.conn, e.w = nil, nil
				ev = deputy.LinkDown{}
			}
		case <-tick.C:
			ev = deputy.Tick{}
		case <-linger:
			return nil
		}
		acts := e.r.Handle(time.Now(), ev)
		if err := e.r.Err(); err != nil {
			return err
		}
		if err := e.apply(acts); err != nil {
			return err
		}
		if e.r.Finished() && linger == nil {
			linger = time.After(500 * time.Millisecond)
		}
	}
}

// linkLost: the connection c broke.
type linkLost struct{ c net.Conn }

// call runs f on the relay in Run's goroutine (Do).
type call struct {
	f    func(r *deputy.Relay) []deputy.Action
	done chan struct{}
}

// Do runs f on the relay, in the goroutine that owns it, and applies
// the actions it returns; it waits for that, or for ctx.
func (e *End) Do(ctx context.Context, f func(r *deputy.Relay) []deputy.Action) error {
	c := call{f: f, done: make(chan struct{})}
	select {
	case e.events <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Mute keeps every frame this end would send (the process, frozen, is
// moving on from it: what its death here would tell is not news); Unmute
// sends them after all (the move failed), or drop them with the end.
func (e *End) Mute(ctx context.Context) error {
	return e.Do(ctx, func(*deputy.Relay) []deputy.Action {
		e.muted = true
		return nil
	})
}

// Unmute sends what Mute kept and goes on.
func (e *End) Unmute(ctx context.Context) error {
	return e.Do(ctx, func(*deputy.Relay) []deputy.Action {
		e.muted = false
		acts := make([]deputy.Action, 0, len(e.mutedSends))
		for _, f := range e.mutedSends {
			acts = append(acts, deputy.Send{F: f})
		}
		e.mutedSends = nil
		return acts
	})
}

// Rebase (home, paused and quiet) drops the link to the old away end and
// goes on with a new one: its connections come on the same channel.
func (e *End) Rebase(ctx context.Context) error {
	return e.Do(ctx, func(r *deputy.Relay) []deputy.Action {
		if e.conn != nil {
			e.conn.Close()
			e.conn, e.w = nil, nil
		}
		return r.Handle(time.Now(), deputy.Rebase{})
	})
}

// Pending is how many bytes wait in the stream fds of this end: in the
// pipes and sockets it writes, not yet read by the process (writes only),
// and, unless writes, in those it reads, not yet read by the relay.
// FIONREAD works on either end of a pipe; a socket's unread bytes sent
// are its TIOCOUTQ. Call it from Do (the fds are the relay's).
func (e *End) Pending(writes bool) int {
	n := 0
	seen := map[*os.File]bool{}
	for id, f := range e.FDs {
		if seen[f] || e.closed[id] {
			continue
		}
		seen[f] = true
		rc, err := f.SyscallConn()
		if err != nil {
			continue
		}
		rc.Control(func(fd uintptr) {
			st, _ := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_TYPE)
			if st != 0 {
				if q, err := unix.IoctlGetInt(int(fd), unix.TIOCOUTQ); err == nil {
					n += q
				}
				if !writes {
					if q, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
						n += q
					}
				}
				return
			}
			if writes && e.reads(id) {
				return
			}
			if q, err := unix.IoctlGetInt(int(fd), unix.TIOCINQ); err == nil {
				n += q
			}
		})
	}
	return n
}

func (e *End) readFrames(ctx context.Context, c net.Conn) {
	r := bufio.NewReaderSize(c, 64<<10)
	for {
		f, err := deputy.ReadFrame(r)
		if err != nil {
			if errors.Is(err, deputy.ErrCorrupt) {
				e.Log.Warn("relay: a corrupt frame: the link is given up", "err", err)
			}
			select {
			case e.events <- linkLost{c}:
			case <-ctx.Done():
			}
			return
		}
		select {
		case e.events <- deputy.Recv{F: f}:
		case <-ctx.Done():
			return
		}
	}
}

func (e *End) reader(ctx context.Context, id deputy.StreamID, f *os.File, allow <-chan int) {
	buf := make([]byte, e.Config.Window)
	if len(buf) == 0 {
		buf = make([]byte, 256<<10)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	for {
		var max int
		select {
		case max = <-allow:
		case <-ctx.Done():
			return
		}
		// Read only once there is something to read, and not once the
		// end holds its reads (HoldReads): a read blocked in the kernel
		// could not be called back, and would take bytes meant for
		// whoever reads the fd after this end.
		for {
			if ctx.Err() != nil {
				return
			}
			var re int16
			rc.Control(func(fd uintptr) {
				pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
				if n, err := unix.Poll(pfd, 100); err == nil && n > 0 {
					re = pfd[0].Revents
				}
			})
			if re&unix.POLLNVAL != 0 {
				return // closed by the relay
			}
			if re != 0 {
				e.rmu.Lock()
				if !e.held {
					break // read with rmu held
				}
				e.rmu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}
		n, err := f.Read(buf[:min(max, len(buf))])
		var ev deputy.Event
		switch {
		case n > 0:
			ev = deputy.Read{S: id, Data: append([]byte(nil), buf[:n]...)}
		case errors.Is(err, os.ErrClosed):
			e.rmu.Unlock()
			return // closed by the relay
		default:
			// EOF, or an error that ends the stream the same way.
			ev = deputy.ReadEOF{S: id}
		}
		// Posted before rmu goes: what queued sees is in the fd or
		// already before its signal or status in the events.
		select {
		case e.events <- ev:
			e.rmu.Unlock()
		case <-ctx.Done():
			e.rmu.Unlock()
			return
		}
	}
}

// HoldReads makes this end read nothing more from its fds (until
// ReleaseReads): once it returns, no read is under way. The process that
// read through this end takes its fds back (it comes home).
func (e *End) HoldReads() {
	e.rmu.Lock()
	e.held = true
	e.rmu.Unlock()
}

// GiveBack marks the fds as the process's again (it came home): when the
// end stops it closes its copies and shuts nothing down.
func (e *End) GiveBack() { e.givenBack.Store(true) }

// ReleaseReads undoes HoldReads.
func (e *End) ReleaseReads() {
	e.rmu.Lock()
	e.held = false
	e.rmu.Unlock()
}

// hangup waits, without reading, until f has no writer left and nothing
// to read (poll's POLLHUP alone), and tells the stream's end.
func (e *End) hangup(ctx context.Context, id deputy.StreamID, f *os.File, allow <-chan int) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	for ctx.Err() == nil {
		select {
		case <-allow: // credit is of no use: nothing is read
		default:
		}
		var re int16
		rc.Control(func(fd uintptr) {
			pfd := []unix.PollFd{{Fd: int32(fd)}}
			if n, err := unix.Poll(pfd, 200); err == nil && n > 0 {
				re = pfd[0].Revents
			}
		})
		if re&unix.POLLNVAL != 0 {
			return // closed by the relay
		}
		if re&unix.POLLHUP != 0 && re&unix.POLLIN == 0 {
			select {
			case e.events <- deputy.ReadEOF{S: id}:
			case <-ctx.Done():
			}
			return
		}
		if re != 0 {
			// Bytes wait for the readers here: look again later.
			select {
			case <-time.After(50 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

func (e *End) writer(ctx context.Context, id deputy.StreamID, f *os.File, writes <-chan []byte) {
	for {
		var b []byte
		select {
		case b = <-writes:
		case <-ctx.Done():
			return
		}
		_, err := f.Write(b)
		var ev deputy.Event = deputy.Wrote{S: id, N: len(b)}
		if err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			if !errors.Is(err, syscall.EPIPE) {
				e.Log.Warn("relay: write failed: taken as its reader gone", "stream", id, "err", err)
			}
			ev = deputy.WriteGone{S: id}
		}
		select {
		case e.events <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// closeFD ends stream id's use of its fd. A socket that carries a stream
// each way (a socketpair) is shut down in this stream's direction while
// the other stream still uses it, and closed with the last one.
func (e *End) closeFD(id deputy.StreamID) {
	if e.closed[id] {
		return
	}
	e.closed[id] = true
	f := e.FDs[id]
	if e.givenBack.Load() {
		// The process has these open files again: this end's copies
		// go, nothing is shut down.
		f.Close()
		return
	}
	for other, g := range e.FDs {
		if other == id || g != f || e.closed[other] {
			continue
		}
		how := unix.SHUT_WR
		if e.reads(id) {
			how = unix.SHUT_RD
		}
		if rc, err := f.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), how) })
		}
		return
	}
	f.Close()
}

// reads reports whether this end reads stream id's fd (else it writes it).
func (e *End) reads(id deputy.StreamID) bool {
	for _, s := range e.Config.Streams {
		if s.ID == id {
			return (e.Config.Side == deputy.Home) == (s.Dir == deputy.ToAway)
		}
	}
	return false
}

func (e *End) apply(acts []deputy.Action) error {
	for _, a := range acts {
		switch a := a.(type) {
		case deputy.Send:
			if e.muted {
				e.mutedSends = append(e.mutedSends, a.F)
				continue
			}
			if e.w == nil {
				continue
			}
			if _, err := e.w.Write(deputy.AppendFrame(nil, a.F)); err != nil {
				go func(c net.Conn) { e.events <- linkLost{c} }(e.conn)
				e.w = nil
			}
		case deputy.AllowRead:
			e.allow[a.S] <- a.Max
		case deputy.Write:
			e.writes[a.S] <- a.Data
		case deputy.CloseWrite:
			e.closeFD(a.S)
		case deputy.CloseRead:
			e.closeFD(a.S)
		case deputy.Kill:
			if e.Kill != nil {
				if err := e.Kill(a.Target, a.Sig); err != nil {
					e.Log.Warn("relay: a signal could not be delivered", "target", a.Target, "sig", a.Sig, "err", err)
				}
			}
		case deputy.Mirror:
			if e.Mirror != nil {
				if err := e.Mirror(a.Status); err != nil {
					e.Log.Warn("relay: the stand-in could not take the status", "status", a.Status, "err", err)
				}
			}
		case deputy.Done:
			e.Log.Debug("relay done", "side", e.Config.Side, "why", a.Why)
		}
	}
	if e.w != nil {
		if err := e.w.Flush(); err != nil {
			go func(c net.Conn) { e.events <- linkLost{c} }(e.conn)
			e.w = nil
		}
	}
	return nil
}
