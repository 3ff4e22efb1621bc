// Package precopy migrates memory while the process tree runs
// ("pretransferring"): it sends every page once, then, round after round,
// only the pages the tree wrote meanwhile, until what is left is small
// enough to send with the tree frozen. The final dump (dump.Dump with
// Options.Precopy set to the Session) then writes only the pages the
// destination lacks or holds an older copy of; freezing time shrinks to
// the time it takes to carry that last dirty set and the process state.
//
// What belongs here: the rounds and the policy that ends them, the plan
// the final dump follows (Session.FinalPages), and the destination's
// store of pages received ahead of the image (Staging). What does not:
// write tracking itself (package dirty), the wire between the two sides
// (a PageSender), and freezing, collecting and restoring (dump, restore).
//
// Source side:
//
//	sess, err := precopy.Start(ctx, tracer, pid, precopy.Options{...})
//	defer sess.Close()
//	stats, err := sess.Run(ctx, sender)        // rounds while it runs
//	res, err := dump.Dump(ctx, tracer, pid, sink,
//		dump.Options{Leave: dump.Frozen, Precopy: sess})
//	// destination committed: res.Held.Kill; failed: res.Held.Resume
//
// Destination side: a Staging receives the rounds' pages (it is a
// PageSender), then restore.Restore with Options{Staged: staging} writes
// them before the image's pages, which overwrite them. With StagedLazy
// too, the restore leaves the staged pages of private anonymous memory
// out (but for the image's newer ones) and registers them with a
// userfaultfd; once the copy runs, postcopy.ServeLocal(ctx, res.Lazy,
// staging.ReadPages, ...) fills them, so the freeze does not grow with
// the size of the process. Close the Staging only after that.
//
// Correctness rests on three facts. Pages are read after the scan that
// protected them again (or after Start, in the first round), so a write
// during or after the read is reported by a later scan. The final scan
// runs with the tree frozen, so it misses nothing. And every page the
// destination holds that the tracker cannot vouch for — written since,
// in a VMA replaced or made read-only or file-backed since, discarded
// (no longer present), or of a process that failed tracking, exited or
// exec'd — is written into the image as it is now, zeros included. Only
// private anonymous memory is sent in rounds; private file mappings,
// which differ from their file only where written, go with the image.
package precopy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/dirty"
	"ferry/internal/dump"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// PageSender carries pages to the destination during the rounds: pages of
// process pid (its PID on the source) starting at addr, whole pages. data
// is reused after SendPages returns. A later send of a page replaces the
// earlier one. *Staging is a PageSender; a network transfer is another.
type PageSender interface {
	SendPages(pid int, addr uint64, data []byte) error
}

// Options tune a precopy.
type Options struct {
	// MaxRounds bounds the rounds, the first (everything) included.
	// Default 8.
	MaxRounds int
	// MinDirtyBytes ends the rounds once a round after the first sends at
	// most this many bytes. Default 1 MiB (under a millisecond of copying
	// on these machines); negative: never.
	MinDirtyBytes int64
	// MaxFreeze ends the rounds once the predicted freeze — the bytes
	// expected to be dirty at the freeze divided by the measured send
	// throughput — is at most this. It does not count the fixed cost of
	// collecting the process state. Zero: never.
	MaxFreeze time.Duration
	// MaxDelay bounds how long Start waits for a thread in uninterruptible
	// sleep to stop (as dump.Options.MaxDelay). Default 10 s.
	MaxDelay time.Duration
	// Progress, if set, is called after every round on Run's goroutine.
	Progress func(Progress)
	Log      *slog.Logger
}

// Default option values.
const (
	DefaultMaxRounds     = 8
	DefaultMinDirtyBytes = 1 << 20
)

func (o Options) withDefaults() Options {
	if o.MaxRounds <= 0 {
		o.MaxRounds = DefaultMaxRounds
	}
	if o.MinDirtyBytes == 0 {
		o.MinDirtyBytes = DefaultMinDirtyBytes
	}
	if o.MaxDelay == 0 {
		o.MaxDelay = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return o
}

// Progress describes the state of the rounds after one of them.
type Progress struct {
	Round int
	// Sent is the bytes sent so far, all rounds.
	Sent int64
	// RoundBytes is the bytes this round sent: for rounds after the first,
	// the dirty set it found.
	RoundBytes int64
	// DirtyRate is how fast the tree dirties memory that must be sent,
	// bytes/s, measured between this round's scan and the one before (0
	// after the first round).
	DirtyRate float64
	// Remaining estimates the bytes a freeze now would carry: the dirty
	// rate times the time since the last scan (-1 after the first round:
	// no rate yet).
	Remaining int64
	// Throughput is the measured send rate, bytes/s (reading included).
	Throughput float64
	// PredictedFreeze is Remaining / Throughput (-1 when unknown).
	PredictedFreeze time.Duration
}

// StopReason says why the rounds ended.
type StopReason int

const (
	// SmallDirtySet: the last round sent at most Options.MinDirtyBytes.
	SmallDirtySet StopReason = iota + 1
	// PredictedFreeze: the predicted freeze is within Options.MaxFreeze.
	PredictedFreeze
	// NotShrinking: the last round's dirty set was not at least 10%
	// smaller than the one before: the tree dirties memory about as fast
	// as it is sent, more rounds would not help.
	NotShrinking
	// RoundLimit: Options.MaxRounds rounds ran.
	RoundLimit
)

func (r StopReason) String() string {
	switch r {
	case SmallDirtySet:
		return "small dirty set"
	case PredictedFreeze:
		return "predicted freeze"
	case NotShrinking:
		return "not shrinking"
	case RoundLimit:
		return "round limit"
	}
	return fmt.Sprintf("StopReason(%d)", int(r))
}

// Round reports one round.
type Round struct {
	// Pages and Bytes sent; Redundant of those pages had been sent before.
	Pages, Bytes, Redundant int64
	// Reported is the bytes the scans reported written (for the first
	// round: the size of the tracked memory), before absent and zero
	// pages were left out.
	Reported int64
	// Duration of the round, scans included.
	Duration time.Duration
}

// Stats reports Run.
type Stats struct {
	Rounds []Round
	Reason StopReason
	// Pages and Bytes sent in all rounds; RedundantPages of those pages
	// were sent more than once (each later send counts).
	Pages, Bytes, RedundantPages int64
	Duration                     time.Duration
	// The last Progress figures: what the freeze is expected to carry.
	DirtyRate       float64
	Remaining       int64
	Throughput      float64
	PredictedFreeze time.Duration
}

// Session tracks the writes of a process tree and sends its memory in
// rounds. Start creates it; Close ends it. Its methods may be called from
// any goroutine, one at a time, except Close, which may also end a Run
// in progress (Run then fails with ErrClosed).
type Session struct {
	root      int
	opts      Options
	log       *slog.Logger
	trackedAt time.Time // when the tree was thawed with tracking on

	mu    sync.Mutex // guards the fields below
	procs map[int]*proc
	ran   bool // Run was called
	final bool // FinalPages was called: the trackers' state is consumed
	// closed is set by Close.
	closed bool
}

// proc is one tracked process.
type proc struct {
	pid   int
	start uint64 // start time (clock ticks since boot): a reused PID differs
	trk   *dirty.Tracker
	// sent holds the pages the destination holds, sorted and coalesced.
	sent []dirty.Range
	// owed holds pages a scan reported written that were not sent again
	// since (left out because the maps, read while the process runs, did
	// not show them as eligible, or the read failed): their scan is
	// consumed, so the final dump must not trust the destination's copy.
	owed []dirty.Range
	// broken is set when tracking failed (or the process went): the
	// destination's copies cannot be vouched for.
	broken bool
}

// ErrClosed is returned by a Session's methods after Close.
var ErrClosed = errors.New("precopy: session closed")

// Start begins write tracking of root and its descendants: it freezes the
// tree briefly, starts a dirty.Tracker in every process and thaws it
// again. A tree dump.Check refuses is refused before it is touched; on
// any error the tree runs on untracked. dirty.ErrUnsupported is wrapped
// when the kernel cannot track writes.
func Start(ctx context.Context, t *ptrace.Tracer, root int, opts Options) (*Session, error) {
	opts = opts.withDefaults()
	if err := dump.Check(root); err != nil {
		return nil, fmt.Errorf("precopy: %w", err)
	}
	s := &Session{root: root, opts: opts, log: opts.Log.With("pid", root, "mode", "precopy"), procs: map[int]*proc{}}
	err := t.Do(ctx, func() error { return s.startOnTracer(ctx) })
	if err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// startOnTracer freezes the tree, starts the trackers and thaws the tree,
// whatever happened.
func (s *Session) startOnTracer(ctx context.Context) (err error) {
	pids, err := tree(s.root)
	if err != nil {
		return fmt.Errorf("precopy: %w", err)
	}
	var frozen []*ptrace.Frozen
	defer func() {
		for i := len(frozen) - 1; i >= 0; i-- {
			if terr := frozen[i].Thaw(false); terr != nil && err == nil {
				err = fmt.Errorf("precopy: thaw %d: %w", frozen[i].PID, terr)
			}
		}
		s.trackedAt = time.Now()
	}()
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := procfs.Stat(pid)
		if err != nil || st.State == 'Z' || st.State == 'X' {
			if pid == s.root {
				return fmt.Errorf("precopy: process %d is gone or a zombie", pid)
			}
			continue // exited meanwhile; nothing to track
		}
		fz, err := ptrace.Freeze(pid, s.opts.MaxDelay, s.log)
		if err != nil {
			if pid != s.root && (errors.Is(err, ptrace.ErrExited) || errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH)) {
				continue
			}
			return fmt.Errorf("precopy: %w", err)
		}
		frozen = append(frozen, fz)
		trk, err := dirty.Start(pid, fz, s.opts.Log.With("mode", "precopy"))
		if err != nil {
			if pid == s.root {
				return fmt.Errorf("precopy: track %d: %w", pid, err)
			}
			// Untracked, its memory goes with the freeze.
			s.log.Info("process not tracked", "child", pid, "err", err)
			continue
		}
		s.mu.Lock()
		s.procs[pid] = &proc{pid: pid, start: st.StartTime, trk: trk}
		s.mu.Unlock()
	}
	return nil
}

// tree lists pid and its descendants, parents first.
func tree(pid int) ([]int, error) {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		kids, err := procfs.Children(out[i])
		if err != nil {
			if i > 0 && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return nil, err
		}
		out = append(out, kids...)
	}
	return out, nil
}

// Close ends write tracking in every process: the write-protection is
// removed and the userfaultfds closed, so a process that resumes on the
// source runs on as before. Call it when the migration is over, either
// way. It is safe to call more than once.
func (s *Session) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var first error
	for _, pid := range s.pidsLocked() {
		if err := s.procs[pid].trk.Close(); err != nil && first == nil {
			first = fmt.Errorf("precopy: %w", err)
		}
	}
	return first
}

// PIDs lists the tracked processes.
func (s *Session) PIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pidsLocked()
}

func (s *Session) pidsLocked() []int {
	pids := make([]int, 0, len(s.procs))
	for pid := range s.procs {
		pids = append(pids, pid)
	}
	slices.Sort(pids)
	return pids
}
