package precopy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"ferry/internal/dirty"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// readChunk bounds one process_vm_readv and one SendPages call; pagemap
// entries are read for at most pagemapChunk pages at a time.
const (
	readChunk    = 4 << 20
	pagemapChunk = 1 << 14
)

// notShrinking: a dirty set at least this fraction of the one before ends
// the rounds.
const notShrinking = 0.9

// Run sends the tree's memory while it runs: the first round every
// present page of the tracked private anonymous memory (all-zero pages
// left out: the destination gets those for free), every later round the
// pages written since the round before. It stops when the last round's
// dirty set is small (Options.MinDirtyBytes), the predicted freeze is
// short (Options.MaxFreeze), the dirty set stopped shrinking, or after
// Options.MaxRounds rounds. Then dump.Dump with Options.Precopy set to s
// sends the rest with the tree frozen.
//
// Run may be called once. On error (a send failed, ctx ended) the
// migration is to be abandoned: Close, and the tree runs on.
func (s *Session) Run(ctx context.Context, send PageSender) (*Stats, error) {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil, ErrClosed
	case s.ran || s.final:
		s.mu.Unlock()
		return nil, errors.New("precopy: Run called twice or after the final dump")
	}
	s.ran = true
	s.mu.Unlock()

	start := time.Now()
	st := &Stats{}
	r := &rounds{s: s, send: send, ps: uint64(os.Getpagesize())}
	r.zero = make([]byte, r.ps)
	prevScan := s.trackedAt
	var sendTime time.Duration
	for k := 1; ; k++ {
		if err := ctx.Err(); err != nil {
			return st, fmt.Errorf("precopy: round %d: %w", k, err)
		}
		roundStart := time.Now()
		rd, err := r.round(ctx, k)
		roundEnd := time.Now()
		rd.Duration = roundEnd.Sub(roundStart)
		st.Rounds = append(st.Rounds, rd)
		st.Pages += rd.Pages
		st.Bytes += rd.Bytes
		st.RedundantPages += rd.Redundant
		sendTime += roundEnd.Sub(r.scanned)
		if err != nil {
			st.Duration = time.Since(start)
			return st, err
		}

		p := Progress{Round: k, Sent: st.Bytes, RoundBytes: rd.Bytes, Remaining: -1, PredictedFreeze: -1}
		if sendTime > 0 {
			p.Throughput = float64(st.Bytes) / sendTime.Seconds()
		}
		if k > 1 {
			if iv := r.scanned.Sub(prevScan); iv > 0 {
				p.DirtyRate = float64(rd.Bytes) / iv.Seconds()
			}
			p.Remaining = int64(p.DirtyRate * roundEnd.Sub(r.scanned).Seconds())
			p.PredictedFreeze = predict(p.Remaining, p.Throughput)
		}
		prevScan = r.scanned
		st.DirtyRate, st.Remaining, st.Throughput, st.PredictedFreeze = p.DirtyRate, p.Remaining, p.Throughput, p.PredictedFreeze
		s.log.Debug("precopy round", "round", k, "pages", rd.Pages, "bytes", rd.Bytes, "redundant", rd.Redundant,
			"reported", rd.Reported, "took", rd.Duration, "rate", p.DirtyRate, "remaining", p.Remaining, "predicted", p.PredictedFreeze)
		if s.opts.Progress != nil {
			s.opts.Progress(p)
		}

		var prev int64 = -1
		if k > 2 {
			prev = st.Rounds[k-2].Bytes
		}
		if reason := s.stop(k, rd.Bytes, prev, p.PredictedFreeze); reason != 0 {
			st.Reason = reason
			st.Duration = time.Since(start)
			s.log.Info("precopy rounds done", "rounds", k, "reason", reason, "bytes", st.Bytes,
				"redundant_pages", st.RedundantPages, "remaining", st.Remaining, "predicted_freeze", st.PredictedFreeze)
			return st, nil
		}
	}
}

// stop decides whether the rounds end after round k, which sent dirty
// bytes (prev: the round before it, -1 for none to compare).
func (s *Session) stop(k int, dirty, prev int64, predicted time.Duration) StopReason {
	o := &s.opts
	switch {
	case k >= 2 && o.MinDirtyBytes >= 0 && dirty <= o.MinDirtyBytes:
		return SmallDirtySet
	case k >= 2 && o.MaxFreeze > 0 && predicted >= 0 && predicted <= o.MaxFreeze:
		return PredictedFreeze
	case prev >= 0 && float64(dirty) >= notShrinking*float64(prev):
		return NotShrinking
	case k >= o.MaxRounds:
		return RoundLimit
	}
	return 0
}

// predict returns how long sending remaining bytes takes at throughput.
func predict(remaining int64, throughput float64) time.Duration {
	switch {
	case remaining <= 0:
		return 0
	case throughput <= 0:
		return math.MaxInt64
	}
	return time.Duration(float64(remaining) / throughput * float64(time.Second))
}

// rounds holds what one Run needs between rounds.
type rounds struct {
	s       *Session
	send    PageSender
	ps      uint64
	zero    []byte // one page of zeros
	buf     []byte
	pmBuf   []uint64
	scanned time.Time // when the current round's scans were done
}

// round runs round k over every tracked process: scans first (all at
// about the same moment), then reads and sends.
func (r *rounds) round(ctx context.Context, k int) (Round, error) {
	var rd Round
	s := r.s
	type work struct {
		p  *proc
		rs []dirty.Range
	}
	var todo []work
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return rd, ErrClosed
	}
	var procs []*proc
	for _, pid := range s.pidsLocked() {
		procs = append(procs, s.procs[pid])
	}
	s.mu.Unlock()
	for _, p := range procs {
		pid := p.pid
		if p.broken {
			continue
		}
		var rs []dirty.Range
		var err error
		if k == 1 {
			rs, err = eligible(pid)
		} else {
			rs, err = p.trk.Scan()
		}
		if err != nil {
			// Gone, exec'd, or the tracker failed: its pages go with the
			// image; whatever was sent is rewritten there.
			s.log.Info("process no longer tracked; its memory goes with the freeze", "pid", pid, "err", err)
			p.broken = true
			continue
		}
		for _, x := range rs {
			rd.Reported += int64(x.End - x.Start)
		}
		todo = append(todo, work{p, rs})
	}
	r.scanned = time.Now()
	for _, w := range todo {
		if err := r.sendProc(ctx, w.p, w.rs, &rd); err != nil {
			return rd, err
		}
	}
	return rd, nil
}

// eligible returns the VMAs of pid whose pages are sent in rounds: private
// anonymous writable memory (heap and stacks included).
func eligible(pid int) ([]dirty.Range, error) {
	maps, err := procfs.Maps(pid)
	if err != nil {
		return nil, err
	}
	var rs []dirty.Range
	for _, m := range maps {
		if m.Anonymous() && m.Write && !m.Shared {
			rs = append(rs, dirty.Range{Start: m.Start, End: m.End})
		}
	}
	return rs, nil
}

// sendProc sends the pages of p in ranges rs that hold data: present or
// swapped pages of its eligible VMAs, all-zero ones only if the
// destination holds an older copy.
func (r *rounds) sendProc(ctx context.Context, p *proc, rs []dirty.Range, rd *Round) error {
	// The maps are read while the process runs, so they may be
	// inconsistent; that only costs a page sent or not sent in vain: one
	// not sent goes with the image, one sent is covered by tracking.
	elig, err := eligible(p.pid)
	if err != nil {
		p.broken = true
		return nil
	}
	pm, err := procfs.OpenPagemap(p.pid)
	if err != nil {
		p.broken = true
		return nil
	}
	defer pm.Close()
	reported := rs
	rs = intersect(rs, elig)
	if r.buf == nil {
		r.buf = make([]byte, readChunk)
	}
	sent := cursor{rs: p.sent}
	var added []dirty.Range
	for _, x := range rs {
		for a := x.Start; a < x.End; {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("precopy: %w", err)
			}
			b := min(x.End, a+pagemapChunk*r.ps)
			ents, err := pm.Read(a, b, r.pmBuf)
			if err != nil {
				break // unmapped meanwhile
			}
			r.pmBuf = ents
			run := -1
			for j := 0; j <= len(ents); j++ {
				// Unpopulated pages carry write-protection markers,
				// which look swapped but hold nothing.
				data := j < len(ents) && (procfs.Present(ents[j]) || procfs.Swapped(ents[j]) && !procfs.Marker(ents[j]))
				if data && run < 0 {
					run = j
				}
				if !data && run >= 0 {
					// Pages shared copy-on-write with another process
					// are not pinned (the kernel would unshare them in
					// the running source).
					shared := procfs.AnyCowShared(ents[run:j])
					added, err = r.sendRun(p, a+uint64(run)*r.ps, a+uint64(j)*r.ps, shared, &sent, added, rd)
					if err != nil {
						return err
					}
					run = -1
				}
			}
			a = b
		}
	}
	p.sent = union(p.sent, added)
	// Whatever was reported and not sent now is owed to the final dump.
	p.owed = subtract(union(p.owed, reported), added)
	return nil
}

// sendRun reads [start, end) of p in chunks and sends its pages, leaving
// out all-zero pages the destination never got. It appends what it sent
// to added.
func (r *rounds) sendRun(p *proc, start, end uint64, shared bool, sent *cursor, added []dirty.Range, rd *Round) ([]dirty.Range, error) {
	read := ptrace.ReadMem
	if shared {
		read = ptrace.ReadMemShared
	}
	for a := start; a < end; {
		n := min(end-a, readChunk)
		data := r.buf[:n]
		if err := read(p.pid, a, data); err != nil {
			// Unmapped or made unreadable meanwhile: what is there at the
			// freeze goes with the image.
			r.s.log.Debug("read failed; left to the freeze", "pid", p.pid, "addr", a, "len", n, "err", err)
			return added, nil
		}
		from := -1 // start of the run being sent, as an offset in data
		flush := func(to uint64) error {
			if from < 0 {
				return nil
			}
			addr := a + uint64(from)
			if err := r.send.SendPages(p.pid, addr, data[from:to]); err != nil {
				return fmt.Errorf("precopy: send pages of %d at %#x: %w", p.pid, addr, err)
			}
			added = append(added, dirty.Range{Start: addr, End: a + to})
			rd.Pages += int64((to - uint64(from)) / r.ps)
			rd.Bytes += int64(to - uint64(from))
			from = -1
			return nil
		}
		for off := uint64(0); off < n; off += r.ps {
			had := sent.has(a + off)
			if had || !bytes.Equal(data[off:off+r.ps], r.zero) {
				if had {
					rd.Redundant++
				}
				if from < 0 {
					from = int(off)
				}
				continue
			}
			if err := flush(off); err != nil {
				return added, err
			}
		}
		if err := flush(n); err != nil {
			return added, err
		}
		a += n
	}
	return added, nil
}
