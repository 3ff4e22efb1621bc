package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"ferry/internal/agent"
	"ferry/internal/migrate"
	"ferry/internal/restore"
)

// TestTransactionIncoming follows fake receiving agents: the job runs
// here exactly when the new copy was released, and the destination's
// answer to a source asking (/committed) says the same.
func TestTransactionIncoming(t *testing.T) {
	committed := agent.Event{Kind: agent.Committed}
	released := agent.Event{Kind: agent.Released}
	report := agent.Event{Kind: agent.Report, PID: 7, Report: &migrate.Report{Job: "n1-1", Committed: true, RestoreTime: time.Millisecond},
		Phases: []restore.Phase{{Name: "pages", Took: time.Millisecond}}}
	failed := func(err error) agent.Event { return agent.Event{Kind: agent.Failed, Err: agent.EncodeError(err)} }
	tests := []struct {
		name   string
		bad    bool // a bad line and an event of the other side come first
		events []agent.Event
		exit   error
		state  string // the job afterwards; "" gone from the table
		runs   bool   // /committed says it runs here
		phases []migPhase
		logged []string
	}{
		{name: "arrived", events: []agent.Event{{Kind: agent.Restored, PID: 7}, {Kind: agent.Warning, Message: "last PID: EPERM"},
			committed, released, report}, state: stateRunning, runs: true,
			phases: []migPhase{inCommitted, inReleased, inArrived}, logged: []string{"new copy held", "last PID: EPERM", "restored"}},
		{name: "bad lines are logged", bad: true, events: []agent.Event{committed, released, report}, state: stateRunning, runs: true,
			phases: []migPhase{inCommitted, inReleased, inArrived}, logged: []string{"bad event", "unexpected event"}},
		{name: "not committed", events: []agent.Event{{Kind: agent.Restored, PID: 7},
			failed(fmt.Errorf("%w: await commit: EOF", migrate.ErrNotCommitted))}, exit: errors.New("exit status 1"),
			phases: []migPhase{inFailed}, logged: []string{"nothing kept here"}},
		{name: "agent dies before the image", exit: errKilled, phases: []migPhase{inFailed}},
		{name: "agent dies after the commit arrived, before the release", events: []agent.Event{committed}, exit: errKilled,
			phases: []migPhase{inCommitted, inFailed}},
		{name: "released, then its memory did not arrive", events: []agent.Event{committed, released,
			failed(migrate.Mark(errors.New("postcopy pager: source gone; the job was killed"), migrate.ErrLost))},
			exit: errors.New("exit status 1"), state: stateLost, runs: true,
			phases: []migPhase{inCommitted, inReleased, inFailed}, logged: []string{"job lost after its migration committed"}},
		{name: "released, then the agent died", events: []agent.Event{committed, released}, exit: errKilled,
			state: stateLost, runs: true, phases: []migPhase{inCommitted, inReleased, inFailed}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			goroutines := runtime.NumGoroutine()
			var logged bytes.Buffer
			n := &Node{cfg: Config{ID: "n2"}, log: slog.New(slog.NewTextHandler(&logged, nil)),
				moved: map[string]string{"n1-1": "n1"}, committed: map[string]bool{}, jobs: map[string]*localJob{}, quit: make(chan struct{})}
			j := &localJob{n: n, info: JobInfo{ID: "n1-1", Node: "n2", PID: 1, State: stateIncoming}, done: make(chan struct{})}
			n.jobs["n1-1"] = j
			j.expectArrival()
			jr := &fakeJournal{}
			ag := newFakeAgent()
			ag.run(func(a *fakeAgent) error {
				if tc.bad {
					a.events <- agentLine{err: fmt.Errorf("%w: malformed event", agent.ErrProtocol)}
					a.emit(agent.Event{Kind: agent.Progress, Progress: &migrate.Progress{}})
				}
				for _, ev := range tc.events {
					a.emit(ev)
				}
				return tc.exit
			})
			n.followIncoming(j, "n1", ag, jr)

			n.mu.Lock()
			held := n.jobs["n1-1"]
			n.mu.Unlock()
			switch {
			case tc.state == "" && held != nil:
				t.Errorf("the job is still in the table: %+v", held.snapshot())
			case tc.state != "" && (held != j || j.snapshot().State != tc.state):
				t.Errorf("job %+v, want %s", j.snapshot(), tc.state)
			}
			if tc.runs != (n.committed["n1-1"] && n.moved["n1-1"] == "") {
				t.Errorf("committed %v, moved %v; want runs here=%v", n.committed, n.moved, tc.runs)
			}
			select {
			case <-j.agentDone:
			default:
				t.Error("agentDone not closed")
			}
			// A source whose commit answer was lost asks.
			rec := httptest.NewRecorder()
			req := httptest.NewRequest("GET", "/v1/jobs/n1-1/committed", nil)
			req.SetPathValue("id", "n1-1")
			n.handleCommitted(rec, req)
			var st struct{ Committed bool }
			if err := json.Unmarshal(rec.Body.Bytes(), &st); err != nil || st.Committed != tc.runs {
				t.Errorf("/committed = %s (%v), want committed=%v", rec.Body.String(), err, tc.runs)
			}
			if !slices.Equal(jr.phases, tc.phases) {
				t.Errorf("phases %v, want %v", jr.phases, tc.phases)
			}
			for _, s := range tc.logged {
				if !strings.Contains(logged.String(), s) {
					t.Errorf("%q not logged:\n%s", s, logged.String())
				}
			}
			n.bg.Wait()
			checkGoroutines(t, goroutines)
		})
	}
}
