// Package frame is the framing ferry's checksummed formats share: the
// image record stream (package image), the migration protocol (package
// migrate) and the postcopy protocol (package postcopy). Each of them is
// a sequence of frames — a kind, a length, a payload and two CRCs — and
// what a kind means, which flags exist and what a payload holds belongs
// to the format, not here.
//
// What belongs here: encoding and checking frame headers and payload
// checksums, the size limit a reader enforces before it allocates
// anything, and the versioned stream header that opens a stream (used by
// image and migrate). What does not: kinds, payload layouts, ordering
// rules, and the formats' own error types, which wrap what this package
// reports with their record or frame index and offset.
//
// # Frame layout
//
// All integers are little-endian. CRC32C is CRC-32 with the Castagnoli
// polynomial (hash/crc32, hardware-accelerated on amd64 and arm64).
//
//	offset size  field
//	0      2     kind (u16), defined by the format; 0 is never valid
//	2      2     flags (u16), defined by the format except FlagHeaderOnly
//	4      4     payload length (u32), at most the reader's limit
//	8      4     payload CRC32C: over header bytes 0..7, then the payload
//	             (with FlagHeaderOnly: over header bytes 0..7 only)
//	12     4     header CRC32C: over header bytes 0..11
//	16     n     payload
//
// The header CRC lets a reader trust the kind and length before it reads
// or allocates anything for the payload; a length above the reader's
// limit is refused (ErrTooLarge) even when its header CRC matches.
// Postcopy's frames (version 1), whose header was specified as type (u8),
// flags (u8, 0) and reserved (u16, 0), are this layout with a kind below
// 256 and no flags.
//
// # Stream header
//
// A stream that needs one opens with 20 bytes:
//
//	offset size  field
//	0      8     magic, naming the format ("FERRYIMG", "FERRYMIG")
//	8      4     format version (u32)
//	12     4     flags (u32), defined by the format
//	16     4     CRC32C of bytes 0..15
//
// A reader checks the magic, then refuses a version newer than its own
// before anything else, since the rest of the stream belongs to that
// version.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Sizes.
const (
	// HeaderSize is the size of a frame header.
	HeaderSize = 16
	// StreamHeaderSize is the size of a stream header.
	StreamHeaderSize = 20
	// MagicSize is the length of a stream header's magic.
	MagicSize = 8
)

// FlagHeaderOnly says the payload CRC covers the header alone: the
// payload is checked by the format it carries (migrate's image frames
// carry an image stream, which checksums every record itself). Formats
// that do not define it refuse it like any other unknown flag.
const FlagHeaderOnly uint16 = 1

// Castagnoli is the CRC32C table every format uses.
var Castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Sentinel errors; every error this package returns for bad input wraps
// exactly one of them.
var (
	// ErrChecksum: a header or payload does not match its CRC.
	ErrChecksum = errors.New("checksum mismatch")
	// ErrTooLarge: a frame's length is over the reader's limit.
	ErrTooLarge = errors.New("frame too large")
	// ErrTruncated: the stream ended inside a header or payload.
	ErrTruncated = errors.New("truncated")
	// ErrBadMagic: a stream header with another format's magic.
	ErrBadMagic = errors.New("bad magic")
	// ErrVersion: a stream header with a version newer than the reader's
	// (or 0).
	ErrVersion = errors.New("unsupported version")
)

// ChecksumError is a CRC that does not match.
type ChecksumError struct {
	What             string // "header" or "payload"
	Stored, Computed uint32
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("%s checksum mismatch (stored 0x%08x, computed 0x%08x)", e.What, e.Stored, e.Computed)
}

func (e *ChecksumError) Is(target error) bool { return target == ErrChecksum }

// SizeError is a frame longer than the reader accepts.
type SizeError struct {
	Kind     uint16
	Len, Max uint32
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("payload length %d exceeds the %d-byte limit", e.Len, e.Max)
}

func (e *SizeError) Is(target error) bool { return target == ErrTooLarge }

// TruncatedError is a stream that ended inside a header or payload.
type TruncatedError struct {
	What      string // "header", "payload", "stream header"
	Got, Want int
}

func (e *TruncatedError) Error() string {
	return fmt.Sprintf("truncated: %s has %d of %d bytes", e.What, e.Got, e.Want)
}

func (e *TruncatedError) Is(target error) bool { return target == ErrTruncated }

// Header is a decoded frame header.
type Header struct {
	Kind  uint16
	Flags uint16
	Len   uint32
	// PayloadCRC is the stored payload CRC; Seed is the CRC of header
	// bytes 0..7 that the payload's CRC continues (see Update).
	PayloadCRC, Seed uint32
}

// Encode fills h for a frame of kind and flags whose payload is the
// concatenation of parts, and returns the payload length. It does not
// check the length against a limit: writers check their own.
func Encode(h *[HeaderSize]byte, kind, flags uint16, parts ...[]byte) int {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	binary.LittleEndian.PutUint16(h[0:], kind)
	binary.LittleEndian.PutUint16(h[2:], flags)
	binary.LittleEndian.PutUint32(h[4:], uint32(n))
	crc := crc32.Update(0, Castagnoli, h[:8])
	if flags&FlagHeaderOnly == 0 {
		for _, p := range parts {
			crc = crc32.Update(crc, Castagnoli, p)
		}
	}
	binary.LittleEndian.PutUint32(h[8:], crc)
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(h[:12], Castagnoli))
	return n
}

// Decode checks the header CRC of h (HeaderSize bytes) and its length
// against max, and returns the header. Kind and flags are left to the
// format. Errors are *ChecksumError or *SizeError.
func Decode(h []byte, max uint32) (Header, error) {
	h = h[:HeaderSize]
	if got, want := binary.LittleEndian.Uint32(h[12:]), crc32.Checksum(h[:12], Castagnoli); got != want {
		return Header{}, &ChecksumError{What: "header", Stored: got, Computed: want}
	}
	hd := Header{
		Kind:       binary.LittleEndian.Uint16(h[0:]),
		Flags:      binary.LittleEndian.Uint16(h[2:]),
		Len:        binary.LittleEndian.Uint32(h[4:]),
		PayloadCRC: binary.LittleEndian.Uint32(h[8:]),
		Seed:       crc32.Checksum(h[:8], Castagnoli),
	}
	if hd.Len > max {
		return hd, &SizeError{Kind: hd.Kind, Len: hd.Len, Max: max}
	}
	return hd, nil
}

// Update continues a payload CRC (start from Header.Seed) over p.
func Update(crc uint32, p []byte) uint32 { return crc32.Update(crc, Castagnoli, p) }

// CheckPayload compares crc, the payload's CRC continued from h.Seed,
// with the stored one. With FlagHeaderOnly pass h.Seed itself.
func (h Header) CheckPayload(crc uint32) error {
	if crc != h.PayloadCRC {
		return &ChecksumError{What: "payload", Stored: h.PayloadCRC, Computed: crc}
	}
	return nil
}

// Check verifies a whole payload against h.
func (h Header) Check(payload []byte) error {
	crc := h.Seed
	if h.Flags&FlagHeaderOnly == 0 {
		crc = Update(crc, payload)
	}
	return h.CheckPayload(crc)
}

// PutStreamHeader fills a stream header; magic must be MagicSize bytes.
func PutStreamHeader(h *[StreamHeaderSize]byte, magic string, version, flags uint32) {
	copy(h[0:MagicSize], magic)
	binary.LittleEndian.PutUint32(h[8:], version)
	binary.LittleEndian.PutUint32(h[12:], flags)
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[:16], Castagnoli))
}

// StreamHeaderCRC returns the CRC a stream header's bytes 0..15 start a
// running checksum with (image's trailer covers the stream header).
func StreamHeaderCRC(h []byte) uint32 { return crc32.Checksum(h[:16], Castagnoli) }

// ReadStreamHeader reads and checks a stream header of the format named
// by magic whose newest version is newest. It reads the magic and
// version first and refuses another magic (ErrBadMagic, also on a stream
// cut inside the magic if what arrived differs) or a newer version
// (ErrVersion) before the CRC, since the rest of the header belongs to
// that version. It returns the header bytes read so far (n) also on
// error. An I/O error other than end of stream is returned as is.
func ReadStreamHeader(r io.Reader, magic string, newest uint32) (version, flags uint32, n int, err error) {
	var h [StreamHeaderSize]byte
	n, err = io.ReadFull(r, h[:12])
	if m := min(n, MagicSize); string(h[:m]) != magic[:m] {
		return 0, 0, n, fmt.Errorf("%w %q, want %q", ErrBadMagic, h[:m], magic)
	}
	if err != nil {
		return 0, 0, n, streamReadErr(err, n)
	}
	version = binary.LittleEndian.Uint32(h[8:])
	if version > newest {
		return 0, 0, n, fmt.Errorf("%w: format version %d is newer than this reader's %d", ErrVersion, version, newest)
	}
	m, err := io.ReadFull(r, h[12:])
	n += m
	if err != nil {
		return 0, 0, n, streamReadErr(err, n)
	}
	if got, want := binary.LittleEndian.Uint32(h[16:]), crc32.Checksum(h[:16], Castagnoli); got != want {
		return 0, 0, n, &ChecksumError{What: "header", Stored: got, Computed: want}
	}
	if version == 0 {
		return 0, 0, n, fmt.Errorf("%w: format version 0 is not valid", ErrVersion)
	}
	return version, binary.LittleEndian.Uint32(h[12:]), n, nil
}

func streamReadErr(err error, got int) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return &TruncatedError{What: "header", Got: got, Want: StreamHeaderSize}
	}
	return err
}

// Writer writes frames to w, which should be buffered (a bufio.Writer):
// each frame is written as its header and then its parts. Not safe for
// concurrent use.
type Writer struct {
	w   io.Writer
	max uint32
	hdr [HeaderSize]byte
	// Bytes counts frame bytes written: headers and payloads.
	Bytes int64
}

// NewWriter returns a Writer that refuses frames longer than max.
func NewWriter(w io.Writer, max uint32) *Writer { return &Writer{w: w, max: max} }

// Write writes one frame whose payload is the concatenation of parts;
// the parts go to w from the caller's slices. A payload over the limit is
// refused with a *SizeError before anything is written.
func (w *Writer) Write(kind, flags uint16, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if uint64(n) > uint64(w.max) {
		return &SizeError{Kind: kind, Len: uint32(min(n, 1<<32-1)), Max: w.max}
	}
	Encode(&w.hdr, kind, flags, parts...)
	if _, err := w.w.Write(w.hdr[:]); err != nil {
		return err
	}
	for _, p := range parts {
		if _, err := w.w.Write(p); err != nil {
			return err
		}
	}
	w.Bytes += int64(HeaderSize + n)
	return nil
}

// Reader reads frames from r, which should be buffered. Not safe for
// concurrent use.
type Reader struct {
	r   io.Reader
	max uint32
	hdr [HeaderSize]byte // a field: a local would escape via io.ReadFull
}

// NewReader returns a Reader that refuses frames longer than max.
func NewReader(r io.Reader, max uint32) *Reader { return &Reader{r: r, max: max} }

// Next reads one frame: it decodes the header, calls check (if not nil)
// so the format can refuse the kind, flags or length before the payload
// is read, then reads the payload into buf (grown when too small) and
// verifies it. The payload is valid until buf is reused. Next returns
// io.EOF only at a frame boundary; bad input gives a *TruncatedError,
// *ChecksumError or *SizeError, check's error as is, and an I/O error
// from r as is.
func (r *Reader) Next(buf []byte, check func(Header) error) (Header, []byte, error) {
	n, err := io.ReadFull(r.r, r.hdr[:])
	if err != nil {
		if err == io.EOF {
			return Header{}, nil, io.EOF
		}
		if err == io.ErrUnexpectedEOF {
			return Header{}, nil, &TruncatedError{What: "header", Got: n, Want: HeaderSize}
		}
		return Header{}, nil, err
	}
	h, err := Decode(r.hdr[:], r.max)
	if err != nil {
		return h, nil, err
	}
	if check != nil {
		if err := check(h); err != nil {
			return h, nil, err
		}
	}
	if cap(buf) < int(h.Len) {
		buf = make([]byte, h.Len)
	}
	p := buf[:h.Len]
	if m, err := io.ReadFull(r.r, p); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return h, nil, &TruncatedError{What: "payload", Got: m, Want: int(h.Len)}
		}
		return h, nil, err
	}
	if err := h.Check(p); err != nil {
		return h, nil, err
	}
	return h, p, nil
}
