package restore

import (
	"fmt"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/ptrace"
)

// Copy-on-write sharing between a parent and a child (image.VMA.Inherited)
// comes back only through fork: such a child — and every process below
// it, which is cloned from it — is created late, once its parent's pages
// are all in (the image holds the pages in process order, parents first).
// The child keeps the VMAs it shares with its parent as fork gave them,
// discards the pages of those VMAs it did not share, and is given the rest
// of its address space and its own pages like any other process.

// hasInherited reports whether p shares pages with its parent.
func hasInherited(p *image.Process) bool {
	for i := range p.VMAs {
		if len(p.VMAs[i].Inherited) > 0 {
			return true
		}
	}
	return false
}

// markDeferred marks the processes created late: the ones that share
// pages with their parent and their descendants. It returns whether any.
func (t *tree) markDeferred() bool {
	some := false
	creators := image.Creators(t.res.Checkpoint.Processes)
	for _, b := range t.procs {
		if c, ok := creators[b.p.PID]; ok && c != b.p.PPID {
			continue // forked from a zombie leader, not its parent: no shared pages to keep
		}
		parent := t.byPID[b.p.PPID]
		if hasInherited(b.p) || parent != nil && parent != b && parent.deferred {
			b.deferred = true
			some = true
		}
	}
	return some
}

// createDeferred creates, parents first, every deferred process of index
// below upto in t.procs (all: len(t.procs)) that does not exist yet.
// Precondition: the pages of every process before upto are all written.
// Once all exist, the sessions and groups of the late ones are settled
// and checked.
func (t *tree) createDeferred(upto int) error {
	for i := 0; i < upto && i < len(t.procs); i++ {
		b := t.procs[i]
		if !b.deferred || b.created {
			continue
		}
		if err := b.createLate(); err != nil {
			return fmt.Errorf("process %d: %w", b.p.PID, err)
		}
	}
	if upto < len(t.procs) {
		return nil
	}
	for _, b := range t.procs {
		if b.deferred && !b.sessionDone {
			if err := b.session(); err != nil {
				return fmt.Errorf("process %d: %w", b.p.PID, err)
			}
		}
	}
	for _, b := range t.procs {
		if b.deferred && !b.p.Zombie {
			if err := b.joinGroup(); err != nil {
				return err
			}
			if err := b.checkSession(); err != nil {
				return err
			}
		}
	}
	return nil
}

// createLate forks b's process from its parent's restored copy and gives
// it its address space (without its pages, which follow in the image).
func (b *builder) createLate() error {
	parent := b.byPID[b.p.PPID]
	if parent == nil || !parent.created || parent.pid <= 0 {
		return fmt.Errorf("parent %d not restored yet", b.p.PPID)
	}
	if b.p.SID == parent.p.PID && !parent.sessionDone {
		// Siblings that stayed in the old session first: their parent's
		// pages are in, which is all they need.
		for _, sib := range b.tree.procs {
			if sib.deferred && !sib.created && sib.p.PPID == parent.p.PID && sib.p.SID != parent.p.PID {
				if err := sib.createLate(); err != nil {
					return fmt.Errorf("process %d: %w", sib.p.PID, err)
				}
			}
		}
		if err := parent.session(); err != nil {
			return err
		}
	}
	if err := b.createFrom(parent); err != nil {
		return err
	}
	b.created = true
	if !b.waitsForOldSession() {
		if err := b.session(); err != nil {
			return err
		}
	}
	if b.p.Zombie {
		// Into its group while it lives (a zombie keeps it).
		if err := b.joinGroup(); err != nil {
			return err
		}
		return b.makeZombie()
	}
	// The parent's descriptor of ferry came along with the fork (unless
	// the child shares the parent's fd table: then it is the parent's).
	if parent.tpidfd != 0 && b.p.FilesOf == 0 {
		b.lead.Syscall(unix.SYS_CLOSE, parent.tpidfd)
	}
	var keep [][2]uint64
	for _, v := range b.p.VMAs {
		if len(v.Inherited) > 0 {
			keep = append(keep, [2]uint64{v.Start, v.End})
		}
	}
	if err := b.clearAddressSpace(keep); err != nil {
		return err
	}
	sameExe := b.p.Exe == parent.p.Exe && b.p.ExeHash == parent.p.ExeHash
	if err := b.setMM(sameExe); err != nil {
		return err
	}
	if err := b.mapVMAs(); err != nil {
		return err
	}
	// What the child did not share with its parent in the VMAs it keeps
	// is its own: zero unless its pages say otherwise.
	var calls []ptrace.Call
	for _, v := range b.p.VMAs {
		if len(v.Inherited) == 0 {
			continue
		}
		for _, r := range subtract([][2]uint64{{v.Start, v.End}}, v.Inherited) {
			calls = append(calls, ptrace.Call{Nr: unix.SYS_MADVISE, Args: [6]uint64{r[0], r[1] - r[0], unix.MADV_DONTNEED}})
		}
	}
	if res, err := b.lead.Batch(calls); err != nil {
		k := max(0, len(res)-1)
		return fmt.Errorf("discard pages at %#x not shared with parent: %w", calls[k].Args[0], err)
	}
	return nil
}

// subtract returns the parts of the sorted ranges a not covered by the
// sorted ranges cut.
func subtract(a, cut [][2]uint64) [][2]uint64 {
	var out [][2]uint64
	for _, r := range a {
		lo := r[0]
		for _, c := range cut {
			if c[1] <= lo || c[0] >= r[1] {
				continue
			}
			if c[0] > lo {
				out = append(out, [2]uint64{lo, c[0]})
			}
			lo = max(lo, c[1])
		}
		if lo < r[1] {
			out = append(out, [2]uint64{lo, r[1]})
		}
	}
	return out
}
