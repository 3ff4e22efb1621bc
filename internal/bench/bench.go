// Package bench measures checkpoint and restore of real processes against
// the machine's own limits, measured in the same run, so that a figure
// reads as a fraction of what the hardware and kernel allow rather than
// as a number that changes from VM to VM.
//
// For each size, ferry's built-in workload (idle, holding that many MiB)
// is checkpointed into an image on tmpfs and restored from it, and
// beside each engine figure stands its limit, the fastest of several ways
// of doing the bare work, on one thread and on every CPU:
//
//   - dump: process_vm_readv from that same process's memory, frozen as a
//     dump freezes it, into a buffer already touched (nothing written);
//   - restore: filling fresh (never touched) anonymous memory, which every
//     page of a new process is: by copying, by process_vm_writev, and by
//     UFFDIO_COPY.
//
// Memory that stays free on these VMs goes back to the host, and whatever
// touches it next pays for fetching it again: large allocations are slow
// at random. So each size starts with a warm-up that is not counted,
// engine and limit samples are interleaved in an order shuffled per
// repeat, medians are reported, and series whose samples spread widely
// are named.
//
// Phases of each dump and restore are timed through the image sink and
// reader they use (no hooks in the engine), and the halves that need no
// process (writing a file or an image to tmpfs, decoding the image,
// CRC-32C) are measured alone, to say where the time goes.
//
// RunMigrate (migrate.go) does the same for migration: moves of the
// workload between two nodes in this process, by each transfer mode and
// at several dirty rates, beside loopback TCP and TLS throughput and the
// time to push the same size through loopback into fresh memory.
//
// Throughput is in GB/s of 10^9 bytes of memory pages.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"ferry/internal/dump"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// Config describes a benchmark run.
type Config struct {
	SizesMiB []int // default 64 and 1024
	Repeat   int   // counted samples per figure; default 5
	// Dir is where images go; default /dev/shm.
	Dir string
	// Workload returns a command that runs ferry's built-in workload
	// holding memMiB MiB and dirtying nothing (`ferry workload --mem N
	// --rate 0`). Required.
	Workload func(memMiB int) *exec.Cmd
	// ReadyTimeout bounds the wait for the workload to fill its memory;
	// default 2 minutes.
	ReadyTimeout time.Duration
	Log          *slog.Logger
	// Progress, if set, receives a line as each step starts.
	Progress io.Writer
}

// Report is the outcome of Run. Times are in milliseconds, medians over
// Repeat samples; throughputs in GB/s.
type Report struct {
	Kernel     string       `json:"kernel"`
	CPUs       int          `json:"cpus"`
	THP        string       `json:"transparent_hugepages"`
	Dir        string       `json:"image_dir"`
	Tmpfs      bool         `json:"image_dir_is_tmpfs"`
	Repeat     int          `json:"repeat"`
	CRC32CGBps float64      `json:"crc32c_gbps"`
	Sizes      []SizeResult `json:"sizes"`
}

// SizeResult holds the figures for one size.
type SizeResult struct {
	SizeMiB   int   `json:"size_mib"`
	PageBytes int64 `json:"page_bytes"` // memory in the image: the workload's plus the Go runtime's

	FreezeMs  float64 `json:"freeze_ms"`
	DumpMs    float64 `json:"dump_ms"`
	DumpGBps  float64 `json:"dump_gbps"`
	ReadvGBps float64 `json:"readv_limit_gbps"` // the best of ReadvGBpsBy
	DumpRatio float64 `json:"dump_ratio"`

	RestoreMs    float64 `json:"restore_ms"`
	RestoreGBps  float64 `json:"restore_gbps"`
	FreshGBps    float64 `json:"fresh_memory_limit_gbps"` // the best of FreshGBpsBy
	FreshMethod  string  `json:"fresh_memory_limit_method"`
	RestoreRatio float64 `json:"restore_ratio"`

	// KillDumpMs is the one dump that killed the process (the others
	// left it running): it includes waiting for the kernel to tear the
	// process down.
	KillDumpMs float64 `json:"kill_dump_ms"`

	DumpPhases    DumpPhases    `json:"dump_phases_ms"`
	RestorePhases RestorePhases `json:"restore_phases_ms"`

	// The limits by way of measuring them: process_vm_readv by piece
	// size; filling fresh memory by method (see FreshMethods).
	ReadvGBpsBy map[string]float64 `json:"readv_gbps_by_piece"`
	FreshGBpsBy map[string]float64 `json:"fresh_memory_gbps_by_method"`
	// The halves of dump and restore that need no process: writing the
	// image's bytes to a new file in the image directory (fresh memory
	// on tmpfs), and through image.Writer (checksums and buffering
	// besides); decoding the image with image.Reader.
	TmpfsWriteGBps float64 `json:"file_write_gbps"`
	ImageWriteGBps float64 `json:"image_write_gbps"`
	ImageReadGBps  float64 `json:"image_read_gbps"`
	// Two fixed costs: freezing every thread of the process (part of a
	// dump's collect phase), and opening the image and decoding its state
	// record (part of a restore's setup).
	FreezeAloneMs float64 `json:"freeze_alone_ms"`
	StateDecodeMs float64 `json:"state_decode_ms"`

	Targets []Target `json:"targets,omitempty"`
	// GivenBackMiB is how much free memory the VM reported to its host
	// (virtio-balloon free page reporting) while this size was measured:
	// every page of it is slow to use again. -1 where not known.
	GivenBackMiB int64 `json:"given_back_to_host_mib"`
	// Noisy names the series whose slowest sample took over noisy times
	// as long as the fastest (those of a few milliseconds or more).
	Noisy []string `json:"noisy,omitempty"`
	// Samples holds every counted sample in ms, in the order taken, by
	// series name.
	Samples map[string][]float64 `json:"samples_ms"`
}

// DumpPhases are medians of DumpSample's phases, in ms.
type DumpPhases struct {
	Collect    float64 `json:"collect"`
	Pages      float64 `json:"pages"`
	WriteImage float64 `json:"write_image"`
	Close      float64 `json:"close"`
	Release    float64 `json:"release"`
	// Prealloc: preallocating the image file, before the freeze.
	Prealloc float64 `json:"prealloc"`
}

// RestorePhases are medians of RestoreSample's phases, in ms.
type RestorePhases struct {
	Setup  float64 `json:"setup"`
	Fill   float64 `json:"fill"`
	Finish float64 `json:"finish"`
}

// Target is one of the goals set for ferry, and whether this run met it.
type Target struct {
	What string `json:"what"`
	Want string `json:"want"`
	Got  string `json:"got"`
	Met  bool   `json:"met"`
}

// Run measures every size of cfg and returns the figures. It fails on the
// first error; the processes it started are gone when it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Workload == nil {
		return nil, errors.New("bench: no workload command")
	}
	if len(cfg.SizesMiB) == 0 {
		cfg.SizesMiB = []int{64, 1024}
	}
	if cfg.Repeat <= 0 {
		cfg.Repeat = 5
	}
	if cfg.Dir == "" {
		cfg.Dir = shmDir()
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root: a restore takes back the original PID (clone3 with set_tid)")
	}
	for _, mib := range cfg.SizesMiB {
		if mib < 1 {
			return nil, fmt.Errorf("bench: size %d MiB: must be at least 1", mib)
		}
	}
	rep := &Report{CPUs: runtime.NumCPU(), Dir: cfg.Dir, Tmpfs: onTmpfs(cfg.Dir), Repeat: cfg.Repeat, THP: thp()}
	rep.Kernel, _ = procfs.KernelRelease()

	src := NewBuffer(ChunkSize)
	var crc []time.Duration
	for i := -1; i < cfg.Repeat; i++ {
		if d := CRC32C(src, 8); i >= 0 {
			crc = append(crc, d)
		}
	}
	rep.CRC32CGBps = gbps(8*ChunkSize, median(crc))

	t := ptrace.NewTracer()
	defer t.Close()
	for _, mib := range cfg.SizesMiB {
		r, err := runSize(ctx, t, cfg, mib, src)
		if err != nil {
			return nil, fmt.Errorf("bench %d MiB: %w", mib, err)
		}
		rep.Sizes = append(rep.Sizes, *r)
	}
	return rep, nil
}

// noisy is the ratio of slowest to fastest sample above which a series is
// reported as noisy, unless its median is under noiseFloor.
const (
	noisy      = 1.5
	noiseFloor = 2 * time.Millisecond
)

// quiet is how long output must stay silent before the lines of a process
// that just died are taken as all read.
const quiet = 50 * time.Millisecond

// series collects samples by name.
type series map[string][]time.Duration

func (s series) add(name string, d time.Duration) { s[name] = append(s[name], d) }

func (s series) median(name string) time.Duration { return median(s[name]) }

func runSize(ctx context.Context, t *ptrace.Tracer, cfg Config, mib int, src []byte) (*SizeResult, error) {
	log := cfg.Log.With("size_mib", mib)
	reported0, reporting := reportedKiB()
	fmt.Fprintf(cfg.Progress, "%d MiB: starting the workload\n", mib)
	w, err := StartWorkload(ctx, cfg.Workload(mib), cfg.ReadyTimeout)
	if err != nil {
		return nil, err
	}
	defer w.Close()
	pid := w.PID()
	dir, err := os.MkdirTemp(cfg.Dir, "ferry-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	img := filepath.Join(dir, "image")
	threads := []int{1}
	if n := runtime.NumCPU(); n > 1 {
		threads = append(threads, n)
	}
	readvs := []readvWay{{CacheChunk, 1}, {ChunkSize, 1}}
	if len(threads) > 1 {
		readvs = append(readvs, readvWay{CacheChunk, threads[1]})
	}

	ss := series{}
	var dumps []DumpSample
	var readBytes int64
	pageBytes := mib << 20 // until the first dump tells
	fmt.Fprintf(cfg.Progress, "%d MiB: %d+1 dumps of pid %d, each beside reads of its memory and writes to %s\n",
		mib, cfg.Repeat, pid, cfg.Dir)
	for i := -1; i < cfg.Repeat; i++ { // -1: warm-up, not counted
		count := func(name string, d time.Duration) {
			if i >= 0 {
				ss.add(name, d)
			}
		}
		for _, rw := range readvs {
			rv, err := ReadvLimit(ctx, t, pid, rw.piece, rw.threads)
			if err != nil {
				return nil, fmt.Errorf("readv limit: %w", err)
			}
			count(rw.name(), rv.Read)
			count("freeze-alone", rv.Freeze)
			readBytes = rv.Bytes
		}
		// Free the old image before the steps, not inside one.
		if err := os.RemoveAll(img); err != nil {
			return nil, err
		}
		err := shuffled(mib, i, []func() error{
			func() error {
				s, _, err := Dump(ctx, t, pid, img, dump.Running)
				if err != nil {
					return err
				}
				log.Debug("dump", "i", i, "ms", ms(s.Total), "freeze_ms", ms(s.Freeze))
				pageBytes = int(s.PageBytes)
				if i >= 0 {
					dumps = append(dumps, s)
				}
				return nil
			},
			func() error {
				var d time.Duration
				_, err := WhileFrozen(ctx, t, pid, func() (err error) { d, err = TmpfsWrite(dir, pageBytes, src); return err })
				if err != nil {
					return fmt.Errorf("write to %s: %w", dir, err)
				}
				count("file-write", d)
				return nil
			},
			func() error {
				var d time.Duration
				_, err := WhileFrozen(ctx, t, pid, func() (err error) { d, err = ImageWrite(dir, pageBytes, src); return err })
				if err != nil {
					return fmt.Errorf("write an image to %s: %w", dir, err)
				}
				count("image-write", d)
				return nil
			},
		})
		if err != nil {
			return nil, err
		}
	}

	// The image to restore from: this dump kills the workload.
	killed, res, err := Dump(ctx, t, pid, img, dump.Kill)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, f := range res.Kept {
			f.Close()
		}
	}()
	w.Reap()
	last, err := w.Drain(quiet)
	if err != nil {
		return nil, err
	}

	var restores []RestoreSample
	var imageReadBytes int64
	size := int(killed.PageBytes)
	methods := FillMethods
	if _, err := FillFresh(FillUffdCopy, os.Getpagesize(), 1, src); errors.Is(err, ErrNoUserfaultfd) {
		log.Info("fresh memory by UFFDIO_COPY not measured", "err", err)
		methods = slices.DeleteFunc(slices.Clone(methods), func(m string) bool { return m == FillUffdCopy })
	}
	fmt.Fprintf(cfg.Progress, "%d MiB: %d+1 restores, each beside fills of %d MiB of fresh memory\n", mib, cfg.Repeat, size>>20)
	for i := -1; i < cfg.Repeat; i++ {
		count := func(name string, d time.Duration) {
			if i >= 0 {
				ss.add(name, d)
			}
		}
		steps := []func() error{
			func() error {
				s, err := Restore(ctx, t, img, res.Kept)
				if err != nil {
					return err
				}
				err = checkRestored(ctx, w, pid, s.PID, last.Tick+1)
				if kerr := KillRestored(s.PID); err == nil {
					err = kerr
				}
				if err != nil {
					return err
				}
				// Forget its lines, so the next copy's first line is the first read.
				if _, err := w.Drain(quiet); err != nil {
					return err
				}
				log.Debug("restore", "i", i, "ms", ms(s.Total))
				if i >= 0 {
					restores = append(restores, s)
				}
				return nil
			},
			func() error {
				dec, err := ImageRead(img)
				if err != nil {
					return fmt.Errorf("read the image: %w", err)
				}
				count("image-read", dec.Total)
				count("image-state", dec.State)
				imageReadBytes = dec.PageBytes
				return nil
			},
		}
		for _, m := range methods {
			for _, n := range threads {
				steps = append(steps, func() error {
					d, err := FillFresh(m, size, n, src)
					if err != nil {
						return fmt.Errorf("fill fresh memory by %s: %w", m, err)
					}
					count(fillName(m, n), d)
					return nil
				})
			}
		}
		if err := shuffled(mib, i, steps); err != nil {
			return nil, err
		}
	}
	r := summarize(mib, dumps, restores, ss, readBytes, int64(size))
	r.ImageReadGBps = gbps(imageReadBytes, ss.median("image-read"))
	r.FreezeAloneMs = ms(ss.median("freeze-alone"))
	r.StateDecodeMs = ms(ss.median("image-state"))
	r.KillDumpMs = ms(killed.Total)
	r.Targets = targetsFor(r)
	if reported1, ok := reportedKiB(); ok && reporting {
		r.GivenBackMiB = (reported1 - reported0) >> 10
	}
	return r, nil
}

// shuffled runs steps in an order of its own for each repeat i (the same
// in every run), and stops at the first error. On these VMs memory that
// stayed free for a while is given back to the host, and whichever step
// then gets it first pays for fetching it again, at random; changing the
// order spreads that cost over the steps, and medians discard it.
func shuffled(size, i int, steps []func() error) error {
	order := rand.New(rand.NewPCG(uint64(size), uint64(i+1))).Perm(len(steps))
	for _, k := range order {
		if err := steps[k](); err != nil {
			return err
		}
	}
	return nil
}

// readvWay is a way of reading a process's memory for the readv limit.
type readvWay struct{ piece, threads int }

// Sample names of the limits: readvPrefix or fillPrefix and the way.
const (
	readvPrefix = "readv:"
	fillPrefix  = "fill:"
)

func (rw readvWay) name() string {
	return readvPrefix + threaded(fmt.Sprintf("%dKiB", rw.piece>>10), rw.threads)
}

func fillName(method string, threads int) string { return fillPrefix + threaded(method, threads) }

// threaded names a way of measuring done on n threads.
func threaded(name string, n int) string {
	if n <= 1 {
		return name
	}
	return fmt.Sprintf("%s-x%d", name, n)
}

// checkRestored waits for the restored copy's first progress line and
// checks that it is the same process carrying on.
func checkRestored(ctx context.Context, w *Workload, wantPID, gotPID int, wantTick uint64) error {
	if gotPID != wantPID {
		return fmt.Errorf("restored with pid %d, want %d", gotPID, wantPID)
	}
	p, err := w.Next(ctx, 10*time.Second)
	if err != nil {
		return fmt.Errorf("restored process: %w", err)
	}
	if p.PID != wantPID || p.Tick != wantTick {
		return fmt.Errorf("restored process printed pid %d tick %d, want pid %d tick %d", p.PID, p.Tick, wantPID, wantTick)
	}
	return nil
}

func summarize(mib int, dumps []DumpSample, restores []RestoreSample, ss series, readBytes, freshBytes int64) *SizeResult {
	for _, s := range dumps {
		ss.add("dump", s.Total)
		ss.add("freeze", s.Freeze)
		ss.add("dump-prealloc", s.Prealloc)
		ss.add("dump-collect", s.Collect)
		ss.add("dump-pages", s.Pages)
		ss.add("dump-write-image", s.WriteImage)
		ss.add("dump-close", s.Close)
		ss.add("dump-release", s.Release)
	}
	for _, s := range restores {
		ss.add("restore", s.Total)
		ss.add("restore-setup", s.Setup)
		ss.add("restore-fill", s.Fill)
		ss.add("restore-finish", s.Finish)
	}
	r := &SizeResult{SizeMiB: mib, PageBytes: dumps[len(dumps)-1].PageBytes, GivenBackMiB: -1,
		ReadvGBpsBy: map[string]float64{}, FreshGBpsBy: map[string]float64{}, Samples: map[string][]float64{}}
	for name, ds := range ss {
		r.Samples[name] = msAll(ds)
		if len(ds) > 1 && median(ds) >= noiseFloor && float64(slices.Max(ds)) > noisy*float64(slices.Min(ds)) {
			r.Noisy = append(r.Noisy, name)
		}
	}
	slices.Sort(r.Noisy)

	r.FreezeMs = ms(ss.median("freeze"))
	r.DumpMs = ms(ss.median("dump"))
	r.DumpGBps = gbps(r.PageBytes, ss.median("dump"))
	for name, ds := range ss {
		if way, ok := strings.CutPrefix(name, readvPrefix); ok {
			g := gbps(readBytes, median(ds))
			r.ReadvGBpsBy[way] = g
			r.ReadvGBps = max(r.ReadvGBps, g)
		}
	}
	r.DumpRatio = ratio(r.DumpGBps, r.ReadvGBps)
	r.TmpfsWriteGBps = gbps(r.PageBytes, ss.median("file-write"))
	r.ImageWriteGBps = gbps(r.PageBytes, ss.median("image-write"))

	restored := restores[len(restores)-1].PageBytes
	r.RestoreMs = ms(ss.median("restore"))
	r.RestoreGBps = gbps(restored, ss.median("restore"))
	for name, ds := range ss {
		if way, ok := strings.CutPrefix(name, fillPrefix); ok {
			g := gbps(freshBytes, median(ds))
			r.FreshGBpsBy[way] = g
			if g > r.FreshGBps {
				r.FreshGBps, r.FreshMethod = g, way
			}
		}
	}
	r.RestoreRatio = ratio(r.RestoreGBps, r.FreshGBps)

	r.DumpPhases = DumpPhases{
		Prealloc:   ms(ss.median("dump-prealloc")),
		Collect:    ms(ss.median("dump-collect")),
		Pages:      ms(ss.median("dump-pages")),
		WriteImage: ms(ss.median("dump-write-image")),
		Close:      ms(ss.median("dump-close")),
		Release:    ms(ss.median("dump-release")),
	}
	r.RestorePhases = RestorePhases{
		Setup:  ms(ss.median("restore-setup")),
		Fill:   ms(ss.median("restore-fill")),
		Finish: ms(ss.median("restore-finish")),
	}
	return r
}

// The goals set for ferry: a 64 MiB process dumped in 35 ms and restored
// in 30 ms; a 1 GiB one at 70 % or more of the machine's limits.
const (
	smallMiB       = 64
	smallDumpMs    = 35
	smallRestoreMs = 30
	largeMiB       = 1024
	largeRatio     = 0.70
)

func targetsFor(r *SizeResult) []Target {
	switch r.SizeMiB {
	case smallMiB:
		return []Target{
			{What: "dump time", Want: fmt.Sprintf("<= %d ms", smallDumpMs), Got: fmt.Sprintf("%.1f ms", r.DumpMs), Met: r.DumpMs <= smallDumpMs},
			{What: "restore time", Want: fmt.Sprintf("<= %d ms", smallRestoreMs), Got: fmt.Sprintf("%.1f ms", r.RestoreMs), Met: r.RestoreMs <= smallRestoreMs},
		}
	case largeMiB:
		return []Target{
			{What: "dump / readv limit", Want: fmt.Sprintf(">= %.0f %%", 100*largeRatio), Got: fmt.Sprintf("%.0f %%", 100*r.DumpRatio), Met: r.DumpRatio >= largeRatio},
			{What: "restore / fresh-memory limit", Want: fmt.Sprintf(">= %.0f %%", 100*largeRatio), Got: fmt.Sprintf("%.0f %%", 100*r.RestoreRatio), Met: r.RestoreRatio >= largeRatio},
		}
	}
	return nil
}

// median returns the median of ds (the mean of the middle two for an even
// count), or 0 for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func msAll(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = ms(d)
	}
	return out
}

// gbps is bytes per d in 10^9 bytes per second, 0 for no time.
func gbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / d.Seconds() / 1e9
}

func ratio(got, limit float64) float64 {
	if limit == 0 {
		return 0
	}
	return got / limit
}

// reportedKiB reads how much free memory the VM has reported to its host
// so far, where the kernel says (a counter of this VM's page_reporting).
func reportedKiB() (int64, bool) {
	b, err := os.ReadFile("/sys/module/page_reporting/parameters/reported_kib")
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}

// thp returns the selected transparent huge page mode ("madvise", say).
func thp() string {
	b, err := os.ReadFile("/sys/kernel/mm/transparent_hugepage/enabled")
	if err != nil {
		return "unknown"
	}
	for _, f := range strings.Fields(string(b)) {
		if strings.HasPrefix(f, "[") {
			return strings.Trim(f, "[]")
		}
	}
	return "unknown"
}
