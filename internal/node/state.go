package node

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/job"
	"ferry/internal/ptrace"
	"ferry/internal/store"
)

// The node's state on disk (package store) and taking it back after a
// restart. What is recorded:
//
//   - every job's JobInfo, when it changes state (store.Jobs);
//   - each migration in flight and its phase (store.Migrations), written
//     before the step it names, so that a node that died in it knows
//     what may have happened;
//   - where jobs that left went (store.Moved), for routing.
//
// The logs are the files themselves (a byte's offset is its position in
// the stream), written by the jobs' inits; their sizes are the offsets.

// migrationRecord is a migration in flight, as the node records it: the
// last phase its journal recorded (outgoing.go).
type migrationRecord struct {
	Job string `json:"job"`
	// Out: this node is the source (Peer the destination); else the
	// destination (Peer the source).
	Out   bool     `json:"out"`
	Peer  string   `json:"peer"`
	Mode  string   `json:"mode,omitempty"`
	Phase migPhase `json:"phase"`
	// Stopped lists the job's processes (node PIDs) that were sent
	// SIGSTOP at the commit point: a node that restarts past that point
	// continues them if the migration did not commit.
	Stopped []int `json:"stopped,omitempty"`
	// Carried is the input the job had not read, taken at the commit
	// point: given back if the migration did not commit.
	Carried []byte    `json:"carried,omitempty"`
	Since   time.Time `json:"since"`
}

// pastCommitPoint: the job was stopped for the commit, which may have
// gone out. A source that restarts in an earlier phase finds the job
// running (its agent rolled back when it could not reach its node); from
// here on, it asks the destination, and kills or continues the old copy
// accordingly.
func (m migrationRecord) pastCommitPoint() bool {
	switch m.Phase {
	case outStopped, outCarried, outResolving, outCommitted:
		return m.Out
	}
	return false
}

// storeJournal records migration phases in the node's store.
type storeJournal struct{ n *Node }

func (s storeJournal) record(p phaseRecord) {
	rec := migrationRecord{Job: p.Job, Peer: p.Peer, Mode: p.Mode, Phase: p.Phase,
		Stopped: p.Stopped, Carried: p.Carried}
	switch p.Phase {
	case outMoved, outRolledBack, inReleased, inArrived, inFailed:
		rec.Phase = "" // over (a released copy is kept by its init)
	case inPrepared, inCommitted:
	default:
		rec.Out = true
	}
	s.n.setPhase(rec)
}

// jobRecord is a job as the store keeps it.
type jobRecord struct {
	Info JobInfo `json:"info"`
	// Pipes names the job's standard streams by pipe inode, for the
	// agent of a later migration.
	Pipes map[string]string `json:"pipes,omitempty"`
}

// saveJob records the job as it is now.
func (n *Node) saveJob(j *localJob) {
	if n.db == nil {
		return
	}
	info := j.snapshot()
	rec := jobRecord{Info: info, Pipes: j.pipes}
	if err := n.db.Put(store.Jobs, info.ID, rec); err != nil {
		n.log.Error("record job", "job", info.ID, "err", err)
	}
}

// forgetJob removes a job that never ran here (a failed start or arrival).
func (n *Node) forgetJob(id string) {
	if n.db == nil {
		return
	}
	if err := n.db.Delete(store.Jobs, id); err != nil {
		n.log.Error("forget job", "job", id, "err", err)
	}
}

// forgetLogs stops watching a job's logs.
func (n *Node) forgetLogs(j *localJob) {
	for _, l := range j.logs {
		if l != nil {
			n.logWatch.remove(l)
		}
	}
}

// setPhase records the phase of a job's migration ("" removes it).
func (n *Node) setPhase(rec migrationRecord) {
	if n.db == nil {
		return
	}
	var err error
	if rec.Phase == "" {
		err = n.db.Delete(store.Migrations, rec.Job)
	} else {
		rec.Since = time.Now()
		err = n.db.Put(store.Migrations, rec.Job, rec)
	}
	if err != nil {
		n.log.Error("record migration phase", "job", rec.Job, "phase", rec.Phase, "err", err)
	}
}

// saveMoved records where a job went.
func (n *Node) saveMoved(id, to string) {
	if n.db == nil {
		return
	}
	if err := n.db.Put(store.Moved, id, to); err != nil {
		n.log.Error("record move", "job", id, "err", err)
	}
}

// forgetMoved removes the record of where a job went (it is back).
func (n *Node) forgetMoved(id string) {
	if n.db == nil {
		return
	}
	if err := n.db.Delete(store.Moved, id); err != nil {
		n.log.Error("forget move", "job", id, "err", err)
	}
}

// recover takes back what the store says this node held.
func (n *Node) recover() error {
	if n.msgs != nil {
		n.msgs.loadJournal()
		defer n.msgs.sweepJournal()
	}
	migs := map[string]migrationRecord{}
	err := n.db.Each(store.Migrations, func(k string, raw []byte) error {
		var m migrationRecord
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("migration record %s: %w", k, err)
		}
		migs[k] = m
		return nil
	})
	if err != nil {
		return fmt.Errorf("node state: %w", err)
	}
	err = n.db.Each(store.Moved, func(k string, raw []byte) error {
		var to string
		if json.Unmarshal(raw, &to) == nil {
			n.moved[k] = to
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("node state: %w", err)
	}
	var recs []jobRecord
	err = n.db.Each(store.Jobs, func(k string, raw []byte) error {
		var rec jobRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			return fmt.Errorf("job record %s: %w", k, err)
		}
		recs = append(recs, rec)
		return nil
	})
	if err != nil {
		return fmt.Errorf("node state: %w", err)
	}
	for _, rec := range recs {
		m, inFlight := migs[rec.Info.ID]
		delete(migs, rec.Info.ID)
		n.recoverJob(rec, m, inFlight)
	}
	for id := range migs {
		n.setPhase(migrationRecord{Job: id}) // a record without its job
	}
	return nil
}

// recoverJob takes back one job.
func (n *Node) recoverJob(rec jobRecord, m migrationRecord, inFlight bool) {
	info := rec.Info
	log := n.log.With("job", info.ID)
	j := &localJob{n: n, info: info, pipes: rec.Pipes, done: make(chan struct{})}
	ended := func() { n.takeBackClosed(j, true) }
	switch info.State {
	case stateExited, stateLost, stateMoved:
		ended()
		return
	}
	if info.Adopted {
		n.recoverAdopted(j)
		return
	}
	in, err := job.Attach(n.controlPath(info.ID))
	if err != nil {
		if info.State == stateIncoming || (inFlight && !m.Out) {
			// An arrival that had not committed: its init ended with
			// the node's connection; nothing of it is here.
			log.Info("an incoming migration did not complete before the node restarted; nothing kept", "from", m.Peer)
			n.mu.Lock()
			n.committed[info.ID] = false
			n.mu.Unlock()
			n.forgetJob(info.ID)
			n.setPhase(migrationRecord{Job: info.ID})
			return
		}
		// Gone while no node ran: its init recorded how it ended.
		if e, rerr := job.ReadExit(j.exitPath()); rerr == nil && e.Error == "" {
			j.info.State = stateRunning // for exited() to take it
			j.exited(e.Status)
		} else {
			j.info.State = stateLost
			j.info.Error = fmt.Sprintf("its init was gone when the node restarted (%v)", err)
			if rerr == nil {
				j.info.Error = e.Error
			}
		}
		log.Info("job ended while the node was away", "state", j.info.State, "exit", j.info.Exit, "signal", j.info.Signal)
		if inFlight {
			n.setPhase(migrationRecord{Job: info.ID})
		}
		ended()
		n.saveJob(j)
		return
	}
	for i, name := range []string{"stdout", "stderr"} {
		path := filepath.Join(n.jobDir(info.ID), name)
		l, err := openLog(path, false)
		if err != nil {
			in.Detach()
			log.Error("reopen the job's log", "err", err)
			return
		}
		j.logs[i] = l
		n.logWatch.add(l, path)
	}
	j.useInit(in)
	if in.Hello.Restore && !in.Hello.Kept {
		// Cannot be (it would have ended with the last node's
		// connection), unless that node's connection is not closed yet:
		// it never committed here.
		in.Kill()
		n.forgetJob(info.ID)
		return
	}
	j.info.State = stateRunning
	j.info.Node = n.cfg.ID
	n.msgs.jobStarted(info.ID, info.Forwarding)
	n.mu.Lock()
	n.jobs[info.ID] = j
	if in.Hello.Restore {
		// It arrived here and committed (keep).
		n.committed[info.ID] = true
		delete(n.moved, info.ID)
	}
	n.mu.Unlock()
	if inFlight && !m.Out {
		n.setPhase(migrationRecord{Job: info.ID})
	}
	n.goBg(j.watch)
	if inFlight && m.Out {
		if m.pastCommitPoint() {
			j.info.State = stateMigrating
			// Once the node is a member again (Run).
			n.settle = append(n.settle, func() { n.settleOut(j, m) })
		} else {
			log.Info("a migration was interrupted by the node's restart; the job runs on here", "to", m.Peer, "phase", m.Phase)
			n.setPhase(migrationRecord{Job: info.ID})
		}
	}
	n.saveJob(j)
	log.Info("job taken back", "pid", info.PID, "state", j.snapshot().State)
}

// recoverAdopted watches an adopted process again if it still runs.
func (n *Node) recoverAdopted(j *localJob) {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", j.info.PID))
	cmd := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if err != nil || !slices.Equal(cmd, j.info.Cmd) {
		j.info.State = stateLost
		j.info.Error = "the adopted process was gone when the node restarted"
		n.takeBackClosed(j, true)
		n.saveJob(j)
		return
	}
	n.takeBackClosed(j, false) // ferry does not carry its output
	n.watchAdopted(j)
}

// takeBackClosed puts a job whose logs take nothing more here in the
// table: one that ended (its done closed) or an adopted process.
func (n *Node) takeBackClosed(j *localJob, ended bool) {
	for i, name := range []string{"stdout", "stderr"} {
		l, err := openLog(filepath.Join(n.jobDir(j.info.ID), name), false)
		if err != nil {
			l, _ = openLog(os.DevNull, false)
		}
		l.close()
		j.logs[i] = l
	}
	if ended {
		close(j.done)
	}
	n.mu.Lock()
	n.jobs[j.info.ID] = j
	n.mu.Unlock()
}

// settleOut decides a migration this node was the source of and that was
// at its commit when the node died: the job's processes are stopped;
// whether the destination runs the new copy says whether they die or go
// on.
func (n *Node) settleOut(j *localJob, m migrationRecord) {
	log := n.log.With("job", j.info.ID, "to", m.Peer)
	log.Info("settling a migration that was committing when the node stopped")
	var st struct {
		Committed bool `json:"committed"`
	}
	for attempt := 0; ; attempt++ {
		ctx, cancel := contextWithQuit(n.quit, 40*time.Second)
		err := n.call(ctx, m.Peer, "GET", "/v1/jobs/"+j.info.ID+"/committed", nil, &st)
		cancel()
		if err == nil {
			break
		}
		if attempt%10 == 0 {
			log.Warn("cannot ask the destination whether the migration committed; the job stays stopped", "err", err)
		}
		select {
		case <-n.quit:
			return
		case <-time.After(time.Second):
		}
	}
	if st.Committed {
		j.mu.Lock()
		j.info.State = stateMoved
		j.info.MovedTo = m.Peer
		j.mu.Unlock()
		n.mu.Lock()
		n.moved[j.info.ID] = m.Peer
		n.mu.Unlock()
		n.saveMoved(j.info.ID, m.Peer)
		if n.msgs != nil {
			jobMsgs{m: n.msgs, job: j.info.ID}.committed()
		}
		j.init.Kill() // its watch ends it here
		log.Info("the migration had committed: the job runs on the destination; the old copy is gone")
	} else {
		if len(m.Carried) > 0 && j.stdinW != nil {
			if _, err := j.stdinW.Write(m.Carried); err != nil {
				log.Error("give back unread input", "err", err)
			}
		}
		if n.msgs != nil {
			jobMsgs{m: n.msgs, job: j.info.ID}.rolledBack()
		}
		continueStopped(m.Stopped, log)
		j.mu.Lock()
		if j.info.State == stateMigrating {
			j.info.State = stateRunning
		}
		j.mu.Unlock()
		n.saveJob(j)
		log.Info("the migration had not committed: the job runs on here")
	}
	n.setPhase(migrationRecord{Job: j.info.ID})
}

// contextWithQuit is a context that ends after d or when quit closes.
func contextWithQuit(quit <-chan struct{}, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// continueStopped lets the job's processes stopped at a commit point run
// again. An agent that died with them frozen may have left a thread
// stopped just after a single step (the trap flag still set): seizing and
// detaching each clears that first.
func continueStopped(pids []int, log *slog.Logger) {
	t := ptrace.NewTracer()
	defer t.Close()
	for _, pid := range pids {
		err := t.Do(context.Background(), func() error {
			f, err := ptrace.Freeze(pid, time.Second, log)
			if err != nil {
				return err
			}
			return f.Thaw(true)
		})
		if err != nil {
			log.Warn("clean a stopped process before it continues", "pid", pid, "err", err)
		}
	}
	for _, pid := range pids {
		unix.Kill(pid, unix.SIGCONT)
	}
}
