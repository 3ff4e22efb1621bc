package deputy

import (
	"errors"
	"testing"
	"time"
)

// TestBadFrames: frames no correct peer sends are refused with an error
// naming them, and nothing of theirs reaches a local fd.
func TestBadFrames(t *testing.T) {
	streams := []Stream{{ID: 1, Dir: ToAway}, {ID: 2, Dir: ToHome}}
	for _, tt := range []struct {
		name string
		f    Frame
	}{
		{"data on a stream home reads", Frame{Kind: KData, Seq: 1, Stream: 1, Data: []byte("x")}},
		{"data on no stream", Frame{Kind: KData, Seq: 1, Stream: 9, Data: []byte("x")}},
		{"data beyond the window", Frame{Kind: KData, Seq: 1, Stream: 2, Data: make([]byte, 5000)}},
		{"credit beyond the window", Frame{Kind: KCredit, Seq: 1, Stream: 1, N: 1}},
		{"credit on a stream home writes", Frame{Kind: KCredit, Seq: 1, Stream: 2, N: 1}},
		{"a gap", Frame{Kind: KEof, Seq: 2, Stream: 2}},
		{"unknown kind", Frame{Kind: 77, Seq: 1}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(0, 0)
			r := New(Config{Side: Home, Streams: streams, Window: 4096}, now)
			r.Start()
			r.Handle(now, LinkUp{})
			r.Handle(now, Recv{Frame{Kind: KHello}})
			acts := r.Handle(now, Recv{tt.f})
			if err := r.Err(); !errors.Is(err, ErrProtocol) {
				t.Fatalf("err = %v, want a protocol violation", err)
			}
			for _, a := range acts {
				if _, ok := a.(Write); ok {
					t.Errorf("the bad frame was written: %v", a)
				}
			}
		})
	}
}

// TestSimDeterministic: a seed replays the same run.
func TestSimDeterministic(t *testing.T) {
	a, b := newSim(t, 7), newSim(t, 7)
	a.run()
	b.run()
	if a.now != b.now || len(a.mirrored) != len(b.mirrored) || a.faults != b.faults {
		t.Fatalf("seed 7 ran twice differently: %v/%v, %d/%d faults", a.now, b.now, a.faults, b.faults)
	}
}
