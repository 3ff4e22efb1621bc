package precopy

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/procfs"
	"ferry/internal/ptrace"
	"ferry/internal/testutil"
)

func newTracer(tb testing.TB) *ptrace.Tracer {
	tr := ptrace.NewTracer()
	tb.Cleanup(tr.Close)
	return tr
}

func logStats(tb testing.TB, st *Stats, m *migration) {
	tb.Helper()
	for i, r := range st.Rounds {
		tb.Logf("round %d: %d pages, %d KiB (%d redundant pages), %d KiB reported, %v", i+1, r.Pages, r.Bytes>>10,
			r.Redundant, r.Reported>>10, r.Duration)
	}
	tb.Logf("stopped: %v; sent %d KiB in %v (%.0f MB/s); dirty rate %.0f KiB/s; predicted %d KiB, %v",
		st.Reason, st.Bytes>>10, st.Duration, st.Throughput/1e6, st.DirtyRate/1024, st.Remaining>>10, st.PredictedFreeze)
	if m != nil && m.dump != nil {
		tb.Logf("freeze: image %d pages (%d KiB), %d bytes in all; frozen until image complete: %v",
			m.dump.Stats.Pages, m.dump.Stats.PageBytes>>10, len(m.image), m.dump.FreezeTime)
	}
}

// TestStopReasons migrates a process that keeps writing its memory, with
// options that end the rounds for each reason, and checks that the
// restored copy finds its memory intact.
func TestStopReasons(t *testing.T) {
	needRoot(t)
	const mib = 16
	for _, tc := range []struct {
		name string
		args []string // churn MIB RATE_KIB HOT_PAGES
		opts Options
		want StopReason
	}{
		// 1 MiB/s dirtied: round 2 finds a few dozen KiB.
		{"small-dirty-set", []string{"16", "1024", "0"}, Options{}, SmallDirtySet},
		{"predicted-freeze", []string{"16", "8192", "0"}, Options{MinDirtyBytes: -1, MaxFreeze: time.Second}, PredictedFreeze},
		// 1 MiB rewritten flat out: every round finds all of it.
		{"not-shrinking", []string{"16", "0", "256"}, Options{MinDirtyBytes: -1, MaxRounds: 30}, NotShrinking},
		{"round-limit", []string{"16", "8192", "0"}, Options{MinDirtyBytes: -1, MaxRounds: 2}, RoundLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracer(t)
			c := startChurn(t, tc.args...)
			var seen []int
			tc.opts.Progress = func(p Progress) { seen = append(seen, p.Round) }
			m := precopyDump(t, tr, c, tc.opts, nil)
			logStats(t, m.stats, m)
			if m.stats.Reason != tc.want {
				t.Errorf("rounds stopped for %v, want %v", m.stats.Reason, tc.want)
			}
			if n := len(m.stats.Rounds); !slices.Equal(seen, seq(n)) {
				t.Errorf("progress reported rounds %v, want 1..%d", seen, n)
			}
			if first := m.stats.Rounds[0].Bytes; first < mib<<20 {
				t.Errorf("first round sent %d bytes, want at least the %d MiB written", first, mib)
			}
			if tc.want != NotShrinking && m.dump.Stats.PageBytes > mib<<20/4 {
				t.Errorf("the freeze carried %d KiB of pages, want much less than the %d MiB sent before", m.dump.Stats.PageBytes>>10, mib)
			}
			res := m.restoreStaged(t, tr, c)
			t.Logf("restore: %v, %d KiB staged, %d KiB from the image", res.Duration, res.StagedBytes>>10, res.Bytes>>10)
			c.verify(res.PID)
			time.Sleep(50 * time.Millisecond) // let it write on, then check again
			c.verify(res.PID)
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

// TestReshapedMemory reshapes memory between the rounds and after the
// last one — pages discarded, zeroed, rewritten; VMAs replaced, moved and
// grown, made read-only, unmapped; a private file mapping written and
// discarded; brk grown, shrunk and grown again — and checks that the
// copy's memory equals the source's at the freeze, byte for byte, and
// that the copy's own checks pass.
func TestReshapedMemory(t *testing.T) {
	needRoot(t)
	tr := newTracer(t)
	c := startChurn(t, "16", "2048", "0", t.TempDir()+"/mapped")
	opts := Options{MaxRounds: 3, MinDirtyBytes: -1, Progress: func(p Progress) { c.step(p.Round) }}
	// The source stops before the dump, so that the copy is restored
	// stopped and both can be compared as they were at the freeze.
	m := precopyDump(t, tr, c, opts, c.stop)
	logStats(t, m.stats, m)
	if len(m.stats.Rounds) != 3 {
		t.Fatalf("%d rounds, want 3", len(m.stats.Rounds))
	}
	res := m.restoreStaged(t, tr, c)
	t.Logf("restore: %v, %d KiB staged, %d KiB from the image", res.Duration, res.StagedBytes>>10, res.Bytes>>10)
	waitStopped(t, res.PID)
	sameMemory(t, memory(t, c.pid), memory(t, res.PID))
	if err := unix.Kill(res.PID, unix.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.verify(res.PID)
}

// TestFullDumpMemory is TestReshapedMemory's comparison without precopy:
// it shows that the comparison itself holds for a plain dump and restore.
func TestFullDumpMemory(t *testing.T) {
	needRoot(t)
	tr := newTracer(t)
	c := startChurn(t, "16", "2048", "0", t.TempDir()+"/mapped")
	for n := 1; n <= 3; n++ {
		c.step(n)
	}
	c.stop()
	m := &migration{staging: NewStaging()}
	t.Cleanup(func() { m.staging.Close() })
	m2 := dumpFrozen(t, tr, c.pid)
	m.image, m.dump = m2.image, m2.dump
	res := m.restoreStaged(t, tr, c)
	sameMemory(t, memory(t, c.pid), memory(t, res.PID))
}

// TestTree migrates a parent and its child, both writing their memory:
// both are tracked and sent in rounds, both restored intact.
func TestTree(t *testing.T) {
	needRoot(t)
	tr := newTracer(t)
	c := startChurnEnv(t, []string{"CHURN_FORK=1"}, "16", "2048", "0")
	c.expect("child ready")
	kids, err := procfs.Children(c.pid)
	if err != nil || len(kids) != 1 {
		t.Fatalf("children of %d: %v, %v; want one", c.pid, kids, err)
	}
	t.Cleanup(func() { unix.Kill(kids[0], unix.SIGKILL) })
	m := precopyDump(t, tr, c, Options{}, nil)
	logStats(t, m.stats, m)
	if got, want := m.sess.PIDs(), []int{c.pid, kids[0]}; !slices.Equal(got, sorted(want)) {
		t.Errorf("tracked %v, want %v", got, want)
	}
	if first := m.stats.Rounds[0].Bytes; first < 2*16<<20 {
		t.Errorf("first round sent %d KiB, want both processes' 16 MiB", first>>10)
	}
	if m.dump.Stats.PageBytes > 16<<20/4 {
		t.Errorf("the freeze carried %d KiB of pages, want much less than the 32 MiB sent before", m.dump.Stats.PageBytes>>10)
	}
	res := m.restoreStaged(t, tr, c)
	newKids, err := procfs.Children(res.PID)
	if err != nil || len(newKids) != 1 {
		t.Fatalf("children of the copy %d: %v, %v; want one", res.PID, newKids, err)
	}
	t.Cleanup(func() { unix.Kill(newKids[0], unix.SIGKILL) })
	t.Logf("restore: %v, %d KiB staged, %d KiB from the image", res.Duration, res.StagedBytes>>10, res.Bytes>>10)
	c.verify(res.PID)
	c.verify(newKids[0])
}

func sorted(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// TestAbort ends a precopy migration without moving the process, before
// and after the final dump: the source runs on, its memory intact, with
// no write-protection left behind.
func TestAbort(t *testing.T) {
	needRoot(t)
	for _, afterDump := range []bool{false, true} {
		name := "before-dump"
		if afterDump {
			name = "after-dump"
		}
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			tr := newTracer(t)
			c := startChurn(t, "16", "4096", "0")
			if afterDump {
				m := precopyDump(t, tr, c, Options{}, nil)
				if err := m.dump.Held.Resume(ctx); err != nil {
					t.Fatalf("Resume: %v", err)
				}
				if err := m.sess.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			} else {
				sess, err := Start(ctx, tr, c.pid, Options{})
				if err != nil {
					t.Fatal(err)
				}
				st, err := sess.Run(ctx, NewStaging())
				if err != nil {
					sess.Close()
					t.Fatal(err)
				}
				logStats(t, st, nil)
				if err := sess.Close(); err != nil {
					t.Fatalf("Close: %v", err)
				}
			}
			noTracking(t, c.pid)
			c.verify(c.pid)
			time.Sleep(50 * time.Millisecond)
			c.verify(c.pid)
			if s, err := procfs.Status(c.pid); err != nil || s.TracerPID != 0 || s.State == 'T' || s.State == 't' {
				t.Fatalf("source after abort: %+v, %v; want running, untraced", s, err)
			}
		})
	}
}

// noTracking fails the test if any VMA of pid is still registered with a
// userfaultfd or any page still write-protected.
func noTracking(t *testing.T, pid int) {
	t.Helper()
	sms, err := procfs.Smaps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sms {
		for _, f := range []string{"uw", "um", "ui"} {
			if s.HasVmFlag(f) {
				t.Errorf("VMA %#x-%#x still has VmFlag %s", s.Start, s.End, f)
			}
		}
		if s.Special() {
			continue
		}
		ents, err := procfs.ReadPagemap(pid, s.Start, s.End)
		if err != nil {
			continue // [vsyscall] and the like
		}
		for i, e := range ents {
			if e&procfs.PagemapUffdWP != 0 {
				t.Errorf("page %#x still write-protected", s.Start+uint64(i*os.Getpagesize()))
				break
			}
		}
	}
	fds, err := procfs.FDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if l, err := procfs.FDLink(pid, fd); err == nil && strings.Contains(l, "userfaultfd") {
			t.Errorf("fd %d is a userfaultfd", fd)
		}
	}
}

// waitStopped waits until every thread of pid is in group-stop. A copy
// restored stopped gets its SIGSTOP at detach and stops before running an
// instruction, but its threads get there on their own: there is no event
// to wait for, so this is a bounded poll.
func waitStopped(t *testing.T, pid int) {
	t.Helper()
	testutil.Poll(t, 5*time.Second, time.Millisecond, "restored copy stopped like the source", func() (bool, string) {
		tids, err := procfs.Tasks(pid)
		if err != nil {
			t.Fatal(err)
		}
		stopped := 0
		var state byte
		for _, tid := range tids {
			st, err := procfs.TaskStat(pid, tid)
			if err != nil {
				t.Fatal(err)
			}
			if state = st.State; state == 'T' {
				stopped++
			}
		}
		return stopped == len(tids), fmt.Sprintf("a thread is in state %c", state)
	})
}
