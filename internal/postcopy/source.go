package postcopy

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// DefaultPrefetch is how many pages the source sends for one requested
// page when ServeOptions.Prefetch is zero: the page and the next 15
// (64 KiB), fewer at the end of the VMA.
const DefaultPrefetch = 16

// maxRequestPages bounds one request; a larger one is a protocol error.
const maxRequestPages = 1 << 14

// chunkPages bounds one pages frame, and one step of the push between
// which requests are looked at.
const chunkPages = 64

// ServeOptions tune Serve.
type ServeOptions struct {
	// Prefetch is how many pages, starting at a requested one, go back
	// for each request (capped at the VMA's end); it is told to the
	// destination, which counts them as on their way. Default
	// DefaultPrefetch; 1 disables prefetching.
	Prefetch int
	// Read, when set, supplies the pages instead of process_vm_readv from
	// the frozen processes (SourceProcess.PID is then unused): it fills
	// buf, whole pages within one data run of a lazy VMA, with the memory
	// of image process imagePID from addr on. A page it holds no data for
	// must read as zeros: it goes out as a zero marker, like a data page
	// the source finds all zero. It may be called from Serve's goroutine
	// only, one call at a time. An error ends Serve. A Staging of package
	// precopy supplies one (ServeLocal).
	Read func(imagePID int, addr uint64, buf []byte) error
	Log  *slog.Logger
}

// SourceProcess is one frozen process whose lazy memory Serve hands out.
type SourceProcess struct {
	// ImagePID is its PID in the image, by which the destination asks.
	ImagePID int
	// PID is the live, frozen process the pages are read from.
	PID int
	// VMAs are its lazy VMAs with their data pages (dump.Result.Lazy).
	VMAs []image.LazyVMA
}

// SourceProcesses lists the processes of a lazy dump for Serve; the frozen
// tree still has the PIDs it had in the image.
func SourceProcesses(res *dump.Result) []SourceProcess {
	var out []SourceProcess
	for pid, vmas := range res.Lazy {
		out = append(out, SourceProcess{ImagePID: pid, PID: pid, VMAs: vmas})
	}
	slices.SortFunc(out, func(a, b SourceProcess) int { return a.ImagePID - b.ImagePID })
	return out
}

// SourceStats reports what Serve sent.
type SourceStats struct {
	// BytesSent counts every frame byte written.
	BytesSent int64
	// PagesPushed and PagesOnDemand count data pages sent by the
	// background push and in answer to requests (prefetch included).
	PagesPushed   int64
	PagesOnDemand int64
	// ZeroPages counts data pages found all zero: a zero marker went
	// instead of their content.
	ZeroPages int64
	// Requests counts page requests answered.
	Requests int64
	// Started is when Serve began; PushEnded when every page had been
	// sent once and the destination was told; Acked when the destination
	// said it holds everything (the residual dependency ended).
	Started   time.Time
	PushEnded time.Time
	Acked     time.Time
}

// ErrDestinationGone is wrapped by Serve's error when the destination
// went away before it acknowledged the end of the transfer. The restored
// copy may or may not be running: the caller must find out before it
// resumes or kills the frozen one.
var ErrDestinationGone = errors.New("postcopy: the destination is gone")

// srcProc is a SourceProcess with its send state.
type srcProc struct {
	SourceProcess
	runs  []image.PageRun // every data page, ascending
	first []uint64        // page index of runs[i].Addr
	pages uint64
	sent  []uint64 // bitmap by page index: sent once (push skips it)
	// cowShared: some lazy page is shared copy-on-write with another
	// process; pages are then read without pinning, which would unshare
	// them in a source that may resume (ptrace.ReadMemShared).
	cowShared bool
}

func newSrcProc(sp SourceProcess) *srcProc {
	p := &srcProc{SourceProcess: sp}
	p.VMAs = slices.Clone(sp.VMAs)
	slices.SortFunc(p.VMAs, func(a, b image.LazyVMA) int { return cmp.Compare(a.Start, b.Start) })
	for _, v := range p.VMAs {
		for _, r := range v.Runs {
			p.runs = append(p.runs, r)
			p.first = append(p.first, p.pages)
			p.pages += r.Pages
		}
	}
	p.sent = make([]uint64, (p.pages+63)/64)
	if sp.PID > 0 {
		for _, v := range p.VMAs {
			if ents, err := procfs.ReadPagemap(sp.PID, v.Start, v.End); err == nil && procfs.AnyCowShared(ents) {
				p.cowShared = true
				break
			}
		}
	}
	return p
}

func (p *srcProc) readMem(addr uint64, data []byte) error {
	if p.cowShared {
		return ptrace.ReadMemShared(p.PID, addr, data)
	}
	return ptrace.ReadMem(p.PID, addr, data)
}

func (p *srcProc) isSent(i uint64) bool { return p.sent[i/64]&(1<<(i%64)) != 0 }
func (p *srcProc) setSent(i uint64)     { p.sent[i/64] |= 1 << (i % 64) }

// vmaOf returns the VMA holding addr.
func (p *srcProc) vmaOf(addr uint64) (image.LazyVMA, bool) {
	for _, v := range p.VMAs {
		if v.Start <= addr && addr < v.End {
			return v, true
		}
	}
	return image.LazyVMA{}, false
}

// source is the state of one Serve call.
type source struct {
	ps        uint64
	prefetch  int
	procs     map[int]*srcProc
	order     []*srcProc
	fw        *frameWriter
	readPages func(imagePID int, addr uint64, buf []byte) error
	log       *slog.Logger
	stats     SourceStats
	buf       []byte
	prefix    [pagesPrefix]byte

	// push cursor: order[pushProc].runs[pushRun], page pushPage in it
	pushProc, pushRun int
	pushPage          uint64

	in inbox
}

// inbox is what the reader goroutine hands the writer: requests (never
// blocking the reader, so the two directions cannot wait on each other),
// the acknowledgement, or the reason reading stopped.
type inbox struct {
	wake chan struct{} // cap 1: something changed

	mu    sync.Mutex // guards the fields below
	hello *hello
	reqs  [][3]uint64 // pid, address, pages
	acked bool
	err   error
}

func (b *inbox) poke() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Serve hands out the lazy memory of procs over conn until the destination
// acknowledges that it holds every page (the residual dependency on this
// node then ends), and returns what it sent. Requested pages go first,
// with their prefetch window; between them a background push sends every
// data page not sent yet, all-zero pages as zero markers. The frozen
// processes are read with process_vm_readv and are not changed: resuming
// or killing them is the caller's decision (ServeOptions.Read takes the
// pages from elsewhere instead). Serve owns conn and closes it
// when it returns; the end of ctx stops it.
func Serve(ctx context.Context, conn io.ReadWriteCloser, procs []SourceProcess, opts ServeOptions) (*SourceStats, error) {
	if opts.Prefetch <= 0 {
		opts.Prefetch = DefaultPrefetch
	}
	opts.Prefetch = min(opts.Prefetch, maxRequestPages)
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &source{ps: uint64(os.Getpagesize()), prefetch: opts.Prefetch, procs: map[int]*srcProc{},
		fw: newFrameWriter(conn), readPages: opts.Read, log: opts.Log.With("side", "source"), in: inbox{wake: make(chan struct{}, 1)}}
	s.stats.Started = time.Now()
	s.buf = make([]byte, chunkPages*s.ps)
	for _, sp := range procs {
		if _, dup := s.procs[sp.ImagePID]; dup {
			conn.Close()
			return nil, fmt.Errorf("postcopy: image pid %d given twice", sp.ImagePID)
		}
		p := newSrcProc(sp)
		s.procs[sp.ImagePID] = p
		s.order = append(s.order, p)
	}
	var wg sync.WaitGroup
	ended := make(chan struct{})
	wg.Go(func() {
		select {
		case <-ctx.Done():
			conn.Close() // unblocks a write to a stalled destination
		case <-ended:
		}
	})
	readDone := make(chan struct{})
	wg.Go(func() {
		defer close(readDone)
		s.read(conn)
	})
	err := s.serve(ctx)
	close(ended)
	switch {
	case err == nil, ctx.Err() != nil:
	case errors.Is(err, ErrDestinationGone):
		// A write failed: the destination may have acknowledged and
		// closed while an answer it no longer needed was on its way. Its
		// acknowledgement is still to be read.
		select {
		case <-readDone:
		case <-time.After(time.Second):
		}
		s.in.mu.Lock()
		if s.in.acked {
			err = nil
			s.stats.Acked = time.Now()
		}
		s.in.mu.Unlock()
	default:
		// Tell the destination why, if it still listens.
		msg := err.Error()
		s.fw.write(frameError, nil, []byte(msg[:min(len(msg), maxErrorLen)]))
		s.fw.flush()
	}
	conn.Close()
	wg.Wait()
	s.stats.BytesSent = s.fw.bytes()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("postcopy: serve: %w", ctx.Err())
		}
		return &s.stats, err
	}
	s.log.Debug("postcopy source done", "pushed", s.stats.PagesPushed, "on_demand", s.stats.PagesOnDemand,
		"zero", s.stats.ZeroPages, "requests", s.stats.Requests, "bytes", s.stats.BytesSent)
	return &s.stats, nil
}

// read runs on its own goroutine until conn fails or closes.
func (s *source) read(conn io.Reader) {
	fr := newFrameReader(conn)
	var buf []byte
	for {
		f, err := fr.next(buf)
		s.in.mu.Lock()
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			if s.in.err == nil {
				s.in.err = err
			}
			s.in.mu.Unlock()
			s.in.poke()
			return
		}
		buf = f.payload
		switch f.typ {
		case frameHello:
			h, _ := decodeHello(f.payload) // checked by the reader
			s.in.hello = &h
		case frameRequest:
			pid, addr, pages := decodeRange(f.payload)
			s.in.reqs = append(s.in.reqs, [3]uint64{uint64(pid), addr, uint64(pages)})
		case frameDone:
			s.in.acked = true
		case frameError:
			s.in.err = fmt.Errorf("destination failed: %s", f.payload)
		default:
			s.in.err = fmt.Errorf("%w: a %s frame from the destination", ErrMalformed, f.typ)
		}
		stopped := s.in.err != nil || s.in.acked
		s.in.mu.Unlock()
		s.in.poke()
		if stopped {
			return
		}
	}
}

func (s *source) serve(ctx context.Context) error {
	if err := s.fw.write(frameHello, encodeHello(hello{version: Version, pageSize: uint32(s.ps), prefetch: uint32(s.prefetch)}), nil); err != nil {
		return fmt.Errorf("%w: %w", ErrDestinationGone, err)
	}
	if err := s.fw.flush(); err != nil {
		return fmt.Errorf("%w: %w", ErrDestinationGone, err)
	}
	pushDone := false
	for {
		s.in.mu.Lock()
		h, reqs, acked, rerr := s.in.hello, s.in.reqs, s.in.acked, s.in.err
		s.in.reqs = nil
		s.in.mu.Unlock()
		if acked {
			s.stats.Acked = time.Now()
			return nil
		}
		if rerr != nil {
			if errors.Is(rerr, ErrChecksum) || errors.Is(rerr, ErrMalformed) || errors.Is(rerr, ErrTruncated) || errors.Is(rerr, ErrVersion) {
				return fmt.Errorf("postcopy: from the destination: %w", rerr)
			}
			return fmt.Errorf("%w before it acknowledged: %w", ErrDestinationGone, rerr)
		}
		if h != nil && h.pageSize != uint32(s.ps) {
			return fmt.Errorf("%w: destination page size %d, source %d", ErrMalformed, h.pageSize, s.ps)
		}
		switch {
		case h == nil:
			// Nothing before the destination has said who it is.
		case len(reqs) > 0:
			for _, r := range reqs {
				if err := s.answer(int(r[0]), r[1], r[2]); err != nil {
					return err
				}
			}
			if err := s.fw.flush(); err != nil {
				return fmt.Errorf("%w: %w", ErrDestinationGone, err)
			}
			continue
		case !pushDone:
			more, err := s.pushStep()
			if err != nil {
				return err
			}
			if !more {
				pushDone = true
				s.stats.PushEnded = time.Now()
				s.log.Debug("push ended", "took", s.stats.PushEnded.Sub(s.stats.Started))
				if err := s.fw.write(framePushDone, encodeCounts(uint64(s.stats.PagesPushed+s.stats.PagesOnDemand), uint64(s.stats.ZeroPages)), nil); err != nil {
					return fmt.Errorf("%w: %w", ErrDestinationGone, err)
				}
				if err := s.fw.flush(); err != nil {
					return fmt.Errorf("%w: %w", ErrDestinationGone, err)
				}
			}
			continue
		}
		select {
		case <-s.in.wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// answer sends the data pages of [addr, addr+pages) (capped at the VMA),
// always including the page at addr.
func (s *source) answer(pid int, addr, pages uint64) error {
	p := s.procs[pid]
	if p == nil {
		return fmt.Errorf("%w: request for pid %d, which this source does not serve", ErrMalformed, pid)
	}
	v, ok := p.vmaOf(addr)
	if !ok || pages > maxRequestPages {
		return fmt.Errorf("%w: request for %#x+%d pages of pid %d: not in a lazy VMA", ErrMalformed, addr, pages, pid)
	}
	s.stats.Requests++
	end := min(addr+pages*s.ps, v.End)
	i, _ := slices.BinarySearchFunc(p.runs, addr, func(r image.PageRun, a uint64) int {
		if r.Addr+r.Pages*s.ps <= a {
			return -1
		}
		if r.Addr > a {
			return 1
		}
		return 0
	})
	if i >= len(p.runs) || p.runs[i].Addr > addr {
		// Not a data page: it is zero. Say so, so nothing waits for it.
		if err := s.fw.write(frameZero, encodeRange(pid, addr, 1), nil); err != nil {
			return fmt.Errorf("%w: %w", ErrDestinationGone, err)
		}
		s.stats.ZeroPages++
	}
	for ; i < len(p.runs) && p.runs[i].Addr < end; i++ {
		r := p.runs[i]
		lo, hi := max(r.Addr, addr), min(r.Addr+r.Pages*s.ps, end)
		for a := lo; a < hi; {
			n := min(hi-a, chunkPages*s.ps)
			if err := s.send(p, a, n, true); err != nil {
				return err
			}
			first := p.first[i] + (a-r.Addr)/s.ps
			for k := uint64(0); k < n/s.ps; k++ {
				p.setSent(first + k)
			}
			a += n
		}
	}
	return nil
}

// pushStep sends the next chunk of pages not sent yet; false when none is
// left.
func (s *source) pushStep() (bool, error) {
	for s.pushProc < len(s.order) {
		p := s.order[s.pushProc]
		if s.pushRun >= len(p.runs) {
			s.pushProc, s.pushRun, s.pushPage = s.pushProc+1, 0, 0
			continue
		}
		r := p.runs[s.pushRun]
		if s.pushPage >= r.Pages {
			s.pushRun, s.pushPage = s.pushRun+1, 0
			continue
		}
		base := p.first[s.pushRun]
		if p.isSent(base + s.pushPage) {
			s.pushPage++
			continue
		}
		n := uint64(1)
		for s.pushPage+n < r.Pages && n < chunkPages && !p.isSent(base+s.pushPage+n) {
			n++
		}
		if err := s.send(p, r.Addr+s.pushPage*s.ps, n*s.ps, false); err != nil {
			return false, err
		}
		for k := uint64(0); k < n; k++ {
			p.setSent(base + s.pushPage + k)
		}
		s.pushPage += n
		return true, nil
	}
	return false, nil
}

// send reads n bytes of p's memory at addr and writes them as pages
// frames, all-zero pages as zero frames.
func (s *source) send(p *srcProc, addr, n uint64, demand bool) error {
	data := s.buf[:n]
	if s.readPages != nil {
		if err := s.readPages(p.ImagePID, addr, data); err != nil {
			return fmt.Errorf("postcopy: read %#x+%d of image pid %d: %w", addr, n, p.ImagePID, err)
		}
	} else if err := p.readMem(addr, data); err != nil {
		return fmt.Errorf("postcopy: read %#x+%d of pid %d: %w", addr, n, p.PID, err)
	}
	ps := int(s.ps)
	for off := 0; off < len(data); {
		zero := isZeroPage(data[off : off+ps])
		end := off + ps
		for end < len(data) && isZeroPage(data[end:end+ps]) == zero {
			end += ps
		}
		var err error
		if zero {
			err = s.fw.write(frameZero, encodeRange(p.ImagePID, addr+uint64(off), (end-off)/ps), nil)
			s.stats.ZeroPages += int64((end - off) / ps)
		} else {
			err = s.fw.write(framePages, encodePagesPrefix(&s.prefix, p.ImagePID, addr+uint64(off)), data[off:end])
			if demand {
				s.stats.PagesOnDemand += int64((end - off) / ps)
			} else {
				s.stats.PagesPushed += int64((end - off) / ps)
			}
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrDestinationGone, err)
		}
		off = end
	}
	return nil
}

var zeroPage = make([]byte, 1<<16)

func isZeroPage(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroPage))
		if !bytes.Equal(b[:n], zeroPage[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
