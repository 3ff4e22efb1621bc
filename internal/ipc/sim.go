package ipc

import (
	"container/heap"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"time"
)

// SimConfig describes one deterministic simulated cluster run.
type SimConfig struct {
	Seed        int64
	Mechanism   Mechanism
	Nodes       int           // n1..nN
	JobsPerNode int           // jobs created on each node
	PIDs        int           // processes per job
	Sends       int           // random sends, spread over Active
	Active      time.Duration // sends, migrations, crashes happen in [0, Active)
	Migrations  int           // random migrations started
	RollbackP   float64       // share of migrations that roll back
	Crashes     int           // node crashes (each followed by a restart)
	MaxDown     time.Duration // longest a crashed node stays down
	Ends        int           // jobs that end during the run
	MaxDelay    time.Duration // network delay is uniform in [1ms, MaxDelay]: reorders
	LossP       float64       // share of envelopes the network drops
	Router      Config        // timers; Node, Nodes and Mechanism are set by the sim
}

// SimResult is what a run measured.
type SimResult struct {
	Sent, Delivered, Reported int
	ReportedEnded             int // of Reported: the receiver ended
	FalseReports              int // reported undeliverable, yet delivered (the ack was lost)
	Migrations, Rollbacks     int
	Crashes                   int
	Stats                     Stats   // summed over nodes, at the end
	Hops                      float64 // mean hops of delivered messages
	Duration                  time.Duration
}

// Sim is a cluster of routers in one process with a seeded network.
type Sim struct {
	trace   func(n string, ev Event, acts []Action) // tests: every event handled
	cfg     SimConfig
	rng     *rand.Rand
	t0, now time.Time
	nodes   []string
	r       map[string]*Router
	up      map[string]bool
	downAt  map[string]time.Time
	upAt    map[string]time.Time
	saved   map[string]*Durable
	downs   []interval
	jobs    []*simJob
	net     netQueue
	netSeq  int
	res     SimResult

	sent      map[msgKey]time.Time
	delivered map[msgKey]int
	last      map[pair]uint64
	reported  map[msgKey]error
	errs      []error
}

type interval struct {
	node     string
	from, to time.Time
}

type simJob struct {
	id      string
	node    string
	ended   bool
	endedAt time.Time
	mig     *simMig
}

type simMig struct {
	to                 string
	freezeAt, commitAt time.Time
	frozen, committing bool
	rollback           bool
}

type msgKey struct {
	p   pair
	seq uint64
}

type inFlight struct {
	at  time.Time
	seq int
	to  string
	env Envelope
}

type netQueue []inFlight

func (q netQueue) Len() int { return len(q) }
func (q netQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q netQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *netQueue) Push(x any)   { *q = append(*q, x.(inFlight)) }
func (q *netQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	*q = old[:len(old)-1]
	return x
}

// NewSim builds the cluster of cfg.
func NewSim(cfg SimConfig) *Sim {
	s := &Sim{cfg: cfg, rng: rand.New(rand.NewSource(cfg.Seed)), t0: time.Unix(1_000_000, 0),
		r: map[string]*Router{}, up: map[string]bool{}, downAt: map[string]time.Time{}, upAt: map[string]time.Time{},
		saved: map[string]*Durable{}, sent: map[msgKey]time.Time{}, delivered: map[msgKey]int{},
		last: map[pair]uint64{}, reported: map[msgKey]error{}}
	s.now = s.t0
	for i := 1; i <= cfg.Nodes; i++ {
		s.nodes = append(s.nodes, fmt.Sprintf("n%d", i))
	}
	for _, n := range s.nodes {
		rc := cfg.Router
		rc.Node, rc.Nodes, rc.Mechanism = n, s.nodes, cfg.Mechanism
		s.r[n] = NewRouter(rc)
		s.up[n] = true
		for j := 1; j <= cfg.JobsPerNode; j++ {
			id := fmt.Sprintf("%s-%d", n, j)
			s.jobs = append(s.jobs, &simJob{id: id, node: n})
			s.apply(n, s.r[n].Handle(s.now, JobStart{Job: id}))
		}
	}
	return s
}

// Router is node n's router (for targeted tests).
func (s *Sim) Router(n string) *Router { return s.r[n] }

func (s *Sim) job(id string) *simJob {
	for _, j := range s.jobs {
		if j.id == id {
			return j
		}
	}
	return nil
}

func (s *Sim) handle(n string, ev Event) {
	if !s.up[n] {
		return
	}
	acts := s.r[n].Handle(s.now, ev)
	if s.trace != nil {
		s.trace(n, ev, acts)
	}
	s.apply(n, acts)
}

func (s *Sim) apply(n string, acts []Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case Transmit:
			s.wire(a.To, a.Env)
		case Broadcast:
			for _, m := range s.nodes {
				if m != n {
					s.wire(m, a.Env)
				}
			}
		case Accepted:
			s.res.Sent++
			s.sent[msgKey{pair{a.From, a.To}, a.Seq}] = s.now
		case Deliver:
			s.deliver(a)
		case Undeliverable:
			k := msgKey{pair{a.From, a.To}, a.Seq}
			if _, dup := s.reported[k]; dup {
				s.errs = append(s.errs, fmt.Errorf("%v→%v #%d reported twice", a.From, a.To, a.Seq))
			}
			s.reported[k] = a.Reason
			s.res.Reported++
			if errors.Is(a.Reason, ErrEnded) {
				s.res.ReportedEnded++
			}
			s.checkReport(k, a.Reason)
		case Handoff:
			s.handoff(n, a)
		}
	}
}

func (s *Sim) wire(to string, e Envelope) {
	if s.cfg.LossP > 0 && s.rng.Float64() < s.cfg.LossP {
		return
	}
	d := time.Millisecond
	if s.cfg.MaxDelay > time.Millisecond {
		d += time.Duration(s.rng.Int63n(int64(s.cfg.MaxDelay - time.Millisecond)))
	}
	s.netSeq++
	heap.Push(&s.net, inFlight{at: s.now.Add(d), seq: s.netSeq, to: to, env: e})
}

func (s *Sim) deliver(a Deliver) {
	k := msgKey{pair{a.From, a.To}, a.Seq}
	if _, ok := s.sent[k]; !ok {
		s.errs = append(s.errs, fmt.Errorf("%v→%v #%d delivered but never sent", a.From, a.To, a.Seq))
	}
	if want := fmt.Sprintf("%v>%v#%d", a.From, a.To, a.Seq); string(a.Payload) != want {
		s.errs = append(s.errs, fmt.Errorf("payload %q, want %q", a.Payload, want))
	}
	s.delivered[k]++
	if s.delivered[k] > 1 {
		s.errs = append(s.errs, fmt.Errorf("%v→%v #%d delivered %d times", a.From, a.To, a.Seq, s.delivered[k]))
	}
	if last := s.last[k.p]; a.Seq <= last {
		s.errs = append(s.errs, fmt.Errorf("%v→%v #%d delivered after #%d", a.From, a.To, a.Seq, last))
	}
	s.last[k.p] = a.Seq
	if j := s.job(a.To.Job); j == nil || j.ended {
		s.errs = append(s.errs, fmt.Errorf("%v→%v #%d delivered to an ended job", a.From, a.To, a.Seq))
	}
	s.res.Delivered++
}

// checkReport: a report is allowed only if the receiver ended, or a node
// was down while the message was outstanding.
func (s *Sim) checkReport(k msgKey, reason error) {
	if s.delivered[k] > 0 {
		s.res.FalseReports++
	}
	switch {
	case errors.Is(reason, ErrEnded):
		if j := s.job(k.p.To.Job); j == nil || !j.ended {
			s.errs = append(s.errs, fmt.Errorf("%v→%v #%d reported %v but the receiver runs", k.p.From, k.p.To, k.seq, reason))
		}
	default:
		from := s.sent[k]
		ok := false
		for _, d := range s.downs {
			if d.from.Before(s.now) && d.to.After(from) {
				ok = true
			}
		}
		for n, down := range s.up {
			if !down && s.downAt[n].Before(s.now) {
				ok = true
			}
		}
		if !ok {
			s.errs = append(s.errs, fmt.Errorf("%v→%v #%d reported %v with every node up", k.p.From, k.p.To, k.seq, reason))
		}
	}
}

func (s *Sim) handoff(src string, h Handoff) {
	j := s.job(h.Job)
	if j != nil {
		j.mig = nil
	}
	if !s.up[h.To] {
		s.res.Rollbacks++
		s.handle(src, Rollback{Job: h.Job})
		return
	}
	s.res.Migrations++
	s.handle(h.To, Arrive{State: h.State})
	if j != nil {
		j.node = h.To
	}
	s.handle(src, Committed{Job: h.Job})
}

func (s *Sim) randTime(d time.Duration) time.Time {
	return s.t0.Add(time.Duration(s.rng.Int63n(int64(d))))
}

type simEvent struct {
	at   time.Time
	kind int // 0 send, 1 migrate, 2 crash, 3 end
}

// Run runs the cluster until everything sent is delivered or reported
// (or a bound of virtual time passes), and checks the guarantees.
func (s *Sim) Run() (SimResult, error) {
	var evs []simEvent
	add := func(n, kind int) {
		for i := 0; i < n; i++ {
			evs = append(evs, simEvent{s.randTime(s.cfg.Active), kind})
		}
	}
	add(s.cfg.Sends, 0)
	add(s.cfg.Migrations, 1)
	add(s.cfg.Crashes, 2)
	add(s.cfg.Ends, 3)
	sort.SliceStable(evs, func(a, b int) bool { return evs[a].at.Before(evs[b].at) })
	end := s.t0.Add(s.cfg.Active + 2*s.cfg.Router.Deadline + 2*s.cfg.MaxDown + 5*time.Second)
	const tick = 5 * time.Millisecond
	nextTick := s.t0
	for s.now.Before(end) {
		// the next thing that happens
		next := nextTick
		if len(evs) > 0 && evs[0].at.Before(next) {
			next = evs[0].at
		}
		if len(s.net) > 0 && s.net[0].at.Before(next) {
			next = s.net[0].at
		}
		if next.After(s.now) {
			s.now = next
		}
		for len(s.net) > 0 && !s.net[0].at.After(s.now) {
			f := heap.Pop(&s.net).(inFlight)
			s.handle(f.to, Receive{Env: f.env})
		}
		for len(evs) > 0 && !evs[0].at.After(s.now) {
			e := evs[0]
			evs = evs[1:]
			s.random(e.kind)
		}
		if !s.now.Before(nextTick) {
			nextTick = s.now.Add(tick)
			s.progress()
			for _, n := range s.nodes {
				s.handle(n, Tick{})
			}
			if len(evs) == 0 && s.quiet() {
				break
			}
		}
	}
	s.res.Duration = s.now.Sub(s.t0)
	for k := range s.sent {
		if s.delivered[k] == 0 && s.reported[k] == nil {
			s.errs = append(s.errs, fmt.Errorf("%v→%v #%d neither delivered nor reported", k.p.From, k.p.To, k.seq))
		}
	}
	var st Stats
	for _, n := range s.nodes {
		x := s.r[n].Stats()
		st.add(x)
	}
	s.res.Stats = st
	if st.Delivered > 0 {
		s.res.Hops = float64(st.HopsDelivered) / float64(st.Delivered)
	}
	if len(s.errs) > 0 {
		sort.Slice(s.errs, func(a, b int) bool { return s.errs[a].Error() < s.errs[b].Error() })
		n := len(s.errs)
		show := s.errs
		if len(show) > 5 {
			show = show[:5]
		}
		return s.res, fmt.Errorf("seed %d, %v: %d violations, first: %v", s.cfg.Seed, s.cfg.Mechanism, n, errors.Join(show...))
	}
	return s.res, nil
}

func (st *Stats) add(x Stats) {
	c := &st.Counters
	c.Sent += x.Sent
	c.Transmissions += x.Transmissions
	c.Delivered += x.Delivered
	c.HopsDelivered += x.HopsDelivered
	c.Duplicates += x.Duplicates
	c.RelayedOrigin += x.RelayedOrigin
	c.RelayedLink += x.RelayedLink
	c.Buffered += x.Buffered
	c.TryLater += x.TryLater
	c.UnknownSent += x.UnknownSent
	c.Locates += x.Locates
	c.LocUpdates += x.LocUpdates
	c.UpdateTimeout += x.UpdateTimeout
	c.LinksLeft += x.LinksLeft
	c.LinksDropped += x.LinksDropped
	c.Undeliverable += x.Undeliverable
	st.Links += x.Links
	st.OriginTable += x.OriginTable
	st.Tombstones += x.Tombstones
}

// quiet: every node up, nothing in flight, no outbox or control pending.
func (s *Sim) quiet() bool {
	if len(s.net) > 0 {
		return false
	}
	for _, n := range s.nodes {
		if !s.up[n] {
			return false
		}
		d := s.r[n].d
		if len(d.Orphans) > 0 || len(d.Controls) > 0 {
			return false
		}
		for _, js := range d.Jobs {
			if len(js.Outbox) > 0 {
				return false
			}
		}
	}
	for _, j := range s.jobs {
		if j.mig != nil {
			return false
		}
	}
	return true
}

func (s *Sim) runnable() []*simJob {
	var out []*simJob
	for _, j := range s.jobs {
		if !j.ended && s.up[j.node] && (j.mig == nil || !j.mig.frozen) {
			out = append(out, j)
		}
	}
	return out
}

func (s *Sim) random(kind int) {
	switch kind {
	case 0:
		js := s.runnable()
		if len(js) == 0 {
			return
		}
		from := js[s.rng.Intn(len(js))]
		to := s.jobs[s.rng.Intn(len(s.jobs))]
		f := ID{from.id, 100 + s.rng.Intn(s.cfg.PIDs)}
		t := ID{to.id, 100 + s.rng.Intn(s.cfg.PIDs)}
		// the payload names the message, so that the checker can tell
		// a misdelivery; the seq is the router's next for the pair
		seq := s.r[from.node].d.Jobs[from.id].NextSeq[pair{f, t}] + 1
		s.handle(from.node, Send{From: f, To: t, Payload: fmt.Appendf(nil, "%v>%v#%d", f, t, seq)})
	case 1:
		var cand []*simJob
		for _, j := range s.jobs {
			if !j.ended && j.mig == nil && s.up[j.node] {
				cand = append(cand, j)
			}
		}
		if len(cand) == 0 {
			return
		}
		j := cand[s.rng.Intn(len(cand))]
		var dests []string
		for _, n := range s.nodes {
			if n != j.node && s.up[n] {
				dests = append(dests, n)
			}
		}
		if len(dests) == 0 {
			return
		}
		m := &simMig{to: dests[s.rng.Intn(len(dests))]}
		m.freezeAt = s.now.Add(time.Duration(1+s.rng.Intn(20)) * time.Millisecond)
		m.commitAt = m.freezeAt.Add(time.Duration(1+s.rng.Intn(20)) * time.Millisecond)
		m.rollback = s.rng.Float64() < s.cfg.RollbackP
		j.mig = m
		s.handle(j.node, MigrateStart{Job: j.id, To: m.to})
		s.handle(m.to, Expect{Job: j.id})
	case 2:
		var cand []string
		for _, n := range s.nodes {
			if s.up[n] {
				cand = append(cand, n)
			}
		}
		if len(cand) <= 1 {
			return
		}
		s.Crash(cand[s.rng.Intn(len(cand))], time.Duration(1+s.rng.Int63n(int64(s.cfg.MaxDown))))
	case 3:
		var cand []*simJob
		for _, j := range s.jobs {
			if !j.ended && j.mig == nil && s.up[j.node] {
				cand = append(cand, j)
			}
		}
		if len(cand) <= 1 {
			return
		}
		j := cand[s.rng.Intn(len(cand))]
		j.ended, j.endedAt = true, s.now
		s.handle(j.node, JobEnd{Job: j.id})
	}
}

// Crash stops node n now (its durable state kept) and restarts it after d.
// Migrations from n roll back at its restart; migrations to n roll back.
func (s *Sim) Crash(n string, d time.Duration) {
	if !s.up[n] {
		return
	}
	s.res.Crashes++
	// Through the journal's encoding, as a node keeps it.
	b, err := EncodeDurable(s.r[n].Durable())
	if err == nil {
		s.saved[n], err = DecodeDurable(b)
	}
	if err != nil {
		panic(fmt.Sprintf("sim: journal of node %s: %v", n, err))
	}
	s.up[n] = false
	s.downAt[n] = s.now
	s.upAt[n] = s.now.Add(d)
	s.downs = append(s.downs, interval{n, s.now, s.now.Add(d)})
	for _, j := range s.jobs {
		if j.mig == nil {
			continue
		}
		if j.node == n {
			// the destination sees the source gone: the migration failed
			if to := j.mig.to; s.up[to] {
				s.handle(to, Unexpect{Job: j.id})
			}
			j.mig = nil
			s.res.Rollbacks++
		} else if j.mig.to == n {
			j.mig = nil
			s.res.Rollbacks++
			s.handle(j.node, Rollback{Job: j.id})
		}
	}
}

// progress moves migrations on and restarts nodes that are due.
func (s *Sim) progress() {
	for _, n := range s.nodes {
		if !s.up[n] && !s.upAt[n].After(s.now) {
			s.up[n] = true
			s.handle(n, Restart{D: s.saved[n]})
		}
	}
	for _, j := range s.jobs {
		m := j.mig
		if m == nil || m.committing {
			continue
		}
		if !m.frozen && !m.freezeAt.After(s.now) {
			m.frozen = true
			s.handle(j.node, Freeze{Job: j.id})
		}
		if m.frozen && !m.commitAt.After(s.now) {
			if m.rollback {
				j.mig = nil
				s.res.Rollbacks++
				s.handle(j.node, Rollback{Job: j.id})
				if s.up[m.to] {
					s.handle(m.to, Unexpect{Job: j.id})
				}
				continue
			}
			m.committing = true
			s.handle(j.node, Commit{Job: j.id}) // Handoff now or after the partners' acks
		}
	}
}

// Step runs the cluster for d with no random events (targeted tests).
func (s *Sim) Step(d time.Duration) {
	end := s.now.Add(d)
	for s.now.Before(end) {
		s.now = s.now.Add(time.Millisecond)
		for len(s.net) > 0 && !s.net[0].at.After(s.now) {
			f := heap.Pop(&s.net).(inFlight)
			s.handle(f.to, Receive{Env: f.env})
		}
		if s.now.Sub(s.t0)%(5*time.Millisecond) == 0 {
			s.progress()
			for _, n := range s.nodes {
				s.handle(n, Tick{})
			}
		}
	}
}
