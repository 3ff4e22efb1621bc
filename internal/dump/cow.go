package dump

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"sort"

	"ferry/internal/image"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// markInherited finds, for every child in the tree, the private pages it
// still shares copy-on-write with its parent: the parent has a VMA that
// covers the child's and maps the same thing (inheritedFrom), and both map
// the same physical page
// (pagemap PFN, visible to root only: without it nothing is marked and
// every page is stored for each process). Those pages go in
// image.VMA.Inherited and are not stored for the child (writePages). A
// child still in the session its parent left since is not marked.
func markInherited(cols []*collector, creators map[int]int) error {
	byPID := map[int]*collector{}
	for _, c := range cols {
		byPID[c.fz.PID] = c
	}
	for _, c := range cols {
		if cr, ok := creators[c.proc.PID]; ok && cr != c.proc.PPID {
			continue // a restore forks it from a zombie leader, not its parent (image.Creators)
		}
		if p := byPID[c.proc.PPID]; p != nil && p != c {
			if p.proc.SID == p.proc.PID && c.proc.SID != p.proc.PID {
				// It stayed in the session its parent left: a restore
				// clones it before the parent's setsid, long before the
				// parent's pages are in, so it cannot share them.
				continue
			}
			c.parent = p
			if err := c.markInherited(); err != nil {
				return err
			}
		}
	}
	return nil
}

// forkable reports whether a VMA's pages pass to a child by fork as they
// are: a private mapping (anonymous, or a file's or memfd's copy-on-write
// pages), neither MADV_DONTFORK nor MADV_WIPEONFORK.
func forkable(v *image.VMA) bool {
	switch v.Kind {
	case image.VMAAnon, image.VMAFile, image.VMAMemfd:
	default:
		return false
	}
	return !v.Shared && !v.HasVMFlag("dc") && !v.HasVMFlag("wf")
}

// inheritedFrom reports whether the child's VMA v can be what a fork left
// of the parent's VMA pv: pv covers it, maps the same thing at the same
// offset, with the same advice (mlock is not inherited: restore locks it
// again).
func inheritedFrom(v, pv *image.VMA) bool {
	if !forkable(v) || !forkable(pv) || pv.Kind != v.Kind || v.Start < pv.Start || v.End > pv.End ||
		pv.GrowsDown != v.GrowsDown || !slices.Equal(advice(pv.VMFlags), advice(v.VMFlags)) {
		return false
	}
	switch v.Kind {
	case image.VMAFile:
		return v.Path == pv.Path && v.Dev == pv.Dev && v.Ino == pv.Ino && v.Offset == pv.Offset+(v.Start-pv.Start)
	case image.VMAMemfd:
		return v.FileID == pv.FileID && v.Offset == pv.Offset+(v.Start-pv.Start)
	}
	return true
}

// advice is flags without the mlock ones.
func advice(flags []string) []string {
	return slices.DeleteFunc(slices.Clone(flags), func(f string) bool { return f == "lo" || f == "lf" })
}

func (c *collector) markInherited() error {
	pvmas := c.parent.proc.VMAs
	var cpm, ppm *procfs.Pagemap
	defer func() {
		if cpm != nil {
			cpm.Close()
		}
		if ppm != nil {
			ppm.Close()
		}
	}()
	ps := uint64(os.Getpagesize())
	var cbuf, pbuf []uint64
	for i := range c.proc.VMAs {
		v := &c.proc.VMAs[i]
		if !forkable(v) {
			continue
		}
		// The parent's VMA that covers v's start: the last one starting
		// at or before it.
		k := sort.Search(len(pvmas), func(i int) bool { return pvmas[i].Start > v.Start }) - 1
		if k < 0 || !inheritedFrom(v, &pvmas[k]) {
			continue
		}
		if cpm == nil {
			var err error
			if cpm, err = procfs.OpenPagemap(c.fz.PID); err != nil {
				return err
			}
			if ppm, err = procfs.OpenPagemap(c.parent.fz.PID); err != nil {
				return err
			}
		}
		var err error
		if cbuf, err = cpm.Read(v.Start, v.End, cbuf); err != nil {
			return fmt.Errorf("pagemap of %#x-%#x of %d: %w", v.Start, v.End, c.fz.PID, err)
		}
		if pbuf, err = ppm.Read(v.Start, v.End, pbuf); err != nil {
			return fmt.Errorf("pagemap of %#x-%#x of %d: %w", v.Start, v.End, c.parent.fz.PID, err)
		}
		v.Inherited = sharedRuns(v.Start, ps, cbuf, pbuf, c.sameContent)
	}
	return nil
}

// sameContent reports whether the page at addr holds the same bytes in the
// process and its parent (read without pinning, so neither is unshared).
func (c *collector) sameContent(addr uint64) bool {
	ps := os.Getpagesize()
	buf := make([]byte, 2*ps)
	if ptrace.ReadMemShared(c.fz.PID, addr, buf[:ps]) != nil ||
		ptrace.ReadMemShared(c.parent.fz.PID, addr, buf[ps:]) != nil {
		return false
	}
	return bytes.Equal(buf[:ps], buf[ps:])
}

// sharedRuns returns the address ranges where both pagemaps (of the same
// range, from start, of VMAs that map the same thing) show the same
// present physical page. Where the PFN is hidden (no CAP_SYS_ADMIN), page
// cache pages of the same file offset are the same page, and anonymous
// pages that both share with someone are taken as shared when
// sameContent says they hold the same bytes: the content is right either
// way.
func sharedRuns(start, ps uint64, a, b []uint64, sameContent func(addr uint64) bool) [][2]uint64 {
	var out [][2]uint64
	for j := 0; j < len(a) && j < len(b); j++ {
		x, y := a[j], b[j]
		if !procfs.Present(x) || !procfs.Present(y) {
			continue
		}
		var same bool
		switch pfn := procfs.PFN(x); {
		case pfn != 0 || procfs.PFN(y) != 0:
			same = pfn == procfs.PFN(y)
		case procfs.IsFileOrShared(x) && procfs.IsFileOrShared(y):
			same = true
		case procfs.CowShared(x) && procfs.CowShared(y):
			same = sameContent(start + uint64(j)*ps)
		}
		if !same {
			continue
		}
		addr := start + uint64(j)*ps
		if n := len(out); n > 0 && out[n-1][1] == addr {
			out[n-1][1] = addr + ps
		} else {
			out = append(out, [2]uint64{addr, addr + ps})
		}
	}
	return out
}
