package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"ferry/internal/agent"
	"ferry/internal/migrate"
)

// The source side of a migration, driven with fakes for the destination
// node, the sending agent and the job's stdio: each fault at each step,
// and what a user would check afterwards.

// destConfig is how a fake destination behaves.
type destConfig struct {
	// Errors of its calls; finalErr fails the final carry only.
	prepareErr, logErr, finalErr error
	// The answer to committed.
	commitAnswer bool
	committedErr error
	// cancelAt cancels the migration's context when that call comes
	// ("prepare", "log", "final", "committed"); the call then fails as a
	// cancelled request would, if its context is cancelled.
	cancelAt string
}

// fakeDest is a destination node.
type fakeDest struct {
	destConfig
	cancel context.CancelFunc
	// afterCancel runs after such a cancel (the test waits there for the
	// agent to be interrupted, as a real one soon would be).
	afterCancel func()
	mu          sync.Mutex // guards the fields below
	calls       []string
	final       *carry
}

func (d *fakeDest) enter(ctx context.Context, name string) error {
	d.mu.Lock()
	d.calls = append(d.calls, name)
	cancel := d.cancelAt == name
	d.mu.Unlock()
	if cancel {
		d.cancel()
		if d.afterCancel != nil {
			d.afterCancel()
		}
	}
	return ctx.Err()
}

func (d *fakeDest) prepare(ctx context.Context, req incomingRequest) (incomingReply, error) {
	if err := d.enter(ctx, "prepare"); err != nil {
		return incomingReply{}, err
	}
	return incomingReply{Addr: "127.0.0.1:1"}, d.prepareErr
}

func (d *fakeDest) carry(ctx context.Context, c *carry) error {
	name := "log"
	if c.Final {
		name = "final"
	}
	if err := d.enter(ctx, name); err != nil {
		return err
	}
	if c.Final {
		if d.finalErr != nil {
			return d.finalErr
		}
		d.mu.Lock()
		d.final = c
		d.mu.Unlock()
		return nil
	}
	return d.logErr
}

func (d *fakeDest) committed(ctx context.Context) (bool, error) {
	if err := d.enter(ctx, "committed"); err != nil {
		return false, err
	}
	return d.commitAnswer, d.committedErr
}

func (d *fakeDest) arrival(ctx context.Context) (*migrate.Report, error) {
	if err := d.enter(ctx, "arrival"); err != nil {
		return nil, err
	}
	return &migrate.Report{Faults: 3}, nil
}

// fakeStdio is a job's stdio: two logs and the input it has not read.
type fakeStdio struct {
	logs     [2][]byte
	unread   []byte
	eof      bool
	copying  bool
	drains   int
	restarts int
	given    [][]byte
	drainErr error
}

func (s *fakeStdio) logSpan(i int, from int64) ([]byte, int64, error) {
	return slices.Clone(s.logs[i][from:]), int64(len(s.logs[i])), nil
}

func (s *fakeStdio) drain() error {
	s.drains++
	s.copying = false
	if s.drainErr != nil {
		return s.drainErr
	}
	s.logs[0] = append(s.logs[0], "late out\n"...)
	return nil
}

func (s *fakeStdio) takeInput() ([]byte, error) {
	b := s.unread
	s.unread = nil
	return b, nil
}

func (s *fakeStdio) inputClosed() bool { return s.eof }

func (s *fakeStdio) giveBack(p []byte) error {
	s.given = append(s.given, slices.Clone(p))
	s.unread = append(s.unread, p...)
	return nil
}

func (s *fakeStdio) restartCopiers() {
	s.restarts++
	s.copying = true
}

// fakeAgent is a sending agent whose behaviour is a script running on a
// goroutine of its own, as the real agent is a process of its own.
type fakeAgent struct {
	events      chan agentLine
	answers     chan agent.Answer
	interrupted chan struct{}
	once        sync.Once
	done        chan struct{}
	exitErr     error
}

type agentLine struct {
	ev  agent.Event
	err error
}

func newFakeAgent() *fakeAgent {
	return &fakeAgent{events: make(chan agentLine), answers: make(chan agent.Answer, 1),
		interrupted: make(chan struct{}), done: make(chan struct{})}
}

func (a *fakeAgent) Next() (agent.Event, error) {
	l, ok := <-a.events
	if !ok {
		return agent.Event{}, io.EOF
	}
	return l.ev, l.err
}

func (a *fakeAgent) Answer(ans agent.Answer) error {
	select {
	case a.answers <- ans:
		return nil
	default:
		return errors.New("fake agent: an answer nobody asked for")
	}
}

func (a *fakeAgent) Interrupt() { a.once.Do(func() { close(a.interrupted) }) }

func (a *fakeAgent) Wait() error {
	<-a.done
	return a.exitErr
}

// run runs script as the agent; the agent exits with its error.
func (a *fakeAgent) run(script func(a *fakeAgent) error) {
	go func() {
		err := script(a)
		a.exitErr = err
		close(a.events)
		close(a.done)
	}()
}

func (a *fakeAgent) emit(ev agent.Event) { a.events <- agentLine{ev: ev} }

func (a *fakeAgent) ask(q agent.Kind) agent.Answer {
	a.emit(agent.Event{Kind: q})
	return <-a.answers
}

func (a *fakeAgent) wasInterrupted() bool {
	select {
	case <-a.interrupted:
		return true
	default:
		return false
	}
}

// waitInterrupt waits for the node's interrupt (bounded: a test that
// expects one must not hang without it).
func (a *fakeAgent) waitInterrupt() bool {
	select {
	case <-a.interrupted:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

var errKilled = errors.New("signal: killed")

// plan is what the fake sending agent does, modelled on migrate.Send.
type plan struct {
	// badLine: a line that is no event comes first (the node logs it).
	badLine bool
	// failBefore fails the transaction before before-commit.
	failBefore error
	// dieBefore ends the agent without a word before before-commit.
	dieBefore bool
	// cancelIn cancels the migration's context at "running" (before
	// before-commit), "carried" (after its answer) or "committed".
	cancelIn string
	// dieAfterCarry ends the agent without a word after before-commit.
	dieAfterCarry bool
	// commitLost: after before-commit, the commit's answer is lost and
	// the agent asks to resolve.
	commitLost bool
	// dieAfterCommitted ends the agent after the committed event.
	dieAfterCommitted bool
}

// sender returns the script of a sending agent following p; cancel
// cancels the migration's context (the user's Ctrl-C).
func sender(p plan, cancel context.CancelFunc) func(a *fakeAgent) error {
	return func(a *fakeAgent) error {
		fail := func(err error) error {
			err = migrate.Mark(err, migrate.ErrResumed)
			a.emit(agent.Event{Kind: agent.Report, Report: &migrate.Report{Job: "n1-1", Resumed: true, Error: err.Error()}})
			a.emit(agent.Event{Kind: agent.Failed, Err: agent.EncodeError(err)})
			return errors.New("exit status 1")
		}
		cancelled := func() error {
			return fail(fmt.Errorf("%w: %w", migrate.ErrCancelled, context.Canceled))
		}
		if p.badLine {
			a.events <- agentLine{err: fmt.Errorf("%w: malformed event", agent.ErrProtocol)}
			a.emit(agent.Event{Kind: agent.Listening, Addr: "x"}) // not the sender's
		}
		a.emit(agent.Event{Kind: agent.Progress, Progress: &migrate.Progress{Phase: "image", Bytes: 1}})
		if a.wasInterrupted() {
			return cancelled()
		}
		switch {
		case p.failBefore != nil:
			return fail(p.failBefore)
		case p.dieBefore:
			return errKilled
		case p.cancelIn == "running":
			cancel()
			if !a.waitInterrupt() {
				return errors.New("fake agent: no interrupt")
			}
			return cancelled()
		}
		ans := a.ask(agent.BeforeCommit)
		if ans.Err != nil {
			return fail(fmt.Errorf("before commit: node: %w", ans.Err.Err()))
		}
		if p.cancelIn == "carried" {
			cancel()
			if !a.waitInterrupt() {
				return errors.New("fake agent: no interrupt")
			}
		}
		if a.wasInterrupted() {
			return cancelled()
		}
		if p.dieAfterCarry {
			return errKilled
		}
		if p.commitLost {
			ans := a.ask(agent.Resolve)
			switch {
			case ans.Err != nil:
				return fail(migrate.Mark(fmt.Errorf("await committed: EOF; destination unreachable (%w)", ans.Err.Err()), migrate.ErrCommitUnknown))
			case !ans.Committed:
				return fail(errors.New("await committed: EOF; destination did not commit"))
			}
		}
		rep := &migrate.Report{Job: "n1-1", Committed: true, FreezeTime: time.Millisecond}
		a.emit(agent.Event{Kind: agent.Committed, Report: rep})
		if p.cancelIn == "committed" {
			cancel() // too late: the job runs there
		}
		if p.dieAfterCommitted {
			return errKilled
		}
		a.emit(agent.Event{Kind: agent.Report, Report: rep})
		return nil
	}
}

// fakeJournal keeps the phases.
type fakeJournal struct {
	mu     sync.Mutex
	phases []migPhase
}

func (j *fakeJournal) record(r phaseRecord) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.phases = append(j.phases, r.Phase)
}

func TestTransaction(t *testing.T) {
	refused := &RemoteError{Node: "n2", Code: 409, Msg: "job n1-1 is already running on n2"}
	tests := []struct {
		name     string
		dest     destConfig
		startErr error
		plan     plan
		drainErr error
		// What a user would see.
		moved   bool    // the job runs on n2 (else: running here)
		is      []error // the error matches each; nil with moved: no error
		carried bool    // the final carry reached the destination
		// The step the transaction got to before it ended.
		last migPhase
	}{
		{name: "committed", moved: true, carried: true, last: outMoved},
		{name: "bad event lines are logged", plan: plan{badLine: true}, moved: true, carried: true, last: outMoved},
		{name: "destination refuses prepare", dest: destConfig{prepareErr: refused},
			is: []error{migrate.ErrRefused, migrate.ErrResumed}, last: outStarted},
		{name: "destination unreachable at prepare", dest: destConfig{prepareErr: errors.New("node n2: connection refused")},
			is: []error{migrate.ErrResumed}, last: outStarted},
		{name: "log ahead fails", dest: destConfig{logErr: errors.New("node n2: EOF")},
			is: []error{migrate.ErrResumed}, last: outPrepared},
		{name: "agent fails to start", startErr: errors.New("start migration agent: ENOENT"),
			is: []error{migrate.ErrResumed}, last: outLogSent},
		{name: "agent error before before-commit", plan: plan{failBefore: fmt.Errorf("%w: bad frame", migrate.ErrAborted)},
			is: []error{migrate.ErrAborted, migrate.ErrResumed}, last: outAgentStarted},
		{name: "injected fault before before-commit", plan: plan{failBefore: fmt.Errorf("%w: cancelled after ready", migrate.ErrFault)},
			is: []error{migrate.ErrFault, migrate.ErrResumed}, last: outAgentStarted},
		{name: "agent dies before before-commit", plan: plan{dieBefore: true},
			is: []error{migrate.ErrResumed}, last: outAgentStarted},
		{name: "drain fails", drainErr: errors.New("drain stdout: EIO"),
			is: []error{migrate.ErrResumed}, last: outAgentStarted},
		{name: "final carry fails", dest: destConfig{finalErr: errors.New("node n2: 409")},
			is: []error{migrate.ErrResumed}, last: outAgentStarted},
		{name: "agent dies after before-commit, not committed", plan: plan{dieAfterCarry: true},
			is: []error{migrate.ErrResumed}, carried: true, last: outResolving},
		{name: "agent dies after before-commit, committed", plan: plan{dieAfterCarry: true},
			dest: destConfig{commitAnswer: true}, moved: true, carried: true, last: outMoved},
		{name: "agent dies after before-commit, destination unreachable", plan: plan{dieAfterCarry: true},
			dest: destConfig{committedErr: errors.New("node n2: no route")}, is: []error{migrate.ErrCommitUnknown, migrate.ErrResumed}, carried: true, last: outResolving},
		{name: "commit answer lost, resolve says committed", plan: plan{commitLost: true},
			dest: destConfig{commitAnswer: true}, moved: true, carried: true, last: outMoved},
		{name: "commit answer lost, resolve says not committed", plan: plan{commitLost: true},
			is: []error{migrate.ErrResumed}, carried: true, last: outResolving},
		{name: "commit answer lost, destination unreachable", plan: plan{commitLost: true},
			dest: destConfig{committedErr: errors.New("node n2: no route")}, is: []error{migrate.ErrCommitUnknown, migrate.ErrResumed}, carried: true, last: outResolving},
		{name: "agent dies after committed", plan: plan{dieAfterCommitted: true}, moved: true, carried: true, last: outMoved},
		{name: "cancelled at prepare", dest: destConfig{cancelAt: "prepare"},
			is: []error{migrate.ErrCancelled, context.Canceled, migrate.ErrResumed}, last: outStarted},
		{name: "cancelled at log ahead", dest: destConfig{cancelAt: "log"},
			is: []error{migrate.ErrCancelled, context.Canceled, migrate.ErrResumed}, last: outPrepared},
		{name: "cancelled while the agent runs", plan: plan{cancelIn: "running"},
			is: []error{migrate.ErrCancelled, context.Canceled, migrate.ErrResumed}, last: outAgentStarted},
		{name: "cancelled during the final carry", dest: destConfig{cancelAt: "final"},
			is: []error{migrate.ErrCancelled, migrate.ErrResumed}, carried: true, last: outCarried},
		{name: "cancelled after before-commit", plan: plan{cancelIn: "carried"},
			is: []error{migrate.ErrCancelled, migrate.ErrResumed}, carried: true, last: outCarried},
		{name: "cancelled after committed", plan: plan{cancelIn: "committed"}, moved: true, carried: true, last: outMoved},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			goroutines := runtime.NumGoroutine()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var logged bytes.Buffer
			n := &Node{cfg: Config{ID: "n1"}, log: slog.New(slog.NewTextHandler(&logged, nil)),
				moved: map[string]string{}, committed: map[string]bool{}, jobs: map[string]*localJob{}, quit: make(chan struct{})}
			j := &localJob{n: n, info: JobInfo{ID: "n1-1", Node: "n1", PID: 1, State: stateRunning}, done: make(chan struct{})}
			dest := &fakeDest{destConfig: tc.dest, cancel: cancel}
			var ag *fakeAgent
			dest.afterCancel = func() {
				if ag != nil && !ag.waitInterrupt() {
					t.Error("the agent was not interrupted")
				}
			}
			stdio := &fakeStdio{logs: [2][]byte{[]byte("early out\n"), []byte("early err\n")},
				unread: []byte("unread input"), copying: true, drainErr: tc.drainErr}
			jr := &fakeJournal{}
			var progressed int
			o := &outgoing{n: n, j: j, req: MigrateRequest{To: "n2", Mode: "freeze"}, mode: migrate.Freeze,
				log: n.log, dest: dest, stdio: stdio, journal: jr,
				progress: func(migrate.Progress) { progressed++ },
				start: func([]string) (sendingAgent, error) {
					if tc.startErr != nil {
						return nil, tc.startErr
					}
					ag = newFakeAgent()
					ag.run(sender(tc.plan, cancel))
					return ag, nil
				}}
			rep, err := o.run(ctx)

			// The outcome.
			st := j.snapshot()
			if tc.moved {
				if err != nil || rep == nil || !rep.Committed {
					t.Fatalf("run = %+v, %v; want committed", rep, err)
				}
				if st.State != stateMoved || st.MovedTo != "n2" || n.moved["n1-1"] != "n2" {
					t.Errorf("job %+v, moved %v; want moved to n2", st, n.moved)
				}
			} else {
				if err == nil || rep == nil || !rep.Resumed {
					t.Fatalf("run = %+v, %v; want resumed with an error", rep, err)
				}
				if st.State != stateRunning || n.moved["n1-1"] != "" {
					t.Errorf("job %+v, moved %v; want running here", st, n.moved)
				}
			}
			for _, target := range tc.is {
				if !errors.Is(err, target) {
					t.Errorf("err %q does not match %q", err, target)
				}
				// And once more after the API (Client.Migrate).
				if got := agent.EncodeError(err).Err(); !errors.Is(got, target) {
					t.Errorf("err %q, across the API, does not match %q", got, target)
				}
			}
			// The input: carried on a commit, given back exactly once and
			// in order on a rollback; the output read again.
			if tc.carried != (dest.final != nil) {
				t.Errorf("final carry %+v, want carried=%v", dest.final, tc.carried)
			}
			if dest.final != nil {
				if string(dest.final.Stdin) != "unread input" || string(dest.final.Stdout) != "late out\n" ||
					dest.final.OutFrom != int64(len("early out\n")) {
					t.Errorf("final carry %+v", dest.final)
				}
			}
			if tc.moved {
				if stdio.restarts != 0 || len(stdio.given) != 0 {
					t.Errorf("moved, yet %d copier restarts and input given back %q", stdio.restarts, stdio.given)
				}
			} else {
				if string(stdio.unread) != "unread input" || len(stdio.given) > 1 {
					t.Errorf("input afterwards %q (given back %q), want %q given back at most once", stdio.unread, stdio.given, "unread input")
				}
				if !stdio.copying || stdio.restarts != stdio.drains {
					t.Errorf("output copiers: running %v, %d drains, %d restarts", stdio.copying, stdio.drains, stdio.restarts)
				}
			}
			// The steps, each recorded once, in order, ending where the
			// transaction ended.
			want := []migPhase{outStarted, outPrepared, outLogSent, outAgentStarted, outCarried, outResolving, outCommitted, outMoved}
			end := outRolledBack
			if tc.moved {
				end = outMoved
			}
			got := jr.phases
			if len(got) == 0 || got[len(got)-1] != end {
				t.Fatalf("phases %v, want them to end in %s", got, end)
			}
			if !tc.moved {
				got = got[:len(got)-1]
			}
			if i := slices.Index(want, tc.last); i < 0 || got[len(got)-1] != tc.last {
				t.Errorf("phases %v: last step %s, want %s", jr.phases, got[len(got)-1], tc.last)
			}
			k := 0
			for _, p := range got {
				for k < len(want) && want[k] != p {
					k++
				}
				if k == len(want) {
					t.Fatalf("phases %v out of order", jr.phases)
				}
				k++
			}
			if tc.plan.badLine && !strings.Contains(logged.String(), "bad event") || tc.plan.badLine && !strings.Contains(logged.String(), "unexpected event") {
				t.Errorf("bad lines not logged:\n%s", logged.String())
			}
			if ag != nil && progressed == 0 {
				t.Error("progress events did not reach the caller")
			}
			// Nothing left running.
			n.bg.Wait()
			checkGoroutines(t, goroutines)
		})
	}
}

// checkGoroutines fails if more goroutines run than before (the test's
// own, after a moment for exiting ones to go).
func checkGoroutines(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines left, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSplitMessages: the router's handoff becomes a "messages" step
// before what is left of "carry stdio"; the steps still add up.
func TestSplitMessages(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	in := []migrate.Phase{{Name: "connect", Took: ms(1)}, {Name: "image", Took: ms(50)}, {Name: "restore held", Took: ms(20)},
		{Name: "carry stdio", Took: ms(5)}, {Name: "commit", Took: ms(2)}}
	got := splitMessages(slices.Clone(in), ms(3))
	want := []migrate.Phase{{Name: "connect", Took: ms(1)}, {Name: "image", Took: ms(50)}, {Name: "restore held", Took: ms(20)},
		{Name: "messages", Took: ms(3)}, {Name: "carry stdio", Took: ms(2)}, {Name: "commit", Took: ms(2)}}
	if !slices.Equal(got, want) {
		t.Errorf("split:\n got %v\nwant %v", got, want)
	}
	if got := splitMessages(slices.Clone(in), 0); !slices.Equal(got, in) {
		t.Errorf("no handoff: %v, want %v", got, in)
	}
	noCarry := []migrate.Phase{{Name: "image", Took: ms(50)}}
	if got := splitMessages(noCarry, ms(3)); !slices.Equal(got, noCarry) {
		t.Errorf("no carry stdio step: %v, want %v", got, noCarry)
	}
}
