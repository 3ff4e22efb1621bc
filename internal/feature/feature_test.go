package feature

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

func checkOnce(t *testing.T) *Report {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("feature probes need root (ptrace, namespaces, clone3 set_tid)")
	}
	return Cached()
}

// requireKernel skips unless the kernel is at least major.minor, naming the
// feature; on a kernel that new, a missing feature is a failure.
func requireKernel(t *testing.T, feature string, major, minor int) {
	t.Helper()
	if !kernelAtLeast(major, minor) {
		t.Skipf("%s needs Linux %d.%d, running %s", feature, major, minor, kernelRelease())
	}
}

func TestCheckReport(t *testing.T) {
	r := checkOnce(t)
	var text bytes.Buffer
	r.WriteText(&text)
	t.Logf("\n%s", text.String())

	for _, p := range r.Probes {
		if p.Status == Error {
			t.Errorf("probe %q: status error: %v (detail %q)", p.Name, p.Err, p.Detail)
		}
	}
	if !r.CanCheckpoint() {
		c, _ := r.Capability(CapCheckpointRestore)
		t.Errorf("CanCheckpoint() = false, missing %v", c.Missing)
	}
}

// TestProbesAvailable: what these machines have must come out Available;
// a kernel too old for a feature skips it by name.
func TestProbesAvailable(t *testing.T) {
	r := checkOnce(t)
	for _, tc := range []struct {
		probe        string
		major, minor int
	}{
		{ProbePtrace, 3, 4},
		{ProbePidfdOpen, 5, 3},
		{ProbePidfdGetfd, 5, 6},
		{ProbePidfdSendSignal, 5, 1},
		{ProbeProcessVMReadv, 3, 2},
		{ProbeProcessVMWritev, 3, 2},
		{ProbeProcMemWrite, 2, 6},
		{ProbeClone3SetTID, 5, 5},
		{ProbeNewPID, 3, 8},
		{ProbeNewNS, 3, 8},
		{ProbeNewNet, 3, 8},
		{ProbeNewIPC, 3, 8},
		{ProbeUserfaultfd, 4, 3},
		{ProbeDevUserfaultfd, 5, 11},
		{ProbeUffdMissingFaults, 4, 3},
		{ProbeUffdWPUnpopulated, 6, 4},
		{ProbeUffdWPAsync, 6, 7},
		{ProbePagemapScan, 6, 7},
		{ProbeUffdWPTracking, 6, 7},
		{ProbeRseq, 4, 18},
		{ProbeRseqConfig, 5, 13},
		{ProbeSetMMMap, 3, 18},
		{ProbeChildSubreaper, 3, 4},
		{ProbeTimerRestoreIDs, 6, 15},
	} {
		t.Run(tc.probe, func(t *testing.T) {
			requireKernel(t, tc.probe, tc.major, tc.minor)
			p, ok := r.Probe(tc.probe)
			if !ok {
				t.Fatalf("no probe %q in report", tc.probe)
			}
			if p.Status != Available {
				t.Errorf("probe %q = %v (%s, %v), want available on Linux %s",
					tc.probe, p.Status, p.Detail, p.Err, r.Kernel)
			}
		})
	}
}

// TestSoftDirtyAnswers: soft-dirty is off on these machines; either answer
// is fine, an error is not.
func TestSoftDirtyAnswers(t *testing.T) {
	r := checkOnce(t)
	p, ok := r.Probe(ProbeSoftDirty)
	if !ok {
		t.Fatal("no soft-dirty probe")
	}
	if p.Status != Available && p.Status != Missing {
		t.Errorf("soft-dirty = %v (%v), want available or missing", p.Status, p.Err)
	}
	t.Logf("soft-dirty: %v: %s", p.Status, p.Detail)
}

// TestTrackWrites is the precopy engine's contract, on this process's own
// memory through the kernel package's wrappers: write-protect 64 pages on
// a WP_ASYNC userfaultfd, write pages 3 and 40, and one PAGEMAP_SCAN with
// PM_SCAN_WP_MATCHING reports exactly those, re-protecting them.
func TestTrackWrites(t *testing.T) {
	requireKernel(t, "UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN", 6, 7)
	if os.Geteuid() != 0 {
		t.Skip("userfaultfd with kernel-mode faults needs CAP_SYS_PTRACE")
	}
	for _, tc := range []struct {
		name     string
		populate bool // touch every page before protecting
	}{
		{"populated", true},
		{"unpopulated", false}, // UFFD_FEATURE_WP_UNPOPULATED protects holes too
	} {
		t.Run(tc.name, func(t *testing.T) {
			const pages = 64
			ps := os.Getpagesize()

			fd, err := kernel.Userfaultfd(unix.O_CLOEXEC | unix.O_NONBLOCK)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			api := kernel.UffdioAPIArg{API: kernel.UFFD_API,
				Features: kernel.UFFD_FEATURE_WP_ASYNC | kernel.UFFD_FEATURE_WP_UNPOPULATED}
			if err := kernel.UffdioAPI(fd, &api); err != nil {
				t.Fatalf("UFFDIO_API(WP_ASYNC|WP_UNPOPULATED): %v", err)
			}

			mem, err := mmapAnon(pages)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Munmap(mem)
			if tc.populate {
				for i := 0; i < pages; i++ {
					mem[i*ps] = 1
				}
			}
			base := addrOf(mem)
			rng := kernel.UffdioRange{Start: base, Len: uint64(len(mem))}
			reg := kernel.UffdioRegisterArg{Range: rng, Mode: kernel.UFFDIO_REGISTER_MODE_WP}
			if err := kernel.UffdioRegister(fd, &reg); err != nil {
				t.Fatal(err)
			}
			if reg.Ioctls&kernel.UFFD_IOCTL_WRITEPROTECT == 0 {
				t.Fatalf("registered range allows ioctls %#x: no UFFDIO_WRITEPROTECT", reg.Ioctls)
			}
			wp := kernel.UffdioWriteprotectArg{Range: rng, Mode: kernel.UFFDIO_WRITEPROTECT_MODE_WP}
			if err := kernel.UffdioWriteprotect(fd, &wp); err != nil {
				t.Fatal(err)
			}

			pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pm)
			scan := func() []kernel.PageRegion {
				t.Helper()
				vec := make([]kernel.PageRegion, pages)
				arg := kernel.PmScanArg{
					Flags:        kernel.PM_SCAN_WP_MATCHING | kernel.PM_SCAN_CHECK_WPASYNC,
					Start:        base,
					End:          base + uint64(len(mem)),
					CategoryMask: kernel.PAGE_IS_WRITTEN,
					ReturnMask:   kernel.PAGE_IS_WRITTEN,
				}
				arg.SetVec(vec)
				n, err := kernel.PagemapScan(pm, &arg)
				if err != nil {
					t.Fatal(err)
				}
				if arg.WalkEnd != arg.End {
					t.Fatalf("walk ended at %#x, want %#x", arg.WalkEnd, arg.End)
				}
				return vec[:n]
			}

			if r := scan(); len(r) != 0 {
				t.Fatalf("right after protecting: written pages %v, want none", regionPages(r, base))
			}
			mem[3*ps+17] = 0xaa
			mem[40*ps+4095] = 0xbb
			r := scan()
			if got := regionPages(r, base); fmt.Sprint(got) != "[3 40]" {
				t.Fatalf("written pages %v, want [3 40]", got)
			}
			for _, reg := range r {
				if reg.Categories != kernel.PAGE_IS_WRITTEN || reg.Pages(ps) != 1 {
					t.Errorf("region %+v: want one page with categories PAGE_IS_WRITTEN", reg)
				}
			}
			if r := scan(); len(r) != 0 {
				t.Fatalf("second scan: written pages %v, want none (scan must re-protect)", regionPages(r, base))
			}
			// Data is intact and a re-write is seen again.
			if mem[3*ps+17] != 0xaa || mem[40*ps+4095] != 0xbb {
				t.Fatal("written bytes lost")
			}
			mem[40*ps] = 1
			if got := regionPages(scan(), base); fmt.Sprint(got) != "[40]" {
				t.Fatalf("after rewriting page 40: written pages %v, want [40]", got)
			}
		})
	}
}

// TestPagemapScanStopsAtVecLen: a vector too small ends the walk early with
// WalkEnd telling where to resume; resuming finds the rest.
func TestPagemapScanStopsAtVecLen(t *testing.T) {
	requireKernel(t, "PAGEMAP_SCAN", 6, 7)
	ps := os.Getpagesize()
	mem, err := mmapAnon(8)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	for _, i := range []int{1, 3, 6} {
		mem[i*ps] = 1
	}
	pm, err := unix.Open("/proc/self/pagemap", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pm)
	base, end := addrOf(mem), addrOf(mem)+uint64(len(mem))
	var pages []int
	for start := base; start < end; {
		vec := make([]kernel.PageRegion, 1)
		arg := kernel.PmScanArg{Start: start, End: end, CategoryMask: kernel.PAGE_IS_PRESENT, ReturnMask: kernel.PAGE_IS_PRESENT}
		arg.SetVec(vec)
		n, err := kernel.PagemapScan(pm, &arg)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, regionPages(vec[:n], base)...)
		if arg.WalkEnd <= start {
			t.Fatalf("walk did not advance from %#x", start)
		}
		start = arg.WalkEnd
	}
	if fmt.Sprint(pages) != "[1 3 6]" {
		t.Errorf("present pages %v, want [1 3 6]", pages)
	}
}

// TestCheckLeavesNothing: a Check leaves no fds, children or mappings behind.
func TestCheckLeavesNothing(t *testing.T) {
	checkOnce(t) // warm up: the runtime's poller fds appear on first use
	count := func(dir string) int {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	children := func() string {
		var all []string
		tasks, _ := filepath.Glob("/proc/self/task/*/children")
		for _, f := range tasks {
			b, _ := os.ReadFile(f)
			if s := strings.TrimSpace(string(b)); s != "" {
				all = append(all, s)
			}
		}
		return strings.Join(all, " ")
	}
	maps := func() int {
		b, err := os.ReadFile("/proc/self/maps")
		if err != nil {
			t.Fatal(err)
		}
		return strings.Count(string(b), "\n")
	}
	fds, m := count("/proc/self/fd"), maps()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	Check(ctx)
	if got := count("/proc/self/fd"); got != fds {
		t.Errorf("open fds: %d before Check, %d after", fds, got)
	}
	if c := children(); c != "" {
		t.Errorf("children left behind: %s", c)
	}
	// The Go heap may grow by a mapping or two; the probes map and unmap
	// a handful each.
	if got := maps(); got > m+4 {
		t.Errorf("mappings: %d before Check, %d after", m, got)
	}
}

// TestCheckCancelled: a done context still yields every probe, promptly.
func TestCheckCancelled(t *testing.T) {
	full := checkOnce(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	r := Check(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Check with a cancelled context took %v", d)
	}
	if len(r.Probes) != len(full.Probes) {
		t.Fatalf("cancelled Check reported %d probes, full one %d", len(r.Probes), len(full.Probes))
	}
	for i, p := range r.Probes {
		if p.Name != full.Probes[i].Name {
			t.Errorf("probe %d = %q, want %q", i, p.Name, full.Probes[i].Name)
		}
	}
	if r.CanCheckpoint() {
		t.Error("CanCheckpoint() = true after a cancelled Check")
	}
}

func syntheticReport() *Report {
	probes := []Probe{
		{Name: ProbePtrace, Status: Available, Detail: "seized"},
		{Name: ProbeSoftDirty, Status: Missing, Detail: "CONFIG_MEM_SOFT_DIRTY is off"},
		{Name: ProbePagemapScan, Status: Error, Err: errors.New("boom")},
	}
	return &Report{Kernel: "6.18.0-test", Probes: probes, Capabilities: deriveCapabilities(probes)}
}

func TestRequire(t *testing.T) {
	r := syntheticReport()
	for _, tc := range []struct {
		name         string
		wantNil      bool
		notSupported bool
		wantInMsg    string
	}{
		{ProbePtrace, true, false, ""},
		{ProbeSoftDirty, false, true, "soft-dirty: not supported by this kernel (CONFIG_MEM_SOFT_DIRTY is off)"},
		{ProbePagemapScan, false, false, "boom"},
		{CapSoftDirty, false, true, "needs soft-dirty"},
		{CapCheckpointRestore, false, true, "needs pidfd_open"},
		{"no-such-thing", false, false, "no such probe"},
	} {
		err := r.Require(tc.name)
		if (err == nil) != tc.wantNil {
			t.Errorf("Require(%q) = %v, want nil: %v", tc.name, err, tc.wantNil)
			continue
		}
		if got := errors.Is(err, ErrNotSupported); got != tc.notSupported {
			t.Errorf("errors.Is(Require(%q), ErrNotSupported) = %v, want %v", tc.name, got, tc.notSupported)
		}
		if err != nil && !strings.Contains(err.Error(), tc.wantInMsg) {
			t.Errorf("Require(%q) = %q, want it to contain %q", tc.name, err, tc.wantInMsg)
		}
		var nse *NotSupportedError
		if tc.notSupported && (!errors.As(err, &nse) || nse.Feature != tc.name) {
			t.Errorf("Require(%q) = %#v, want a *NotSupportedError naming it", tc.name, err)
		}
	}
}

func TestReportJSON(t *testing.T) {
	r := syntheticReport()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"kernel":"6.18.0-test"`, `"status":"available"`, `"status":"missing"`,
		`"error":"boom"`, `"name":"checkpoint/restore"`, `"available":false`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	for i, p := range back.Probes {
		orig := r.Probes[i]
		if p.Name != orig.Name || p.Status != orig.Status || p.Detail != orig.Detail ||
			fmt.Sprint(p.Err) != fmt.Sprint(orig.Err) {
			t.Errorf("probe %d round-tripped to %+v, want %+v", i, p, orig)
		}
	}
	if len(back.Capabilities) != len(r.Capabilities) {
		t.Errorf("%d capabilities after round trip, want %d", len(back.Capabilities), len(r.Capabilities))
	}
	var s Status
	if err := json.Unmarshal([]byte(`"sometimes"`), &s); err == nil {
		t.Error("unknown status decoded without error")
	}
}

func TestWriteText(t *testing.T) {
	var b bytes.Buffer
	r := syntheticReport()
	r.WriteText(&b)
	out := b.String()

	// Two tables, each with its second column aligned under its header.
	tables := strings.Split(out, "\n\n")
	if len(tables) != 3 {
		t.Fatalf("want a kernel line and two tables:\n%s", out)
	}
	for _, table := range tables[1:] {
		rows := strings.Split(strings.TrimSpace(table), "\n")
		col := strings.Index(rows[0], "STATUS")
		for _, row := range rows[1:] {
			if len(row) <= col || row[col-1] != ' ' || row[col-2] != ' ' || row[col] == ' ' {
				t.Errorf("row %q: status not at column %d:\n%s", row, col, out)
			}
		}
		if len(rows) < 2 {
			t.Errorf("empty table:\n%s", out)
		}
	}
	if got := strings.Count(tables[1], "\n"); got != len(r.Probes) {
		t.Errorf("feature table has %d rows, want %d", got, len(r.Probes))
	}
	for _, want := range []string{"kernel 6.18.0-test", "CONFIG_MEM_SOFT_DIRTY is off", "boom", "soft-dirty tracking"} {
		if !strings.Contains(out, want) {
			t.Errorf("text lacks %q:\n%s", want, out)
		}
	}
}

func TestParseRelease(t *testing.T) {
	for _, tc := range []struct {
		in           string
		major, minor int
		ok           bool
	}{
		{"6.18.44-fc-v769", 6, 18, true},
		{"6.7.0", 6, 7, true},
		{"5.15-rc3", 5, 15, true},
		{"6.1.0-28-amd64", 6, 1, true},
		{"6.10+", 6, 10, true},
		{"weird", 0, 0, false},
	} {
		ma, mi, ok := parseRelease(tc.in)
		if ma != tc.major || mi != tc.minor || ok != tc.ok {
			t.Errorf("parseRelease(%q) = %d, %d, %v, want %d, %d, %v", tc.in, ma, mi, ok, tc.major, tc.minor, tc.ok)
		}
	}
}
