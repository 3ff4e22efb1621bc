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
			piece := data[lo-addr : hi-addr]
			if cur.size+len(piece) > batchSize || len(cur.remote) == maxIovecs {
				if err := send(); err != nil {
					return err
				}
			}
			cur.local = append(cur.local, piece)
			cur.remote = append(cur.remote, unix.RemoteIovec{Base: uintptr(lo), Len: len(piece)})
			cur.size += len(piece)
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
