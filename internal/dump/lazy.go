package dump

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"ferry/internal/image"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// A lazy dump (Options.Lazy) is the source half of a postcopy migration
// (package postcopy). Private anonymous memory, which is nearly all of a
// process's memory, is not written as pages: for each such VMA a lazy
// record says which of its pages hold data (present or swapped now), and
// the frozen tree (Leave: Frozen) serves them afterwards. Everything else
// travels in the image as in a full dump.
//
// A few pages of lazy VMAs still go into the image: those the restore
// itself makes the kernel touch before the pager can serve them. The
// kernel writes a thread's rseq area (cpu_id...) whenever the thread
// returns to user space once rseq is registered, which the restore's
// injected calls do; so the pages of each rseq area travel eagerly.

// lazySink is the part of a Sink a lazy dump needs besides pages:
// *image.Writer and *image.DirWriter have it.
type lazySink interface {
	WriteLazy(pid int, v image.LazyVMA) error
}

// checkLazyOptions refuses lazy dumps that cannot be served.
func checkLazyOptions(opts Options, w Sink) error {
	if !opts.Lazy {
		return nil
	}
	if opts.Leave != Frozen {
		return errors.New("lazy dump needs Leave: Frozen: its pages are served from the frozen tree")
	}
	if opts.Precopy != nil {
		return errors.New("lazy dump cannot be the final step of a precopy")
	}
	if _, ok := w.(lazySink); !ok {
		return fmt.Errorf("lazy dump: the sink (%T) cannot write lazy records", w)
	}
	return nil
}

// isLazyVMA reports whether v's pages stay on the source in a lazy dump.
// Locked memory (mlock) must be resident when the process runs: it travels
// eagerly.
func isLazyVMA(v *image.VMA) bool { return v.Kind == image.VMAAnon && !v.Shared && !v.HasVMFlag("lo") }

// writeLazy writes the lazy records of every collected process, then the
// pages that must travel eagerly, and marks the collectors so that
// writePages leaves lazy VMAs out. It returns the lazy VMAs by pid.
func writeLazy(ctx context.Context, w Sink, cols []*collector) (map[int][]image.LazyVMA, error) {
	ls := w.(lazySink) // checked by checkLazyOptions
	out := map[int][]image.LazyVMA{}
	eager := map[int][]uint64{}
	for _, col := range cols {
		col.lazy = true
		vmas, pages, err := col.lazyVMAs(ctx)
		if err != nil {
			return nil, err
		}
		pid := col.fz.PID
		for _, v := range vmas {
			if err := ls.WriteLazy(pid, v); err != nil {
				return nil, fmt.Errorf("write lazy VMA %#x of %d: %w", v.Start, pid, err)
			}
		}
		if len(vmas) > 0 {
			out[pid] = vmas
		}
		eager[pid] = pages
	}
	// Lazy records all come before the first pages record.
	ps := os.Getpagesize()
	buf := make([]byte, ps)
	for _, col := range cols {
		pid := col.fz.PID
		for _, addr := range eager[pid] {
			if err := ptrace.ReadMem(pid, addr, buf); err != nil {
				return nil, fmt.Errorf("read memory %#x of %d: %w", addr, pid, err)
			}
			if err := w.WritePages(pid, addr, buf); err != nil {
				return nil, fmt.Errorf("write pages: %w", err)
			}
		}
	}
	return out, nil
}

// lazyVMAs returns the lazy VMAs of the process with their data runs, and
// the data pages inside them that travel eagerly (see eagerPages).
func (c *collector) lazyVMAs(ctx context.Context) ([]image.LazyVMA, []uint64, error) {
	pid := c.fz.PID
	pm, err := procfs.OpenPagemap(pid)
	if err != nil {
		return nil, nil, err
	}
	defer pm.Close()
	ps := uint64(os.Getpagesize())
	eager := c.eagerPages(ps)
	var vmas []image.LazyVMA
	var sent []uint64
	var ents []uint64
	for i := range c.proc.VMAs {
		v := &c.proc.VMAs[i]
		if !isLazyVMA(v) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		lv := image.LazyVMA{Start: v.Start, End: v.End}
		// Which pages hold data: one PAGEMAP_SCAN walk (Go reserves
		// gigabytes it never touches), or an entry per page on kernels
		// without it.
		runs, err := pm.DataRuns(v.Start, v.End, nil)
		if errors.Is(err, procfs.ErrNoScan) {
			runs = nil
			if ents, err = pm.Read(v.Start, v.End, ents); err != nil {
				return nil, nil, fmt.Errorf("pagemap of %#x-%#x: %w", v.Start, v.End, err)
			}
			for j, e := range ents {
				if procfs.Present(e) || procfs.Swapped(e) {
					a := v.Start + uint64(j)*ps
					runs = append(runs, [2]uint64{a, a + ps})
				}
			}
		} else if err != nil {
			return nil, nil, fmt.Errorf("pagemap of %#x-%#x: %w", v.Start, v.End, err)
		}
		add := func(a, b uint64) {
			if b <= a {
				return
			}
			if n := len(lv.Runs); n > 0 && lv.Runs[n-1].Addr+lv.Runs[n-1].Pages*ps == a {
				lv.Runs[n-1].Pages += (b - a) / ps
			} else {
				lv.Runs = append(lv.Runs, image.PageRun{Addr: a, Pages: (b - a) / ps})
			}
		}
		for _, r := range runs {
			// The eager pages (rseq areas) inside the run travel in the
			// image; the rest of the run is lazy.
			a := r[0]
			i, _ := slices.BinarySearch(eager, a)
			for ; i < len(eager) && eager[i] < r[1]; i++ {
				add(a, eager[i])
				sent = append(sent, eager[i])
				a = eager[i] + ps
			}
			add(a, r[1])
		}
		if len(lv.Runs) > 0 {
			vmas = append(vmas, lv)
		}
	}
	return vmas, sent, nil
}

// eagerPages lists, sorted, the pages the kernel writes on its own while
// the restore still drives the process: each thread's rseq area.
func (c *collector) eagerPages(ps uint64) []uint64 {
	return c.proc.RseqPages(ps)
}
