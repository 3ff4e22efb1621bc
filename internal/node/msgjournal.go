package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"ferry/internal/ipc"
	"ferry/msg/wire"
)

// The message layer's journal: what the node's router holds that must
// outlive the daemon (ipc.Durable: the jobs' sequence state and outboxes,
// links, the creator's table, tombstones, control messages not yet
// acknowledged) and the messages delivered here but not yet written into
// a process's socket. A new daemon on the same state directory takes it
// back before its jobs, so that nothing that was in the node is lost or
// delivered twice across a restart.
//
// It is one file, <state>/msgs.journal, replaced whole (written aside,
// then renamed: a reader sees the old state or the new one, never half)
// at most every journalEvery while something changed, and a last time
// when the node stops, after its processes' SENDs have been drained from
// their sockets and no other node can post to it any more. It is not
// synced to the disk: it guards against the daemon's end, not the
// machine's, which takes the jobs' processes with it.
//
// A daemon that was killed (not stopped) loses what changed in its last
// journalEvery: SENDs it took in that time (their senders' connections
// closed without a RESULT, so they know the outcome is unknown) and
// deliveries in it (a message delivered then, not yet acknowledged, is
// sent again by its sender's node and may reach the process twice). The
// journal says whether it was written by a stop (Clean) and the new
// daemon logs which case it is.

// journalEvery is the most often the journal is written.
const journalEvery = 20 * time.Millisecond

// journalVersion is the version of the journal file.
const journalVersion = 1

type msgJournal struct {
	V      int               `json:"v"`
	Clean  bool              `json:"clean"` // written by a stopping node
	Router json.RawMessage   `json:"router"`
	Procs  []journalProc     `json:"procs,omitempty"`
	Mechs  map[string]string `json:"mechs,omitempty"`
	// Waits are the processes' SENDs waiting for their outcome (the
	// connections the jobs' inits hold get it from the next daemon).
	Waits []carriedWait `json:"waits,omitempty"`
	CLIN  int           `json:"cli_n,omitempty"`
}

// journalProc is a process's endpoint record: its connection generation
// (a process that connects to the new daemon gets a later one) and the
// messages waiting for it.
type journalProc struct {
	ID    string   `json:"id"`
	Job   string   `json:"job"`
	Gen   uint64   `json:"gen"`
	Queue [][]byte `json:"queue,omitempty"`
}

func (n *Node) journalPath() string { return filepath.Join(n.cfg.StateDir, "msgs.journal") }

// journalState encodes what the journal keeps now.
func (m *msgRouter) journalState(clean bool) ([]byte, error) {
	m.mu.Lock()
	d := m.r.Durable()
	mechs := map[string]string{}
	for j, k := range m.mechs {
		mechs[j] = k.String()
	}
	cliN := m.cliN
	var waits []carriedWait
	for k, ws := range m.waits {
		for _, w := range ws {
			if w.ch == nil {
				waits = append(waits, carriedWait{From: k.from.String(), To: k.to.String(), Seq: w.seq, Proc: w.proc, Gen: w.gen, ConnSeq: w.connSeq})
			}
		}
	}
	sort.Slice(waits, func(i, j int) bool {
		a, b := waits[i], waits[j]
		if a.From != b.From {
			return a.From < b.From
		}
		if a.To != b.To {
			return a.To < b.To
		}
		return a.Seq < b.Seq
	})
	// Lock order: m.mu, then eps.mu (as inside Handle).
	m.n.eps.mu.Lock()
	var procs []journalProc
	for _, p := range m.n.eps.procs {
		// (RESULTs too: a connection the job's init holds goes on
		// with the next daemon; one that connects again drops them.)
		procs = append(procs, journalProc{ID: p.id, Job: p.job, Gen: p.gen, Queue: append([][]byte(nil), p.queue...)})
	}
	m.n.eps.mu.Unlock()
	m.mu.Unlock()
	sort.Slice(procs, func(i, j int) bool { return procs[i].ID < procs[j].ID })
	rb, err := ipc.EncodeDurable(d)
	if err != nil {
		return nil, err
	}
	return json.Marshal(msgJournal{V: journalVersion, Clean: clean, Router: rb, Procs: procs, Mechs: mechs, CLIN: cliN, Waits: waits})
}

// writeJournal writes the journal if it changed since the last write.
func (m *msgRouter) writeJournal(clean bool) error {
	b, err := m.journalState(clean)
	if err != nil {
		return fmt.Errorf("message journal: %w", err)
	}
	m.jmu.Lock()
	defer m.jmu.Unlock()
	if bytes.Equal(b, m.written) {
		return nil
	}
	path := m.n.journalPath()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("message journal: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("message journal: %w", err)
	}
	m.written = b
	return nil
}

// errBadJournal is wrapped by every error of decodeJournal.
var errBadJournal = errors.New("malformed message journal")

func decodeJournal(b []byte) (*msgJournal, *ipc.Durable, error) {
	var j msgJournal
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", errBadJournal, err)
	}
	if j.V != journalVersion {
		return nil, nil, fmt.Errorf("%w: version %d, this node reads %d", errBadJournal, j.V, journalVersion)
	}
	d, err := ipc.DecodeDurable(j.Router)
	if err != nil {
		return nil, nil, err
	}
	for i, p := range j.Procs {
		id, err := ipc.ParseID(p.ID)
		if err != nil || id.Job != p.Job {
			return nil, nil, fmt.Errorf("%w: process %d: id %q of job %q", errBadJournal, i, p.ID, p.Job)
		}
		for k, pkt := range p.Queue {
			if _, err := wire.Parse(pkt); err != nil {
				return nil, nil, fmt.Errorf("%w: process %s, message %d: %v", errBadJournal, p.ID, k, err)
			}
		}
	}
	for job, s := range j.Mechs {
		if _, err := ipc.ParseMechanism(s); err != nil {
			return nil, nil, fmt.Errorf("%w: job %s: %v", errBadJournal, job, err)
		}
	}
	for i, w := range j.Waits {
		_, ferr := ipc.ParseID(w.From)
		_, terr := ipc.ParseID(w.To)
		if ferr != nil || terr != nil || w.Proc == "" || w.Seq == 0 {
			return nil, nil, fmt.Errorf("%w: waiting SEND %d (%q to %q)", errBadJournal, i, w.From, w.To)
		}
	}
	return &j, d, nil
}

// loadJournal takes back what the last daemon journalled, before the
// jobs are taken back. A journal that cannot be read is put aside (its
// name logged) and the node starts its routing afresh: messages it held
// are then lost, which the log says.
func (m *msgRouter) loadJournal() {
	path := m.n.journalPath()
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	var j *msgJournal
	var d *ipc.Durable
	if err == nil {
		j, d, err = decodeJournal(b)
	}
	if err != nil {
		aside := path + ".bad"
		os.Rename(path, aside)
		m.log.Error("the message journal cannot be read: the node's messages start afresh (what it held is lost)", "file", aside, "err", err)
		return
	}
	m.mu.Lock()
	m.r.Handle(time.Now(), ipc.Restart{D: d})
	for job, s := range j.Mechs {
		k, _ := ipc.ParseMechanism(s)
		m.mechs[job] = k
	}
	m.cliN = max(m.cliN, j.CLIN)
	for _, w := range j.Waits {
		from, _ := ipc.ParseID(w.From)
		to, _ := ipc.ParseID(w.To)
		k := pairKey{from, to}
		m.waits[k] = append(m.waits[k], sendWait{seq: w.Seq, proc: w.Proc, gen: w.Gen, connSeq: w.ConnSeq})
	}
	m.cleanStart = j.Clean
	m.written = b
	m.mu.Unlock()
	// The CLI's job is the node's own, always.
	m.handle(ipc.JobStart{Job: m.cliJob()})
	eps := &m.n.eps
	eps.mu.Lock()
	queued := 0
	for _, jp := range j.Procs {
		p := eps.proc(jp.ID, jp.Job)
		p.gen = max(p.gen, jp.Gen)
		p.queue = append(jp.Queue, p.queue...)
		queued += len(jp.Queue)
	}
	eps.mu.Unlock()
	st := m.stats()
	outbox := 0
	for _, js := range d.Jobs {
		outbox += len(js.Outbox)
	}
	if j.Clean {
		m.log.Info("message journal taken back", "jobs", len(d.Jobs), "outbox", outbox, "queued", queued, "links", st.Links)
	} else {
		m.log.Warn("message journal taken back from a daemon that did not stop cleanly: what it changed in its last moments is lost, and messages delivered then may be delivered again",
			"window", journalEvery, "jobs", len(d.Jobs), "outbox", outbox, "queued", queued)
	}
}

// sweepJournal ends, in the router, the jobs the journal had that the
// node did not take back (they ended while no daemon ran).
func (m *msgRouter) sweepJournal() {
	m.mu.Lock()
	jobs := m.r.Durable().Jobs
	m.mu.Unlock()
	for job := range jobs {
		if job == m.cliJob() {
			continue
		}
		m.n.mu.Lock()
		j := m.n.jobs[job]
		m.n.mu.Unlock()
		if j != nil {
			if st := j.snapshot().State; st == stateRunning || st == stateMigrating {
				continue
			}
		}
		m.log.Info("a job of the message journal is no longer here", "job", job)
		m.jobEnded(job)
	}
}

// stopJournal is the node's last journal: the processes' SENDs are taken
// out of their sockets first.
func (m *msgRouter) stopJournal() {
	jobs := map[string]bool{}
	m.n.eps.mu.Lock()
	for _, p := range m.n.eps.procs {
		jobs[p.job] = true
	}
	m.n.eps.mu.Unlock()
	for job := range jobs {
		m.n.eps.pause(job)
	}
	if err := m.writeJournal(true); err != nil {
		m.log.Error("the node's last message journal", "err", err)
	}
}
