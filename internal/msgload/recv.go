package msgload

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"ferry/msg"
)

// RecvConfig is the receiver's.
type RecvConfig struct {
	// ExpectFrom names the senders to wait for; else Senders is how many
	// (any ids). One of them is needed unless Count is set.
	ExpectFrom []msg.ID
	Senders    int
	// Count, if set, stops after this many data messages.
	Count int
	// Path is the endpoint ("" for $FERRY_MSG_SOCKET or msg.DefaultPath).
	Path string
}

// ErrChecks is returned by Recv and Send when a message was lost,
// duplicated, out of order or refused: the summary says which.
var ErrChecks = errors.New("messages lost, duplicated, out of order or refused")

// Recv runs the receiver until every expected sender ended, Count data
// messages came, or stop is closed (SIGUSR1, SIGTERM); then it writes
// the summary line to out. It returns ErrChecks if the summary shows a
// problem.
func Recv(ctx context.Context, cfg RecvConfig, stop <-chan struct{}, out io.Writer) error {
	if len(cfg.ExpectFrom) == 0 && cfg.Senders <= 0 && cfg.Count <= 0 {
		return errors.New("msgload recv: give --expect-from, --senders or --count")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	c, err := msg.DialPath(dctx, cfg.Path)
	cancel()
	if err != nil {
		return err
	}
	defer c.Close()
	fmt.Fprintf(out, "ready %s\n", c.ID())

	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-rctx.Done():
		}
	}()
	r := newReceiver(cfg)
	for !r.done() {
		from, p, err := c.Recv(rctx)
		if err != nil {
			if rctx.Err() != nil {
				break // stopped: the summary says what came
			}
			return fmt.Errorf("msgload recv: %w", err)
		}
		r.add(from, p, time.Now())
	}
	s := r.summary(c.ID().String())
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(out, "%s\n", b); err != nil {
		return err
	}
	if !s.Complete {
		return fmt.Errorf("%w: stopped before every sender ended", ErrChecks)
	}
	for _, ss := range s.Senders {
		if ss.Lost+ss.Duplicated+ss.OutOfOrder > 0 {
			return ErrChecks
		}
	}
	return nil
}

// receiver is the receiver's bookkeeping, apart from the socket.
type receiver struct {
	cfg   RecvConfig
	by    map[msg.ID]*seen
	order []msg.ID // senders in the order they first came
	data  int      // data messages received (first receipts)
	other int
}

// maxJump bounds how far past the highest seq so far a message may
// be: the tables grow to the highest seq.
const maxJump = 1 << 20

type seen struct {
	s      SenderSeen
	got    []bool // by seq-1
	maxSeq uint64
	base   bool
}

func newReceiver(cfg RecvConfig) *receiver {
	return &receiver{cfg: cfg, by: map[msg.ID]*seen{}}
}

func (r *receiver) add(from msg.ID, b []byte, now time.Time) {
	p, err := ParsePayload(b)
	if err != nil {
		r.other++
		return
	}
	st := r.by[from]
	if st == nil {
		st = &seen{s: SenderSeen{ID: from.String(), Index: p.Index}}
		r.by[from] = st
		r.order = append(r.order, from)
	}
	if p.Kind == KindEnd {
		st.s.Ended, st.s.EndSeq = true, p.Seq
		return
	}
	if p.Seq > st.maxSeq+maxJump {
		r.other++ // not a sender's next numbers: do not grow the tables for it
		return
	}
	if !st.base {
		// Send times are kept relative to the first message that came
		// (normally seq 1), which makes them small numbers.
		st.s.BaseNs, st.base = p.SentNs, true
	}
	i := int(p.Seq - 1)
	for len(st.got) <= i {
		st.got = append(st.got, false)
		st.s.SentUs = append(st.s.SentUs, -1)
		st.s.LatUs = append(st.s.LatUs, -1)
	}
	if st.got[i] {
		st.s.Duplicated++
		return
	}
	if p.Seq < st.maxSeq {
		st.s.OutOfOrder++
	}
	st.maxSeq = max(st.maxSeq, p.Seq)
	st.got[i] = true
	st.s.Received++
	st.s.Typed[min(int(p.Type), 3)]++
	st.s.SentUs[i] = (p.SentNs - st.s.BaseNs) / 1e3
	st.s.LatUs[i] = (now.UnixNano() - p.SentNs) / 1e3
	r.data++
}

// done: every expected sender ended, or Count reached.
func (r *receiver) done() bool {
	if r.cfg.Count > 0 && r.data >= r.cfg.Count {
		return true
	}
	if len(r.cfg.ExpectFrom) > 0 {
		for _, id := range r.cfg.ExpectFrom {
			if st := r.by[id]; st == nil || !st.s.Ended {
				return false
			}
		}
		return true
	}
	if r.cfg.Senders <= 0 {
		return false
	}
	ended := 0
	for _, st := range r.by {
		if st.s.Ended {
			ended++
		}
	}
	return ended >= r.cfg.Senders
}

func (r *receiver) summary(id string) *RecvSummary {
	s := &RecvSummary{Role: "recv", ID: id, Complete: r.done(), Foreign: r.other}
	for _, from := range r.order {
		st := r.by[from]
		last := st.maxSeq
		if st.s.Ended {
			last = max(last, st.s.EndSeq)
		}
		for len(st.got) < int(last) {
			st.got = append(st.got, false)
			st.s.SentUs = append(st.s.SentUs, -1)
			st.s.LatUs = append(st.s.LatUs, -1)
		}
		st.s.Lost = 0
		for _, g := range st.got {
			if !g {
				st.s.Lost++
			}
		}
		s.Senders = append(s.Senders, st.s)
	}
	for _, id := range r.cfg.ExpectFrom {
		if r.by[id] == nil {
			s.Senders = append(s.Senders, SenderSeen{ID: id.String()})
		}
	}
	slices.SortFunc(s.Senders, func(a, b SenderSeen) int { return int(a.Index) - int(b.Index) })
	return s
}
