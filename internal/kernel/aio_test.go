package kernel

import (
	"encoding/binary"
	"testing"
)

func ringHeader(nr, head, tail, magic uint32) []byte {
	b := make([]byte, AioRingHeaderSize)
	binary.LittleEndian.PutUint32(b[4:], nr)
	binary.LittleEndian.PutUint32(b[8:], head)
	binary.LittleEndian.PutUint32(b[12:], tail)
	binary.LittleEndian.PutUint32(b[16:], magic)
	return b
}

func TestParseAioRing(t *testing.T) {
	cases := []struct {
		name    string
		b       []byte
		pending uint32
		ok      bool
	}{
		{"empty ring", ringHeader(255, 7, 7, AIO_RING_MAGIC), 0, true},
		{"two pending", ringHeader(255, 7, 9, AIO_RING_MAGIC), 2, true},
		{"wrapped", ringHeader(255, 250, 3, AIO_RING_MAGIC), 8, true},
		{"bad magic", ringHeader(255, 0, 0, 0xdeadbeef), 0, false},
		{"head beyond nr", ringHeader(255, 255, 0, AIO_RING_MAGIC), 0, false},
		{"zero nr", ringHeader(0, 0, 0, AIO_RING_MAGIC), 0, false},
		{"short", ringHeader(255, 0, 0, AIO_RING_MAGIC)[:20], 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseAioRing(tc.b)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok %v", err, tc.ok)
			}
			if tc.ok && r.Pending() != tc.pending {
				t.Errorf("pending %d, want %d", r.Pending(), tc.pending)
			}
		})
	}
	r, _ := ParseAioRing(ringHeader(255, 254, 1, AIO_RING_MAGIC))
	if got, want := r.EventOffset(2), uint64(AioRingHeaderSize+1*IoEventSize); got != want {
		t.Errorf("EventOffset(2) after head 254 of 255 = %d, want %d", got, want)
	}
}
