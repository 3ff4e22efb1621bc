package ipc

import (
	"errors"
	"fmt"
	"sort"
	"time"
)

// Mechanism is a message-forwarding mechanism of the chapter, or ferry's own.
type Mechanism int

const (
	Resend Mechanism = iota // V-System, Amoeba
	Origin                  // Sprite, AIX TCF
	Link                    // DEMOS/MP
	Update                  // Charlotte
	Auto                    // ferry: update + link + origin + broadcast
)

// Mechanisms lists every mechanism, in the order of the chapter.
var Mechanisms = []Mechanism{Resend, Origin, Link, Update, Auto}

func (m Mechanism) String() string {
	switch m {
	case Resend:
		return "resend"
	case Origin:
		return "origin"
	case Link:
		return "link"
	case Update:
		return "update"
	case Auto:
		return "auto"
	}
	return fmt.Sprintf("mechanism(%d)", int(m))
}

// ParseMechanism parses a mechanism's name.
func ParseMechanism(s string) (Mechanism, error) {
	for _, m := range Mechanisms {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("unknown forwarding mechanism %q (want resend, origin, link, update or auto)", s)
}

// Reasons a message is reported undeliverable to its sender.
var (
	ErrEnded       = errors.New("receiver ended")
	ErrUnreachable = errors.New("receiver unreachable before the deadline")
	ErrNoProcess   = errors.New("the receiver's job has no such process")
)

// Kind is the kind of an envelope between nodes.
type Kind uint8

const (
	KData            Kind = iota + 1 // a message; From, To, Seq, Floor, SrcNode, Hops, Payload
	KAck                             // To's node to SrcNode: From→To delivered up to UpTo; Loc is To's location
	KTryLater                        // type 1 under resend: To is frozen here, send again later
	KUnknown                         // type 2: To is not here and this node has no forwarding for it
	KEnded                           // To's job ended
	KLocate                          // broadcast: where is Job?
	KLocateReply                     // Job is at Loc
	KLocUpdate                       // Charlotte's link update: Job is (about to be) at Loc; acknowledge
	KLocUpdateAck                    // acknowledges KLocUpdate of Job at Loc.Epoch
	KOriginUpdate                    // to the creating node: Job is at Loc; acknowledge
	KOriginUpdateAck                 //
	KEndNotice                       // Job ended: keep a tombstone, drop its link
	KNoProcess                       // To's job is here but has no process To.PID: From→To up to UpTo refused
)

// Loc is a job's location as a node believes it: the node and the epoch,
// a counter the job carries and raises at every change of location, so
// that older news never overwrites newer.
type Loc struct {
	Node  string
	Epoch uint64
}

// Envelope is what nodes send each other (see the package comment).
type Envelope struct {
	Kind     Kind
	FromNode string // the node that put this envelope on the wire
	From, To ID     // KData, KAck
	Job      string // control kinds
	Seq      uint64 // KData: per (From, To) pair, from 1
	Floor    uint64 // KData: every seq below Floor is acknowledged or abandoned by the sender
	UpTo     uint64 // KAck: cumulative
	SrcNode  string // KData: the node holding the sender's outbox; replies go there
	Hops     int    // KData: network transmissions so far on this attempt
	Loc      Loc
	Payload  []byte
}

// Event is an input of a Router.
type Event interface{ event() }

// Action is an output of a Router.
type Action interface{ action() }

// Events.
type (
	// JobStart: a job starts on this node (its creator, or any node).
	JobStart struct{ Job string }
	// JobEnd: the job ended here.
	JobEnd struct{ Job string }
	// Send: local process From sends Payload to To.
	Send struct {
		From, To ID
		Payload  []byte
	}
	// Receive: an envelope arrived from another node.
	Receive struct{ Env Envelope }
	// MigrateStart: a migration of a local job to node To begins; it still runs.
	MigrateStart struct {
		Job string
		To  string
	}
	// Freeze: the migrating job is frozen (messages to it are of type 1 now).
	Freeze struct{ Job string }
	// Commit: the destination is ready; the router answers with Handoff
	// (at once, or after partners acknowledged the update).
	Commit struct{ Job string }
	// Committed: the Handoff reached the destination; the job runs there.
	Committed struct{ Job string }
	// Rollback: the migration failed; the job resumes here.
	Rollback struct{ Job string }
	// Arrive: a job handed off by another node starts here.
	Arrive struct{ State *JobState }
	// Expect: a job is being migrated here; messages that reach this node
	// for it before it arrives are held (not answered "unknown"), and
	// delivered at its arrival.
	Expect struct{ Job string }
	// Unexpect: that migration failed; what was held is answered
	// "unknown" (its senders try again, and find the job where it stayed).
	Unexpect struct{ Job string }
	// Tick: timers; drive it regularly (every few ms).
	Tick struct{}
	// Restart: the node restarted; volatile state is gone, D is what it kept.
	Restart struct{ D *Durable }
)

func (JobStart) event()     {}
func (JobEnd) event()       {}
func (Send) event()         {}
func (Receive) event()      {}
func (MigrateStart) event() {}
func (Freeze) event()       {}
func (Commit) event()       {}
func (Committed) event()    {}
func (Rollback) event()     {}
func (Arrive) event()       {}
func (Expect) event()       {}
func (Unexpect) event()     {}
func (Tick) event()         {}
func (Restart) event()      {}

// Actions.
type (
	// Transmit: send Env to node To.
	Transmit struct {
		To  string
		Env Envelope
	}
	// Broadcast: send Env to every other node.
	Broadcast struct{ Env Envelope }
	// Deliver: hand a message to local process To.
	Deliver struct {
		From, To ID
		Seq      uint64
		Payload  []byte
		Hops     int
	}
	// Accepted: a Send was taken with this sequence number.
	Accepted struct {
		From, To ID
		Seq      uint64
	}
	// Acked: the messages From sent to To up to UpTo are delivered (the
	// receiver's node has handed them to its endpoint).
	Acked struct {
		From, To ID
		UpTo     uint64
	}
	// Undeliverable: tell local (or ended) sender From that its message
	// Seq to To was not delivered, and why.
	Undeliverable struct {
		From, To ID
		Seq      uint64
		Reason   error
	}
	// Handoff: carry State with the migrating job to node To, then
	// answer Committed (or Rollback if it cannot be handed over).
	Handoff struct {
		Job   string
		To    string
		State *JobState
	}
)

func (Transmit) action()      {}
func (Broadcast) action()     {}
func (Deliver) action()       {}
func (Accepted) action()      {}
func (Acked) action()         {}
func (Undeliverable) action() {}
func (Handoff) action()       {}

// Config of a Router. Durations are of the clock passed to Handle.
type Config struct {
	Node      string
	Nodes     []string // every node of the cluster (the node expands Broadcast to them)
	Mechanism Mechanism
	// MechanismOf, if set, gives a job's own mechanism (ferry run --forwarding).
	MechanismOf func(job string) Mechanism
	// Exists, if set, says whether a local job has process id; a message
	// to one it has not is refused (ErrNoProcess), not delivered.
	Exists func(id ID) bool

	Retransmit    time.Duration // an unacknowledged message is sent again after this
	TryLaterAfter time.Duration // a "try later" answer is retried after this
	Deadline      time.Duration // a message not delivered by then is reported undeliverable
	UpdateWait    time.Duration // update/auto: longest wait for partners' acks at commit
	LinkTTL       time.Duration // auto: a link no message used for this long is dropped
	UpdateGrace   time.Duration // update: the source forwards type-2 messages this long
	MaxHops       int
}

func (c *Config) defaults() {
	if c.Retransmit == 0 {
		c.Retransmit = 40 * time.Millisecond
	}
	if c.TryLaterAfter == 0 {
		c.TryLaterAfter = 10 * time.Millisecond
	}
	if c.Deadline == 0 {
		c.Deadline = 5 * time.Second
	}
	if c.UpdateWait == 0 {
		c.UpdateWait = 50 * time.Millisecond
	}
	if c.LinkTTL == 0 {
		c.LinkTTL = 2 * time.Second
	}
	if c.UpdateGrace == 0 {
		c.UpdateGrace = 200 * time.Millisecond
	}
	if c.MaxHops == 0 {
		c.MaxHops = 16
	}
}

// Counters of a Router, for ferry ps and the bench.
type Counters struct {
	Sent          int // messages accepted from local processes
	Transmissions int // KData envelopes put on the wire (first sends, retransmissions, relays)
	Delivered     int // messages handed to local processes
	HopsDelivered int // sum of Hops of delivered messages
	Duplicates    int // KData that arrived already delivered
	RelayedOrigin int // KData forwarded by this node as the creating node
	RelayedLink   int // KData forwarded along a link left here
	Buffered      int // type-1 messages buffered for a frozen job
	TryLater      int // "try later" answers sent
	UnknownSent   int // "unknown here" answers sent
	Locates       int // broadcasts
	LocUpdates    int // link-update messages sent
	UpdateTimeout int // commits that went ahead without every partner's ack
	LinksLeft     int // links created
	LinksDropped  int
	Undeliverable int
}

// Stats is a Router's counters and the forwarding state it holds now.
type Stats struct {
	Counters
	Links       int // forwarding links held (for jobs elsewhere)
	OriginTable int // locations known as creator of jobs running elsewhere
	Tombstones  int
}

// JobState is what a job carries from node to node: its location epoch,
// its send and receive sequence state, its outbox (its messages not yet
// acknowledged), and the type-1 messages buffered while it was frozen.
type JobState struct {
	Job     string
	Epoch   uint64
	NextSeq map[pair]uint64 // per (from, to): the next seq to give
	In      map[ID]*inbox   // per local receiver
	Outbox  []*pending
	Trail   []string // nodes where a link for this job was left
	Frozen  []Envelope

	// volatile, not carried
	migrating string
	frozen    bool
	commit    *commitWait
	// told: update/auto, the partners' nodes told the new location when
	// the job froze (true once they acknowledged), so that the commit
	// waits only for what is left.
	told map[string]bool
}

type pair struct{ From, To ID }

// inbox is a receiver's sequence state: per sender, the next seq to
// deliver and the messages that came early (a reorder buffer).
type inbox struct {
	Peers map[ID]*peerIn
}

type peerIn struct {
	Next  uint64
	Node  string // the sender's node last seen: a partner for link update
	Early map[uint64]Envelope
}

type pending struct {
	Env       Envelope
	Deadline  time.Time
	NextTry   time.Time
	Tried     bool // an attempt is out; no ack before NextTry counts as a miss
	Misses    int
	LastError error
}

type commitWait struct {
	to      string
	waiting map[string]bool
	until   time.Time
}

type link struct {
	Loc      Loc
	LastUsed time.Time
}

type control struct {
	To      string
	Env     Envelope
	NextTry time.Time
	Until   time.Time
}

// Durable is what a node keeps across its own restart (the node journals
// it in its store at every change): its jobs with their sequence state
// and outboxes, the outbox of jobs that ended, links, the creator's
// table, tombstones and control messages not yet acknowledged. Reorder
// and type-1 buffers, location caches, locates in progress and
// migrations in flight are volatile: what they held is still in some
// sender's outbox, and a migration a restart interrupts is rolled back.
type Durable struct {
	Jobs       map[string]*JobState
	Orphans    []*pending
	Links      map[string]link
	Table      map[string]Loc
	Tombstones map[string]string // ended job → the node where it ended
	// EndedIn: on the node where a job ended, per (sender, receiver) the
	// last seq delivered, so that a retransmission of a delivered message
	// is acknowledged, not reported as undeliverable.
	EndedIn  map[string]map[pair]uint64
	Controls []*control
}

// Router is one node's routing of messages: a state machine without I/O.
// It is not safe for concurrent use; the node serializes Handle calls.
type Router struct {
	cfg        Config
	d          *Durable
	cache      map[string]Loc        // volatile: where jobs are, as last learnt
	locating   map[string]time.Time  // volatile: broadcast locate sent at
	graceUntil map[string]time.Time  // update: links kept only for the grace period
	expecting  map[string][]Envelope // volatile: jobs migrating here, what came for them
	c          Counters
	now        time.Time
	out        []Action
}

// NewRouter makes a node's router with nothing in it.
func NewRouter(cfg Config) *Router {
	cfg.defaults()
	r := &Router{cfg: cfg}
	r.reset(&Durable{})
	return r
}

func (r *Router) reset(d *Durable) {
	if d.Jobs == nil {
		d.Jobs = map[string]*JobState{}
	}
	if d.Links == nil {
		d.Links = map[string]link{}
	}
	if d.Table == nil {
		d.Table = map[string]Loc{}
	}
	if d.Tombstones == nil {
		d.Tombstones = map[string]string{}
	}
	if d.EndedIn == nil {
		d.EndedIn = map[string]map[pair]uint64{}
	}
	r.d = d
	r.cache = map[string]Loc{}
	r.locating = map[string]time.Time{}
	r.graceUntil = map[string]time.Time{}
	r.expecting = map[string][]Envelope{}
}

// Stats reports the counters and the forwarding state held.
func (r *Router) Stats() Stats {
	s := Stats{Counters: r.c, Links: len(r.d.Links), Tombstones: len(r.d.Tombstones)}
	for j, l := range r.d.Table {
		if l.Node != r.cfg.Node || r.d.Jobs[j] == nil {
			s.OriginTable++
		}
	}
	return s
}

// Durable is a deep copy of what survives a restart of this node.
func (r *Router) Durable() *Durable {
	d := &Durable{Jobs: map[string]*JobState{}, Links: map[string]link{}, Table: map[string]Loc{}, Tombstones: map[string]string{}, EndedIn: map[string]map[pair]uint64{}}
	for j, js := range r.d.Jobs {
		d.Jobs[j] = js.clone(false)
	}
	d.Orphans = clonePending(r.d.Orphans)
	for k, v := range r.d.Links {
		d.Links[k] = v
	}
	for k, v := range r.d.Table {
		d.Table[k] = v
	}
	for k, v := range r.d.Tombstones {
		d.Tombstones[k] = v
	}
	for k, v := range r.d.EndedIn {
		m := map[pair]uint64{}
		for p, n := range v {
			m[p] = n
		}
		d.EndedIn[k] = m
	}
	for _, c := range r.d.Controls {
		cc := *c
		d.Controls = append(d.Controls, &cc)
	}
	return d
}

func clonePending(ps []*pending) []*pending {
	var out []*pending
	for _, p := range ps {
		pp := *p
		out = append(out, &pp)
	}
	return out
}

// clone copies a job's state; withBuffers keeps the reorder and type-1
// buffers (a handoff carries them, a restart loses them).
func (js *JobState) clone(withBuffers bool) *JobState {
	c := &JobState{Job: js.Job, Epoch: js.Epoch, NextSeq: map[pair]uint64{}, In: map[ID]*inbox{}}
	for k, v := range js.NextSeq {
		c.NextSeq[k] = v
	}
	for id, in := range js.In {
		ci := &inbox{Peers: map[ID]*peerIn{}}
		for s, p := range in.Peers {
			cp := &peerIn{Next: p.Next, Node: p.Node, Early: map[uint64]Envelope{}}
			if withBuffers {
				for q, e := range p.Early {
					cp.Early[q] = e
				}
			}
			ci.Peers[s] = cp
		}
		c.In[id] = ci
	}
	c.Outbox = clonePending(js.Outbox)
	c.Trail = append([]string(nil), js.Trail...)
	if withBuffers {
		c.Frozen = append([]Envelope(nil), js.Frozen...)
	}
	return c
}

func (r *Router) mech(job string) Mechanism {
	if r.cfg.MechanismOf != nil {
		return r.cfg.MechanismOf(job)
	}
	return r.cfg.Mechanism
}

func (r *Router) emit(a Action) { r.out = append(r.out, a) }

func (r *Router) transmit(to string, e Envelope) {
	e.FromNode = r.cfg.Node
	if e.Kind == KData && to != r.cfg.Node {
		e.Hops++
		r.c.Transmissions++
	}
	if to == r.cfg.Node {
		// A hop to ourselves: handle it at once (the creator forwarding
		// for a local sender, for example).
		r.receive(e)
		return
	}
	r.emit(Transmit{To: to, Env: e})
}

// Handle feeds one event at time now and returns the actions to carry out,
// in order. The same events at the same times give the same actions.
func (r *Router) Handle(now time.Time, ev Event) []Action {
	r.now = now
	r.out = nil
	switch ev := ev.(type) {
	case JobStart:
		// A job the node knew before it restarted keeps its state.
		if r.d.Jobs[ev.Job] == nil {
			r.d.Jobs[ev.Job] = &JobState{Job: ev.Job, NextSeq: map[pair]uint64{}, In: map[ID]*inbox{}}
		}
		if CreatorOf(ev.Job) == r.cfg.Node {
			r.d.Table[ev.Job] = Loc{Node: r.cfg.Node}
		}
	case JobEnd:
		r.jobEnd(ev.Job)
	case Send:
		r.send(ev)
	case Receive:
		r.receive(ev.Env)
	case MigrateStart:
		if js := r.d.Jobs[ev.Job]; js != nil {
			js.migrating = ev.To
		}
	case Freeze:
		if js := r.d.Jobs[ev.Job]; js != nil {
			js.frozen = true
			r.tellPartners(js)
		}
	case Commit:
		r.commit(ev.Job)
	case Committed:
		r.committed(ev.Job)
	case Rollback:
		r.rollback(ev.Job)
	case Arrive:
		r.arrive(ev.State)
	case Expect:
		if r.d.Jobs[ev.Job] == nil {
			if _, ok := r.expecting[ev.Job]; !ok {
				r.expecting[ev.Job] = nil
			}
		}
	case Unexpect:
		held, ok := r.expecting[ev.Job]
		delete(r.expecting, ev.Job)
		if ok {
			for _, e := range held {
				r.data(e)
			}
		}
	case Tick:
		r.tick()
	case Restart:
		c := r.c
		r.reset(ev.D)
		r.c = c
		for _, js := range r.d.Jobs {
			js.migrating, js.frozen, js.commit, js.told = "", false, nil, nil
			for _, p := range js.Outbox {
				p.NextTry = now
			}
		}
	}
	out := r.out
	r.out = nil
	return out
}

func (r *Router) send(ev Send) {
	js := r.d.Jobs[ev.From.Job]
	if js == nil {
		return // not a local job: the node refuses the send before this
	}
	k := pair{ev.From, ev.To}
	seq := js.NextSeq[k] + 1
	js.NextSeq[k] = seq
	r.c.Sent++
	r.emit(Accepted{From: ev.From, To: ev.To, Seq: seq})
	p := &pending{
		Env:      Envelope{Kind: KData, From: ev.From, To: ev.To, Seq: seq, Payload: ev.Payload},
		Deadline: r.now.Add(r.cfg.Deadline),
		NextTry:  r.now,
	}
	js.Outbox = append(js.Outbox, p)
	r.attempt(js, p)
}

// floor is the lowest seq of pair k the sender still wants delivered.
func floorOf(out []*pending, next uint64, k pair) uint64 {
	f := next + 1
	for _, p := range out {
		if p.Env.From == k.From && p.Env.To == k.To && p.Env.Seq < f {
			f = p.Env.Seq
		}
	}
	return f
}

// attempt sends p once more, by the receiver's mechanism.
func (r *Router) attempt(js *JobState, p *pending) {
	if p.Tried && !p.NextTry.After(r.now) {
		p.Misses++
	}
	p.Tried = true
	p.NextTry = r.now.Add(r.cfg.Retransmit)
	e := p.Env
	e.SrcNode = r.cfg.Node
	e.Hops = 0
	if js != nil {
		e.Floor = floorOf(js.Outbox, js.NextSeq[pair{e.From, e.To}], pair{e.From, e.To})
	} else {
		e.Floor = floorOf(r.d.Orphans, e.Seq, pair{e.From, e.To})
	}
	job := e.To.Job
	if _, ended := r.d.Tombstones[job]; ended || r.d.Jobs[job] != nil {
		r.receive(e)
		return
	}
	creator := CreatorOf(job)
	switch r.mech(job) {
	case Resend, Update:
		if l, ok := r.cache[job]; ok {
			r.transmit(l.Node, e)
			return
		}
		r.locate(job)
	case Origin:
		r.transmit(creator, e)
	case Link:
		if l, ok := r.cache[job]; ok {
			r.transmit(l.Node, e)
			return
		}
		r.transmit(creator, e)
	case Auto:
		for i := 0; i < 3; i++ {
			switch (p.Misses + i) % 3 {
			case 0:
				if l, ok := r.cache[job]; ok {
					r.transmit(l.Node, e)
					return
				}
			case 1:
				r.transmit(creator, e)
				return
			case 2:
				r.locate(job)
				return
			}
		}
	}
}

func (r *Router) locate(job string) {
	if at, ok := r.locating[job]; ok && r.now.Sub(at) < r.cfg.Retransmit {
		return
	}
	r.locating[job] = r.now
	r.c.Locates++
	r.emit(Broadcast{Env: Envelope{Kind: KLocate, FromNode: r.cfg.Node, Job: job}})
}

func (r *Router) reply(to string, e Envelope) {
	e.FromNode = r.cfg.Node
	if to == r.cfg.Node {
		r.receive(e)
		return
	}
	r.emit(Transmit{To: to, Env: e})
}

func (r *Router) learn(job string, l Loc) {
	if old, ok := r.cache[job]; !ok || l.Epoch > old.Epoch || (l.Epoch == old.Epoch && l.Node == old.Node) {
		r.cache[job] = l
	}
}

func (r *Router) receive(e Envelope) {
	switch e.Kind {
	case KData:
		r.data(e)
	case KAck:
		r.learn(e.To.Job, e.Loc)
		k := pair{e.From, e.To}
		if js := r.d.Jobs[e.From.Job]; js != nil {
			js.Outbox = dropAcked(js.Outbox, k, e.UpTo)
		}
		r.d.Orphans = dropAcked(r.d.Orphans, k, e.UpTo)
		r.emit(Acked{From: e.From, To: e.To, UpTo: e.UpTo})
	case KTryLater:
		r.forPending(e.To, func(p *pending) { p.NextTry = r.now.Add(r.cfg.TryLaterAfter); p.Tried = false })
	case KUnknown:
		if l, ok := r.cache[e.To.Job]; ok && l.Node == e.FromNode {
			delete(r.cache, e.To.Job)
		}
		r.forPending(e.To, func(p *pending) {
			if p.Tried {
				p.Misses++
				p.Tried = false
			}
			// origin and link have nowhere else to go: give the creator
			// time to learn the new location.
			switch r.mech(e.To.Job) {
			case Origin, Link:
				p.NextTry = r.now.Add(r.cfg.TryLaterAfter)
			default:
				p.NextTry = r.now
			}
		})
	case KEnded:
		// From→To delivered up to UpTo; what came later never will be
		k := pair{e.From, e.To}
		if js := r.d.Jobs[e.From.Job]; js != nil {
			js.Outbox = dropAcked(js.Outbox, k, e.UpTo)
		}
		r.d.Orphans = dropAcked(r.d.Orphans, k, e.UpTo)
		r.emit(Acked{From: e.From, To: e.To, UpTo: e.UpTo})
		r.forPending(e.To, func(p *pending) {
			if p.Env.From == e.From && p.Env.Seq > e.UpTo {
				p.LastError, p.Deadline = ErrEnded, r.now
			}
		})
	case KNoProcess:
		r.learn(e.To.Job, e.Loc)
		refuse := func(ps []*pending) []*pending {
			out := ps[:0]
			for _, p := range ps {
				if p.Env.From == e.From && p.Env.To == e.To && p.Env.Seq <= e.UpTo {
					r.c.Undeliverable++
					r.emit(Undeliverable{From: p.Env.From, To: p.Env.To, Seq: p.Env.Seq, Reason: fmt.Errorf("message %d to %v: %w", p.Env.Seq, p.Env.To, ErrNoProcess)})
					continue
				}
				out = append(out, p)
			}
			return out
		}
		if js := r.d.Jobs[e.From.Job]; js != nil {
			js.Outbox = refuse(js.Outbox)
		}
		r.d.Orphans = refuse(r.d.Orphans)
	case KLocate:
		if js := r.d.Jobs[e.Job]; js != nil {
			r.reply(e.FromNode, Envelope{Kind: KLocateReply, Job: e.Job, Loc: Loc{r.cfg.Node, js.Epoch}})
		} else if at, ok := r.d.Tombstones[e.Job]; ok {
			// the node where it ended knows what was delivered
			r.reply(e.FromNode, Envelope{Kind: KLocateReply, Job: e.Job, Loc: Loc{at, ^uint64(0)}})
		}
	case KLocateReply:
		r.learn(e.Job, e.Loc)
		delete(r.locating, e.Job)
		r.retryJob(e.Job)
	case KLocUpdate:
		r.learn(e.Job, e.Loc)
		r.reply(e.FromNode, Envelope{Kind: KLocUpdateAck, Job: e.Job, Loc: e.Loc})
	case KLocUpdateAck:
		if js := r.d.Jobs[e.Job]; js != nil && js.told != nil {
			if _, ok := js.told[e.FromNode]; ok {
				js.told[e.FromNode] = true
			}
		}
		if js := r.d.Jobs[e.Job]; js != nil && js.commit != nil {
			delete(js.commit.waiting, e.FromNode)
			if len(js.commit.waiting) == 0 {
				r.handoff(js)
			}
		}
	case KOriginUpdate:
		if old, ok := r.d.Table[e.Job]; !ok || e.Loc.Epoch >= old.Epoch {
			r.d.Table[e.Job] = e.Loc
		}
		r.reply(e.FromNode, Envelope{Kind: KOriginUpdateAck, Job: e.Job, Loc: e.Loc})
	case KOriginUpdateAck:
		r.dropControl(e.FromNode, KOriginUpdate, e.Job)
	case KEndNotice:
		r.d.Tombstones[e.Job] = e.Loc.Node
		if _, ok := r.d.Links[e.Job]; ok {
			delete(r.d.Links, e.Job)
			r.c.LinksDropped++
		}
		delete(r.d.Table, e.Job)
	}
}

// forPending calls f for every message this node holds for to (for
// every process of to.Job if to.PID is 0).
func (r *Router) forPending(to ID, f func(*pending)) {
	match := func(p *pending) bool {
		if to.PID == 0 {
			return p.Env.To.Job == to.Job
		}
		return p.Env.To == to
	}
	for _, js := range r.d.Jobs {
		for _, p := range js.Outbox {
			if match(p) {
				f(p)
			}
		}
	}
	for _, p := range r.d.Orphans {
		if match(p) {
			f(p)
		}
	}
}

func (r *Router) retryJob(job string) {
	for _, js := range r.sortedJobs() {
		for _, p := range append([]*pending(nil), js.Outbox...) {
			if p.Env.To.Job == job {
				p.Tried = false
				p.Misses -= p.Misses % 3 // auto: the fresh location first
				r.attempt(js, p)
			}
		}
	}
	for _, p := range append([]*pending(nil), r.d.Orphans...) {
		if p.Env.To.Job == job {
			p.Tried = false
			p.Misses -= p.Misses % 3
			r.attempt(nil, p)
		}
	}
}

func dropAcked(ps []*pending, k pair, upTo uint64) []*pending {
	out := ps[:0]
	for _, p := range ps {
		if p.Env.From == k.From && p.Env.To == k.To && p.Env.Seq <= upTo {
			continue
		}
		out = append(out, p)
	}
	return out
}

// data handles a message that reached this node (from the wire or from a
// local sender).
func (r *Router) data(e Envelope) {
	job := e.To.Job
	if js := r.d.Jobs[job]; js != nil {
		if js.frozen || js.commit != nil {
			if r.mech(job) == Resend {
				r.c.TryLater++
				r.reply(e.SrcNode, Envelope{Kind: KTryLater, To: e.To})
				return
			}
			r.c.Buffered++
			js.Frozen = append(js.Frozen, e)
			return
		}
		r.accept(js, e)
		return
	}
	if at, ok := r.d.Tombstones[job]; ok {
		if at != r.cfg.Node && e.Hops < r.cfg.MaxHops {
			r.transmit(at, e) // only the node where it ended can tell
			return
		}
		upTo := r.d.EndedIn[job][pair{e.From, e.To}]
		if e.Seq <= upTo {
			r.c.Duplicates++
			r.reply(e.SrcNode, Envelope{Kind: KAck, From: e.From, To: e.To, UpTo: upTo, Loc: Loc{r.cfg.Node, ^uint64(0)}})
			return
		}
		r.reply(e.SrcNode, Envelope{Kind: KEnded, From: e.From, To: e.To, UpTo: upTo, Job: job})
		return
	}
	if held, ok := r.expecting[job]; ok {
		r.c.Buffered++
		r.expecting[job] = append(held, e)
		return
	}
	if e.Hops >= r.cfg.MaxHops {
		r.unknown(e)
		return
	}
	m := r.mech(job)
	// forward along a link, or as the creating node by its table:
	// whichever knows the newer location
	var fwd Loc
	viaLink, viaTable := false, false
	if l, ok := r.d.Links[job]; ok && m != Resend && m != Origin {
		if m == Update && !r.graceUntil[job].After(r.now) {
			// past the grace period (or lost in a restart): drop it
			delete(r.d.Links, job)
			r.c.LinksDropped++
		} else {
			fwd, viaLink = l.Loc, true
		}
	}
	if (m == Origin || m == Auto) && CreatorOf(job) == r.cfg.Node {
		if l, ok := r.d.Table[job]; ok && l.Node != r.cfg.Node && l.Node != e.FromNode && (!viaLink || l.Epoch > fwd.Epoch) {
			fwd, viaTable, viaLink = l, true, false
		}
	}
	switch {
	case viaLink:
		l := r.d.Links[job]
		l.LastUsed = r.now
		r.d.Links[job] = l
		r.c.RelayedLink++
		r.transmit(fwd.Node, e)
		return
	case viaTable:
		r.c.RelayedOrigin++
		r.transmit(fwd.Node, e)
		return
	}
	r.unknown(e)
}

func (r *Router) unknown(e Envelope) {
	r.c.UnknownSent++
	r.reply(e.SrcNode, Envelope{Kind: KUnknown, To: e.To})
}

func (r *Router) accept(js *JobState, e Envelope) {
	in := js.In[e.To]
	if in == nil {
		in = &inbox{Peers: map[ID]*peerIn{}}
		js.In[e.To] = in
	}
	p := in.Peers[e.From]
	if p == nil {
		p = &peerIn{Next: 1, Early: map[uint64]Envelope{}}
		in.Peers[e.From] = p
	}
	if p.Early == nil {
		p.Early = map[uint64]Envelope{}
	}
	p.Node = e.SrcNode
	if e.Floor > p.Next {
		// the sender gave up on what lies below Floor and reported it
		for q := range p.Early {
			if q < e.Floor {
				delete(p.Early, q)
			}
		}
		p.Next = e.Floor
	}
	if r.cfg.Exists != nil && e.Seq >= p.Next && !r.cfg.Exists(e.To) {
		// nobody to deliver to: consume what came and refuse it
		upTo := max(e.Seq, p.Next)
		for q := range p.Early {
			upTo = max(upTo, q)
		}
		p.Early = map[uint64]Envelope{}
		p.Next = upTo + 1
		r.reply(e.SrcNode, Envelope{Kind: KNoProcess, From: e.From, To: e.To, UpTo: upTo, Loc: Loc{r.cfg.Node, js.Epoch}})
		return
	}
	switch {
	case e.Seq < p.Next:
		r.c.Duplicates++
	case e.Seq == p.Next:
		p.Early[e.Seq] = e
	default:
		if _, dup := p.Early[e.Seq]; dup {
			r.c.Duplicates++
		}
		p.Early[e.Seq] = e
	}
	for {
		m, ok := p.Early[p.Next]
		if !ok {
			break
		}
		delete(p.Early, p.Next)
		p.Next++
		r.c.Delivered++
		r.c.HopsDelivered += m.Hops
		r.emit(Deliver{From: m.From, To: m.To, Seq: m.Seq, Payload: m.Payload, Hops: m.Hops})
	}
	r.reply(e.SrcNode, Envelope{Kind: KAck, From: e.From, To: e.To, UpTo: p.Next - 1, Loc: Loc{r.cfg.Node, js.Epoch}})
}

func (r *Router) commit(job string) {
	js := r.d.Jobs[job]
	if js == nil || js.migrating == "" {
		return
	}
	js.frozen = true
	m := r.mech(job)
	if m != Update && m != Auto {
		r.handoff(js)
		return
	}
	// Charlotte: every partner's node is told the new location (most of
	// them when the job froze) and the commit waits for the
	// acknowledgements not in yet (bounded by UpdateWait).
	r.tellPartners(js)
	cw := &commitWait{to: js.migrating, waiting: map[string]bool{}, until: r.now.Add(r.cfg.UpdateWait)}
	for n, acked := range js.told {
		if !acked {
			cw.waiting[n] = true
		}
	}
	js.commit = cw
	if len(cw.waiting) == 0 {
		r.handoff(js)
	}
}

// tellPartners sends the migrating job's new location to the partners'
// nodes not told yet (update, auto).
func (r *Router) tellPartners(js *JobState) {
	if m := r.mech(js.Job); js.migrating == "" || (m != Update && m != Auto) {
		return
	}
	if js.told == nil {
		js.told = map[string]bool{}
	}
	loc := Loc{js.migrating, js.Epoch + 1}
	for _, n := range partners(js) {
		if _, done := js.told[n]; done || n == r.cfg.Node || n == js.migrating {
			continue
		}
		js.told[n] = false
		r.c.LocUpdates++
		r.emit(Transmit{To: n, Env: Envelope{Kind: KLocUpdate, FromNode: r.cfg.Node, Job: js.Job, Loc: loc}})
	}
}

func partners(js *JobState) []string {
	set := map[string]bool{}
	for _, in := range js.In {
		for _, p := range in.Peers {
			if p.Node != "" {
				set[p.Node] = true
			}
		}
	}
	return sortedKeys(set)
}

func sortedKeys(m map[string]bool) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func (r *Router) handoff(js *JobState) {
	to := js.migrating
	if js.commit != nil {
		to = js.commit.to
	}
	st := js.clone(true)
	st.Epoch = js.Epoch + 1
	if m := r.mech(js.Job); m == Link || m == Auto || m == Update {
		st.Trail = appendOnce(st.Trail, r.cfg.Node)
	}
	js.commit, js.told = nil, nil
	r.emit(Handoff{Job: js.Job, To: to, State: st})
}

func appendOnce(s []string, n string) []string {
	for _, x := range s {
		if x == n {
			return s
		}
	}
	return append(s, n)
}

func (r *Router) committed(job string) {
	js := r.d.Jobs[job]
	if js == nil {
		return
	}
	to, epoch := js.migrating, js.Epoch+1
	delete(r.d.Jobs, job)
	if m := r.mech(job); m == Link || m == Auto || m == Update {
		r.d.Links[job] = link{Loc: Loc{to, epoch}, LastUsed: r.now}
		r.graceUntil[job] = r.now.Add(r.cfg.UpdateGrace)
		r.c.LinksLeft++
	}
	r.learn(job, Loc{to, epoch})
}

func (r *Router) rollback(job string) {
	js := r.d.Jobs[job]
	if js == nil {
		return
	}
	told := js.commit != nil || len(js.told) > 0
	js.migrating, js.frozen, js.commit, js.told = "", false, nil, nil
	if told {
		// partners may have heard of the destination: tell them it stays
		js.Epoch += 2
		for _, n := range partners(js) {
			if n != r.cfg.Node {
				r.c.LocUpdates++
				r.emit(Transmit{To: n, Env: Envelope{Kind: KLocUpdate, FromNode: r.cfg.Node, Job: job, Loc: Loc{r.cfg.Node, js.Epoch}}})
			}
		}
	}
	r.flushFrozen(js)
}

func (r *Router) flushFrozen(js *JobState) {
	buf := js.Frozen
	js.Frozen = nil
	for _, e := range buf {
		r.accept(js, e)
	}
}

func (r *Router) arrive(st *JobState) {
	js := st.clone(true)
	if old := r.d.Jobs[st.Job]; old != nil {
		return // already here (a duplicate handoff)
	}
	r.d.Jobs[st.Job] = js
	held := r.expecting[st.Job]
	delete(r.expecting, st.Job)
	js.Frozen = append(js.Frozen, held...)
	if _, ok := r.d.Links[st.Job]; ok {
		delete(r.d.Links, st.Job)
		r.c.LinksDropped++
	}
	js.Trail = removeStr(js.Trail, r.cfg.Node)
	for _, p := range js.Outbox {
		p.NextTry, p.Tried = r.now, false
	}
	r.learn(st.Job, Loc{r.cfg.Node, js.Epoch})
	if m := r.mech(st.Job); m == Origin || m == Auto {
		loc := Loc{r.cfg.Node, js.Epoch}
		if c := CreatorOf(st.Job); c == r.cfg.Node {
			r.d.Table[st.Job] = loc
		} else {
			r.addControl(c, Envelope{Kind: KOriginUpdate, Job: st.Job, Loc: loc})
		}
	}
	r.flushFrozen(js)
}

func removeStr(s []string, n string) []string {
	out := s[:0]
	for _, x := range s {
		if x != n {
			out = append(out, x)
		}
	}
	return out
}

func (r *Router) addControl(to string, e Envelope) {
	e.FromNode = r.cfg.Node
	r.dropControl(to, e.Kind, e.Job)
	c := &control{To: to, Env: e, NextTry: r.now.Add(r.cfg.Retransmit), Until: r.now.Add(r.cfg.Deadline)}
	r.d.Controls = append(r.d.Controls, c)
	r.emit(Transmit{To: to, Env: e})
}

func (r *Router) dropControl(to string, k Kind, job string) {
	out := r.d.Controls[:0]
	for _, c := range r.d.Controls {
		if c.To == to && c.Env.Kind == k && c.Env.Job == job {
			continue
		}
		out = append(out, c)
	}
	r.d.Controls = out
}

func (r *Router) jobEnd(job string) {
	js := r.d.Jobs[job]
	if js == nil {
		return
	}
	delete(r.d.Jobs, job)
	r.d.Tombstones[job] = r.cfg.Node
	last := map[pair]uint64{}
	for to, in := range js.In {
		for from, p := range in.Peers {
			last[pair{from, to}] = p.Next - 1
		}
	}
	r.d.EndedIn[job] = last
	// what it sent and was not acknowledged is still delivered (or reported)
	r.d.Orphans = append(r.d.Orphans, js.Outbox...)
	notify := appendOnce(append([]string(nil), js.Trail...), CreatorOf(job))
	for _, n := range notify {
		if n != r.cfg.Node {
			r.addControl(n, Envelope{Kind: KEndNotice, Job: job, Loc: Loc{r.cfg.Node, ^uint64(0)}})
		}
	}
	// messages buffered or early for it: their senders hear "ended" on
	// their next retransmission
}

func (r *Router) sortedJobs() []*JobState {
	ks := make([]string, 0, len(r.d.Jobs))
	for k := range r.d.Jobs {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	out := make([]*JobState, len(ks))
	for i, k := range ks {
		out[i] = r.d.Jobs[k]
	}
	return out
}

func (r *Router) tick() {
	for _, js := range r.sortedJobs() {
		if js.commit != nil && !js.commit.until.After(r.now) {
			r.c.UpdateTimeout++
			r.handoff(js)
		}
		r.tickOutbox(js, &js.Outbox)
	}
	r.tickOutbox(nil, &r.d.Orphans)
	for _, c := range r.d.Controls {
		if !c.NextTry.After(r.now) {
			c.NextTry = r.now.Add(r.cfg.Retransmit)
			r.emit(Transmit{To: c.To, Env: c.Env})
		}
	}
	ctl := r.d.Controls[:0]
	for _, c := range r.d.Controls {
		if c.Until.After(r.now) {
			ctl = append(ctl, c)
		}
	}
	r.d.Controls = ctl
	for _, j := range r.sortedLinks() {
		m := r.mech(j)
		if (m == Auto && r.now.Sub(r.d.Links[j].LastUsed) >= r.cfg.LinkTTL) ||
			(m == Update && !r.graceUntil[j].After(r.now)) {
			delete(r.d.Links, j)
			r.c.LinksDropped++
		}
	}
}

func (r *Router) sortedLinks() []string {
	ks := make([]string, 0, len(r.d.Links))
	for k := range r.d.Links {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// tickOutbox reports what passed its deadline and sends again what is due.
// Attempts may acknowledge (and so remove) entries of *ps at once: it is
// read again after each.
func (r *Router) tickOutbox(js *JobState, ps *[]*pending) {
	if js != nil && (js.frozen || js.commit != nil) {
		// A frozen sender's outbox waits for the handoff, deadlines
		// too: the node it moves to reports them (its copy of the
		// outbox is the one that counts), or this one after a rollback.
		return
	}
	var keep, due []*pending
	for _, p := range *ps {
		if !p.Deadline.After(r.now) {
			reason := p.LastError
			if reason == nil {
				reason = ErrUnreachable
			}
			r.c.Undeliverable++
			r.emit(Undeliverable{From: p.Env.From, To: p.Env.To, Seq: p.Env.Seq, Reason: fmt.Errorf("message %d to %v: %w", p.Env.Seq, p.Env.To, reason)})
			continue
		}
		keep = append(keep, p)
		if !p.NextTry.After(r.now) {
			due = append(due, p)
		}
	}
	*ps = keep
	for _, p := range due {
		if !contains(*ps, p) {
			continue
		}
		r.attempt(js, p)
	}
}

func contains(ps []*pending, p *pending) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// View is what this node believes of a job: `ferry where` shows every
// node's, `ferry ps` the counts.
type View struct {
	Node    string `json:"node"`
	Local   bool   `json:"local,omitempty"`  // the job runs here (or is frozen here)
	Frozen  bool   `json:"frozen,omitempty"` // a migration froze it; messages are held
	Epoch   uint64 `json:"epoch,omitempty"`
	Link    *Loc   `json:"link,omitempty"`     // a forwarding link left here
	Table   *Loc   `json:"table,omitempty"`    // as its creating node
	Cache   *Loc   `json:"cache,omitempty"`    // where this node last learnt it is
	EndedAt string `json:"ended_at,omitempty"` // tombstone: the node where it ended
	Outbox  int    `json:"outbox,omitempty"`   // messages it sent, not yet acknowledged
	Held    int    `json:"held,omitempty"`     // messages to it buffered while frozen
	ToIt    int    `json:"to_it,omitempty"`    // messages of this node's senders to it, not yet acknowledged
}

// View reports this node's knowledge of job.
func (r *Router) View(job string) View {
	v := View{Node: r.cfg.Node}
	if js := r.d.Jobs[job]; js != nil {
		v.Local, v.Frozen, v.Epoch = true, js.frozen || js.commit != nil, js.Epoch
		v.Outbox, v.Held = len(js.Outbox), len(js.Frozen)
	}
	if l, ok := r.d.Links[job]; ok {
		loc := l.Loc
		v.Link = &loc
	}
	if l, ok := r.d.Table[job]; ok && CreatorOf(job) == r.cfg.Node {
		loc := l
		v.Table = &loc
	}
	if l, ok := r.cache[job]; ok {
		loc := l
		v.Cache = &loc
	}
	v.EndedAt = r.d.Tombstones[job]
	r.forPending(ID{Job: job}, func(*pending) { v.ToIt++ })
	return v
}
