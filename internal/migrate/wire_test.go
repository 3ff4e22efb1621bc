package migrate

import (
	"bytes"
	"errors"
	"io"
	"testing"
)

type rwBuf struct{ bytes.Buffer }

func (b *rwBuf) Close() error { return nil }

func frames(t *testing.T) []byte {
	t.Helper()
	var b rwBuf
	c := newConn(&b)
	if err := c.sendJSON(fHello, Hello{Version: wireVersion, Job: "n1-1", Mode: Freeze}); err != nil {
		t.Fatal(err)
	}
	if err := c.send(fImage, true, []byte("image bytes")); err != nil {
		t.Fatal(err)
	}
	if err := c.send(fImageEnd, true); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestWireRoundTrip(t *testing.T) {
	b := &rwBuf{}
	b.Write(frames(t))
	c := newConn(b)
	var h Hello
	if err := c.recvJSON(fHello, &h); err != nil || h.Job != "n1-1" || h.Mode != Freeze {
		t.Fatalf("hello = %+v, %v", h, err)
	}
	got, err := io.ReadAll(&imageReader{c: c})
	if err != nil || string(got) != "image bytes" {
		t.Fatalf("image = %q, %v", got, err)
	}
}

func TestWireDamaged(t *testing.T) {
	good := frames(t)
	cases := []struct {
		name   string
		damage func([]byte) []byte
		want   error
	}{
		{"truncated header", func(b []byte) []byte { return b[:10] }, ErrCorrupt},
		{"truncated payload", func(b []byte) []byte { return b[:frameHeader+3] }, ErrCorrupt},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, ErrCorrupt},
		{"flipped payload byte", func(b []byte) []byte { b[frameHeader+2] ^= 1; return b }, ErrCorrupt},
		{"flipped type", func(b []byte) []byte { b[4] = fImage; return b }, ErrCorrupt},
		{"reserved set", func(b []byte) []byte { b[6] = 1; return b }, ErrCorrupt},
		{"huge length", func(b []byte) []byte { b[11] = 0x7f; return b }, ErrCorrupt},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := &rwBuf{}
			b.Write(tc.damage(bytes.Clone(good)))
			var h Hello
			err := newConn(b).recvJSON(fHello, &h)
			if !errors.Is(err, tc.want) {
				t.Fatalf("recv = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWireOutOfOrder(t *testing.T) {
	b := &rwBuf{}
	newConn(b).send(fImage, true, []byte("x"))
	var h Hello
	if err := newConn(b).recvJSON(fHello, &h); !errors.Is(err, ErrProtocol) {
		t.Fatalf("recv = %v, want ErrProtocol", err)
	}
	b.Reset()
	newConn(b).sendJSON(fAbort, abortMsg{Reason: "disk full"})
	var ae *AbortError
	if err := newConn(b).recvJSON(fHello, &h); !errors.As(err, &ae) || ae.Reason != "disk full" {
		t.Fatalf("recv = %v, want the peer's abort reason", err)
	}
}
