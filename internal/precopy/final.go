package precopy

import (
	"golang.org/x/sys/unix"

	"ferry/internal/dirty"
	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/procfs"
)

var _ dump.Precopy = (*Session)(nil)

// FinalPages implements dump.Precopy: called by dump.Dump with the tree
// frozen, it scans pid's tracker a last time and tells the dump, page by
// page, what the destination holds. A page it was sent is vouched for
// (dump.PageSent) only if it lies in private anonymous writable memory,
// the tracker reported no write to it since it was last read, and the
// tracker kept watching it (its VMA was not replaced, moved or
// write-protected meanwhile: Scan reports such VMAs whole). Every other
// page it was sent is dump.PageStale and goes into the image as it is
// now; pages it was never sent are dumped as usual. Pages sent that lie
// outside every VMA now are left to restore, which ignores them.
//
// The trackers' state is consumed: after FinalPages, Run fails. If the
// dump fails and the tree resumes, Close the session.
func (s *Session) FinalPages(pid int, vmas []image.VMA) (dump.PagePlan, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.final = true
	p := s.procs[pid]
	if p == nil || len(p.sent) == 0 {
		return nil, nil
	}
	pl := &plan{sent: p.sent}
	if st, err := procfs.Stat(pid); err != nil || st.StartTime != p.start {
		// Not the process that was tracked: the PID was reused.
		pl.stale = true
	} else if p.broken {
		pl.stale = true
	} else if pl.dirty, err = p.trk.Scan(); err != nil {
		s.log.Info("final scan failed; every page sent is sent again", "pid", pid, "err", err)
		p.broken, pl.stale = true, true
	} else {
		pl.dirty = union(pl.dirty, p.owed)
	}
	for _, v := range vmas {
		if v.Kind == image.VMAAnon && !v.Shared && v.Prot&unix.PROT_WRITE != 0 {
			pl.tracked = append(pl.tracked, dirty.Range{Start: v.Start, End: v.End})
		}
	}
	pl.tracked = union(nil, pl.tracked) // sorted, coalesced
	return pl, nil
}

// plan is the dump.PagePlan of one process.
type plan struct {
	sent    []dirty.Range // what the destination holds
	tracked []dirty.Range // memory the tracker watches: private anonymous writable VMAs
	dirty   []dirty.Range // written since last sent: the final scan, and pages owed by the rounds
	stale   bool          // nothing sent can be vouched for
}

func (pl *plan) At(addr uint64) (dump.PageState, uint64) {
	in, end := lookup(pl.sent, addr)
	if !in {
		return dump.PageNotSent, end
	}
	if pl.stale {
		return dump.PageStale, end
	}
	in, until := lookup(pl.tracked, addr)
	end = min(end, until)
	if !in {
		return dump.PageStale, end
	}
	in, until = lookup(pl.dirty, addr)
	end = min(end, until)
	if in {
		return dump.PageStale, end
	}
	return dump.PageSent, end
}
