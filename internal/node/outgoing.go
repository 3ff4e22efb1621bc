package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/agent"
	"ferry/internal/migrate"
)

// The source side of a migration, step by step (outgoing.run):
//
//	prepare       ask the destination to get ready (POST /v1/incoming)
//	log ahead     send the job's log so far, while it runs (/carry, not final)
//	run the agent start the sending agent and follow its events
//	before commit (the agent asks) drain the frozen job's output, take its
//	              unread input, hand both over (/carry, final)
//	commit        (the agent says committed) the job is moved
//	roll back     any failure before the commit: give the input back, read
//	              output again, the job is running here again
//
// The steps talk to the world through three small interfaces (destination,
// sendingAgent, jobStdio) so that tests drive them with fakes. Each step
// boundary is one journal call.

// migPhase is a step boundary of a migration, as the journal records it.
type migPhase string

// The source's phases, in order; a migration ends in outMoved or
// outRolledBack.
const (
	outStarted      migPhase = "out-started"       // the job is migrating: its input and signals wait
	outPrepared     migPhase = "out-prepared"      // the destination waits, its agent listens
	outLogSent      migPhase = "out-log-sent"      // the log so far is at the destination
	outAgentStarted migPhase = "out-agent-started" // the sending agent runs
	outStopped      migPhase = "out-stopped"       // frozen and stopped (SIGSTOP queued): the commit point
	outCarried      migPhase = "out-carried"       // frozen; the last output and the unread input are at the destination
	outResolving    migPhase = "out-resolving"     // the commit's answer was lost: asking the destination
	outCommitted    migPhase = "out-committed"     // the new copy runs at the destination
	outMoved        migPhase = "out-moved"         // the old copy is gone
	outRolledBack   migPhase = "out-rolled-back"   // the job runs here again
)

// The destination's phases.
const (
	inPrepared  migPhase = "in-prepared"  // a job init and the receiving agent wait for the source
	inCommitted migPhase = "in-committed" // the commit arrived
	inReleased  migPhase = "in-released"  // the new copy runs here
	inArrived   migPhase = "in-arrived"   // the receiving agent ended, the job runs here
	inFailed    migPhase = "in-failed"    // nothing kept here (or, after the release, the job was lost)
)

// phaseRecord is one step boundary of a migration.
type phaseRecord struct {
	Job   string
	Peer  string // the other node
	Mode  string
	Phase migPhase
	// Stopped and Carried (the source, from the commit point): the job's
	// processes stopped for the commit, the input taken from the job.
	Stopped []int
	Carried []byte
}

// journal records the phases of the node's migrations, one call per step
// boundary, so that a node restarted mid-migration can settle them.
type journal interface {
	record(phaseRecord)
}

// nopJournal keeps nothing.
type nopJournal struct{}

func (nopJournal) record(phaseRecord) {}

// migrationJournal is where the node records migration phases.
func (n *Node) migrationJournal() journal {
	if n.db == nil {
		return nopJournal{}
	}
	return storeJournal{n}
}

// destination is the destination node, as the source's steps call it.
type destination interface {
	// prepare asks it to get ready; it answers with its agent's address.
	prepare(ctx context.Context, req incomingRequest) (incomingReply, error)
	// carry hands over output and (final) the unread input.
	carry(ctx context.Context, c *carry) error
	// committed asks whether the new copy runs there.
	committed(ctx context.Context) (bool, error)
	// arrival is its agent's report (postcopy: faults, prefetch hits).
	arrival(ctx context.Context) (*migrate.Report, error)
}

// sendingAgent is the sending agent as the node sees it: a source of
// events and a sink of answers.
type sendingAgent interface {
	// Next returns the next event; io.EOF once the agent closed its end,
	// an error wrapping agent.ErrProtocol for a bad line (the next call
	// reads on).
	Next() (agent.Event, error)
	// Answer answers the agent's last question.
	Answer(agent.Answer) error
	// Interrupt asks the agent to cancel (it rolls back unless it sent
	// the commit already).
	Interrupt()
	// Wait waits for the agent to exit, after Next returned io.EOF, and
	// releases the pipes.
	Wait() error
}

// jobStdio is the job's standard streams as a migration moves them.
type jobStdio interface {
	// logSpan returns stream i's log (0 stdout, 1 stderr) from offset from
	// and the offset it ends at.
	logSpan(i int, from int64) ([]byte, int64, error)
	// drain stops the output copiers and takes what is left in the pipes
	// into the logs; the job must be frozen.
	drain() error
	// takeInput takes the input the job has not read.
	takeInput() ([]byte, error)
	// inputClosed says whether the job's input reached its end.
	inputClosed() bool
	// giveBack writes input taken by takeInput back, in order.
	giveBack(p []byte) error
	// restartCopiers reads the job's output into its logs again.
	restartCopiers()
}

// outgoing is one migration of a job away from this node.
type outgoing struct {
	n        *Node
	j        *localJob
	req      MigrateRequest
	mode     migrate.Mode
	log      *slog.Logger
	dest     destination
	stdio    jobStdio // nil: an adopted process, whose stdio is its own
	start    func(args []string) (sendingAgent, error)
	journal  journal
	progress func(migrate.Progress)
	// stop queues SIGSTOP for the frozen job's processes at the commit
	// point (nil: nothing to stop, as in tests), so that they stay
	// stopped, not running, should the agent die; it returns them.
	stop func() ([]int, error)
	// fault is the node's crash point hook (crashPoint).
	fault func(point string)
	// msgs is the job's messages (nil: none, as in tests).
	msgs jobMessages

	info    JobInfo
	sentLog [2]int64 // the log offsets the destination has
	drained bool     // the output copiers are stopped
	carried []byte   // the unread input, taken at before-commit
	stopped []int    // the job's processes stopped at the commit point
	// carriedOK: the final carry reached the destination and the agent
	// was told to go on, so it may have sent the commit.
	carriedOK bool
	committed bool
	rep       *migrate.Report
	agentErr  error // the agent's own error (a Failed event)
	// msgsTook: how long the router took to hand the job's messages
	// over at before-commit (Commit → Handoff: under update and auto,
	// the partners' acknowledgements); 0 if it did not.
	msgsTook time.Duration
}

// newOutgoing sets up the migration of j as requested, with the node's
// real destination, agent and stdio.
func (n *Node) newOutgoing(j *localJob, req MigrateRequest, mode migrate.Mode, progress func(migrate.Progress)) *outgoing {
	o := &outgoing{n: n, j: j, req: req, mode: mode, progress: progress, journal: n.migrationJournal(),
		log:  n.log.With("job", j.info.ID, "to", req.To, "mode", mode),
		dest: &peerDestination{n: n, to: req.To, job: j.info.ID}}
	ns := ""
	if j.init != nil {
		ns = j.init.NSPath()
		o.stdio = localStdio{j}
	}
	var ag *agentProc
	o.start = func(args []string) (sendingAgent, error) {
		a, err := n.startAgent(ns, "send", args)
		ag = a
		return a, err
	}
	if j.init != nil {
		o.stop = func() ([]int, error) { return n.stopForCommit(j, ag) }
		if n.msgs != nil {
			o.msgs = jobMsgs{m: n.msgs, job: j.info.ID}
		}
	}
	o.fault = n.crashPoint
	return o
}

func (o *outgoing) phase(p migPhase) {
	o.log.Debug("migration phase", "phase", p)
	o.journal.record(phaseRecord{Job: o.j.info.ID, Peer: o.req.To, Mode: string(o.mode), Phase: p,
		Stopped: o.stopped, Carried: o.carried})
}

func (o *outgoing) crashPoint(point string) {
	if o.fault != nil {
		o.fault(point)
	}
}

// run is the migration, from the running job to moved or rolled back.
func (o *outgoing) run(ctx context.Context) (*migrate.Report, error) {
	info, eof, err := o.j.beginMigration()
	if err != nil {
		return nil, err
	}
	o.info = info
	if o.msgs != nil {
		o.msgs.start(o.req.To)
	}
	o.phase(outStarted)
	err = o.steps(ctx, eof)
	if o.committed {
		return o.finish(ctx)
	}
	if errors.Is(err, migrate.ErrCommitUnknown) && len(o.stopped) > 0 {
		return o.undecided(err)
	}
	if ctx.Err() != nil {
		err = migrate.Mark(err, migrate.ErrCancelled)
	}
	return o.rollback(err)
}

// steps runs the steps up to the end of the agent: nil once committed.
func (o *outgoing) steps(ctx context.Context, eof bool) error {
	addr, err := o.prepare(ctx, eof)
	if err != nil {
		return err
	}
	if err := o.sendLogAhead(ctx); err != nil {
		return err
	}
	ag, err := o.startAgent(addr)
	if err != nil {
		return err
	}
	return o.follow(ctx, ag)
}

// prepare asks the destination to get ready for the job.
func (o *outgoing) prepare(ctx context.Context, eof bool) (string, error) {
	inc, err := o.dest.prepare(ctx, incomingRequest{Info: o.info, StdinEOF: eof})
	if err != nil {
		err = fmt.Errorf("prepare %s: %w", o.req.To, err)
		if _, ok := errors.AsType[*RemoteError](err); ok {
			err = migrate.Mark(err, migrate.ErrRefused) // it answered, and said no
		}
		return "", err
	}
	o.phase(outPrepared)
	return inc.Addr, nil
}

// sendLogAhead sends the log so far while the job runs: the frozen window
// only carries what came after.
func (o *outgoing) sendLogAhead(ctx context.Context) error {
	if o.stdio == nil {
		return nil
	}
	c := &carry{}
	var err error
	if c.Stdout, o.sentLog[0], err = o.stdio.logSpan(0, 0); err == nil {
		c.Stderr, o.sentLog[1], err = o.stdio.logSpan(1, 0)
	}
	if err == nil {
		err = o.dest.carry(ctx, c)
	}
	if err != nil {
		return fmt.Errorf("send the job's log to %s: %w", o.req.To, err)
	}
	o.phase(outLogSent)
	return nil
}

// startAgent starts the sending agent, connecting to the destination's
// agent at addr.
func (o *outgoing) startAgent(addr string) (sendingAgent, error) {
	var stdio []string
	for id, role := range o.j.pipes {
		stdio = append(stdio, id+"="+role)
	}
	sort.Strings(stdio)
	args := []string{"--to", addr, "--pid", strconv.Itoa(o.info.PID), "--mode", string(o.mode), "--job", o.info.ID,
		"--stdio", strings.Join(stdio, ",")}
	if o.req.MaxFreeze > 0 {
		args = append(args, "--max-freeze", o.req.MaxFreeze.String())
	}
	ag, err := o.start(args)
	if err != nil {
		return nil, err
	}
	o.phase(outAgentStarted)
	o.crashPoint("die-sending")
	return ag, nil
}

// follow handles the agent's events until it ends. It returns nil once
// the migration committed, else why it failed.
func (o *outgoing) follow(ctx context.Context, ag sendingAgent) error {
	// Ctrl-C on `ferry migrate` (the request's context) cancels the
	// migration: the agent rolls back, unless it has sent the commit.
	stop := context.AfterFunc(ctx, ag.Interrupt)
	defer stop()
	for {
		ev, err := ag.Next()
		if errors.Is(err, agent.ErrProtocol) {
			o.log.Warn("sending agent: bad event", "err", err)
			continue
		}
		if err != nil {
			if err != io.EOF {
				o.log.Error("sending agent: events", "err", err)
			}
			break
		}
		o.handle(ctx, ag, ev)
	}
	werr := ag.Wait()
	if !o.committed && o.carriedOK && o.rep == nil && o.agentErr == nil {
		// The agent died after it was told to commit, before it said how
		// that went: it may have sent the commit. Ask the destination.
		o.log.Warn("the sending agent ended after before-commit without a word; asking the destination", "agent", werr)
		if ok, err := o.resolve(ctx); err != nil || !ok {
			cause := fmt.Errorf("migration agent ended after before-commit: %v", werr)
			if err != nil {
				return migrate.Mark(fmt.Errorf("%w; destination unreachable (%v)", cause, err), migrate.ErrCommitUnknown)
			}
			return fmt.Errorf("%w; destination did not commit", cause)
		}
		o.commit(nil)
	}
	if o.committed {
		return nil
	}
	switch {
	case o.agentErr != nil:
		return o.agentErr
	case o.rep != nil && o.rep.Error != "":
		return errors.New(o.rep.Error)
	case werr != nil:
		return fmt.Errorf("migration agent: %w", werr)
	}
	return errors.New("migration agent ended without a report")
}

// handle acts on one event of the sending agent.
func (o *outgoing) handle(ctx context.Context, ag sendingAgent, ev agent.Event) {
	switch ev.Kind {
	case agent.Progress:
		if o.progress != nil {
			o.progress(*ev.Progress)
		}
	case agent.BeforeCommit:
		ans := agent.Answer{To: agent.BeforeCommit}
		err := o.beforeCommit(ctx)
		if err == nil && o.stop != nil {
			// The commit point. Should this node die from here on, the
			// new copy may run: a pending SIGSTOP keeps the old one
			// stopped (not running) whatever its agent does, and the
			// phase on disk tells the next node to settle it.
			o.stopped, err = o.stop()
			if err == nil {
				o.phase(outStopped)
				o.crashPoint("die-committing")
			}
		}
		if err != nil {
			ans.Err = agent.EncodeError(err)
		}
		if err := ag.Answer(ans); err != nil {
			// The agent waits in vain and its migration fails; its end
			// (events, exit) tells the rest.
			o.log.Error("before-commit", "err", err)
			return
		}
		if ans.Err == nil {
			o.carriedOK = true
			o.phase(outCarried)
		}
	case agent.Frozen:
		ans := agent.Answer{To: agent.Frozen, Endpoints: map[string]string{}}
		if o.msgs != nil {
			for ino, id := range o.msgs.freeze() {
				ans.Endpoints[strconv.FormatUint(ino, 10)] = id
			}
		}
		if err := ag.Answer(ans); err != nil {
			o.log.Error("frozen", "err", err)
		}
	case agent.Resolve:
		ans := agent.Answer{To: agent.Resolve}
		ok, err := o.resolve(ctx)
		ans.Committed, ans.Err = ok, agent.EncodeError(err)
		if err := ag.Answer(ans); err != nil {
			o.log.Error("resolve", "err", err)
		}
	case agent.Committed:
		o.commit(ev.Report)
	case agent.Report:
		o.rep = ev.Report
	case agent.Failed:
		o.agentErr = ev.Err.Err()
	case agent.Warning:
		o.log.Warn("sending agent", "warning", ev.Message)
	default:
		o.log.Warn("sending agent: unexpected event", "event", ev.Kind)
	}
}

// beforeCommit takes the frozen job's output so far and its unread input
// and hands them to the destination before it may run the job.
func (o *outgoing) beforeCommit(ctx context.Context) error {
	c, err := o.collectCarry()
	if err != nil {
		return err
	}
	if o.msgs != nil {
		start := time.Now()
		c.Messages, err = o.msgs.handoff(ctx)
		o.msgsTook = time.Since(start)
		if err != nil {
			return err
		}
	}
	if len(c.Stdout) == 0 && len(c.Stderr) == 0 && len(c.Stdin) == 0 && !c.StdinEOF && c.Messages == nil {
		return nil // nothing new to hand over: no round trip in the freeze
	}
	// The agent decides about cancelling from here on.
	if err := o.dest.carry(context.WithoutCancel(ctx), c); err != nil {
		return fmt.Errorf("carry the job's stdio to %s: %w", o.req.To, err)
	}
	return nil
}

// collectCarry drains the frozen job's output and takes its unread input;
// the log travels from the offsets already sent.
func (o *outgoing) collectCarry() (*carry, error) {
	if o.stdio == nil {
		return &carry{Final: true}, nil
	}
	// drain stops the copiers first, whatever comes after: a rollback
	// must start them again even if draining failed.
	o.drained = true
	if err := o.stdio.drain(); err != nil {
		return nil, err
	}
	in, err := o.stdio.takeInput()
	if err != nil {
		return nil, err
	}
	o.carried = in
	c := &carry{Stdin: in, Final: true, OutFrom: o.sentLog[0], ErrFrom: o.sentLog[1], StdinEOF: o.stdio.inputClosed()}
	if c.Stdout, _, err = o.stdio.logSpan(0, o.sentLog[0]); err != nil {
		return nil, err
	}
	if c.Stderr, _, err = o.stdio.logSpan(1, o.sentLog[1]); err != nil {
		return nil, err
	}
	return c, nil
}

// resolve asks the destination whether the new copy runs there.
func (o *outgoing) resolve(ctx context.Context) (bool, error) {
	o.phase(outResolving)
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 40*time.Second)
	defer cancel()
	return o.dest.committed(rctx)
}

// commit: the job runs on the destination now (with postcopy, its memory
// still comes from here until the push ends).
func (o *outgoing) commit(rep *migrate.Report) {
	if rep != nil {
		o.rep = rep
	}
	if o.committed {
		return
	}
	o.committed = true
	if o.msgs != nil {
		o.msgs.committed()
	}
	o.j.movedTo(o.req.To)
	o.phase(outCommitted)
	o.crashPoint("die-committed")
}

// finish ends the old copy after the commit and completes the report.
func (o *outgoing) finish(ctx context.Context) (*migrate.Report, error) {
	o.j.endMoved()
	rep := o.rep
	if rep == nil {
		rep = &migrate.Report{Job: o.info.ID, Mode: o.mode, Committed: true}
	}
	rep.Phases = splitMessages(rep.Phases, o.msgsTook)
	if o.mode == migrate.Postcopy {
		// The destination's side of the push: faults, prefetch hits.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		if arr, err := o.dest.arrival(actx); err == nil {
			rep.Faults, rep.PrefetchHits = arr.Faults, arr.PrefetchHits
		}
		cancel()
	}
	o.phase(outMoved)
	o.log.Info("job moved", "freeze", rep.FreezeTime, "total", rep.Total, "err", rep.Error)
	switch {
	case o.agentErr != nil:
		return rep, o.agentErr
	case rep.Error != "":
		return rep, errors.New(rep.Error)
	}
	return rep, nil
}

// splitMessages splits the agent's "carry stdio" step, the node's
// before-commit, into "messages" (the router's handoff, took) and the
// rest ("carry stdio": the output drained, the carry sent), so that the
// steps still add up. Without a handoff, or without that step, the steps
// stay as they are.
func splitMessages(phases []migrate.Phase, took time.Duration) []migrate.Phase {
	if took <= 0 {
		return phases
	}
	for i, p := range phases {
		if p.Name != "carry stdio" {
			continue
		}
		out := make([]migrate.Phase, 0, len(phases)+1)
		out = append(out, phases[:i]...)
		out = append(out, migrate.Phase{Name: "messages", Took: took}, migrate.Phase{Name: p.Name, Took: max(p.Took-took, 0)})
		return append(out, phases[i+1:]...)
	}
	return phases
}

// rollback: the old copy runs on here (the agent resumed it). Give back
// the input it had not read, in order, and take output again.
func (o *outgoing) rollback(err error) (*migrate.Report, error) {
	if len(o.carried) > 0 {
		if gerr := o.stdio.giveBack(o.carried); gerr != nil {
			o.log.Error("give back unread input", "err", gerr)
		}
		o.carried = nil
	}
	if o.drained {
		o.stdio.restartCopiers()
		o.drained = false
	}
	// The agent resumed it; the pending SIGSTOP stopped it again.
	for _, pid := range o.stopped {
		unix.Kill(pid, unix.SIGCONT)
	}
	o.stopped = nil
	if o.msgs != nil {
		o.msgs.rolledBack()
	}
	running := o.j.resumeHere()
	o.phase(outRolledBack)
	rep := o.rep
	if rep == nil {
		rep = &migrate.Report{Job: o.info.ID, Mode: o.mode, Resumed: running}
	}
	if running {
		err = migrate.Mark(err, migrate.ErrResumed)
	}
	o.log.Warn("migration failed; the job runs on here", "err", err, "running", running)
	return rep, err
}

// undecided: the commit was sent and nobody can say yet whether the new
// copy runs. The old copy stays stopped, the job migrating, until the
// destination answers (settleOut, in the background).
func (o *outgoing) undecided(err error) (*migrate.Report, error) {
	m := migrationRecord{Job: o.info.ID, Out: true, Peer: o.req.To, Mode: string(o.mode), Phase: outResolving,
		Stopped: o.stopped, Carried: o.carried}
	o.log.Warn("commit outcome unknown; the job stays stopped until the destination answers", "err", err)
	o.n.goBg(func() { o.n.settleOut(o.j, m) })
	rep := o.rep
	if rep == nil {
		rep = &migrate.Report{Job: o.info.ID, Mode: o.mode}
	}
	return rep, err
}

// beginMigration turns a running job into a migrating one.
func (j *localJob) beginMigration() (JobInfo, bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.info.State != stateRunning {
		return JobInfo{}, false, fmt.Errorf("job %s is %s, not running", j.info.ID, j.info.State)
	}
	j.info.State = stateMigrating
	return j.info, j.stdinEOF, nil
}

// movedTo records that the job runs on node to now.
func (j *localJob) movedTo(to string) {
	j.mu.Lock()
	j.info.State = stateMoved
	j.info.MovedTo = to
	j.mu.Unlock()
	for _, l := range j.logs {
		if l != nil {
			l.close()
		}
	}
	j.n.mu.Lock()
	j.n.moved[j.info.ID] = to
	j.n.mu.Unlock()
	j.n.saveMoved(j.info.ID, to)
	j.n.saveJob(j)
}

// endMoved removes what is left of a job that moved away.
func (j *localJob) endMoved() {
	if j.init != nil {
		j.init.Kill() // nothing of the job is left in its namespace
	}
	j.n.goBg(func() {
		if j.init != nil {
			<-j.init.Done()
		}
		j.end()
	})
}

// resumeHere turns a migrating job back into a running one, after a
// failed migration. It reports false if the job died meanwhile: it is
// lost.
func (j *localJob) resumeHere() bool {
	j.mu.Lock()
	if j.info.State == stateMigrating {
		j.info.State = stateRunning
	}
	j.mu.Unlock()
	if j.init == nil {
		return true
	}
	select {
	case <-j.init.Done():
	default:
		return true
	}
	j.mu.Lock()
	j.info.State = stateLost
	j.info.Error = "the job ended during a failed migration"
	j.mu.Unlock()
	j.end()
	return false
}

// localStdio is a job's real stdio: its pipes and logs.
type localStdio struct{ j *localJob }

func (s localStdio) logSpan(i int, from int64) ([]byte, int64, error) { return s.j.logs[i].span(from) }
func (s localStdio) takeInput() ([]byte, error)                       { return s.j.takeInput() }

// restartCopiers: nothing to do; the job's init copies its output.
func (s localStdio) restartCopiers() {}

func (s localStdio) drain() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return s.j.drainOutput(ctx)
}

func (s localStdio) inputClosed() bool {
	s.j.mu.Lock()
	defer s.j.mu.Unlock()
	return s.j.stdinEOF
}

func (s localStdio) giveBack(p []byte) error {
	_, err := s.j.stdinW.Write(p)
	return err
}

// peerDestination is the destination node reached over its API.
type peerDestination struct {
	n       *Node
	to, job string
}

func (d *peerDestination) prepare(ctx context.Context, req incomingRequest) (incomingReply, error) {
	var inc incomingReply
	err := d.n.call(ctx, d.to, "POST", "/v1/incoming", req, &inc)
	return inc, err
}

func (d *peerDestination) carry(ctx context.Context, c *carry) error {
	return d.n.sendCarry(ctx, d.to, d.job, c)
}

func (d *peerDestination) committed(ctx context.Context) (bool, error) {
	var st struct {
		Committed bool `json:"committed"`
	}
	err := d.n.call(ctx, d.to, "GET", "/v1/jobs/"+d.job+"/committed", nil, &st)
	return st.Committed, err
}

func (d *peerDestination) arrival(ctx context.Context) (*migrate.Report, error) {
	var arr migrate.Report
	if err := d.n.call(ctx, d.to, "GET", "/v1/jobs/"+d.job+"/arrival", nil, &arr); err != nil {
		return nil, err
	}
	return &arr, nil
}
