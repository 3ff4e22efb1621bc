package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ferry/internal/dump"
	"ferry/internal/ptrace"
	"ferry/internal/testutil"
	"ferry/internal/workload"
)

// workloadEnv makes the test binary run the built-in workload instead of
// the tests: "MiB" or "MiB,interval".
const workloadEnv = "FERRY_BENCH_TEST_WORKLOAD"

func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(workloadEnv); ok {
		os.Exit(workloadMain(spec))
	}
	os.Exit(m.Run())
}

func workloadMain(spec string) int {
	cfg := workload.Config{Threads: 1, Interval: 200 * time.Millisecond}
	mem, interval, _ := strings.Cut(spec, ",")
	var err error
	if cfg.MemMiB, err = strconv.Atoi(mem); err == nil && interval != "" {
		cfg.Interval, err = time.ParseDuration(interval)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bad %s=%q: %v\n", workloadEnv, spec, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := workload.Run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// workloadCmd runs this test binary as the workload, idle, holding mib MiB.
func workloadCmd(mib int, interval time.Duration) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%v", workloadEnv, mib, interval))
	return cmd
}

func needRoot(tb testing.TB) {
	testutil.NeedRoot(tb, "a restore takes back the original PID (clone3 with set_tid)")
}

func startWorkload(tb testing.TB, mib int, interval time.Duration) *Workload {
	tb.Helper()
	w, err := StartWorkload(context.Background(), workloadCmd(mib, interval), 2*time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Close)
	return w
}

// imageDir returns a new directory on tmpfs, removed after the test.
func imageDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp(shmDir(), "ferry-bench-test-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "image")
}

func newTracer(tb testing.TB) *ptrace.Tracer {
	t := ptrace.NewTracer()
	tb.Cleanup(t.Close)
	return t
}

// TestRoundTrip dumps a small workload, kills it and restores it, and
// checks that the restored copy is the same process carrying on: same PID,
// the next tick, and a full verification pass over its memory.
func TestRoundTrip(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	w := startWorkload(t, 16, 50*time.Millisecond)
	tr := newTracer(t)
	img := imageDir(t)

	s, res, err := Dump(ctx, tr, w.PID(), img, dump.Kill)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, f := range res.Kept {
			f.Close()
		}
	}()
	if s.PageBytes < 16<<20 {
		t.Errorf("image holds %d bytes of pages, want at least 16 MiB", s.PageBytes)
	}
	if s.Collect <= 0 || s.WriteImage <= 0 || s.Total < s.Collect+s.Pages+s.Close || s.WriteImage > s.Pages {
		t.Errorf("dump phases do not add up: %+v", s)
	}
	w.Reap()
	last, err := w.Drain(quiet)
	if err != nil {
		t.Fatal(err)
	}

	rs, err := Restore(ctx, tr, img, res.Kept)
	if err != nil {
		t.Fatal(err)
	}
	defer KillRestored(rs.PID)
	if rs.PID != w.PID() {
		t.Errorf("restored pid %d, want %d", rs.PID, w.PID())
	}
	if rs.PageBytes != s.PageBytes {
		t.Errorf("restored %d bytes of pages, dumped %d", rs.PageBytes, s.PageBytes)
	}
	if rs.Setup <= 0 || rs.Fill <= 0 || rs.Setup+rs.Fill+rs.Finish > rs.Total+time.Millisecond {
		t.Errorf("restore phases do not add up: %+v", rs)
	}
	first, err := w.Next(ctx, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if first.PID != w.PID() || first.Tick != last.Tick+1 {
		t.Fatalf("restored copy printed pid %d tick %d, want pid %d tick %d", first.PID, first.Tick, w.PID(), last.Tick+1)
	}
	for p := first; p.Verified <= first.Verified; {
		if p, err = w.Next(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if err := KillRestored(rs.PID); err != nil {
		t.Fatal(err)
	}
}

// TestRun runs the whole benchmark once at a small size.
func TestRun(t *testing.T) {
	needRoot(t)
	rep, err := Run(context.Background(), Config{
		SizesMiB: []int{8},
		Repeat:   1,
		Workload: func(mib int) *exec.Cmd { return workloadCmd(mib, 50*time.Millisecond) },
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Sizes) != 1 {
		t.Fatalf("%d sizes in the report, want 1", len(rep.Sizes))
	}
	r := rep.Sizes[0]
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"dump_ms", r.DumpMs}, {"dump_gbps", r.DumpGBps}, {"readv_limit_gbps", r.ReadvGBps},
		{"restore_ms", r.RestoreMs}, {"restore_gbps", r.RestoreGBps}, {"fresh_memory_limit_gbps", r.FreshGBps},
		{"dump_ratio", r.DumpRatio}, {"restore_ratio", r.RestoreRatio},
	} {
		if !(f.v > 0) {
			t.Errorf("%s = %v, want > 0", f.name, f.v)
		}
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"readv limit GB/s", "fresh-mem limit GB/s", "8 MiB"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, b.String())
		}
	}
}

func TestLimits(t *testing.T) {
	src := NewBuffer(ChunkSize)
	const size = 16<<20 + 4096 // not a multiple of the pieces
	for _, m := range FillMethods {
		for _, n := range []int{1, 3} {
			d, err := FillFresh(m, size, n, src)
			if errors.Is(err, ErrNoUserfaultfd) {
				t.Logf("%s: %v", m, err)
				continue
			}
			if err != nil || d <= 0 {
				t.Errorf("FillFresh(%q, %d, %d) = %v, %v", m, size, n, d, err)
			}
		}
	}
	if _, err := FillFresh("nonsense", size, 1, src); err == nil {
		t.Errorf("FillFresh of an unknown method succeeded")
	}
	if d, err := TmpfsWrite(t.TempDir(), size, src); err != nil || d <= 0 {
		t.Errorf("TmpfsWrite = %v, %v", d, err)
	}
}

func TestReadvLimit(t *testing.T) {
	needRoot(t)
	w := startWorkload(t, 8, 200*time.Millisecond)
	tr := newTracer(t)
	for _, rw := range []readvWay{{CacheChunk, 1}, {ChunkSize, 1}, {CacheChunk, 3}} {
		rv, err := ReadvLimit(context.Background(), tr, w.PID(), rw.piece, rw.threads)
		if err != nil {
			t.Fatalf("%s: %v", rw.name(), err)
		}
		if rv.Bytes < 8<<20 || rv.Read <= 0 || rv.Freeze <= 0 {
			t.Errorf("%s = %+v, want at least 8 MiB read", rw.name(), rv)
		}
	}
}

func TestMedian(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, 0},
		{[]time.Duration{3 * ms}, 3 * ms},
		{[]time.Duration{9 * ms, 1 * ms, 5 * ms}, 5 * ms},
		{[]time.Duration{4 * ms, 1 * ms, 2 * ms, 100 * ms}, 3 * ms},
	} {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestTargets(t *testing.T) {
	for _, tt := range []struct {
		r    SizeResult
		want []bool
	}{
		{SizeResult{SizeMiB: 64, DumpMs: 30, RestoreMs: 31}, []bool{true, false}},
		{SizeResult{SizeMiB: 1024, DumpRatio: 0.69, RestoreRatio: 0.7}, []bool{false, true}},
		{SizeResult{SizeMiB: 128}, nil},
	} {
		got := targetsFor(&tt.r)
		if len(got) != len(tt.want) {
			t.Errorf("targetsFor(%d MiB) = %d targets, want %d", tt.r.SizeMiB, len(got), len(tt.want))
			continue
		}
		for i, g := range got {
			if g.Met != tt.want[i] {
				t.Errorf("targetsFor(%d MiB): %s %s met = %v, want %v", tt.r.SizeMiB, g.What, g.Got, g.Met, tt.want[i])
			}
		}
	}
}
