package restore

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/ptrace"
)

// batchSize bounds one process_vm_writev; batchBuffers are in flight.
const (
	batchSize    = 4 << 20
	batchBuffers = 4
	maxIovecs    = 1024 // IOV_MAX
)

// pageBatch is consecutive page records of one process, or a signals
// record. Its bytes are either copied into buf (from a streaming reader,
// whose data do not outlive the next record) or, with a stable reader
// (a mapped image), referenced in place: local holds the pieces.
type pageBatch struct {
	b       *builder
	buf     []byte // owned copy, returned to the pool after writing
	local   [][]byte
	size    int
	remote  []unix.RemoteIovec
	signals []image.PendingSignal
	err     error
}

// fillPages writes every Pages record into the new address spaces. A
// reader goroutine decodes and copies records into batches while writer
// goroutines write earlier batches with process_vm_writev (which needs no
// ptrace stop), so reading the image overlaps filling fresh memory.
func (t *tree) fillPages(ctx context.Context, r *image.Reader, first *image.Record) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	batches := make(chan *pageBatch, batchBuffers-1)
	free := make(chan []byte, batchBuffers)
	for i := 0; i < batchBuffers; i++ {
		free <- make([]byte, 0, batchSize)
	}
	done := make(chan struct{})
	// inflight counts the batches sent and not yet applied; late asks
	// this (the tracer) thread to create the deferred processes (cow.go)
	// once every batch before is applied.
	var inflight sync.WaitGroup
	var late func(upto int) error
	reqs := make(chan lateReq)
	if slices.ContainsFunc(t.procs, func(b *builder) bool { return b.deferred }) {
		late = func(upto int) error {
			inflight.Wait()
			res := make(chan error, 1)
			select {
			case reqs <- lateReq{upto, res}:
			case <-ctx.Done():
				return ctx.Err()
			}
			select {
			case err := <-res:
				return err
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	go func() {
		defer close(done)
		defer close(batches)
		t.readBatches(ctx, r, first, batches, free, &inflight, late)
	}()
	// Faulting in fresh pages is the bound here, and it scales with
	// cores: writers run in parallel, each on its own batches.
	var mu sync.Mutex // guards err and t.res counters
	var err error
	var wg sync.WaitGroup
	for w := 0; w < writers(); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bt := range batches {
				mu.Lock()
				failed := err != nil
				mu.Unlock()
				var berr error
				if !failed {
					berr = t.applyBatch(bt, &mu)
				}
				if bt.buf != nil {
					free <- bt.buf[:0]
				}
				inflight.Done()
				if berr != nil {
					mu.Lock()
					if err == nil {
						err = berr
					}
					mu.Unlock()
					cancel()
				}
			}
		}()
	}
	wdone := make(chan struct{})
	go func() {
		wg.Wait()
		close(wdone)
	}()
	for running := true; running; {
		select {
		case req := <-reqs:
			req.res <- t.createDeferred(req.upto)
		case <-wdone:
			running = false
		}
	}
	<-done
	return err
}

// lateReq asks the tracer thread to create the deferred processes before
// index upto of tree.procs.
type lateReq struct {
	upto int
	res  chan<- error
}

func writers() int { return max(1, min(runtime.NumCPU(), 4)) }

func (t *tree) readBatches(ctx context.Context, r *image.Reader, rec *image.Record, out chan<- *pageBatch, free chan []byte,
	inflight *sync.WaitGroup, late func(upto int) error) {
	var cur *pageBatch
	send := func(bt *pageBatch) bool {
		inflight.Add(1)
		select {
		case out <- bt:
			return true
		case <-ctx.Done():
			inflight.Done()
			return false
		}
	}
	index := map[int]int{}
	for i, b := range t.procs {
		index[b.p.PID] = i
	}
	last := -1 // index of the process of the last pages record
	flush := func() bool {
		if cur == nil {
			return true
		}
		bt := cur
		cur = nil
		return send(bt)
	}
	fail := func(err error) {
		if flush() {
			send(&pageBatch{err: err})
		}
	}
	for rec != nil {
		switch rec.Type {
		case image.RecordPages:
			b := t.byPID[rec.PID]
			if b == nil || b.p.Zombie {
				fail(fmt.Errorf("pages for pid %d, which the image does not hold: %w", rec.PID, image.ErrMalformed))
				return
			}
			if k := index[rec.PID]; late != nil && k != last {
				if k < last {
					fail(fmt.Errorf("pages for pid %d after a later process's: copy-on-write sharing needs them in process order: %w",
						rec.PID, image.ErrMalformed))
					return
				}
				// Every process before k is complete: fork the deferred
				// ones up to k from their parents.
				if !flush() {
					return
				}
				if err := late(k + 1); err != nil {
					fail(err)
					return
				}
				last = k
			}
			if cur != nil && (cur.b != b || cur.size+len(rec.Data) > batchSize || len(cur.remote) == maxIovecs) {
				if !flush() {
					return
				}
			}
			if cur == nil {
				cur = &pageBatch{b: b}
				if !r.Stable() {
					select {
					case cur.buf = <-free:
					case <-ctx.Done():
						return
					}
				}
			}
			if r.Stable() {
				cur.local = append(cur.local, rec.Data)
			} else {
				if len(rec.Data) > batchSize {
					// Larger than a batch: give it its own buffer.
					cur.buf = make([]byte, 0, len(rec.Data))
				}
				cur.buf = append(cur.buf, rec.Data...)
				cur.local = [][]byte{cur.buf}
			}
			cur.size += len(rec.Data)
			cur.remote = append(cur.remote, unix.RemoteIovec{Base: uintptr(rec.Addr), Len: len(rec.Data)})
		case image.RecordSignals:
			if !flush() || !send(&pageBatch{signals: rec.Signals}) {
				return
			}
		case image.RecordFileData:
			fail(fmt.Errorf("file data after pages: %w", image.ErrMalformed))
			return
		}
		next, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			fail(fmt.Errorf("read image: %w", err))
			return
		}
		rec = next
	}
	if late != nil {
		if !flush() {
			return
		}
		if err := late(len(t.procs)); err != nil {
			fail(err)
			return
		}
	}
	flush()
}

// piece returns the bytes of remote iovec i, which starts off bytes into
// the batch: local[i] when the batch references records in place, else
// the matching part of the copy.
func (bt *pageBatch) piece(i, off int) []byte {
	if bt.buf == nil {
		return bt.local[i]
	}
	return bt.buf[off : off+bt.remote[i].Len]
}

func (t *tree) applyBatch(bt *pageBatch, mu *sync.Mutex) error {
	if bt.err != nil {
		return bt.err
	}
	if len(bt.signals) > 0 {
		mu.Lock()
		defer mu.Unlock()
	}
	for _, s := range bt.signals {
		b := t.byPID[s.PID]
		if b == nil || b.p.Zombie {
			return fmt.Errorf("signal for pid %d, which the image does not hold: %w", s.PID, image.ErrMalformed)
		}
		if err := b.p.AddPending(s.TID, s.Info); err != nil {
			return fmt.Errorf("%w: %w", err, image.ErrMalformed)
		}
	}
	if bt.size == 0 {
		return nil
	}
	if t.opts.StagedLazy && len(bt.signals) == 0 {
		// Staged pages for these addresses are older: never lazy.
		mu.Lock()
		bt.b.written = append(bt.b.written, bt.remote...)
		mu.Unlock()
	}
	if bt.b.uffd >= 0 {
		// Pages of registered anonymous memory go in with UFFDIO_COPY;
		// the rest (private file mappings) with process_vm_writev.
		var rest pageBatch
		rest.b = bt.b
		off := 0
		for i, rv := range bt.remote {
			data := bt.piece(i, off)
			off += rv.Len
			if bt.b.inUffd(uint64(rv.Base), rv.Len) {
				if err := bt.b.uffdCopy(uint64(rv.Base), data); err == nil {
					continue
				}
				// EEXIST and the like: write it the other way.
			}
			rest.local = append(rest.local, data)
			rest.remote = append(rest.remote, rv)
			rest.size += rv.Len
		}
		mu.Lock()
		t.res.Pages += uint64((bt.size - rest.size) / os.Getpagesize())
		t.res.Bytes += uint64(bt.size - rest.size)
		mu.Unlock()
		if rest.size == 0 {
			return nil
		}
		bt = &rest
	}
	local := make([]unix.Iovec, len(bt.local))
	for i, l := range bt.local {
		local[i] = unix.Iovec{Base: &l[0], Len: uint64(len(l))}
	}
	n, err := unix.ProcessVMWritev(bt.b.pid, local, bt.remote, 0)
	if err != nil || n != bt.size {
		// Write piece by piece; WriteMem falls back to /proc/PID/mem.
		all := bytes.Join(bt.local, nil)
		off := 0
		for _, rv := range bt.remote {
			if err := ptrace.WriteMem(bt.b.pid, uint64(rv.Base), all[off:off+rv.Len]); err != nil {
				return fmt.Errorf("write pages at %#x: %w", rv.Base, err)
			}
			off += rv.Len
		}
	}
	mu.Lock()
	t.res.Pages += uint64(bt.size / os.Getpagesize())
	t.res.Bytes += uint64(bt.size)
	mu.Unlock()
	return nil
}
