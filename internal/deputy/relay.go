package deputy

import (
	"errors"
	"fmt"
	"time"
)

// Side is the end of the relay a Relay plays.
type Side int

const (
	Home Side = iota // the stand-in in the job's home namespace
	Away             // where the process runs now
)

func (s Side) String() string {
	if s == Home {
		return "home"
	}
	return "away"
}

// Dir is the way a stream flows.
type Dir int

const (
	ToAway Dir = iota // home reads the original fd, away writes to the process
	ToHome            // away reads what the process writes, home writes the original fd
)

// StreamID names a stream; both ends know the same list.
type StreamID uint32

// Stream is one stream of the relay.
type Stream struct {
	ID  StreamID
	Dir Dir
	// EOF and Gone start a stream ended, for an end made after the other
	// end moved on (Rebase): EOF, the writers at home had closed (the
	// away end closes its write side at once); Gone, the readers at home
	// had gone (the away end closes its read side: the process gets
	// EPIPE).
	EOF  bool `json:"eof,omitempty"`
	Gone bool `json:"gone,omitempty"`
}

// StatusKind is what became of the moved process.
type StatusKind int

const (
	Exited    StatusKind = iota + 1 // Code is the exit code
	Killed                          // Code is the signal; Core if it dumped one
	Stopped                         // Code is the stopping signal
	Continued                       // SIGCONT
)

// Status is a change of the moved process's state, as wait reports it.
type Status struct {
	Kind StatusKind
	Code int
	Core bool
}

// Final reports whether the process is gone with it.
func (s Status) Final() bool { return s.Kind == Exited || s.Kind == Killed }

func (s Status) String() string {
	switch s.Kind {
	case Exited:
		return fmt.Sprintf("exited %d", s.Code)
	case Killed:
		if s.Core {
			return fmt.Sprintf("killed by signal %d (core dumped)", s.Code)
		}
		return fmt.Sprintf("killed by signal %d", s.Code)
	case Stopped:
		return fmt.Sprintf("stopped by signal %d", s.Code)
	case Continued:
		return "continued"
	}
	return fmt.Sprintf("status %d", s.Kind)
}

// SIGKILL is what home reports when the other node is gone.
const SIGKILL = 9

// Kind is a frame's kind.
type Kind uint8

const (
	KHello  Kind = iota + 1 // after LinkUp: Ack says what the sender has
	KAck                    // Ack only
	KData                   // Stream, Data
	KCredit                 // Stream, N: the writing end wrote N more bytes
	KEof                    // Stream: no more data
	KGone                   // Stream: the reader at the writing end is gone
	KSignal                 // Target (0: the moved process), Sig
	KStatus                 // Status (away → home)
)

var kindNames = map[Kind]string{KHello: "hello", KAck: "ack", KData: "data", KCredit: "credit",
	KEof: "eof", KGone: "gone", KSignal: "signal", KStatus: "status"}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind %d", k)
}

// Frame is what the two ends tell each other.
type Frame struct {
	Kind   Kind
	Seq    uint64 // from 1; 0 for Hello and Ack
	Ack    uint64 // every Seq up to Ack was received
	Stream StreamID
	Data   []byte
	N      int
	Target int
	Sig    int
	Status Status
}

// Config sets a relay's limits.
type Config struct {
	Side    Side
	Streams []Stream
	// Window is how many bytes of a stream may be on their way (read at
	// one end and not yet written at the other); 256 KiB if 0.
	Window int
	// PeerTimeout: a link down this long ends the relay as PeerDead
	// would; 30 s if 0.
	PeerTimeout time.Duration
}

// Events, fed to Handle.
type (
	LinkUp   struct{} // a connection to the other end is there
	LinkDown struct{} // it broke
	PeerDead struct{} // the other node is gone for good
	// Pause (home): the process is about to move on from its node: send
	// it nothing more (what is read is held) until Unpause (the move
	// failed) or Rebase (it runs on a new node now).
	Pause   struct{}
	Unpause struct{}
	// Rebase (home, paused, with nothing on its way to the old end and
	// nothing left to write here: Quiet): the relay goes on with a new
	// away end, made with the streams of Open; the link starts again.
	Rebase struct{}
	Recv   struct{ F Frame } // a frame arrived
	Tick   struct{}          // time passed (timeouts)
	Read   struct {          // the fd of stream S gave these bytes
		S    StreamID
		Data []byte
	}
	ReadEOF struct{ S StreamID } // ... or end of file
	Wrote   struct {
		S StreamID
		N int
	} // a Write of N bytes was written whole
	WriteGone struct{ S StreamID } // a Write failed: EPIPE
	// Caught: a stand-in caught a signal for Target. Queued is how many
	// bytes were waiting in each fd this end reads at that moment
	// (FIONREAD): written before the signal, they are relayed before it.
	Caught struct {
		Target, Sig int
		Queued      map[StreamID]int
	}
	// ProcState: away, the process's status changed; Queued as Caught's.
	ProcState struct {
		Status Status
		Queued map[StreamID]int
	}
)

// Actions, returned by Handle.
type (
	Send      struct{ F Frame } // put on the link
	AllowRead struct {
		S   StreamID
		Max int
	} // read once, at most Max bytes
	Write struct {
		S    StreamID
		Data []byte
	} // write whole, then Wrote (or WriteGone)
	CloseWrite struct{ S StreamID }      // close the fd Write wrote to
	CloseRead  struct{ S StreamID }      // close the fd AllowRead read from
	Kill       struct{ Target, Sig int } // signal Target (0: the moved process)
	Mirror     struct{ Status Status }   // home: the stand-in takes this status
	Done       struct{ Why string }      // the relay is over
)

// ErrProtocol is wrapped by errors about frames no correct peer sends.
var ErrProtocol = errors.New("deputy relay protocol violation")

// outStream is a stream this end reads.
type outStream struct {
	credit  int
	reading bool // an AllowRead is out
	eof     bool
	gone    bool   // CloseRead done
	sent    uint64 // bytes read (on the link, or held)
	// held: read while paused, sent after (Unpause, Rebase); heldEOF:
	// the end of file came then.
	held    [][]byte
	heldEOF bool
	// base: what went to the away ends before the last Rebase (Sent
	// counts what the present one got).
	base uint64
}

// inStream is a stream this end writes.
type inStream struct {
	queue    [][]byte
	writing  bool // a Write is out
	eof      bool // the peer sent Eof
	closed   bool // CloseWrite done
	gone     bool // our reader is gone
	owed     int  // written, not yet credited
	received uint64
	written  uint64
}

// control is a Signal or Status waiting for the data before it.
type control struct {
	f    Frame
	mark map[StreamID]uint64 // bytes of each stream received before it
}

// outControl is a Signal or Status frame to send once each stream of
// need has been read that far.
type outControl struct {
	f    Frame
	need map[StreamID]uint64
}

// Relay is one end of the relay.
type Relay struct {
	cfg  Config
	out  map[StreamID]*outStream
	in   map[StreamID]*inStream
	ids  []StreamID // in Config order, for determinism
	now  time.Time
	acts []Action

	up, synced bool
	downSince  time.Time
	nextSeq    uint64
	unacked    []Frame
	recvSeq    uint64 // every frame up to it received
	ackedSent  uint64 // the Ack last put on the link
	pending    []control
	// outCtl are signals and statuses waiting for the bytes written
	// before them to be read (Caught.Queued): sent in order.
	outCtl []outControl
	final  bool // a final status mirrored (home) or known (away)
	done   bool
	err    error
	// paused: nothing goes to the other end but credits and acks, while
	// the process moves on to another node (Pause, Rebase).
	paused bool
}

// Action is one of the action types above.
type Action any

// Event is one of the event types above.
type Event any

// New returns an end of the relay; it starts with the link down (feed
// LinkUp when connected) and grants every stream it writes a window.
func New(cfg Config, now time.Time) *Relay {
	if cfg.Window <= 0 {
		cfg.Window = 256 << 10
	}
	if cfg.PeerTimeout <= 0 {
		cfg.PeerTimeout = 30 * time.Second
	}
	r := &Relay{cfg: cfg, out: map[StreamID]*outStream{}, in: map[StreamID]*inStream{},
		nextSeq: 1, downSince: now, now: now}
	for _, s := range cfg.Streams {
		r.ids = append(r.ids, s.ID)
		if r.reads(s) {
			r.out[s.ID] = &outStream{credit: cfg.Window, gone: s.Gone}
		} else {
			r.in[s.ID] = &inStream{eof: s.EOF}
		}
	}
	return r
}

// reads reports whether this end reads stream s (else it writes it).
func (r *Relay) reads(s Stream) bool {
	return (r.cfg.Side == Home) == (s.Dir == ToAway)
}

// Err is the first protocol violation seen (the frame was ignored): the
// driver ends the relay (the other end is not ferry's, or is broken).
func (r *Relay) Err() error { return r.err }

// Finished reports whether Done was returned.
func (r *Relay) Finished() bool { return r.done }

// Buffered is how many bytes this end holds: queued to write and kept
// for sending again.
func (r *Relay) Buffered() int {
	n := 0
	for _, s := range r.in {
		for _, b := range s.queue {
			n += len(b)
		}
	}
	for _, f := range r.unacked {
		n += len(f.Data)
	}
	return n
}

// Start returns the first actions: a read allowed on every stream this
// end reads.
func (r *Relay) Start() []Action {
	r.acts = nil
	for _, id := range r.ids {
		if o := r.out[id]; o != nil {
			if o.gone {
				r.emit(CloseRead{id})
				continue
			}
			r.allow(id, o)
		}
		if s := r.in[id]; s != nil && s.eof {
			r.pump(id, s)
		}
	}
	return r.acts
}

// Handle applies ev and returns what to do.
func (r *Relay) Handle(now time.Time, ev Event) []Action {
	r.now = now
	r.acts = nil
	if r.done {
		r.afterDone(ev)
		return r.acts
	}
	switch ev := ev.(type) {
	case LinkUp:
		r.hello()
	case LinkDown:
		if r.up {
			r.up, r.synced = false, false
			r.downSince = now
		}
	case PeerDead:
		r.peerDead("the other node is gone")
	case Pause:
		if r.cfg.Side != Home {
			r.fail(errors.New("pause at the away end"))
			break
		}
		r.paused = true
	case Unpause:
		r.unpause()
	case Rebase:
		r.rebase()
	case Tick:
		if !r.up && now.Sub(r.downSince) >= r.cfg.PeerTimeout {
			r.peerDead(fmt.Sprintf("no link to the other node for %v", r.cfg.PeerTimeout))
		} else {
			r.ackOwed()
		}
	case Recv:
		r.recv(ev.F)
	case Read:
		o := r.out[ev.S]
		if o == nil || !o.reading {
			r.fail(fmt.Errorf("read on stream %d that was not allowed", ev.S))
			break
		}
		o.reading = false
		if o.gone {
			break
		}
		if len(ev.Data) > o.credit {
			r.fail(fmt.Errorf("read %d bytes on stream %d, %d allowed", len(ev.Data), ev.S, o.credit))
			break
		}
		o.credit -= len(ev.Data)
		o.sent += uint64(len(ev.Data))
		if r.paused {
			if len(ev.Data) > 0 {
				o.held = append(o.held, ev.Data)
			}
			break
		}
		if len(ev.Data) > 0 {
			r.send(Frame{Kind: KData, Stream: ev.S, Data: ev.Data})
		}
		r.flushCtl()
		r.allow(ev.S, o)
	case ReadEOF:
		o := r.out[ev.S]
		if o == nil || !o.reading {
			r.fail(fmt.Errorf("end of file on stream %d that was not allowed a read", ev.S))
			break
		}
		o.reading = false
		if !o.gone && !o.eof {
			o.eof = true
			if r.paused {
				o.heldEOF = true
				break
			}
			r.flushCtl()
			r.send(Frame{Kind: KEof, Stream: ev.S})
		}
	case Wrote:
		s := r.in[ev.S]
		if s == nil || !s.writing || len(s.queue) == 0 || len(s.queue[0]) != ev.N {
			r.fail(fmt.Errorf("wrote %d bytes on stream %d: no such write", ev.N, ev.S))
			break
		}
		s.writing = false
		s.queue = s.queue[1:]
		s.written += uint64(ev.N)
		s.owed += ev.N
		if s.owed >= r.cfg.Window/4 || len(s.queue) == 0 {
			r.send(Frame{Kind: KCredit, Stream: ev.S, N: s.owed})
			s.owed = 0
		}
		r.pump(ev.S, s)
		r.runControls()
	case WriteGone:
		s := r.in[ev.S]
		if s == nil || !s.writing {
			r.fail(fmt.Errorf("write failure on stream %d: no such write", ev.S))
			break
		}
		s.writing = false
		r.readerGone(ev.S, s)
		r.runControls()
	case Caught:
		r.sendCtl(Frame{Kind: KSignal, Target: ev.Target, Sig: ev.Sig}, ev.Queued)
	case ProcState:
		if r.cfg.Side != Away {
			r.fail(errors.New("a process status reported at home"))
			break
		}
		if r.final {
			break
		}
		r.final = ev.Status.Final()
		r.sendCtl(Frame{Kind: KStatus, Status: ev.Status}, ev.Queued)
	default:
		r.fail(fmt.Errorf("unknown event %T", ev))
	}
	r.checkDone()
	return r.acts
}

// afterDone keeps answering the link once this end is done, so that the
// other end learns that its last frames arrived (its own Done waits for
// that); what they say is of no use any more.
func (r *Relay) afterDone(ev Event) {
	switch ev := ev.(type) {
	case LinkUp:
		r.hello()
	case LinkDown:
		r.up, r.synced = false, false
	case Recv:
		if !r.up {
			return
		}
		switch {
		case ev.F.Kind == KHello:
			r.synced = true
		case ev.F.Seq == r.recvSeq+1:
			r.recvSeq++
		}
	case Tick:
		r.ackOwed()
	}
}

// hello starts a connection: this end says what it has.
func (r *Relay) hello() {
	r.up, r.synced = true, false
	r.emit(Send{Frame{Kind: KHello, Ack: r.recvSeq}})
	r.ackedSent = r.recvSeq
}

// ackOwed acknowledges what arrived since the last acknowledgement.
func (r *Relay) ackOwed() {
	if r.synced && r.ackedSent < r.recvSeq {
		r.emit(Send{Frame{Kind: KAck, Ack: r.recvSeq}})
		r.ackedSent = r.recvSeq
	}
}

func (r *Relay) emit(a Action) { r.acts = append(r.acts, a) }

func (r *Relay) fail(err error) {
	if r.err == nil {
		r.err = fmt.Errorf("%s end: %w: %w", r.cfg.Side, err, ErrProtocol)
	}
}

// send numbers f, keeps it until acknowledged, and puts it on the link
// if the link is there.
func (r *Relay) send(f Frame) {
	f.Seq = r.nextSeq
	r.nextSeq++
	r.unacked = append(r.unacked, f)
	if r.synced {
		f.Ack = r.recvSeq
		r.ackedSent = r.recvSeq
		r.emit(Send{f})
	}
}

// sendCtl sends a signal or status once the bytes queued before it in
// the fds this end reads are read (and sent before it).
func (r *Relay) sendCtl(f Frame, queued map[StreamID]int) {
	c := outControl{f: f, need: map[StreamID]uint64{}}
	for id, q := range queued {
		if o := r.out[id]; o != nil && q > 0 {
			c.need[id] = o.sent + uint64(q)
		}
	}
	r.outCtl = append(r.outCtl, c)
	r.flushCtl()
}

func (r *Relay) flushCtl() {
	for len(r.outCtl) > 0 && !r.paused {
		c := r.outCtl[0]
		for id, n := range c.need {
			if o := r.out[id]; o.sent < n && !o.eof && !o.gone {
				return
			}
		}
		r.outCtl = r.outCtl[1:]
		r.send(c.f)
	}
}

func (r *Relay) allow(id StreamID, o *outStream) {
	if !o.reading && !o.eof && !o.gone && o.credit > 0 && !r.paused {
		o.reading = true
		r.emit(AllowRead{id, o.credit})
	}
}

// pump starts the next write of s, or closes it once all is written.
func (r *Relay) pump(id StreamID, s *inStream) {
	switch {
	case s.writing || s.closed:
	case len(s.queue) > 0:
		s.writing = true
		r.emit(Write{id, s.queue[0]})
	case s.eof:
		s.closed = true
		r.emit(CloseWrite{id})
	}
}

// readerGone: the reader of stream id at this end closed: what comes is
// dropped and the other end is told to close the writer's way in.
func (r *Relay) readerGone(id StreamID, s *inStream) {
	if s.gone {
		return
	}
	s.gone = true
	for _, b := range s.queue {
		s.written += uint64(len(b)) // dropped counts as done for the barrier
	}
	s.queue = nil
	if !s.closed {
		s.closed = true
		r.emit(CloseWrite{id})
	}
	r.send(Frame{Kind: KGone, Stream: id})
}

func (r *Relay) recv(f Frame) {
	if !r.up {
		return // a frame of a connection already given up
	}
	r.dropAcked(f.Ack)
	switch f.Kind {
	case KHello:
		// What the peer has: send again what follows, then go on.
		r.synced = true
		for _, u := range r.unacked {
			u.Ack = r.recvSeq
			r.emit(Send{u})
		}
		r.ackedSent = r.recvSeq
		return
	case KAck:
		return
	}
	if !r.synced {
		r.fail(fmt.Errorf("%s frame before hello", f.Kind))
		return
	}
	if f.Seq <= r.recvSeq {
		return // sent again after a reconnect: had it
	}
	if f.Seq != r.recvSeq+1 {
		r.fail(fmt.Errorf("frame %d after %d: a gap", f.Seq, r.recvSeq))
		return
	}
	r.recvSeq = f.Seq
	switch f.Kind {
	case KData:
		s := r.in[f.Stream]
		if s == nil {
			r.fail(fmt.Errorf("data on stream %d, which this end does not write", f.Stream))
			return
		}
		if s.eof {
			r.fail(fmt.Errorf("data on stream %d after its end", f.Stream))
			return
		}
		s.received += uint64(len(f.Data))
		if s.gone {
			s.written += uint64(len(f.Data))
			return
		}
		queued := 0
		for _, b := range s.queue {
			queued += len(b)
		}
		if queued+len(f.Data) > r.cfg.Window {
			r.fail(fmt.Errorf("stream %d: %d bytes beyond its window", f.Stream, queued+len(f.Data)-r.cfg.Window))
			return
		}
		s.queue = append(s.queue, f.Data)
		r.pump(f.Stream, s)
	case KEof:
		s := r.in[f.Stream]
		if s == nil {
			r.fail(fmt.Errorf("end of stream %d, which this end does not write", f.Stream))
			return
		}
		s.eof = true
		r.pump(f.Stream, s)
	case KCredit:
		o := r.out[f.Stream]
		if o == nil || f.N <= 0 || o.credit+f.N > r.cfg.Window {
			r.fail(fmt.Errorf("credit of %d on stream %d", f.N, f.Stream))
			return
		}
		o.credit += f.N
		r.allow(f.Stream, o)
	case KGone:
		o := r.out[f.Stream]
		if o == nil {
			r.fail(fmt.Errorf("reader gone on stream %d, which this end does not read", f.Stream))
			return
		}
		if !o.gone {
			o.gone = true
			r.emit(CloseRead{f.Stream})
			r.flushCtl()
		}
	case KSignal, KStatus:
		if f.Kind == KStatus && r.cfg.Side != Home {
			r.fail(errors.New("a status sent to the away end"))
			return
		}
		c := control{f: f, mark: map[StreamID]uint64{}}
		for id, s := range r.in {
			c.mark[id] = s.received
		}
		r.pending = append(r.pending, c)
		r.runControls()
	default:
		r.fail(fmt.Errorf("%s frame", f.Kind))
	}
}

// runControls performs the signals and statuses whose data is written.
func (r *Relay) runControls() {
	for len(r.pending) > 0 {
		c := r.pending[0]
		for id, m := range c.mark {
			if r.in[id].written < m {
				return
			}
		}
		r.pending = r.pending[1:]
		if c.f.Kind == KSignal {
			r.emit(Kill{c.f.Target, c.f.Sig})
			continue
		}
		if r.final {
			continue
		}
		r.final = c.f.Status.Final()
		r.emit(Mirror{c.f.Status})
	}
}

func (r *Relay) dropAcked(ack uint64) {
	i := 0
	for i < len(r.unacked) && r.unacked[i].Seq <= ack {
		i++
	}
	r.unacked = r.unacked[i:]
}

// peerDead ends the relay for good: see the package comment.
func (r *Relay) peerDead(why string) {
	for _, id := range r.ids {
		if s := r.in[id]; s != nil && !s.closed {
			s.closed = true
			r.emit(CloseWrite{id})
		}
		if o := r.out[id]; o != nil && !o.gone {
			o.gone = true
			r.emit(CloseRead{id})
		}
	}
	if r.cfg.Side == Home {
		if !r.final {
			r.final = true
			r.emit(Mirror{Status{Kind: Killed, Code: SIGKILL}})
		}
	} else if !r.final {
		r.final = true
		r.emit(Kill{0, SIGKILL})
	}
	r.done = true
	r.emit(Done{why})
}

// checkDone ends the relay when there is nothing left to relay: the
// process's end known, every stream closed at this end and everything
// sent acknowledged but credits (which matter to no one then). It
// acknowledges what it received, last.
func (r *Relay) checkDone() {
	if r.done || !r.final || len(r.pending) > 0 || len(r.outCtl) > 0 {
		return
	}
	for _, f := range r.unacked {
		if f.Kind != KCredit {
			return
		}
	}
	for _, id := range r.ids {
		if s := r.in[id]; s != nil && !s.closed {
			return
		}
		if o := r.out[id]; o != nil && !o.eof && !o.gone {
			return
		}
	}
	r.ackOwed()
	r.done = true
	r.emit(Done{"the process ended and every stream is closed"})
}

func (r *Relay) unpause() {
	if !r.paused {
		return
	}
	r.paused = false
	for _, id := range r.ids {
		o := r.out[id]
		if o == nil {
			continue
		}
		for _, b := range o.held {
			r.send(Frame{Kind: KData, Stream: id, Data: b})
		}
		o.held = nil
		if o.heldEOF {
			o.heldEOF = false
			r.send(Frame{Kind: KEof, Stream: id})
		}
	}
	r.flushCtl()
	for _, id := range r.ids {
		if o := r.out[id]; o != nil {
			r.allow(id, o)
		}
	}
}

// Quiet reports whether a paused home end may Rebase: nothing it sent
// but credits waits for an acknowledgement, every byte it read went to
// the old end, nothing is left to write here, no signal or status waits.
func (r *Relay) Quiet() bool {
	if !r.paused || len(r.pending) > 0 {
		return false
	}
	for _, f := range r.unacked {
		if f.Kind != KCredit && f.Kind != KGone {
			return false
		}
	}
	for _, s := range r.in {
		if !s.closed && (len(s.queue) > 0 || s.writing) {
			return false
		}
	}
	return true
}

// Sent is, for each stream this end reads, how many bytes went to the
// present other end (not those held, not those of an end before the last
// Rebase): what it must have received before the process moves on.
func (r *Relay) Sent() map[StreamID]uint64 {
	out := map[StreamID]uint64{}
	for id, o := range r.out {
		out[id] = o.sent - o.heldBytes() - o.base
	}
	return out
}

// Received is, for each stream this end writes, how many bytes came.
func (r *Relay) Received() map[StreamID]uint64 {
	out := map[StreamID]uint64{}
	for id, s := range r.in {
		out[id] = s.received
	}
	return out
}

// IdleIn reports, at the away end, that every stream it writes got
// n[id] bytes and wrote them all.
func (r *Relay) IdleIn(n map[StreamID]uint64) bool {
	for id, s := range r.in {
		if s.gone || s.closed {
			continue
		}
		if len(s.queue) > 0 || s.writing || s.received < n[id] {
			return false
		}
	}
	return true
}

// IdleOut reports that every stream this end reads had all it sent
// written at the other end, and no signal or status waits.
func (r *Relay) IdleOut() bool {
	for _, o := range r.out {
		if !o.eof && !o.gone && o.credit < r.cfg.Window {
			return false
		}
	}
	return len(r.outCtl) == 0
}

// Idle is IdleIn and IdleOut: with the process frozen and its fds
// empty, nothing of it is in the relay.
func (r *Relay) Idle(n map[StreamID]uint64) bool { return r.IdleIn(n) && r.IdleOut() }

// Open lists the streams a new away end needs (Rebase): those still open
// at this end, marked EOF or Gone as they ended here.
func (r *Relay) Open() []Stream {
	var out []Stream
	for _, s := range r.cfg.Streams {
		if o := r.out[s.ID]; o != nil {
			if o.gone {
				continue // its readers there are gone
			}
			out = append(out, Stream{ID: s.ID, Dir: s.Dir, EOF: o.eof})
		}
		if in := r.in[s.ID]; in != nil {
			if in.closed && !in.gone {
				continue // its writers there closed
			}
			out = append(out, Stream{ID: s.ID, Dir: s.Dir, Gone: in.gone})
		}
	}
	return out
}

func (r *Relay) rebase() {
	if !r.Quiet() {
		r.fail(errors.New("rebase while frames or bytes are on their way"))
		return
	}
	r.up, r.synced = false, false
	r.downSince = r.now
	r.nextSeq, r.recvSeq, r.ackedSent = 1, 0, 0
	r.unacked = nil
	for _, o := range r.out {
		o.credit = r.cfg.Window - int(o.heldBytes())
		o.base = o.sent - o.heldBytes()
	}
	for _, s := range r.in {
		s.owed = 0
	}
	r.unpause()
}

func (o *outStream) heldBytes() uint64 {
	n := 0
	for _, b := range o.held {
		n += len(b)
	}
	return uint64(n)
}
