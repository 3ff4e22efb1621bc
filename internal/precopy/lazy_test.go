package precopy

import (
	"context"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/postcopy"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
)

// restoreStagedLazy restores the migration's image with its staged pages
// left lazy (restore.Options.StagedLazy), under new PIDs. Cleanup kills
// the copy and closes userfaultfds nobody served.
func (m *migration) restoreStagedLazy(tb testing.TB, tr *ptrace.Tracer, c *churn) *restore.Result {
	tb.Helper()
	r, err := image.NewReaderBytes(m.image)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := restore.Restore(context.Background(), tr, r, restore.Options{NewPIDs: true, Staged: m.staging,
		StagedLazy: true, Inherit: c.inherit()})
	if err != nil {
		tb.Fatalf("Restore: %v", err)
	}
	tb.Cleanup(func() {
		for _, lp := range res.Lazy {
			if lp.PID != res.PID {
				killRestored(lp.PID)
			}
		}
		killRestored(res.PID)
		res.CloseLazy()
	})
	if len(res.Lazy) == 0 {
		tb.Fatalf("no lazy memory after a precopy (%d KiB staged written eagerly)", res.StagedBytes>>10)
	}
	lazy := uint64(0)
	for _, lp := range res.Lazy {
		for _, v := range lp.VMAs {
			lazy += v.DataPages()
		}
	}
	tb.Logf("restore: %v, %d KiB staged written eagerly, %d KiB from the image, %d KiB lazy in %d processes; phases %v",
		res.Duration, res.StagedBytes>>10, res.Bytes>>10, lazy*4, len(res.Lazy), res.Phases)
	return res
}

// fillLazy serves the copy's lazy memory from the staging, as the
// destination of a migration does once the copy runs.
func (m *migration) fillLazy(tb testing.TB, res *restore.Result) *postcopy.PagerStats {
	tb.Helper()
	st, err := postcopy.ServeLocal(context.Background(), res.Lazy, m.staging.ReadPages, postcopy.LocalOptions{})
	for i := range res.Lazy {
		res.Lazy[i].Uffd = -1 // ServeLocal closed them
	}
	if err != nil {
		tb.Fatalf("ServeLocal: %v", err)
	}
	tb.Logf("filled: %d pages copied, %d zero, %d faults (%d zero), in %v", st.PagesCopied, st.ZeroPages, st.Faults,
		st.ZeroFaults, st.ResidualEnded.Sub(st.Started))
	return st
}

// TestStagedLazyReshaped is TestReshapedMemory with the staged pages
// written after the restore, by a local pager: the copy's memory equals
// the source's at the freeze, byte for byte, and its own checks pass.
func TestStagedLazyReshaped(t *testing.T) {
	needRoot(t)
	tr := newTracer(t)
	c := startChurn(t, "16", "2048", "0", t.TempDir()+"/mapped")
	opts := Options{MaxRounds: 3, MinDirtyBytes: -1, Progress: func(p Progress) { c.step(p.Round) }}
	// Step n runs after round n, step 3 after the last round: the image
	// then rewrites, discards and replaces memory the staging holds.
	m := precopyDump(t, tr, c, opts, c.stop)
	logStats(t, m.stats, m)
	res := m.restoreStagedLazy(t, tr, c)
	waitStopped(t, res.PID)
	st := m.fillLazy(t, res)
	if st.PagesCopied == 0 {
		t.Errorf("the local pager copied no page")
	}
	sameMemory(t, memory(t, c.pid), memory(t, res.PID))
	noLazyLeft(t, res.PID)
	if err := unix.Kill(res.PID, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.verify(res.PID)
	time.Sleep(50 * time.Millisecond)
	c.verify(res.PID)
}

// TestStagedLazyRunning lets the copy run, write and check its memory
// while the local pager fills it: it waits on the pages it touches first.
// With rseq on, the kernel writes each thread's rseq area during the
// restore: those pages must go in before, or the restore refuses.
func TestStagedLazyRunning(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"rseq", []string{"GLIBC_TUNABLES=glibc.pthread.rseq=1"}},
		{"tree", []string{"CHURN_FORK=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracer(t)
			c := startChurnEnv(t, tc.env, "16", "4096", "0")
			procs := 1
			if tc.name == "tree" {
				// Its "child ready" line may come before "ready", which
				// startChurn skipped it for: look for the child instead.
				var kids []int
				for deadline := time.Now().Add(5 * time.Second); len(kids) == 0; time.Sleep(5 * time.Millisecond) {
					var err error
					if kids, err = procfs.Children(c.pid); err != nil || time.Now().After(deadline) {
						t.Fatalf("children of %d: %v, %v; want one", c.pid, kids, err)
					}
				}
				t.Cleanup(func() { unix.Kill(kids[0], unix.SIGKILL) })
				procs = 2
			}
			m := precopyDump(t, tr, c, Options{}, nil)
			logStats(t, m.stats, m)
			rseq := 0
			for _, p := range m.dump.Checkpoint.Processes {
				for _, th := range p.Threads {
					if th.RseqAddr != 0 {
						rseq++
					}
				}
			}
			if tc.name == "rseq" && rseq == 0 {
				t.Fatalf("no thread registered rseq; the test needs it")
			}
			res := m.restoreStagedLazy(t, tr, c)
			if len(res.Lazy) != procs {
				t.Fatalf("%d processes with lazy memory, want %d", len(res.Lazy), procs)
			}
			if tc.name == "rseq" && res.StagedBytes == 0 {
				t.Errorf("%d threads with rseq, but no staged page was written before the processes ran", rseq)
			}
			done := make(chan *postcopy.PagerStats, 1)
			go func() {
				st, err := postcopy.ServeLocal(context.Background(), res.Lazy, m.staging.ReadPages, postcopy.LocalOptions{})
				if err != nil {
					t.Errorf("ServeLocal: %v", err)
				}
				done <- st
			}()
			// Checks while pages still arrive (they are all there by the
			// time a pass ends).
			for _, lp := range res.Lazy {
				c.verify(lp.PID)
			}
			st := <-done
			for i := range res.Lazy {
				res.Lazy[i].Uffd = -1
			}
			if st != nil {
				t.Logf("filled: %d pages copied, %d faults (%d zero), in %v", st.PagesCopied, st.Faults, st.ZeroFaults,
					st.ResidualEnded.Sub(st.Started))
			}
			time.Sleep(50 * time.Millisecond)
			for _, lp := range res.Lazy {
				c.verify(lp.PID)
				noLazyLeft(t, lp.PID)
			}
		})
	}
}

// noLazyLeft fails if a VMA of pid is still registered with a
// userfaultfd: the local pager let go of everything.
func noLazyLeft(t *testing.T, pid int) {
	t.Helper()
	sms, err := procfs.Smaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sms {
		if s.HasVmFlag("um") {
			t.Errorf("VMA %#x-%#x of %d is still registered for missing pages", s.Start, s.End, pid)
		}
	}
}
