package migrate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"

	"ferry/internal/frame"
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
	const f0 = frame.StreamHeaderSize // the hello frame's header
	setLen := func(b []byte, n uint32) []byte {
		// A length the header CRC vouches for: only the limit refuses it.
		binary.LittleEndian.PutUint32(b[f0+4:], n)
		binary.LittleEndian.PutUint32(b[f0+12:], crc32.Checksum(b[f0:f0+12], crc32.MakeTable(crc32.Castagnoli)))
		return b
	}
	cases := []struct {
		name   string
		damage func([]byte) []byte
		msg    string
	}{
		{"truncated stream header", func(b []byte) []byte { return b[:10] }, "truncated: header has 10 of 20"},
		{"truncated frame header", func(b []byte) []byte { return b[:f0+10] }, "frame header cut short"},
		{"truncated payload", func(b []byte) []byte { return b[:f0+frameHeader+3] }, "hello frame cut short after 3 bytes"},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return b }, "bad magic"},
		{"version 1 peer", func(b []byte) []byte { return append([]byte("FMIG\x01\x00\x00\x00"), b[f0:]...) }, `a version 1 peer sends "FMIG"`},
		{"newer version", func(b []byte) []byte {
			var h [frame.StreamHeaderSize]byte
			frame.PutStreamHeader(&h, wireMagic, wireVersion+1, 0)
			return append(h[:], b[f0:]...)
		}, "version 3 is newer than this reader's 2"},
		{"stream header flags", func(b []byte) []byte {
			var h [frame.StreamHeaderSize]byte
			frame.PutStreamHeader(&h, wireMagic, wireVersion, 1)
			return append(h[:], b[f0:]...)
		}, "unknown flags 0x1"},
		{"flipped stream header byte", func(b []byte) []byte { b[13] ^= 1; return b }, "header checksum mismatch"},
		{"flipped payload byte", func(b []byte) []byte { b[f0+frameHeader+2] ^= 1; return b }, "hello frame: payload checksum mismatch"},
		{"flipped type", func(b []byte) []byte { b[f0] = fImage; return b }, "frame header checksum mismatch"},
		{"flipped length", func(b []byte) []byte { b[f0+5] ^= 0x10; return b }, "header checksum mismatch"},
		{"oversized length", func(b []byte) []byte { return setLen(b, MaxFrame+1) }, "hello frame of 8388609 bytes exceeds the 8388608 limit"},
		{"4 GiB length", func(b []byte) []byte { return setLen(b, 0xffffffff) }, "exceeds the 8388608 limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := &rwBuf{}
			b.Write(tc.damage(bytes.Clone(good)))
			var h Hello
			err := newConn(b).recvJSON(fHello, &h)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("recv = %v, want ErrCorrupt saying %q", err, tc.msg)
			}
		})
	}
}

// TestWireFlags: only image frames skip the payload CRC, and a frame
// claiming to be header-only when it is not is refused.
func TestWireFlags(t *testing.T) {
	var b rwBuf
	c := newConn(&b)
	if err := c.send(fImage, true, []byte("image bytes")); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	if got := binary.LittleEndian.Uint16(raw[frame.StreamHeaderSize+2:]); got != frame.FlagHeaderOnly {
		t.Fatalf("image frame flags = %#x, want FlagHeaderOnly", got)
	}
	// A control frame with the flag set, its header CRC made good.
	var h [frame.HeaderSize]byte
	frame.Encode(&h, uint16(fHello), frame.FlagHeaderOnly, []byte("{}"))
	var s [frame.StreamHeaderSize]byte
	frame.PutStreamHeader(&s, wireMagic, wireVersion, 0)
	in := &rwBuf{}
	in.Write(s[:])
	in.Write(h[:])
	in.Write([]byte("{}"))
	var hello Hello
	if err := newConn(in).recvJSON(fHello, &hello); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "flags 0x1") {
		t.Fatalf("recv = %v, want ErrCorrupt about the flags", err)
	}
}

// TestWireClosed: a peer that hangs up before saying anything is io.EOF,
// not a corrupt stream.
func TestWireClosed(t *testing.T) {
	if _, _, err := newConn(&rwBuf{}).recv(nil); err != io.EOF {
		t.Fatalf("recv on an empty stream = %v, want io.EOF", err)
	}
	b := &rwBuf{}
	b.Write(frames(t)[:frame.StreamHeaderSize])
	if _, _, err := newConn(b).recv(nil); err != io.EOF {
		t.Fatalf("recv after the stream header only = %v, want io.EOF", err)
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
