package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"

	"ferry/internal/migrate"
	"ferry/internal/procfs"
)

// Migration figures. RunMigrate starts two nodes in this process (as
// `ferry demo` does: loopback, mutual TLS), runs ferry's built-in workload
// as a job on n1 for each size, dirty rate and transfer mode, and moves it
// back and forth between the nodes, checking after every move that it
// carries on (same PID, no tick lost or repeated, its memory verified).
// Beside the figures stand the limits measured in the same run: loopback
// TCP and TLS throughput, filling fresh memory, and pushing the process's
// size through loopback TCP into fresh memory, which a move by freezing
// cannot beat.

// MigrateConfig describes a migration benchmark run.
type MigrateConfig struct {
	// Exe is ferry's binary: the nodes start job inits and migration
	// agents from it, and the workload is `Exe workload ...`. Required.
	Exe        string
	SizesMiB   []int          // default 64 and 1024
	RatesMiBps []float64      // dirty rates; default 0, 16 and 128
	Modes      []migrate.Mode // default freeze, precopy and postcopy
	// RandomRate is the dirty rate of one more postcopy case per size in
	// which the workload writes random pages (sequential runs otherwise);
	// default 64 MiB/s, negative for none.
	RandomRate float64
	// Repeat is the number of counted moves per case, after one warm-up
	// move; default 3.
	Repeat int
	// Dir is where the nodes' state goes (a new directory in it); default
	// the system's temporary directory.
	Dir string
	// ReadyTimeout bounds the wait for a workload to fill its memory;
	// MoveTimeout one migration, and the checks after it. Default 2
	// minutes each.
	ReadyTimeout time.Duration
	MoveTimeout  time.Duration
	Log          *slog.Logger
	// Progress, if set, receives a line as each step starts.
	Progress io.Writer
}

// The workload of every case: one writing thread, a line every 200 ms.
const (
	jobThreads  = 1
	jobInterval = 200 * time.Millisecond
	// settleTicks is how many progress lines must follow a move before the
	// next: the workload runs, and writes, between moves.
	settleTicks = 2
)

// MigrateReport is the outcome of RunMigrate. Times are in milliseconds,
// medians over the counted moves or samples; throughputs in GB/s.
type MigrateReport struct {
	Kernel string `json:"kernel"`
	CPUs   int    `json:"cpus"`
	THP    string `json:"transparent_hugepages"`
	Repeat int    `json:"repeat"`
	// Interval is the workload's progress (and verification) interval.
	IntervalMs float64         `json:"workload_interval_ms"`
	Sizes      []MigrateSize   `json:"sizes"`
	Targets    []MigrateTarget `json:"targets,omitempty"`
}

// MigrateSize holds the figures for one process size.
type MigrateSize struct {
	SizeMiB int            `json:"size_mib"`
	Limits  LoopbackLimits `json:"limits"`
	// Cases are the moves, by mode and then by rate.
	Cases []MigrateResult `json:"cases"`
	// GivenBackMiB: memory the VM reported free to its host while this
	// size was measured, -1 where not known (see Report).
	GivenBackMiB int64 `json:"given_back_to_host_mib"`
}

// LoopbackLimits are the reference figures of one size, measured in the
// same run: medians after a warm-up.
type LoopbackLimits struct {
	Bytes int64 `json:"bytes"` // what each measurement moves: the size
	// TCPGBps and TLSGBps: pushing Bytes over loopback into a buffer
	// already touched.
	TCPGBps   float64 `json:"tcp_gbps"`
	TLSGBps   float64 `json:"tls_gbps"`
	TLSCipher string  `json:"tls_cipher"`
	// FreshGBps is the fastest way of FreshGBpsBy: filling Bytes of fresh
	// memory on one thread, by method (FillMethods).
	FreshGBps   float64            `json:"fresh_memory_gbps"`
	FreshMethod string             `json:"fresh_memory_method"`
	FreshGBpsBy map[string]float64 `json:"fresh_memory_gbps_by_method"`
	// PushFreshMs: pushing Bytes through loopback TCP into fresh memory
	// (the bound of a move by freezing); PushFreshTLSMs the same through
	// TLS.
	PushFreshMs    float64 `json:"push_fresh_ms"`
	PushFreshTLSMs float64 `json:"push_fresh_tls_ms"`
	// Noisy names the series whose slowest sample took over 1.5 times as
	// long as the fastest; Samples holds every counted sample in ms.
	Noisy   []string             `json:"noisy,omitempty"`
	Samples map[string][]float64 `json:"samples_ms"`
}

// MigrateCase is one kind of move: a size, a dirty rate, a mode.
type MigrateCase struct {
	SizeMiB   int          `json:"size_mib"`
	RateMiBps float64      `json:"rate_mibps"`
	Random    bool         `json:"random,omitempty"` // random pages rather than sequential runs
	Mode      migrate.Mode `json:"mode"`
}

// String names c: "postcopy 1 GiB @ 64 MiB/s random".
func (c MigrateCase) String() string {
	return fmt.Sprintf("%s %s @ %s", c.Mode, sizeName(c.SizeMiB), c.rateName())
}

func (c MigrateCase) rateName() string {
	s := strconv.FormatFloat(c.RateMiBps, 'g', -1, 64) + " MiB/s"
	if c.Random {
		s += " random"
	}
	return s
}

// MigrateResult holds the figures of one case: medians over its counted
// moves, from migrate.Report.
type MigrateResult struct {
	MigrateCase
	// Error is why the case failed (a move failed, or the workload did not
	// carry on after it); its figures are then those of the moves before.
	Error string `json:"error,omitempty"`
	Moves int    `json:"moves"` // counted moves that committed

	FreezeMs       float64 `json:"freeze_ms"`
	RunningAfterMs float64 `json:"running_after_ms"`
	TotalMs        float64 `json:"total_ms"`
	// CallMs is the move as the client saw it: Total, plus the node
	// preparing the destination and starting the migration agents.
	CallMs          float64 `json:"call_ms"`
	RestoreMs       float64 `json:"restore_ms"`
	BytesSent       float64 `json:"bytes_sent"`
	ImageBytes      float64 `json:"image_bytes"`
	Rounds          float64 `json:"rounds"`
	RedundantPages  float64 `json:"redundant_pages"`
	Faults          float64 `json:"faults"`
	PrefetchHits    float64 `json:"prefetch_hits"`
	PushedPages     float64 `json:"pushed_pages"`
	ResidualEndedMs float64 `json:"residual_ended_ms"`

	// Ticks and Verified: the workload's last progress line (ticks
	// printed, verification passes done) before it was stopped.
	Ticks    uint64 `json:"ticks"`
	Verified uint64 `json:"verified"`
	// Samples are the counted moves in the order made.
	Samples []MoveSample `json:"samples"`
}

// Failed reports whether the case failed.
func (r *MigrateResult) Failed() bool { return r.Error != "" }

// MoveSample is one move.
type MoveSample struct {
	From            string  `json:"from"`
	To              string  `json:"to"`
	FreezeMs        float64 `json:"freeze_ms"`
	RunningAfterMs  float64 `json:"running_after_ms"`
	TotalMs         float64 `json:"total_ms"`
	CallMs          float64 `json:"call_ms"`
	RestoreMs       float64 `json:"restore_ms"`
	BytesSent       uint64  `json:"bytes_sent"`
	ImageBytes      uint64  `json:"image_bytes"`
	Rounds          int     `json:"rounds"`
	RedundantPages  uint64  `json:"redundant_pages"`
	Faults          uint64  `json:"faults"`
	PrefetchHits    uint64  `json:"prefetch_hits"`
	PushedPages     uint64  `json:"pushed_pages"`
	ResidualEndedMs float64 `json:"residual_ended_ms"`
}

func moveSample(from, to string, call time.Duration, r *migrate.Report) MoveSample {
	return MoveSample{From: from, To: to,
		FreezeMs: ms(r.FreezeTime), RunningAfterMs: ms(r.RunningAfter), TotalMs: ms(r.Total), CallMs: ms(call),
		RestoreMs: ms(r.RestoreTime), BytesSent: r.BytesSent, ImageBytes: r.ImageBytes, Rounds: len(r.Rounds),
		RedundantPages: r.RedundantPages, Faults: r.Faults, PrefetchHits: r.PrefetchHits, PushedPages: r.PushedPages,
		ResidualEndedMs: ms(r.ResidualEnded)}
}

// summarizeMoves sets r's figures to the medians of its samples.
func (r *MigrateResult) summarizeMoves() {
	r.Moves = len(r.Samples)
	med := func(f func(MoveSample) float64) float64 {
		v := make([]float64, len(r.Samples))
		for i, s := range r.Samples {
			v[i] = f(s)
		}
		return medianFloat(v)
	}
	r.FreezeMs = med(func(s MoveSample) float64 { return s.FreezeMs })
	r.RunningAfterMs = med(func(s MoveSample) float64 { return s.RunningAfterMs })
	r.TotalMs = med(func(s MoveSample) float64 { return s.TotalMs })
	r.CallMs = med(func(s MoveSample) float64 { return s.CallMs })
	r.RestoreMs = med(func(s MoveSample) float64 { return s.RestoreMs })
	r.BytesSent = med(func(s MoveSample) float64 { return float64(s.BytesSent) })
	r.ImageBytes = med(func(s MoveSample) float64 { return float64(s.ImageBytes) })
	r.Rounds = med(func(s MoveSample) float64 { return float64(s.Rounds) })
	r.RedundantPages = med(func(s MoveSample) float64 { return float64(s.RedundantPages) })
	r.Faults = med(func(s MoveSample) float64 { return float64(s.Faults) })
	r.PrefetchHits = med(func(s MoveSample) float64 { return float64(s.PrefetchHits) })
	r.PushedPages = med(func(s MoveSample) float64 { return float64(s.PushedPages) })
	r.ResidualEndedMs = med(func(s MoveSample) float64 { return s.ResidualEndedMs })
}

// medianFloat returns the median of v (the mean of the middle two for an
// even count), or 0 for none.
func medianFloat(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (cfg *MigrateConfig) setDefaults() error {
	if cfg.Exe == "" {
		return errors.New("bench: no ferry binary for the nodes")
	}
	if len(cfg.SizesMiB) == 0 {
		cfg.SizesMiB = []int{64, 1024}
	}
	if len(cfg.RatesMiBps) == 0 {
		cfg.RatesMiBps = []float64{0, 16, 128}
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []migrate.Mode{migrate.Freeze, migrate.Precopy, migrate.Postcopy}
	}
	if cfg.RandomRate == 0 {
		cfg.RandomRate = 64
	}
	if cfg.Repeat <= 0 {
		cfg.Repeat = 3
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
	for _, mib := range cfg.SizesMiB {
		if mib < 1 {
			return fmt.Errorf("bench: size %d MiB: must be at least 1", mib)
		}
	}
	for _, r := range cfg.RatesMiBps {
		if r < 0 {
			return fmt.Errorf("bench: dirty rate %v MiB/s: must be at least 0", r)
		}
	}
	for _, m := range cfg.Modes {
		if _, err := migrate.ParseMode(string(m)); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// casesFor lists the cases of one size: each mode at each rate, then the
// postcopy case with random writes.
func (cfg *MigrateConfig) casesFor(mib int) []MigrateCase {
	var cs []MigrateCase
	for _, m := range cfg.Modes {
		for _, r := range cfg.RatesMiBps {
			cs = append(cs, MigrateCase{SizeMiB: mib, RateMiBps: r, Mode: m})
		}
		if m == migrate.Postcopy && cfg.RandomRate > 0 {
			cs = append(cs, MigrateCase{SizeMiB: mib, RateMiBps: cfg.RandomRate, Random: true, Mode: m})
		}
	}
	return cs
}

// RunMigrate measures every case of cfg and returns the figures. A case
// that fails is reported with its error and the run goes on; RunMigrate
// itself fails when the cluster or a reference measurement does, or ctx
// ends. The nodes and jobs it started are gone when it returns.
func RunMigrate(ctx context.Context, cfg MigrateConfig) (*MigrateReport, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root: jobs run in PID namespaces of their own and migrate with ptrace")
	}
	rep := &MigrateReport{CPUs: runtime.NumCPU(), THP: thp(), Repeat: cfg.Repeat, IntervalMs: ms(jobInterval)}
	rep.Kernel, _ = procfs.KernelRelease()

	fmt.Fprintf(cfg.Progress, "starting nodes n1 and n2\n")
	rg, err := startRig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer rg.close()
	tp, err := ClusterTLS(localPKI(rg.dir), "n2", "n1")
	if err != nil {
		return nil, fmt.Errorf("bench: cluster certificates: %w", err)
	}

	src := NewBuffer(ChunkSize)
	for _, mib := range cfg.SizesMiB {
		reported0, reporting := reportedKiB()
		sz := MigrateSize{SizeMiB: mib, GivenBackMiB: -1}
		fmt.Fprintf(cfg.Progress, "%s: %d+1 rounds of loopback and fresh-memory limits\n", sizeName(mib), cfg.Repeat)
		lim, err := measureLoopback(ctx, mib, cfg.Repeat, tp, src)
		if err != nil {
			return nil, fmt.Errorf("bench %s: %w", sizeName(mib), err)
		}
		sz.Limits = *lim
		for _, c := range cfg.casesFor(mib) {
			res := rg.runCase(ctx, c)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			sz.Cases = append(sz.Cases, res)
		}
		if reported1, ok := reportedKiB(); ok && reporting {
			sz.GivenBackMiB = (reported1 - reported0) >> 10
		}
		rep.Sizes = append(rep.Sizes, sz)
	}
	rep.Targets = migrateTargets(rep)
	return rep, nil
}

// measureLoopback takes the reference figures of one size: repeat counted
// rounds after a warm-up, the steps of each in an order of its own.
func measureLoopback(ctx context.Context, mib, repeat int, tp *TLSPair, src []byte) (*LoopbackLimits, error) {
	size := mib << 20
	methods := []string{FillCopy, FillUffdCopy}
	if _, err := FillFresh(FillUffdCopy, os.Getpagesize(), 1, src); errors.Is(err, ErrNoUserfaultfd) {
		methods = methods[:1]
	}
	ss := series{}
	var cipher string
	for i := -1; i < repeat; i++ { // -1: warm-up, not counted
		count := func(name string, d time.Duration) {
			if i >= 0 {
				ss.add(name, d)
			}
		}
		push := func(name string, tp *TLSPair, fresh bool) func() error {
			return func() error {
				p, err := PushLoopback(ctx, size, src, tp, fresh)
				if err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				if p.Cipher != "" {
					cipher = p.Cipher
				}
				count(name, p.Took)
				return nil
			}
		}
		steps := []func() error{
			push(seriesTCP, nil, false),
			push(seriesTLS, tp, false),
			push(seriesPushFresh, nil, true),
			push(seriesPushFreshTLS, tp, true),
		}
		for _, m := range methods {
			steps = append(steps, func() error {
				d, err := FillFresh(m, size, 1, src)
				if err != nil {
					return fmt.Errorf("fill fresh memory by %s: %w", m, err)
				}
				count(fillPrefix+m, d)
				return nil
			})
		}
		if err := shuffled(mib, i, steps); err != nil {
			return nil, err
		}
	}
	l := &LoopbackLimits{Bytes: int64(size), TLSCipher: cipher, FreshGBpsBy: map[string]float64{},
		Samples: map[string][]float64{}}
	l.TCPGBps = gbps(l.Bytes, ss.median(seriesTCP))
	l.TLSGBps = gbps(l.Bytes, ss.median(seriesTLS))
	l.PushFreshMs = ms(ss.median(seriesPushFresh))
	l.PushFreshTLSMs = ms(ss.median(seriesPushFreshTLS))
	for _, m := range methods {
		g := gbps(l.Bytes, ss.median(fillPrefix+m))
		l.FreshGBpsBy[m] = g
		if g > l.FreshGBps {
			l.FreshGBps, l.FreshMethod = g, m
		}
	}
	for name, ds := range ss {
		l.Samples[name] = msAll(ds)
		if len(ds) > 1 && median(ds) >= noiseFloor && float64(slices.Max(ds)) > noisy*float64(slices.Min(ds)) {
			l.Noisy = append(l.Noisy, name)
		}
	}
	slices.Sort(l.Noisy)
	return l, nil
}

// Series names of the loopback limits.
const (
	seriesTCP          = "tcp"
	seriesTLS          = "tls"
	seriesPushFresh    = "push-fresh"
	seriesPushFreshTLS = "push-fresh-tls"
)
