package image

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

func TestSignalsRecordRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	c := &Checkpoint{Root: 7, PageSize: 4096, Processes: []*Process{{PID: 7}}}
	if err := w.WriteState(c); err != nil {
		t.Fatal(err)
	}
	info := make(Siginfo, 128)
	info[0] = 10
	want := []PendingSignal{{PID: 7, Info: info}, {PID: 7, TID: 8, Info: info}}
	if err := w.WriteSignals(want); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := NewReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	var got []PendingSignal
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if rec.Type == RecordSignals {
			got = append(got, rec.Signals...)
		}
	}
	if len(got) != 2 || got[1].TID != 8 || !bytes.Equal(got[0].Info, info) {
		t.Fatalf("signals = %+v, want %+v", got, want)
	}

	// A signal for a pid outside the checkpoint is malformed.
	buf.Reset()
	w, _ = NewWriter(&buf)
	w.WriteState(c)
	w.WriteSignals([]PendingSignal{{PID: 99, Info: info}})
	w.Close()
	r, _ = NewReader(bytes.NewReader(buf.Bytes()))
	r.Next()
	if _, err := r.Next(); !errors.Is(err, ErrMalformed) {
		t.Fatalf("signal for an unknown pid: %v, want ErrMalformed", err)
	}
}
