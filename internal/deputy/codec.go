package deputy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The frames' encoding on the link between the nodes, one after the
// other on a stream:
//
//	length u32        the bytes that follow
//	version u8        WireVersion
//	kind u8
//	seq, ack u64
//	stream u32
//	n, target, sig i32
//	status kind u8, code i32, core u8
//	data              the rest (KData only)
//
// All little-endian. A frame that does not decode is an error wrapping
// ErrCorrupt that names what is wrong; the link is then given up.

// WireVersion is the encoding's version.
const WireVersion = 1

// MaxData is the most a data frame carries.
const MaxData = 1 << 20

const headerSize = 1 + 1 + 8 + 8 + 4 + 4 + 4 + 4 + 1 + 4 + 1

// ErrCorrupt is wrapped by errors about frames that do not decode.
var ErrCorrupt = errors.New("corrupt deputy frame")

// AppendFrame appends f's encoding, length first, to b.
func AppendFrame(b []byte, f Frame) []byte {
	var h [4 + headerSize]byte
	binary.LittleEndian.PutUint32(h[0:], uint32(headerSize+len(f.Data)))
	h[4] = WireVersion
	h[5] = byte(f.Kind)
	binary.LittleEndian.PutUint64(h[6:], f.Seq)
	binary.LittleEndian.PutUint64(h[14:], f.Ack)
	binary.LittleEndian.PutUint32(h[22:], uint32(f.Stream))
	binary.LittleEndian.PutUint32(h[26:], uint32(int32(f.N)))
	binary.LittleEndian.PutUint32(h[30:], uint32(int32(f.Target)))
	binary.LittleEndian.PutUint32(h[34:], uint32(int32(f.Sig)))
	h[38] = byte(f.Status.Kind)
	binary.LittleEndian.PutUint32(h[39:], uint32(int32(f.Status.Code)))
	if f.Status.Core {
		h[43] = 1
	}
	b = append(b, h[:]...)
	return append(b, f.Data...)
}

// ReadFrame reads one frame from r.
func ReadFrame(r io.Reader) (Frame, error) {
	var l [4]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return Frame{}, err
	}
	n := binary.LittleEndian.Uint32(l[:])
	if n < headerSize || n > headerSize+MaxData {
		return Frame{}, fmt.Errorf("frame of %d bytes: %w", n, ErrCorrupt)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return DecodeFrame(b)
}

// DecodeFrame decodes a frame without its length.
func DecodeFrame(b []byte) (Frame, error) {
	if len(b) < headerSize {
		return Frame{}, fmt.Errorf("frame of %d bytes, shorter than its header: %w", len(b), ErrCorrupt)
	}
	if b[0] != WireVersion {
		return Frame{}, fmt.Errorf("frame of version %d, want %d: %w", b[0], WireVersion, ErrCorrupt)
	}
	f := Frame{
		Kind:   Kind(b[1]),
		Seq:    binary.LittleEndian.Uint64(b[2:]),
		Ack:    binary.LittleEndian.Uint64(b[10:]),
		Stream: StreamID(binary.LittleEndian.Uint32(b[18:])),
		N:      int(int32(binary.LittleEndian.Uint32(b[22:]))),
		Target: int(int32(binary.LittleEndian.Uint32(b[26:]))),
		Sig:    int(int32(binary.LittleEndian.Uint32(b[30:]))),
		Status: Status{Kind: StatusKind(b[34]), Code: int(int32(binary.LittleEndian.Uint32(b[35:]))), Core: b[39] == 1},
	}
	if b[39] > 1 {
		return Frame{}, fmt.Errorf("core flag %d: %w", b[39], ErrCorrupt)
	}
	if data := b[headerSize:]; len(data) > 0 {
		if f.Kind != KData {
			return Frame{}, fmt.Errorf("%s frame with %d bytes of data: %w", f.Kind, len(data), ErrCorrupt)
		}
		f.Data = data
	}
	switch f.Kind {
	case KHello, KAck:
		if f.Seq != 0 {
			return Frame{}, fmt.Errorf("%s frame numbered %d: %w", f.Kind, f.Seq, ErrCorrupt)
		}
		return f, nil
	case KData, KCredit, KEof, KGone:
		if f.Kind == KData && len(f.Data) == 0 {
			return Frame{}, fmt.Errorf("data frame without data: %w", ErrCorrupt)
		}
		if f.Kind == KCredit && f.N <= 0 {
			return Frame{}, fmt.Errorf("credit of %d: %w", f.N, ErrCorrupt)
		}
	case KSignal:
		if f.Sig < 1 || f.Sig > 64 || f.Target < 0 {
			return Frame{}, fmt.Errorf("signal %d to %d: %w", f.Sig, f.Target, ErrCorrupt)
		}
	case KStatus:
		s := f.Status
		if s.Kind < Exited || s.Kind > Continued || (s.Kind == Exited && (s.Code < 0 || s.Code > 255)) ||
			(s.Kind != Exited && (s.Code < 1 || s.Code > 64)) {
			return Frame{}, fmt.Errorf("status %v: %w", s, ErrCorrupt)
		}
	default:
		return Frame{}, fmt.Errorf("kind %d: %w", f.Kind, ErrCorrupt)
	}
	if f.Seq == 0 {
		return Frame{}, fmt.Errorf("%s frame without a number: %w", f.Kind, ErrCorrupt)
	}
	return f, nil
}
