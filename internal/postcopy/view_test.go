package postcopy

import (
	"testing"

	"ferry/internal/image"
	"ferry/internal/restore"
)

const pg = 4096

// testView is one lazy VMA [0x100000, +16 pages) with data in pages 0-3
// and 8-11.
func testView() *view {
	lp := newLazyProc(restore.LazyProcess{PID: 10, ImagePID: 1, VMAs: []image.LazyVMA{{
		Start: 0x100000, End: 0x100000 + 16*pg,
		Runs: []image.PageRun{{Addr: 0x100000, Pages: 4}, {Addr: 0x100000 + 8*pg, Pages: 4}},
	}}})
	return newView(lp, -1, "test")
}

func TestViewTranslation(t *testing.T) {
	v := testView()
	if v.missing != 8 {
		t.Fatalf("missing = %d, want 8", v.missing)
	}
	for _, tc := range []struct {
		src  uint64
		idx  int
		data bool
	}{{0x100000, 0, true}, {0x100000 + 3*pg, 3, true}, {0x100000 + 4*pg, 0, false}, {0x100000 + 9*pg, 5, true}, {0x100000 + 16*pg, 0, false}} {
		i, ok := v.lp.index(tc.src, pg)
		if ok != tc.data || (ok && i != tc.idx) {
			t.Errorf("index(%#x) = %d, %v; want %d, %v", tc.src, i, ok, tc.idx, tc.data)
		}
	}
	// Move pages 8-15 to 0x200000 (mremap of the VMA's tail).
	v.remap(0x100000+8*pg, 0x200000, 8*pg, pg)
	if src, _, ok := v.toSrc(0x200000 + pg); !ok || src != 0x100000+9*pg {
		t.Errorf("toSrc(0x201000) = %#x, %v; want 0x109000", src, ok)
	}
	if _, _, ok := v.toSrc(0x100000 + 9*pg); ok {
		t.Errorf("the old address of a moved page still translates")
	}
	if dst, _, ok := v.toDst(0x100000 + 10*pg); !ok || dst != 0x202000 {
		t.Errorf("toDst(0x10a000) = %#x, %v; want 0x202000", dst, ok)
	}
	if v.missing != 8 {
		t.Errorf("a move changed what is missing: %d", v.missing)
	}
	// Discard moved pages 0-1 (source pages 8-9): zero, still mapped.
	v.discard(0x200000, 0x200000+2*pg, pg, false)
	if v.missing != 6 || v.st[4] != stZero || v.st[5] != stZero || v.st[6] != stNeeded {
		t.Errorf("after discard: missing %d, states %v", v.missing, v.st)
	}
	if _, _, ok := v.toSrc(0x200000); !ok {
		t.Errorf("a discarded page is no longer mapped")
	}
	// Unmap source pages 1-2 in the middle of the first segment.
	v.discard(0x100000+pg, 0x100000+3*pg, pg, true)
	if _, _, ok := v.toSrc(0x100000 + 2*pg); ok {
		t.Errorf("an unmapped page still translates")
	}
	if src, _, ok := v.toSrc(0x100000 + 3*pg); !ok || src != 0x100000+3*pg {
		t.Errorf("the page after a hole: %#x, %v", src, ok)
	}
	if v.missing != 4 {
		t.Errorf("after unmap: missing %d, want 4", v.missing)
	}
	// A fork needs again what the parent copied in.
	v.set(0, stPresent)
	v.set(3, stWanted)
	c := v.fork(-1)
	if c.st[0] != stNeeded || c.st[3] != stWanted || c.st[4] != stZero || c.missing != v.missing+1 {
		t.Errorf("fork: states %v missing %d (parent %v, %d)", c.st, c.missing, v.st, v.missing)
	}
	// Remapping onto a mapped range drops what was there.
	v.remap(0x100000+3*pg, 0x200000+2*pg, pg, pg)
	if v.st[6] != stZero {
		t.Errorf("a page overwritten by mremap is %d, want zero", v.st[6])
	}
	if src, _, _ := v.toSrc(0x200000 + 2*pg); src != 0x100000+3*pg {
		t.Errorf("toSrc after remap onto a mapping: %#x", src)
	}
}
