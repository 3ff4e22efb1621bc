package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"time"

	"ferry/internal/migrate"
	"ferry/internal/procfs"
)

// The soak benchmark (RunSoak) starts real `ferry node` daemons on this
// machine, runs Jobs workloads on them and moves every one, concurrently
// and for Duration, to a random other node in a random mode, checking
// after each move that the workload carries on (same PID, no tick lost or
// repeated, its memory verified). It reports the migrations made, the
// failures grouped by cause, migration times by mode, and each daemon's
// descriptors, threads, memory and goroutines before, during and after,
// saying what grew beyond noise.

// SoakConfig describes a soak run.
type SoakConfig struct {
	// Exe is ferry's binary: the daemons are `Exe node ...`, and the
	// workload `Exe workload ...`. Required.
	Exe      string
	Nodes    int           // default 3
	Jobs     int           // jobs moving at once; default 10
	Duration time.Duration // how long moves are started; default 10 minutes
	Modes    []migrate.Mode
	// SizeMiB and RateMiBps are each job's memory and dirty rate; default
	// 32 MiB and 4 MiB/s, a negative rate for idle jobs.
	SizeMiB   int
	RateMiBps float64
	// Seed chooses the moves; 0 for one from the clock (reported).
	Seed int64
	// Sample is how often the daemons' figures are read during the run;
	// default a tenth of Duration, between 5 s and 1 minute.
	Sample time.Duration
	// Faults are `ferry node --fault` values by node id: migrations to or
	// from that node fail there (tests).
	Faults map[string][]string
	// Dir is where the cluster's directory goes; default the system's
	// temporary directory.
	Dir string
	// ReadyTimeout bounds a workload's start; MoveTimeout one migration,
	// and the checks after it. Default 2 minutes each.
	ReadyTimeout time.Duration
	MoveTimeout  time.Duration
	Log          *slog.Logger
	// Progress, if set, receives a line at each step and sample.
	Progress io.Writer
}

func (cfg *SoakConfig) setDefaults() error {
	if cfg.Exe == "" {
		return errors.New("bench: no ferry binary for the nodes")
	}
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Nodes < 2 {
		return fmt.Errorf("bench: soak on %d nodes: needs at least 2", cfg.Nodes)
	}
	if cfg.Jobs <= 0 {
		cfg.Jobs = 10
	}
	if cfg.Duration <= 0 {
		cfg.Duration = 10 * time.Minute
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []migrate.Mode{migrate.Freeze, migrate.Precopy, migrate.Postcopy}
	}
	for _, m := range cfg.Modes {
		if _, err := migrate.ParseMode(string(m)); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if cfg.SizeMiB == 0 {
		cfg.SizeMiB = 32
	}
	if cfg.SizeMiB < 1 {
		return fmt.Errorf("bench: size %d MiB: must be at least 1", cfg.SizeMiB)
	}
	if cfg.RateMiBps == 0 {
		cfg.RateMiBps = 4
	}
	cfg.RateMiBps = max(cfg.RateMiBps, 0)
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano()
	}
	if cfg.Sample <= 0 {
		cfg.Sample = min(max(cfg.Duration/10, 5*time.Second), time.Minute)
	}
	if cfg.Dir == "" {
		cfg.Dir = os.TempDir()
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	if cfg.MoveTimeout <= 0 {
		cfg.MoveTimeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	return nil
}

// RunSoak runs the soak benchmark of cfg. Failed moves and jobs that fail
// their checks are in the report (a job that fails is replaced, so that
// Jobs keep moving); RunSoak itself fails when the cluster does — a
// daemon dies, its figures cannot be read — or ctx ends. The daemons and
// jobs it started are gone when it returns.
func RunSoak(ctx context.Context, cfg SoakConfig) (*SoakReport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root: jobs run in PID namespaces of their own and migrate with ptrace")
	}
	rep := &SoakReport{CPUs: runtime.NumCPU(), Jobs: cfg.Jobs, SizeMiB: cfg.SizeMiB, RateMiBps: cfg.RateMiBps,
		Modes: cfg.Modes, DurationS: cfg.Duration.Seconds(), Seed: cfg.Seed,
		Moves: []SoakMove{}, Failed: []SoakFailure{}} // [] rather than null in JSON
	rep.Kernel, _ = procfs.KernelRelease()

	fmt.Fprintf(cfg.Progress, "starting %d ferry node daemons\n", cfg.Nodes)
	dc, err := startDaemons(ctx, cfg.Exe, cfg.Dir, cfg.Nodes, cfg.Faults)
	if err != nil {
		return nil, err
	}
	rep.Nodes = dc.ids
	s := &soak{cfg: cfg, dc: dc, rep: rep,
		env: &jobEnv{exe: cfg.Exe, clients: dc.clients, readyTimeout: cfg.ReadyTimeout, moveTimeout: cfg.MoveTimeout}}
	err = s.run(ctx)
	// Stop the jobs before the daemons (jobs may outlive them), with a
	// context of their own: ctx may be why the run ended.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	s.stopJobs(sctx)
	if err == nil {
		s.waitIdle(sctx)
		err = s.snapshot(sctx, SnapIdleEnd, true)
	}
	if down := dc.downNodes(); len(down) > 0 && err == nil {
		err = fmt.Errorf("bench: nodes died during the soak: %v", down)
	}
	rep.LeftoverProcs = dc.stop()
	if err != nil {
		return nil, err
	}
	rep.finish()
	return rep, nil
}

// soak is one run of RunSoak.
type soak struct {
	cfg   SoakConfig
	dc    *daemonCluster
	env   *jobEnv
	rep   *SoakReport
	start time.Time // of the moves
	// runCtx is the run's context: the jobs' output is followed under it,
	// also that of jobs started by a worker, whose context ends first.
	runCtx context.Context

	mu   sync.Mutex // guards the fields below, and rep's Moves, Failed and JobResults
	jobs []*soakJob // running, by slot
}

// soakJob is a benchJob moved by one worker of the soak.
type soakJob struct {
	*benchJob
	res *SoakJob // in rep.JobResults
}

// Snapshot labels.
const (
	SnapIdleStart   = "idle start"   // the daemons up, no job yet
	SnapLoadedStart = "loaded start" // every job running, before the first move
	SnapSample      = "sample"       // during the moves
	SnapLoadedEnd   = "loaded end"   // the last move settled, every job running
	SnapIdleEnd     = "idle end"     // every job stopped
)

func (s *soak) run(ctx context.Context) error {
	s.runCtx = ctx
	if err := s.snapshot(ctx, SnapIdleStart, true); err != nil {
		return err
	}
	s.jobs = make([]*soakJob, s.cfg.Jobs)
	for i := range s.jobs {
		at := s.dc.ids[i%len(s.dc.ids)]
		j, err := s.startJob(ctx, at)
		if err != nil {
			return err
		}
		s.jobs[i] = j
	}
	fmt.Fprintf(s.cfg.Progress, "%d jobs of %s @ %g MiB/s running\n", s.cfg.Jobs, sizeName(s.cfg.SizeMiB), s.cfg.RateMiBps)
	if err := s.snapshot(ctx, SnapLoadedStart, true); err != nil {
		return err
	}

	s.start = time.Now()
	deadline := s.start.Add(s.cfg.Duration)
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i := range s.jobs {
		rng := rand.New(rand.NewPCG(uint64(s.cfg.Seed), uint64(i)))
		wg.Go(func() {
			if err := s.work(wctx, i, rng, deadline); err != nil {
				cancel(err)
			}
		})
	}
	// Sample the daemons while the workers run; a daemon that dies or
	// stops answering ends the run.
	tick := time.NewTicker(s.cfg.Sample)
	workersDone := make(chan struct{})
	go func() { wg.Wait(); close(workersDone) }() // owned here: waited for below
	var err error
sampling:
	for {
		select {
		case <-workersDone:
			break sampling
		case <-tick.C:
			if err = s.snapshot(wctx, SnapSample, false); err != nil {
				cancel(err)
				<-workersDone
				break sampling
			}
			s.progress()
		}
	}
	tick.Stop()
	if err == nil {
		err = context.Cause(wctx) // nil unless a worker failed or ctx ended
	}
	if err != nil {
		return err
	}
	s.rep.ElapsedS = time.Since(s.start).Seconds()
	return s.snapshot(ctx, SnapLoadedEnd, true)
}

// progress prints the figures so far.
func (s *soak) progress() {
	s.mu.Lock()
	moves, failed := len(s.rep.Moves), len(s.rep.Failed)
	s.mu.Unlock()
	snap := s.rep.Snapshots[len(s.rep.Snapshots)-1]
	t := snap.total()
	fmt.Fprintf(s.cfg.Progress, "%v: %d migrations, %d failed; daemons together: %d fds, %d threads, %s RSS, %d goroutines\n",
		time.Since(s.start).Round(time.Second), moves, failed, t.FDs, t.Threads, mibName(t.RSSBytes), t.Goroutines)
}

// startJob starts a workload on node at and records it.
func (s *soak) startJob(ctx context.Context, at string) (*soakJob, error) {
	c := MigrateCase{SizeMiB: s.cfg.SizeMiB, RateMiBps: s.cfg.RateMiBps}
	j, err := startJob(ctx, s.env, at, c)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res := &SoakJob{ID: j.id}
	s.rep.JobResults = append(s.rep.JobResults, res)
	return &soakJob{benchJob: j, res: res}, nil
}

// work moves the job of slot i until deadline: to a random other node, in
// a random mode, checking after each move that it carries on. A job that
// fails its checks or is lost is recorded, stopped and replaced. Only the
// cluster failing (a job cannot be started) or ctx ending is an error.
func (s *soak) work(ctx context.Context, i int, rng *rand.Rand, deadline time.Time) error {
	for time.Now().Before(deadline) {
		s.mu.Lock()
		j := s.jobs[i]
		s.mu.Unlock()
		from := j.at
		to := s.dc.ids[rng.IntN(len(s.dc.ids)-1)]
		if to == from {
			to = s.dc.ids[len(s.dc.ids)-1]
		}
		mode := s.cfg.Modes[rng.IntN(len(s.cfg.Modes))]
		rep, took, err := j.move(ctx, to, mode)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			s.moveFailed(j, mode, from, to, err)
			if jerr := s.checkAfterFailure(ctx, j); jerr != nil {
				if err := s.replace(ctx, i, jerr); err != nil {
					return err
				}
				continue
			}
			// Rolled back: the job runs on at the source. Let it run a
			// little before trying again.
			select {
			case <-time.After(time.Second):
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		s.moved(j, moveSample(from, to, took, rep), mode)
		if err := j.settle(ctx, time.Now()); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if err := s.replace(ctx, i, fmt.Errorf("after the %s move %s → %s: %w", mode, from, to, err)); err != nil {
				return err
			}
		}
	}
	// One whole verification pass after the last move.
	s.mu.Lock()
	j := s.jobs[i]
	s.mu.Unlock()
	if err := j.verifiedAfter(ctx, j.w.last()); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.jobFailed(j, fmt.Errorf("after the last move: %w", err))
	}
	return nil
}

// checkAfterFailure checks, after a move of j failed, that j still runs
// on some node with its output intact, and learns where.
func (s *soak) checkAfterFailure(ctx context.Context, j *soakJob) error {
	if err := j.w.err(); err != nil {
		return err
	}
	info, err := s.env.clients[j.at].Job(ctx, j.id)
	if err != nil {
		return fmt.Errorf("job %s after a failed move: %w", j.id, err)
	}
	if info.State != "running" {
		return fmt.Errorf("job %s %s after a failed move: %s", j.id, info.State, info.Error)
	}
	j.at = info.Node
	// It carries on: a line and a verification pass since the failure.
	return j.settle(ctx, time.Now())
}

func (s *soak) moved(j *soakJob, m MoveSample, mode migrate.Mode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Moves = append(s.rep.Moves, SoakMove{Mode: mode, MoveSample: m})
	j.res.Moves++
}

func (s *soak) moveFailed(j *soakJob, mode migrate.Mode, from, to string, err error) {
	s.cfg.Log.Warn("soak: move failed", "job", j.id, "mode", mode, "from", from, "to", to, "err", err)
	fmt.Fprintf(s.cfg.Progress, "job %s: %s move %s → %s failed: %v\n", j.id, mode, from, to, err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rep.Failed = append(s.rep.Failed, SoakFailure{Mode: mode, Job: j.id, From: from, To: to, Error: err.Error()})
	j.res.FailedMoves++
}

// jobFailed records why j failed its checks, with its last line.
func (s *soak) jobFailed(j *soakJob, err error) {
	s.cfg.Log.Warn("soak: job failed", "job", j.id, "err", err)
	fmt.Fprintf(s.cfg.Progress, "job %s failed: %v\n", j.id, err)
	last := j.w.last()
	s.mu.Lock()
	defer s.mu.Unlock()
	j.res.Error = err.Error()
	j.res.Ticks, j.res.Verified = last.Tick, last.Verified
}

// replace records why the job of slot i failed, stops it and starts a new
// one on the node it was on.
func (s *soak) replace(ctx context.Context, i int, why error) error {
	s.mu.Lock()
	j := s.jobs[i]
	s.mu.Unlock()
	s.jobFailed(j, why)
	j.stop(ctx) // how it ends no longer counts: it failed already
	j.close()
	// Not ctx: the new job's output is followed until the jobs stop,
	// after the workers' context ended.
	nj, err := s.startJob(s.runCtx, j.at)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.jobs[i] = nj
	s.mu.Unlock()
	return nil
}

// stopJobs stops every job still running (SIGTERM: the workload ends
// cleanly, exit 0) and records how each ended.
func (s *soak) stopJobs(ctx context.Context) {
	var wg sync.WaitGroup
	for _, j := range s.jobs {
		if j == nil {
			continue
		}
		wg.Go(func() {
			err := j.stop(ctx)
			j.close()
			last := j.w.last()
			s.mu.Lock()
			defer s.mu.Unlock()
			j.res.Ticks, j.res.Verified = last.Tick, last.Verified
			if err != nil && j.res.Error == "" {
				j.res.Error = "at its stop: " + err.Error()
			}
		})
	}
	wg.Wait()
}

// peerIdleWait is how long the daemons keep an idle connection to a peer
// (node.go's peer transport, IdleConnTimeout) and a little more.
const peerIdleWait = 35 * time.Second

// waitIdle waits, after the jobs stopped, up to peerIdleWait until every
// daemon is back to its idle start's descriptors and goroutines, less the
// bench's own idle connections to it: the idle end is then taken once the
// peers' idle connections closed, and compares like with like.
func (s *soak) waitIdle(ctx context.Context) {
	base, ok := s.rep.snap(SnapIdleStart)
	if !ok {
		return
	}
	const benchConns = 2 // the bench's idle connections to a daemon
	for end := time.Now().Add(peerIdleWait); time.Now().Before(end); {
		figs, err := s.dc.figures(ctx)
		if err != nil {
			return // the snapshot after says why
		}
		back := true
		for _, f := range figs {
			b, _ := base.daemon(f.Node)
			back = back && f.FDs <= b.FDs+benchConns && f.Goroutines <= b.Goroutines+2*benchConns
		}
		if back {
			return
		}
		select {
		case <-time.After(time.Second):
		case <-ctx.Done():
			return
		}
	}
}

// snapshot reads every daemon's figures into the report; with settle, it
// first waits (up to 10 s) until two readings half a second apart agree
// on descriptors and goroutines: the moment's stragglers (a connection
// closing, a goroutine ending) are not counted.
func (s *soak) snapshot(ctx context.Context, label string, settle bool) error {
	figs, err := s.dc.figures(ctx)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", label, err)
	}
	stable := !settle
	for end := time.Now().Add(10 * time.Second); settle && time.Now().Before(end); {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		next, err := s.dc.figures(ctx)
		if err != nil {
			return fmt.Errorf("bench: %s: %w", label, err)
		}
		same := true
		for k := range next {
			same = same && next[k].FDs == figs[k].FDs && next[k].Goroutines == figs[k].Goroutines
		}
		figs = next
		if same {
			stable = true
			break
		}
	}
	snap := SoakSnapshot{Label: label, Daemons: figs, Settled: settle && stable}
	if !s.start.IsZero() {
		snap.AtS = time.Since(s.start).Seconds()
	}
	s.mu.Lock()
	s.rep.Snapshots = append(s.rep.Snapshots, snap)
	s.mu.Unlock()
	return nil
}
