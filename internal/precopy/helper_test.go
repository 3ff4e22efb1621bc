package precopy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
	"ferry/internal/testutil"
)

// churnProg is testdata/churn.c, built once per test binary.
var churnProg = &testutil.CProgram{Src: "testdata/churn.c", Flags: []string{"-O1", "-g", "-pthread", "-Wall", "-Werror", "-static"}}

func TestMain(m *testing.M) {
	code := m.Run()
	churnProg.Remove()
	os.Exit(code)
}

// needRoot skips a test that needs ptrace and userfaultfd over other
// processes.
func needRoot(tb testing.TB) { testutil.NeedRoot(tb, "ptrace") }

// churn is a running testdata/churn.c.
type churn struct {
	tb    testing.TB
	cmd   *exec.Cmd
	pid   int
	in    *os.File    // its stdin, written by the test
	out   *os.File    // its stdout, read by the test
	lines chan string // its stdout (and that of its restored copies)
	done  chan struct{}
	// early holds a "child ready" read while waiting for the parent's
	// "ready": the forked child may report first.
	early []string
}

// startChurn runs churn with the given arguments (see churn.c) and waits
// for it to report ready. Cleanup kills it.
func startChurn(tb testing.TB, args ...string) *churn {
	tb.Helper()
	return startChurnEnv(tb, nil, args...)
}

// startChurnEnv is startChurn with extra environment variables.
func startChurnEnv(tb testing.TB, env []string, args ...string) *churn {
	tb.Helper()
	bin := churnProg.Path(tb)
	inR, inW, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	// No rseq: the kernel writes a thread's rseq area when it runs, which
	// would make the memory comparison of source and copy differ there.
	cmd.Env = append(append(os.Environ(), "GLIBC_TUNABLES=glibc.pthread.rseq=0"), env...)
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		tb.Fatal(err)
	}
	c := &churn{tb: tb, cmd: cmd, pid: cmd.Process.Pid, in: inW, out: outR, lines: make(chan string, 64), done: make(chan struct{})}
	go func() {
		defer close(c.done)
		defer close(c.lines)
		sc := bufio.NewScanner(outR)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
	}()
	tb.Cleanup(func() {
		c.in.Close()
		c.cmd.Process.Kill()
		c.cmd.Wait()
		// Restored copies may still hold the write end: closing ours
		// ends the reader.
		outR.Close()
		for range c.lines {
		}
		<-c.done
	})
	c.expect("ready")
	return c
}

// expect waits for the next line with prefix (skipping others) and
// returns it. An "error" line fails the test.
func (c *churn) expect(prefix string) string {
	c.tb.Helper()
	for i, l := range c.early {
		if strings.HasPrefix(l, prefix) {
			c.early = append(c.early[:i], c.early[i+1:]...)
			return l
		}
	}
	timeout := time.After(20 * time.Second)
	for {
		select {
		case l, ok := <-c.lines:
			if !ok {
				c.tb.Fatalf("churn: output ended waiting for %q", prefix)
			}
			if strings.HasPrefix(l, "error") {
				c.tb.Fatalf("churn: %s", l)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
			if strings.HasPrefix(l, "child ready") {
				// Only this one can come early (the child races its
				// parent's "ready"); other skipped lines are stale.
				c.early = append(c.early, l)
			}
		case <-timeout:
			c.tb.Fatalf("churn: no %q line in 20 s", prefix)
		}
	}
}

// inherit lets a restored copy use the same stdin and stdout pipes: the
// test process, which holds their other ends, is ferry here, and a dump
// does not count ferry as a holder outside the tree.
func (c *churn) inherit() map[string]*os.File {
	c.tb.Helper()
	m := map[string]*os.File{}
	for _, f := range []*os.File{c.in, c.out} {
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			c.tb.Fatal(err)
		}
		m["pipe:"+strconv.FormatUint(st.Ino, 10)] = f
	}
	return m
}

// step has churn's main thread do reshaping step n (churn.c).
func (c *churn) step(n int) {
	c.tb.Helper()
	if _, err := fmt.Fprintf(c.in, "s %d\n", n); err != nil {
		c.tb.Fatal(err)
	}
	c.expect(fmt.Sprintf("ok %d", n))
}

// verify has process pid (churn or a restored copy of it) check its
// memory, and fails the test if it reports damage.
func (c *churn) verify(pid int) {
	c.tb.Helper()
	if err := unix.Kill(pid, unix.SIGUSR1); err != nil {
		c.tb.Fatalf("signal %d: %v", pid, err)
	}
	for {
		l := c.expect("verify")
		if !strings.HasPrefix(l, "verify ok") {
			c.tb.Fatalf("process %d: %s", pid, l)
		}
		if strings.HasSuffix(l, fmt.Sprintf(" pid %d", pid)) {
			return
		}
	}
}

// stop puts churn in group-stop and waits until it is stopped.
func (c *churn) stop() {
	c.tb.Helper()
	if err := unix.Kill(c.pid, unix.SIGSTOP); err != nil {
		c.tb.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(c.pid, &ws, unix.WUNTRACED, nil); err != nil || !ws.Stopped() {
		c.tb.Fatalf("wait for stop: %v, status %#x", err, ws)
	}
}

// killRestored kills a restored process (our child) and its children,
// and reaps it.
func killRestored(pid int) {
	kids, _ := procfs.Children(pid)
	unix.Kill(pid, unix.SIGKILL)
	for _, k := range kids {
		unix.Kill(k, unix.SIGKILL)
	}
	var ws unix.WaitStatus
	unix.Wait4(pid, &ws, unix.WALL, nil)
}

// migration is one precopy migration of a churn inside the test process.
type migration struct {
	sess    *Session
	staging *Staging
	stats   *Stats
	dump    *dump.Result
	image   []byte
}

// precopyDump starts precopy on c, runs the rounds into a Staging and
// dumps the rest with the tree left frozen. before runs between the
// rounds and the dump. Cleanup ends the session, kills the frozen source
// and frees the staging.
func precopyDump(tb testing.TB, tr *ptrace.Tracer, c *churn, opts Options, before func()) *migration {
	tb.Helper()
	ctx := context.Background()
	m := &migration{staging: NewStaging()}
	tb.Cleanup(func() { m.staging.Close() })
	sess, err := Start(ctx, tr, c.pid, opts)
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	m.sess = sess
	tb.Cleanup(func() {
		if m.dump != nil && m.dump.Held != nil {
			m.dump.Held.Kill(ctx)
		}
		sess.Close()
	})
	if m.stats, err = sess.Run(ctx, m.staging); err != nil {
		tb.Fatalf("Run: %v", err)
	}
	if before != nil {
		before()
	}
	var buf bytes.Buffer
	w, err := image.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if m.dump, err = dump.Dump(ctx, tr, c.pid, w, dump.Options{Leave: dump.Frozen, Precopy: sess}); err != nil {
		tb.Fatalf("Dump: %v", err)
	}
	m.image = buf.Bytes()
	return m
}

// restoreStaged restores the migration's image with its staged pages,
// under new PIDs (the frozen source keeps the old ones). Cleanup kills the
// copy.
func (m *migration) restoreStaged(tb testing.TB, tr *ptrace.Tracer, c *churn) *restore.Result {
	tb.Helper()
	r, err := image.NewReaderBytes(m.image)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := restore.Restore(context.Background(), tr, r, restore.Options{NewPIDs: true, Staged: m.staging, Inherit: c.inherit()})
	if err != nil {
		tb.Fatalf("Restore: %v", err)
	}
	tb.Cleanup(func() { killRestored(res.PID) })
	return res
}

// region is a run of mappings with the same attributes, and its bytes.
type region struct {
	procfs.Mapping
	data []byte
}

// memory reads every mapping of pid but the kernel's special ones,
// merging neighbours with the same attributes (a restore may merge VMAs
// that were separate, or the other way round).
func memory(tb testing.TB, pid int) []region {
	tb.Helper()
	maps, err := procfs.Maps(pid)
	if err != nil {
		tb.Fatal(err)
	}
	var out []region
	for _, m := range maps {
		if m.Special() {
			continue
		}
		if n := len(out); n > 0 {
			p := &out[n-1].Mapping
			if p.End == m.Start && p.Prot == m.Prot && p.Shared == m.Shared && p.Path == m.Path &&
				p.Name == m.Name && (p.Path == "" || p.Offset+p.Len() == m.Offset) {
				p.End = m.End
				continue
			}
		}
		out = append(out, region{Mapping: m})
	}
	for i := range out {
		r := &out[i]
		r.data = make([]byte, r.Len())
		if err := ptrace.ReadMem(pid, r.Start, r.data); err != nil {
			tb.Fatalf("read %#x-%#x of %d: %v", r.Start, r.End, pid, err)
		}
	}
	return out
}

// sameMemory fails the test unless want and got map the same ranges with
// the same attributes and contents, naming the first pages that differ.
func sameMemory(tb testing.TB, want, got []region) {
	tb.Helper()
	describe := func(r *region) string {
		return fmt.Sprintf("%#x-%#x prot %d shared %v %s%s", r.Start, r.End, r.Prot, r.Shared, r.Path, r.Name)
	}
	if len(want) != len(got) {
		var a, b []string
		for i := range want {
			a = append(a, describe(&want[i]))
		}
		for i := range got {
			b = append(b, describe(&got[i]))
		}
		tb.Fatalf("source has %d regions, copy %d:\nsource:\n%s\ncopy:\n%s", len(want), len(got),
			strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	ps := os.Getpagesize()
	bad := 0
	for i := range want {
		w, g := &want[i], &got[i]
		if describe(w) != describe(g) {
			tb.Errorf("region %d: source %s, copy %s", i, describe(w), describe(g))
			continue
		}
		for off := 0; off < len(w.data); off += ps {
			if !bytes.Equal(w.data[off:off+ps], g.data[off:off+ps]) {
				if bad++; bad <= 10 {
					tb.Errorf("page %#x (in %s) differs", w.Start+uint64(off), describe(w))
				}
			}
		}
	}
	if bad > 10 {
		tb.Errorf("%d pages differ in all", bad)
	}
}

// dumpFrozen dumps pid without precopy, leaving it frozen (killed at
// cleanup).
func dumpFrozen(tb testing.TB, tr *ptrace.Tracer, pid int) *migration {
	tb.Helper()
	ctx := context.Background()
	var buf bytes.Buffer
	w, err := image.NewWriter(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	res, err := dump.Dump(ctx, tr, pid, w, dump.Options{Leave: dump.Frozen})
	if err != nil {
		tb.Fatalf("Dump: %v", err)
	}
	tb.Cleanup(func() { res.Held.Kill(ctx) })
	return &migration{dump: res, image: buf.Bytes()}
}
