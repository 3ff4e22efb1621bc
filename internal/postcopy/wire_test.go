package postcopy

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"strings"
	"testing"
)

const testPS = 4096

type testFrame struct {
	t frameType
	p []byte
}

func sampleFrames() []testFrame {
	page := bytes.Repeat([]byte{0xa5}, 2*testPS)
	var pre [pagesPrefix]byte
	return []testFrame{
		{frameHello, encodeHello(hello{version: Version, pageSize: testPS, prefetch: 16})},
		{frameRequest, encodeRange(42, 0x7f0000001000, 16)},
		{framePages, append(append([]byte(nil), encodePagesPrefix(&pre, 42, 0x7f0000002000)...), page...)},
		{frameZero, encodeRange(42, 0x7f0000004000, 3)},
		{framePushDone, encodeCounts(1000, 24)},
		{frameDone, doneCount(1000)},
		{frameError, []byte("source: out of memory")},
	}
}

func encodeFrames(t *testing.T, frames []testFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw := newFrameWriter(&buf)
	for _, f := range frames {
		if err := fw.write(f.t, f.p, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := fw.flush(); err != nil {
		t.Fatal(err)
	}
	if fw.bytes() != int64(buf.Len()) {
		t.Fatalf("writer counted %d bytes, wrote %d", fw.bytes(), buf.Len())
	}
	return buf.Bytes()
}

func decodeAll(b []byte) ([]testFrame, error) {
	fr := newFrameReader(bytes.NewReader(b))
	var out []testFrame
	for {
		f, err := fr.next(nil)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, testFrame{f.typ, bytes.Clone(f.payload)})
	}
}

func TestFramesRoundTrip(t *testing.T) {
	want := sampleFrames()
	got, err := decodeAll(encodeFrames(t, want))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decoded %d frames differing from the %d written", len(got), len(want))
	}
	pid, addr, pages := decodeRange(got[1].p)
	if pid != 42 || addr != 0x7f0000001000 || pages != 16 {
		t.Errorf("request = pid %d, %#x, %d pages; want 42, 0x7f0000001000, 16", pid, addr, pages)
	}
	pid, addr, data := decodePages(got[2].p)
	if pid != 42 || addr != 0x7f0000002000 || len(data) != 2*testPS {
		t.Errorf("pages = pid %d, %#x, %d bytes", pid, addr, len(data))
	}
}

func TestFramesTruncated(t *testing.T) {
	stream := encodeFrames(t, sampleFrames())
	// Frame boundaries end the stream cleanly; anything else is truncated.
	bounds := map[int]bool{0: true}
	for off := 0; off < len(stream); {
		off += FrameHeaderSize + int(binary.LittleEndian.Uint32(stream[off+4:]))
		bounds[off] = true
	}
	for cut := 0; cut < len(stream); cut++ {
		_, err := decodeAll(stream[:cut])
		if bounds[cut] {
			if err != nil {
				t.Fatalf("cut at frame boundary %d: %v, want a clean end", cut, err)
			}
			continue
		}
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("cut at %d of %d: %v, want ErrTruncated", cut, len(stream), err)
		}
	}
}

func TestFramesCorrupt(t *testing.T) {
	stream := encodeFrames(t, sampleFrames())
	bad := make([]byte, len(stream))
	for i := range stream {
		copy(bad, stream)
		bad[i] ^= 0x01
		if _, err := decodeAll(bad); !errors.Is(err, ErrChecksum) {
			t.Fatalf("byte %d flipped: %v, want ErrChecksum", i, err)
		}
	}
}

// castagnoli is the CRC32C table; the test encodes frames by hand, apart
// from the codec, so that the layout in doc.go is what is checked.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// craftFrame builds a frame with valid checksums whatever it holds.
func craftFrame(t frameType, flags uint8, length uint32, payload []byte) []byte {
	var h [FrameHeaderSize]byte
	h[0], h[1] = byte(t), flags
	binary.LittleEndian.PutUint32(h[4:], length)
	crc := crc32.Update(crc32.Update(0, castagnoli, h[:8]), castagnoli, payload)
	binary.LittleEndian.PutUint32(h[8:], crc)
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(h[:12], castagnoli))
	return append(h[:], payload...)
}

func cf(t frameType, p []byte) []byte { return craftFrame(t, 0, uint32(len(p)), p) }

func TestFramesMalformed(t *testing.T) {
	hi := cf(frameHello, encodeHello(hello{version: Version, pageSize: testPS}))
	var pre [pagesPrefix]byte
	pages := func(addr uint64, n int) []byte {
		return cf(framePages, append(append([]byte(nil), encodePagesPrefix(&pre, 1, addr)...), make([]byte, n)...))
	}
	badMagic := encodeHello(hello{version: Version, pageSize: testPS})
	copy(badMagic, "NOTFERRY")
	tests := []struct {
		name   string
		stream []byte
		want   error
		msg    string
	}{
		{"unknown type", append(hi, cf(9, nil)...), ErrMalformed, "unknown frame type 9"},
		{"flags", append(hi, craftFrame(frameDone, 1, 8, make([]byte, 8))...), ErrMalformed, "reserved header bits"},
		{"too long", append(hi, craftFrame(framePages, 0, MaxPayload+1, nil)...), ErrMalformed, "exceeds"},
		{"no hello", cf(frameDone, make([]byte, 8)), ErrMalformed, "hello frame must come first"},
		{"two hellos", append(hi, hi...), ErrMalformed, "hello frame must come first"},
		{"bad magic", cf(frameHello, badMagic), ErrMalformed, "bad magic"},
		{"newer version", cf(frameHello, encodeHello(hello{version: Version + 1, pageSize: testPS})), ErrVersion, "version 2"},
		{"bad page size", cf(frameHello, encodeHello(hello{version: Version, pageSize: 5000})), ErrMalformed, "page size 5000"},
		{"pages not whole", append(hi, pages(0x1000, 100)...), ErrMalformed, "not 16 bytes plus"},
		{"pages misaligned", append(hi, pages(0x1010, testPS)...), ErrMalformed, "misaligned"},
		{"pages wrap", append(hi, pages(1<<64-testPS, 2*testPS)...), ErrMalformed, "wraps"},
		{"empty request", append(hi, cf(frameRequest, encodeRange(1, 0x1000, 0))...), ErrMalformed, "empty"},
		{"short zero", append(hi, cf(frameZero, make([]byte, 8))...), ErrMalformed, "want 16"},
		{"empty error", append(hi, cf(frameError, nil)...), ErrMalformed, "message length 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeAll(tt.stream)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %v, want %v saying %q", err, tt.want, tt.msg)
			}
		})
	}
}
