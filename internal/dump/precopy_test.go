package dump

import (
	"testing"

	"ferry/internal/procfs"
)

// TestPageRunKind: how each page goes into the image, by what the
// destination of a precopy holds and what the pagemap says.
func TestPageRunKind(t *testing.T) {
	const (
		present = procfs.PagemapPresent
		swapped = procfs.PagemapSwapped
		file    = procfs.PagemapFileShared | procfs.PagemapPresent
		absent  = 0
	)
	names := map[int]string{runNone: "none", runData: "data", runForce: "force", runZero: "zero"}
	for _, tc := range []struct {
		e              uint64
		anon, skipFile bool
		st             PageState
		want           int
	}{
		// A full dump.
		{present, true, false, PageNotSent, runData},
		{swapped, true, false, PageNotSent, runData},
		{absent, true, false, PageNotSent, runNone},
		{file, false, true, PageNotSent, runNone},
		{present, false, true, PageNotSent, runData},
		// A write-protection marker on an unpopulated page: nothing there.
		{0x420000000000003f, true, false, PageNotSent, runNone},
		{0x420000000000003f, true, false, PageSent, runZero},
		{0x420000000000003f, false, true, PageSent, runForce},
		// The destination holds the page and it was not written since.
		{present, true, false, PageSent, runNone},
		{absent, true, false, PageSent, runZero},   // discarded since
		{swapped, true, false, PageSent, runForce}, // swapped out since
		{file, false, true, PageSent, runForce},    // back to the file's page
		{absent, false, true, PageSent, runForce},
		// The destination holds an older copy.
		{present, true, false, PageStale, runForce},
		{absent, true, false, PageStale, runZero},
		{file, false, true, PageStale, runForce},
	} {
		if got := pageRunKind(tc.e, tc.anon, tc.skipFile, tc.st); got != tc.want {
			t.Errorf("pageRunKind(%#x, anon=%v, skipFile=%v, %d) = %s, want %s", tc.e, tc.anon, tc.skipFile, tc.st, names[got], names[tc.want])
		}
	}
}
