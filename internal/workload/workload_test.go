package workload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv, when set, makes the test binary run the workload instead of the
// tests, configured by the variable's value (see childConfig), until SIGTERM
// or SIGINT. Tests use it for a real process to freeze; it also serves to
// measure CPU use: FERRY_WORKLOAD_CHILD="mem=256 rate=16" ./workload.test
const childEnv = "FERRY_WORKLOAD_CHILD"

func TestMain(m *testing.M) {
	if spec, ok := os.LookupEnv(childEnv); ok {
		os.Exit(childMain(spec))
	}
	os.Exit(m.Run())
}

func childMain(spec string) int {
	cfg, err := childConfig(spec)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := Run(ctx, cfg, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childConfig parses "mem=8 rate=16 threads=4 interval=20ms random=true seed=1";
// keys left out keep small test defaults.
func childConfig(spec string) (Config, error) {
	cfg := Config{MemMiB: 8, DirtyMiBPerSec: 16, Threads: 4, Interval: 20 * time.Millisecond}
	for _, kv := range strings.Fields(spec) {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "mem":
			cfg.MemMiB, err = strconv.Atoi(v)
		case "rate":
			cfg.DirtyMiBPerSec, err = strconv.ParseFloat(v, 64)
		case "threads":
			cfg.Threads, err = strconv.Atoi(v)
		case "interval":
			cfg.Interval, err = time.ParseDuration(v)
		case "random":
			cfg.Random, err = strconv.ParseBool(v)
		case "seed":
			cfg.Seed, err = strconv.ParseInt(v, 10, 64)
		default:
			err = errors.New("unknown key")
		}
		if err != nil {
			return cfg, fmt.Errorf("%s: %q: %w", childEnv, kv, err)
		}
	}
	return cfg, nil
}

// Test hooks: each corrupts memory the way a faulty restore might, under the
// lock the verifier takes.

// flipByte flips the low bit of one byte of a page.
func (w *workload) flipByte(page, off int) {
	c := &w.chunks[page/chunkPages]
	c.mu.Lock()
	w.page(page)[off] ^= 1
	c.mu.Unlock()
}

// loseWrite advances a page's generation without its content, as if the last
// rewrite of the page had not been copied.
func (w *workload) loseWrite(page int) {
	c := &w.chunks[page/chunkPages]
	c.mu.Lock()
	c.gens[page%chunkPages]++
	c.mu.Unlock()
}

// copyPage puts page src's content in page dst, as if restored at the wrong
// address.
func (w *workload) copyPage(dst, src int) {
	buf := make([]byte, pageSize)
	c := &w.chunks[src/chunkPages]
	c.mu.Lock()
	copy(buf, w.page(src))
	c.mu.Unlock()
	c = &w.chunks[dst/chunkPages]
	c.mu.Lock()
	copy(w.page(dst), buf)
	c.mu.Unlock()
}

func (w *workload) flipCanary(off int) {
	w.canaryMu.Lock()
	w.canary[off] ^= 1
	w.canaryMu.Unlock()
}

// checkContinuity checks lines as Run writes them: ticks 1, 2, 3, ... and, if
// the run ended cleanly, a done line repeating the last tick.
func checkContinuity(t *testing.T, lines []Progress) {
	t.Helper()
	if len(lines) == 0 {
		t.Fatal("no progress lines")
	}
	for i, p := range lines {
		if p.Done {
			if i != len(lines)-1 {
				t.Errorf("line %d: done line before the end", i)
			}
			if i > 0 && p.Tick != lines[i-1].Tick {
				t.Errorf("done tick=%d, want the last tick %d", p.Tick, lines[i-1].Tick)
			}
			continue
		}
		if want := uint64(i + 1); p.Tick != want {
			t.Fatalf("line %d: tick=%d, want %d", i, p.Tick, want)
		}
	}
}

func TestRun(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"sequential", Config{MemMiB: 8, DirtyMiBPerSec: 16, Threads: 4, Interval: 20 * time.Millisecond}},
		{"random", Config{MemMiB: 8, DirtyMiBPerSec: 16, Threads: 4, Interval: 20 * time.Millisecond, Random: true, Seed: 99}},
		{"idle", Config{MemMiB: 8, Threads: 2, Interval: 20 * time.Millisecond}},
		{"odd size", Config{MemMiB: 3, DirtyMiBPerSec: 64, Threads: 3, Interval: 20 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 400*time.Millisecond)
			defer cancel()
			var out bytes.Buffer
			start := time.Now()
			if err := Run(ctx, tt.cfg, &out); err != nil {
				t.Fatalf("Run: %v\n%s", err, out.Bytes())
			}
			var lines []Progress
			for line := range strings.Lines(out.String()) {
				p, ok := ParseLine(line)
				if !ok {
					t.Fatalf("ParseLine(%q) failed", line)
				}
				lines = append(lines, p)
			}
			checkContinuity(t, lines)
			done := lines[len(lines)-1]
			if !done.Done || done.Verified == 0 {
				t.Errorf("last line %q, want done with verified > 0", done)
			}
			last := lines[len(lines)-2]
			for _, p := range lines[:len(lines)-1] {
				if !p.OK || p.PID != os.Getpid() || p.MemMiB != tt.cfg.MemMiB {
					t.Errorf("line %q: want ok, pid %d, mem %d", p, os.Getpid(), tt.cfg.MemMiB)
				}
			}

			perSec := tt.cfg.DirtyMiBPerSec * mib / pageSize
			if perSec == 0 {
				if last.Dirtied != 0 {
					t.Errorf("dirtied=%d with a zero rate", last.Dirtied)
				}
				return
			}
			// Slow machines may fall behind the rate, never ahead of it.
			elapsed := last.Time.Sub(start) + time.Millisecond + maxCatchUp
			if limit := uint64(perSec*elapsed.Seconds()) + 1; last.Dirtied > limit {
				t.Errorf("dirtied=%d after %v, over the rate's %d", last.Dirtied, elapsed, limit)
			}
			if last.Dirtied == 0 {
				t.Errorf("nothing dirtied in %v", time.Since(start))
			}
		})
	}
}

func TestRunCorruption(t *testing.T) {
	tests := []struct {
		name    string
		corrupt func(w *workload)
		wantErr string
	}{
		{"byte flip", func(w *workload) { w.flipByte(1234, 1000) },
			"page 1234 gen 0: content mismatch at byte 1000"},
		{"first page", func(w *workload) { w.flipByte(0, 0) },
			"page 0 gen 0: content mismatch at byte 0 (holds page 1 gen 0)"},
		{"last byte", func(w *workload) { w.flipByte(w.pages-1, pageSize-1) },
			"page 2047 gen 0: content mismatch at byte 4095"},
		{"lost write", func(w *workload) { w.loseWrite(300) },
			"page 300 gen 1: content mismatch at byte 8 (holds page 300 gen 0)"},
		{"misplaced page", func(w *workload) { w.copyPage(700, 1900) },
			"page 700 gen 0: content mismatch at byte 0 (holds page 1900 gen 0)"},
		{"canary", func(w *workload) { w.flipCanary(canarySize / 2) },
			"canary: checksum "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			// Writers would be allowed to repair the damage; keep them idle.
			cfg := Config{MemMiB: 8, Threads: 2, Interval: 20 * time.Millisecond, Seed: 5}
			started := make(chan *workload, 1)
			pr, pw := io.Pipe()
			errc := make(chan error, 1)
			go func() {
				errc <- run(ctx, cfg, pw, func(w *workload) { started <- w })
				pw.Close()
			}()
			w := <-started

			var lines []Progress
			corrupted := false
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				p, ok := ParseLine(sc.Text())
				if !ok {
					t.Fatalf("ParseLine(%q) failed", sc.Text())
				}
				lines = append(lines, p)
				// Corrupt only memory already seen to be clean.
				if !corrupted && p.Verified > 0 {
					tt.corrupt(w)
					corrupted = true
				}
			}
			err := <-errc
			checkContinuity(t, lines)
			last := lines[len(lines)-1]
			if last.OK || !strings.HasPrefix(last.Err, tt.wantErr) {
				t.Fatalf("last line %q, want ok=false err=%q...", last, tt.wantErr)
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), last.Err) {
				t.Errorf("run: %v, want ErrCorrupt with %q", err, last.Err)
			}
		})
	}
}

func TestRunConfig(t *testing.T) {
	tests := []struct {
		cfg     Config
		wantErr string
	}{
		{Config{MemMiB: 0}, "memory must be at least 1 MiB"},
		{Config{MemMiB: 1, DirtyMiBPerSec: -1}, "dirty rate"},
		{Config{MemMiB: 1, Threads: -1}, "threads"},
		{Config{MemMiB: 1, Interval: -time.Second}, "interval"},
	}
	for _, tt := range tests {
		err := Run(t.Context(), tt.cfg, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Run(%+v) = %v, want error containing %q", tt.cfg, err, tt.wantErr)
		}
	}
}

// TestFreeze stops a workload process for a second, as a checkpoint does, and
// checks it carries on: no panic, no tick skipped or repeated, verification
// soon passing again, and a clean exit on SIGTERM.
func TestFreeze(t *testing.T) {
	if testing.Short() {
		t.Skip("freezes a process for a second")
	}
	const (
		freeze = time.Second
		// How soon after the freeze two more passes must complete: generous,
		// for the race detector on one CPU, but far less than the minutes a
		// freeze mistaken for verification work would cost.
		recovery = 5 * time.Second
	)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=mem=8 rate=16 threads=4 interval=20ms random=true")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}

	var lines []Progress
	var resumed time.Time
	var verifiedBefore uint64 // by lines written before the process resumed
	terminated := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		p, ok := ParseLine(sc.Text())
		if !ok {
			t.Errorf("ParseLine(%q) failed", sc.Text())
			continue
		}
		lines = append(lines, p)
		switch {
		case p.Done:
		case resumed.IsZero() && p.Verified > 0:
			if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(freeze) // the freeze under test, not a wait for readiness
			if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			resumed = time.Now()
			verifiedBefore = p.Verified
		case resumed.IsZero():
		case p.Time.Before(resumed):
			// Written before the freeze, read only now.
			verifiedBefore = max(verifiedBefore, p.Verified)
		case !terminated && p.Verified >= verifiedBefore+2:
			// At least one whole pass ran after the freeze.
			if after := p.Time.Sub(resumed); after > recovery {
				t.Errorf("two passes took %v after the freeze, want at most %v", after, recovery)
			}
			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			terminated = true
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("workload process: %v\n%s", err, stderr.Bytes())
	}
	checkContinuity(t, lines)
	if !terminated {
		t.Fatalf("verification did not resume after the freeze; last line %q", lines[len(lines)-1])
	}
	if done := lines[len(lines)-1]; !done.Done {
		t.Errorf("last line %q, want a done line", done)
	}
	// The child may have written lines ahead of the one that triggered the
	// freeze, so look for the freeze as the widest gap between lines.
	var gap time.Duration
	for i := 1; i < len(lines)-1; i++ {
		gap = max(gap, lines[i].Time.Sub(lines[i-1].Time))
	}
	if gap < freeze {
		t.Errorf("widest gap between lines is %v, want the %v freeze", gap, freeze)
	}
}

// BenchmarkVerifyPass measures one full pass over memory several times the
// size of a cache, so the figure is the rate at which a workload's memory can
// be verified.
func BenchmarkVerifyPass(b *testing.B) {
	w, err := newWorkload(Config{MemMiB: 64, Threads: 1, Interval: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer w.close()
	b.SetBytes(int64(len(w.mem) + len(w.canary)))
	for b.Loop() {
		if _, err := w.verifyPass(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
