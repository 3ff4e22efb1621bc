package workload

import (
	"encoding/binary"
	"fmt"
)

// pageSize is the unit the workload dirties and verifies. It matches the x86-64
// base page so one rewrite dirties exactly one page in the kernel's eyes.
const pageSize = 4096

const (
	wordsPerPage = pageSize / 8
	// headerWords leading words of a page hold its index and generation in
	// plain form, so a mismatch report can say what the page holds instead
	// (a stale generation, or another page's content).
	headerWords = 2
)

// pattern is the content function: a page's bytes are a pure function of
// (seed, page index, generation). It is immutable after newPattern.
type pattern struct {
	seed uint64
	// tmpl varies the words within a page; word i of a page is
	// hash(page, gen) ^ tmpl[i]. tmpl[:headerWords] is unused.
	tmpl [wordsPerPage]uint64
}

func newPattern(seed int64) *pattern {
	pt := &pattern{seed: mix64(uint64(seed) ^ 0x6665727279) /* "ferry" */}
	for i := range pt.tmpl {
		pt.tmpl[i] = mix64(pt.seed + uint64(i)*0x9e3779b97f4a7c15)
	}
	return pt
}

// mix64 is the SplitMix64 finalizer: cheap, and every input bit affects every
// output bit, which is all the content function needs.
func mix64(z uint64) uint64 {
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}

func (pt *pattern) hash(page int, gen uint32) uint64 {
	return mix64(pt.seed ^ uint64(page)*0x9e3779b97f4a7c15 ^ uint64(gen)*0xc2b2ae3d27d4eb4f)
}

// fill writes the content of (page, gen) into p, which must be pageSize long.
func (pt *pattern) fill(p []byte, page int, gen uint32) {
	p = p[:pageSize]
	binary.LittleEndian.PutUint64(p[0:], uint64(page))
	binary.LittleEndian.PutUint64(p[8:], uint64(gen))
	h := pt.hash(page, gen)
	for i := headerWords; i < wordsPerPage; i++ {
		binary.LittleEndian.PutUint64(p[i*8:], h^pt.tmpl[i])
	}
}

// check reports whether p, which must be pageSize long, holds exactly the
// content of (page, gen). It is the hot loop of verification: differences are
// OR-ed together and located only on failure, by mismatch.
func (pt *pattern) check(p []byte, page int, gen uint32) bool {
	p = p[:pageSize]
	diff := binary.LittleEndian.Uint64(p[0:]) ^ uint64(page)
	diff |= binary.LittleEndian.Uint64(p[8:]) ^ uint64(gen)
	h := pt.hash(page, gen)
	// (wordsPerPage-headerWords) is even: two words per step.
	for i := headerWords; i+1 < wordsPerPage; i += 2 {
		w := p[i*8 : i*8+16]
		diff |= binary.LittleEndian.Uint64(w[0:]) ^ h ^ pt.tmpl[i]
		diff |= binary.LittleEndian.Uint64(w[8:]) ^ h ^ pt.tmpl[i+1]
	}
	return diff == 0
}

// mismatch describes how p differs from the content of (page, gen). Call it
// only after check failed; it is slow and allocates.
func (pt *pattern) mismatch(p []byte, page int, gen uint32) string {
	want := make([]byte, pageSize)
	pt.fill(want, page, gen)
	off := 0
	for off < pageSize && p[off] == want[off] {
		off++
	}
	msg := fmt.Sprintf("page %d gen %d: content mismatch at byte %d", page, gen, off)
	heldPage := binary.LittleEndian.Uint64(p[0:])
	heldGen := binary.LittleEndian.Uint64(p[8:])
	if heldPage != uint64(page) || heldGen != uint64(gen) {
		msg += fmt.Sprintf(" (holds page %d gen %d)", int64(heldPage), heldGen)
	}
	return msg
}
