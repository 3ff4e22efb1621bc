package dump

import (
	"fmt"
	"testing"

	"ferry/internal/image"
	"ferry/internal/procfs"
)

func TestSharedRuns(t *testing.T) {
	const ps, start = 4096, 0x10000
	pte := func(pfn uint64) uint64 { return procfs.PagemapPresent | pfn }
	const absent = 0
	for _, tc := range []struct {
		name string
		a, b []uint64
		want [][2]uint64
	}{
		{"none", []uint64{absent, absent}, []uint64{absent, absent}, nil},
		{"all", []uint64{pte(5), pte(6)}, []uint64{pte(5), pte(6)}, [][2]uint64{{start, start + 2*ps}}},
		{"middle differs", []uint64{pte(5), pte(7), pte(9)}, []uint64{pte(5), pte(8), pte(9)},
			[][2]uint64{{start, start + ps}, {start + 2*ps, start + 3*ps}}},
		{"one side absent", []uint64{pte(5), absent}, []uint64{pte(5), pte(6)}, [][2]uint64{{start, start + ps}}},
		// Without CAP_SYS_ADMIN the PFN reads as 0: nothing is shared.
		{"pfn hidden", []uint64{pte(0), pte(0)}, []uint64{pte(0), pte(0)}, nil},
		{"swapped", []uint64{procfs.PagemapSwapped | 5}, []uint64{procfs.PagemapSwapped | 5}, nil},
	} {
		got := sharedRuns(start, ps, tc.a, tc.b)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: sharedRuns = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestForkable(t *testing.T) {
	for _, tc := range []struct {
		v    image.VMA
		want bool
	}{
		{image.VMA{Kind: image.VMAAnon}, true},
		{image.VMA{Kind: image.VMAAnon, VMFlags: []string{"dd", "lo"}}, true},
		{image.VMA{Kind: image.VMAAnon, VMFlags: []string{"dc"}}, false},
		{image.VMA{Kind: image.VMAAnon, VMFlags: []string{"wf"}}, false},
		{image.VMA{Kind: image.VMAAnon, Shared: true}, false},
		{image.VMA{Kind: image.VMAFile}, false},
		{image.VMA{Kind: image.VMAMemfd}, false},
	} {
		if got := forkable(&tc.v); got != tc.want {
			t.Errorf("forkable(%+v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}
