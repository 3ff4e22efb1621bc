package dump

import (
	"reflect"
	"strings"
	"testing"

	"ferry/internal/kernel"
)

func TestReadAdj(t *testing.T) {
	const me, other, ferry = 10, 20, 30
	tests := []struct {
		name       string
		before     []uint16
		beforePIDs []int
		after      []uint16
		afterPIDs  []int
		want       []int16
		err        string
	}{
		{name: "moved to the middle", before: []uint16{semMid, semMid, semMid}, beforePIDs: []int{ferry, ferry, ferry},
			after: []uint16{semMid + 2, semMid - 4, semMid}, afterPIDs: []int{me, me, ferry}, want: []int16{2, -4, 0}},
		{name: "in place", before: []uint16{8, 9, 4}, beforePIDs: []int{other, me, me},
			after: []uint16{10, 5, 4}, afterPIDs: []int{me, me, me}, want: []int16{2, -4, 0}},
		{name: "untouched", before: []uint16{3}, beforePIDs: []int{other}, after: []uint16{3}, afterPIDs: []int{other}, want: []int16{0}},
		{name: "clamped at 0", before: []uint16{4}, beforePIDs: []int{other}, after: []uint16{0}, afterPIDs: []int{me}, err: "clamps"},
		{name: "clamped at SEMVMX", before: []uint16{32760}, beforePIDs: []int{other}, after: []uint16{kernel.SEMVMX}, afterPIDs: []int{me}, err: "clamps"},
		{name: "at 0 and mine already", before: []uint16{0}, beforePIDs: []int{me}, after: []uint16{0}, afterPIDs: []int{me}, err: "clamps"},
		{name: "someone else meanwhile", before: []uint16{5}, beforePIDs: []int{me}, after: []uint16{5}, afterPIDs: []int{other}, err: "meanwhile"},
		{name: "value changed by another", before: []uint16{5}, beforePIDs: []int{other}, after: []uint16{6}, afterPIDs: []int{other}, err: "meanwhile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readAdj(tt.before, tt.beforePIDs, tt.after, tt.afterPIDs, me)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want one with %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("adj = %v, want %v", got, tt.want)
			}
		})
	}
}

// apply runs ops on vals as the kernel would, failing where it would
// wait (IPC_NOWAIT) or refuse the range, and returns the values and the
// adjustments the SEM_UNDO operations record.
func apply(t *testing.T, vals []uint16, ops []kernel.Sembuf) ([]uint16, []int) {
	t.Helper()
	v := make([]int, len(vals))
	for i, x := range vals {
		v[i] = int(x)
	}
	adj := make([]int, len(vals))
	for _, o := range ops {
		v[o.Num] += int(o.Op)
		if v[o.Num] < 0 || v[o.Num] > kernel.SEMVMX {
			t.Fatalf("op %+v takes semaphore %d to %d", o, o.Num, v[o.Num])
		}
		if o.Flg&kernel.SEM_UNDO != 0 {
			adj[o.Num] -= int(o.Op)
		}
	}
	out := make([]uint16, len(v))
	for i, x := range v {
		out[i] = uint16(x)
	}
	return out, adj
}

func TestMoveOps(t *testing.T) {
	tests := []struct{ from, to []uint16 }{
		{[]uint16{0, 5, semMid, kernel.SEMVMX}, fill(4, semMid)},
		{fill(3, semMid), []uint16{8, 9, 4}},
		{[]uint16{0}, []uint16{0}},
	}
	for _, tt := range tests {
		ops := moveOps(tt.from, tt.to)
		got, adj := apply(t, tt.from, ops)
		if !reflect.DeepEqual(got, tt.to) {
			t.Errorf("moveOps(%v, %v) gives %v", tt.from, tt.to, got)
		}
		touched := map[uint16]bool{}
		for _, o := range ops {
			touched[o.Num] = true
			if o.Flg != kernel.IPC_NOWAIT || o.Op == 0 {
				t.Errorf("op %+v: want a plain non-zero IPC_NOWAIT operation", o)
			}
		}
		if len(touched) != len(tt.from) {
			t.Errorf("moveOps(%v, %v) operates on %d semaphores, want all", tt.from, tt.to, len(touched))
		}
		for i, a := range adj {
			if a != 0 {
				t.Errorf("semaphore %d: adjustment %d from a plain move", i, a)
			}
		}
	}
}

func TestUndoOps(t *testing.T) {
	tests := []struct {
		adj  []int16
		vals []uint16 // after the adjustments were applied
	}{
		{[]int16{2, -4, -3}, []uint16{10, 5, 1}},
		{[]int16{0, 7}, []uint16{3, 7}},
		{[]int16{-1}, []uint16{0}},
	}
	for _, tt := range tests {
		ops := append(kernel.SemUndoOps(tt.adj, true), kernel.SemUndoOps(tt.adj, false)...)
		got, adj := apply(t, tt.vals, ops)
		for i, a := range tt.adj {
			if adj[i] != int(a) {
				t.Errorf("adj %v: semaphore %d gets adjustment %d", tt.adj, i, adj[i])
			}
			if int(got[i]) != int(tt.vals[i])-int(a) {
				t.Errorf("adj %v: semaphore %d ends at %d, want %d", tt.adj, i, got[i], int(tt.vals[i])-int(a))
			}
		}
		for _, o := range ops {
			if o.Flg != kernel.SEM_UNDO|kernel.IPC_NOWAIT {
				t.Errorf("op %+v: want SEM_UNDO|IPC_NOWAIT", o)
			}
		}
	}
}

func TestNoopPair(t *testing.T) {
	for _, v := range []uint16{0, 1, kernel.SEMVMX} {
		got, _ := apply(t, []uint16{v}, kernel.SemNoopPair(0, v))
		if got[0] != v {
			t.Errorf("noopPair at %d leaves %d", v, got[0])
		}
	}
}

func TestSemChunks(t *testing.T) {
	ops := make([]kernel.Sembuf, 7)
	tests := []struct{ max, n int }{{3, 3}, {7, 1}, {500, 1}, {1, 7}}
	for _, tt := range tests {
		ch := semChunks(ops, tt.max)
		total := 0
		for _, c := range ch {
			if len(c) > tt.max {
				t.Errorf("max %d: a chunk of %d", tt.max, len(c))
			}
			total += len(c)
		}
		if len(ch) != tt.n || total != len(ops) {
			t.Errorf("max %d: %d chunks of %d ops, want %d of %d", tt.max, len(ch), total, tt.n, len(ops))
		}
	}
	if semChunks(nil, 3) != nil {
		t.Error("no operations: want no chunks")
	}
}
