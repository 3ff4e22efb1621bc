package postcopy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"

	framing "ferry/internal/frame"
)

// The byte layout below is documented in doc.go; keep the two in step.

// Protocol constants.
const (
	// Magic opens every hello frame.
	Magic = "FERRYPCP"
	// Version is the protocol version this package speaks, and the newest
	// it accepts.
	Version uint32 = 1
	// FrameHeaderSize is the size of a frame header.
	FrameHeaderSize = framing.HeaderSize
	// MaxPayload caps one frame's payload; a longer one is refused before
	// anything is allocated for it.
	MaxPayload = 4 << 20
	// maxErrorLen caps an error frame's message.
	maxErrorLen = 4096
)

// frameType identifies a frame's payload layout.
type frameType uint8

const (
	frameHello    frameType = 1 // both ways, first
	frameRequest  frameType = 2 // destination → source
	framePages    frameType = 3 // source → destination
	frameZero     frameType = 4 // source → destination
	framePushDone frameType = 5 // source → destination
	frameDone     frameType = 6 // destination → source
	frameError    frameType = 7 // both ways, last
)

func (t frameType) String() string {
	switch t {
	case frameHello:
		return "hello"
	case frameRequest:
		return "request"
	case framePages:
		return "pages"
	case frameZero:
		return "zero"
	case framePushDone:
		return "push-done"
	case frameDone:
		return "done"
	case frameError:
		return "error"
	}
	return fmt.Sprintf("type %d", uint8(t))
}

// Payload sizes.
const (
	helloSize    = 24 // magic, version, page size, prefetch, reserved
	rangeSize    = 16 // pid u32, pages u32, address u64 (request, zero)
	pagesPrefix  = 16 // pid u32, reserved u32, address u64
	pushDoneSize = 16 // data pages u64, zero pages u64
	doneSize     = 8  // pages copied u64
)

// Sentinel errors of the wire format; decoding errors wrap one of them.
var (
	// ErrChecksum: a frame header or payload does not match its CRC.
	ErrChecksum = errors.New("postcopy: checksum mismatch")
	// ErrTruncated: the stream ended inside a frame.
	ErrTruncated = errors.New("postcopy: truncated frame")
	// ErrMalformed: checksums match but the frame makes no sense here.
	ErrMalformed = errors.New("postcopy: malformed frame")
	// ErrVersion: the peer speaks a newer protocol version.
	ErrVersion = errors.New("postcopy: unsupported protocol version")
)

// frameWriter encodes frames onto a buffered stream. Not safe for
// concurrent use.
type frameWriter struct {
	bw *bufio.Writer
	fw *framing.Writer
}

func newFrameWriter(w io.Writer) *frameWriter {
	bw := bufio.NewWriterSize(w, 256<<10)
	return &frameWriter{bw: bw, fw: framing.NewWriter(bw, MaxPayload)}
}

// write writes one frame whose payload is prefix followed by data; data
// goes to the stream from the caller's slice.
func (fw *frameWriter) write(t frameType, prefix, data []byte) error {
	err := fw.fw.Write(uint16(t), 0, prefix, data)
	if se := (*framing.SizeError)(nil); errors.As(err, &se) {
		return fmt.Errorf("postcopy: %s frame of %d bytes exceeds %d", t, se.Len, se.Max)
	}
	return err
}

// bytes is how many frame bytes were written.
func (fw *frameWriter) bytes() int64 { return fw.fw.Bytes }

func (fw *frameWriter) flush() error { return fw.bw.Flush() }

// frameReader decodes frames. Not safe for concurrent use.
type frameReader struct {
	fr       *framing.Reader
	off      int64 // stream offset of the next frame
	index    int   // index of the next frame
	pageSize int   // 0 until the peer's hello was read
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{fr: framing.NewReader(bufio.NewReaderSize(r, 512<<10), MaxPayload)}
}

// frame is one decoded frame; payload is the caller's buffer (see next).
type frame struct {
	typ     frameType
	payload []byte
	size    int // header and payload bytes on the stream
}

// frameErr describes bad input at the current frame.
func (fr *frameReader) frameErr(kind error, t frameType, format string, args ...any) error {
	where := fmt.Sprintf("frame %d at offset %d", fr.index, fr.off)
	if t != 0 {
		where = fmt.Sprintf("frame %d (%s) at offset %d", fr.index, t, fr.off)
	}
	return fmt.Errorf("%w: %s: %s", kind, where, fmt.Sprintf(format, args...))
}

// next reads one frame, its payload into buf (grown when too small). It
// returns io.EOF only at a frame boundary.
func (fr *frameReader) next(buf []byte) (frame, error) {
	var t frameType
	h, p, err := fr.fr.Next(buf, func(h framing.Header) error {
		// Version 1's header is type (u8), flags (u8), reserved (u16):
		// the shared layout's kind and flags.
		t = frameType(h.Kind)
		return fr.checkHeader(t, uint8(h.Kind>>8), h.Flags, h.Len)
	})
	if err != nil {
		return frame{}, fr.readErr(err, frameType(h.Kind))
	}
	if err := fr.checkPayload(t, p); err != nil {
		return frame{}, err
	}
	f := frame{typ: t, payload: p, size: framing.HeaderSize + len(p)}
	fr.off += int64(f.size)
	fr.index++
	return f, nil
}

// readErr turns the shared codec's errors into this format's.
func (fr *frameReader) readErr(err error, t frameType) error {
	var ce *framing.ChecksumError
	var te *framing.TruncatedError
	var se *framing.SizeError
	switch {
	case errors.As(err, &ce) && ce.What == "header":
		return fr.frameErr(ErrChecksum, 0, "%v", err)
	case errors.As(err, &ce):
		return fr.frameErr(ErrChecksum, t, "%v", err)
	case errors.As(err, &te) && te.What == "header":
		return fr.frameErr(ErrTruncated, 0, "header has %d of %d bytes", te.Got, te.Want)
	case errors.As(err, &te):
		return fr.frameErr(ErrTruncated, t, "payload has %d of %d bytes", te.Got, te.Want)
	case errors.As(err, &se):
		return fr.frameErr(ErrMalformed, t, "payload length %d exceeds %d", se.Len, se.Max)
	}
	return err
}

// checkHeader refuses, before the payload is read, a frame whose type,
// flags or length cannot be right.
func (fr *frameReader) checkHeader(t frameType, flags uint8, reserved uint16, size uint32) error {
	if t < frameHello || t > frameError {
		return fr.frameErr(ErrMalformed, 0, "unknown frame type %d", uint8(t))
	}
	if flags != 0 || reserved != 0 {
		return fr.frameErr(ErrMalformed, t, "reserved header bits are set (%#x, %#x)", flags, reserved)
	}
	if (fr.index == 0) != (t == frameHello) {
		return fr.frameErr(ErrMalformed, t, "the hello frame must come first, and once")
	}
	want := -1
	switch t {
	case frameHello:
		want = helloSize
	case frameRequest, frameZero:
		want = rangeSize
	case framePushDone:
		want = pushDoneSize
	case frameDone:
		want = doneSize
	case framePages:
		ps := uint32(fr.pageSize)
		if size < pagesPrefix+ps || (size-pagesPrefix)%ps != 0 {
			return fr.frameErr(ErrMalformed, t, "payload length %d is not %d bytes plus a positive multiple of the %d-byte page size", size, pagesPrefix, ps)
		}
	case frameError:
		if size == 0 || size > maxErrorLen {
			return fr.frameErr(ErrMalformed, t, "message length %d not in [1, %d]", size, maxErrorLen)
		}
	}
	if want >= 0 && size != uint32(want) {
		return fr.frameErr(ErrMalformed, t, "payload length %d, want %d", size, want)
	}
	return nil
}

// checkPayload validates what the header checks could not.
func (fr *frameReader) checkPayload(t frameType, p []byte) error {
	switch t {
	case frameHello:
		h, err := decodeHello(p)
		if err != nil {
			return fr.frameErr(err, t, "%v", err)
		}
		fr.pageSize = int(h.pageSize)
	case frameRequest, frameZero:
		_, addr, pages := decodeRange(p)
		if err := checkRange(addr, uint64(pages), fr.pageSize); err != nil {
			return fr.frameErr(ErrMalformed, t, "%v", err)
		}
	case framePages:
		if binary.LittleEndian.Uint32(p[4:]) != 0 {
			return fr.frameErr(ErrMalformed, t, "reserved field is set")
		}
		addr := binary.LittleEndian.Uint64(p[8:])
		if err := checkRange(addr, uint64((len(p)-pagesPrefix)/fr.pageSize), fr.pageSize); err != nil {
			return fr.frameErr(ErrMalformed, t, "%v", err)
		}
	}
	return nil
}

func checkRange(addr, pages uint64, pageSize int) error {
	ps := uint64(pageSize)
	hi, lo := bits.Mul64(pages, ps)
	_, carry := bits.Add64(addr, lo, 0)
	if pages == 0 || addr%ps != 0 || hi != 0 || carry != 0 {
		return fmt.Errorf("range %#x+%d pages is empty, misaligned or wraps", addr, pages)
	}
	return nil
}

// hello is the first frame each side sends.
type hello struct {
	version  uint32
	pageSize uint32
	prefetch uint32 // source: pages sent for each requested page; destination: 0
}

func encodeHello(h hello) []byte {
	p := make([]byte, 0, helloSize)
	p = append(p, Magic...)
	p = binary.LittleEndian.AppendUint32(p, h.version)
	p = binary.LittleEndian.AppendUint32(p, h.pageSize)
	p = binary.LittleEndian.AppendUint32(p, h.prefetch)
	return binary.LittleEndian.AppendUint32(p, 0)
}

func decodeHello(p []byte) (hello, error) {
	if string(p[:8]) != Magic {
		return hello{}, fmt.Errorf("%w: bad magic %q: not a ferry postcopy stream", ErrMalformed, p[:8])
	}
	h := hello{version: binary.LittleEndian.Uint32(p[8:]), pageSize: binary.LittleEndian.Uint32(p[12:]),
		prefetch: binary.LittleEndian.Uint32(p[16:])}
	switch {
	case h.version == 0 || h.version > Version:
		return hello{}, fmt.Errorf("%w: peer speaks version %d, this side %d", ErrVersion, h.version, Version)
	case h.pageSize < 4096 || h.pageSize > 1<<20 || bits.OnesCount32(h.pageSize) != 1:
		return hello{}, fmt.Errorf("%w: page size %d", ErrMalformed, h.pageSize)
	case binary.LittleEndian.Uint32(p[20:]) != 0:
		return hello{}, fmt.Errorf("%w: reserved hello field is set", ErrMalformed)
	}
	return h, nil
}

func encodeRange(pid int, addr uint64, pages int) []byte {
	p := make([]byte, 0, rangeSize)
	p = binary.LittleEndian.AppendUint32(p, uint32(pid))
	p = binary.LittleEndian.AppendUint32(p, uint32(pages))
	return binary.LittleEndian.AppendUint64(p, addr)
}

func decodeRange(p []byte) (pid int, addr uint64, pages int) {
	return int(binary.LittleEndian.Uint32(p[0:])), binary.LittleEndian.Uint64(p[8:]), int(binary.LittleEndian.Uint32(p[4:]))
}

func encodePagesPrefix(b *[pagesPrefix]byte, pid int, addr uint64) []byte {
	binary.LittleEndian.PutUint32(b[0:], uint32(pid))
	binary.LittleEndian.PutUint32(b[4:], 0)
	binary.LittleEndian.PutUint64(b[8:], addr)
	return b[:]
}

func decodePages(p []byte) (pid int, addr uint64, data []byte) {
	return int(binary.LittleEndian.Uint32(p[0:])), binary.LittleEndian.Uint64(p[8:]), p[pagesPrefix:]
}

func encodeCounts(a, b uint64) []byte {
	return binary.LittleEndian.AppendUint64(binary.LittleEndian.AppendUint64(nil, a), b)
}

// doneCount encodes the done frame's payload.
func doneCount(pages uint64) []byte { return binary.LittleEndian.AppendUint64(nil, pages) }
