package migrate

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	"ferry/internal/frame"
)

// Wire format, version 2. Each direction of a migration connection opens
// with the 20-byte stream header of package frame (magic "FERRYMIG",
// version, flags 0, CRC32C) and then carries frames in frame's layout:
//
//	offset size
//	0      2    frame type (u16)
//	2      2    flags (u16): frame.FlagHeaderOnly on image frames, else 0
//	4      4    payload length (u32), at most MaxFrame
//	8      4    payload CRC32C: over bytes 0..7 and the payload
//	             (image frames: bytes 0..7 only)
//	12     4    header CRC32C: over bytes 0..11
//	16     n    payload
//
// Version 1 had a magic "FMIG" in every frame and one CRC over the
// header's type..length and the payload; version 2 moved to the framing
// the image and postcopy formats share (a version 1 peer is refused at
// the stream header, naming the magic it sent).
//
// Image frames set frame.FlagHeaderOnly: the image they carry checksums
// every record itself, and checking the bytes twice costs a tenth of a
// migration's CPU time.
//
// Control frames (Hello, Welcome, Ready, Commit, Committed, Abort, Done)
// carry one JSON object. Pages frames carry a precopy round's pages:
// pid u32, addr u64, then the page data. Image frames carry a slice of an
// image stream (package image, itself checksummed record by record), and
// ImageEnd closes it. A frame that fails any check ends the migration
// with ErrCorrupt; nothing of a corrupt frame is used.
const (
	wireMagic   = "FERRYMIG"
	wireVersion = 2
	frameHeader = frame.HeaderSize
	// MaxFrame caps a frame's payload.
	MaxFrame = 8 << 20
)

// Frame types.
const (
	fHello     byte = 1
	fWelcome   byte = 2
	fPages     byte = 3
	fImage     byte = 4
	fImageEnd  byte = 5
	fReady     byte = 6
	fCommit    byte = 7
	fCommitted byte = 8
	fAbort     byte = 9
	fRoundEnd  byte = 10
)

var frameNames = map[byte]string{fHello: "hello", fWelcome: "welcome", fPages: "pages", fImage: "image",
	fImageEnd: "image-end", fReady: "ready", fCommit: "commit", fCommitted: "committed", fAbort: "abort",
	fRoundEnd: "round-end"}

func frameName(t byte) string {
	if n, ok := frameNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type %d", t)
}

// pagesHeader: pid u32, address u64.
const pagesHeader = 12

// ErrCorrupt is wrapped by errors about a frame that fails its checks.
var ErrCorrupt = errors.New("corrupt migration frame")

// conn frames a byte stream. Writes are serialized; reads come from one
// goroutine at a time.
type conn struct {
	rw io.ReadWriteCloser
	br *bufio.Reader
	fr *frame.Reader
	// gotHeader: the peer's stream header was read (by the first recv).
	gotHeader bool

	wmu sync.Mutex // guards the fields below
	bw  *bufio.Writer
	fw  *frame.Writer
	// sentHeader: the stream header was written (by the first send).
	sentHeader bool

	// sent and received count payload bytes.
	sent, received uint64
}

func newConn(rw io.ReadWriteCloser) *conn {
	c := &conn{rw: rw, br: bufio.NewReaderSize(rw, 1<<20), bw: bufio.NewWriterSize(rw, 1<<20)}
	c.fr = frame.NewReader(c.br, MaxFrame)
	c.fw = frame.NewWriter(c.bw, MaxFrame)
	return c
}

// frameFlags are the flags a frame of type t carries.
func frameFlags(t byte) uint16 {
	if t == fImage {
		return frame.FlagHeaderOnly
	}
	return 0
}

// startLocked writes the stream header before the first frame.
func (c *conn) startLocked() error {
	if c.sentHeader {
		return nil
	}
	var h [frame.StreamHeaderSize]byte
	frame.PutStreamHeader(&h, wireMagic, wireVersion, 0)
	if _, err := c.bw.Write(h[:]); err != nil {
		return err
	}
	c.sentHeader = true
	return nil
}

// send writes one frame made of parts and flushes unless more follow.
func (c *conn) send(t byte, flush bool, parts ...[]byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.startLocked(); err != nil {
		return fmt.Errorf("send %s frame: %w", frameName(t), err)
	}
	before := c.fw.Bytes
	if err := c.fw.Write(uint16(t), frameFlags(t), parts...); err != nil {
		if se := (*frame.SizeError)(nil); errors.As(err, &se) {
			return fmt.Errorf("send %s frame: %d bytes exceed the %d limit", frameName(t), se.Len, se.Max)
		}
		return fmt.Errorf("send %s frame: %w", frameName(t), err)
	}
	c.sent += uint64(c.fw.Bytes - before - frame.HeaderSize)
	if flush {
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("send %s frame: %w", frameName(t), err)
		}
	}
	return nil
}

// sendCorrupt sends a frame of type t whose header checksum is wrong
// (the corrupt-image fault): the peer must refuse it.
func (c *conn) sendCorrupt(t byte, p []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.startLocked(); err != nil {
		return err
	}
	var h [frame.HeaderSize]byte
	frame.Encode(&h, uint16(t), frameFlags(t), p)
	h[12] ^= 0xff
	c.bw.Write(h[:])
	c.bw.Write(p)
	return c.bw.Flush()
}

// sendJSON sends a control frame.
func (c *conn) sendJSON(t byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.send(t, true, b)
}

// readStreamHeader reads the peer's stream header before its first frame.
func (c *conn) readStreamHeader() error {
	_, flags, n, err := frame.ReadStreamHeader(c.br, wireMagic, wireVersion)
	switch {
	case err == io.EOF || n == 0 && errors.Is(err, frame.ErrTruncated):
		return io.EOF // closed before it said anything
	case errors.Is(err, frame.ErrBadMagic):
		return fmt.Errorf("stream header: %v (a version 1 peer sends \"FMIG\"): %w", err, ErrCorrupt)
	case errors.Is(err, frame.ErrVersion):
		return fmt.Errorf("stream header: peer's migration protocol %v: %w", err, ErrCorrupt)
	case errors.Is(err, frame.ErrTruncated), errors.Is(err, frame.ErrChecksum):
		return fmt.Errorf("stream header: %v: %w", err, ErrCorrupt)
	case err != nil:
		return err
	case flags != 0:
		return fmt.Errorf("stream header: unknown flags %#x: %w", flags, ErrCorrupt)
	}
	c.gotHeader = true
	return nil
}

// recv reads the next frame. The payload is valid until the next recv.
func (c *conn) recv(buf []byte) (byte, []byte, error) {
	if !c.gotHeader {
		if err := c.readStreamHeader(); err != nil {
			return 0, nil, err
		}
	}
	var t byte
	_, p, err := c.fr.Next(buf, func(h frame.Header) error {
		t = byte(h.Kind)
		if h.Kind > 0xff || h.Flags != frameFlags(t) {
			return fmt.Errorf("%s frame: bad type %d or flags %#x: %w", frameName(t), h.Kind, h.Flags, ErrCorrupt)
		}
		return nil
	})
	if err != nil {
		var se *frame.SizeError
		var te *frame.TruncatedError
		var ce *frame.ChecksumError
		switch {
		case err == io.EOF:
			return 0, nil, err
		case errors.As(err, &se):
			return 0, nil, fmt.Errorf("%s frame of %d bytes exceeds the %d limit: %w", frameName(byte(se.Kind)), se.Len, se.Max, ErrCorrupt)
		case errors.As(err, &te) && te.What == "header":
			return 0, nil, fmt.Errorf("frame header cut short: %w", ErrCorrupt)
		case errors.As(err, &te):
			return 0, nil, fmt.Errorf("%s frame cut short after %d bytes: %w", frameName(t), te.Got, ErrCorrupt)
		case errors.As(err, &ce) && ce.What == "header": // no type to trust
			return 0, nil, fmt.Errorf("frame %v: %w", err, ErrCorrupt)
		case errors.As(err, &ce):
			return 0, nil, fmt.Errorf("%s frame: %v: %w", frameName(t), err, ErrCorrupt)
		}
		return 0, nil, err
	}
	c.received += uint64(len(p))
	return t, p, nil
}

// recvJSON reads a control frame of type want into v. An Abort frame from
// the peer becomes an *AbortError.
func (c *conn) recvJSON(want byte, v any) error {
	t, p, err := c.recv(nil)
	if err != nil {
		return err
	}
	return decodeControl(t, p, want, v)
}

func decodeControl(t byte, p []byte, want byte, v any) error {
	if t == fAbort {
		var a abortMsg
		json.Unmarshal(p, &a)
		return &AbortError{Reason: a.Reason}
	}
	if t != want {
		return fmt.Errorf("expected a %s frame, got %s: %w", frameName(want), frameName(t), ErrProtocol)
	}
	if err := json.Unmarshal(p, v); err != nil {
		return fmt.Errorf("%s frame: %v: %w", frameName(t), err, ErrCorrupt)
	}
	return nil
}

// ErrProtocol is wrapped by errors about frames out of order.
var ErrProtocol = errors.New("migration protocol violated")

// AbortError is the peer's reason for abandoning the migration.
type AbortError struct{ Reason string }

func (e *AbortError) Error() string { return "peer aborted the migration: " + e.Reason }

type abortMsg struct {
	Reason string `json:"reason"`
}

// imageWriter turns an image stream into Image frames.
type imageWriter struct{ c *conn }

func (w imageWriter) Write(p []byte) (int, error) {
	for off := 0; off < len(p); {
		n := min(len(p)-off, MaxFrame)
		if err := w.c.send(fImage, false, p[off:off+n]); err != nil {
			return off, err
		}
		off += n
	}
	return len(p), nil
}

// imageReader reads the payloads of Image frames until ImageEnd.
type imageReader struct {
	c *conn
	// pages takes precopy pages met before the image.
	pages func(pid int, addr uint64, data []byte) error
	// files handles a file phase met inside the image stream.
	files func(manifest []byte) error
	buf   []byte
	rest  []byte
	end   bool
}

func (r *imageReader) Read(p []byte) (int, error) {
	for len(r.rest) == 0 {
		if r.end {
			return 0, io.EOF
		}
		t, b, err := r.c.recv(r.buf)
		if err != nil {
			if err == io.EOF {
				return 0, fmt.Errorf("connection closed inside the image: %w", io.ErrUnexpectedEOF)
			}
			return 0, err
		}
		switch t {
		case fImage:
			r.buf, r.rest = b, b
		case fImageEnd:
			r.end = true
		case fPages:
			if r.pages == nil {
				return 0, fmt.Errorf("precopy pages not expected: %w", ErrProtocol)
			}
			if len(b) < pagesHeader {
				return 0, fmt.Errorf("short pages frame: %w", ErrCorrupt)
			}
			if err := r.pages(int(binary.LittleEndian.Uint32(b[0:4])), binary.LittleEndian.Uint64(b[4:12]), b[pagesHeader:]); err != nil {
				return 0, err
			}
		case fManifest:
			if r.files == nil {
				return 0, fmt.Errorf("file manifest not expected: %w", ErrProtocol)
			}
			if err := r.files(b); err != nil {
				return 0, err
			}
		case fAbort:
			var a abortMsg
			json.Unmarshal(b, &a)
			return 0, &AbortError{Reason: a.Reason}
		default:
			return 0, fmt.Errorf("%s frame inside the image: %w", frameName(t), ErrProtocol)
		}
	}
	n := copy(p, r.rest)
	r.rest = r.rest[n:]
	return n, nil
}
