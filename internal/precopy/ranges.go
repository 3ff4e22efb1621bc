package precopy

import (
	"math"
	"slices"

	"ferry/internal/dirty"
)

// Page ranges are kept as sorted slices of disjoint dirty.Range values.

// union returns the sorted, coalesced union of a and b (each sorted and
// disjoint; adjacent ranges merge).
func union(a, b []dirty.Range) []dirty.Range {
	if len(b) == 0 {
		return a
	}
	out := make([]dirty.Range, 0, len(a)+len(b))
	add := func(r dirty.Range) {
		if n := len(out); n > 0 && out[n-1].End >= r.Start {
			out[n-1].End = max(out[n-1].End, r.End)
			return
		}
		out = append(out, r)
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		if j == len(b) || i < len(a) && a[i].Start <= b[j].Start {
			add(a[i])
			i++
		} else {
			add(b[j])
			j++
		}
	}
	return out
}

// intersect returns the parts of a that lie in b.
func intersect(a, b []dirty.Range) []dirty.Range {
	var out []dirty.Range
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		lo, hi := max(a[i].Start, b[j].Start), min(a[i].End, b[j].End)
		if lo < hi {
			out = append(out, dirty.Range{Start: lo, End: hi})
		}
		if a[i].End < b[j].End {
			i++
		} else {
			j++
		}
	}
	return out
}

// subtract returns the parts of a that are not in b.
func subtract(a, b []dirty.Range) []dirty.Range {
	var out []dirty.Range
	j := 0
	for _, r := range a {
		for j < len(b) && b[j].End <= r.Start {
			j++
		}
		start := r.Start
		for k := j; k < len(b) && b[k].Start < r.End; k++ {
			if b[k].Start > start {
				out = append(out, dirty.Range{Start: start, End: b[k].Start})
			}
			start = max(start, b[k].End)
		}
		if start < r.End {
			out = append(out, dirty.Range{Start: start, End: r.End})
		}
	}
	return out
}

// lookup reports whether addr lies in rs, and where that stops being
// true: the end of its range, or the start of the next range (MaxUint64
// after the last).
func lookup(rs []dirty.Range, addr uint64) (in bool, until uint64) {
	i, _ := slices.BinarySearchFunc(rs, addr, func(r dirty.Range, a uint64) int {
		if r.End <= a {
			return -1
		}
		return 1
	})
	switch {
	case i == len(rs):
		return false, math.MaxUint64
	case rs[i].Start <= addr:
		return true, rs[i].End
	}
	return false, rs[i].Start
}

// cursor answers membership queries on rs for mostly increasing addresses
// in amortized constant time.
type cursor struct {
	rs []dirty.Range
	i  int // first range that may hold the next address
}

func (c *cursor) has(addr uint64) bool {
	// Ranges before i end at or before an earlier query's address; if
	// addr is below that, look it up afresh.
	if c.i > 0 && addr < c.rs[c.i-1].End {
		c.i, _ = slices.BinarySearchFunc(c.rs, addr, func(r dirty.Range, a uint64) int {
			if r.End <= a {
				return -1
			}
			return 1
		})
	}
	for c.i < len(c.rs) && c.rs[c.i].End <= addr {
		c.i++
	}
	return c.i < len(c.rs) && c.rs[c.i].Start <= addr
}
