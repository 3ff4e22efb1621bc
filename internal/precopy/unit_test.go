package precopy

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"slices"
	"testing"

	"ferry/internal/dirty"
	"ferry/internal/dump"
)

type rs = []dirty.Range

// mk builds a range set from start, end pairs.
func mk(bounds ...uint64) rs {
	var out rs
	for i := 0; i+1 < len(bounds); i += 2 {
		out = append(out, dirty.Range{Start: bounds[i], End: bounds[i+1]})
	}
	return out
}

func TestUnionIntersect(t *testing.T) {
	for _, tc := range []struct {
		a, b, union, inter rs
	}{
		{nil, nil, nil, nil},
		{mk(0, 10), nil, mk(0, 10), nil},
		{nil, mk(0, 10), mk(0, 10), nil},
		{mk(0, 10), mk(10, 20), mk(0, 20), nil},
		{mk(0, 10, 30, 40), mk(5, 35), mk(0, 40), mk(5, 10, 30, 35)},
		{mk(0, 10, 20, 30), mk(12, 14, 40, 50), mk(0, 10, 12, 14, 20, 30, 40, 50), nil},
		{mk(0, 100), mk(10, 20, 30, 40), mk(0, 100), mk(10, 20, 30, 40)},
	} {
		if got := union(slices.Clone(tc.a), tc.b); !slices.Equal(got, tc.union) {
			t.Errorf("union(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.union)
		}
		if got := intersect(tc.a, tc.b); !slices.Equal(got, tc.inter) {
			t.Errorf("intersect(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.inter)
		}
	}
}

func TestSubtract(t *testing.T) {
	for _, tc := range []struct{ a, b, want rs }{
		{nil, mk(0, 10), nil},
		{mk(0, 10), nil, mk(0, 10)},
		{mk(0, 10), mk(0, 10), nil},
		{mk(0, 10), mk(2, 4, 4, 6, 8, 12), mk(0, 2, 6, 8)},
		{mk(0, 10, 20, 30), mk(5, 25), mk(0, 5, 25, 30)},
		{mk(10, 20), mk(0, 5, 30, 40), mk(10, 20)},
	} {
		if got := subtract(tc.a, tc.b); !slices.Equal(got, tc.want) {
			t.Errorf("subtract(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestLookupCursor(t *testing.T) {
	set := mk(10, 20, 30, 40)
	for _, tc := range []struct {
		addr  uint64
		in    bool
		until uint64
	}{
		{0, false, 10}, {10, true, 20}, {19, true, 20}, {20, false, 30},
		{35, true, 40}, {40, false, math.MaxUint64},
	} {
		in, until := lookup(set, tc.addr)
		if in != tc.in || until != tc.until {
			t.Errorf("lookup(%d) = %v, %d, want %v, %d", tc.addr, in, until, tc.in, tc.until)
		}
	}
	c := cursor{rs: set}
	// Increasing, then back again.
	for _, q := range []uint64{0, 5, 10, 25, 31, 45, 12, 0, 39} {
		if got, want := c.has(q), (q >= 10 && q < 20) || (q >= 30 && q < 40); got != want {
			t.Errorf("cursor.has(%d) = %v, want %v", q, got, want)
		}
	}
}

func TestPlan(t *testing.T) {
	pl := &plan{
		sent:    mk(0x1000, 0x9000),
		tracked: mk(0x0000, 0x6000),
		dirty:   mk(0x2000, 0x3000),
	}
	type step struct {
		st  dump.PageState
		end uint64
	}
	want := map[uint64]step{
		0x0000: {dump.PageNotSent, 0x1000},
		0x1000: {dump.PageSent, 0x2000},
		0x2000: {dump.PageStale, 0x3000},
		0x3000: {dump.PageSent, 0x6000},
		0x6000: {dump.PageStale, 0x9000}, // sent, no longer tracked
		0x9000: {dump.PageNotSent, math.MaxUint64},
	}
	for addr, w := range want {
		if st, end := pl.At(addr); st != w.st || end != w.end {
			t.Errorf("At(%#x) = %v, %#x, want %v, %#x", addr, st, end, w.st, w.end)
		}
	}
	pl.stale = true
	if st, end := pl.At(0x3000); st != dump.PageStale || end != 0x9000 {
		t.Errorf("stale plan: At(0x3000) = %v, %#x, want PageStale to 0x9000", st, end)
	}
}

// TestStaging: later pages replace earlier ones, Pages returns them in
// address order with consecutive slots coalesced, per process.
func TestStaging(t *testing.T) {
	ps := os.Getpagesize()
	s := NewStaging()
	defer s.Close()
	page := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n*ps) }
	base := uint64(0x7f0000000000)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.SendPages(1, base, page(1, 4)))                     // 4 pages, slots 0-3
	must(s.SendPages(1, base+uint64(10*ps), page(2, 2)))       // slots 4-5
	must(s.SendPages(1, base+uint64(ps), page(3, 1)))          // replaces page 1 in place
	must(s.SendPages(1, base-uint64(ps), page(4, 1)))          // before: slot 6
	must(s.SendPages(2, base, page(5, 1)))                     // another process
	must(s.SendPages(1, base+uint64(512*ps-1*ps), page(6, 2))) // across an index block
	if err := s.SendPages(1, base+1, page(0, 1)); err == nil { // unaligned
		t.Error("SendPages of an unaligned address succeeded")
	}
	if got, want := s.Bytes(), int64(10*ps); got != want {
		t.Errorf("Bytes = %d, want %d", got, want)
	}
	var got []string
	err := s.Pages(1, func(addr uint64, data []byte) error {
		var b []byte
		for off := 0; off < len(data); off += ps {
			b = append(b, data[off])
		}
		got = append(got, fmt.Sprintf("%d:%v", int64(addr-base)/int64(ps), b))
		return nil
	})
	must(err)
	want := []string{"-1:[4]", "0:[1 3 1 1]", "10:[2 2]", "511:[6 6]"}
	if !slices.Equal(got, want) {
		t.Errorf("Pages(1) = %v, want %v", got, want)
	}
	n := 0
	must(s.Pages(2, func(addr uint64, data []byte) error { n += len(data); return nil }))
	must(s.Pages(3, func(addr uint64, data []byte) error { n += 1 << 30; return nil }))
	if n != ps {
		t.Errorf("Pages(2) and Pages(3) gave %d bytes, want %d", n, ps)
	}
}
