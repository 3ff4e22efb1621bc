package msgtest_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"ferry/msg/msgtest"
	"ferry/msg/wire"
)

// rawConn connects to s without the client library and reads its HELLO.
func rawConn(t *testing.T, s *msgtest.Server) *net.UnixConn {
	t.Helper()
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: s.Path(), Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if p := read(t, c); p.Type != wire.TypeHello || p.MaxPayload != wire.MaxPayload {
		t.Fatalf("first packet %+v, want HELLO", p)
	}
	return c
}

func read(t *testing.T, c *net.UnixConn) *wire.Packet {
	t.Helper()
	buf := make([]byte, wire.MaxPacket)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	p, err := wire.Parse(buf[:n])
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestServerAnswers checks the rules a node's server side follows for
// what a process may send it.
func TestServerAnswers(t *testing.T) {
	send := func(seq uint32, id string, n int) []byte {
		b := append([]byte{wire.Magic0, wire.Magic1, wire.Version, byte(wire.TypeSend), byte(seq), 0, 0, 0, byte(len(id))}, id...)
		return append(b, make([]byte, n)...)
	}
	tests := []struct {
		name   string
		pkt    []byte
		typ    wire.Type
		seq    uint32
		code   wire.Code
		text   string
		closes bool
	}{
		{"too big: detected by MSG_TRUNC", send(5, "t1-1.1", wire.MaxPayload+300), wire.TypeResult, 5, wire.CodeTooBig, "payload over", false},
		{"payload over the limit", send(6, "t1-1.1", wire.MaxPayload+1), wire.TypeResult, 6, wire.CodeMalformed, "payload of 65537", false},
		{"bad destination", send(7, "nodot", 1), wire.TypeResult, 7, wire.CodeMalformed, "destination", false},
		{"unknown destination", send(8, "t9-9.9", 1), wire.TypeResult, 8, wire.CodeUnknownID, "unknown id t9-9.9", false},
		{"id length", append(send(9, "a.1", 0)[:8], 40, 'a'), wire.TypeResult, 9, wire.CodeMalformed, "id length", false},
		{"garbage", []byte("hello there"), wire.TypeError, 0, wire.CodeMalformed, "magic", true},
		{"version", []byte{'F', 'M', 2, 2, 1, 0, 0, 0}, wire.TypeError, 1, wire.CodeVersion, "version 2", true},
		{"not a SEND", []byte{'F', 'M', 1, byte(wire.TypeResult), 1, 0, 0, 0, 0, 0, 0, 0}, wire.TypeError, 1, wire.CodeMalformed, "RESULT from a process", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := msgtest.New(t, msgtest.Config{})
			c := rawConn(t, s)
			if _, err := c.Write(tt.pkt); err != nil {
				t.Fatal(err)
			}
			p := read(t, c)
			if p.Type != tt.typ || p.Seq != tt.seq || p.Code != tt.code || !strings.Contains(p.Text, tt.text) {
				t.Fatalf("answer %v seq %d %v %q; want %v seq %d %v saying %q", p.Type, p.Seq, p.Code, p.Text, tt.typ, tt.seq, tt.code, tt.text)
			}
			if !tt.closes {
				return
			}
			if n, err := c.Read(make([]byte, 16)); n != 0 || err != nil && !strings.Contains(err.Error(), "EOF") {
				t.Fatalf("after ERROR: read %d, %v; want the connection closed", n, err)
			}
		})
	}
}
