package workload

import (
	"bytes"
	"strings"
	"testing"
)

func TestPatternCheck(t *testing.T) {
	pt := newPattern(42)
	p := make([]byte, pageSize)
	pt.fill(p, 7, 3)
	if !pt.check(p, 7, 3) {
		t.Fatalf("check(page 7 gen 3) failed on its own content")
	}
	for _, other := range []struct {
		page int
		gen  uint32
	}{{7, 2}, {7, 4}, {6, 3}, {8, 3}, {-1, 3}} {
		if pt.check(p, other.page, other.gen) {
			t.Errorf("content of page 7 gen 3 passes as page %d gen %d", other.page, other.gen)
		}
	}
	q := make([]byte, pageSize)
	if newPattern(43).fill(q, 7, 3); bytes.Equal(p, q) {
		t.Errorf("seeds 42 and 43 give the same content")
	}
	for off := range pageSize {
		p[off] ^= 0x10
		if pt.check(p, 7, 3) {
			t.Fatalf("flip at byte %d not detected", off)
		}
		p[off] ^= 0x10
	}
}

func TestPatternMismatch(t *testing.T) {
	pt := newPattern(1)
	p := make([]byte, pageSize)
	tests := []struct {
		fill    func()
		page    int
		gen     uint32
		wantMsg string
	}{
		{func() { pt.fill(p, 5, 2); p[2049] ^= 1 }, 5, 2,
			"page 5 gen 2: content mismatch at byte 2049"},
		{func() { pt.fill(p, 5, 1) }, 5, 2,
			"page 5 gen 2: content mismatch at byte 8 (holds page 5 gen 1)"},
		{func() { pt.fill(p, 9, 2) }, 5, 2,
			"page 5 gen 2: content mismatch at byte 0 (holds page 9 gen 2)"},
		{func() { clear(p) }, 0, 0,
			"page 0 gen 0: content mismatch at byte 16"},
	}
	for _, tt := range tests {
		tt.fill()
		got := pt.mismatch(p, tt.page, tt.gen)
		if !strings.HasPrefix(got, tt.wantMsg) || len(got) != len(tt.wantMsg) {
			t.Errorf("mismatch(page %d gen %d) = %q, want %q", tt.page, tt.gen, got, tt.wantMsg)
		}
	}
}

func BenchmarkCheckPage(b *testing.B) {
	pt := newPattern(1)
	p := make([]byte, pageSize)
	pt.fill(p, 3, 9)
	b.SetBytes(pageSize)
	for b.Loop() {
		if !pt.check(p, 3, 9) {
			b.Fatal("check failed")
		}
	}
}

func BenchmarkFillPage(b *testing.B) {
	pt := newPattern(1)
	p := make([]byte, pageSize)
	b.SetBytes(pageSize)
	gen := uint32(0)
	for b.Loop() {
		gen++
		pt.fill(p, 3, gen)
	}
}
