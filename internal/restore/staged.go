package restore

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/ptrace"
)

// Staged supplies pages that reached the destination before the image: a
// precopy migration sends memory while the process still runs (package
// precopy's Staging keeps it). Restore writes them right after mapping each
// process's VMAs, through the same paths as image pages (UFFDIO_COPY into
// private anonymous memory, process_vm_writev elsewhere), and before the
// image's own Pages records, which are newer and overwrite them. Staged
// pages outside the process's private VMAs (gone since they were sent, or
// shared now) are ignored: the image alone decides what is mapped.
//
// With Options.StagedLazy the staged pages of private anonymous VMAs are
// not written: only those the kernel writes before the processes run
// (eagerPages) are. After the state phase, stagedLazy lists per process
// the staged pages the image did not write, startLazy registers them with
// a userfaultfd (checking that nothing touched them) and Result.Lazy hands
// them out, to be served from the Staged once the processes run. The
// Staged must then stay unchanged until that is done.
type Staged interface {
	// Pages calls fn for runs of staged pages of pid (its PID in the
	// image), preferably in increasing address order. addr is page-aligned
	// and data holds whole pages; data must stay valid and unchanged until
	// Restore returns.
	Pages(pid int, fn func(addr uint64, data []byte) error) error
}

// fillStaged writes the staged pages of every live process. A Pages call
// of the Staged produces batches; writers() goroutines write them.
func (t *tree) fillStaged(ctx context.Context, live []*builder) error {
	st := t.opts.Staged
	if st == nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	jobs := make(chan *pageBatch, writers())
	var (
		mu    sync.Mutex // guards first and t.res.StagedBytes
		first error
		wg    sync.WaitGroup
	)
	for range writers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bt := range jobs {
				if ctx.Err() != nil {
					continue
				}
				err := bt.b.writeStaged(bt)
				mu.Lock()
				if err != nil && first == nil {
					first = err
					cancel()
				}
				t.res.StagedBytes += uint64(bt.size)
				mu.Unlock()
			}
		}()
	}
	var err error
	for _, b := range live {
		if err = b.stagedBatches(ctx, st, jobs); err != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	if first != nil {
		return first
	}
	return err
}

// stagedBatches cuts pid's staged pages to its private VMAs and queues
// them in batches on jobs.
func (b *builder) stagedBatches(ctx context.Context, st Staged, jobs chan<- *pageBatch) error {
	var vmas []image.VMA
	for _, v := range b.p.VMAs {
		if !v.Shared && (v.Kind == image.VMAAnon || v.Kind == image.VMAFile || v.Kind == image.VMAMemfd) {
			vmas = append(vmas, v)
		}
	}
	slices.SortFunc(vmas, func(x, y image.VMA) int { return cmp.Compare(x.Start, y.Start) })
	ps := uint64(os.Getpagesize())
	lazy := b.opts.StagedLazy
	if lazy {
		b.eager = b.eagerPages(ps)
	}
	cur := &pageBatch{b: b}
	send := func() error {
		if cur.size == 0 {
			return nil
		}
		select {
		case jobs <- cur:
		case <-ctx.Done():
			return ctx.Err()
		}
		cur = &pageBatch{b: b}
		return nil
	}
	add := func(lo, hi uint64, piece []byte) error {
		if cur.size+len(piece) > batchSize || len(cur.remote) == maxIovecs {
			if err := send(); err != nil {
				return err
			}
		}
		cur.local = append(cur.local, piece)
		cur.remote = append(cur.remote, unix.RemoteIovec{Base: uintptr(lo), Len: len(piece)})
		cur.size += len(piece)
		return nil
	}
	err := st.Pages(b.p.PID, func(addr uint64, data []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if addr%ps != 0 || uint64(len(data))%ps != 0 {
			return fmt.Errorf("staged pages of %d at %#x+%d: not whole pages", b.p.PID, addr, len(data))
		}
		end := addr + uint64(len(data))
		// The first VMA that ends after addr.
		i, _ := slices.BinarySearchFunc(vmas, addr, func(v image.VMA, a uint64) int {
			if v.End <= a {
				return -1
			}
			return 1
		})
		for ; i < len(vmas) && vmas[i].Start < end; i++ {
			lo, hi := max(addr, vmas[i].Start), min(end, vmas[i].End)
			if !lazy || !isLazyStagedVMA(&vmas[i]) {
				if err := add(lo, hi, data[lo-addr:hi-addr]); err != nil {
					return err
				}
				continue
			}
			// Lazy memory: only the pages the kernel writes before the
			// process runs go in now.
			j, _ := slices.BinarySearch(b.eager, lo)
			for ; j < len(b.eager) && b.eager[j] < hi; j++ {
				a := b.eager[j]
				if err := add(a, a+ps, data[a-addr:a-addr+ps]); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("staged pages of %d: %w", b.p.PID, err)
	}
	return send()
}

// writeStaged writes one batch of staged pages: UFFDIO_COPY where the
// memory is registered, process_vm_writev for the rest.
func (b *builder) writeStaged(bt *pageBatch) error {
	local, remote := bt.local, bt.remote
	if b.uffd >= 0 {
		local, remote = nil, nil
		for i, rv := range bt.remote {
			if b.inUffd(uint64(rv.Base), rv.Len) && b.uffdCopy(uint64(rv.Base), bt.local[i]) == nil {
				continue
			}
			local = append(local, bt.local[i])
			remote = append(remote, rv)
		}
	}
	if len(remote) == 0 {
		return nil
	}
	iov := make([]unix.Iovec, len(local))
	size := 0
	for i, l := range local {
		iov[i] = unix.Iovec{Base: &l[0], Len: uint64(len(l))}
		size += len(l)
	}
	if n, err := unix.ProcessVMWritev(b.pid, iov, remote, 0); err == nil && n == size {
		return nil
	}
	for i, rv := range remote {
		if err := ptrace.WriteMem(b.pid, uint64(rv.Base), local[i]); err != nil {
			return fmt.Errorf("write staged pages at %#x: %w", rv.Base, err)
		}
	}
	return nil
}

// isLazyStagedVMA reports whether v's staged pages wait for the process
// to run with Options.StagedLazy: private anonymous memory, like a lazy
// dump's (the staged pages of other VMAs, left from a VMA replaced since
// they were sent, are written at once and the image overwrites them).
func isLazyStagedVMA(v *image.VMA) bool {
	return v.Kind == image.VMAAnon && !v.Shared && !v.HasVMFlag("lo")
}

// eagerPages lists, sorted, the pages the kernel writes on its own while
// the restore still drives the process: each thread's rseq area (as in a
// lazy dump, dump/lazy.go). Their staged contents go in before the
// state phase, which registers rseq; a lazy page touched then would be
// zero-filled and checkUntouched would refuse the restore.
func (b *builder) eagerPages(ps uint64) []uint64 {
	return b.p.RseqPages(ps)
}

// stagedLazy computes, after the state phase, the lazy memory of every
// live process with Options.StagedLazy: in each private anonymous VMA of
// the image, the staged pages not written yet — neither by the image
// (newer: they must never be overwritten by a staged page) nor eagerly
// (rseq areas). startLazy then registers them and checks that nothing
// touched them. Staged pages outside the VMAs are ignored.
func (t *tree) stagedLazy(live []*builder) error {
	t.lazy = map[int][]image.LazyVMA{}
	for _, b := range live {
		vmas, err := b.stagedLazyVMAs(t.opts.Staged)
		if err != nil {
			return fmt.Errorf("process %d: %w", b.p.PID, err)
		}
		if len(vmas) > 0 {
			t.lazy[b.p.PID] = vmas
		}
	}
	return nil
}

func (b *builder) stagedLazyVMAs(st Staged) ([]image.LazyVMA, error) {
	ps := uint64(os.Getpagesize())
	var out []image.LazyVMA
	for _, v := range b.p.VMAs {
		if isLazyStagedVMA(&v) {
			out = append(out, image.LazyVMA{Start: v.Start, End: v.End})
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	slices.SortFunc(out, func(x, y image.LazyVMA) int { return cmp.Compare(x.Start, y.Start) })
	// Pages that are in place already, as sorted, disjoint page ranges.
	done := make([][2]uint64, 0, len(b.written)+len(b.eager))
	for _, w := range b.written {
		lo := uint64(w.Base) &^ (ps - 1)
		hi := (uint64(w.Base) + uint64(w.Len) + ps - 1) &^ (ps - 1)
		done = append(done, [2]uint64{lo, hi})
	}
	for _, a := range b.eager {
		done = append(done, [2]uint64{a, a + ps})
	}
	done = unionRanges(done)
	// addRun appends [lo, hi) minus done to VMA i's runs.
	addRun := func(v *image.LazyVMA, lo, hi uint64) {
		j, _ := slices.BinarySearchFunc(done, lo, func(r [2]uint64, a uint64) int {
			if r[1] <= a {
				return -1
			}
			return 1
		})
		for lo < hi {
			next := hi
			if j < len(done) && done[j][0] < hi {
				next = max(lo, done[j][0])
			}
			if lo < next {
				if n := len(v.Runs); n > 0 && v.Runs[n-1].Addr+v.Runs[n-1].Pages*ps == lo {
					v.Runs[n-1].Pages += (next - lo) / ps
				} else {
					v.Runs = append(v.Runs, image.PageRun{Addr: lo, Pages: (next - lo) / ps})
				}
			}
			if j >= len(done) || done[j][0] >= hi {
				break
			}
			lo = done[j][1]
			j++
		}
	}
	sorted := true
	var last uint64
	err := st.Pages(b.p.PID, func(addr uint64, data []byte) error {
		if addr%ps != 0 || uint64(len(data))%ps != 0 {
			return fmt.Errorf("staged pages of %d at %#x+%d: not whole pages", b.p.PID, addr, len(data))
		}
		end := addr + uint64(len(data))
		if addr < last {
			sorted = false
		}
		last = end
		i, _ := slices.BinarySearchFunc(out, addr, func(v image.LazyVMA, a uint64) int {
			if v.End <= a {
				return -1
			}
			return 1
		})
		for ; i < len(out) && out[i].Start < end; i++ {
			addRun(&out[i], max(addr, out[i].Start), min(end, out[i].End))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("staged pages: %w", err)
	}
	var vmas []image.LazyVMA
	for _, v := range out {
		if len(v.Runs) == 0 {
			continue
		}
		if !sorted {
			v.Runs = unionRuns(v.Runs, ps)
		}
		vmas = append(vmas, v)
	}
	return vmas, nil
}

// unionRanges sorts and merges [lo, hi) ranges.
func unionRanges(rs [][2]uint64) [][2]uint64 {
	slices.SortFunc(rs, func(x, y [2]uint64) int { return cmp.Compare(x[0], y[0]) })
	out := rs[:0]
	for _, r := range rs {
		if r[0] >= r[1] {
			continue
		}
		if n := len(out); n > 0 && r[0] <= out[n-1][1] {
			out[n-1][1] = max(out[n-1][1], r[1])
			continue
		}
		out = append(out, r)
	}
	return out
}

// unionRuns sorts and merges page runs (from a Staged that did not give
// its pages in address order).
func unionRuns(runs []image.PageRun, ps uint64) []image.PageRun {
	rs := make([][2]uint64, len(runs))
	for i, r := range runs {
		rs[i] = [2]uint64{r.Addr, r.Addr + r.Pages*ps}
	}
	rs = unionRanges(rs)
	out := make([]image.PageRun, len(rs))
	for i, r := range rs {
		out[i] = image.PageRun{Addr: r[0], Pages: (r[1] - r[0]) / ps}
	}
	return out
}
