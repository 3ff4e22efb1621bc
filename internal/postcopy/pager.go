package postcopy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/restore"
)

// ErrSourceGone is wrapped by Pager.Wait's error when the source stopped
// answering (the connection broke, or it sent garbage or an error) before
// every page arrived. The processes then wait, blocked, on pages that will
// never come: the caller decides (kill them, then Close).
var ErrSourceGone = errors.New("postcopy: the source is gone")

// PagerOptions tune a Pager.
type PagerOptions struct {
	Log *slog.Logger
}

// PagerStats reports what a Pager did.
type PagerStats struct {
	// Faults counts page faults read from the userfaultfds; PrefetchHits
	// those on pages already on their way (in the window of an earlier
	// request); ZeroFaults those answered at once with a zero page.
	Faults       int64
	PrefetchHits int64
	ZeroFaults   int64
	// Requests counts page requests sent to the source.
	Requests int64
	// PagesCopied counts pages put in place with UFFDIO_COPY, ZeroPages
	// data pages the source found all zero (left to the kernel's zero
	// fill, or mapped to the zero page if a fault waited).
	PagesCopied int64
	ZeroPages   int64
	// BytesReceived counts every frame byte from the source.
	BytesReceived int64
	// Forks counts address spaces forked from a paged one during the
	// transfer; Exited those that went away before all their pages came.
	Forks  int
	Exited int
	// Started is when the pager started; PushEnded when the source said
	// its push ended; ResidualEnded when every page was in place, the
	// userfaultfds closed and the source told it may let go.
	Started       time.Time
	PushEnded     time.Time
	ResidualEnded time.Time
}

// TimeToPushEnd is how long after the start the source's push ended.
func (s *PagerStats) TimeToPushEnd() time.Duration {
	if s.PushEnded.IsZero() {
		return 0
	}
	return s.PushEnded.Sub(s.Started)
}

// Pager serves the lazy memory of restored processes (restore.Result.Lazy)
// from a source running Serve. It owns three goroutines (the loop that
// reads userfaultfd events and places pages, a frame reader and a frame
// writer), the connection and the userfaultfds. Wait blocks until the
// residual dependency ended (every page in place: the userfaultfds are
// closed and the processes no longer need the source) or failed; Close
// stops everything and must always be called.
type Pager struct {
	conn   io.ReadWriteCloser
	log    *slog.Logger
	ps     uint64
	procs  map[int]*lazyProc
	order  []*lazyProc
	efd    int // eventfd: wakes the loop out of poll
	ctx    context.Context
	cancel context.CancelFunc

	frames chan inFrame // reader → loop
	free   chan []byte  // loop → reader: payload buffers
	out    outbox       // loop → writer

	wg        sync.WaitGroup // every goroutine
	done      chan struct{}  // closed when the loop has ended
	err       error          // the loop's result; read after done
	closeOnce sync.Once

	// Owned by the loop goroutine; read by others only after done.
	stats          PagerStats
	prefetch       int
	pushDone       bool
	rescan         bool      // look for needed pages to request (after the push)
	deferred       []inFrame // frames to place again: the mm was changing
	deferredFaults []deferredFault
	msgs           []kernel.UffdMsg
}

type inFrame struct {
	f   frame
	err error
}

type deferredFault struct {
	v    *view
	addr uint64
}

// outbox queues frames for the writer goroutine. It never blocks the
// loop, which must go on serving faults while the network is slow.
type outbox struct {
	mu      sync.Mutex // guards the fields below
	items   []outFrame
	closing bool  // write what is queued, then stop
	err     error // the first write error
	wake    chan struct{}
	done    chan struct{} // closed when the writer has stopped
}

type outFrame struct {
	t frameType
	p []byte
}

// StartPager starts serving procs' userfaultfds from the source at the
// other end of conn. It takes conn and the userfaultfds over only when it
// succeeds.
func StartPager(ctx context.Context, conn io.ReadWriteCloser, procs []restore.LazyProcess, opts PagerOptions) (*Pager, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	p := &Pager{conn: conn, log: opts.Log.With("side", "destination"), ps: uint64(os.Getpagesize()),
		procs: map[int]*lazyProc{}, frames: make(chan inFrame, 16), free: make(chan []byte, 18),
		done: make(chan struct{}), prefetch: 1, msgs: make([]kernel.UffdMsg, 64)}
	p.out.wake = make(chan struct{}, 1)
	p.out.done = make(chan struct{})
	for _, lp := range procs {
		if lp.Uffd < 0 {
			return nil, fmt.Errorf("postcopy: process %d has no userfaultfd", lp.PID)
		}
		if _, dup := p.procs[lp.ImagePID]; dup {
			return nil, fmt.Errorf("postcopy: image pid %d given twice", lp.ImagePID)
		}
		x := newLazyProc(lp)
		x.views = []*view{newView(x, lp.Uffd, fmt.Sprintf("pid %d", lp.PID))}
		p.procs[lp.ImagePID] = x
		p.order = append(p.order, x)
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("postcopy: %w", os.NewSyscallError("eventfd", err))
	}
	p.efd = efd
	p.stats.Started = time.Now()
	p.ctx, p.cancel = context.WithCancel(ctx)
	p.wg.Go(func() {
		// The end, whoever caused it, unblocks the reader and the loop.
		<-p.ctx.Done()
		conn.Close()
		p.kick()
	})
	p.send(frameHello, encodeHello(hello{version: Version, pageSize: uint32(p.ps)}))
	p.wg.Go(p.read)
	p.wg.Go(p.write)
	p.wg.Go(func() {
		defer close(p.done)
		p.err = p.run()
		p.cancel() // stops the reader and the writer; closes conn
	})
	return p, nil
}

// Done is closed when the pager has ended, well or not.
func (p *Pager) Done() <-chan struct{} { return p.done }

// Wait waits for the end: nil once every page is in place and the source
// was told (its dependency ended at Stats.ResidualEnded), or the reason it
// could not be. An error wrapping ErrSourceGone says how many pages each
// process still misses.
func (p *Pager) Wait() (*PagerStats, error) {
	<-p.done
	p.wg.Wait()
	st := p.stats
	return &st, p.err
}

// Close stops the pager, waits for its goroutines and closes the
// userfaultfds it still holds. After a failure, kill the processes first:
// once their userfaultfd is closed, a missing page reads as zeros.
func (p *Pager) Close() error {
	p.closeOnce.Do(func() {
		p.cancel()
		p.wg.Wait()
		for _, lp := range p.order {
			for _, v := range lp.views {
				v.close(p.ps, false)
			}
		}
		unix.Close(p.efd)
	})
	return nil
}

// kick wakes the loop.
func (p *Pager) kick() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(p.efd, one[:])
}

// send queues a frame for the writer.
func (p *Pager) send(t frameType, payload []byte) {
	p.out.mu.Lock()
	p.out.items = append(p.out.items, outFrame{t, payload})
	p.out.mu.Unlock()
	select {
	case p.out.wake <- struct{}{}:
	default:
	}
}

// read decodes frames for the loop until the connection ends.
func (p *Pager) read() {
	fr := newFrameReader(p.conn)
	for {
		var buf []byte
		select {
		case buf = <-p.free:
		default:
		}
		f, err := fr.next(buf)
		select {
		case p.frames <- inFrame{f: f, err: err}:
		case <-p.ctx.Done():
			return
		}
		p.kick()
		if err != nil {
			return
		}
	}
}

// write sends queued frames until the outbox is closed and empty.
func (p *Pager) write() {
	defer close(p.out.done)
	fw := newFrameWriter(p.conn)
	for {
		p.out.mu.Lock()
		items, closing := p.out.items, p.out.closing
		p.out.items = nil
		p.out.mu.Unlock()
		var err error
		for _, it := range items {
			if err = fw.write(it.t, it.p, nil); err != nil {
				break
			}
		}
		if err == nil && len(items) > 0 {
			err = fw.flush()
		}
		if err != nil {
			p.out.mu.Lock()
			p.out.err = err
			p.out.mu.Unlock()
			p.kick()
			return
		}
		if closing && len(items) == 0 {
			return
		}
		if closing {
			continue
		}
		select {
		case <-p.out.wake:
		case <-p.ctx.Done():
			return
		}
	}
}

func (p *Pager) writeErr() error {
	p.out.mu.Lock()
	defer p.out.mu.Unlock()
	return p.out.err
}

// run is the loop: userfaultfd events first (a thread waits behind each
// fault), then what the source sent.
func (p *Pager) run() error {
	for {
		if err := p.ctx.Err(); err != nil {
			return fmt.Errorf("postcopy: pager: %w", err)
		}
		if err := p.writeErr(); err != nil {
			return p.sourceGone(err)
		}
		busy := false
		for _, lp := range p.order {
			for i := 0; i < len(lp.views); i++ { // a fork appends a view
				v := lp.views[i]
				if v.dead {
					continue
				}
				n, err := p.events(v)
				if err != nil {
					return err
				}
				busy = busy || n > 0
			}
		}
		if err := p.retry(); err != nil {
			return err
		}
		for k := 0; k < 8; k++ {
			var in inFrame
			select {
			case in = <-p.frames:
			default:
				k = 8
				continue
			}
			busy = true
			if err := p.frame(in); err != nil {
				return err
			}
		}
		if p.pushDone {
			if p.rescan {
				p.requestMissing()
			}
			if p.complete() {
				return p.finish()
			}
		}
		if !busy {
			if err := p.sleep(); err != nil {
				return err
			}
		}
	}
}

// sleep polls the userfaultfds and the eventfd.
func (p *Pager) sleep() error {
	fds := []unix.PollFd{{Fd: int32(p.efd), Events: unix.POLLIN}}
	for _, lp := range p.order {
		for _, v := range lp.views {
			if !v.dead {
				fds = append(fds, unix.PollFd{Fd: int32(v.ufd), Events: unix.POLLIN})
			}
		}
	}
	timeout := -1
	if len(p.deferred) > 0 || len(p.deferredFaults) > 0 {
		timeout = 1
	}
	for {
		_, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("postcopy: %w", os.NewSyscallError("poll", err))
		}
		break
	}
	var b [8]byte
	unix.Read(p.efd, b[:]) // drain; EAGAIN when nothing was written
	return nil
}

// frame handles one frame from the source.
func (p *Pager) frame(in inFrame) error {
	if in.err != nil {
		if in.err == io.EOF {
			in.err = io.ErrUnexpectedEOF
		}
		return p.sourceGone(in.err)
	}
	p.stats.BytesReceived += int64(in.f.size)
	switch in.f.typ {
	case frameHello:
		h, _ := decodeHello(in.f.payload) // checked by the reader
		if h.pageSize != uint32(p.ps) {
			return fmt.Errorf("postcopy: source page size %d, this machine's %d", h.pageSize, p.ps)
		}
		p.prefetch = max(1, int(h.prefetch))
	case framePages, frameZero:
		retry, err := p.place(in.f)
		if err != nil {
			return err
		}
		if retry {
			p.deferred = append(p.deferred, in)
			return nil
		}
	case framePushDone:
		p.pushDone, p.rescan = true, true
		p.stats.PushEnded = time.Now()
		p.log.Debug("source push ended", "after", p.stats.PushEnded.Sub(p.stats.Started))
	case frameError:
		return p.sourceGone(fmt.Errorf("source failed: %s", in.f.payload))
	default:
		return p.sourceGone(fmt.Errorf("%w: a %s frame from the source", ErrMalformed, in.f.typ))
	}
	p.recycle(in)
	return nil
}

func (p *Pager) recycle(in inFrame) {
	select {
	case p.free <- in.f.payload[:0]:
	default:
	}
}

// place puts a pages or zero frame's pages into every view that needs
// them; retry when a view's mappings were changing (EAGAIN) and the frame
// must be placed again once its events are read.
func (p *Pager) place(f frame) (retry bool, err error) {
	var pid int
	var src uint64
	var data []byte
	var pages int
	if f.typ == framePages {
		pid, src, data = decodePages(f.payload)
		pages = len(data) / int(p.ps)
	} else {
		pid, src, pages = decodeRange(f.payload)
	}
	lp := p.procs[pid]
	if lp == nil {
		return false, p.sourceGone(fmt.Errorf("%w: %s frame for pid %d, which this side does not page", ErrMalformed, f.typ, pid))
	}
	for _, v := range lp.views {
		if v.dead {
			continue
		}
		r, err := p.placeView(v, src, data, pages)
		if err != nil {
			return false, err
		}
		retry = retry || r
	}
	return retry, nil
}

// placeView places pages of one frame into v: data (UFFDIO_COPY) or, with
// data nil, zeros.
func (p *Pager) placeView(v *view, src uint64, data []byte, pages int) (bool, error) {
	lp, ps := v.lp, p.ps
	for k := 0; k < pages; {
		a := src + uint64(k)*ps
		i, ok := lp.index(a, ps)
		if !ok || (v.st[i] != stNeeded && v.st[i] != stWanted) {
			k++
			continue
		}
		if data == nil && v.st[i] == stNeeded {
			// Nobody waits for it: leave it to the kernel's zero fill.
			v.set(i, stZero)
			p.stats.ZeroPages++
			k++
			continue
		}
		dst, srcEnd, ok := v.toDst(a)
		if !ok {
			v.set(i, stZero) // no longer mapped here
			k++
			continue
		}
		m := 1
		for k+m < pages && a+uint64(m)*ps < srcEnd {
			j, ok := lp.index(a+uint64(m)*ps, ps)
			if !ok || j != i+m || !(v.st[j] == stWanted || data != nil && v.st[j] == stNeeded) {
				break
			}
			m++
		}
		for off := 0; off < m; {
			var n int
			var err error
			if data != nil {
				n, err = uffdCopy(v.ufd, dst+uint64(off)*ps, data[(k+off)*int(ps):(k+m)*int(ps)])
			} else {
				n, err = uffdZero(v.ufd, dst+uint64(off)*ps, uint64(m-off)*ps)
			}
			done := n / int(ps)
			for q := 0; q < done; q++ {
				if data != nil {
					v.set(i+off+q, stPresent)
					p.stats.PagesCopied++
				} else {
					v.set(i+off+q, stZero)
					p.stats.ZeroPages++
				}
			}
			off += done
			switch {
			case err == nil, errors.Is(err, unix.EAGAIN) && done > 0:
			case errors.Is(err, unix.EEXIST):
				// Already there (a fork child got it from its parent).
				v.set(i+off, stPresent)
				off++
			case errors.Is(err, unix.ENOENT):
				v.set(i+off, stZero) // not registered any more
				off++
			case errors.Is(err, unix.EAGAIN):
				return true, nil
			case errors.Is(err, unix.ESRCH):
				p.gone(v)
				return false, nil
			default:
				return false, fmt.Errorf("postcopy: place pages at %#x in %s: %w", dst+uint64(off)*ps, v.name, err)
			}
		}
		k += m
	}
	return false, nil
}

// events reads and handles v's pending userfaultfd messages.
func (p *Pager) events(v *view) (int, error) {
	n, err := kernel.ReadUffdMsgs(v.ufd, p.msgs)
	if errors.Is(err, unix.EAGAIN) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postcopy: userfaultfd of %s: %w", v.name, err)
	}
	for i := range p.msgs[:n] {
		m := &p.msgs[i]
		switch m.Event {
		case kernel.UFFD_EVENT_PAGEFAULT:
			p.stats.Faults++
			addr := m.Pagefault().Address &^ (p.ps - 1)
			if err := p.fault(v, addr); err != nil {
				return n, err
			}
		case kernel.UFFD_EVENT_FORK:
			ufd := m.Fork()
			unix.SetNonblock(ufd, true)
			child := v.fork(ufd)
			v.lp.views = append(v.lp.views, child)
			p.stats.Forks++
			p.rescan = true
			p.log.Debug("paged process forked", "parent", v.name, "missing", child.missing)
		case kernel.UFFD_EVENT_REMAP:
			from, to, length := m.Remap()
			v.remap(from, to, length, p.ps)
		case kernel.UFFD_EVENT_REMOVE, kernel.UFFD_EVENT_UNMAP:
			start, end := m.Remove()
			v.discard(start, end, p.ps, m.Event == kernel.UFFD_EVENT_UNMAP)
			// A thread waiting on a page of the range gets it again as
			// a zero page, or a SIGSEGV when it is unmapped.
			r := kernel.UffdioRange{Start: start, Len: end - start}
			kernel.UffdioWake(v.ufd, &r)
		default:
			return n, fmt.Errorf("postcopy: userfaultfd of %s: unexpected event %#x", v.name, m.Event)
		}
	}
	return n, nil
}

// fault answers a missing-page fault at addr in v.
func (p *Pager) fault(v *view, addr uint64) error {
	lp, ps := v.lp, p.ps
	src, segEnd, inSeg := v.toSrc(addr)
	if inSeg {
		if i, ok := lp.index(src, ps); ok {
			switch v.st[i] {
			case stNeeded:
				p.request(v, src)
				return nil
			case stWanted:
				p.stats.PrefetchHits++
				return nil
			case stPresent:
				// Copied after the fault was queued; the copy woke it.
				r := kernel.UffdioRange{Start: addr, Len: ps}
				kernel.UffdioWake(v.ufd, &r)
				return nil
			}
		}
	}
	// Zero here: a page with no data on the source, discarded, or outside
	// what came from the source (a stack that grew). Zero its neighbours
	// that are zero too, within the prefetch window.
	p.stats.ZeroFaults++
	n := uint64(1)
	for inSeg && n < uint64(p.prefetch) && addr+n*ps < segEnd {
		if i, ok := lp.index(src+n*ps, ps); ok && v.st[i] != stZero {
			break
		}
		n++
	}
	for off := uint64(0); off < n; {
		done, err := uffdZero(v.ufd, addr+off*ps, (n-off)*ps)
		off += uint64(done) / ps
		switch {
		case err == nil, errors.Is(err, unix.EAGAIN) && done > 0:
		case errors.Is(err, unix.EEXIST), errors.Is(err, unix.ENOENT):
			off++
		case errors.Is(err, unix.EAGAIN):
			p.deferredFaults = append(p.deferredFaults, deferredFault{v, addr + off*ps})
			return nil
		case errors.Is(err, unix.ESRCH):
			p.gone(v)
			return nil
		default:
			return fmt.Errorf("postcopy: zero page at %#x in %s: %w", addr+off*ps, v.name, err)
		}
	}
	return nil
}

// request asks the source for the page at src and the prefetch window
// after it, up to the last page v still needs, within the VMA.
func (p *Pager) request(v *view, src uint64) {
	lp, ps := v.lp, p.ps
	end := lp.vmaEnd(src)
	n := 1
	for k := 1; k < p.prefetch && src+uint64(k)*ps < end; k++ {
		if i, ok := lp.index(src+uint64(k)*ps, ps); ok && v.st[i] == stNeeded {
			n = k + 1
		}
	}
	for k := 0; k < n; k++ {
		if i, ok := lp.index(src+uint64(k)*ps, ps); ok && v.st[i] == stNeeded {
			v.set(i, stWanted)
		}
	}
	p.send(frameRequest, encodeRange(lp.imagePID, src, n))
	p.stats.Requests++
}

// requestMissing asks for every page a view still needs once the push
// has ended: pages of a child forked after they were sent.
func (p *Pager) requestMissing() {
	p.rescan = false
	for _, lp := range p.order {
		for _, v := range lp.views {
			if v.dead || v.missing == 0 {
				continue
			}
			for r, run := range lp.runs {
				for k := 0; k < int(run.Pages); {
					i := lp.first[r] + k
					if v.st[i] != stNeeded {
						k++
						continue
					}
					n := 1
					for k+n < int(run.Pages) && n < maxRequestPages && v.st[i+n] == stNeeded {
						n++
					}
					for q := 0; q < n; q++ {
						v.set(i+q, stWanted)
					}
					p.send(frameRequest, encodeRange(lp.imagePID, run.Addr+uint64(k)*p.ps, n))
					p.stats.Requests++
					k += n
				}
			}
		}
	}
}

// retry places deferred frames and answers deferred faults again.
func (p *Pager) retry() error {
	frames, faults := p.deferred, p.deferredFaults
	p.deferred, p.deferredFaults = nil, nil
	for _, in := range frames {
		again, err := p.place(in.f)
		if err != nil {
			return err
		}
		if again {
			p.deferred = append(p.deferred, in)
		} else {
			p.recycle(in)
		}
	}
	for _, f := range faults {
		if !f.v.dead {
			if err := p.fault(f.v, f.addr); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *Pager) complete() bool {
	if len(p.deferred) > 0 || len(p.deferredFaults) > 0 {
		return false
	}
	for _, lp := range p.order {
		for _, v := range lp.views {
			if !v.dead && v.missing > 0 {
				return false
			}
		}
	}
	return true
}

// gone drops a view whose address space went away (exit, exec).
func (p *Pager) gone(v *view) {
	if v.dead {
		return
	}
	p.log.Debug("paged address space gone", "view", v.name, "missing", v.missing)
	v.dead = true
	v.missing = 0
	p.stats.Exited++
}

// finish ends the transfer: the userfaultfds are unregistered and closed,
// so the processes no longer depend on anyone, and the source is told.
func (p *Pager) finish() error {
	for _, lp := range p.order {
		for _, v := range lp.views {
			v.close(p.ps, true)
		}
	}
	p.stats.ResidualEnded = time.Now()
	p.send(frameDone, doneCount(uint64(p.stats.PagesCopied)))
	p.out.mu.Lock()
	p.out.closing = true
	p.out.mu.Unlock()
	select {
	case p.out.wake <- struct{}{}:
	default:
	}
	select {
	case <-p.out.done:
	case <-p.ctx.Done():
	}
	if err := p.writeErr(); err != nil {
		// Every page is here; only the source does not know yet.
		p.log.Warn("postcopy: could not tell the source the transfer ended", "err", err)
	}
	p.log.Debug("postcopy residual dependency ended", "faults", p.stats.Faults, "copied", p.stats.PagesCopied,
		"took", p.stats.ResidualEnded.Sub(p.stats.Started))
	return nil
}

// sourceGone explains which processes miss how many pages.
func (p *Pager) sourceGone(cause error) error {
	var parts []string
	for _, lp := range p.order {
		n := 0
		for _, v := range lp.views {
			if !v.dead {
				n = max(n, v.missing)
			}
		}
		if n > 0 {
			parts = append(parts, fmt.Sprintf("process %d (pid %d on the source) cannot get its remaining %d pages", lp.pid, lp.imagePID, n))
		}
	}
	if len(parts) == 0 {
		parts = append(parts, "no page was missing yet")
	}
	return fmt.Errorf("%w (%w): %s", ErrSourceGone, cause, strings.Join(parts, "; "))
}

// close unregisters (when asked) and closes v's userfaultfd once.
func (v *view) close(ps uint64, unregister bool) {
	if v.closed {
		return
	}
	v.closed = true
	if unregister && !v.dead {
		for _, s := range v.segs {
			r := kernel.UffdioRange{Start: s.dst, Len: s.len}
			kernel.UffdioUnregister(v.ufd, &r) // best effort: closing unregisters too
		}
	}
	unix.Close(v.ufd)
}

// uffdCopy wraps UFFDIO_COPY: bytes copied (also on a partial EAGAIN)
// and the error.
func uffdCopy(ufd int, dst uint64, data []byte) (int, error) {
	arg := kernel.UffdioCopyArg{Dst: dst, Src: &data[0], Len: uint64(len(data))}
	err := kernel.UffdioCopy(ufd, &arg)
	if err == nil {
		return len(data), nil
	}
	return int(max(arg.Copy, 0)), err
}

// uffdZero wraps UFFDIO_ZEROPAGE like uffdCopy.
func uffdZero(ufd int, dst, n uint64) (int, error) {
	arg := kernel.UffdioZeropageArg{Range: kernel.UffdioRange{Start: dst, Len: n}}
	err := kernel.UffdioZeropage(ufd, &arg)
	if err == nil {
		return int(n), nil
	}
	return int(max(arg.Zeropage, 0)), err
}
