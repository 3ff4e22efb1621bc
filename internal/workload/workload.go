// Package workload is ferry's built-in demo workload: an ordinary Go program
// (goroutines, timers, channels, so threads, futexes, the netpoller and
// signal handling) that keeps a block of memory under a known, steadily
// changing content and verifies it continually. Checkpoint/restore and
// migration tests run it and read its output; memory corruption anywhere
// shows up within one verification pass.
//
// Memory layout, all of it checked on every pass:
//   - MemMiB of private anonymous memory (mmap, not scanned by the GC), in
//     4 KiB pages. Page i at generation g holds a pure function of
//     (seed, i, g): the words i and g, then hash(seed, i, g) XOR a per-word
//     constant. Generations live in a separate slice on the Go heap.
//   - a canary on the Go heap, written once and checked against the CRC-32C
//     taken when it was written.
//
// Threads goroutines rewrite pages at DirtyMiBPerSec in total, sequentially or
// at random, each rewrite bumping that page's generation. Pages are grouped in
// chunks of chunkPages behind one mutex each, so the verifier never reads a
// page mid-rewrite and writers rarely wait. A verification pass starts at most
// every Interval, and less often when passes are long, so that verification
// takes at most an eighth of one CPU: a pass over 256 MiB every half second
// or so on a small VM.
//
// Output, one line per Interval, the first as soon as memory is filled:
//
//	tick=1 pid=4242 mem=256MiB dirtied=0 verified=0 time=2025-06-01T12:00:00.123Z ok=true
//	tick=2 pid=4242 mem=256MiB dirtied=819 verified=1 time=2025-06-01T12:00:00.323Z ok=true
//
// tick rises by exactly one per line, also across a freeze or a restore, so a
// reader can check there is no gap and no repeat. On corruption the last line
// is
//
//	tick=9 pid=4242 mem=256MiB dirtied=6553 verified=7 time=... ok=false err="page 1234 gen 7: content mismatch at byte 16"
//
// and Run returns an error wrapping ErrCorrupt. On cancellation (SIGTERM or
// SIGINT through the caller's context) the last line is "done tick=N
// verified=V", N being the last tick printed, and Run returns nil.
// ParseLine reads all of these back.
package workload

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval is used when Config.Interval is zero.
const DefaultInterval = 200 * time.Millisecond

// ErrCorrupt is wrapped by the error Run returns when memory does not hold
// what the workload wrote.
var ErrCorrupt = errors.New("workload memory corrupted")

const (
	mib = 1 << 20
	// chunkPages pages (1 MiB) share a mutex. The verifier holds it for one
	// chunk at a time, about a quarter of a millisecond.
	chunkPages = 256
	canarySize = 1 * mib
	// At most 1/verifyShare of the time is spent verifying: 256 MiB takes
	// some 70 ms to check on a 2-core VM, so a pass every 200 ms would keep
	// a third of a core busy.
	verifyShare = 8
	// paceHz is how often the dirty budget is handed out to writers.
	paceHz = 100
	// maxCatchUp bounds the budget after a stall (a freeze, a restore, a
	// starved pacer): the workload resumes at its rate rather than bursting
	// to make up lost time.
	maxCatchUp = 100 * time.Millisecond
)

// Config describes a workload. Zero Threads means 1; zero Interval means
// DefaultInterval.
type Config struct {
	MemMiB         int
	DirtyMiBPerSec float64 // total over all threads; 0 leaves memory unchanged
	Threads        int
	Interval       time.Duration // between progress lines and verification passes
	Seed           int64         // selects the content function
	Random         bool          // dirty random pages rather than sequential runs
}

func (c Config) normalize() (Config, error) {
	switch {
	case c.MemMiB < 1:
		return c, fmt.Errorf("memory must be at least 1 MiB, got %d", c.MemMiB)
	case c.MemMiB > math.MaxInt/mib:
		return c, fmt.Errorf("memory of %d MiB does not fit the address space", c.MemMiB)
	case c.DirtyMiBPerSec < 0 || math.IsNaN(c.DirtyMiBPerSec) || math.IsInf(c.DirtyMiBPerSec, 0):
		return c, fmt.Errorf("dirty rate must be a finite rate >= 0, got %v", c.DirtyMiBPerSec)
	case c.Threads < 0:
		return c, fmt.Errorf("threads must be >= 0, got %d", c.Threads)
	case c.Interval < 0:
		return c, fmt.Errorf("interval must be >= 0, got %v", c.Interval)
	}
	if c.Threads == 0 {
		c.Threads = 1
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	return c, nil
}

// Run runs the workload described by cfg, writing progress lines to out, until
// ctx is done (then it returns nil) or corruption is found (then it returns an
// error wrapping ErrCorrupt). It also fails if out cannot be written.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	return run(ctx, cfg, out, nil)
}

// run is Run with a hook, called once every goroutine is started, that tests
// use to reach the workload's memory.
func run(ctx context.Context, cfg Config, out io.Writer, started func(*workload)) error {
	cfg, err := cfg.normalize()
	if err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	w, err := newWorkload(cfg)
	if err != nil {
		return fmt.Errorf("workload: %w", err)
	}
	// Deferred calls run in reverse: stop the goroutines, wait for them, and
	// only then unmap the memory they use.
	defer w.close()
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	work := make(chan span, cfg.Threads)
	for i := range cfg.Threads {
		rng := rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i)))
		wg.Go(func() { w.write(ctx, work, rng) })
	}
	if cfg.DirtyMiBPerSec > 0 {
		wg.Go(func() { w.pace(ctx, work) })
	}
	corrupt := make(chan error, 1)
	wg.Go(func() { w.verify(ctx, corrupt) })
	if started != nil {
		started(w)
	}

	tick := uint64(1)
	if err := w.emit(out, w.progress(tick)); err != nil {
		return err
	}
	// A Ticker drops ticks nobody received, so after a freeze there is one
	// line, not a burst of them.
	ticker := time.NewTicker(cfg.Interval)
	defer ticker.Stop()
	for {
		select {
		case <-ticker.C:
			tick++
			if err := w.emit(out, w.progress(tick)); err != nil {
				return err
			}
		case bad := <-corrupt:
			tick++
			p := w.progress(tick)
			p.OK, p.Err = false, bad.Error()
			// The corruption is the news; a failed write of it is not.
			_ = w.emit(out, p)
			return fmt.Errorf("%w: %w", ErrCorrupt, bad)
		case <-ctx.Done():
			return w.emit(out, Progress{Done: true, Tick: tick, Verified: w.verified.Load()})
		}
	}
}

// workload is the state of one Run.
type workload struct {
	cfg   Config
	pat   *pattern
	pages int    // len(mem) / pageSize
	mem   []byte // page i is guarded by chunks[i/chunkPages].mu
	// chunks[c] guards pages [c*chunkPages, (c+1)*chunkPages).
	chunks []chunk
	// canary is written once, before any goroutine starts, and only read
	// after (tests excepted, under canaryMu).
	canary    []byte
	canarySum uint32
	canaryMu  sync.Mutex // lets tests corrupt the canary without a race

	dirtied  atomic.Uint64 // pages rewritten
	verified atomic.Uint64 // full passes completed
}

type chunk struct {
	mu   sync.Mutex // guards gens and this chunk's pages in workload.mem
	gens []uint32   // generation of each page of the chunk
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func newWorkload(cfg Config) (*workload, error) {
	mem, err := mapAnon(cfg.MemMiB * mib)
	if err != nil {
		return nil, err
	}
	w := &workload{
		cfg:    cfg,
		pat:    newPattern(cfg.Seed),
		pages:  len(mem) / pageSize,
		mem:    mem,
		canary: make([]byte, canarySize),
	}
	gens := make([]uint32, w.pages)
	w.chunks = make([]chunk, (w.pages+chunkPages-1)/chunkPages)
	for c := range w.chunks {
		w.chunks[c].gens = gens[c*chunkPages : min((c+1)*chunkPages, w.pages)]
	}
	for i := range w.pages {
		w.pat.fill(w.page(i), i, 0)
	}
	// Canary pages are numbered below zero, apart from the main pages.
	for off := 0; off < len(w.canary); off += pageSize {
		w.pat.fill(w.canary[off:off+pageSize], -1-off/pageSize, 0)
	}
	w.canarySum = crc32.Checksum(w.canary, castagnoli)
	return w, nil
}

// close releases the memory. No goroutine may use it any more.
func (w *workload) close() {
	// A failed munmap leaves nothing for the caller to do.
	_ = unmapAnon(w.mem)
	w.mem = nil
}

func (w *workload) page(i int) []byte {
	return w.mem[i*pageSize : (i+1)*pageSize : (i+1)*pageSize]
}

func (w *workload) progress(tick uint64) Progress {
	return Progress{
		Tick:     tick,
		PID:      os.Getpid(), // not cached: a restore may change it
		MemMiB:   w.cfg.MemMiB,
		Dirtied:  w.dirtied.Load(),
		Verified: w.verified.Load(),
		OK:       true,
		Time:     time.Now().UTC(),
	}
}

// emit writes p as one line in one Write, so lines never interleave on a pipe.
func (w *workload) emit(out io.Writer, p Progress) error {
	if _, err := io.WriteString(out, p.String()+"\n"); err != nil {
		return fmt.Errorf("workload: write progress: %w", err)
	}
	return nil
}

// span is a batch of rewrites handed to a writer: n pages from first on,
// wrapping around, or n random pages if first < 0.
type span struct{ first, n int }

// pace hands out the dirty budget to the writers paceHz times a second until
// ctx is done. It only runs for a positive rate.
func (w *workload) pace(ctx context.Context, work chan<- span) {
	perSec := w.cfg.DirtyMiBPerSec * mib / pageSize
	ticker := time.NewTicker(time.Second / paceHz)
	defer ticker.Stop()
	last := time.Now()
	var owed float64 // pages due but not yet handed out
	next := 0        // first page of the next sequential span
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-ticker.C:
			owed += perSec * min(now.Sub(last), maxCatchUp).Seconds()
			last = now
		}
		due := int(owed)
		owed -= float64(due)
		// Split the batch so every thread has a share of the work.
		for t := range w.cfg.Threads {
			n := due / w.cfg.Threads
			if t < due%w.cfg.Threads {
				n++
			}
			if n == 0 {
				continue
			}
			s := span{first: -1, n: n}
			if !w.cfg.Random {
				s.first = next
				next = (next + n) % w.pages
			}
			select {
			case work <- s:
			case <-ctx.Done():
				return
			}
		}
	}
}

// write rewrites the pages of each span it receives until ctx is done.
func (w *workload) write(ctx context.Context, work <-chan span, rng *rand.Rand) {
	for {
		var s span
		select {
		case <-ctx.Done():
			return
		case s = <-work:
		}
		for k := range s.n {
			if s.first < 0 {
				w.dirty(rng.IntN(w.pages))
			} else {
				w.dirty((s.first + k) % w.pages)
			}
		}
		w.dirtied.Add(uint64(s.n))
	}
}

// dirty moves page i to its next generation.
func (w *workload) dirty(i int) {
	c := &w.chunks[i/chunkPages]
	c.mu.Lock()
	c.gens[i%chunkPages]++
	w.pat.fill(w.page(i), i, c.gens[i%chunkPages])
	c.mu.Unlock()
}

// verify runs full verification passes until ctx is done or a pass finds
// corruption, which it sends on corrupt. Passes start at most every Interval,
// and rest at least verifyShare-1 times as long as a pass kept a CPU busy.
func (w *workload) verify(ctx context.Context, corrupt chan<- error) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		start := time.Now()
		busy, err := w.verifyPass(ctx)
		if err != nil {
			corrupt <- err // buffered, and the only send
			return
		}
		if ctx.Err() != nil {
			return // the pass was cut short
		}
		w.verified.Add(1)
		// After a freeze the first term is negative and the second small.
		timer.Reset(max(w.cfg.Interval-time.Since(start), (verifyShare-1)*busy))
	}
}

// verifyPass checks every page and the canary, and says roughly how long that
// kept a CPU busy. It stops early, with a nil error, when ctx is done.
func (w *workload) verifyPass(ctx context.Context) (busy time.Duration, err error) {
	// Wall time per chunk stands in for CPU time. Capping it keeps a freeze
	// (a checkpoint, say) in the middle of a pass from counting as work, which
	// would put off the next pass, the one to find any damage, by minutes.
	const maxChunkBusy = 10 * time.Millisecond // 40 times the usual
	for c := range w.chunks {
		if ctx.Err() != nil {
			return busy, nil
		}
		start := time.Now()
		if err := w.verifyChunk(c); err != nil {
			return busy, err
		}
		busy += min(time.Since(start), maxChunkBusy)
	}
	start := time.Now()
	w.canaryMu.Lock()
	sum := crc32.Checksum(w.canary, castagnoli)
	w.canaryMu.Unlock()
	busy += min(time.Since(start), maxChunkBusy)
	if sum != w.canarySum {
		return busy, fmt.Errorf("canary: checksum %08x, want %08x", sum, w.canarySum)
	}
	return busy, nil
}

func (w *workload) verifyChunk(c int) error {
	ch := &w.chunks[c]
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for k, gen := range ch.gens {
		i := c*chunkPages + k
		if p := w.page(i); !w.pat.check(p, i, gen) {
			return errors.New(w.pat.mismatch(p, i, gen))
		}
	}
	return nil
}
