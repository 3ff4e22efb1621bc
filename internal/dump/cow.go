package dump

import (
	"fmt"
	"os"
	"slices"

	"ferry/internal/image"
	"ferry/internal/procfs"
)

// markInherited finds, for every child in the tree, the private anonymous
// pages it still shares copy-on-write with its parent: the parent has a
// VMA with the same bounds and flags, and both map the same physical page
// (pagemap PFN, visible to root only: without it nothing is marked and
// every page is stored for each process). Those pages go in
// image.VMA.Inherited and are not stored for the child (writePages). A
// child still in the session its parent left since is not marked.
func markInherited(cols []*collector) error {
	byPID := map[int]*collector{}
	for _, c := range cols {
		byPID[c.fz.PID] = c
	}
	for _, c := range cols {
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
// are: private anonymous, neither MADV_DONTFORK nor MADV_WIPEONFORK.
func forkable(v *image.VMA) bool {
	return v.Kind == image.VMAAnon && !v.Shared && !v.HasVMFlag("dc") && !v.HasVMFlag("wf")
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
		k, found := slices.BinarySearchFunc(pvmas, v.Start, func(p image.VMA, a uint64) int {
			switch {
			case p.Start < a:
				return -1
			case p.Start > a:
				return 1
			}
			return 0
		})
		if !found {
			continue
		}
		pv := &pvmas[k]
		if pv.End != v.End || !forkable(pv) || pv.GrowsDown != v.GrowsDown || !slices.Equal(pv.VMFlags, v.VMFlags) {
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
		v.Inherited = sharedRuns(v.Start, ps, cbuf, pbuf)
		if len(v.Inherited) > 0 {
			c.noteShared(v.Start)
			c.parent.noteShared(pv.Start)
		}
	}
	return nil
}

// sharedRuns returns the address ranges where both pagemaps (of the same
// range, from start) show the same present physical page.
func sharedRuns(start, ps uint64, a, b []uint64) [][2]uint64 {
	var out [][2]uint64
	for j := 0; j < len(a) && j < len(b); j++ {
		pfn := procfs.PFN(a[j])
		same := procfs.Present(a[j]) && procfs.Present(b[j]) && pfn != 0 && pfn == procfs.PFN(b[j])
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

func (c *collector) noteShared(start uint64) {
	if c.cowShared == nil {
		c.cowShared = map[uint64]bool{}
	}
	c.cowShared[start] = true
}
