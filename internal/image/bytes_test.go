package image

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
)

func sampleStream(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	c := &Checkpoint{Root: 3, PageSize: 4096, Processes: []*Process{{PID: 3}}}
	if err := w.WriteState(c); err != nil {
		t.Fatal(err)
	}
	pages := bytes.Repeat([]byte{0xab}, 200*4096)
	if err := w.WriteFileData("obj:1:2", 0, []byte("content")); err != nil {
		t.Fatal(err)
	}
	if err := w.WritePages(3, 0x10000, pages); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type recSummary struct {
	t      RecordType
	pid    int
	addr   uint64
	fileID string
	data   string
}

func readSummaries(r *Reader) ([]recSummary, error) {
	var out []recSummary
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, recSummary{rec.Type, rec.PID, rec.Addr, rec.FileID, string(rec.Data)})
	}
}

// TestReaderBytesMatchesStream: the in-memory reader yields exactly the
// records of the streaming reader, and refuses damage the same way.
func TestReaderBytesMatchesStream(t *testing.T) {
	img := sampleStream(t)
	sr, err := NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	want, err := readSummaries(sr)
	if err != nil {
		t.Fatal(err)
	}
	br, err := NewReaderBytes(img)
	if err != nil {
		t.Fatal(err)
	}
	if !br.Stable() {
		t.Error("NewReaderBytes reader is not Stable")
	}
	got, err := readSummaries(br)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("bytes reader: %d records, stream reader %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("record %d differs between the readers", i)
		}
	}
	for _, tc := range []struct {
		name string
		img  []byte
		want error
	}{
		{"truncated header", img[:10], ErrTruncated},
		{"truncated record header", img[:HeaderSize+5], ErrTruncated},
		{"truncated payload", img[:len(img)/2], ErrTruncated},
		{"no trailer", img[:len(img)-trailerSize-RecordHeaderSize], ErrTruncated},
		{"corrupt payload", func() []byte { c := bytes.Clone(img); c[len(c)/2] ^= 1; return c }(), ErrChecksum},
		{"bad magic", append([]byte("NOTFERRY"), img[8:]...), ErrBadMagic},
	} {
		r, err := NewReaderBytes(tc.img)
		if err == nil {
			_, err = readSummaries(r)
		}
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

// TestDirectPagesMatchBuffered: page data written to a file take the
// writev path; the file must hold exactly the bytes of the buffered path.
func TestDirectPagesMatchBuffered(t *testing.T) {
	write := func(w io.Writer) {
		iw, err := NewWriter(w)
		if err != nil {
			t.Fatal(err)
		}
		c := &Checkpoint{Root: 3, PageSize: 4096, Processes: []*Process{{PID: 3}}}
		if err := iw.WriteState(c); err != nil {
			t.Fatal(err)
		}
		pages := make([]byte, 3<<20+4096) // several writev batches' worth of records, odd tail
		for i := range pages {
			pages[i] = byte(i * 7)
		}
		iw.WritePages(3, 0x100000, pages[:8192]) // small: buffered
		iw.WritePages(3, 0x200000, pages)        // large: direct
		iw.WriteFileData("obj:1:1", 0, []byte("after"))
		if err := iw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	var buffered bytes.Buffer
	write(&buffered)
	f, err := os.CreateTemp(t.TempDir(), "img")
	if err != nil {
		t.Fatal(err)
	}
	write(f)
	direct, err := os.ReadFile(f.Name())
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(direct, buffered.Bytes()) {
		t.Fatalf("file written with writev (%d bytes) differs from the buffered stream (%d bytes)", len(direct), buffered.Len())
	}
	r, err := NewReaderBytes(direct)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := readSummaries(r); err != nil {
		t.Fatalf("reading the writev-written image: %v", err)
	}
}
