package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"ferry/internal/ipc"
	"ferry/internal/job"
	"ferry/msg/wire"
)

// The node's side of the message layer: it drives the router of package
// ipc (a state machine) with the events of this node — SENDs of its
// jobs' processes (endpoint.go), envelopes from other nodes, the jobs'
// starts, ends and migrations, a clock tick — and carries out its
// actions: envelopes to other nodes (batched, one POST /v1/peer/msgs at a
// time per peer over the nodes' mutual TLS), deliveries to the
// endpoints, RESULTs to senders, and the job's routing state handed over
// with a migration (in the carry at the commit).
//
// What must outlive the daemon is journalled (msgjournal.go).

// msgTick is how often the router's timers run.
const msgTick = 5 * time.Millisecond

// maxMsgBatch bounds a POST of envelopes to another node.
const maxMsgBatch = 32 << 20

// sendWait is a SEND waiting for its outcome: a process's (proc, the
// connection's gen and the SEND's seq on it) or the CLI's (ch).
type sendWait struct {
	seq     uint64 // the router's seq of the message
	proc    string
	gen     uint64
	connSeq uint32
	ch      chan error
}

type pairKey struct{ from, to ipc.ID }

type earlySend struct {
	from, to ipc.ID
	payload  []byte
	w        sendWait
}

// msgRouter is the node's router and what waits on it.
type msgRouter struct {
	n   *Node
	log *slog.Logger
	def ipc.Mechanism

	mu      sync.Mutex // serializes Handle, and guards the fields below
	r       *ipc.Router
	mechs   map[string]ipc.Mechanism // jobs' own mechanisms, as learnt
	waits   map[pairKey][]sendWait
	next    *sendWait                     // the wait of the Send being handled
	handoff map[string]chan *ipc.JobState // migrating jobs' handed-off state
	peers   map[string]*peerQueue
	// early are SENDs of processes of a job that runs here already but
	// whose routing state has not been taken yet (an arriving job is
	// released a moment before its node hears so): replayed at arrival.
	early   map[string][]earlySend
	cliN    int
	started bool

	jmu     sync.Mutex // serializes journal writes
	written []byte     // the journal as last written
	// cleanStart: the journal taken back was written by a stopping
	// daemon (connections its jobs' inits held go on seamlessly).
	cleanStart bool
}

// peerQueue is what waits to go to one node.
type peerQueue struct {
	mu   sync.Mutex
	envs []ipc.Envelope
	wake chan struct{}
}

func newMsgRouter(n *Node, def ipc.Mechanism) *msgRouter {
	m := &msgRouter{n: n, log: n.log, def: def, mechs: map[string]ipc.Mechanism{}, waits: map[pairKey][]sendWait{},
		handoff: map[string]chan *ipc.JobState{}, peers: map[string]*peerQueue{}, early: map[string][]earlySend{}}
	m.r = ipc.NewRouter(ipc.Config{Node: n.cfg.ID, Mechanism: def, MechanismOf: m.mechOf, Exists: m.exists})
	// The CLI's sends (ferry send) come from a job of the node's own.
	m.r.Handle(time.Now(), ipc.JobStart{Job: m.cliJob()})
	return m
}

// cliJob is the pseudo-job whose processes are `ferry send` calls.
func (m *msgRouter) cliJob() string { return m.n.cfg.ID + "-0" }

// mechOf is a job's mechanism (m.mu held, inside Handle).
func (m *msgRouter) mechOf(job string) ipc.Mechanism {
	if k, ok := m.mechs[job]; ok {
		return k
	}
	return m.def
}

// exists says whether a local job has process id (inside Handle): a
// process that connected does; else its job's namespace is asked.
func (m *msgRouter) exists(id ipc.ID) bool {
	if id.Job == m.cliJob() {
		return true
	}
	m.n.eps.mu.Lock()
	p := m.n.eps.procs[id.String()]
	known := p != nil && (p.conn != nil || p.gen > 0)
	m.n.eps.mu.Unlock()
	if known {
		return true
	}
	m.n.mu.Lock()
	j := m.n.jobs[id.Job]
	m.n.mu.Unlock()
	if j == nil || j.init == nil {
		return true // not ours to say (arriving, or an adopted process: refused before)
	}
	_, err := job.HostPID(j.init.NSPath(), id.PID)
	return err == nil
}

// run drives the timers until the node stops.
func (m *msgRouter) run(ctx context.Context) {
	t := time.NewTicker(msgTick)
	defer t.Stop()
	lastJournal := time.Now()
	for {
		select {
		case now := <-t.C:
			m.handle(ipc.Tick{})
			if now.Sub(lastJournal) >= journalEvery {
				lastJournal = now
				if err := m.writeJournal(false); err != nil {
					m.log.Error("message journal", "err", err)
				}
			}
		case <-ctx.Done():
			return
		case <-m.n.quit:
			return
		}
	}
}

// handle feeds one event and carries out the actions.
func (m *msgRouter) handle(ev ipc.Event) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.do(m.r.Handle(time.Now(), ev))
}

// do carries out actions (m.mu held).
func (m *msgRouter) do(acts []ipc.Action) {
	for _, a := range acts {
		switch a := a.(type) {
		case ipc.Transmit:
			m.queue(a.To, a.Env)
		case ipc.Broadcast:
			// Every member known, also those the gossip holds dead
			// now: the one that has the job may be among them.
			for _, mb := range m.n.cl.Members() {
				if mb.ID != m.n.cfg.ID {
					m.queue(mb.ID, a.Env)
				}
			}
		case ipc.Deliver:
			if a.To.Job == m.cliJob() {
				continue // the CLI does not receive
			}
			pkt, err := wire.Append(nil, &wire.Packet{Type: wire.TypeMsg, ID: a.From.String(), Payload: a.Payload})
			if err != nil {
				m.log.Error("deliver a message", "to", a.To, "err", err)
				continue
			}
			m.n.eps.push(a.To.String(), a.To.Job, pkt)
		case ipc.Accepted:
			if m.next != nil {
				w := *m.next
				w.seq = a.Seq
				k := pairKey{a.From, a.To}
				m.waits[k] = append(m.waits[k], w)
				m.next = nil
			}
		case ipc.Acked:
			k := pairKey{a.From, a.To}
			ws := m.waits[k]
			i := 0
			for i < len(ws) && ws[i].seq <= a.UpTo {
				m.answer(ws[i], wire.CodeOK, "")
				i++
			}
			if i == len(ws) {
				delete(m.waits, k)
			} else {
				m.waits[k] = ws[i:]
			}
		case ipc.Undeliverable:
			k := pairKey{a.From, a.To}
			ws := m.waits[k]
			for i, w := range ws {
				if w.seq == a.Seq {
					code := wire.CodeUnreachable
					if errors.Is(a.Reason, ipc.ErrEnded) {
						code = wire.CodeEnded
					} else if errors.Is(a.Reason, ipc.ErrNoProcess) {
						code = wire.CodeUnknownID
					}
					m.answer(w, code, fmt.Sprintf("%v: %v", a.To, a.Reason))
					m.waits[k] = append(ws[:i:i], ws[i+1:]...)
					break
				}
			}
			if len(m.waits[k]) == 0 {
				delete(m.waits, k)
			}
		case ipc.Handoff:
			if ch := m.handoff[a.Job]; ch != nil {
				select {
				case ch <- a.State:
				default:
				}
			}
		}
	}
}

// answer gives a SEND its outcome.
func (m *msgRouter) answer(w sendWait, code wire.Code, text string) {
	if w.ch != nil {
		var err error
		if code != wire.CodeOK {
			err = &SendError{Code: code, Text: text}
		}
		w.ch <- err
		return
	}
	m.n.eps.result(w.proc, w.gen, w.connSeq, code, text)
}

// SendError is a message the cluster could not deliver.
type SendError struct {
	Code wire.Code
	Text string
}

func (e *SendError) Error() string { return fmt.Sprintf("%v: %s", e.Code, e.Text) }

// precheck refuses at once what no node could deliver: an id whose
// creating node is not in the cluster.
func (m *msgRouter) precheck(to ipc.ID) (wire.Code, string) {
	if strings.HasSuffix(to.Job, "-0") {
		return wire.CodeUnknownID, fmt.Sprintf("%v is a `ferry send` of node %s: it does not receive", to, to.Creator())
	}
	n := m.n
	n.mu.Lock()
	j := n.jobs[to.Job]
	moved := n.moved[to.Job]
	n.mu.Unlock()
	if j != nil {
		info := j.snapshot()
		if j.init == nil && (info.State == stateRunning || info.State == stateMigrating) {
			return wire.CodeUnknownID, fmt.Sprintf("%v: job %s is an adopted process, without a message endpoint", to, to.Job)
		}
		if j.init != nil && info.State == stateRunning {
			if _, err := job.HostPID(j.init.NSPath(), to.PID); err != nil {
				return wire.CodeUnknownID, fmt.Sprintf("%v: job %s has no process %d", to, to.Job, to.PID)
			}
		}
	}
	c := to.Creator()
	if c == m.n.cfg.ID {
		if j == nil && moved == "" {
			return wire.CodeUnknownID, fmt.Sprintf("%v: no such job", to)
		}
		return wire.CodeOK, ""
	}
	for _, mb := range m.n.members() {
		if mb.ID == c {
			return wire.CodeOK, ""
		}
	}
	if m.n.knownPeer(c) {
		return wire.CodeOK, "" // down now, perhaps back before the deadline
	}
	return wire.CodeUnknownID, fmt.Sprintf("%v: no node %q in the cluster created it", to, c)
}

// send hands a message to the router; w is told the outcome.
func (m *msgRouter) send(from, to ipc.ID, payload []byte, w sendWait) {
	m.learnMech(to.Job)
	m.mu.Lock()
	defer m.mu.Unlock()
	m.next = &w
	m.do(m.r.Handle(time.Now(), ipc.Send{From: from, To: to, Payload: payload}))
	if m.next != nil {
		// the router does not know the sender's job: arriving (held
		// until its state is taken), or not here (answered at once:
		// never leave a SEND unanswered)
		m.next = nil
		if m.n.arriving(from.Job) {
			m.early[from.Job] = append(m.early[from.Job], earlySend{from, to, payload, w})
			return
		}
		m.answer(w, wire.CodeUnreachable, fmt.Sprintf("%v: the sender's job %s is not on node %s", to, from.Job, m.n.cfg.ID))
	}
}

// sendCLI sends as the CLI (ferry send) and waits for the outcome.
func (m *msgRouter) sendCLI(ctx context.Context, to ipc.ID, payload []byte) (ipc.ID, error) {
	if code, text := m.precheck(to); code != wire.CodeOK {
		return ipc.ID{}, &SendError{Code: code, Text: text}
	}
	m.mu.Lock()
	m.cliN++
	from := ipc.ID{Job: m.cliJob(), PID: m.cliN}
	m.mu.Unlock()
	ch := make(chan error, 1)
	m.send(from, to, payload, sendWait{ch: ch})
	select {
	case err := <-ch:
		return from, err
	case <-ctx.Done():
		return from, ctx.Err()
	}
}

// learnMech asks the creating node of a job this node does not know
// which mechanism the job uses (ferry run --forwarding), once.
func (m *msgRouter) learnMech(job string) {
	m.mu.Lock()
	_, ok := m.mechs[job]
	m.mu.Unlock()
	if ok {
		return
	}
	c := ipc.CreatorOf(job)
	if c == m.n.cfg.ID || c == "" {
		return // ours: known from its record, or no such job
	}
	var ans struct {
		Forwarding string `json:"forwarding"`
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.n.call(ctx, c, "GET", "/v1/peer/msgs/mechanism?job="+job, nil, &ans); err != nil {
		// The creating node is down: the job's record where it runs
		// says too.
		m.log.Debug("learn a job's forwarding from its creator", "job", job, "err", err)
		at, werr := m.n.where(ctx, job)
		if werr != nil || at == m.n.cfg.ID {
			return
		}
		info, ierr := m.n.remoteJob(ctx, at, job)
		if ierr != nil {
			return
		}
		ans.Forwarding = info.Forwarding
	}
	if k, err := ipc.ParseMechanism(ans.Forwarding); err == nil {
		m.setMech(job, k)
	}
}

func (m *msgRouter) setMech(job string, k ipc.Mechanism) {
	m.mu.Lock()
	m.mechs[job] = k
	m.mu.Unlock()
}

// queue puts an envelope on the way to node to (m.mu held).
func (m *msgRouter) queue(to string, e ipc.Envelope) {
	q := m.peers[to]
	if q == nil {
		q = &peerQueue{wake: make(chan struct{}, 1)}
		m.peers[to] = q
		m.n.goBg(func() { m.sender(to, q) })
	}
	q.mu.Lock()
	q.envs = append(q.envs, e)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// senderIdle is how long a peer's sender waits for work before it ends
// (queue starts another): an idle node keeps no goroutine or connection
// for messages.
const senderIdle = 2 * time.Second

// sender posts what is queued for one node, a batch at a time. A batch
// that fails is dropped: the router sends again what was not
// acknowledged.
func (m *msgRouter) sender(to string, q *peerQueue) {
	idle := time.NewTimer(senderIdle)
	defer idle.Stop()
	for {
		select {
		case <-q.wake:
		case <-idle.C:
			m.mu.Lock()
			q.mu.Lock()
			empty := len(q.envs) == 0
			q.mu.Unlock()
			if empty {
				delete(m.peers, to)
				m.mu.Unlock()
				return
			}
			m.mu.Unlock()
		case <-m.n.quit:
			return
		}
		idle.Reset(senderIdle)
		for {
			q.mu.Lock()
			envs := q.envs
			if len(envs) > ipc.MaxBatch {
				envs = envs[:ipc.MaxBatch]
			}
			q.envs = q.envs[len(envs):]
			q.mu.Unlock()
			if len(envs) == 0 {
				break
			}
			b, err := ipc.EncodeBatch(envs)
			if err != nil {
				m.log.Error("encode messages", "to", to, "err", err)
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			resp, err := m.n.doWith(m.n.msgPeer, ctx, to, "POST", "/v1/peer/msgs", bytes.NewReader(b))
			if err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			cancel()
			if err != nil {
				m.log.Debug("send messages", "to", to, "n", len(envs), "err", err)
			}
		}
	}
}

// handlePeerMsgs takes a batch of envelopes from another node.
func (n *Node) handlePeerMsgs(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		bodyError(w, err)
		return
	}
	envs, err := ipc.DecodeBatch(b)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	m := n.msgs
	m.mu.Lock()
	now := time.Now()
	for _, e := range envs {
		m.do(m.r.Handle(now, ipc.Receive{Env: e}))
	}
	m.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// handlePeerMechanism tells another node a job's mechanism.
func (n *Node) handlePeerMechanism(w http.ResponseWriter, r *http.Request) {
	id := r.URL.Query().Get("job")
	n.msgs.mu.Lock()
	k := n.msgs.mechOf(id)
	n.msgs.mu.Unlock()
	writeJSON(w, map[string]string{"forwarding": k.String()})
}

// SendRequest is `ferry send`'s.
type SendRequest struct {
	To      string `json:"to"`
	Payload []byte `json:"payload"`
}

// SendAnswer is its outcome: the id it was sent as.
type SendAnswer struct {
	From string `json:"from"`
}

// handleSend sends a message as the CLI and answers when it is delivered.
func (n *Node) handleSend(w http.ResponseWriter, r *http.Request) {
	var req SendRequest
	if !decodeBody(w, r, &req) {
		return
	}
	to, err := ipc.ParseID(req.To)
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	if len(req.Payload) > wire.MaxPayload {
		httpError(w, http.StatusBadRequest, fmt.Errorf("message of %d bytes: at most %d", len(req.Payload), wire.MaxPayload))
		return
	}
	from, err := n.msgs.sendCLI(r.Context(), to, req.Payload)
	if se, ok := errors.AsType[*SendError](err); ok {
		code := http.StatusServiceUnavailable
		if se.Code == wire.CodeUnknownID {
			code = http.StatusNotFound
		} else if se.Code == wire.CodeEnded {
			code = http.StatusGone
		}
		httpError(w, code, err)
		return
	}
	if err != nil {
		httpError(w, http.StatusServiceUnavailable, err)
		return
	}
	writeJSON(w, SendAnswer{From: from.String()})
}

// Where is one node's view of a job's location (ferry where).
type Where struct {
	ipc.View
	// Waiting counts the SENDs of the job's processes here that wait for
	// their outcome; Queued the packets waiting for its processes.
	Waiting int `json:"waiting,omitempty"`
	Queued  int `json:"queued,omitempty"`
	// Procs: the endpoint state of the job's processes here.
	Procs []string `json:"procs,omitempty"`
	Error string   `json:"error,omitempty"`
}

// handleWhere answers this node's view (local=1) or every node's.
func (n *Node) handleWhere(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if i := bytes.LastIndexByte([]byte(id), '.'); i > 0 {
		if _, err := strconv.Atoi(id[i+1:]); err == nil {
			id = id[:i] // a process id: its job
		}
	}
	n.msgs.mu.Lock()
	mine := Where{View: n.msgs.r.View(id)}
	for k, ws := range n.msgs.waits {
		if k.from.Job == id {
			mine.Waiting += len(ws)
		}
	}
	mine.Waiting += len(n.msgs.early[id])
	n.msgs.mu.Unlock()
	mine.Queued = n.eps.queued(id)
	n.eps.mu.Lock()
	for _, p := range n.eps.procs {
		if p.job == id {
			mine.Procs = append(mine.Procs, fmt.Sprintf("%s gen %d connected %v paused %v queue %d sends %d (last %d) written %d",
				p.id, p.gen, p.conn != nil, p.paused, len(p.queue), p.sends, p.lastSend, p.written))
		}
	}
	n.eps.mu.Unlock()
	if r.URL.Query().Get("local") == "1" {
		writeJSON(w, mine)
		return
	}
	out := []Where{mine}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, mb := range n.members() {
		if mb.ID == n.cfg.ID {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var v Where
			ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
			defer cancel()
			if err := n.call(ctx, mb.ID, "GET", "/v1/where/"+id+"?local=1", nil, &v); err != nil {
				v = Where{View: ipc.View{Node: mb.ID}, Error: err.Error()}
			}
			mu.Lock()
			out = append(out, v)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	writeJSON(w, out)
}

// MsgCarry is a job's message state carried at the commit: the router's
// JobState and each process's endpoint queue and SENDs awaiting their
// outcome.
type MsgCarry struct {
	Forwarding string          `json:"forwarding"`
	State      json.RawMessage `json:"state"`
	Procs      []epCarryProc   `json:"procs,omitempty"`
	Waits      []carriedWait   `json:"waits,omitempty"`
}

type carriedWait struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Seq     uint64 `json:"seq"`
	Proc    string `json:"proc"`
	Gen     uint64 `json:"gen"`
	ConnSeq uint32 `json:"conn_seq"`
}

// jobMessages is what a migration does with the job's messages; the
// source's steps (outgoing.go) call it.
type jobMessages interface {
	// start: the migration to node to begins.
	start(to string)
	// freeze: the job is frozen; stop writing to its sockets, take what
	// it sent; the node's socket inodes → process ids.
	freeze() map[uint64]string
	// handoff: the router's state and the endpoints' to carry.
	handoff(ctx context.Context) (*MsgCarry, error)
	// committed / rolledBack: the outcome.
	committed()
	rolledBack()
}

// jobMsgs is jobMessages for a job of this node.
type jobMsgs struct {
	m   *msgRouter
	job string
}

func (j jobMsgs) start(to string) {
	j.m.mu.Lock()
	j.m.handoff[j.job] = make(chan *ipc.JobState, 1)
	j.m.mu.Unlock()
	j.m.handle(ipc.MigrateStart{Job: j.job, To: to})
}

func (j jobMsgs) freeze() map[uint64]string {
	j.m.handle(ipc.Freeze{Job: j.job})
	return j.m.n.eps.pause(j.job)
}

func (j jobMsgs) handoff(ctx context.Context) (*MsgCarry, error) {
	j.m.handle(ipc.Commit{Job: j.job})
	j.m.mu.Lock()
	ch := j.m.handoff[j.job]
	j.m.mu.Unlock()
	if ch == nil {
		return nil, fmt.Errorf("job %s: no migration of its messages under way", j.job)
	}
	var st *ipc.JobState
	select {
	case st = <-ch:
	case <-time.After(10 * time.Second):
		return nil, fmt.Errorf("job %s: the message router did not hand the job over", j.job)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	c := &MsgCarry{State: b, Procs: j.m.n.eps.export(j.job)}
	j.m.mu.Lock()
	c.Forwarding = j.m.mechOf(j.job).String()
	for k, ws := range j.m.waits {
		if k.from.Job != j.job {
			continue
		}
		for _, w := range ws {
			c.Waits = append(c.Waits, carriedWait{From: k.from.String(), To: k.to.String(), Seq: w.seq, Proc: w.proc, Gen: w.gen, ConnSeq: w.connSeq})
		}
	}
	j.m.mu.Unlock()
	q := 0
	for _, p := range c.Procs {
		q += len(p.Queue)
	}
	j.m.log.Debug("messages handed over", "job", j.job, "outbox", len(st.Outbox), "held", len(st.Frozen), "queued", q, "waiting", len(c.Waits))
	return c, nil
}

func (j jobMsgs) committed() {
	j.m.handle(ipc.Committed{Job: j.job})
	j.m.mu.Lock()
	delete(j.m.handoff, j.job)
	for k := range j.m.waits {
		if k.from.Job == j.job {
			delete(j.m.waits, k) // carried: the destination answers them
		}
	}
	j.m.mu.Unlock()
	j.m.n.eps.forget(j.job)
}

func (j jobMsgs) rolledBack() {
	j.m.mu.Lock()
	delete(j.m.handoff, j.job)
	j.m.mu.Unlock()
	j.m.handle(ipc.Rollback{Job: j.job})
	j.m.n.eps.resume(j.job)
}

// arrive takes a carried job's messages on the destination, as its new
// copy is released.
func (m *msgRouter) arrive(jobID string, c *MsgCarry) error {
	var st ipc.JobState
	if err := json.Unmarshal(c.State, &st); err != nil {
		return fmt.Errorf("carried message state: %w", err)
	}
	if st.Job != jobID {
		return fmt.Errorf("carried message state of job %s, not %s", st.Job, jobID)
	}
	m.n.eps.adopt(jobID, c.Procs)
	m.mu.Lock()
	defer m.mu.Unlock()
	if k, err := ipc.ParseMechanism(c.Forwarding); err == nil {
		m.mechs[jobID] = k
	}
	for _, cw := range c.Waits {
		from, err1 := ipc.ParseID(cw.From)
		to, err2 := ipc.ParseID(cw.To)
		if err1 != nil || err2 != nil || from.Job != jobID {
			continue
		}
		k := pairKey{from, to}
		m.waits[k] = append(m.waits[k], sendWait{seq: cw.Seq, proc: cw.Proc, gen: cw.Gen, connSeq: cw.ConnSeq})
	}
	for k := range m.waits {
		ws := m.waits[k]
		sort.Slice(ws, func(a, b int) bool { return ws[a].seq < ws[b].seq })
	}
	m.do(m.r.Handle(time.Now(), ipc.Arrive{State: &st}))
	early := m.early[jobID]
	delete(m.early, jobID)
	m.log.Debug("messages arrived", "job", jobID, "outbox", len(st.Outbox), "early", len(early), "waiting", len(c.Waits))
	for _, e := range early {
		w := e.w
		if w.proc != "" {
			// read before the carried state gave the connection its
			// generation: it has it now
			w.gen = m.n.eps.genOf(w.proc)
		}
		m.next = &w
		m.do(m.r.Handle(time.Now(), ipc.Send{From: e.from, To: e.to, Payload: e.payload}))
		m.next = nil
	}
	return nil
}

// arriving says whether job is a job of this node whose routing state
// has not been taken yet (an incoming migration).
func (n *Node) arriving(jobID string) bool {
	n.mu.Lock()
	j := n.jobs[jobID]
	n.mu.Unlock()
	if j == nil {
		return false
	}
	st := j.snapshot().State
	return st == stateIncoming || st == stateRunning
}

// mechOrAuto parses a job's recorded mechanism ("" or unknown: auto).
func mechOrAuto(s string) ipc.Mechanism {
	if k, err := ipc.ParseMechanism(s); err == nil {
		return k
	}
	return ipc.Auto
}

// jobStarted / jobEnded tell the router of a job of this node.
func (m *msgRouter) jobStarted(jobID, forwarding string) {
	if m == nil {
		return // a node of tests, without messages
	}
	if k, err := ipc.ParseMechanism(forwarding); err == nil {
		m.setMech(jobID, k)
	}
	m.handle(ipc.JobStart{Job: jobID})
}

func (m *msgRouter) jobEnded(jobID string) {
	if m == nil {
		return // a node of tests, without messages
	}
	m.mu.Lock()
	delete(m.early, jobID)
	m.mu.Unlock()
	m.handle(ipc.JobEnd{Job: jobID})
	m.n.eps.forget(jobID)
}

// stats is the node's message counters.
func (m *msgRouter) stats() ipc.Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.r.Stats()
}

// view is this node's knowledge of a job.
func (m *msgRouter) view(jobID string) ipc.View {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.r.View(jobID)
}

// MsgCounts are a job's messages on its node now.
type MsgCounts struct {
	Queued int `json:"queued"` // delivered to the node for its processes, not yet in their sockets
	Held   int `json:"held"`   // arrived while it was frozen, held for it
	Outbox int `json:"outbox"` // sent by it, not yet acknowledged
	// Forwarded counts the messages this node relayed for jobs elsewhere
	// (as the creating node or along a link); the same for every job of
	// the node.
	Forwarded int `json:"forwarded"`
}

func (n *Node) msgCounts(jobID string) *MsgCounts {
	if n.msgs == nil {
		return nil
	}
	v := n.msgs.view(jobID)
	st := n.msgs.stats()
	return &MsgCounts{Queued: n.eps.queued(jobID), Held: v.Held, Outbox: v.Outbox, Forwarded: st.RelayedLink + st.RelayedOrigin}
}
