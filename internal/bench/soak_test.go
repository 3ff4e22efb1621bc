package bench

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"ferry/internal/migrate"
)

func TestCauseOf(t *testing.T) {
	for _, tt := range []struct{ a, b string }{
		{"move n1 → n2: migration of n1-3 failed: pid 7: frozen for 12.5 ms", "move n2 → n3: migration of n3-14 failed: pid 81: frozen for 3 ms"},
		{"no progress line after the move within 2m0s (tick 41, 3 passes verified)", "no progress line after the move within 2m0s (tick 9, 1 passes verified)"},
	} {
		if a, b := causeOf(tt.a), causeOf(tt.b); a != b {
			t.Errorf("causeOf(%q) = %q, causeOf(%q) = %q, want the same", tt.a, a, tt.b, b)
		}
	}
	if a, b := causeOf("connection refused"), causeOf("the workload found its memory corrupted"); a == b {
		t.Errorf("causeOf of two different errors = %q for both", a)
	}
}

func TestSoakFinish(t *testing.T) {
	fig := func(node string, fds, threads, goroutines int, rssMiB uint64) DaemonFigures {
		return DaemonFigures{Node: node, PID: 1, FDs: fds, Threads: threads, Goroutines: goroutines, RSSBytes: rssMiB << 20}
	}
	snaps := func(idleEndFDs, endThreads int, endRSSMiB uint64) []SoakSnapshot {
		return []SoakSnapshot{
			{Label: SnapIdleStart, Daemons: []DaemonFigures{fig("n1", 16, 7, 19, 16), fig("n2", 16, 7, 19, 16)}},
			{Label: SnapLoadedStart, Daemons: []DaemonFigures{fig("n1", 25, 8, 26, 18), fig("n2", 25, 8, 26, 18)}},
			{Label: SnapSample, AtS: 5, Daemons: []DaemonFigures{fig("n1", 40, 10, 40, 20), fig("n2", 40, 10, 40, 20)}},
			{Label: SnapSample, AtS: 40, Daemons: []DaemonFigures{fig("n1", 40, 10, 40, 20), fig("n2", 40, 10, 40, 20)}},
			{Label: SnapLoadedEnd, AtS: 120, Daemons: []DaemonFigures{fig("n1", 30, endThreads, 30, endRSSMiB), fig("n2", 30, 10, 30, 20)}},
			{Label: SnapIdleEnd, AtS: 125, Daemons: []DaemonFigures{fig("n1", idleEndFDs, 8, 20, 20), fig("n2", 17, 8, 20, 20)}},
		}
	}
	for _, tt := range []struct {
		name      string
		snaps     []SoakSnapshot
		leftovers int
		grew      []string // substrings of Grew, in order; none for nothing
	}{
		{"steady", snaps(17, 10, 20), 0, nil},
		{"fds leak", snaps(16+200, 10, 20), 0, []string{"n1: 200 more fds at idle end than at idle start"}},
		{"threads grow", snaps(17, 30, 20), 0, []string{"all: 20 more threads at loaded end"}},
		{"memory grows", snaps(17, 10, 200), 0, []string{"all: 180.0 MiB more RSS at loaded end"}},
		{"leftovers", snaps(17, 10, 20), 2, []string{"2 processes of the cluster outlived"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &SoakReport{Nodes: []string{"n1", "n2"}, Modes: []migrate.Mode{migrate.Freeze}, ElapsedS: 120,
				Snapshots: tt.snaps, LeftoverProcs: tt.leftovers,
				Moves:  []SoakMove{{Mode: migrate.Freeze, MoveSample: MoveSample{CallMs: 10}}},
				Failed: []SoakFailure{{Mode: migrate.Freeze, Job: "n1-1", Error: "boom 1"}, {Mode: migrate.Freeze, Job: "n1-2", Error: "boom 2"}}}
			r.finish()
			if len(r.Grew) != len(tt.grew) {
				t.Fatalf("Grew = %q, want %d lines like %q", r.Grew, len(tt.grew), tt.grew)
			}
			for i, want := range tt.grew {
				if !strings.Contains(r.Grew[i], want) {
					t.Errorf("Grew[%d] = %q, want it to contain %q", i, r.Grew[i], want)
				}
			}
			if len(r.Causes) != 1 || r.Causes[0].Count != 2 {
				t.Errorf("Causes = %+v, want one cause of 2 failures", r.Causes)
			}
			if len(r.ByMode) != 1 || r.ByMode[0].Done != 1 || r.ByMode[0].Failed != 2 {
				t.Errorf("ByMode = %+v, want freeze: 1 done, 2 failed", r.ByMode)
			}
		})
	}
}

// TestSoak runs a short soak on three real node daemons, n3 failing every
// migration it receives (its agent dies before ready): every move to n1
// or n2 must commit and every one to n3 fail and roll back, the failures
// grouped as one cause; every job must move and verify itself after each
// move and each failure; and the report must carry the daemons' figures
// at the start and the end.
func TestSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ferry and runs a 20 s soak on three node daemons: skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: jobs run in PID namespaces of their own and migrate with ptrace")
	}
	exe := buildFerry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var progress strings.Builder
	rep, err := RunSoak(ctx, SoakConfig{Exe: exe, Jobs: 3, Duration: 20 * time.Second, SizeMiB: 8, RateMiBps: 4,
		Sample: 5 * time.Second, Dir: t.TempDir(), Progress: &progress,
		Faults: map[string][]string{"n3": {"recv=die-ready"}}})
	if err != nil {
		t.Fatalf("RunSoak: %v\nprogress:\n%s", err, progress.String())
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", text.String())

	if len(rep.Moves) < 3 {
		t.Errorf("%d migrations done, want at least one per job", len(rep.Moves))
	}
	for _, m := range rep.Moves {
		if m.To == "n3" {
			t.Errorf("a %s move %s → n3 committed, want it to fail at n3's fault", m.Mode, m.From)
		}
	}
	for _, f := range rep.Failed {
		if f.To != "n3" {
			t.Errorf("job %s: %s move %s → %s failed: %s", f.Job, f.Mode, f.From, f.To, f.Error)
		}
	}
	if len(rep.Failed) == 0 {
		t.Error("no move to n3 failed, want every one to")
	}
	if len(rep.Causes) != 1 || rep.Causes[0].Count != len(rep.Failed) {
		t.Errorf("causes = %+v, want one, of all %d failures", rep.Causes, len(rep.Failed))
	}
	if len(rep.JobResults) != 3 {
		t.Errorf("%d jobs run, want 3 (none replaced)", len(rep.JobResults))
	}
	for _, j := range rep.JobResults {
		switch {
		case j.Error != "":
			t.Errorf("job %s failed its checks: %s", j.ID, j.Error)
		case j.Moves == 0:
			t.Errorf("job %s never moved", j.ID)
		case j.Verified < uint64(j.Moves)+2:
			// settle waits for a pass after each move, and a whole one
			// follows the last.
			t.Errorf("job %s: %d verification passes after %d moves, want at least %d", j.ID, j.Verified, j.Moves, j.Moves+2)
		}
	}
	for _, label := range []string{SnapIdleStart, SnapLoadedStart, SnapLoadedEnd, SnapIdleEnd} {
		s, ok := rep.snap(label)
		if !ok {
			t.Errorf("no %s snapshot", label)
			continue
		}
		if len(s.Daemons) != 3 {
			t.Errorf("%s: figures of %d daemons, want 3", label, len(s.Daemons))
		}
		for _, d := range s.Daemons {
			if d.PID <= 0 || d.FDs <= 0 || d.Threads <= 0 || d.RSSBytes == 0 || d.Goroutines <= 0 {
				t.Errorf("%s: %s: figures missing: %+v", label, d.Node, d)
			}
		}
		if !strings.Contains(text.String(), label) {
			t.Errorf("text report lacks the %s figures", label)
		}
	}
	if len(rep.Growth) == 0 {
		t.Error("no growth figures")
	}
	if rep.LeftoverProcs != 0 {
		t.Errorf("%d processes of the cluster were left after its jobs and daemons stopped", rep.LeftoverProcs)
	}
	// A daemon holds nothing per job that left or ended: at the idle end
	// it has no more descriptors than at the start but sockets (idle
	// connections between the daemons come and go), and its goroutines
	// are back. (Threads and RSS are judged over a longer run.)
	is, _ := rep.snap(SnapIdleStart)
	ie, _ := rep.snap(SnapIdleEnd)
	for _, id := range rep.Nodes {
		a, _ := is.daemon(id)
		b, _ := ie.daemon(id)
		for kind, n := range b.FDKinds {
			if kind != "socket" && n > a.FDKinds[kind] {
				t.Errorf("%s: %d %s descriptors at the idle end, %d at the idle start", id, n, kind, a.FDKinds[kind])
			}
		}
	}
	for _, g := range rep.Grew {
		if strings.Contains(g, " goroutines ") {
			t.Errorf("grew beyond noise: %s", g)
		}
	}
}
