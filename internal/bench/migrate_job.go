package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	"ferry/internal/migrate"
	"ferry/internal/node"
	"ferry/internal/workload"
)

// rig is a two-node cluster running in this process.
type rig struct {
	cfg MigrateConfig
	dir string
	lc  *node.Local
	env *jobEnv
}

// jobEnv is what a benchJob needs of the cluster it runs on.
type jobEnv struct {
	exe     string                  // ferry's binary: the workload is `exe workload ...`
	clients map[string]*node.Client // by node id
	// readyTimeout bounds the wait for a workload to fill its memory;
	// moveTimeout one migration, and the checks after it.
	readyTimeout, moveTimeout time.Duration
}

// nodeIDs are the two nodes, the workload starting on the first.
var nodeIDs = []string{"n1", "n2"}

func startRig(ctx context.Context, cfg MigrateConfig) (*rig, error) {
	dir, err := os.MkdirTemp(cfg.Dir, "ferry-bench-migrate-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	lc, err := node.StartLocal(ctx, node.LocalConfig{Dir: dir, IDs: nodeIDs, Exe: cfg.Exe, Log: cfg.Log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: start nodes: %w", err)
	}
	env := &jobEnv{exe: cfg.Exe, clients: lc.Clients, readyTimeout: cfg.ReadyTimeout, moveTimeout: cfg.MoveTimeout}
	return &rig{cfg: cfg, dir: dir, lc: lc, env: env}, nil
}

func (rg *rig) close() {
	rg.lc.Stop()
	os.RemoveAll(rg.dir)
}

// runCase starts the workload of c, moves it 1+Repeat times, the first
// not counted, and stops it. Whatever fails is in the result's Error.
func (rg *rig) runCase(ctx context.Context, c MigrateCase) MigrateResult {
	res := MigrateResult{MigrateCase: c}
	log := rg.cfg.Log.With("case", c.String())
	fmt.Fprintf(rg.cfg.Progress, "%s: starting the workload\n", c)
	j, err := startJob(ctx, rg.env, nodeIDs[0], c)
	if err != nil {
		res.Error = err.Error()
		log.Warn("case failed", "err", err)
		return res
	}
	defer j.close()
	err = func() error {
		for i := -1; i < rg.cfg.Repeat; i++ { // -1: warm-up, not counted
			from, to := j.at, otherNode(j.at)
			if i < 0 {
				fmt.Fprintf(rg.cfg.Progress, "%s: warm-up move %s → %s\n", c, from, to)
			} else {
				fmt.Fprintf(rg.cfg.Progress, "%s: move %d of %d, %s → %s\n", c, i+1, rg.cfg.Repeat, from, to)
			}
			rep, took, err := j.move(ctx, to, c.Mode)
			if err != nil {
				return err
			}
			log.Debug("moved", "from", from, "to", to, "freeze", rep.FreezeTime, "total", rep.Total)
			if i >= 0 {
				res.Samples = append(res.Samples, moveSample(from, to, took, rep))
			}
			if err := j.settle(ctx, time.Now()); err != nil {
				return fmt.Errorf("after the move %s → %s: %w", from, to, err)
			}
		}
		// One whole verification pass after the last move, then stop.
		if err := j.verifiedAfter(ctx, j.w.last()); err != nil {
			return fmt.Errorf("after the last move: %w", err)
		}
		return nil
	}()
	last := j.w.last()
	res.Ticks, res.Verified = last.Tick, last.Verified
	if serr := j.stop(ctx); err == nil {
		err = serr
	}
	if err != nil {
		res.Error = err.Error()
		log.Warn("case failed", "err", err)
	}
	res.summarizeMoves()
	return res
}

// benchJob is the workload running as a job of a cluster, its output
// followed and checked line by line.
type benchJob struct {
	env  *jobEnv
	c    MigrateCase
	id   string
	at   string // the node it runs on
	w    *lineWatch
	errs *firstBytes // its standard error, for error messages

	cancel context.CancelFunc // ends following its output
	wg     sync.WaitGroup     // the goroutines following it
	ended  chan struct{}      // closed when its output ends
	end    *node.JobInfo      // the job as it ended; set before ended is closed
	endErr error
}

// jobCmd is the workload's command line for c.
func jobCmd(exe string, c MigrateCase) []string {
	cmd := []string{exe, "workload", "--mem", strconv.Itoa(c.SizeMiB),
		"--rate", strconv.FormatFloat(c.RateMiBps, 'g', -1, 64),
		"--threads", strconv.Itoa(jobThreads), "--interval", jobInterval.String()}
	if c.Random {
		cmd = append(cmd, "--random")
	}
	return cmd
}

// startJob runs the workload of c on node at and waits until it has
// filled its memory (its first progress line).
func startJob(ctx context.Context, env *jobEnv, at string, c MigrateCase) (*benchJob, error) {
	info, err := env.clients[at].Run(ctx, node.RunRequest{Node: at, Cmd: jobCmd(env.exe, c)})
	if err != nil {
		return nil, fmt.Errorf("start the workload: %w", err)
	}
	lctx, cancel := context.WithCancel(ctx)
	j := &benchJob{env: env, c: c, id: info.ID, at: at, w: newLineWatch(c.SizeMiB), errs: &firstBytes{max: 2048},
		cancel: cancel, ended: make(chan struct{})}
	pr, pw := io.Pipe()
	j.wg.Go(func() {
		j.end, j.endErr = env.clients[at].Logs(lctx, info.ID, true, pw, j.errs)
		pw.Close()
		close(j.ended)
	})
	j.wg.Go(func() { j.w.read(pr) })
	if _, err := j.w.wait(ctx, env.readyTimeout, "the first progress line",
		func(p workload.Progress) bool { return p.Tick >= 1 }); err != nil {
		err = fmt.Errorf("workload %s not ready: %w%s", info.ID, err, j.errs.suffix())
		j.stop(ctx)
		j.close()
		return nil, err
	}
	return j, nil
}

// otherNode is the node of the two that is not at.
func otherNode(at string) string {
	if at == nodeIDs[0] {
		return nodeIDs[1]
	}
	return nodeIDs[0]
}

// move migrates the job to node to, in mode, and returns the report and
// how long the call took.
func (j *benchJob) move(ctx context.Context, to string, mode migrate.Mode) (*migrate.Report, time.Duration, error) {
	mctx, cancel := context.WithTimeout(ctx, j.env.moveTimeout)
	defer cancel()
	start := time.Now()
	rep, err := j.env.clients[j.at].Migrate(mctx, j.id, node.MigrateRequest{To: to, Mode: string(mode)}, nil)
	took := time.Since(start)
	if err == nil && (rep == nil || !rep.Committed) {
		err = errors.New("the migration ended without committing")
	}
	if err != nil {
		return nil, took, fmt.Errorf("move %s → %s: %w", j.at, to, err)
	}
	j.at = to
	return rep, took, nil
}

// settle waits, after a move that ended at moved, for settleTicks
// progress lines printed since and a verification pass that ended after
// the first of them: the workload carries on, its memory intact. Lines
// printed before the freeze may arrive after the move returned, so the
// lines' own times tell which came after it.
func (j *benchJob) settle(ctx context.Context, moved time.Time) error {
	// Line times have millisecond precision, truncated.
	moved = moved.Add(-time.Millisecond)
	first, err := j.w.wait(ctx, j.env.moveTimeout, "progress line after the move",
		func(p workload.Progress) bool { return !p.Time.Before(moved) })
	if err != nil {
		return err
	}
	_, err = j.w.wait(ctx, j.env.moveTimeout, "verification pass after the move",
		func(p workload.Progress) bool {
			return p.Tick >= first.Tick+settleTicks-1 && p.Verified > first.Verified
		})
	return err
}

// verifiedAfter waits until a verification pass has started and ended
// after the line from was printed: every page checked since.
func (j *benchJob) verifiedAfter(ctx context.Context, from workload.Progress) error {
	_, err := j.w.wait(ctx, j.env.moveTimeout, "a whole verification pass",
		func(p workload.Progress) bool { return p.Verified >= from.Verified+2 })
	return err
}

// stop sends the job SIGTERM, on which the workload ends cleanly, and
// waits for its end (SIGKILL after a while).
func (j *benchJob) stop(ctx context.Context) error {
	for _, sig := range []int{15, 9} {
		if err := j.env.clients[j.at].Signal(ctx, j.id, sig); err != nil {
			select {
			case <-j.ended: // it had ended already
				return j.endState()
			default:
			}
			return fmt.Errorf("signal %d to job %s: %w", sig, j.id, err)
		}
		select {
		case <-j.ended:
			return j.endState()
		case <-time.After(30 * time.Second):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return fmt.Errorf("job %s did not end", j.id)
}

// endState checks how the ended job ended.
func (j *benchJob) endState() error {
	if j.endErr != nil {
		return fmt.Errorf("follow job %s: %w", j.id, j.endErr)
	}
	if err := j.w.err(); err != nil {
		return err
	}
	switch e := j.end; {
	case e == nil:
		return fmt.Errorf("job %s: no end state", j.id)
	case e.State == "lost":
		return fmt.Errorf("job %s lost: %s", j.id, e.Error)
	case e.Exit != nil && *e.Exit != 0:
		return fmt.Errorf("job %s exited with %d%s", j.id, *e.Exit, j.errs.suffix())
	}
	return nil
}

// close stops following the job and waits for that. A job still running
// is left to the nodes, which end it when they stop.
func (j *benchJob) close() {
	j.cancel()
	j.wg.Wait()
}

// lineWatch checks a workload's progress lines as they come: ticks rise
// by one, the PID and size stay the same, memory is verified ok.
type lineWatch struct {
	mib int

	mu     sync.Mutex        // guards the fields below
	prev   workload.Progress // the newest progress line, not counting the done line
	bad    error             // the first thing found wrong
	ended  bool              // the output ended
	wakeup chan struct{}     // closed, and replaced, on every change
}

func newLineWatch(mib int) *lineWatch { return &lineWatch{mib: mib, wakeup: make(chan struct{})} }

// read checks lines from r until it ends.
func (w *lineWatch) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if p, ok := workload.ParseLine(sc.Text()); ok {
			w.add(p)
		}
	}
	w.mu.Lock()
	w.ended = true
	w.changedLocked()
	w.mu.Unlock()
	io.Copy(io.Discard, r) // a line too long for the scanner: do not block the writer
}

func (w *lineWatch) add(p workload.Progress) {
	w.mu.Lock()
	defer w.mu.Unlock()
	defer w.changedLocked()
	if w.bad != nil {
		return
	}
	switch {
	case !p.OK:
		w.bad = fmt.Errorf("the workload found its memory corrupted at tick %d: %s: %w", p.Tick, p.Err, workload.ErrCorrupt)
	case p.Done:
		w.prev.Verified = max(w.prev.Verified, p.Verified)
		return
	case p.Tick != w.prev.Tick+1:
		w.bad = fmt.Errorf("the workload printed tick %d after tick %d: output lost or repeated", p.Tick, w.prev.Tick)
	case w.prev.Tick != 0 && p.PID != w.prev.PID:
		w.bad = fmt.Errorf("the workload's pid changed from %d to %d at tick %d", w.prev.PID, p.PID, p.Tick)
	case p.MemMiB != w.mib:
		w.bad = fmt.Errorf("the workload holds %d MiB, want %d", p.MemMiB, w.mib)
	}
	w.prev = p
}

func (w *lineWatch) changedLocked() {
	close(w.wakeup)
	w.wakeup = make(chan struct{})
}

func (w *lineWatch) last() workload.Progress {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.prev
}

func (w *lineWatch) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad
}

// wait waits up to timeout for a line that satisfies ok, and fails as
// soon as a line is wrong or the output ends.
func (w *lineWatch) wait(ctx context.Context, timeout time.Duration, what string, ok func(workload.Progress) bool) (workload.Progress, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		w.mu.Lock()
		p, bad, ended, wakeup := w.prev, w.bad, w.ended, w.wakeup
		w.mu.Unlock()
		switch {
		case bad != nil:
			return p, bad
		case ok(p):
			return p, nil
		case ended:
			return p, fmt.Errorf("the workload's output ended (tick %d) before %s", p.Tick, what)
		}
		select {
		case <-wakeup:
		case <-timer.C:
			return p, fmt.Errorf("no %s within %v (tick %d, %d passes verified)", what, timeout, p.Tick, p.Verified)
		case <-ctx.Done():
			return p, ctx.Err()
		}
	}
}

// firstBytes keeps the first max bytes written to it: the start of a
// panic, say.
type firstBytes struct {
	max int
	mu  sync.Mutex // guards b
	b   []byte
}

func (t *firstBytes) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if room := t.max - len(t.b); room > 0 {
		t.b = append(t.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// suffix is ": <what was written>" or "".
func (t *firstBytes) suffix() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.b) == 0 {
		return ""
	}
	return ": " + string(t.b)
}
