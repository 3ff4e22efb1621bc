package kernel

import (
	"bytes"
	"testing"
	"unsafe"
)

func TestSemLayouts(t *testing.T) {
	if n := unsafe.Sizeof(SemidDs{}); n != 104 {
		t.Errorf("sizeof(struct semid64_ds) = %d, want 104", n)
	}
	tests := []struct {
		ops  []Sembuf
		want []byte
	}{
		{nil, []byte{}},
		{[]Sembuf{{Num: 1, Op: -2, Flg: SEM_UNDO | IPC_NOWAIT}}, []byte{1, 0, 0xfe, 0xff, 0x00, 0x18}},
		{[]Sembuf{{Num: 0, Op: 3}, {Num: 258, Op: 1, Flg: IPC_NOWAIT}}, []byte{0, 0, 3, 0, 0, 0, 2, 1, 1, 0, 0, 0x08}},
	}
	for _, tt := range tests {
		if got := EncodeSembufs(tt.ops); !bytes.Equal(got, tt.want) {
			t.Errorf("EncodeSembufs(%+v) = %x, want %x", tt.ops, got, tt.want)
		}
	}
}

func TestSemUndoOps(t *testing.T) {
	adj := []int16{2, 0, -4, -3, 1}
	tests := []struct {
		positive bool
		want     []Sembuf
	}{
		{true, []Sembuf{{2, 4, SEM_UNDO | IPC_NOWAIT}, {3, 3, SEM_UNDO | IPC_NOWAIT}}},
		{false, []Sembuf{{0, -2, SEM_UNDO | IPC_NOWAIT}, {4, -1, SEM_UNDO | IPC_NOWAIT}}},
	}
	for _, tt := range tests {
		got := SemUndoOps(adj, tt.positive)
		if len(got) != len(tt.want) {
			t.Fatalf("positive %v: %+v, want %+v", tt.positive, got, tt.want)
		}
		for i := range got {
			if got[i] != tt.want[i] {
				t.Errorf("positive %v: op %d = %+v, want %+v", tt.positive, i, got[i], tt.want[i])
			}
		}
	}
}

func TestSemNoopPair(t *testing.T) {
	tests := []struct {
		v     uint16
		first int16
	}{{0, 1}, {1, -1}, {SEMVMX, -1}}
	for _, tt := range tests {
		p := SemNoopPair(3, tt.v)
		if len(p) != 2 || p[0].Op != tt.first || p[0].Op+p[1].Op != 0 || p[0].Num != 3 || p[1].Num != 3 {
			t.Errorf("SemNoopPair(3, %d) = %+v", tt.v, p)
		}
	}
}
