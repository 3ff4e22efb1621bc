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
	const (
		absent = 0
		hidden = procfs.PagemapPresent                            // shared anon, PFN hidden
		excl   = procfs.PagemapPresent | procfs.PagemapExclusive  // PFN hidden
		file   = procfs.PagemapPresent | procfs.PagemapFileShared // PFN hidden
	)
	equalAt := uint64(start + 1*ps) // sameContent is true only for this page
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
		{"swapped", []uint64{procfs.PagemapSwapped | 5}, []uint64{procfs.PagemapSwapped | 5}, nil},
		// Without CAP_SYS_ADMIN the PFN reads as 0.
		{"hidden, content decides", []uint64{hidden, hidden}, []uint64{hidden, hidden}, [][2]uint64{{equalAt, equalAt + ps}}},
		{"hidden, exclusive", []uint64{excl, excl}, []uint64{excl, excl}, nil},
		{"hidden, page cache", []uint64{file}, []uint64{file}, [][2]uint64{{start, start + ps}}},
		{"hidden, file vs anon", []uint64{file, hidden}, []uint64{hidden, file}, nil},
	} {
		got := sharedRuns(start, ps, tc.a, tc.b, func(addr uint64) bool { return addr == equalAt })
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
		{image.VMA{Kind: image.VMAFile}, true},
		{image.VMA{Kind: image.VMAFile, Shared: true}, false},
		{image.VMA{Kind: image.VMAMemfd}, true},
		{image.VMA{Kind: image.VMASharedAnon, Shared: true}, false},
		{image.VMA{Kind: image.VMAVDSO}, false},
	} {
		if got := forkable(&tc.v); got != tc.want {
			t.Errorf("forkable(%+v) = %v, want %v", tc.v, got, tc.want)
		}
	}
}

func TestInheritedFrom(t *testing.T) {
	anon := func(start, end uint64, flags ...string) image.VMA {
		return image.VMA{Start: start, End: end, Kind: image.VMAAnon, VMFlags: flags}
	}
	file := func(start, end, off uint64, path string) image.VMA {
		return image.VMA{Start: start, End: end, Kind: image.VMAFile, Path: path, Offset: off, Dev: 1, Ino: 2}
	}
	for _, tc := range []struct {
		name      string
		child, pa image.VMA
		want      bool
	}{
		{"same anon", anon(0x1000, 0x5000), anon(0x1000, 0x5000), true},
		{"parent's merged larger", anon(0x2000, 0x3000), anon(0x1000, 0x5000), true},
		{"child larger", anon(0x1000, 0x6000), anon(0x1000, 0x5000), false},
		{"advice differs", anon(0x1000, 0x5000, "hg"), anon(0x1000, 0x5000), false},
		{"mlock not inherited", anon(0x1000, 0x5000, "dd"), anon(0x1000, 0x5000, "dd", "lo"), true},
		{"dontfork", anon(0x1000, 0x5000, "dc"), anon(0x1000, 0x5000, "dc"), false},
		{"file same offset", file(0x2000, 0x3000, 0x1000, "/f"), file(0x1000, 0x5000, 0, "/f"), true},
		{"file other offset", file(0x2000, 0x3000, 0, "/f"), file(0x1000, 0x5000, 0, "/f"), false},
		{"other file", file(0x1000, 0x5000, 0, "/g"), file(0x1000, 0x5000, 0, "/f"), false},
		{"kind differs", anon(0x1000, 0x5000), file(0x1000, 0x5000, 0, "/f"), false},
	} {
		if got := inheritedFrom(&tc.child, &tc.pa); got != tc.want {
			t.Errorf("%s: inheritedFrom = %v, want %v", tc.name, got, tc.want)
		}
	}
}
