package msgload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"ferry/msg"
)

// SendConfig is the sender's.
type SendConfig struct {
	To    msg.ID
	Rate  float64 // messages per second, > 0
	Count int     // data messages; 0: until stopped
	Index uint32
	// Size is each payload's size in bytes (at least PayloadLen, the
	// default).
	Size int
	// Window is how many messages may wait for their outcome before the
	// sender waits for the oldest; default DefaultWindow.
	Window int
	// Drain bounds the wait for the outcomes after the last message;
	// default 60 s (the node gives up on a message after its deadline,
	// 5 s, and says so).
	Drain time.Duration
	Path  string
}

// DefaultWindow is SendConfig.Window's default.
const DefaultWindow = 4096

type outstanding struct {
	t   msg.Ticket
	end bool
}

// Send runs the sender (see the package comment) and writes its summary
// line to out. Closing stop ends the sending early; the end message and
// the outcomes follow as after Count. It returns ErrChecks if a message
// was not delivered.
func Send(ctx context.Context, cfg SendConfig, stop <-chan struct{}, out io.Writer) error {
	if !(cfg.Rate > 0) {
		return fmt.Errorf("msgload send: rate %v: must be above 0", cfg.Rate)
	}
	if cfg.Window <= 0 {
		cfg.Window = DefaultWindow
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 60 * time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := msg.DialPath(dctx, cfg.Path)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(out, "ready %s\n", c.ID())

	s := &SendSummary{Role: "send", ID: c.ID().String(), To: cfg.To.String(), Index: cfg.Index, Rate: cfg.Rate,
		Errors: map[string]int{}}
	var q []outstanding // oldest first: one sender's outcomes come in order
	record := func(o outstanding, err error) {
		switch {
		case err == nil && o.end:
			s.EndDelivered = true
		case err == nil:
			s.Delivered++
		case !o.end:
			s.Errors[ErrKind(err)]++
		}
	}
	// collect takes the outcomes already in; with wait it first waits
	// for the oldest.
	collect := func(ctx context.Context, wait bool) error {
		for len(q) > 0 {
			var err error
			if wait {
				if err = c.Result(ctx, q[0].t); ctx.Err() != nil {
					return ctx.Err()
				}
				wait = false
			} else {
				var done bool
				if done, err = c.TryResult(q[0].t); !done {
					return nil
				}
			}
			record(q[0], err)
			q = q[1:]
		}
		return nil
	}
	buf := make([]byte, 0, max(cfg.Size, PayloadLen))
	// send sends one message, waiting for room (and outcomes) while the
	// socket is full. False: the connection failed.
	send := func(p Payload) bool {
		for {
			p.SentNs = time.Now().UnixNano()
			t, err := c.TrySend(cfg.To, p.Append(buf[:0], cfg.Size))
			if errors.Is(err, msg.ErrWouldBlock) {
				s.WouldBlock++
				if len(q) > 0 {
					collect(ctx, true)
				} else {
					time.Sleep(time.Millisecond)
				}
				continue
			}
			if err != nil {
				s.Errors[ErrKind(err)]++
				return false
			}
			q = append(q, outstanding{t: t, end: p.Kind == KindEnd})
			if p.Kind == KindData {
				if s.FirstNs == 0 {
					s.FirstNs = p.SentNs
				}
				s.LastNs = p.SentNs
			}
			return true
		}
	}

	interval := time.Duration(float64(time.Second) / cfg.Rate)
	start := time.Now()
	timer := time.NewTimer(0)
	<-timer.C
	alive := true
sending:
	for i := 1; alive && (cfg.Count == 0 || i <= cfg.Count); i++ {
		if d := time.Until(start.Add(time.Duration(i-1) * interval)); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-stop:
				timer.Stop()
				break sending
			case <-ctx.Done():
				timer.Stop()
				break sending
			}
		} else {
			select {
			case <-stop:
				break sending
			case <-ctx.Done():
				break sending
			default:
			}
		}
		if alive = send(Payload{Kind: KindData, Index: cfg.Index, Seq: uint64(i)}); alive {
			s.Sent = i
		}
		collect(ctx, false)
		if len(q) >= cfg.Window {
			collect(ctx, true)
		}
	}
	if alive {
		send(Payload{Kind: KindEnd, Index: cfg.Index, Seq: uint64(s.Sent)})
	}
	dctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), cfg.Drain)
	defer cancel()
	for len(q) > 0 && dctx.Err() == nil {
		collect(dctx, true)
	}
	if n := len(q); n > 0 {
		s.Errors["no_outcome"] += n
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
		return err
	}
	if s.Delivered != s.Sent || !s.EndDelivered {
		return ErrChecks
	}
	return nil
}

// ErrKind names the reason a message was not delivered, for the
// summaries.
func ErrKind(err error) string {
	for _, k := range []struct {
		err  error
		name string
	}{
		{msg.ErrUnknownID, "unknown_id"}, {msg.ErrReceiverEnded, "ended"}, {msg.ErrUnreachable, "unreachable"},
		{msg.ErrTooBig, "too_big"}, {msg.ErrDenied, "denied"}, {msg.ErrMalformed, "malformed"},
		{msg.ErrProtocol, "protocol"}, {msg.ErrClosed, "closed"},
	} {
		if errors.Is(err, k.err) {
			return k.name
		}
	}
	return "other"
}
