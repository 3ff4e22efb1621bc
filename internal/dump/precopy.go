package dump

import (
	"fmt"

	"ferry/internal/image"
	"ferry/internal/procfs"
)

// Precopy makes a dump the last step of a precopy migration: pages were
// sent to the destination while the tree ran (package precopy), and the
// dump, taken with the tree frozen, writes only what the destination lacks
// or holds an older copy of. Restore puts the sent pages in first and the
// image's after, so the image's win.
type Precopy interface {
	// FinalPages is called on the tracer goroutine for each frozen process,
	// after its state is collected and before any page is written, with
	// its VMAs as the image records them. A nil plan means nothing was
	// sent for pid: its pages are dumped in full.
	FinalPages(pid int, vmas []image.VMA) (PagePlan, error)
}

// PagePlan tells the final dump of a precopy migration what the
// destination holds of one process's memory.
type PagePlan interface {
	// At returns the state of the page at addr and the end of the run of
	// pages [addr, end) that share it (end > addr). Calls come in address
	// order within a VMA.
	At(addr uint64) (st PageState, end uint64)
}

// PageState is what the destination already holds of one page.
type PageState uint8

const (
	// PageNotSent: nothing; the page is written if it holds data, as in a
	// full dump.
	PageNotSent PageState = iota
	// PageSent: the page as it was when last sent, and it has not been
	// written since. It is skipped while it is still in memory as the
	// process's own page; if it was discarded or swapped out since, or is
	// a page of the backing file, it is written as it is now.
	PageSent
	// PageStale: an older copy; the page is written as it is now, whatever
	// it holds, zeros included.
	PageStale
)

// finalPlans asks pc for the page plan of every collected process (nil
// entries without a precopy).
func finalPlans(pc Precopy, cols []*collector) ([]PagePlan, error) {
	plans := make([]PagePlan, len(cols))
	if pc == nil {
		return plans, nil
	}
	for i, col := range cols {
		p, err := pc.FinalPages(col.fz.PID, col.proc.VMAs)
		if err != nil {
			return nil, fmt.Errorf("precopy of %d: %w", col.fz.PID, err)
		}
		plans[i] = p
	}
	return plans, nil
}

// How a page goes into the image.
const (
	runNone  = iota // not written
	runData         // read; all-zero pages of anonymous memory skipped
	runForce        // read; written whatever it holds
	runZero         // written as zeros without reading: a discarded anonymous page
)

// pageRunKind decides how the page with pagemap entry e goes into the image,
// given the destination's state st. anon: the VMA is private anonymous
// memory; skipFile: pages still shared with the backing file are not
// stored.
func pageRunKind(e uint64, anon, skipFile bool, st PageState) int {
	// A pte marker (the write-protection precopy tracking keeps on
	// unpopulated pages) looks swapped but holds nothing.
	present, swapped := procfs.Present(e), procfs.Swapped(e) && !procfs.Marker(e)
	fileOwned := skipFile && procfs.IsFileOrShared(e) && !swapped
	switch st {
	case PageNotSent:
		if (present || swapped) && !fileOwned {
			return runData
		}
		return runNone
	case PageSent:
		if present && !fileOwned {
			return runNone
		}
	}
	if anon && !present && !swapped {
		return runZero
	}
	return runForce
}
