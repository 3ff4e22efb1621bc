package image

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	stream := encode(t, func(w *Writer) error {
		return errors.Join(
			w.WriteState(testCheckpoint()),
			w.WriteFileData("obj:1:2", 0, []byte("0123456789")),
			w.WriteFileData("obj:1:2", 4096, []byte("abc")),
			w.WriteFileData("obj:0:1", 0, nil),
			// Heap VMA 0x600000-0x621000: 3 pages, then 2 more of which
			// the second lies past the VMA's end.
			w.WritePages(100, 0x600000, pattern(3*testPage, 1)),
			w.WritePages(100, 0x620000, pattern(2*testPage, 2)),
			// The text VMA's last page, then an unmapped page.
			w.WritePages(100, 0x401000, pattern(2*testPage, 3)),
			w.WritePages(101, 0x10000, pattern(16*testPage, 4)),
		)
	})
	r, err := NewReader(bytes.NewReader(stream))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(r)
	if err != nil {
		t.Fatal(err)
	}
	wantProcs := []ProcessPages{
		{PID: 100, Pages: 7, Bytes: 7 * testPage, VMAPages: []int64{1, 4, 0, 0}, Outside: 2},
		{PID: 101, Pages: 16, Bytes: 16 * testPage, VMAPages: []int64{16}},
	}
	if !reflect.DeepEqual(s.Processes, wantProcs) {
		t.Errorf("Processes = %+v, want %+v", s.Processes, wantProcs)
	}
	wantFiles := []FileContent{
		{ID: "obj:0:1", Records: 1, Bytes: 0, End: 0},
		{ID: "obj:1:2", Records: 2, Bytes: 13, End: 4099},
	}
	if !reflect.DeepEqual(s.Files, wantFiles) {
		t.Errorf("Files = %+v, want %+v", s.Files, wantFiles)
	}
	if s.Stats.TotalBytes != int64(len(stream)) || s.Stats.Records != 9 || s.Stats.Pages != 23 {
		t.Errorf("Stats = %+v, want %d bytes, 9 records, 23 pages", s.Stats, len(stream))
	}
	if s.Version != Version || s.Checkpoint == nil || s.Checkpoint.Root != 100 {
		t.Errorf("Version %d, Checkpoint %+v", s.Version, s.Checkpoint)
	}

	t.Run("json", func(t *testing.T) {
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back Summary
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(&back, s) {
			t.Errorf("summary changed through JSON:\n%s", js)
		}
		for _, key := range []string{`"vma_pages":[1,4,0,0]`, `"outside":2`, `"total_bytes":`, `"checkpoint":{"root":100`} {
			if !bytes.Contains(js, []byte(key)) {
				t.Errorf("JSON lacks %s", key)
			}
		}
	})

	t.Run("text", func(t *testing.T) {
		var out strings.Builder
		if err := s.WriteText(&out); err != nil {
			t.Fatal(err)
		}
		// Column widths are tabwriter's business: compare with runs of
		// blanks squeezed.
		squeeze := func(s string) string {
			lines := strings.Split(s, "\n")
			for i, l := range lines {
				lines[i] = strings.Join(strings.Fields(l), " ")
			}
			return strings.Join(lines, "\n")
		}
		text := squeeze(out.String())
		for _, want := range []string{
			"ferry image v1: 9 records",
			"checkpoint of pid 100: 2 processes, kernel 6.8.0-test, host src, page size 4096, taken 2023-11-14T22:13:20.123456789Z",
			`process 100 "server" (ppid 1, pgid 100, sid 100)`,
			"7 pages (28.0 KiB) stored for 4 VMAs, 2 pages outside any VMA",
			"000000600000  000000621000  rw-p  anon         4/33    [heap]",
			"7f0000000000  7f0000004000  rw-s  memfd        0/4     /memfd:buf (deleted) obj:1:2",
			"in syscall",
			"0x7000+8192",
			"3   pipe      O_RDONLY",
			"pipe pipe:1 5 bytes buffered",
			"4   (dup)",
			"SOCK_STREAM peer d7 1 queued (2 bytes)",
			"watching [3:0x1]",
			"SIGINT   0x401234",
			"SA_SIGINFO|SA_RESTORER|SA_RESTART",
			"SIGPIPE  SIG_IGN",
			"ITIMER_REAL      value 1.5s interval 0s",
			"posix timer 0    CLOCK_MONOTONIC, signal SIGALRM, value 2s interval 1s",
			"obj:1:2  13     2        4099",
			"000000010000 000000020000 rw-p anon 16/16 -",
		} {
			if !strings.Contains(text, squeeze(want)) {
				t.Errorf("text lacks %q", want)
			}
		}
		if t.Failed() {
			t.Logf("text:\n%s", out.String())
		}
	})
}

// A damaged image still yields what could be read, with the error.
func TestSummarizePartial(t *testing.T) {
	stream := standardStream(t)
	r, err := NewReader(bytes.NewReader(stream[:len(stream)-30])) // cut inside the trailer
	if err != nil {
		t.Fatal(err)
	}
	s, err := Summarize(r)
	if !errors.Is(err, ErrTruncated) {
		t.Fatalf("err = %v, want ErrTruncated", err)
	}
	if s == nil || s.Checkpoint == nil || s.Processes[0].Pages != 3 || s.Processes[1].Pages != 3 {
		t.Fatalf("partial summary %+v lacks what was read", s)
	}
	var out strings.Builder
	if err := s.WriteText(&out); err != nil {
		t.Fatal(err)
	}
}

// A caller that already took the state record can still summarize the rest.
func TestSummarizeAfterState(t *testing.T) {
	r, err := NewReader(bytes.NewReader(standardStream(t)))
	if err != nil {
		t.Fatal(err)
	}
	if rec, err := r.Next(); err != nil || rec.Type != RecordState {
		t.Fatalf("first record: %v, %v", rec, err)
	}
	s, err := Summarize(r)
	if err != nil {
		t.Fatal(err)
	}
	if s.Checkpoint == nil || s.Processes[0].Pages != 3 || s.Processes[1].Pages != 3 || len(s.Files) != 1 {
		t.Errorf("summary %+v, want the state and 3+3 pages, 1 file", s)
	}
}

func TestVMAExtra(t *testing.T) {
	for _, tc := range []struct {
		v    VMA
		want string
	}{
		{VMA{}, ""},
		{VMA{VMFlags: []string{"dd", "lo", "lf"}}, " vmflags=dd,lo,lf"},
		{VMA{Shared: true, MayWrite: true, Prot: protRead}, " may-write"},
		{VMA{Shared: true, MayWrite: true, Prot: protRead | protWrite}, ""},
		{VMA{Inherited: [][2]uint64{{0x1000, 0x3000}, {0x5000, 0x6000}}}, " inherited=3"},
	} {
		if got := vmaExtra(&tc.v, 4096); got != tc.want {
			t.Errorf("vmaExtra(%+v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
