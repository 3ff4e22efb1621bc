package deputy

import (
	"bytes"
	"fmt"
	"testing"
	"time"
)

// end is a relay with its fds simulated: what it writes is kept (and
// written at once), reads are fed by the test when allowed.
type end struct {
	r       *Relay
	allowed map[StreamID]int
	wrote   map[StreamID]*bytes.Buffer
	closed  map[StreamID]bool
	out     []Frame // frames to deliver to the peer
	// kills: each signal performed, with the bytes of stream 1 written
	// before it.
	kills []string
}

func newEnd(cfg Config, now time.Time) *end {
	e := &end{r: New(cfg, now), allowed: map[StreamID]int{}, wrote: map[StreamID]*bytes.Buffer{}, closed: map[StreamID]bool{}}
	e.apply(now, e.r.Start())
	return e
}

func (e *end) apply(now time.Time, acts []Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case Send:
			e.out = append(e.out, a.F)
		case AllowRead:
			e.allowed[a.S] = a.Max
		case Write:
			if e.wrote[a.S] == nil {
				e.wrote[a.S] = &bytes.Buffer{}
			}
			e.wrote[a.S].Write(a.Data)
			e.apply(now, e.r.Handle(now, Wrote{S: a.S, N: len(a.Data)}))
		case Kill:
			e.kills = append(e.kills, fmtKill(a.Sig, e.wrote[1]))
		case CloseWrite:
			e.closed[a.S] = true
		case CloseRead:
			e.closed[a.S] = true
		}
	}
}

func fmtKill(sig int, b *bytes.Buffer) string {
	w := ""
	if b != nil {
		w = b.String()
	}
	return fmt.Sprintf("%d after %q", sig, w)
}

func (e *end) handle(now time.Time, ev Event) { e.apply(now, e.r.Handle(now, ev)) }

// read feeds a read of data on s, which must be allowed.
func (e *end) read(t *testing.T, now time.Time, s StreamID, data string) {
	t.Helper()
	if e.allowed[s] < len(data) {
		t.Fatalf("stream %d: %d allowed, want to read %d", s, e.allowed[s], len(data))
	}
	delete(e.allowed, s)
	e.handle(now, Read{S: s, Data: []byte(data)})
}

// pump delivers frames both ways until none is left.
func pump(now time.Time, a, b *end) {
	for len(a.out)+len(b.out) > 0 {
		fa, fb := a.out, b.out
		a.out, b.out = nil, nil
		for _, f := range fa {
			b.handle(now, Recv{F: f})
		}
		for _, f := range fb {
			a.handle(now, Recv{F: f})
		}
	}
}

func link(now time.Time, a, b *end) {
	a.handle(now, LinkUp{})
	b.handle(now, LinkUp{})
	pump(now, a, b)
}

// TestRebase: home pauses while the process moves on; what it reads
// meanwhile is held, a signal caught waits; once quiet it goes on with a
// new away end made from Open (a stream that had ended starts ended
// there), and the held bytes, the signal and what follows reach the new
// end in order.
func TestRebase(t *testing.T) {
	now := time.Unix(0, 0)
	streams := []Stream{{ID: 1, Dir: ToAway}, {ID: 2, Dir: ToHome}, {ID: 3, Dir: ToAway}}
	cfg := Config{Streams: streams, Window: 1 << 10}
	cfg.Side = Home
	home := newEnd(cfg, now)
	cfg.Side = Away
	away1 := newEnd(cfg, now)
	link(now, home, away1)

	home.read(t, now, 1, "one ")
	away1.read(t, now, 2, "up ")
	delete(home.allowed, 3) // stream 3's writers close: its end of file
	home.handle(now, ReadEOF{S: 3})
	pump(now, home, away1)
	if got := away1.wrote[1].String(); got != "one " {
		t.Fatalf("away1 got %q", got)
	}

	home.handle(now, Pause{})
	home.read(t, now, 1, "two ") // a read already allowed comes back: held
	home.handle(now, Caught{Target: 0, Sig: 10})
	pump(now, home, away1)
	if got := away1.wrote[1].String(); got != "one " {
		t.Fatalf("away1 got %q while home was paused", got)
	}
	if len(home.allowed) != 0 {
		t.Fatalf("reads allowed while paused: %v", home.allowed)
	}
	away1.handle(now, Tick{}) // its acknowledgements
	pump(now, home, away1)
	if !away1.r.Idle(home.r.Sent()) {
		t.Fatal("the old away end is not idle")
	}
	if !home.r.Quiet() {
		t.Fatal("home is not quiet")
	}

	open := home.r.Open()
	home.handle(now, Rebase{})
	cfg.Side, cfg.Streams = Away, open
	away2 := newEnd(cfg, now)
	if !away2.closed[3] {
		t.Fatalf("stream 3 ended at home; the new end did not close it: open %+v", open)
	}
	link(now, home, away2)
	for {
		acts := home.r.Handle(now, Tick{})
		home.apply(now, acts)
		pump(now, home, away2)
		if len(acts) == 0 {
			break
		}
	}
	// The signal: performed at away2 after "two ", not at away1.
	if len(away1.kills) != 0 || len(away2.kills) != 1 || away2.kills[0] != `10 after "two "` {
		t.Fatalf("signals: at away1 %v, at away2 %v", away1.kills, away2.kills)
	}
	if got := away2.wrote[1].String(); got != "two " {
		t.Fatalf("away2 got %q, want the held bytes", got)
	}
	home.read(t, now, 1, "three")
	away2.read(t, now, 2, "more")
	pump(now, home, away2)
	if sent := home.r.Sent(); sent[1] != uint64(len("two three")) {
		t.Fatalf("sent to the new end: %v, want %d on stream 1", sent, len("two three"))
	}
	if !away2.r.IdleIn(home.r.Sent()) {
		t.Fatal("the new end is not idle with everything written")
	}
	if got := away2.wrote[1].String(); got != "two three" {
		t.Fatalf("away2 got %q", got)
	}
	if got := home.wrote[2].String(); got != "up more" {
		t.Fatalf("home got %q", got)
	}
	for _, e := range []*end{home, away1, away2} {
		if err := e.r.Err(); err != nil {
			t.Fatal(err)
		}
	}
}
