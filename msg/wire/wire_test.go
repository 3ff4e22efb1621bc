package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	max := bytes.Repeat([]byte{0xa5}, MaxPayload)
	long := string(bytes.Repeat([]byte("a"), MaxID))
	tests := []Packet{
		{Type: TypeHello, MaxPayload: MaxPayload, ID: "n1-4.101"},
		{Type: TypeHello, MaxPayload: 1, ID: long},
		{Type: TypeSend, Seq: 1, ID: "n1-4.101", Payload: []byte("hi")},
		{Type: TypeSend, Seq: 1<<32 - 1, ID: long, Payload: max},
		{Type: TypeMsg, Seq: 0, ID: "n2-1.7", Payload: []byte{}},
		{Type: TypeMsg, Seq: 3, ID: "n2-1.7", Payload: max},
		{Type: TypeResult, Seq: 9, Code: CodeOK},
		{Type: TypeResult, Seq: 9, Code: CodeUnreachable, Text: "n1-4.101: unreachable after 30s"},
		{Type: TypeError, Seq: 0, Code: CodeMalformed, Text: "bad magic"},
	}
	for _, p := range tests {
		b, err := Append(nil, &p)
		if err != nil {
			t.Fatalf("Append(%v): %v", p.Type, err)
		}
		if len(b) > MaxPacket {
			t.Fatalf("%v: %d bytes, over MaxPacket %d", p.Type, len(b), MaxPacket)
		}
		got, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(%v): %v", p.Type, err)
		}
		p.Version = Version
		if len(p.Payload) == 0 && len(got.Payload) == 0 {
			got.Payload = p.Payload
		}
		if !reflect.DeepEqual(*got, p) {
			t.Fatalf("Parse(Append(%+v)) = %+v", p.Type, got.Type)
		}
		// Every cut-short packet is refused (a MSG or SEND cut inside its
		// payload is a shorter, valid one: the socket's MSG_TRUNC, not the
		// layout, catches that).
		end := len(b)
		if p.Type == TypeSend || p.Type == TypeMsg {
			end = HeaderLen + 1 + len(p.ID)
		}
		for n := 0; n < end; n++ {
			if _, err := Parse(b[:n]); !errors.Is(err, ErrMalformed) {
				t.Fatalf("%v cut to %d of %d bytes: Parse = %v, want ErrMalformed", p.Type, n, len(b), err)
			}
		}
	}
}

func TestCorrupt(t *testing.T) {
	good, _ := Append(nil, &Packet{Type: TypeResult, Seq: 4, Code: CodeOK, Text: "ok"})
	tests := []struct {
		name string
		i    int
		v    byte
	}{
		{"magic 0", 0, 'X'}, {"magic 1", 1, 'X'}, {"version", 2, 2}, {"type 0", 3, 0}, {"type 6", 3, 6},
		{"text length", 10, 9},
	}
	for _, tt := range tests {
		b := append([]byte{}, good...)
		b[tt.i] = tt.v
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Parse = %v, want ErrMalformed", tt.name, err)
		}
	}
	for _, p := range []Packet{{Type: TypeSend, Seq: 0, ID: "a.1"}, {Type: TypeResult, Seq: 0}} {
		b, _ := Append(nil, &p)
		if _, err := Parse(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%v with seq 0: Parse = %v, want ErrMalformed", p.Type, err)
		}
	}
	over := append(append([]byte{Magic0, Magic1, Version, byte(TypeMsg), 0, 0, 0, 0, 3}, "a.1"...), make([]byte, MaxPayload+1)...)
	if _, err := Parse(over); !errors.Is(err, ErrMalformed) {
		t.Errorf("MSG with payload over the limit: Parse = %v, want ErrMalformed", err)
	}
	if _, err := Append(nil, &Packet{Type: TypeSend, Seq: 1, ID: "a.1", Payload: make([]byte, MaxPayload+1)}); err == nil {
		t.Error("Append of a payload over the limit: no error")
	}
}
