package migrate

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync"
)

// Wire format, version 1. A migration connection carries frames:
//
//	offset size
//	0      4    magic "FMIG"
//	4      1    frame type
//	5      1    flags: 1 = the CRC covers the header only
//	6      2    zero
//	8      4    payload length, little endian (≤ MaxFrame)
//	12     4    CRC32C (Castagnoli) of bytes 4..12 and the payload
//	16     n    payload
//
// Image frames set flag 1: the image they carry checksums every record
// itself, and checking the bytes twice costs a tenth of a migration's
// CPU time.
//
// Control frames (Hello, Welcome, Ready, Commit, Committed, Abort, Done)
// carry one JSON object. Pages frames carry a precopy round's pages:
// pid u32, addr u64, then the page data. Image frames carry a slice of an
// image stream (package image, itself checksummed record by record), and
// ImageEnd closes it. A frame that fails any check ends the migration
// with ErrCorrupt; nothing of a corrupt frame is used.
const (
	wireMagic   = "FMIG"
	wireVersion = 1
	frameHeader = 16
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

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// conn frames a byte stream. Writes are serialized; reads come from one
// goroutine at a time.
type conn struct {
	rw  io.ReadWriteCloser
	br  *bufio.Reader
	wmu sync.Mutex
	bw  *bufio.Writer
	hdr [frameHeader]byte
	// bytes counts payload bytes written.
	sent, received uint64
}

func newConn(rw io.ReadWriteCloser) *conn {
	return &conn{rw: rw, br: bufio.NewReaderSize(rw, 1<<20), bw: bufio.NewWriterSize(rw, 1<<20)}
}

// headerOnlyCRC lists frame types whose payload the CRC does not cover.
func headerOnlyCRC(t byte) bool { return t == fImage }

func putFrameHeader(h []byte, t byte, parts ...[]byte) {
	copy(h[0:4], wireMagic)
	h[4], h[5], h[6], h[7] = t, 0, 0, 0
	if headerOnlyCRC(t) {
		h[5] = 1
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	binary.LittleEndian.PutUint32(h[8:12], uint32(n))
	crc := crc32.Update(0, castagnoli, h[4:12])
	if h[5] == 0 {
		for _, p := range parts {
			crc = crc32.Update(crc, castagnoli, p)
		}
	}
	binary.LittleEndian.PutUint32(h[12:16], crc)
}

// send writes one frame made of parts and flushes unless more follow.
func (c *conn) send(t byte, flush bool, parts ...[]byte) error {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	if n > MaxFrame {
		return fmt.Errorf("send %s frame: %d bytes exceed the %d limit", frameName(t), n, MaxFrame)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var h [frameHeader]byte
	putFrameHeader(h[:], t, parts...)
	if _, err := c.bw.Write(h[:]); err != nil {
		return fmt.Errorf("send %s frame: %w", frameName(t), err)
	}
	for _, p := range parts {
		if _, err := c.bw.Write(p); err != nil {
			return fmt.Errorf("send %s frame: %w", frameName(t), err)
		}
	}
	c.sent += uint64(n)
	if flush {
		if err := c.bw.Flush(); err != nil {
			return fmt.Errorf("send %s frame: %w", frameName(t), err)
		}
	}
	return nil
}

func (c *conn) flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
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

// recv reads the next frame. The payload is valid until the next recv.
func (c *conn) recv(buf []byte) (byte, []byte, error) {
	h := c.hdr[:]
	if _, err := io.ReadFull(c.br, h); err != nil {
		if err == io.ErrUnexpectedEOF {
			return 0, nil, fmt.Errorf("frame header cut short: %w", ErrCorrupt)
		}
		return 0, nil, err
	}
	if string(h[0:4]) != wireMagic {
		return 0, nil, fmt.Errorf("bad frame magic %q: %w", h[0:4], ErrCorrupt)
	}
	t := h[4]
	if h[6] != 0 || h[7] != 0 || (h[5] != 0 && !(h[5] == 1 && headerOnlyCRC(t))) {
		return 0, nil, fmt.Errorf("%s frame: reserved bytes set: %w", frameName(t), ErrCorrupt)
	}
	n := binary.LittleEndian.Uint32(h[8:12])
	if n > MaxFrame {
		return 0, nil, fmt.Errorf("%s frame of %d bytes exceeds the %d limit: %w", frameName(t), n, MaxFrame, ErrCorrupt)
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return 0, nil, fmt.Errorf("%s frame cut short after %d bytes: %w", frameName(t), len(buf), ErrCorrupt)
	}
	crc := crc32.Update(0, castagnoli, h[4:12])
	if h[5] == 0 {
		crc = crc32.Update(crc, castagnoli, buf)
	}
	if crc != binary.LittleEndian.Uint32(h[12:16]) {
		return 0, nil, fmt.Errorf("%s frame checksum mismatch: %w", frameName(t), ErrCorrupt)
	}
	c.received += uint64(n)
	return t, buf, nil
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
