package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func lazyCheckpoint() *Checkpoint {
	return &Checkpoint{Root: 7, PageSize: 4096, Processes: []*Process{{PID: 7}, {PID: 8, PPID: 7}}}
}

// lazyStream writes a state, lazy records for vmas (by pid) and a page.
func lazyStream(t *testing.T, vmas map[int][]LazyVMA) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteState(lazyCheckpoint()); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{7, 8} {
		for _, v := range vmas[pid] {
			if err := w.WriteLazy(pid, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.WritePages(7, 0x10000, make([]byte, 4096)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readLazy(b []byte) (map[int][]LazyVMA, error) {
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	got := map[int][]LazyVMA{}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return got, nil
		}
		if err != nil {
			return got, err
		}
		if rec.Type == RecordLazy {
			got[rec.PID] = append(got[rec.PID], rec.Lazy)
		}
	}
}

func TestLazyRoundTrip(t *testing.T) {
	many := LazyVMA{Start: 0x7f0000000000, End: 0x7f0000000000 + 4096*2*(maxLazyRuns+10)}
	for i := uint64(0); i < maxLazyRuns+10; i++ {
		many.Runs = append(many.Runs, PageRun{Addr: many.Start + i*2*4096, Pages: 1})
	}
	want := map[int][]LazyVMA{
		7: {{Start: 0x400000, End: 0x800000, Runs: []PageRun{{0x400000, 3}, {0x500000, 1}, {0x7ff000, 1}}}},
		8: {{Start: 0x1000000, End: 0x1100000, Runs: []PageRun{{0x1000000, 256}}}, many},
	}
	got, err := readLazy(lazyStream(t, want))
	if err != nil {
		t.Fatal(err)
	}
	// The VMA with many runs spans two records with the same bounds.
	if n := len(got[8]); n != 3 {
		t.Fatalf("pid 8: %d lazy records, want 3", n)
	}
	merged := got[8][1]
	merged.Runs = append(merged.Runs, got[8][2].Runs...)
	got[8] = []LazyVMA{got[8][0], merged}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("lazy VMAs differ after a round trip")
	}
	if n := want[7][0].DataPages(); n != 5 {
		t.Errorf("DataPages = %d, want 5", n)
	}
}

func TestLazyTruncatedAndCorrupt(t *testing.T) {
	stream := lazyStream(t, map[int][]LazyVMA{7: {{Start: 0x400000, End: 0x800000, Runs: []PageRun{{0x400000, 3}}}}})
	_, recs := splitStream(t, stream)
	start := HeaderSize + len(recs[0]) // the lazy record
	if RecordType(binary.LittleEndian.Uint16(stream[start:])) != RecordLazy {
		t.Fatal("record 1 is not the lazy record")
	}
	for cut := start; cut < start+len(recs[1]); cut++ {
		if _, err := readLazy(stream[:cut]); !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d: %v, want ErrTruncated", cut, err)
		}
	}
	bad := make([]byte, len(stream))
	for i := start; i < start+len(recs[1]); i++ {
		copy(bad, stream)
		bad[i] ^= 0x10
		_, err := readLazy(bad)
		var fe *FormatError
		if !errors.Is(err, ErrChecksum) || !errors.As(err, &fe) || fe.Record != 1 {
			t.Fatalf("byte %d flipped: %v, want ErrChecksum at record 1", i, err)
		}
	}
}

func lazyRec(pid uint32, reserved uint32, start, end uint64, runs ...uint64) []byte {
	p := binary.LittleEndian.AppendUint32(nil, pid)
	p = binary.LittleEndian.AppendUint32(p, reserved)
	p = binary.LittleEndian.AppendUint64(p, start)
	p = binary.LittleEndian.AppendUint64(p, end)
	for _, r := range runs {
		p = binary.LittleEndian.AppendUint64(p, r)
	}
	return rec(RecordLazy, p)
}

func TestLazyMalformed(t *testing.T) {
	st := stateRec(lazyCheckpoint())
	page := pagesRec(7, 0x10000, make([]byte, 4096))
	tests := []struct {
		name   string
		stream []byte
		msg    string
	}{
		{"no runs", assemble(st, lazyRec(7, 0, 0x1000, 0x2000)), "is not 24 bytes plus a positive multiple of 16"},
		{"half a run", assemble(st, rec(RecordLazy, make([]byte, 32))), "is not 24 bytes plus"},
		{"unknown pid", assemble(st, lazyRec(9, 0, 0x1000, 0x3000, 0x1000, 1)), "pid 9, which is not in the checkpoint"},
		{"reserved", assemble(st, lazyRec(7, 1, 0x1000, 0x3000, 0x1000, 1)), "reserved field"},
		{"empty VMA", assemble(st, lazyRec(7, 0, 0x3000, 0x3000, 0x3000, 1)), "empty or not aligned"},
		{"VMA misaligned", assemble(st, lazyRec(7, 0, 0x1001, 0x3000, 0x2000, 1)), "empty or not aligned"},
		{"run misaligned", assemble(st, lazyRec(7, 0, 0x1000, 0x3000, 0x1800, 1)), "empty or not aligned"},
		{"run empty", assemble(st, lazyRec(7, 0, 0x1000, 0x3000, 0x1000, 0)), "empty or not aligned"},
		{"run outside", assemble(st, lazyRec(7, 0, 0x1000, 0x3000, 0x2000, 2)), "outside the VMA"},
		{"run below", assemble(st, lazyRec(7, 0, 0x2000, 0x4000, 0x1000, 1)), "outside the VMA"},
		{"runs overlap", assemble(st, lazyRec(7, 0, 0x1000, 0x5000, 0x1000, 2, 0x2000, 1)), "out of order"},
		{"run wraps", assemble(st, lazyRec(7, 0, 0x1000, 0x5000, 0x1000, 1<<60)), "outside the VMA"},
		{"after pages", assemble(st, page, lazyRec(7, 0, 0x1000, 0x3000, 0x1000, 1)), "lazy record after pages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readLazy(tt.stream)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want ErrMalformed saying %q", err, tt.msg)
			}
		})
	}
}

func TestWriteLazyRefuses(t *testing.T) {
	var buf bytes.Buffer
	w, _ := NewWriter(&buf)
	v := LazyVMA{Start: 0x1000, End: 0x3000, Runs: []PageRun{{0x1000, 1}}}
	if err := w.WriteLazy(7, v); err == nil {
		t.Error("WriteLazy before the state succeeded")
	}
	w.WriteState(lazyCheckpoint())
	if err := w.WriteLazy(99, v); err == nil {
		t.Error("WriteLazy for an unknown pid succeeded")
	}
	if err := w.WriteLazy(7, LazyVMA{Start: 0x1000, End: 0x3000, Runs: []PageRun{{0x2000, 5}}}); err == nil {
		t.Error("WriteLazy of a run outside its VMA succeeded")
	}
	if err := w.WriteLazy(7, LazyVMA{Start: 0x1000, End: 0x3000}); err != nil {
		t.Errorf("WriteLazy without runs: %v, want a no-op", err)
	}
	if err := w.WriteLazy(7, v); err != nil {
		t.Fatal(err)
	}
	w.WritePages(7, 0x10000, make([]byte, 4096))
	if err := w.WriteLazy(7, v); err == nil {
		t.Error("WriteLazy after pages succeeded")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readLazy(buf.Bytes())
	if err != nil || len(got[7]) != 1 {
		t.Fatalf("stream after refused calls: %v, %d lazy records; want it intact with 1", err, len(got[7]))
	}
}
