package postcopy

import (
	"cmp"
	"slices"

	"ferry/internal/image"
	"ferry/internal/restore"
)

// Page states, per data page of the source process and per address space
// that needs it (a view).
const (
	// stNeeded: the page holds data on the source and is not here yet.
	stNeeded uint8 = iota
	// stWanted: requested (a fault waits for it, or it is in the prefetch
	// window of one); the answer is on its way.
	stWanted
	// stPresent: copied in.
	stPresent
	// stZero: zero here: the source found it all zero, or the process
	// discarded or unmapped it. A fault on it gets a zero page.
	stZero
)

// lazyProc is one source process: its data pages, indexed, and the
// address spaces on this side that hold its memory (the restored process,
// and children it forked during the transfer).
type lazyProc struct {
	imagePID int
	pid      int // the restored process
	vmas     []image.LazyVMA
	runs     []image.PageRun // ascending, source addresses
	first    []int           // page index of runs[i].Addr
	pages    int
	views    []*view
}

func newLazyProc(lp restore.LazyProcess) *lazyProc {
	p := &lazyProc{imagePID: lp.ImagePID, pid: lp.PID, vmas: slices.Clone(lp.VMAs)}
	slices.SortFunc(p.vmas, func(a, b image.LazyVMA) int { return cmp.Compare(a.Start, b.Start) })
	for _, v := range p.vmas {
		for _, r := range v.Runs {
			p.runs = append(p.runs, r)
			p.first = append(p.first, p.pages)
			p.pages += int(r.Pages)
		}
	}
	return p
}

// index returns the data page index of source address a.
func (p *lazyProc) index(a uint64, ps uint64) (int, bool) {
	i, found := slices.BinarySearchFunc(p.runs, a, func(r image.PageRun, a uint64) int {
		if r.Addr+r.Pages*ps <= a {
			return -1
		}
		if r.Addr > a {
			return 1
		}
		return 0
	})
	if !found {
		return 0, false
	}
	return p.first[i] + int((a-p.runs[i].Addr)/ps), true
}

// vmaEnd returns the end of the source VMA holding a, or 0.
func (p *lazyProc) vmaEnd(a uint64) uint64 {
	for _, v := range p.vmas {
		if v.Start <= a && a < v.End {
			return v.End
		}
	}
	return 0
}

// seg maps destination addresses [dst, dst+len) to the source's
// [src, src+len): identity at first, moved by mremap.
type seg struct{ dst, src, len uint64 }

// view is one address space on this side holding a copy of a source
// process's memory, with its own userfaultfd.
type view struct {
	lp    *lazyProc
	ufd   int
	name  string
	segs  []seg // by dst, disjoint
	bySrc []seg // the same, by src
	st    []uint8
	// missing counts pages in stNeeded or stWanted.
	missing int
	dead    bool // the address space is gone
	closed  bool // ufd closed
}

func newView(lp *lazyProc, ufd int, name string) *view {
	v := &view{lp: lp, ufd: ufd, name: name, st: make([]uint8, lp.pages), missing: lp.pages}
	for _, m := range lp.vmas {
		v.segs = append(v.segs, seg{dst: m.Start, src: m.Start, len: m.End - m.Start})
	}
	v.reindex()
	return v
}

// fork returns the view of a child forked from v: it has what v has,
// except that pages copied in meanwhile may or may not have made it into
// the child before the fork, so they are needed again.
func (v *view) fork(ufd int) *view {
	c := &view{lp: v.lp, ufd: ufd, name: "child of " + v.name, segs: slices.Clone(v.segs), st: slices.Clone(v.st)}
	for i, s := range c.st {
		if s == stPresent {
			c.st[i] = stNeeded
		}
		if c.st[i] == stNeeded || c.st[i] == stWanted {
			c.missing++
		}
	}
	c.reindex()
	return c
}

func (v *view) reindex() {
	slices.SortFunc(v.segs, func(a, b seg) int { return cmp.Compare(a.dst, b.dst) })
	v.bySrc = slices.Clone(v.segs)
	slices.SortFunc(v.bySrc, func(a, b seg) int { return cmp.Compare(a.src, b.src) })
}

// toSrc translates a destination address; end is where its segment ends.
func (v *view) toSrc(dst uint64) (src, end uint64, ok bool) {
	i, found := slices.BinarySearchFunc(v.segs, dst, func(s seg, a uint64) int {
		if s.dst+s.len <= a {
			return -1
		}
		if s.dst > a {
			return 1
		}
		return 0
	})
	if !found {
		return 0, 0, false
	}
	s := v.segs[i]
	return s.src + (dst - s.dst), s.dst + s.len, true
}

// toDst translates a source address; end is the source end of its segment.
func (v *view) toDst(src uint64) (dst, end uint64, ok bool) {
	i, found := slices.BinarySearchFunc(v.bySrc, src, func(s seg, a uint64) int {
		if s.src+s.len <= a {
			return -1
		}
		if s.src > a {
			return 1
		}
		return 0
	})
	if !found {
		return 0, 0, false
	}
	s := v.bySrc[i]
	return s.dst + (src - s.src), s.src + s.len, true
}

// set changes the state of data page i.
func (v *view) set(i int, st uint8) {
	was := v.st[i]
	if was == st {
		return
	}
	if was == stNeeded || was == stWanted {
		v.missing--
	}
	if st == stNeeded || st == stWanted {
		v.missing++
	}
	v.st[i] = st
}

// discard marks the data pages mapped at [start, end) zero (madvise
// DONTNEED/REMOVE, munmap); with unmap the segments are cut too.
func (v *view) discard(start, end uint64, ps uint64, unmap bool) {
	var keep []seg
	for _, s := range v.segs {
		lo, hi := max(s.dst, start), min(s.dst+s.len, end)
		if lo >= hi {
			keep = append(keep, s)
			continue
		}
		for a := lo; a < hi; a += ps {
			if i, ok := v.lp.index(s.src+(a-s.dst), ps); ok {
				v.set(i, stZero)
			}
		}
		if !unmap {
			keep = append(keep, s)
			continue
		}
		if s.dst < lo {
			keep = append(keep, seg{dst: s.dst, src: s.src, len: lo - s.dst})
		}
		if hi < s.dst+s.len {
			keep = append(keep, seg{dst: hi, src: s.src + (hi - s.dst), len: s.dst + s.len - hi})
		}
	}
	if unmap {
		v.segs = keep
		v.reindex()
	}
}

// remap follows mremap(from → to, n bytes): the pages, present or not,
// move with the mapping.
func (v *view) remap(from, to, n, ps uint64) {
	// Whatever was mapped at the target is gone (an unmap event said so
	// already; be safe).
	v.discard(to, to+n, ps, true)
	var out []seg
	for _, s := range v.segs {
		lo, hi := max(s.dst, from), min(s.dst+s.len, from+n)
		if lo >= hi {
			out = append(out, s)
			continue
		}
		if s.dst < lo {
			out = append(out, seg{dst: s.dst, src: s.src, len: lo - s.dst})
		}
		out = append(out, seg{dst: to + (lo - from), src: s.src + (lo - s.dst), len: hi - lo})
		if hi < s.dst+s.len {
			out = append(out, seg{dst: hi, src: s.src + (hi - s.dst), len: s.dst + s.len - hi})
		}
	}
	v.segs = out
	v.reindex()
}
