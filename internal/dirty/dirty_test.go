package dirty

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/ptrace"
)

// The helper child: the test binary re-executed with helperEnv set. It maps
// regions of memory and obeys one-line commands on stdin, answering each
// on stdout, so that the test knows exactly which pages it wrote:
//
//	ready <addr0> [<addr1>]   once, after every page is touched
//	w <region> <page>...      write the pages; answer "ok"
//	m <pages>                 map a new anonymous region; answer "ok <addr>"
//	r <region>                replace the region by a fresh mapping (MAP_FIXED)
//	d <region> <page>         madvise(MADV_DONTNEED) one page
//	q                         exit 0
//
// Region 0 is anonymous (helperPages pages); region 1, when helperFile
// names a file, is a private writable mapping of it.
const (
	helperEnv   = "FERRY_DIRTY_HELPER"
	helperPages = "FERRY_DIRTY_PAGES"
	helperFile  = "FERRY_DIRTY_FILE"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		if err := helper(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func helper() error {
	ps := os.Getpagesize()
	n, err := strconv.Atoi(os.Getenv(helperPages))
	if err != nil {
		return err
	}
	var regions [][]byte
	mapAnon := func(pages int) ([]byte, error) {
		b, err := unix.Mmap(-1, 0, pages*ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
		if err != nil {
			return nil, err
		}
		// One page written must dirty one page, not a huge page.
		return b, unix.Madvise(b, unix.MADV_NOHUGEPAGE)
	}
	b, err := mapAnon(n)
	if err != nil {
		return err
	}
	regions = append(regions, b)
	if path := os.Getenv(helperFile); path != "" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		st, _ := f.Stat()
		fb, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
		f.Close()
		if err != nil {
			return err
		}
		regions = append(regions, fb)
	}
	ready := "ready"
	for _, r := range regions {
		for i := 0; i < len(r); i += ps {
			r[i] = 1
		}
		ready += fmt.Sprintf(" %d", addrOf(r))
	}
	fmt.Println(ready)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		switch {
		case len(f) >= 2 && f[0] == "w":
			r, _ := strconv.Atoi(f[1])
			for _, s := range f[2:] {
				p, _ := strconv.Atoi(s)
				regions[r][p*ps]++
			}
			fmt.Println("ok")
		case len(f) == 2 && f[0] == "m":
			pages, _ := strconv.Atoi(f[1])
			b, err := mapAnon(pages)
			if err != nil {
				return err
			}
			regions = append(regions, b)
			fmt.Println("ok", addrOf(b))
		case len(f) == 2 && f[0] == "r", len(f) == 3 && f[0] == "d":
			r, _ := strconv.Atoi(f[1])
			if f[0] == "d" {
				p, _ := strconv.Atoi(f[2])
				err = unix.Madvise(regions[r][p*ps:(p+1)*ps], unix.MADV_DONTNEED)
			} else {
				err = mapFixed(regions[r])
			}
			if err != nil {
				return err
			}
			fmt.Println("ok")
		case len(f) == 1 && f[0] == "q":
			return nil
		default:
			return fmt.Errorf("bad command %q", in.Text())
		}
	}
	return fmt.Errorf("stdin: %v", in.Err())
}

type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	outF  *os.File
	out   *bufio.Reader
	addrs []uint64 // region addresses
}

// startChild starts the helper with pages anonymous pages (and file, if
// not empty, mapped privately) and waits for it to be ready.
func startChild(t testing.TB, pages int, file string) *child {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace and pidfd_getfd")
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=1", helperPages+"="+strconv.Itoa(pages), helperFile+"="+file)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); pr.Close() })
	c := &child{cmd: cmd, in: in, outF: pr, out: bufio.NewReader(pr)}
	f := strings.Fields(c.readLine(t))
	if len(f) < 2 || f[0] != "ready" {
		t.Fatalf("helper said %q, want ready", f)
	}
	for _, s := range f[1:] {
		a, _ := strconv.ParseUint(s, 10, 64)
		c.addrs = append(c.addrs, a)
	}
	return c
}

// readLine reads one answer; a helper that does not answer within the
// deadline is stuck (on a write fault, say) and fails the test.
func (c *child) readLine(t testing.TB) string {
	t.Helper()
	c.outF.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := c.out.ReadString('\n')
	if err != nil {
		t.Fatalf("helper %d did not answer: %v", c.cmd.Process.Pid, err)
	}
	return strings.TrimSpace(line)
}

// do sends one command and returns the fields of the answer after "ok".
func (c *child) do(t testing.TB, format string, args ...any) []string {
	t.Helper()
	if _, err := fmt.Fprintf(c.in, format+"\n", args...); err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(c.readLine(t))
	if len(f) == 0 || f[0] != "ok" {
		t.Fatalf("helper answered %q to %q", f, fmt.Sprintf(format, args...))
	}
	return f[1:]
}

func (c *child) write(t testing.TB, region int, pages ...int) {
	t.Helper()
	s := make([]string, len(pages))
	for i, p := range pages {
		s[i] = strconv.Itoa(p)
	}
	c.do(t, "w %d %s", region, strings.Join(s, " "))
}

// quit tells the helper to exit and checks that it exits 0.
func (c *child) quit(t testing.TB) {
	t.Helper()
	fmt.Fprintln(c.in, "q")
	if err := c.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
}

// startTracking freezes pid, starts a Tracker and thaws the process.
func startTracking(t testing.TB, pid int) *Tracker {
	t.Helper()
	tr := ptrace.NewTracer()
	defer tr.Close()
	var trk *Tracker
	err := tr.Do(context.Background(), func() error {
		fz, err := ptrace.Freeze(pid, 5*time.Second, nil)
		if err != nil {
			return err
		}
		trk, err = Start(pid, fz, testLogger())
		if terr := fz.Thaw(false); terr != nil && err == nil {
			err = terr
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { trk.Close() })
	return trk
}

// pagesIn returns the indices of the pages of [base, base+n pages) that rs
// covers.
func pagesIn(rs []Range, base uint64, n int) []int {
	ps := uint64(os.Getpagesize())
	end := base + uint64(n)*ps
	pages := []int{}
	for _, r := range rs {
		for a := max(r.Start, base); a < min(r.End, end); a += ps {
			pages = append(pages, int((a-base)/ps))
		}
	}
	return pages
}

func scan(t testing.TB, trk *Tracker) []Range {
	t.Helper()
	rs, err := trk.Scan()
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(rs); i++ {
		if rs[i-1].End >= rs[i].Start {
			t.Fatalf("Scan ranges not sorted and coalesced: %x", rs)
		}
	}
	return rs
}

func TestTrack(t *testing.T) {
	const pages = 64
	ps := os.Getpagesize()
	file := t.TempDir() + "/data"
	if err := os.WriteFile(file, make([]byte, 8*ps), 0o600); err != nil {
		t.Fatal(err)
	}
	c := startChild(t, pages, file)
	trk := startTracking(t, c.cmd.Process.Pid)
	anon, priv := c.addrs[0], c.addrs[1]

	steps := []struct {
		region int
		write  []int
	}{
		{0, []int{3, 40}},
		{0, nil},
		{0, []int{7}},
		{1, []int{2, 5}}, // private file mapping
		{0, []int{0, 63}},
	}
	for _, s := range steps {
		if s.write != nil {
			c.write(t, s.region, s.write...)
		}
		rs := scan(t, trk)
		want := map[int][]int{0: {}, 1: {}}
		if s.write != nil {
			want[s.region] = s.write
		}
		if got := pagesIn(rs, anon, pages); !slices.Equal(got, want[0]) {
			t.Errorf("after writing %v to region %d: anonymous pages %v reported, want %v", s.write, s.region, got, want[0])
		}
		if got := pagesIn(rs, priv, 8); !slices.Equal(got, want[1]) {
			t.Errorf("after writing %v to region %d: private file pages %v reported, want %v", s.write, s.region, got, want[1])
		}
	}

	if err := trk.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := trk.Scan(); err == nil {
		t.Error("Scan after Close succeeded")
	}
	assertUnprotected(t, c.cmd.Process.Pid, anon, pages)
	all := make([]int, pages)
	for i := range all {
		all[i] = i
	}
	c.write(t, 0, all...)
	c.write(t, 1, 0, 1, 2, 3, 4, 5, 6, 7)
	c.quit(t)
}

// assertUnprotected checks with /proc/PID/pagemap that no page of the
// range is still userfaultfd write-protected.
func assertUnprotected(t *testing.T, pid int, base uint64, pages int) {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 8*pages)
	if _, err := f.ReadAt(buf, int64(base/uint64(os.Getpagesize())*8)); err != nil {
		t.Fatal(err)
	}
	const pmUffdWP = 1 << 57
	for i := 0; i < pages; i++ {
		e := uint64(buf[8*i]) | uint64(buf[8*i+1])<<8 | uint64(buf[8*i+2])<<16 | uint64(buf[8*i+3])<<24 |
			uint64(buf[8*i+4])<<32 | uint64(buf[8*i+5])<<40 | uint64(buf[8*i+6])<<48 | uint64(buf[8*i+7])<<56
		if e&pmUffdWP != 0 {
			t.Errorf("page %d still write-protected after Close", i)
		}
	}
}

// TestNeverStopped checks that write-protection never stops the writer:
// every page written at once, answered in time, and no fault message
// queued on the userfaultfd (in synchronous mode each write would wait
// for one to be read).
func TestNeverStopped(t *testing.T) {
	const pages = 256
	c := startChild(t, pages, "")
	trk := startTracking(t, c.cmd.Process.Pid)
	all := make([]int, pages)
	for i := range all {
		all[i] = i
	}
	for round := 0; round < 3; round++ {
		c.write(t, 0, all...) // readLine fails the test if the helper hangs
		pfd := []unix.PollFd{{Fd: int32(trk.uffd), Events: unix.POLLIN}}
		if n, err := unix.Poll(pfd, 0); err != nil || n != 0 {
			t.Fatalf("userfaultfd readable (poll %d, %v, revents %#x): a write was reported as a fault", n, err, pfd[0].Revents)
		}
		if got := pagesIn(scan(t, trk), c.addrs[0], pages); !slices.Equal(got, all) {
			t.Fatalf("round %d: reported pages %v, want all %d", round, got, pages)
		}
	}
	c.quit(t)
}

// TestNewVMA checks that memory mapped after Start is reported whole once,
// then tracked like the rest.
func TestNewVMA(t *testing.T) {
	c := startChild(t, 16, "")
	trk := startTracking(t, c.cmd.Process.Pid)
	f := c.do(t, "m 32")
	addr, _ := strconv.ParseUint(f[0], 10, 64)
	all := make([]int, 32)
	for i := range all {
		all[i] = i
	}
	if got := pagesIn(scan(t, trk), addr, 32); !slices.Equal(got, all) {
		t.Fatalf("new mapping: pages %v reported, want all 32", got)
	}
	if got := pagesIn(scan(t, trk), addr, 32); len(got) != 0 {
		t.Fatalf("new mapping, second scan: pages %v reported, want none", got)
	}
	c.write(t, 1, 9, 31)
	if got := pagesIn(scan(t, trk), addr, 32); !slices.Equal(got, []int{9, 31}) {
		t.Fatalf("new mapping after writes: pages %v reported, want [9 31]", got)
	}
	c.quit(t)
}

func TestRanges(t *testing.T) {
	tests := []struct {
		in   []Range
		want []Range
	}{
		{nil, []Range{}},
		{[]Range{{0x3000, 0x4000}, {0x1000, 0x2000}, {0x2000, 0x3000}}, []Range{{0x1000, 0x4000}}},
		{[]Range{{0x1000, 0x5000}, {0x2000, 0x3000}, {0x8000, 0x9000}}, []Range{{0x1000, 0x5000}, {0x8000, 0x9000}}},
	}
	for _, tt := range tests {
		var got []Range
		for _, r := range tt.in {
			got = addRange(got, r)
		}
		if got == nil {
			got = []Range{}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("addRange(%x) = %x, want %x", tt.in, got, tt.want)
		}
	}
	set := []Range{{0x1000, 0x3000}, {0x5000, 0x6000}}
	for _, c := range []struct {
		r    Range
		want bool
	}{
		{Range{0x1000, 0x3000}, true},
		{Range{0x2000, 0x3000}, true},
		{Range{0x2000, 0x4000}, false},
		{Range{0x3000, 0x4000}, false},
		{Range{0x0, 0x1000}, false},
		{Range{0x5000, 0x6000}, true},
	} {
		if got := covers(set, c.r); got != c.want {
			t.Errorf("covers(%x, %x) = %v, want %v", set, c.r, got, c.want)
		}
	}
}

// BenchmarkScan64MiB scans a 64 MiB process of which 1 % of the pages
// were written since the previous scan.
func BenchmarkScan64MiB(b *testing.B) {
	const size = 64 << 20
	pages := size / os.Getpagesize()
	c := startChild(b, pages, "")
	trk := startTracking(b, c.cmd.Process.Pid)
	scan(b, trk)
	var dirty []int
	for p := 0; p < pages; p += 100 {
		dirty = append(dirty, p)
	}
	b.SetBytes(size)
	b.ResetTimer()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		c.write(b, 0, dirty...)
		b.StartTimer()
		start := time.Now()
		rs := scan(b, trk)
		total += time.Since(start)
		if got := pagesIn(rs, c.addrs[0], pages); len(got) != len(dirty) {
			b.Fatalf("reported %d pages, want %d", len(got), len(dirty))
		}
	}
	b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/scan")
	c.quit(b)
}

// testLogger logs at debug level to stderr with -v, nowhere otherwise.
func testLogger() *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestReplacedVMA checks that a VMA mapped over a tracked one (so no longer
// registered) is reported whole, then tracked again.
func TestReplacedVMA(t *testing.T) {
	const pages = 16
	c := startChild(t, pages, "")
	trk := startTracking(t, c.cmd.Process.Pid)
	c.do(t, "r 0")
	all := make([]int, pages)
	for i := range all {
		all[i] = i
	}
	if got := pagesIn(scan(t, trk), c.addrs[0], pages); !slices.Equal(got, all) {
		t.Fatalf("replaced mapping: pages %v reported, want all", got)
	}
	if got := pagesIn(scan(t, trk), c.addrs[0], pages); len(got) != 0 {
		t.Fatalf("replaced mapping, second scan: pages %v reported, want none", got)
	}
	c.write(t, 0, 4)
	if got := pagesIn(scan(t, trk), c.addrs[0], pages); !slices.Equal(got, []int{4}) {
		t.Fatalf("replaced mapping after a write: pages %v reported, want [4]", got)
	}
	c.quit(t)
}

// TestDiscarded checks that a page written, reported and then discarded
// with MADV_DONTNEED (so its content turned to zeros) is reported again.
func TestDiscarded(t *testing.T) {
	const pages = 64
	c := startChild(t, pages, "")
	trk := startTracking(t, c.cmd.Process.Pid)
	for _, p := range []int{1, 30} {
		c.write(t, 0, p)
		if got := pagesIn(scan(t, trk), c.addrs[0], pages); !slices.Equal(got, []int{p}) {
			t.Fatalf("after writing page %d: pages %v reported", p, got)
		}
		c.do(t, "d 0 %d", p)
		if got := pagesIn(scan(t, trk), c.addrs[0], pages); !slices.Contains(got, p) {
			t.Errorf("page %d discarded after being reported: pages %v reported, want it among them", p, got)
		} else {
			t.Logf("after MADV_DONTNEED of page %d: pages %v reported", p, got)
		}
	}
	c.quit(t)
}

// TestProcessGone checks that Scan fails and Close succeeds once the
// tracked process has exited.
func TestProcessGone(t *testing.T) {
	c := startChild(t, 8, "")
	trk := startTracking(t, c.cmd.Process.Pid)
	c.quit(t)
	if _, err := trk.Scan(); err == nil {
		t.Error("Scan of an exited process succeeded")
	}
	if err := trk.Close(); err != nil {
		t.Errorf("Close after exit: %v", err)
	}
}
