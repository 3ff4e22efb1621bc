package deputy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"testing"
)

// TestCodecRoundTrip: every kind of frame comes back as it went.
func TestCodecRoundTrip(t *testing.T) {
	frames := []Frame{
		{Kind: KHello, Ack: 7},
		{Kind: KAck, Ack: 1 << 40},
		{Kind: KData, Seq: 3, Ack: 2, Stream: 4, Data: []byte("bytes of a pipe")},
		{Kind: KCredit, Seq: 4, Stream: 4, N: 65536},
		{Kind: KEof, Seq: 5, Stream: 1},
		{Kind: KGone, Seq: 6, Stream: 2},
		{Kind: KSignal, Seq: 7, Target: 101, Sig: 10},
		{Kind: KStatus, Seq: 8, Status: Status{Kind: Killed, Code: 11, Core: true}},
		{Kind: KStatus, Seq: 9, Status: Status{Kind: Exited, Code: 0}},
	}
	var b []byte
	for _, f := range frames {
		b = AppendFrame(b, f)
	}
	r := bytes.NewReader(b)
	for _, want := range frames {
		got, err := ReadFrame(r)
		if err != nil {
			t.Fatalf("%s: %v", want.Kind, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("sent %+v, got %+v", want, got)
		}
	}
	if _, err := ReadFrame(r); err != io.EOF {
		t.Errorf("after the last frame: %v, want EOF", err)
	}
}

// TestCodecCorrupt: damaged frames are refused, naming the damage.
func TestCodecCorrupt(t *testing.T) {
	good := AppendFrame(nil, Frame{Kind: KSignal, Seq: 1, Sig: 15})[4:]
	set := func(off int, v byte) []byte {
		b := append([]byte(nil), good...)
		b[off] = v
		return b
	}
	with := func(f Frame) []byte { return AppendFrame(nil, f)[4:] }
	for _, tt := range []struct {
		name string
		b    []byte
	}{
		{"short", good[:10]},
		{"version", set(0, 9)},
		{"kind", set(1, 99)},
		{"core flag", set(39, 2)},
		{"signal 0", with(Frame{Kind: KSignal, Seq: 1})},
		{"signal 65", with(Frame{Kind: KSignal, Seq: 1, Sig: 65})},
		{"unnumbered", with(Frame{Kind: KEof, Stream: 1})},
		{"numbered hello", with(Frame{Kind: KHello, Seq: 4})},
		{"data on an eof", with(Frame{Kind: KEof, Seq: 1, Data: []byte("x")})},
		{"empty data", with(Frame{Kind: KData, Seq: 1})},
		{"no credit", with(Frame{Kind: KCredit, Seq: 1})},
		{"exit 300", with(Frame{Kind: KStatus, Seq: 1, Status: Status{Kind: Exited, Code: 300}})},
		{"stopped by 0", with(Frame{Kind: KStatus, Seq: 1, Status: Status{Kind: Stopped}})},
		{"no status", with(Frame{Kind: KStatus, Seq: 1})},
	} {
		if _, err := DecodeFrame(tt.b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", tt.name, err)
		}
	}
	var huge [4]byte
	binary.LittleEndian.PutUint32(huge[:], headerSize+MaxData+1)
	if _, err := ReadFrame(bytes.NewReader(huge[:])); !errors.Is(err, ErrCorrupt) {
		t.Errorf("a frame longer than the limit: %v", err)
	}
	cut := AppendFrame(nil, Frame{Kind: KData, Seq: 1, Stream: 1, Data: []byte("abc")})
	if _, err := ReadFrame(bytes.NewReader(cut[:len(cut)-1])); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a cut frame: %v, want unexpected EOF", err)
	}
}
