package image

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/frame"
)

// The byte layout below is documented in doc.go; keep the two in step.

// Format constants.
const (
	// Magic opens every image stream.
	Magic = "FERRYIMG"
	// Version is the format version this package writes and the newest
	// it reads.
	Version uint32 = 1

	// HeaderSize is the size of the stream header: magic, version, flags,
	// CRC32C (package frame's stream header).
	HeaderSize = frame.StreamHeaderSize
	// RecordHeaderSize is the size of a record header: type, flags,
	// payload length, payload CRC32C, header CRC32C (package frame's
	// frame header).
	RecordHeaderSize = frame.HeaderSize
	// MaxPayload caps one record's payload. A reader rejects a larger
	// length before allocating anything for it.
	MaxPayload = 64 << 20
	// MaxFileIDLen caps the file id of a FileData record.
	MaxFileIDLen = 4096
	// DefaultPageSize is assumed when Checkpoint.PageSize is zero.
	DefaultPageSize = 4096
	// maxPageSize bounds Checkpoint.PageSize (arm64 uses 64 KiB).
	maxPageSize = 1 << 20
)

// Payload layouts.
const (
	pagesPrefixSize    = 12 // pid u32, address u64
	fileDataPrefixSize = 10 // offset u64, id length u16; the id follows
	trailerSize        = 24 // records u64, payload bytes u64, running CRC u32, reserved u32
)

// bufSize is the buffer between the codec and the underlying stream.
// Records up to this size are decoded in place in the read buffer;
// larger ones are read into a separate payload buffer.
const bufSize = 512 << 10

// writeChunk is how much page or file content a Writer puts in one
// record. MaxPayload is what a reader must accept; writing much smaller
// records keeps every record on the reader's in-place path (no second
// buffer, no pass over memory outside the CPU cache), bounds the reader's
// memory, and lets a live migration interleave urgent pages. 64 KiB is
// small next to bufSize, so the read buffer rarely has to move a partial
// record when it refills; the record header costs 28 bytes per 64 KiB.
const writeChunk = 64 << 10

// RecordType identifies a record's payload layout.
type RecordType uint16

// Record types. Zero is never valid.
const (
	RecordState    RecordType = 1 // JSON of *Checkpoint
	RecordFileData RecordType = 2 // content of a memfd, unlinked file or shared anonymous object
	RecordPages    RecordType = 3 // raw page contents of one process
	RecordTrailer  RecordType = 4 // record count, payload bytes, running checksum
	RecordSignals  RecordType = 5 // JSON []PendingSignal: signals that arrived after the state record
	RecordLazy     RecordType = 6 // pages of a VMA left on the source for postcopy (lazy.go)
)

func (t RecordType) String() string {
	switch t {
	case RecordState:
		return "state"
	case RecordFileData:
		return "filedata"
	case RecordPages:
		return "pages"
	case RecordTrailer:
		return "trailer"
	case RecordSignals:
		return "signals"
	case RecordLazy:
		return "lazy"
	}
	return fmt.Sprintf("type %d", uint16(t))
}

// Sentinel errors. Every error a Reader returns for bad input is a
// *FormatError wrapping exactly one of these; test with errors.Is.
var (
	// ErrBadMagic: the stream does not start with Magic; not an image.
	ErrBadMagic = errors.New("image: bad magic")
	// ErrVersion: the image was written by a newer (or unknown) format
	// version, or uses header flags this reader does not know.
	ErrVersion = errors.New("image: unsupported version")
	// ErrChecksum: a header, a payload or the trailer's running checksum
	// does not match: the bytes were damaged, or records were dropped,
	// added or reordered.
	ErrChecksum = errors.New("image: checksum mismatch")
	// ErrTruncated: the stream ended before the trailer.
	ErrTruncated = errors.New("image: truncated")
	// ErrMalformed: checksums match but the content makes no sense
	// (unknown type, bad length, bad JSON, records out of order...).
	ErrMalformed = errors.New("image: malformed")
)

// FormatError describes what is wrong with an image stream and where.
type FormatError struct {
	// Record is the index of the offending record (the state record is
	// 0), or -1 for the stream header.
	Record int
	// Offset is the stream offset of the record's header.
	Offset int64
	// Type is the record's type, or 0 when it is not known (the record
	// header was unreadable or damaged).
	Type RecordType
	// Msg says what is wrong.
	Msg string
	// Err is one of the sentinel errors, or the underlying reader's
	// error when reading failed for a reason other than end of stream.
	Err error
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("image: ")
	if e.Record < 0 {
		b.WriteString("header")
	} else {
		fmt.Fprintf(&b, "record %d", e.Record)
		if e.Type != 0 {
			fmt.Fprintf(&b, " (%s)", e.Type)
		}
	}
	fmt.Fprintf(&b, " at offset %d: %s", e.Offset, e.Msg)
	return b.String()
}

func (e *FormatError) Unwrap() error { return e.Err }

// Stats counts what a Writer wrote or a Reader read so far.
type Stats struct {
	// Records counts records, the trailer included once it is written or read.
	Records int `json:"records"`
	// StateBytes is the size of the state record's JSON.
	StateBytes int64 `json:"state_bytes"`
	// PageBytes and Pages count page contents.
	PageBytes int64 `json:"page_bytes"`
	Pages     int64 `json:"pages"`
	// FileBytes counts FileData contents (not their ids and offsets).
	FileBytes int64 `json:"file_bytes"`
	// TotalBytes is the stream size: header, record headers and payloads.
	TotalBytes int64 `json:"total_bytes"`
}

// stateInfo is what the codec needs from the state record to check the
// records that follow it.
type stateInfo struct {
	pageSize int
	pids     map[int]struct{}
}

// checkState validates the parts of c the format relies on.
func checkState(c *Checkpoint) (stateInfo, error) {
	ps := c.PageSize
	if ps == 0 {
		ps = DefaultPageSize
	}
	if ps < DefaultPageSize || ps > maxPageSize || bits.OnesCount(uint(ps)) != 1 {
		return stateInfo{}, fmt.Errorf("page size %d is not a power of two in [%d, %d]", c.PageSize, DefaultPageSize, maxPageSize)
	}
	pids := make(map[int]struct{}, len(c.Processes))
	for i, p := range c.Processes {
		if p == nil {
			return stateInfo{}, fmt.Errorf("process %d is null", i)
		}
		if p.PID <= 0 || p.PID > math.MaxUint32 {
			return stateInfo{}, fmt.Errorf("process %d has invalid pid %d", i, p.PID)
		}
		if _, dup := pids[p.PID]; dup {
			return stateInfo{}, fmt.Errorf("pid %d appears twice", p.PID)
		}
		pids[p.PID] = struct{}{}
	}
	return stateInfo{pageSize: ps, pids: pids}, nil
}

// putRecordHeader fills h for a record of type t whose payload is the
// concatenation of parts, and returns the payload length.
func putRecordHeader(h *[RecordHeaderSize]byte, t RecordType, parts ...[]byte) int {
	return frame.Encode(h, uint16(t), 0, parts...) // flags: none defined
}

// The trailer's running checksum covers the stream header and each record
// header without their own CRC fields: a CRC over "bytes, then the CRC of
// those bytes" always ends in the same residue, so including the self-CRC
// would make every header contribute the same value and the running
// checksum blind to what the headers say and to their order.

// runningStart starts the running checksum from the stream header.
func runningStart(h []byte) uint32 { return frame.StreamHeaderCRC(h) }

// runningAdd adds a record header (type, flags, length, payload CRC).
func runningAdd(running uint32, h []byte) uint32 { return frame.Update(running, h[:12]) }

var errWriterClosed = errors.New("image: writer is closed")

// Writer encodes an image stream. Records are buffered; call Flush to
// push them to the underlying writer before waiting on the peer, and
// Close to end the stream. A Writer is not safe for concurrent use.
//
// Argument errors (pages before the state, misaligned pages...) leave the
// stream intact and the Writer usable; an error from the underlying
// writer is sticky and returned by every later call.
type Writer struct {
	bw *bufio.Writer
	// err is the first write or flush error, wrapped; once set, the
	// stream is unusable and every call returns it.
	err      error
	closed   bool
	closeErr error

	state   *stateInfo // nil until WriteState
	running uint32     // see runningStart
	payload uint64     // payload bytes of every record so far
	stats   Stats
	// pagesSeen is set by the first pages record: lazy records must come
	// before it.
	pagesSeen bool

	hdr    [RecordHeaderSize]byte
	prefix []byte // scratch for payload prefixes

	// fd is the underlying file's descriptor when the stream goes to an
	// *os.File (-1 otherwise): large page writes then skip the buffer and
	// go to the file with writev, straight from the caller's memory.
	fd   int
	meta []byte // record headers and prefixes of one writev
	iovs [][]byte
}

// NewWriter writes the stream header to w and returns a Writer for the
// records. It does not close w.
func NewWriter(w io.Writer) (*Writer, error) {
	iw := &Writer{
		bw:     bufio.NewWriterSize(w, bufSize),
		prefix: make([]byte, 0, fileDataPrefixSize+64),
		fd:     -1,
	}
	if f, ok := w.(*os.File); ok {
		iw.fd = int(f.Fd())
	}
	var h [HeaderSize]byte
	frame.PutStreamHeader(&h, Magic, Version, 0)
	if _, err := iw.bw.Write(h[:]); err != nil {
		return nil, fmt.Errorf("image: writing header: %w", err)
	}
	iw.running = runningStart(h[:])
	iw.stats.TotalBytes = HeaderSize
	return iw, nil
}

// usable reports why no record may be written now, if so.
func (w *Writer) usable() error {
	if w.closed {
		return errWriterClosed
	}
	return w.err
}

// writeRecord writes one record whose payload is prefix followed by data.
// data goes from the caller's slice to the buffered writer, never through
// an assembled payload.
func (w *Writer) writeRecord(t RecordType, prefix, data []byte) error {
	n := putRecordHeader(&w.hdr, t, prefix, data)
	for _, p := range [...][]byte{w.hdr[:], prefix, data} {
		if _, err := w.bw.Write(p); err != nil {
			w.err = fmt.Errorf("image: writing record %d (%s): %w", w.stats.Records, t, err)
			return w.err
		}
	}
	if t != RecordTrailer {
		w.running = runningAdd(w.running, w.hdr[:])
		w.payload += uint64(n)
	}
	w.stats.Records++
	w.stats.TotalBytes += int64(RecordHeaderSize + n)
	return nil
}

// PendingSignal is a signal that became pending after the state record
// was written (it arrived while the process was frozen). TID 0 means the
// process-wide queue.
type PendingSignal struct {
	PID  int     `json:"pid"`
	TID  int     `json:"tid,omitempty"`
	Info Siginfo `json:"info"`
}

// WriteSignals writes a signals record; dump writes one before the trailer
// when signals arrived during the freeze, so none is lost.
func (w *Writer) WriteSignals(sigs []PendingSignal) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == nil {
		return errors.New("image: signals before the state record")
	}
	js, err := json.Marshal(sigs)
	if err != nil {
		return fmt.Errorf("image: encoding signals: %w", err)
	}
	return w.writeRecord(RecordSignals, nil, js)
}

// WriteState writes the state record. It must be the first record, and
// there is exactly one.
func (w *Writer) WriteState(c *Checkpoint) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state != nil {
		return errors.New("image: state record already written")
	}
	if c == nil {
		return errors.New("image: nil checkpoint")
	}
	info, err := checkState(c)
	if err != nil {
		return fmt.Errorf("image: invalid state: %w", err)
	}
	js, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("image: encoding state: %w", err)
	}
	if len(js) > MaxPayload {
		return fmt.Errorf("image: state is %d bytes, over the %d-byte record limit", len(js), MaxPayload)
	}
	if err := w.writeRecord(RecordState, nil, js); err != nil {
		return err
	}
	w.state = &info
	w.stats.StateBytes += int64(len(js))
	return nil
}

// WriteFileData writes data as the content of file object id (see
// ObjectID) at byte offset off. Large content is split into several
// records with increasing offsets. Empty data still
// writes a record: it tells the reader the object exists.
func (w *Writer) WriteFileData(id string, off int64, data []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == nil {
		return errors.New("image: file data before the state record")
	}
	if id == "" || len(id) > MaxFileIDLen {
		return fmt.Errorf("image: file id length %d not in [1, %d]", len(id), MaxFileIDLen)
	}
	if off < 0 || int64(len(data)) > math.MaxInt64-off {
		return fmt.Errorf("image: file data for %q: offset %d out of range", id, off)
	}
	chunk := writeChunk
	for first := true; first || len(data) > 0; first = false {
		part := data[:min(len(data), chunk)]
		p := binary.LittleEndian.AppendUint64(w.prefix[:0], uint64(off))
		p = binary.LittleEndian.AppendUint16(p, uint16(len(id)))
		p = append(p, id...)
		w.prefix = p
		if err := w.writeRecord(RecordFileData, p, part); err != nil {
			return err
		}
		w.stats.FileBytes += int64(len(part))
		off += int64(len(part))
		data = data[len(part):]
	}
	return nil
}

// WritePages writes the contents of the pages of process pid starting at
// address addr. addr must be page-aligned and len(data) a multiple of the
// checkpoint's page size; pid must be a process of the checkpoint. Large
// data is split into several records of consecutive pages. The bytes are
// checksummed and written from data itself, never assembled into a
// separate record buffer. Writing no pages is a no-op.
func (w *Writer) WritePages(pid int, addr uint64, data []byte) error {
	if err := w.usable(); err != nil {
		return err
	}
	if w.state == nil {
		return errors.New("image: pages before the state record")
	}
	ps := w.state.pageSize
	if _, ok := w.state.pids[pid]; !ok {
		return fmt.Errorf("image: pages for pid %d, which is not in the checkpoint", pid)
	}
	if addr%uint64(ps) != 0 || len(data)%ps != 0 {
		return fmt.Errorf("image: pages for pid %d at %#x, %d bytes: not aligned to the %d-byte page size", pid, addr, len(data), ps)
	}
	if _, carry := bits.Add64(addr, uint64(len(data)), 0); carry != 0 {
		return fmt.Errorf("image: pages for pid %d at %#x, %d bytes: range wraps the address space", pid, addr, len(data))
	}
	chunk := max(writeChunk/ps, 1) * ps
	w.pagesSeen = w.pagesSeen || len(data) > 0
	if w.fd >= 0 && len(data) >= directMin {
		return w.writePagesDirect(pid, addr, data, chunk, ps)
	}
	for len(data) > 0 {
		part := data[:min(len(data), chunk)]
		p := binary.LittleEndian.AppendUint32(w.prefix[:0], uint32(pid))
		p = binary.LittleEndian.AppendUint64(p, addr)
		w.prefix = p
		if err := w.writeRecord(RecordPages, p, part); err != nil {
			return err
		}
		w.stats.PageBytes += int64(len(part))
		w.stats.Pages += int64(len(part) / ps)
		addr += uint64(len(part))
		data = data[len(part):]
	}
	return nil
}

// directMin is the size from which page data bypass the buffer.
const directMin = 256 << 10

// writePagesDirect writes the records of data with writev: each record's
// header and prefix from w.meta, its contents from data itself. The bytes
// on the stream are exactly those of the buffered path.
func (w *Writer) writePagesDirect(pid int, addr uint64, data []byte, chunk, ps int) error {
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("image: flushing before pages: %w", err)
		return w.err
	}
	const metaSize = RecordHeaderSize + pagesPrefixSize
	for len(data) > 0 {
		// Up to IOV_MAX/2 records per writev.
		n := min((len(data)+chunk-1)/chunk, 512)
		w.meta = slices.Grow(w.meta[:0], n*metaSize)[:n*metaSize]
		w.iovs = w.iovs[:0]
		for i := 0; i < n; i++ {
			part := data[:min(len(data), chunk)]
			m := w.meta[i*metaSize : (i+1)*metaSize]
			p := binary.LittleEndian.AppendUint32(m[RecordHeaderSize:RecordHeaderSize], uint32(pid))
			p = binary.LittleEndian.AppendUint64(p, addr)
			size := putRecordHeader((*[RecordHeaderSize]byte)(m[:RecordHeaderSize]), RecordPages, p, part)
			w.running = runningAdd(w.running, m[:RecordHeaderSize])
			w.payload += uint64(size)
			w.stats.Records++
			w.stats.TotalBytes += int64(RecordHeaderSize + size)
			w.stats.PageBytes += int64(len(part))
			w.stats.Pages += int64(len(part) / ps)
			w.iovs = append(w.iovs, m, part)
			addr += uint64(len(part))
			data = data[len(part):]
		}
		if err := writevAll(w.fd, w.iovs); err != nil {
			w.err = fmt.Errorf("image: writing pages: %w", err)
			return w.err
		}
	}
	return nil
}

// writevAll writes every byte of iovs to fd, retrying short writes.
func writevAll(fd int, iovs [][]byte) error {
	for len(iovs) > 0 {
		n, err := unix.Writev(fd, iovs)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		for n > 0 && len(iovs) > 0 {
			if n >= len(iovs[0]) {
				n -= len(iovs[0])
				iovs = iovs[1:]
			} else {
				iovs[0] = iovs[0][n:]
				n = 0
			}
		}
		for len(iovs) > 0 && len(iovs[0]) == 0 {
			iovs = iovs[1:]
		}
	}
	return nil
}

// Flush writes buffered records to the underlying writer. A live
// migration flushes whenever the peer may be waiting for what was written.
func (w *Writer) Flush() error {
	if w.err != nil {
		return w.err
	}
	if err := w.bw.Flush(); err != nil {
		w.err = fmt.Errorf("image: flush: %w", err)
		return w.err
	}
	return nil
}

// Close writes the trailer and flushes. It does not close the underlying
// writer. Closing an image that has no state record fails and writes no
// trailer, so the stream can never pass for a whole image. Later calls
// return the first call's result.
func (w *Writer) Close() error {
	if w.closed {
		return w.closeErr
	}
	w.closeErr = w.close()
	w.closed = true
	return w.closeErr
}

func (w *Writer) close() error {
	if w.err != nil {
		return w.err
	}
	if w.state == nil {
		return errors.New("image: closing an image that has no state record")
	}
	var t [trailerSize]byte
	binary.LittleEndian.PutUint64(t[0:], uint64(w.stats.Records))
	binary.LittleEndian.PutUint64(t[8:], w.payload)
	binary.LittleEndian.PutUint32(t[16:], w.running)
	if err := w.writeRecord(RecordTrailer, nil, t[:]); err != nil {
		return err
	}
	return w.Flush()
}

// Stats reports what was written so far.
func (w *Writer) Stats() Stats { return w.stats }

// Record is one decoded record. Which fields are set depends on Type:
//
//	RecordState:    State
//	RecordFileData: FileID, Offset, Data
//	RecordPages:    PID, Addr, Data
//
// The Record returned by Reader.Next and its Data are only valid until
// the next call to Next: Data aliases the Reader's buffers, which are
// reused so that restoring a large image does not allocate per record.
// Copy what must outlive the call. State is never reused.
type Record struct {
	Type   RecordType
	State  *Checkpoint
	PID    int
	Addr   uint64
	FileID string
	Offset int64
	Data   []byte
	// Signals of a RecordSignals record.
	Signals []PendingSignal
	// Lazy is the VMA of a RecordLazy record (PID is set too). Its Runs
	// are not reused by the Reader.
	Lazy LazyVMA
}

// Reader decodes an image stream. It is not safe for concurrent use.
//
// The Reader buffers its input and may read past the end of the image.
// To go on reading the underlying stream after the trailer, pass a
// *bufio.Reader: it is used as is, and holds whatever follows the image.
type Reader struct {
	br *bufio.Reader
	// mem, when set, is the whole stream in memory (NewReaderBytes):
	// payloads are returned as slices of it, without a copy.
	mem     []byte
	memPos  int
	version uint32
	off     int64 // stream offset of the next unread byte
	index   int   // index of the next record

	state   *Checkpoint
	info    stateInfo
	running uint32 // see runningStart
	payload uint64 // payload bytes of every record so far
	stats   Stats
	// pagesSeen is set by the first pages record: no lazy record may
	// follow it.
	pagesSeen bool

	// Current record, for error messages.
	recOff  int64
	recType RecordType

	hdr [RecordHeaderSize]byte // a field: a local would escape to the heap via io.ReadFull
	buf []byte                 // payload buffer for records larger than br's buffer
	rec Record
	// err is sticky: the first error, or io.EOF after the trailer.
	err error
}

// NewReader reads and checks the stream header.
func NewReader(r io.Reader) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, bufSize)
	}
	ir := &Reader{br: br}
	if err := ir.readHeader(); err != nil {
		return nil, err
	}
	return ir, nil
}

// NewReaderBytes reads a stream held whole in memory, such as a mapped
// image file. Record Data then aliases b and stays valid as long as b does
// (not only until the next call of Next), so pages can be handed to the
// kernel straight from it.
func NewReaderBytes(b []byte) (*Reader, error) {
	ir := &Reader{mem: b}
	if err := ir.readHeader(); err != nil {
		return nil, err
	}
	return ir, nil
}

// Stable reports whether record Data stays valid after the next Next
// (true for NewReaderBytes).
func (r *Reader) Stable() bool { return r.mem != nil }

// readFull fills p from the stream, like io.ReadFull.
func (r *Reader) readFull(p []byte) (int, error) {
	if r.mem == nil {
		return io.ReadFull(r.br, p)
	}
	n := copy(p, r.mem[r.memPos:])
	r.memPos += n
	switch {
	case n == len(p):
		return n, nil
	case n == 0:
		return 0, io.EOF
	}
	return n, io.ErrUnexpectedEOF
}

// headerErr builds an error about the stream header.
func headerErr(kind error, format string, args ...any) error {
	return &FormatError{Record: -1, Offset: 0, Msg: fmt.Sprintf(format, args...), Err: kind}
}

func (r *Reader) readHeader() error {
	version, flags, n, err := frame.ReadStreamHeader(readerFunc(r.readFull), Magic, Version)
	r.off += int64(n)
	var ce *frame.ChecksumError
	switch {
	case errors.Is(err, frame.ErrBadMagic):
		return headerErr(ErrBadMagic, "%v: not a ferry image", err)
	case errors.Is(err, frame.ErrVersion):
		return headerErr(ErrVersion, "%s", strings.TrimPrefix(err.Error(), frame.ErrVersion.Error()+": "))
	case errors.Is(err, frame.ErrTruncated):
		return headerErr(ErrTruncated, "%v", err)
	case errors.As(err, &ce):
		return headerErr(ErrChecksum, "%v", err)
	case err != nil:
		return headerErr(err, "reading header: %v", err)
	case flags != 0:
		return headerErr(ErrVersion, "unknown header flags %#x", flags)
	}
	r.version = version
	var h [HeaderSize]byte
	frame.PutStreamHeader(&h, Magic, version, flags)
	r.running = runningStart(h[:])
	r.stats.TotalBytes = HeaderSize
	return nil
}

// readerFunc makes a read function an io.Reader.
type readerFunc func(p []byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func isEOF(err error) bool { return err == io.EOF || err == io.ErrUnexpectedEOF }

// Version is the format version of the stream.
func (r *Reader) Version() uint32 { return r.version }

// State returns the checkpoint once the state record has been read, nil
// before.
func (r *Reader) State() *Checkpoint { return r.state }

// Stats reports what was read so far.
func (r *Reader) Stats() Stats { return r.stats }

// Next returns the next record. It returns io.EOF, and only then, after a
// valid trailer; see Record for how long the result stays valid. Errors
// are sticky: once Next fails it keeps returning the same error.
func (r *Reader) Next() (*Record, error) {
	if r.err != nil {
		return nil, r.err
	}
	rec, err := r.next()
	if err != nil {
		r.err = err
		return nil, err
	}
	return rec, nil
}

// fail builds an error about the current record.
func (r *Reader) fail(kind error, format string, args ...any) error {
	return &FormatError{Record: r.index, Offset: r.recOff, Type: r.recType, Msg: fmt.Sprintf(format, args...), Err: kind}
}

func (r *Reader) readFail(err error, what string, got, want int) error {
	if isEOF(err) {
		if what == "record header" && got == 0 {
			return r.fail(ErrTruncated, "truncated: stream ends without a trailer")
		}
		return r.fail(ErrTruncated, "truncated: %s has %d of %d bytes", what, got, want)
	}
	return r.fail(err, "reading %s: %v", what, err)
}

func (r *Reader) next() (*Record, error) {
	r.recOff, r.recType = r.off, 0
	h := &r.hdr
	n, err := r.readFull(h[:])
	r.off += int64(n)
	if err != nil {
		return nil, r.readFail(err, "record header", n, RecordHeaderSize)
	}
	fh, err := frame.Decode(h[:], MaxPayload)
	if err != nil && errors.Is(err, frame.ErrChecksum) {
		return nil, r.fail(ErrChecksum, "record %v", err)
	}
	t := RecordType(fh.Kind)
	r.recType = t
	if err := r.checkKind(t, fh.Flags); err != nil {
		return nil, err
	}
	if err != nil { // a *frame.SizeError
		return nil, r.fail(ErrMalformed, "%v", err)
	}
	if err := r.checkRecordHeader(t, fh.Len); err != nil {
		return nil, err
	}
	size := int(fh.Len)

	p, crc, n, err := r.readPayload(size, fh.Seed)
	r.off += int64(n)
	if err != nil {
		return nil, r.readFail(err, "payload", n, size)
	}
	if fh.CheckPayload(crc) != nil {
		return nil, r.fail(ErrChecksum, "checksum mismatch (stored 0x%08x, computed 0x%08x)", fh.PayloadCRC, crc)
	}

	if t == RecordTrailer {
		if err := r.checkTrailer(p); err != nil {
			return nil, err
		}
		r.stats.Records++
		r.stats.TotalBytes += int64(RecordHeaderSize + size)
		return nil, io.EOF
	}

	rec := &r.rec
	*rec = Record{Type: t}
	switch t {
	case RecordState:
		var c *Checkpoint
		if err := json.Unmarshal(p, &c); err != nil {
			return nil, r.fail(ErrMalformed, "decoding state: %v", err)
		}
		if c == nil {
			return nil, r.fail(ErrMalformed, "state is null")
		}
		info, err := checkState(c)
		if err != nil {
			return nil, r.fail(ErrMalformed, "invalid state: %v", err)
		}
		r.state, r.info = c, info
		rec.State = c
		r.stats.StateBytes += int64(size)
	case RecordFileData:
		off := binary.LittleEndian.Uint64(p[0:])
		idLen := int(binary.LittleEndian.Uint16(p[8:]))
		if idLen == 0 || idLen > MaxFileIDLen || fileDataPrefixSize+idLen > size {
			return nil, r.fail(ErrMalformed, "file id length %d does not fit [1, %d] and the %d-byte payload", idLen, MaxFileIDLen, size)
		}
		data := p[fileDataPrefixSize+idLen:]
		if off > uint64(math.MaxInt64-len(data)) {
			return nil, r.fail(ErrMalformed, "file data offset %d out of range", off)
		}
		rec.FileID = string(p[fileDataPrefixSize : fileDataPrefixSize+idLen])
		rec.Offset = int64(off)
		rec.Data = data
		r.stats.FileBytes += int64(len(data))
	case RecordSignals:
		var sigs []PendingSignal
		if err := json.Unmarshal(p, &sigs); err != nil {
			return nil, r.fail(ErrMalformed, "decoding signals: %v", err)
		}
		for _, s := range sigs {
			if _, ok := r.info.pids[s.PID]; !ok {
				return nil, r.fail(ErrMalformed, "signal for pid %d, which is not in the checkpoint", s.PID)
			}
			if len(s.Info) != 128 {
				return nil, r.fail(ErrMalformed, "siginfo of %d bytes, want 128", len(s.Info))
			}
		}
		rec.Signals = sigs
	case RecordLazy:
		pid, v, err := decodeLazy(p, r.info)
		if err != nil {
			return nil, r.fail(ErrMalformed, "%v", err)
		}
		rec.PID, rec.Lazy = pid, v
	case RecordPages:
		pid := int(binary.LittleEndian.Uint32(p[0:]))
		addr := binary.LittleEndian.Uint64(p[4:])
		data := p[pagesPrefixSize:]
		if _, ok := r.info.pids[pid]; !ok {
			return nil, r.fail(ErrMalformed, "pages for pid %d, which is not in the checkpoint", pid)
		}
		if addr%uint64(r.info.pageSize) != 0 {
			return nil, r.fail(ErrMalformed, "page address %#x is not aligned to the %d-byte page size", addr, r.info.pageSize)
		}
		if _, carry := bits.Add64(addr, uint64(len(data)), 0); carry != 0 {
			return nil, r.fail(ErrMalformed, "pages at %#x, %d bytes: range wraps the address space", addr, len(data))
		}
		rec.PID, rec.Addr, rec.Data = pid, addr, data
		r.pagesSeen = true
		r.stats.PageBytes += int64(len(data))
		r.stats.Pages += int64(len(data) / r.info.pageSize)
	}
	r.running = runningAdd(r.running, h[:])
	r.payload += uint64(size)
	r.stats.Records++
	r.stats.TotalBytes += int64(RecordHeaderSize + size)
	r.index++
	return rec, nil
}

// checkKind rejects a record of an unknown type or with flags set.
func (r *Reader) checkKind(t RecordType, flags uint16) error {
	if t < RecordState || t > RecordLazy {
		return r.fail(ErrMalformed, "unknown record type %d", uint16(t))
	}
	if flags != 0 {
		return r.fail(ErrMalformed, "reserved record flags %#x are set", flags)
	}
	return nil
}

// checkRecordHeader rejects, before any payload is read or allocated, a
// record whose length (at most MaxPayload, checked by frame.Decode)
// cannot be right for its type at this point.
func (r *Reader) checkRecordHeader(t RecordType, size uint32) error {
	if r.state == nil && t != RecordState {
		return r.fail(ErrMalformed, "%s record before the state record", t)
	}
	switch t {
	case RecordState:
		if r.state != nil {
			return r.fail(ErrMalformed, "second state record")
		}
		if size == 0 {
			return r.fail(ErrMalformed, "empty state record")
		}
	case RecordFileData:
		if size < fileDataPrefixSize+1 {
			return r.fail(ErrMalformed, "payload length %d is too short for file data", size)
		}
	case RecordPages:
		ps := uint32(r.info.pageSize)
		if size < pagesPrefixSize+ps || (size-pagesPrefixSize)%ps != 0 {
			return r.fail(ErrMalformed, "payload length %d is not %d bytes plus a positive multiple of the %d-byte page size", size, pagesPrefixSize, ps)
		}
	case RecordSignals:
		if size == 0 {
			return r.fail(ErrMalformed, "empty signals record")
		}
	case RecordLazy:
		if size < lazyPrefixSize+lazyRunSize || (size-lazyPrefixSize)%lazyRunSize != 0 {
			return r.fail(ErrMalformed, "payload length %d is not %d bytes plus a positive multiple of %d", size, lazyPrefixSize, lazyRunSize)
		}
		if r.pagesSeen {
			return r.fail(ErrMalformed, "lazy record after pages")
		}
	case RecordTrailer:
		if size != trailerSize {
			return r.fail(ErrMalformed, "trailer payload length %d, want %d", size, trailerSize)
		}
	}
	return nil
}

// readPayload returns the next n bytes, how many it consumed and their
// CRC32C continued from crc. Payloads that fit the read buffer are
// returned in place (valid until the next read); larger ones go to r.buf,
// checksummed piece by piece as they arrive, while each piece is still in
// the CPU cache, rather than in a second pass over memory.
func (r *Reader) readPayload(n int, crc uint32) ([]byte, uint32, int, error) {
	if r.mem != nil {
		p := r.mem[r.memPos:min(len(r.mem), r.memPos+n)]
		r.memPos += len(p)
		var err error
		if len(p) < n {
			err = io.ErrUnexpectedEOF
			if len(p) == 0 {
				err = io.EOF
			}
		}
		return p, frame.Update(crc, p), len(p), err
	}
	if n <= r.br.Size() {
		p, err := r.br.Peek(n)
		if _, derr := r.br.Discard(len(p)); err == nil {
			err = derr
		}
		return p, frame.Update(crc, p), len(p), err
	}
	b := r.buf[:0]
	for len(b) < n {
		if len(b) == cap(b) {
			// Grow only as bytes arrive, so that a length that passed the
			// header checks but lies cannot force a large allocation on a
			// short stream.
			nb := make([]byte, len(b), min(n, max(2*cap(b), 1<<20)))
			copy(nb, b)
			b = nb
		}
		piece := b[len(b):min(n, cap(b), len(b)+crcPiece)]
		m, err := io.ReadFull(r.br, piece)
		crc = frame.Update(crc, piece[:m])
		b = b[:len(b)+m]
		if err != nil {
			r.buf = b[:0]
			return nil, crc, len(b), err
		}
	}
	r.buf = b
	return b, crc, n, nil
}

// crcPiece is how much of a large payload is read before checksumming it:
// small enough to stay in the CPU cache, large enough that a read from a
// file or socket is not dominated by system call cost.
const crcPiece = 256 << 10

func (r *Reader) checkTrailer(p []byte) error {
	records := binary.LittleEndian.Uint64(p[0:])
	payload := binary.LittleEndian.Uint64(p[8:])
	running := binary.LittleEndian.Uint32(p[16:])
	if reserved := binary.LittleEndian.Uint32(p[20:]); reserved != 0 {
		return r.fail(ErrMalformed, "trailer reserved field is %#x, want 0", reserved)
	}
	if records != uint64(r.index) {
		return r.fail(ErrChecksum, "trailer counts %d records but the stream had %d: records were dropped or added", records, r.index)
	}
	if payload != r.payload {
		return r.fail(ErrChecksum, "trailer counts %d payload bytes but the stream had %d", payload, r.payload)
	}
	if running != r.running {
		return r.fail(ErrChecksum, "running checksum mismatch (stored 0x%08x, computed 0x%08x): records were reordered or replaced", running, r.running)
	}
	return nil
}
