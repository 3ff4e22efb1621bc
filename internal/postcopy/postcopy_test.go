package postcopy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
	"ferry/internal/testutil"
	"ferry/internal/workload"
)

// workloadEnv makes the test binary run the built-in workload instead of
// the tests: "MiB,dirty MiB/s,threads,interval".
const workloadEnv = "FERRY_POSTCOPY_TEST_WORKLOAD"

func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(workloadEnv); ok {
		os.Exit(workloadMain(spec))
	}
	code := m.Run()
	churnProg.Remove()
	os.Exit(code)
}

func workloadMain(spec string) int {
	var cfg workload.Config
	var interval string
	if _, err := fmt.Sscanf(strings.ReplaceAll(spec, ",", " "), "%d %g %d %s", &cfg.MemMiB, &cfg.DirtyMiBPerSec, &cfg.Threads, &interval); err != nil {
		fmt.Fprintf(os.Stderr, "bad %s=%q: %v\n", workloadEnv, spec, err)
		return 2
	}
	var err error
	if cfg.Interval, err = time.ParseDuration(interval); err != nil {
		fmt.Fprintln(os.Stderr, err)
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

// testLog logs to stderr at debug level when FERRY_POSTCOPY_DEBUG is set.
func testLog() *slog.Logger {
	if os.Getenv("FERRY_POSTCOPY_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func needRoot(tb testing.TB) { testutil.NeedRoot(tb, "ptrace, userfaultfd events, clone3") }

// startWorkload runs this test binary as the workload.
func startWorkload(tb testing.TB, mib int, dirty float64, threads int, interval time.Duration) *workload.Proc {
	tb.Helper()
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d,%g,%d,%v", workloadEnv, mib, dirty, threads, interval))
	w, err := workload.StartProc(context.Background(), cmd, 2*time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Close)
	return w
}

func newTracer(tb testing.TB) *ptrace.Tracer {
	t := ptrace.NewTracer()
	tb.Cleanup(t.Close)
	return t
}

// lazyDump checkpoints pid for postcopy: the image in memory, the tree
// left frozen (killed at cleanup; reap registers how to collect it).
func lazyDump(tb testing.TB, tr *ptrace.Tracer, pid int, reap func()) (*dump.Result, []byte) {
	tb.Helper()
	var buf bytes.Buffer
	w, err := image.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := dump.Dump(context.Background(), tr, pid, w, dump.Options{Leave: dump.Frozen, Lazy: true})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := res.Held.Kill(context.Background()); err != nil {
			tb.Errorf("kill the frozen source: %v", err)
		}
		reap()
	})
	return res, buf.Bytes()
}

// restored is a lazily restored tree with its pager and source.
type restored struct {
	res     *restore.Result
	pager   *Pager
	started time.Time

	served   chan struct{} // closed when Serve returned
	srcStats *SourceStats
	srcErr   error
}

// serve waits up to 10 s for Serve's result.
func (r *restored) serve() (*SourceStats, error) {
	select {
	case <-r.served:
		return r.srcStats, r.srcErr
	case <-time.After(10 * time.Second):
		return nil, errors.New("Serve did not return within 10 s")
	}
}

// lazyRestore restores img lazily (new PIDs: the frozen source still has
// the old ones) and starts the transfer over a socketpair, the source end
// wrapped by wrap. Cleanup kills the restored processes, then closes the
// pager and waits for the source.
func lazyRestore(tb testing.TB, ctx context.Context, tr *ptrace.Tracer, dres *dump.Result, img []byte, opts ServeOptions, wrap func(net.Conn) io.ReadWriteCloser, afterRestore func(*restore.Result)) *restored {
	tb.Helper()
	r := &restored{served: make(chan struct{}), started: time.Now()}
	ir, err := image.NewReaderBytes(img)
	if err != nil {
		tb.Fatal(err)
	}
	inherit := inheritPipes(tb, dres)
	r.res, err = restore.Restore(context.Background(), tr, ir, restore.Options{NewPIDs: true, Lazy: true, Inherit: inherit})
	closeAll(inherit)
	if err != nil {
		tb.Fatal(err)
	}
	if afterRestore != nil {
		afterRestore(r.res)
	}
	src, dst := socketPair(tb)
	var srcConn io.ReadWriteCloser = src
	if wrap != nil {
		srcConn = wrap(src)
	}
	go func() {
		defer close(r.served)
		opts.Log = testLog()
		r.srcStats, r.srcErr = Serve(context.Background(), srcConn, SourceProcesses(dres), opts)
	}()
	r.pager, err = StartPager(ctx, dst, r.res.Lazy, PagerOptions{Log: testLog()})
	if err != nil {
		killRestored(r.res)
		r.res.CloseLazy()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		killRestored(r.res)
		r.pager.Close()
		if _, err := r.serve(); err != nil && strings.Contains(err.Error(), "within 10 s") {
			tb.Error(err)
		}
	})
	return r
}

// inheritPipes opens the pipes of the frozen source for the restore: the
// test process reads their other end, which a dump does not count as
// outside the tree (ferry is not), so without them the restore would
// make new pipes that nobody reads.
func inheritPipes(tb testing.TB, res *dump.Result) map[string]*os.File {
	tb.Helper()
	out := map[string]*os.File{}
	for _, p := range res.Checkpoint.Processes {
		for _, fd := range p.FDs {
			key := "pipe:" + fd.PipeID
			if fd.Kind != image.FDPipe || out[key] != nil {
				continue
			}
			f, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", p.PID, fd.Num), os.O_RDWR|syscall.O_CLOEXEC, 0)
			if err != nil {
				tb.Fatal(err)
			}
			out[key] = f
		}
	}
	return out
}

func closeAll(files map[string]*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// killRestored kills and reaps every restored process.
func killRestored(res *restore.Result) {
	for _, lp := range res.Lazy {
		workload.KillRestored(lp.PID)
	}
	workload.KillRestored(res.PID)
}

func socketPair(tb testing.TB) (net.Conn, net.Conn) {
	tb.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
		conns[i] = c
	}
	return conns[0], conns[1]
}

// throttled limits the bytes written per second, so that a push lasts
// long enough to watch the process run during it; with cut it fails (and
// closes the connection) once cut bytes were written, like a source that
// dies.
type throttled struct {
	net.Conn
	rate  float64 // bytes per second, 0: unlimited
	cut   int64   // 0: never
	start time.Time
	sent  int64
}

func (c *throttled) Write(p []byte) (int, error) {
	if c.start.IsZero() {
		c.start = time.Now()
	}
	done := 0
	for done < len(p) {
		n := min(len(p)-done, 64<<10)
		if c.cut > 0 && c.sent+int64(n) > c.cut {
			c.Conn.Close()
			return done, errors.New("test: the source died")
		}
		m, err := c.Conn.Write(p[done : done+n])
		done += m
		c.sent += int64(m)
		if err != nil {
			return done, err
		}
		if c.rate > 0 {
			if ahead := time.Duration(float64(c.sent)/c.rate*float64(time.Second)) - time.Since(c.start); ahead > 0 {
				time.Sleep(ahead)
			}
		}
	}
	return done, nil
}

// checkNoPagerGoroutines fails if a goroutine of this package is left.
func checkNoPagerGoroutines(t *testing.T) {
	t.Helper()
	testutil.Poll(t, 5*time.Second, 10*time.Millisecond, "postcopy goroutines gone", func() (bool, string) {
		var buf bytes.Buffer
		pprof.Lookup("goroutine").WriteTo(&buf, 1)
		s := buf.String()
		return !strings.Contains(s, "postcopy.(*Pager)") && !strings.Contains(s, "postcopy.(*source)"), "\n" + s
	})
}

// TestWorkloadPostcopy moves the Go workload: it runs on while its memory
// arrives, the source's push ends and is acknowledged, and afterwards a
// full verification pass over its memory succeeds.
func TestWorkloadPostcopy(t *testing.T) {
	needRoot(t)
	defer checkNoPagerGoroutines(t)
	ctx := context.Background()
	const mib = 32
	w := startWorkload(t, mib, 16, 2, 50*time.Millisecond)
	tr := newTracer(t)
	dres, img := lazyDump(t, tr, w.PID(), w.Reap)
	lazy := 0
	for _, v := range dres.Lazy[w.PID()] {
		lazy += int(v.DataPages())
	}
	if lazy < mib<<20/4096 {
		t.Fatalf("%d lazy data pages, want at least the workload's %d MiB", lazy, mib)
	}
	if dres.Stats.PageBytes > 4<<20 {
		t.Errorf("the lazy image holds %d bytes of pages; private memory should have stayed out", dres.Stats.PageBytes)
	}
	last, err := w.Drain(100 * time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	// About 40 MiB at 64 MiB/s: the push lasts most of a second.
	r := lazyRestore(t, context.Background(), tr, dres, img, ServeOptions{}, func(c net.Conn) io.ReadWriteCloser {
		return &throttled{Conn: c, rate: 64 << 20}
	}, nil)
	if len(r.res.Lazy) != 1 || r.res.Lazy[0].ImagePID != w.PID() {
		t.Fatalf("restore result lists %d lazy processes, want the workload", len(r.res.Lazy))
	}
	// It runs while its pages arrive.
	ticks := 0
	for {
		p, err := w.Next(ctx, 20*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if p.Tick != last.Tick+1 {
			t.Fatalf("restored copy printed tick %d after %d", p.Tick, last.Tick)
		}
		last = p
		select {
		case <-r.pager.Done():
		default:
			ticks++
			continue
		}
		break
	}
	st, err := r.pager.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if ticks == 0 {
		t.Errorf("the workload printed nothing while its pages arrived")
	}
	ss, err := r.serve()
	if err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if ss.PushEnded.IsZero() || ss.Acked.IsZero() || ss.Acked.Before(ss.PushEnded) {
		t.Errorf("source stats do not show the push ending, then the acknowledgement: %+v", ss)
	}
	if int(ss.PagesPushed+ss.PagesOnDemand+ss.ZeroPages) < lazy {
		t.Errorf("source sent %d+%d pages and %d zero markers, the image has %d lazy pages", ss.PagesPushed, ss.PagesOnDemand, ss.ZeroPages, lazy)
	}
	if st.Faults == 0 || st.PagesCopied == 0 || st.ResidualEnded.IsZero() || st.TimeToPushEnd() <= 0 {
		t.Errorf("pager stats look wrong: %+v", st)
	}
	t.Logf("%d ticks during the transfer; pager: %d faults (%d prefetch hits, %d zero), %d requests, %d pages copied, %d zero, %.1f MiB received, push ended after %v, residual dependency after %v",
		ticks, st.Faults, st.PrefetchHits, st.ZeroFaults, st.Requests, st.PagesCopied, st.ZeroPages, float64(st.BytesReceived)/(1<<20),
		st.TimeToPushEnd().Round(time.Millisecond), st.ResidualEnded.Sub(st.Started).Round(time.Millisecond))
	t.Logf("source: %d pushed, %d on demand, %d zero, %d requests, %.1f MiB sent",
		ss.PagesPushed, ss.PagesOnDemand, ss.ZeroPages, ss.Requests, float64(ss.BytesSent)/(1<<20))
	// A whole verification pass, started after the end, with no error.
	for start := last.Verified; last.Verified < start+2; {
		if last, err = w.Next(ctx, 20*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// churnProg is testdata/churn.c, built once per test binary, statically.
var churnProg = &testutil.CProgram{Src: "testdata/churn.c", Flags: []string{"-static", "-O2", "-Wall"}}

// churnProc is a running churn program and its output lines.
type churnProc struct {
	cmd   *exec.Cmd
	dir   string
	lines chan string
}

func startChurn(t *testing.T, tree bool) *churnProc {
	bin := churnProg.Path(t)
	dir := t.TempDir()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"CHURN_DIR=" + dir}
	if tree {
		cmd.Env = append(cmd.Env, "CHURN_TREE=1")
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	c := &churnProc{cmd: cmd, dir: dir, lines: make(chan string, 16)}
	var wg sync.WaitGroup
	wg.Go(func() {
		defer close(c.lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	})
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		pr.Close()
		wg.Wait()
	})
	if l := c.next(t); l != "ready" {
		t.Fatalf("churn printed %q, want ready", l)
	}
	return c
}

func (c *churnProc) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-c.lines:
		if !ok {
			t.Fatal("churn output ended")
		}
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("churn printed nothing for 30 s")
	}
	return ""
}

func (c *churnProc) signal(t *testing.T, name string) {
	if err := os.WriteFile(filepath.Join(c.dir, name), nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestChurnPostcopy: a program that discards, unmaps and moves parts of
// its memory and forks while the push runs reads exactly what it should,
// during the transfer and after; alone, and with a child that was part of
// the checkpoint.
func TestChurnPostcopy(t *testing.T) {
	needRoot(t)
	for _, tree := range []bool{false, true} {
		t.Run(map[bool]string{false: "single", true: "tree"}[tree], func(t *testing.T) {
			defer checkNoPagerGoroutines(t)
			c := startChurn(t, tree)
			tr := newTracer(t)
			dres, img := lazyDump(t, tr, c.cmd.Process.Pid, func() { c.cmd.Wait() })
			if n := len(dres.Lazy); n != map[bool]int{false: 1, true: 2}[tree] {
				t.Fatalf("lazy memory in %d processes", n)
			}
			checkRseqEager(t, dres)
			// About 70 MiB at 48 MiB/s: the churn happens early in the push.
			r := lazyRestore(t, context.Background(), tr, dres, img, ServeOptions{}, func(conn net.Conn) io.ReadWriteCloser {
				return &throttled{Conn: conn, rate: 48 << 20}
			}, func(*restore.Result) { c.signal(t, "go") })
			if l := c.next(t); l != "early ok" {
				t.Fatalf("restored churn: %q", l)
			}
			select {
			case <-r.pager.Done():
				t.Logf("the churn's first checks ended after the push")
			default:
				t.Logf("the churn's first checks ended during the push")
			}
			st, err := r.pager.Wait()
			if err != nil {
				t.Fatal(err)
			}
			c.signal(t, "verify")
			if l := c.next(t); l != "PASS" {
				t.Fatalf("restored churn after the transfer: %q", l)
			}
			if st.Forks != 1 {
				t.Errorf("pager saw %d forks, want 1", st.Forks)
			}
			ss, err := r.serve()
			if err != nil || ss.PushEnded.IsZero() || ss.Acked.IsZero() {
				t.Fatalf("Serve = %+v, %v; want the push ended and acknowledged", ss, err)
			}
			t.Logf("pager: %d faults (%d prefetch hits, %d zero), %d requests, %d pages copied, %d zero, %d forks, %d gone; push ended after %v",
				st.Faults, st.PrefetchHits, st.ZeroFaults, st.Requests, st.PagesCopied, st.ZeroPages, st.Forks, st.Exited, st.TimeToPushEnd().Round(time.Millisecond))
		})
	}
}

// checkRseqEager: the pages of registered rseq areas (glibc registers one
// per thread) travel in the image, not lazily.
func checkRseqEager(t *testing.T, res *dump.Result) {
	t.Helper()
	seen := false
	for _, p := range res.Checkpoint.Processes {
		for _, th := range p.Threads {
			if th.RseqAddr == 0 {
				continue
			}
			seen = true
			page := th.RseqAddr &^ 4095
			for _, v := range res.Lazy[p.PID] {
				for _, run := range v.Runs {
					if run.Addr <= page && page < run.Addr+run.Pages*4096 {
						t.Errorf("pid %d: the rseq page %#x is lazy", p.PID, page)
					}
				}
			}
		}
	}
	if !seen {
		t.Log("no thread registered rseq (libc without it?)")
	} else if res.Stats.PageBytes == 0 {
		t.Error("the image holds no pages, not even the rseq areas")
	}
}

// TestSourceGone: when the connection to the source breaks mid-transfer,
// Wait says so plainly, with the pages the process cannot get.
func TestSourceGone(t *testing.T) {
	needRoot(t)
	defer checkNoPagerGoroutines(t)
	w := startWorkload(t, 16, 0, 1, 50*time.Millisecond)
	tr := newTracer(t)
	dres, img := lazyDump(t, tr, w.PID(), w.Reap)
	r := lazyRestore(t, context.Background(), tr, dres, img, ServeOptions{}, func(c net.Conn) io.ReadWriteCloser {
		return &throttled{Conn: c, rate: 32 << 20, cut: 2 << 20}
	}, nil)
	_, err := r.pager.Wait()
	if !errors.Is(err, ErrSourceGone) {
		t.Fatalf("Wait = %v, want ErrSourceGone", err)
	}
	want := fmt.Sprintf("process %d (pid %d on the source) cannot get its remaining ", r.res.Lazy[0].PID, w.PID())
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("Wait = %q, want it to say %q", err, want)
	}
	t.Logf("Wait: %v", err)
	if _, err := r.serve(); err == nil {
		t.Errorf("Serve succeeded although its connection broke")
	}
	// The caller's decision: kill it, then close the pager.
	killRestored(r.res)
	if err := r.pager.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPagerCancel: cancelling the pager's context ends it at once, with
// the context's error, and leaves nothing running.
func TestPagerCancel(t *testing.T) {
	needRoot(t)
	defer checkNoPagerGoroutines(t)
	w := startWorkload(t, 16, 0, 1, 50*time.Millisecond)
	tr := newTracer(t)
	dres, img := lazyDump(t, tr, w.PID(), w.Reap)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := lazyRestore(t, ctx, tr, dres, img, ServeOptions{}, func(c net.Conn) io.ReadWriteCloser {
		return &throttled{Conn: c, rate: 1 << 20} // 16 s for the push
	}, nil)
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case <-r.pager.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the pager did not stop 5 s after its context was cancelled")
	}
	if _, err := r.pager.Wait(); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	killRestored(r.res)
	r.pager.Close()
	if _, err := r.serve(); err == nil {
		t.Error("Serve succeeded although the destination went away")
	}
}

// TestLazyImageNeedsLazyRestore: a lazy image is refused by a plain
// restore, before any process is created.
func TestLazyImageNeedsLazyRestore(t *testing.T) {
	needRoot(t)
	w := startWorkload(t, 4, 0, 1, 50*time.Millisecond)
	tr := newTracer(t)
	_, img := lazyDump(t, tr, w.PID(), w.Reap)
	ir, err := image.NewReaderBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	_, err = restore.Restore(context.Background(), tr, ir, restore.Options{NewPIDs: true})
	if err == nil || !strings.Contains(err.Error(), "lazy") {
		t.Fatalf("plain restore of a lazy image = %v, want a refusal", err)
	}
	// And a lazy dump insists on a frozen source.
	var buf bytes.Buffer
	iw, _ := image.NewWriter(&buf)
	if _, err := dump.Dump(context.Background(), tr, os.Getppid(), iw, dump.Options{Lazy: true}); err == nil || !strings.Contains(err.Error(), "Frozen") {
		t.Fatalf("lazy dump without Leave: Frozen = %v, want a refusal", err)
	}
}

// BenchmarkPostcopy64M moves a 64 MiB idle workload: restore-ms is the
// start of the restore to the process running, push-end-ms to the end of
// the source's push, residual-ms to the end of the dependency.
func BenchmarkPostcopy64M(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	w := startWorkload(b, 64, 0, 1, 200*time.Millisecond)
	tr := newTracer(b)
	dres, img := lazyDump(b, tr, w.PID(), w.Reap)
	b.SetBytes(64 << 20)
	var restoreT, pushT, residualT time.Duration
	for b.Loop() {
		r := &restored{started: time.Now()}
		ir, err := image.NewReaderBytes(img)
		if err != nil {
			b.Fatal(err)
		}
		inherit := inheritPipes(b, dres)
		r.res, err = restore.Restore(ctx, tr, ir, restore.Options{NewPIDs: true, Lazy: true, Inherit: inherit})
		closeAll(inherit)
		if err != nil {
			b.Fatal(err)
		}
		restoreT += r.res.Duration
		src, dst := socketPair(b)
		serveErr := make(chan error, 1)
		go func() {
			_, err := Serve(ctx, src, SourceProcesses(dres), ServeOptions{})
			serveErr <- err
		}()
		p, err := StartPager(ctx, dst, r.res.Lazy, PagerOptions{})
		if err != nil {
			b.Fatal(err)
		}
		st, err := p.Wait()
		if err != nil {
			b.Fatal(err)
		}
		if err := <-serveErr; err != nil {
			b.Fatal(err)
		}
		pushT += st.PushEnded.Sub(r.started)
		residualT += st.ResidualEnded.Sub(r.started)
		b.StopTimer()
		if _, err := w.Next(ctx, 10*time.Second); err != nil {
			b.Fatal(err)
		}
		killRestored(r.res)
		p.Close()
		w.Drain(10 * time.Millisecond)
		b.StartTimer()
	}
	n := time.Duration(b.N)
	b.ReportMetric(float64(restoreT/n)/1e6, "restore-ms/op")
	b.ReportMetric(float64(pushT/n)/1e6, "push-end-ms/op")
	b.ReportMetric(float64(residualT/n)/1e6, "residual-ms/op")
}
