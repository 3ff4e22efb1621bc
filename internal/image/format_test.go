package image

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"
)

const testPage = 4096

// testCheckpoint is a small two-process tree exercising most state fields.
func testCheckpoint() *Checkpoint {
	return &Checkpoint{
		Root:         100,
		Kernel:       "6.8.0-test",
		Hostname:     "src",
		PageSize:     testPage,
		TimeUnixNano: 1700000000123456789,
		Processes: []*Process{
			{
				PID: 100, PPID: 1, PGID: 100, SID: 100, Comm: "server", Exe: "/usr/bin/server", Cwd: "/srv",
				Umask:   0o022,
				Creds:   Creds{UID: [4]uint32{1000, 1000, 1000, 1000}, GID: [4]uint32{1000, 1000, 1000, 1000}, CapEff: 0},
				Rlimits: []Rlimit{{Resource: 7, Cur: 1024, Max: 4096}},
				MM:      MM{StartBrk: 0x600000, Brk: 0x621000, Auxv: []uint64{6, 4096, 0, 0}},
				VMAs: []VMA{
					{Start: 0x400000, End: 0x402000, Prot: 5, Kind: VMAFile, Path: "/usr/bin/server", Name: "/usr/bin/server"},
					{Start: 0x600000, End: 0x621000, Prot: 3, Kind: VMAAnon, Name: "[heap]"},
					{Start: 0x7f0000000000, End: 0x7f0000004000, Prot: 3, Shared: true, Kind: VMAMemfd, Name: "/memfd:buf (deleted)", FileID: "obj:1:2"},
					{Start: 0x7ffffffde000, End: 0x7ffffffff000, Prot: 3, Kind: VMAAnon, Name: "[stack]", GrowsDown: true},
				},
				Threads: []*Thread{
					{TID: 100, Regs: make([]uint64, 27), Xstate: []byte{1, 2, 3}, SigMask: 1 << 9, Name: "server", InSyscall: true},
					{TID: 101, Regs: make([]uint64, 27), Name: "worker", Altstack: Stack{SP: 0x7000, Size: 8192}},
				},
				Sigactions: func() []Sigaction {
					s := make([]Sigaction, 64)
					s[1] = Sigaction{Handler: 0x401234, Flags: 0x14000004}
					s[12] = Sigaction{Handler: 1}
					return s
				}(),
				Itimers:     [3]Itimer{{IntervalUsec: 0, ValueUsec: 1500000}},
				PosixTimers: []PosixTimer{{ID: 0, ClockID: 1, Signal: 14, ValueNsec: 2e9, IntervalNsec: 1e9}},
				FDs: []FD{
					{Num: 0, Desc: "d0", Kind: FDChar, Flags: 2, Path: "/dev/null"},
					{Num: 3, Desc: "d3", Kind: FDPipe, PipeID: "pipe:1", Buffered: []byte("hello")},
					{Num: 4, Desc: "d3", CloExec: true},
					{Num: 5, Desc: "d5", Kind: FDMemfd, FileID: "obj:1:2", Flags: 2},
					{Num: 6, Desc: "d6", Kind: FDUnix, SockType: 1, SockPeer: "d7", SockQueue: [][]byte{[]byte("xy")}},
					{Num: 7, Desc: "d7", Kind: FDEpoll, Epoll: []EpollItem{{FD: 3, Events: 1, Data: 3}}},
				},
			},
			{PID: 101, PPID: 100, PGID: 100, SID: 100, Comm: "child", Threads: []*Thread{{TID: 101}},
				VMAs: []VMA{{Start: 0x10000, End: 0x20000, Prot: 3, Kind: VMAAnon}}},
		},
	}
}

// pattern returns n bytes that differ from page to page.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i/testPage) ^ byte(i) ^ seed
	}
	return b
}

// encode runs fill on a Writer over a buffer and closes it.
func encode(t testing.TB, fill func(w *Writer) error) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if err := fill(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// standardStream is a small valid image: state, file data, three pages
// records.
func standardStream(t testing.TB) []byte { return streamOf(t, testCheckpoint()) }

// tinyCheckpoint has just what standardStream's records need; the tests
// that try every byte of a stream use it to stay fast.
func tinyCheckpoint() *Checkpoint {
	return &Checkpoint{Root: 100, PageSize: testPage, Processes: []*Process{{PID: 100}, {PID: 101}}}
}

func streamOf(t testing.TB, c *Checkpoint) []byte {
	return encode(t, func(w *Writer) error {
		return errors.Join(
			w.WriteState(c),
			w.WriteFileData("obj:1:2", 0, []byte("memfd contents")),
			w.WritePages(100, 0x600000, pattern(2*testPage, 1)),
			w.WritePages(100, 0x7ffffffde000, pattern(testPage, 2)),
			w.WritePages(101, 0x10000, pattern(3*testPage, 3)),
		)
	})
}

// gotRecord is a copy of a Record that outlives Next.
type gotRecord struct {
	Type   RecordType
	PID    int
	Addr   uint64
	FileID string
	Offset int64
	Data   []byte
	State  *Checkpoint
}

// reuse reads a stream through one bufio.Reader, so that loops over many
// streams do not allocate a read buffer each time.
type reuse struct{ br *bufio.Reader }

func (u *reuse) readAll(b []byte) ([]gotRecord, *Reader, error) {
	if u.br == nil {
		u.br = bufio.NewReaderSize(nil, bufSize)
	}
	u.br.Reset(bytes.NewReader(b))
	return readAll(u.br)
}

func readAll(r io.Reader) ([]gotRecord, *Reader, error) {
	ir, err := NewReader(r)
	if err != nil {
		return nil, nil, err
	}
	recs, err := drain(ir)
	return recs, ir, err
}

// drain reads the records left in ir, copied.
func drain(ir *Reader) ([]gotRecord, error) {
	var recs []gotRecord
	for {
		rec, err := ir.Next()
		if err == io.EOF {
			return recs, nil
		}
		if err != nil {
			return recs, err
		}
		recs = append(recs, gotRecord{rec.Type, rec.PID, rec.Addr, rec.FileID, rec.Offset, bytes.Clone(rec.Data), rec.State})
	}
}

// castagnoli is the CRC32C table. The tests craft records by hand, apart
// from the codec, so that the layout in doc.go is what is checked.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// splitStream cuts a stream into its header and records (the trailer is
// the last record), trusting the length fields.
func splitStream(t testing.TB, s []byte) (header []byte, records [][]byte) {
	t.Helper()
	header, s = s[:HeaderSize], s[HeaderSize:]
	for len(s) > 0 {
		n := RecordHeaderSize + int(binary.LittleEndian.Uint32(s[4:]))
		records = append(records, s[:n])
		s = s[n:]
	}
	return header, records
}

// craft builds a record with valid CRCs whatever its content.
func craft(t RecordType, flags uint16, length uint32, payload []byte) []byte {
	var h [RecordHeaderSize]byte
	binary.LittleEndian.PutUint16(h[0:], uint16(t))
	binary.LittleEndian.PutUint16(h[2:], flags)
	binary.LittleEndian.PutUint32(h[4:], length)
	crc := crc32.Update(crc32.Update(0, castagnoli, h[:8]), castagnoli, payload)
	binary.LittleEndian.PutUint32(h[8:], crc)
	binary.LittleEndian.PutUint32(h[12:], crc32.Checksum(h[:12], castagnoli))
	return append(h[:], payload...)
}

func rec(t RecordType, payload []byte) []byte { return craft(t, 0, uint32(len(payload)), payload) }

func header(version, flags uint32) []byte {
	var h [HeaderSize]byte
	copy(h[:], Magic)
	binary.LittleEndian.PutUint32(h[8:], version)
	binary.LittleEndian.PutUint32(h[12:], flags)
	binary.LittleEndian.PutUint32(h[16:], crc32.Checksum(h[:16], castagnoli))
	return h[:]
}

// assemble joins a valid header, records and a trailer that matches them.
func assemble(records ...[]byte) []byte {
	h := header(Version, 0)
	out := append([]byte(nil), h...)
	running := runningStart(h)
	var payload uint64
	for _, r := range records {
		out = append(out, r...)
		running = runningAdd(running, r)
		payload += uint64(len(r) - RecordHeaderSize)
	}
	return append(out, trailerRec(uint64(len(records)), payload, running, 0)...)
}

func trailerRec(records, payload uint64, running, reserved uint32) []byte {
	var p [trailerSize]byte
	binary.LittleEndian.PutUint64(p[0:], records)
	binary.LittleEndian.PutUint64(p[8:], payload)
	binary.LittleEndian.PutUint32(p[16:], running)
	binary.LittleEndian.PutUint32(p[20:], reserved)
	return rec(RecordTrailer, p[:])
}

func stateRec(c *Checkpoint) []byte {
	js, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	return rec(RecordState, js)
}

func pagesRec(pid uint32, addr uint64, data []byte) []byte {
	p := binary.LittleEndian.AppendUint32(nil, pid)
	p = binary.LittleEndian.AppendUint64(p, addr)
	return rec(RecordPages, append(p, data...))
}

func fileRec(off uint64, idLen uint16, id string, data []byte) []byte {
	p := binary.LittleEndian.AppendUint64(nil, off)
	p = binary.LittleEndian.AppendUint16(p, idLen)
	p = append(p, id...)
	return rec(RecordFileData, append(p, data...))
}

// split is what a Writer makes of large content: records of writeChunk
// bytes with consecutive addresses or offsets.
func split(r gotRecord) []gotRecord {
	var out []gotRecord
	for data := r.Data; len(data) > 0; {
		part := data[:min(len(data), writeChunk)]
		out = append(out, gotRecord{Type: r.Type, PID: r.PID, Addr: r.Addr, FileID: r.FileID, Offset: r.Offset, Data: part})
		if r.Type == RecordPages {
			r.Addr += uint64(len(part))
		} else {
			r.Offset += int64(len(part))
		}
		data = data[len(part):]
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	big := pattern(MaxPayload+3*testPage, 7) // more than the largest record
	bigFile := pattern(MaxPayload+5, 9)

	tests := []struct {
		name  string
		write func(w *Writer) error
		want  []gotRecord // State records are compared by PID list only
	}{
		{
			name:  "state only",
			write: func(w *Writer) error { return w.WriteState(testCheckpoint()) },
			want:  []gotRecord{{Type: RecordState}},
		},
		{
			name: "state, file data and pages",
			write: func(w *Writer) error {
				return errors.Join(
					w.WriteState(testCheckpoint()),
					w.WriteFileData("obj:1:2", 4096, []byte("abc")),
					w.WritePages(100, 0x600000, pattern(testPage, 1)),
					w.WriteFileData("obj:1:3", 0, nil),
					w.WritePages(101, 0x10000, pattern(2*testPage, 2)),
					w.WritePages(101, 0x20000, nil), // no-op
				)
			},
			want: []gotRecord{
				{Type: RecordState},
				{Type: RecordFileData, FileID: "obj:1:2", Offset: 4096, Data: []byte("abc")},
				{Type: RecordPages, PID: 100, Addr: 0x600000, Data: pattern(testPage, 1)},
				{Type: RecordFileData, FileID: "obj:1:3", Offset: 0, Data: []byte{}},
				{Type: RecordPages, PID: 101, Addr: 0x10000, Data: pattern(2*testPage, 2)},
			},
		},
		{
			name: "pages over the record limit are split",
			write: func(w *Writer) error {
				return errors.Join(w.WriteState(testCheckpoint()), w.WritePages(100, 0x7f0000000000, big))
			},
			want: append([]gotRecord{{Type: RecordState}},
				split(gotRecord{Type: RecordPages, PID: 100, Addr: 0x7f0000000000, Data: big})...),
		},
		{
			name: "file data over the record limit is split",
			write: func(w *Writer) error {
				return errors.Join(w.WriteState(testCheckpoint()), w.WriteFileData("obj:9:9", 10, bigFile))
			},
			want: append([]gotRecord{{Type: RecordState}},
				split(gotRecord{Type: RecordFileData, FileID: "obj:9:9", Offset: 10, Data: bigFile})...),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.write(w); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			got, r, err := readAll(bytes.NewReader(buf.Bytes()))
			if err != nil {
				t.Fatalf("reading back: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d records, want %d", len(got), len(tt.want))
			}
			bad := 0
			for i, g := range got {
				if bad > 5 {
					t.Fatal("too many differences")
				}
				want := tt.want[i]
				if g.Type == RecordState {
					if g.State == nil || len(g.State.Processes) != 2 || g.State.Processes[0].FDs[3].FileID != "obj:1:2" {
						t.Errorf("record %d: state %+v does not match what was written", i, g.State)
					}
					g.State = nil
				}
				if g.Type != want.Type || g.PID != want.PID || g.Addr != want.Addr || g.FileID != want.FileID ||
					g.Offset != want.Offset || !bytes.Equal(g.Data, want.Data) {
					bad++
					t.Errorf("record %d = {%v pid %d addr %#x file %q off %d, %d bytes}, want {%v pid %d addr %#x file %q off %d, %d bytes}",
						i, g.Type, g.PID, g.Addr, g.FileID, g.Offset, len(g.Data),
						want.Type, want.PID, want.Addr, want.FileID, want.Offset, len(want.Data))
				}
			}
			if ws, rs := w.Stats(), r.Stats(); ws != rs {
				t.Errorf("reader stats %+v, writer stats %+v", rs, ws)
			}
			if ws := w.Stats(); ws.TotalBytes != int64(buf.Len()) || ws.Records != len(tt.want)+1 {
				t.Errorf("writer stats %+v: want %d total bytes, %d records", ws, buf.Len(), len(tt.want)+1)
			}
		})
	}
}

// Records larger than the read buffer, up to MaxPayload, are valid even
// though this Writer does not make them.
func TestLargeRecords(t *testing.T) {
	sizes := []int{1 << 20, 600 << 10, 2 << 20, 300 << 10, 4096, (MaxPayload - pagesPrefixSize) / testPage * testPage}
	recs := [][]byte{stateRec(testCheckpoint())}
	var want []gotRecord
	addr := uint64(0x7f0000000000)
	for i, n := range sizes {
		data := pattern(n, byte(i))
		recs = append(recs, pagesRec(100, addr, data))
		want = append(want, gotRecord{Type: RecordPages, PID: 100, Addr: addr, Data: data})
		addr += uint64(n)
	}
	id := "obj:1:2"
	fileData := pattern(MaxPayload-fileDataPrefixSize-len(id), 42) // payload exactly MaxPayload
	recs = append(recs, fileRec(0, uint16(len(id)), id, fileData))
	want = append(want, gotRecord{Type: RecordFileData, FileID: id, Data: fileData})

	got, _, err := readAll(bytes.NewReader(assemble(recs...)))
	if err != nil {
		t.Fatal(err)
	}
	got = got[1:] // the state
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Addr != want[i].Addr || got[i].FileID != want[i].FileID || !bytes.Equal(got[i].Data, want[i].Data) {
			t.Errorf("record %d (%d bytes) differs from what was written (%d bytes)", i+1, len(got[i].Data), len(want[i].Data))
		}
	}
}

// The decoder must not care how the underlying reader splits its data.
func TestReadersThatReturnLittle(t *testing.T) {
	stream := standardStream(t)
	want, _, err := readAll(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	readers := map[string]func(io.Reader) io.Reader{
		"one byte":      iotest.OneByteReader,
		"half":          iotest.HalfReader,
		"data with EOF": iotest.DataErrReader,
		"small bufio":   func(r io.Reader) io.Reader { return bufio.NewReaderSize(r, 16) },
	}
	for name, wrap := range readers {
		t.Run(name, func(t *testing.T) {
			got, _, err := readAll(wrap(bytes.NewReader(stream)))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("got %d records, want %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i].Data, want[i].Data) || got[i].Addr != want[i].Addr {
					t.Errorf("record %d differs", i)
				}
			}
		})
	}
}

// A live migration reads records as they come: a record must be handed
// out without waiting for the next one.
func TestStreamingDoesNotReadAhead(t *testing.T) {
	pr, pw := io.Pipe()
	gotState := make(chan struct{})
	writeErr := make(chan error, 1)
	go func() {
		w, err := NewWriter(pw)
		if err == nil {
			err = w.WriteState(testCheckpoint())
		}
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			pw.CloseWithError(err)
			writeErr <- err
			return
		}
		<-gotState // the peer asks for pages only once it has the state
		err = errors.Join(w.WritePages(100, 0x600000, pattern(testPage, 1)), w.Close())
		pw.CloseWithError(err)
		writeErr <- err
	}()

	done := make(chan error, 1)
	go func() {
		r, err := NewReader(pr)
		if err != nil {
			done <- err
			return
		}
		rec, err := r.Next()
		if err != nil || rec.Type != RecordState {
			done <- fmt.Errorf("first record: %v, %v", rec, err)
			return
		}
		close(gotState)
		if rec, err = r.Next(); err != nil || rec.Type != RecordPages {
			done <- fmt.Errorf("second record: %v, %v", rec, err)
			return
		}
		if _, err = r.Next(); err != io.EOF {
			done <- fmt.Errorf("after the pages: %v, want EOF", err)
			return
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader blocked: it waits for data the writer has not sent")
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
}

func TestBufioReaderKeepsWhatFollows(t *testing.T) {
	stream := append(standardStream(t), "NEXT MESSAGE"...)
	br := bufio.NewReader(bytes.NewReader(stream))
	if _, _, err := readAll(br); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(br)
	if string(rest) != "NEXT MESSAGE" {
		t.Errorf("after the image the reader holds %q, want %q", rest, "NEXT MESSAGE")
	}
}

func TestHeader(t *testing.T) {
	badCRC := header(Version, 0)
	badCRC[17] ^= 1
	tests := []struct {
		name   string
		stream []byte
		want   error
		msg    string
	}{
		{"empty", nil, ErrTruncated, "header has 0 of 20 bytes"},
		{"magic prefix only", []byte("FERR"), ErrTruncated, "header has 4 of 20 bytes"},
		{"short garbage", []byte("abc"), ErrBadMagic, `bad magic "abc"`},
		{"other file", []byte("\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"), ErrBadMagic, "not a ferry image"},
		{"newer version", header(Version+1, 0), ErrVersion, "format version 2 is newer"},
		{"version 0", header(0, 0), ErrVersion, "version 0"},
		{"unknown flags", header(Version, 4), ErrVersion, "unknown header flags 0x4"},
		{"bad checksum", badCRC, ErrChecksum, "header checksum mismatch"},
		{"ends after header", header(Version, 0), nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewReader(bytes.NewReader(tt.stream))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("NewReader(%q) = %v, want %v", tt.stream, err, tt.want)
			}
			if err != nil && (!strings.HasPrefix(err.Error(), "image: header at offset 0: ") || !strings.Contains(err.Error(), tt.msg)) {
				t.Errorf("error %q does not say %q", err, tt.msg)
			}
		})
	}
}

// Every prefix of a valid stream is a truncated stream.
func TestTruncatedEverywhere(t *testing.T) {
	stream := streamOf(t, tinyCheckpoint())
	_, recs := splitStream(t, stream)
	var u reuse
	for cut := 0; cut < len(stream); cut++ {
		_, _, err := u.readAll(stream[:cut])
		if !errors.Is(err, ErrTruncated) {
			t.Fatalf("stream cut at %d of %d: err = %v, want ErrTruncated", cut, len(stream), err)
		}
	}

	// The named cases must also say where.
	rec1 := HeaderSize + len(recs[0]) // start of the file data record
	trailer := len(stream) - len(recs[len(recs)-1])
	tests := []struct {
		name string
		cut  int
		msg  string
	}{
		{"inside magic", 3, "image: header at offset 0: truncated: header has 3 of 20 bytes"},
		{"inside header checksum", 18, "image: header at offset 0: truncated: header has 18 of 20 bytes"},
		{"no records", HeaderSize, fmt.Sprintf("image: record 0 at offset %d: truncated: stream ends without a trailer", HeaderSize)},
		{"inside record header", rec1 + 5, fmt.Sprintf("image: record 1 at offset %d: truncated: record header has 5 of 16 bytes", rec1)},
		{"inside payload", rec1 + RecordHeaderSize + 3, fmt.Sprintf("image: record 1 (filedata) at offset %d: truncated: payload has 3 of ", rec1)},
		{"missing trailer", trailer, fmt.Sprintf("image: record 5 at offset %d: truncated: stream ends without a trailer", trailer)},
		{"inside trailer", len(stream) - 1, fmt.Sprintf("image: record 5 (trailer) at offset %d: truncated: payload has 23 of 24 bytes", trailer)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(bytes.NewReader(stream[:tt.cut]))
			if err == nil || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Errorf("cut at %d: %v, want %q", tt.cut, err, tt.msg)
			}
		})
	}
}

// Flipping any byte is detected, by the right check, at the right record.
func TestCorruptEveryByte(t *testing.T) {
	stream := streamOf(t, tinyCheckpoint())
	_, recs := splitStream(t, stream)
	type region struct {
		start, end int
		want       error
		record     int
	}
	regions := []region{
		{0, 8, ErrBadMagic, -1},
		{8, 12, ErrVersion, -1},
		{12, HeaderSize, ErrChecksum, -1},
	}
	off := HeaderSize
	for i, r := range recs {
		regions = append(regions, region{off, off + len(r), ErrChecksum, i})
		off += len(r)
	}
	var u reuse
	bad := make([]byte, len(stream))
	for _, reg := range regions {
		for i := reg.start; i < reg.end; i++ {
			copy(bad, stream)
			bad[i] ^= 0xff
			_, _, err := u.readAll(bad)
			if !errors.Is(err, reg.want) {
				t.Fatalf("byte %d flipped: err = %v, want %v", i, err, reg.want)
			}
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("byte %d flipped: %T is not a *FormatError", i, err)
			}
			if fe.Record != reg.record || (reg.record >= 0 && fe.Offset != int64(reg.start)) {
				t.Fatalf("byte %d flipped: error at record %d offset %d, want record %d offset %d: %v",
					i, fe.Record, fe.Offset, reg.record, reg.start, err)
			}
		}
	}
}

func TestChecksumMessage(t *testing.T) {
	stream := standardStream(t)
	_, recs := splitStream(t, stream)
	off := HeaderSize + len(recs[0]) + len(recs[1])
	stream[off+RecordHeaderSize+20] ^= 1 // inside record 2's page data
	_, _, err := readAll(bytes.NewReader(stream))
	want := fmt.Sprintf("image: record 2 (pages) at offset %d: checksum mismatch (stored ", off)
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Errorf("got %v, want %q...", err, want)
	}
}

func TestMalformed(t *testing.T) {
	st := stateRec(testCheckpoint())
	page := pattern(testPage, 0)
	badPageSize := testCheckpoint()
	badPageSize.PageSize = 3000
	dupPID := testCheckpoint()
	dupPID.Processes[1].PID = 100
	tests := []struct {
		name   string
		stream []byte
		record int
		msg    string
	}{
		{"type 0", assemble(craft(0, 0, 2, []byte("{}"))), 0, "unknown record type 0"},
		{"unknown type", assemble(st, craft(9, 0, 1, []byte{0})), 1, "unknown record type 9"},
		{"flags set", assemble(craft(RecordState, 1, uint32(len(st)-RecordHeaderSize), st[RecordHeaderSize:])), 0, "reserved record flags 0x1"},
		{"length over the limit", assemble(st, craft(RecordPages, 0, MaxPayload+1, nil)), 1, "payload length 67108865 exceeds"},
		{"length 4 GiB", assemble(craft(RecordState, 0, 0xffffffff, nil)), 0, "payload length 4294967295 exceeds"},
		{"bad JSON", assemble(rec(RecordState, []byte("{\"root\":"))), 0, "decoding state"},
		{"JSON of the wrong shape", assemble(rec(RecordState, []byte(`{"processes":7}`))), 0, "decoding state"},
		{"null state", assemble(rec(RecordState, []byte("null"))), 0, "state is null"},
		{"empty state", assemble(rec(RecordState, nil)), 0, "empty state record"},
		{"bad page size", assemble(stateRec(badPageSize)), 0, "page size 3000"},
		{"duplicate pid", assemble(stateRec(dupPID)), 0, "pid 100 appears twice"},
		{"pages before state", assemble(pagesRec(100, 0, page), st), 0, "pages record before the state record"},
		{"file data before state", assemble(fileRec(0, 1, "x", nil), st), 0, "filedata record before the state record"},
		{"trailer first", assemble(), 0, "trailer record before the state record"},
		{"second state", assemble(st, st), 1, "second state record"},
		{"pages not whole", assemble(st, pagesRec(100, 0x600000, page[:100])), 1, "payload length 112 is not 12 bytes plus"},
		{"no pages", assemble(st, pagesRec(100, 0x600000, nil)), 1, "payload length 12 is not"},
		{"pages misaligned", assemble(st, pagesRec(100, 0x600010, page)), 1, "page address 0x600010 is not aligned"},
		{"pages wrap", assemble(st, pagesRec(100, 1<<64-testPage, append(page, page...))), 1, "wraps the address space"},
		{"pages of unknown pid", assemble(st, pagesRec(555, 0x600000, page)), 1, "pages for pid 555, which is not in the checkpoint"},
		{"file id empty", assemble(st, fileRec(0, 0, "", []byte("x"))), 1, "file id length 0"},
		{"file id past payload", assemble(st, fileRec(0, 50, "abc", nil)), 1, "file id length 50"},
		{"file data too short", assemble(st, rec(RecordFileData, make([]byte, 10))), 1, "too short for file data"},
		{"file offset out of range", assemble(st, fileRec(1<<63, 1, "x", []byte("y"))), 1, "offset 9223372036854775808 out of range"},
		{"trailer length", append(header(Version, 0), append(st, rec(RecordTrailer, make([]byte, 8))...)...), 1, "trailer payload length 8, want 24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(bytes.NewReader(tt.stream))
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Record != tt.record || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want record %d saying %q", err, tt.record, tt.msg)
			}
		})
	}

	t.Run("trailer reserved", func(t *testing.T) {
		h := header(Version, 0)
		running := runningAdd(runningStart(h), st)
		stream := append(append(h, st...), trailerRec(1, uint64(len(st)-RecordHeaderSize), running, 7)...)
		if _, _, err := readAll(bytes.NewReader(stream)); !errors.Is(err, ErrMalformed) {
			t.Errorf("err = %v, want ErrMalformed", err)
		}
	})
}

// A length field claiming a huge payload must not make the reader
// allocate for it: above the limit it is rejected, below it the buffer
// grows only as bytes arrive.
func TestLengthDoesNotAllocate(t *testing.T) {
	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"over the limit", append(header(Version, 0), craft(RecordState, 0, 0xfffffff0, nil)...), ErrMalformed},
		{"at the limit, stream short", append(header(Version, 0), craft(RecordState, 0, MaxPayload, []byte("{}"))[:RecordHeaderSize+2]...), ErrTruncated},
		{"bad header checksum", func() []byte {
			r := rec(RecordState, []byte("{}"))
			binary.LittleEndian.PutUint32(r[4:], 0xffffffff)
			return append(header(Version, 0), r...)
		}(), ErrChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, _, err := readAll(bytes.NewReader(tt.stream))
			runtime.ReadMemStats(&after)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
				t.Errorf("reading a %d-byte stream allocated %d bytes", len(tt.stream), n)
			}
		})
	}
}

// The trailer catches records that are each intact but were dropped,
// duplicated or reordered.
func TestTrailerDetectsReorderAndDrop(t *testing.T) {
	hdr, recs := splitStream(t, standardStream(t))
	// recs: 0 state, 1 filedata, 2-4 pages, 5 trailer
	join := func(order ...int) []byte {
		out := bytes.Clone(hdr)
		for _, i := range order {
			out = append(out, recs[i]...)
		}
		return out
	}
	_, other := splitStream(t, encode(t, func(w *Writer) error { return w.WriteState(testCheckpoint()) }))
	tests := []struct {
		name   string
		stream []byte
		want   error
		msg    string
	}{
		{"intact", join(0, 1, 2, 3, 4, 5), nil, ""},
		{"pages swapped", join(0, 1, 3, 2, 4, 5), ErrChecksum, "running checksum mismatch"},
		{"file data moved", join(0, 2, 3, 1, 4, 5), ErrChecksum, "running checksum mismatch"},
		{"pages dropped", join(0, 1, 2, 4, 5), ErrChecksum, "trailer counts 5 records but the stream had 4"},
		{"pages duplicated", join(0, 1, 2, 3, 3, 4, 5), ErrChecksum, "trailer counts 5 records but the stream had 6"},
		{"state moved", join(2, 0, 1, 3, 4, 5), ErrMalformed, "pages record before the state record"},
		{"trailer dropped", join(0, 1, 2, 3, 4), ErrTruncated, "stream ends without a trailer"},
		{"another image's trailer", append(join(0, 1, 2, 3, 4), other[len(other)-1]...), ErrChecksum, "trailer counts 1 records"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := readAll(bytes.NewReader(tt.stream))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %q, want it to say %q", err, tt.msg)
			}
		})
	}
}

func TestErrorsAreSticky(t *testing.T) {
	stream := standardStream(t)
	r, err := NewReader(bytes.NewReader(stream[:len(stream)-1]))
	if err != nil {
		t.Fatal(err)
	}
	var first error
	for first == nil {
		_, first = r.Next()
	}
	if _, again := r.Next(); again != first {
		t.Errorf("second Next after an error = %v, want the same %v", again, first)
	}
	r, _ = NewReader(bytes.NewReader(stream))
	for err == nil {
		_, err = r.Next()
	}
	if _, again := r.Next(); err != io.EOF || again != io.EOF {
		t.Errorf("Next after the trailer = %v, %v; want io.EOF twice", err, again)
	}
}

type failingWriter struct{ after int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.after {
		n := f.after
		f.after = 0
		return n, errors.New("disk full")
	}
	f.after -= len(p)
	return len(p), nil
}

func TestWriterErrors(t *testing.T) {
	page := pattern(testPage, 0)
	bigPages := testCheckpoint()
	bigPages.PageSize = 16384
	tests := []struct {
		name string
		do   func(w *Writer) error
		msg  string
	}{
		{"pages before state", func(w *Writer) error { return w.WritePages(100, 0x600000, page) }, "pages before the state record"},
		{"file data before state", func(w *Writer) error { return w.WriteFileData("x", 0, nil) }, "file data before the state record"},
		{"nil state", func(w *Writer) error { return w.WriteState(nil) }, "nil checkpoint"},
		{"bad page size", func(w *Writer) error {
			c := testCheckpoint()
			c.PageSize = 5000
			return w.WriteState(c)
		}, "page size 5000"},
		{"second state", func(w *Writer) error {
			return errors.Join(w.WriteState(testCheckpoint()), w.WriteState(testCheckpoint()))
		}, "state record already written"},
		{"unknown pid", func(w *Writer) error {
			return errors.Join(w.WriteState(testCheckpoint()), w.WritePages(7, 0x600000, page))
		}, "pid 7, which is not in the checkpoint"},
		{"misaligned address", func(w *Writer) error {
			return errors.Join(w.WriteState(testCheckpoint()), w.WritePages(100, 0x600001, page))
		}, "not aligned"},
		{"partial page", func(w *Writer) error {
			return errors.Join(w.WriteState(testCheckpoint()), w.WritePages(100, 0x600000, page[:10]))
		}, "not aligned"},
		{"4K pages in a 16K image", func(w *Writer) error {
			return errors.Join(w.WriteState(bigPages), w.WritePages(100, 0x600000, page))
		}, "16384-byte page size"},
		{"empty file id", func(w *Writer) error {
			return errors.Join(w.WriteState(testCheckpoint()), w.WriteFileData("", 0, nil))
		}, "file id length 0"},
		{"negative offset", func(w *Writer) error {
			return errors.Join(w.WriteState(testCheckpoint()), w.WriteFileData("x", -1, nil))
		}, "offset -1 out of range"},
		{"close without state", func(w *Writer) error { return w.Close() }, "no state record"},
		{"write after close", func(w *Writer) error {
			_ = w.WriteState(testCheckpoint())
			_ = w.Close()
			return w.WritePages(100, 0x600000, page)
		}, "writer is closed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			w, err := NewWriter(&buf)
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.do(w); err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err = %v, want it to say %q", err, tt.msg)
			}
		})
	}

	t.Run("argument errors leave the stream usable", func(t *testing.T) {
		stream := encode(t, func(w *Writer) error {
			if err := w.WriteState(testCheckpoint()); err != nil {
				return err
			}
			if err := w.WritePages(100, 0x600001, page); err == nil {
				return errors.New("misaligned pages accepted")
			}
			return w.WritePages(100, 0x600000, page)
		})
		if _, _, err := readAll(bytes.NewReader(stream)); err != nil {
			t.Error(err)
		}
	})

	t.Run("write errors are sticky", func(t *testing.T) {
		w, err := NewWriter(&failingWriter{after: 100})
		if err != nil {
			t.Fatal(err)
		}
		err1 := errors.Join(w.WriteState(testCheckpoint()), w.WritePages(100, 0x600000, pattern(bufSize*2, 0)))
		err2 := w.Close()
		if err1 == nil || err2 == nil || !strings.Contains(err2.Error(), "disk full") {
			t.Errorf("errors %v, %v; want disk full from both", err1, err2)
		}
	})
}

// FuzzReader feeds arbitrary streams to the Reader. When fix is set the
// CRCs are recomputed first, so the fuzzer reaches the checks behind them.
// Run it with -fuzzminimizetime=5s or so: the default minute spent
// minimizing each new input dominates a short run.
// The Reader must not panic, must end every stream with io.EOF or an
// error wrapping one of the sentinels, and must not allocate for lengths
// it has not seen bytes for.
func FuzzReader(f *testing.F) {
	// Small seeds: the fuzzer minimizes every input that finds new
	// coverage, which takes minutes on a stream of tens of KiB.
	tiny := assemble(stateRec(tinyCheckpoint()), fileRec(3, 1, "z", []byte("q")), pagesRec(100, 0x600000, pattern(testPage, 0)))
	f.Add(tiny, false)
	f.Add(tiny, true)
	f.Add(tiny[:len(tiny)/2], false)
	f.Add([]byte(Magic), false)
	f.Add(assemble(rec(RecordState, []byte(`{"page_size":8192,"processes":[{"pid":1}]}`)), pagesRec(1, 0, make([]byte, 8192))), true)
	sentinels := []error{ErrBadMagic, ErrVersion, ErrChecksum, ErrTruncated, ErrMalformed}
	// One read buffer for all inputs (the code path is the same as
	// NewReader's own): allocating 512 KiB per input slows fuzzing tenfold.
	pool := sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}
	f.Fuzz(func(t *testing.T, data []byte, fix bool) {
		if fix {
			fixChecksums(data)
		}
		br := pool.Get().(*bufio.Reader)
		defer pool.Put(br)
		br.Reset(bytes.NewReader(data))
		r, err := NewReader(br)
		for i := 0; err == nil; i++ {
			if i > len(data) {
				t.Fatalf("more records than bytes")
			}
			var rec *Record
			rec, err = r.Next()
			if err == nil && rec.Type == RecordPages && len(rec.Data)%r.info.pageSize != 0 {
				t.Fatalf("pages record of %d bytes", len(rec.Data))
			}
		}
		if err == io.EOF {
			return
		}
		for _, s := range sentinels {
			if errors.Is(err, s) {
				return
			}
		}
		t.Fatalf("error %v wraps no sentinel", err)
	})
}

// fixChecksums recomputes the header and record CRCs of a stream in place,
// as far as the length fields allow.
func fixChecksums(b []byte) {
	if len(b) < HeaderSize {
		return
	}
	binary.LittleEndian.PutUint32(b[16:], crc32.Checksum(b[:16], castagnoli))
	for s := b[HeaderSize:]; len(s) >= RecordHeaderSize; {
		n := int(binary.LittleEndian.Uint32(s[4:]))
		end := min(len(s), RecordHeaderSize+n)
		crc := crc32.Update(crc32.Update(0, castagnoli, s[:8]), castagnoli, s[RecordHeaderSize:end])
		binary.LittleEndian.PutUint32(s[8:], crc)
		binary.LittleEndian.PutUint32(s[12:], crc32.Checksum(s[:12], castagnoli))
		s = s[end:]
	}
}

func BenchmarkWritePages(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20, 16 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			data := pattern(size, 1)
			w, err := NewWriter(io.Discard)
			if err != nil {
				b.Fatal(err)
			}
			if err := w.WriteState(testCheckpoint()); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for b.Loop() {
				if err := w.WritePages(100, 0x600000, data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkReadPages(b *testing.B) {
	const total = 256 << 20
	for _, size := range []int{4 << 10, 64 << 10, 1 << 20, 16 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			data := pattern(size, 1)
			stream := encode(b, func(w *Writer) error {
				if err := w.WriteState(testCheckpoint()); err != nil {
					return err
				}
				for i := 0; i < total/size; i++ {
					if err := w.WritePages(100, 0x600000, data); err != nil {
						return err
					}
				}
				return nil
			})
			b.SetBytes(total)
			b.ReportAllocs()
			for b.Loop() {
				r, err := NewReader(bytes.NewReader(stream))
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for {
					rec, err := r.Next()
					if err == io.EOF {
						break
					}
					if err != nil {
						b.Fatal(err)
					}
					n += len(rec.Data)
				}
				if n != total {
					b.Fatalf("read %d page bytes, want %d", n, total)
				}
			}
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}
