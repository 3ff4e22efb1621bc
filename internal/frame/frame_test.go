package frame

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"testing"
)

// crafted builds a frame by hand from the layout in the package comment,
// apart from Encode, so the tests check the documented bytes.
func crafted(kind, flags uint16, length uint32, payload []byte) []byte {
	tab := crc32.MakeTable(crc32.Castagnoli)
	h := make([]byte, HeaderSize)
	binary.LittleEndian.PutUint16(h[0:], kind)
	binary.LittleEndian.PutUint16(h[2:], flags)
	binary.LittleEndian.PutUint32(h[4:], length)
	crc := crc32.Update(0, tab, h[:8])
	if flags&FlagHeaderOnly == 0 {
		crc = crc32.Update(crc, tab, payload)
	}
	binary.LittleEndian.PutUint32(h[8:], crc)
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(h[:12], tab))
	return append(h, payload...)
}

type testFrame struct {
	kind, flags uint16
	parts       [][]byte
}

var sample = []testFrame{
	{1, 0, [][]byte{[]byte(`{"job":"n1-1"}`)}},
	{3, 0, [][]byte{{1, 2, 3, 4}, bytes.Repeat([]byte{0xab}, 4096)}},
	{4, FlagHeaderOnly, [][]byte{[]byte("carried unchecked")}},
	{5, 0, nil},
	{0x1234, 0x8000, [][]byte{[]byte("kinds and flags are the format's")}},
}

func encodeAll(t testing.TB, frames []testFrame) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := bufio.NewWriter(&buf)
	w := NewWriter(bw, 1<<20)
	for _, f := range frames {
		if err := w.Write(f.kind, f.flags, f.parts...); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if w.Bytes != int64(buf.Len()) {
		t.Fatalf("Writer.Bytes = %d, wrote %d", w.Bytes, buf.Len())
	}
	return buf.Bytes()
}

// decodeAll reads frames until the end of b.
func decodeAll(b []byte, max uint32) ([]Header, [][]byte, error) {
	r := NewReader(bytes.NewReader(b), max)
	var hs []Header
	var ps [][]byte
	for {
		h, p, err := r.Next(nil, nil)
		if err == io.EOF {
			return hs, ps, nil
		}
		if err != nil {
			return hs, ps, err
		}
		hs = append(hs, h)
		ps = append(ps, bytes.Clone(p))
	}
}

func TestRoundTrip(t *testing.T) {
	stream := encodeAll(t, sample)
	var want []byte
	for _, f := range sample {
		want = append(want, crafted(f.kind, f.flags, uint32(len(bytes.Join(f.parts, nil))), bytes.Join(f.parts, nil))...)
	}
	if !bytes.Equal(stream, want) {
		t.Fatalf("Writer output differs from the documented layout:\n got %x\nwant %x", stream, want)
	}
	hs, ps, err := decodeAll(stream, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != len(sample) {
		t.Fatalf("read %d frames, want %d", len(hs), len(sample))
	}
	for i, f := range sample {
		if hs[i].Kind != f.kind || hs[i].Flags != f.flags || !bytes.Equal(ps[i], bytes.Join(f.parts, nil)) {
			t.Errorf("frame %d = kind %d flags %#x %q, want %d %#x %q", i, hs[i].Kind, hs[i].Flags, ps[i], f.kind, f.flags, bytes.Join(f.parts, nil))
		}
	}
}

func TestTruncated(t *testing.T) {
	stream := encodeAll(t, sample)
	bounds := map[int]bool{}
	for off := 0; off <= len(stream); {
		bounds[off] = true
		if off == len(stream) {
			break
		}
		off += HeaderSize + int(binary.LittleEndian.Uint32(stream[off+4:]))
	}
	for cut := 0; cut < len(stream); cut++ {
		_, _, err := decodeAll(stream[:cut], 1<<20)
		var te *TruncatedError
		switch {
		case bounds[cut] && err != nil:
			t.Fatalf("cut at frame boundary %d: %v, want a clean end", cut, err)
		case !bounds[cut] && (!errors.Is(err, ErrTruncated) || !errors.As(err, &te)):
			t.Fatalf("cut at %d of %d: %v, want ErrTruncated", cut, len(stream), err)
		}
	}
}

// TestCorrupt flips every bit of the stream: each flip is refused as a
// checksum mismatch, or (a flip in a length that still passes the header
// CRC cannot happen: the header CRC covers the length) never accepted.
// Payload bits of the header-only frame are the one exception: nobody
// checks them here, by design.
func TestCorrupt(t *testing.T) {
	stream := encodeAll(t, sample)
	unchecked := map[int]bool{}
	for off, i := 0, 0; off < len(stream); i++ {
		n := int(binary.LittleEndian.Uint32(stream[off+4:]))
		if sample[i].flags&FlagHeaderOnly != 0 {
			for j := off + HeaderSize; j < off+HeaderSize+n; j++ {
				unchecked[j] = true
			}
		}
		off += HeaderSize + n
	}
	bad := make([]byte, len(stream))
	for i := range stream {
		for bit := 0; bit < 8; bit++ {
			copy(bad, stream)
			bad[i] ^= 1 << bit
			_, _, err := decodeAll(bad, 1<<20)
			if unchecked[i] {
				if err != nil {
					t.Fatalf("bit %d of byte %d (header-only payload) flipped: %v, want it carried", bit, i, err)
				}
				continue
			}
			if !errors.Is(err, ErrChecksum) {
				t.Fatalf("bit %d of byte %d flipped: %v, want ErrChecksum", bit, i, err)
			}
		}
	}
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		max    uint32
		want   error
		msg    string
	}{
		{"at the limit", crafted(1, 0, 8, make([]byte, 8)), 8, nil, ""},
		{"over the limit", crafted(1, 0, 9, make([]byte, 9)), 8, ErrTooLarge, "payload length 9 exceeds the 8-byte limit"},
		{"4 GiB, no payload", crafted(7, 0, 0xffffffff, nil), 1 << 20, ErrTooLarge, "payload length 4294967295 exceeds the 1048576-byte limit"},
		{"length lies, stream short", crafted(1, 0, 1000, []byte("x")), 1 << 20, ErrTruncated, "payload has 1 of 1000 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeAll(tt.stream, tt.max)
			if !errors.Is(err, tt.want) || (tt.want != nil && !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("decode = %v, want %v saying %q", err, tt.want, tt.msg)
			}
			var se *SizeError
			if tt.want == ErrTooLarge && (!errors.As(err, &se) || se.Kind != binary.LittleEndian.Uint16(tt.stream)) {
				t.Errorf("error %v is no *SizeError naming kind %d", err, binary.LittleEndian.Uint16(tt.stream))
			}
		})
	}

	// The writer refuses what a reader would, before writing anything.
	var buf bytes.Buffer
	w := NewWriter(&buf, 8)
	if err := w.Write(1, 0, make([]byte, 5), make([]byte, 4)); !errors.Is(err, ErrTooLarge) || buf.Len() != 0 {
		t.Errorf("Write of 9 bytes with limit 8 = %v, wrote %d bytes; want ErrTooLarge, nothing", err, buf.Len())
	}
}

// TestCheckRefuses: the format's check sees the header before the
// payload is read and its error comes back as is.
func TestCheckRefuses(t *testing.T) {
	errKind := errors.New("unknown kind")
	r := NewReader(bytes.NewReader(crafted(9, 0, 4, []byte("abcd"))), 16)
	var seen Header
	_, _, err := r.Next(nil, func(h Header) error { seen = h; return errKind })
	if err != errKind || seen.Kind != 9 || seen.Len != 4 {
		t.Fatalf("Next = %v after check saw %+v, want the check's error after kind 9, length 4", err, seen)
	}
}

func streamHeader(magic string, version, flags uint32) []byte {
	var h [StreamHeaderSize]byte
	PutStreamHeader(&h, magic, version, flags)
	return h[:]
}

func TestStreamHeader(t *testing.T) {
	const magic = "FERRYTST"
	good := streamHeader(magic, 2, 5)
	badCRC := bytes.Clone(good)
	badCRC[17] ^= 1
	tests := []struct {
		name   string
		in     []byte
		want   error
		msg    string
		gotLen int
	}{
		{"good", good, nil, "", StreamHeaderSize},
		{"older version", streamHeader(magic, 1, 0), nil, "", StreamHeaderSize},
		{"empty", nil, ErrTruncated, "header has 0 of 20 bytes", 0},
		{"magic prefix only", []byte("FERR"), ErrTruncated, "header has 4 of 20 bytes", 4},
		{"other magic prefix", []byte("FMIG"), ErrBadMagic, `"FMIG", want "FERRYTST"`, 4},
		{"other magic", streamHeader("FERRYIMG", 1, 0), ErrBadMagic, `"FERRYIMG"`, 12},
		{"newer version", streamHeader(magic, 3, 0), ErrVersion, "format version 3 is newer than this reader's 2", 12},
		{"version 0", streamHeader(magic, 0, 0), ErrVersion, "version 0", StreamHeaderSize},
		{"bad checksum", badCRC, ErrChecksum, "header checksum mismatch", StreamHeaderSize},
		{"cut in the checksum", good[:18], ErrTruncated, "header has 18 of 20 bytes", 18},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, flags, n, err := ReadStreamHeader(bytes.NewReader(tt.in), magic, 2)
			if !errors.Is(err, tt.want) || (tt.want != nil && !strings.Contains(err.Error(), tt.msg)) {
				t.Fatalf("ReadStreamHeader = %v, want %v saying %q", err, tt.want, tt.msg)
			}
			if n != tt.gotLen {
				t.Errorf("read %d bytes, want %d", n, tt.gotLen)
			}
			if tt.want == nil && (v != binary.LittleEndian.Uint32(tt.in[8:]) || flags != binary.LittleEndian.Uint32(tt.in[12:])) {
				t.Errorf("version %d flags %d, want those of %x", v, flags, tt.in)
			}
		})
	}
	if StreamHeaderCRC(good) != binary.LittleEndian.Uint32(good[16:]) {
		t.Errorf("StreamHeaderCRC differs from the stored CRC")
	}
}

// FuzzReader: no input makes the reader panic or allocate past its
// limit, and every frame it accepts re-encodes to the bytes it came from.
func FuzzReader(f *testing.F) {
	f.Add(encodeAll(f, sample))
	f.Add(crafted(1, 0, 0xffffffff, nil))
	f.Add(crafted(2, FlagHeaderOnly, 3, []byte("abc")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 1 << 16
		r := NewReader(bytes.NewReader(b), max)
		off := 0
		for {
			h, p, err := r.Next(nil, nil)
			if err != nil {
				if err != io.EOF && !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrChecksum) && !errors.Is(err, ErrTooLarge) {
					t.Fatalf("error %v wraps no sentinel", err)
				}
				return
			}
			if h.Len > max || int(h.Len) != len(p) {
				t.Fatalf("accepted length %d (payload %d) past limit %d", h.Len, len(p), max)
			}
			var hdr [HeaderSize]byte
			Encode(&hdr, h.Kind, h.Flags, p)
			if !bytes.Equal(hdr[:], b[off:off+HeaderSize]) {
				t.Fatalf("frame at %d re-encodes to %x, read %x", off, hdr, b[off:off+HeaderSize])
			}
			off += HeaderSize + len(p)
		}
	})
}
