package image

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Lazy records carry postcopy images (see package postcopy): the private
// anonymous memory of a process is not in Pages records but stays on the
// source, frozen, and the destination fetches it on first touch. A lazy
// record names one such VMA and the pages in it that hold data (present
// or swapped on the source); every other page of the VMA is zero. A VMA
// with no data page needs no record.
//
// Payload layout (little-endian):
//
//	pid (u32) | reserved (u32, 0) | VMA start (u64) | VMA end (u64) |
//	runs: n >= 1 times { address (u64) | pages (u64) }
//
// Runs are page-aligned, non-empty, ascending, disjoint and inside the
// VMA. A VMA with many runs may span several records with the same bounds,
// their runs continuing in address order. Lazy records come after the
// state record and before every pages record.

// PageRun is Pages consecutive pages starting at Addr.
type PageRun struct {
	Addr  uint64 `json:"addr"`
	Pages uint64 `json:"pages"`
}

// LazyVMA is a VMA whose data pages travel on demand: Runs are the pages
// that hold data, every other page of [Start, End) is zero.
type LazyVMA struct {
	Start uint64    `json:"start"`
	End   uint64    `json:"end"`
	Runs  []PageRun `json:"runs"`
}

// DataPages counts the pages of v that hold data.
func (v *LazyVMA) DataPages() uint64 {
	var n uint64
	for _, r := range v.Runs {
		n += r.Pages
	}
	return n
}

const (
	lazyPrefixSize = 24 // pid u32, reserved u32, start u64, end u64
	lazyRunSize    = 16 // address u64, pages u64
	// maxLazyRuns is how many runs a Writer puts in one record (1 MiB).
	maxLazyRuns = 1 << 16
)

// checkLazy validates a lazy VMA against the page size.
func checkLazy(v LazyVMA, pageSize int) error {
	ps := uint64(pageSize)
	if v.Start%ps != 0 || v.End%ps != 0 || v.Start >= v.End {
		return fmt.Errorf("lazy VMA %#x-%#x is empty or not aligned to the %d-byte page size", v.Start, v.End, ps)
	}
	if len(v.Runs) == 0 {
		return fmt.Errorf("lazy VMA %#x-%#x has no runs", v.Start, v.End)
	}
	next := v.Start
	for _, r := range v.Runs {
		if r.Addr%ps != 0 || r.Pages == 0 {
			return fmt.Errorf("lazy VMA %#x-%#x: run %#x+%d pages is empty or not aligned", v.Start, v.End, r.Addr, r.Pages)
		}
		hi, lo := bits.Mul64(r.Pages, ps)
		end, carry := bits.Add64(r.Addr, lo, 0)
		if hi != 0 || carry != 0 || r.Addr < next || end > v.End {
			return fmt.Errorf("lazy VMA %#x-%#x: run %#x+%d pages is out of order or outside the VMA", v.Start, v.End, r.Addr, r.Pages)
		}
		next = end
	}
	return nil
}

// decodeLazy decodes a lazy record's payload (its length was checked).
func decodeLazy(p []byte, info stateInfo) (int, LazyVMA, error) {
	pid := int(binary.LittleEndian.Uint32(p[0:]))
	if _, ok := info.pids[pid]; !ok {
		return 0, LazyVMA{}, fmt.Errorf("lazy VMA for pid %d, which is not in the checkpoint", pid)
	}
	if res := binary.LittleEndian.Uint32(p[4:]); res != 0 {
		return 0, LazyVMA{}, fmt.Errorf("lazy record reserved field is %#x, want 0", res)
	}
	v := LazyVMA{Start: binary.LittleEndian.Uint64(p[8:]), End: binary.LittleEndian.Uint64(p[16:])}
	runs := p[lazyPrefixSize:]
	v.Runs = make([]PageRun, len(runs)/lazyRunSize)
	for i := range v.Runs {
		v.Runs[i] = PageRun{Addr: binary.LittleEndian.Uint64(runs[i*lazyRunSize:]), Pages: binary.LittleEndian.Uint64(runs[i*lazyRunSize+8:])}
	}
	if err := checkLazy(v, info.pageSize); err != nil {
		return 0, LazyVMA{}, err
	}
	return pid, v, nil
}

// WriteLazy writes the lazy records of VMA v of process pid: its data
// pages stay on the source (see the package comment of postcopy). They
// must all be written before the first pages record. A VMA without runs
// writes nothing.
func (w *Writer) WriteLazy(pid int, v LazyVMA) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == nil {
		return errors.New("image: lazy record before the state record")
	}
	if w.pagesSeen {
		return errors.New("image: lazy record after pages")
	}
	if _, ok := w.state.pids[pid]; !ok {
		return fmt.Errorf("image: lazy VMA for pid %d, which is not in the checkpoint", pid)
	}
	if len(v.Runs) == 0 {
		return nil
	}
	if err := checkLazy(v, w.state.pageSize); err != nil {
		return fmt.Errorf("image: %w", err)
	}
	for runs := v.Runs; len(runs) > 0; {
		part := runs[:min(len(runs), maxLazyRuns)]
		runs = runs[len(part):]
		p := make([]byte, lazyPrefixSize, lazyPrefixSize+len(part)*lazyRunSize)
		binary.LittleEndian.PutUint32(p[0:], uint32(pid))
		binary.LittleEndian.PutUint64(p[8:], v.Start)
		binary.LittleEndian.PutUint64(p[16:], v.End)
		for _, r := range part {
			p = binary.LittleEndian.AppendUint64(p, r.Addr)
			p = binary.LittleEndian.AppendUint64(p, r.Pages)
		}
		if err := w.writeRecord(RecordLazy, nil, p); err != nil {
			return err
		}
	}
	return nil
}
