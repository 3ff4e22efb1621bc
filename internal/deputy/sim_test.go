package deputy

import (
	"bytes"
	"container/heap"
	"flag"
	"fmt"
	"math/rand"
	"testing"
	"time"
)

var simSeed = flag.Int64("deputy.seed", 0, "run only this seed of the deputy simulation")

// The simulation: a home and an away end over a link that breaks and
// comes back, the away node dying in some runs; pipes at both ends that
// give and take bytes at their own pace, readers that close early;
// signals both ways and the process's stops, continues and end. Every
// random choice comes from the seed: a failure names the seed that
// reproduces it (go test -run TestSim -deputy.seed N).

type simEv struct {
	at   time.Duration
	n    int // tie-break: order of scheduling
	side Side
	ev   Event
	conn int // for Recv: the connection it was sent on
}

type evHeap []simEv

func (h evHeap) Len() int { return len(h) }
func (h evHeap) Less(i, j int) bool {
	if h[i].at != h[j].at {
		return h[i].at < h[j].at
	}
	return h[i].n < h[j].n
}
func (h evHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *evHeap) Push(x any)   { *h = append(*h, x.(simEv)) }
func (h *evHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// source is the local fd a stream is read from.
type source struct {
	data       []byte // what the writer there writes, in all
	eof        bool   // it closes after data (else it writes on forever)
	off        int
	closedRead bool
}

func (s *source) byteAt(i int) byte { return byte(i*7 + i/251) }

// sink is the local fd a stream is written to.
type sink struct {
	got        []byte
	closeAfter int // its reader closes once it got this many (-1: never)
	readerGone bool
	closed     bool
}

type sim struct {
	t        *testing.T
	seed     int64
	rnd      *rand.Rand
	cfg      Config
	now      time.Duration
	n        int
	q        evHeap
	r        [2]*Relay
	src      [2]map[StreamID]*source
	dst      [2]map[StreamID]*sink
	conn     int
	up       bool
	lastAt   [2]time.Duration // last delivery time per direction (in order)
	awayDead bool
	// signals: caught at one end (in order), killed at the other
	caught [2][]int
	// late: signal i of home was caught once the moved process had
	// ended (its status reported away): it may find nothing to signal.
	late []bool
	// sentLate: home's signal (by number) was first sent once the
	// process had ended away (it waited for the bytes before it).
	sentLate map[int]bool
	killed   [2][]int
	// statuses reported away, mirrored home
	states   []Status
	mirrored []Status
	// barriers: for each signal (by side that caught it) and status
	// sent, what had been read of each stream at its sender by then
	sigMarks   [2][]map[StreamID]int
	stateMarks []map[StreamID]int
	kills      [2]int
	doneAt     [2]time.Duration
	faults     int
}

func (s *sim) fatalf(format string, args ...any) {
	s.t.Helper()
	s.t.Fatalf("seed %d at %v: %s", s.seed, s.now, fmt.Sprintf(format, args...))
}

func (s *sim) at(d time.Duration, side Side, ev Event) {
	s.n++
	heap.Push(&s.q, simEv{at: s.now + d, n: s.n, side: side, ev: ev, conn: s.conn})
}

func (s *sim) jitter(max time.Duration) time.Duration {
	return time.Duration(s.rnd.Int63n(int64(max)) + 1)
}

func newSim(t *testing.T, seed int64) *sim {
	rnd := rand.New(rand.NewSource(seed))
	s := &sim{t: t, seed: seed, rnd: rnd}
	nStreams := 1 + rnd.Intn(4)
	var streams []Stream
	for i := 0; i < nStreams; i++ {
		streams = append(streams, Stream{ID: StreamID(i + 1), Dir: Dir(rnd.Intn(2))})
	}
	s.cfg = Config{Streams: streams, Window: 1024 << rnd.Intn(6), PeerTimeout: time.Second}
	base := time.Unix(0, 0)
	for side := Home; side <= Away; side++ {
		c := s.cfg
		c.Side = side
		s.r[side] = New(c, base)
		s.src[side] = map[StreamID]*source{}
		s.dst[side] = map[StreamID]*sink{}
	}
	for _, st := range streams {
		from, to := Home, Away
		if st.Dir == ToHome {
			from, to = Away, Home
		}
		n := rnd.Intn(300 << 10)
		src := &source{eof: rnd.Intn(4) != 0}
		src.data = make([]byte, n)
		for i := range src.data {
			src.data[i] = src.byteAt(i)
		}
		snk := &sink{closeAfter: -1}
		if !src.eof || rnd.Intn(5) == 0 {
			snk.closeAfter = rnd.Intn(n + 1)
		}
		s.src[from][st.ID] = src
		s.dst[to][st.ID] = snk
	}
	return s
}

func (s *sim) run() {
	for side := Home; side <= Away; side++ {
		s.apply(side, s.r[side].Start())
	}
	s.at(s.jitter(5*time.Millisecond), Home, linkBack{})
	// The process: signals both ways, stops and continues, then its end.
	end := s.jitter(3 * time.Second)
	for i := 0; i < 10; i++ {
		s.at(s.jitter(end), Home, Caught{Target: 0})
		s.at(s.jitter(end), Away, Caught{Target: 100})
	}
	for i := 0; i < 4; i++ {
		k := Stopped
		if i%2 == 1 {
			k = Continued
		}
		s.at(end*time.Duration(i+1)/6, Away, ProcState{Status: Status{Kind: k, Code: 19}})
	}
	s.at(end, Away, ProcState{Status: Status{Kind: Exited, Code: int(s.seed % 256)}})
	// The link: breaks now and then; the away node may die.
	for d := s.jitter(500 * time.Millisecond); d < 8*time.Second; d += s.jitter(time.Second) {
		s.at(d, Home, linkFault{outage: s.jitter(300 * time.Millisecond)})
	}
	if s.rnd.Intn(4) == 0 {
		s.at(s.jitter(4*time.Second), Away, nodeDeath{})
	}
	for i := time.Duration(1); i < 40*50; i++ {
		s.at(i*20*time.Millisecond, Home, Tick{})
		s.at(i*20*time.Millisecond, Away, Tick{})
	}
	for s.q.Len() > 0 && !(s.r[Home].Finished() && (s.r[Away].Finished() || s.awayDead)) {
		e := heap.Pop(&s.q).(simEv)
		s.now = e.at
		s.step(e)
	}
	s.check()
}

type linkFault struct{ outage time.Duration }
type linkBack struct{}
type nodeDeath struct{}

func (s *sim) step(e simEv) {
	switch ev := e.ev.(type) {
	case linkFault:
		if !s.up || s.awayDead {
			return
		}
		s.faults++
		s.up = false
		s.conn++
		s.handle(Home, LinkDown{})
		s.handle(Away, LinkDown{})
		s.at(ev.outage, Home, linkBack{})
		return
	case linkBack:
		if s.awayDead {
			return
		}
		s.up = true
		s.conn++
		s.handle(Home, LinkUp{})
		s.handle(Away, LinkUp{})
		return
	case nodeDeath:
		s.awayDead = true
		s.conn++
		s.up = false
		s.handle(Home, LinkDown{})
		if s.rnd.Intn(2) == 0 { // told by the membership, or left to time out
			s.at(s.jitter(200*time.Millisecond), Home, PeerDead{})
		}
		return
	case Recv:
		if e.conn != s.conn {
			return // lost with its connection
		}
	case Caught:
		side := e.side
		if side == Away && s.awayDead {
			return
		}
		n := sigBase + len(s.caught[side]) + 1
		s.caught[side] = append(s.caught[side], n)
		if side == Home {
			s.late = append(s.late, s.r[Away].final)
		}
		ev.Sig = n
		var m map[StreamID]int
		ev.Queued, m = s.queued(side)
		s.sigMarks[side] = append(s.sigMarks[side], m)
		s.handle(side, ev)
		return
	case ProcState:
		if s.r[Away].final || s.awayDead {
			return
		}
		s.states = append(s.states, ev.Status)
		var m map[StreamID]int
		ev.Queued, m = s.queued(Away)
		s.stateMarks = append(s.stateMarks, m)
		s.handle(Away, ev)
		return
	case readDone, writeDone:
		if e.side == Away && s.awayDead {
			return
		}
		if lev, ok := s.local(e.side, ev); ok {
			s.handle(e.side, lev)
		}
		return
	}
	if e.side == Away && s.awayDead {
		return
	}
	s.handle(e.side, e.ev)
}

// mark records, for the control side sends now, how much of each stream
// it has read.
func (s *sim) mark(side Side) map[StreamID]int {
	m := map[StreamID]int{}
	for id, src := range s.src[side] {
		m[id] = src.off
	}
	return m
}

// queued makes up how many bytes wait in each fd side reads (written
// before the signal or status now sent), and returns them with the mark:
// what must be written at the other end before it is performed.
func (s *sim) queued(side Side) (map[StreamID]int, map[StreamID]int) {
	q, m := map[StreamID]int{}, map[StreamID]int{}
	for _, st := range s.cfg.Streams {
		id := st.ID
		src := s.src[side][id]
		if src == nil {
			continue
		}
		n := s.rnd.Intn(20000)
		if src.eof {
			n = min(n, len(src.data)-src.off)
		}
		if src.closedRead {
			n = 0
		}
		q[id] = n
		m[id] = src.off + n
	}
	return q, m
}

// sigBase keeps the simulation's signal numbers apart from SIGKILL.
const sigBase = 100

func (s *sim) handle(side Side, ev Event) {
	if side == Away && s.awayDead {
		return
	}
	acts := s.r[side].Handle(time.Unix(0, 0).Add(s.now), ev)
	if err := s.r[side].Err(); err != nil {
		s.fatalf("%v (after %T)", err, ev)
	}
	if b, max := s.r[side].Buffered(), 2*s.cfg.Window*len(s.cfg.Streams); b > max {
		s.fatalf("%s end holds %d bytes, more than 2 windows per stream (%d)", side, b, max)
	}
	s.apply(side, acts)
}

func (s *sim) apply(side Side, acts []Action) {
	other := 1 - side
	for _, a := range acts {
		switch a := a.(type) {
		case Send:
			if side == Home && a.F.Kind == KSignal && s.r[Away].final {
				if s.sentLate == nil {
					s.sentLate = map[int]bool{}
				}
				if _, seen := s.sentLate[a.F.Sig]; !seen {
					s.sentLate[a.F.Sig] = true
				}
			} else if side == Home && a.F.Kind == KSignal {
				if s.sentLate == nil {
					s.sentLate = map[int]bool{}
				}
				if _, seen := s.sentLate[a.F.Sig]; !seen {
					s.sentLate[a.F.Sig] = false
				}
			}
			if !s.up {
				continue
			}
			at := s.now + s.jitter(3*time.Millisecond)
			if at < s.lastAt[side] {
				at = s.lastAt[side] // in order, as TCP
			}
			s.lastAt[side] = at
			s.n++
			f := a.F
			f.Data = append([]byte(nil), f.Data...)
			heap.Push(&s.q, simEv{at: at, n: s.n, side: other, ev: Recv{f}, conn: s.conn})
		case AllowRead:
			src := s.src[side][a.S]
			if src.closedRead {
				s.fatalf("%s: read allowed on stream %d after its close", side, a.S)
			}
			left := len(src.data) - src.off
			if src.eof && left == 0 {
				s.at(s.jitter(2*time.Millisecond), side, readDone{a.S, a.Max})
				continue
			}
			s.at(s.jitter(4*time.Millisecond), side, readDone{a.S, a.Max})
		case Write:
			snk := s.dst[side][a.S]
			if snk.closed {
				s.fatalf("%s: write on stream %d after its close", side, a.S)
			}
			s.at(s.jitter(4*time.Millisecond), side, writeDone{a.S, a.Data})
		case CloseWrite:
			snk := s.dst[side][a.S]
			if snk.closed {
				s.fatalf("%s: stream %d closed twice", side, a.S)
			}
			snk.closed = true
		case CloseRead:
			src := s.src[side][a.S]
			if src.closedRead {
				s.fatalf("%s: stream %d's reader closed twice", side, a.S)
			}
			src.closedRead = true
		case Kill:
			if a.Target == 0 && a.Sig == SIGKILL && side == Away {
				s.kills[side]++
				continue
			}
			s.killed[side] = append(s.killed[side], a.Sig)
			if i := len(s.killed[side]) - 1; i < len(s.sigMarks[other]) {
				s.checkBarrier(side, s.sigMarks[other][i], "signal")
			}
		case Mirror:
			if side != Home {
				s.fatalf("mirror at the away end")
			}
			s.mirrored = append(s.mirrored, a.Status)
			if i := len(s.mirrored) - 1; i < len(s.stateMarks) && a.Status == s.states[i] {
				s.checkBarrier(side, s.stateMarks[i], "status "+a.Status.String())
			}
		case Done:
			s.doneAt[side] = s.now
		default:
			s.fatalf("unknown action %T", a)
		}
	}
}

type readDone struct {
	s   StreamID
	max int
}
type writeDone struct {
	s    StreamID
	data []byte
}

// local performs the local fds' answers scheduled by apply.
func (s *sim) local(side Side, ev Event) (Event, bool) {
	switch ev := ev.(type) {
	case readDone:
		src := s.src[side][ev.s]
		if src.closedRead {
			return nil, false
		}
		left := len(src.data) - src.off
		if left == 0 && src.eof {
			return ReadEOF{ev.s}, true
		}
		if left == 0 { // writes on forever
			src.data = append(src.data, make([]byte, 4096)...)
			for i := len(src.data) - 4096; i < len(src.data); i++ {
				src.data[i] = src.byteAt(i)
			}
			left = 4096
		}
		n := 1 + s.rnd.Intn(min(left, ev.max, 70000))
		b := src.data[src.off : src.off+n]
		src.off += n
		return Read{ev.s, b}, true
	case writeDone:
		snk := s.dst[side][ev.s]
		if snk.closeAfter >= 0 && len(snk.got)+len(ev.data) > snk.closeAfter {
			snk.readerGone = true
			return WriteGone{ev.s}, true
		}
		snk.got = append(snk.got, ev.data...)
		return Wrote{ev.s, len(ev.data)}, true
	}
	return ev, true
}

// checkBarrier: a signal or status performed at side after every byte
// the other end had read before sending it was written here (or its
// reader here was gone).
func (s *sim) checkBarrier(side Side, mark map[StreamID]int, what string) {
	for id, n := range mark {
		snk := s.dst[side][id]
		if !snk.readerGone && len(snk.got) < n {
			s.fatalf("%s performed at %s with %d of the %d bytes of stream %d sent before it written", what, side, len(snk.got), n, id)
		}
	}
}

func (s *sim) check() {
	if !s.r[Home].Finished() {
		s.fatalf("the home end never finished (away dead: %v, faults %d)", s.awayDead, s.faults)
	}
	if !s.awayDead && !s.r[Away].Finished() {
		s.fatalf("the away end never finished (faults %d)\n%s%s", s.faults, s.r[Home].debugState(), s.r[Away].debugState())
	}
	// Streams: exactly what was read, in order, once.
	for side := Home; side <= Away; side++ {
		for id, src := range s.src[side] {
			snk := s.dst[1-side][id]
			if !bytes.Equal(snk.got, src.data[:len(snk.got)]) {
				s.fatalf("stream %d: the bytes written differ from the bytes read", id)
			}
			switch {
			case s.awayDead:
			case snk.readerGone:
				if !src.closedRead && !src.eof {
					s.fatalf("stream %d: its reader went away, and its writer was never told", id)
				}
			case src.eof:
				if len(snk.got) != len(src.data) {
					s.fatalf("stream %d: %d of %d bytes arrived", id, len(snk.got), len(src.data))
				}
				if !snk.closed {
					s.fatalf("stream %d: end of file never reached its reader", id)
				}
			}
			if s.awayDead && side == Away && !snk.closed {
				s.fatalf("stream %d: home did not close its writer when the other node died", id)
			}
			if s.awayDead && side == Home && !src.closedRead {
				s.fatalf("stream %d: home did not close its reader when the other node died", id)
			}
		}
	}
	// Signals: each once, in order; all of them unless the node died.
	for side := Home; side <= Away; side++ {
		got := s.killed[1-side]
		for i, sig := range got {
			if sig != sigBase+i+1 {
				s.fatalf("signals from %s arrived as %v", side, got)
			}
		}
		missing := len(s.caught[side]) - len(got)
		for i := len(got); side == Home && i < len(s.caught[side]); i++ {
			if s.late[i] || s.sentLate[s.caught[side][i]] {
				missing-- // the process had ended: a signal to a zombie
			}
		}
		if !s.awayDead && missing > 0 {
			s.fatalf("%d of %d signals from %s arrived (late %v, done at %v)\n%s%s", len(got), len(s.caught[side]), side, s.late, s.doneAt, s.r[Home].debugState(), s.r[Away].debugState())
		}
	}
	// Statuses: the reported ones, in order, once; the end last.
	want := s.states
	got := s.mirrored
	if s.awayDead && len(got) > 0 && got[len(got)-1] == (Status{Kind: Killed, Code: SIGKILL}) &&
		(len(want) < len(got) || want[len(got)-1] != got[len(got)-1]) {
		got = got[:len(got)-1]
	} else if s.awayDead && (len(got) == 0 || !got[len(got)-1].Final()) {
		s.fatalf("the other node died and home's stand-in was not killed: %v", got)
	}
	if len(got) > len(want) {
		s.fatalf("mirrored %v, reported %v", s.mirrored, s.states)
	}
	for i := range got {
		if got[i] != want[i] {
			s.fatalf("mirrored %v, reported %v", s.mirrored, s.states)
		}
	}
	if !s.awayDead && len(got) != len(want) {
		s.fatalf("mirrored %v, reported %v", s.mirrored, s.states)
	}
	if n := len(s.mirrored); n == 0 || !s.mirrored[n-1].Final() {
		s.fatalf("home's stand-in never ended: %v", s.mirrored)
	}
}

func TestSim(t *testing.T) {
	seeds := 300
	if testing.Short() {
		seeds = 50
	}
	first := int64(1)
	if *simSeed != 0 {
		first, seeds = *simSeed, 1
	}
	for seed := first; seed < first+int64(seeds); seed++ {
		s := newSim(t, seed)
		s.run()
	}
}
