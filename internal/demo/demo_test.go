package demo

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemo runs the whole demo against a freshly built ferry: the built-in
// Go workload (threads, futexes, epoll, timers) is checkpointed, killed and
// restored twice, and must carry on with the same PID, a continuous tick
// counter and its own memory verification passing (Run checks all three
// and fails otherwise).
func TestDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace")
	}
	exe := filepath.Join(t.TempDir(), "ferry")
	build := exec.Command("go", "build", "-o", exe, "ferry/cmd/ferry")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ferry: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := Run(ctx, Config{MemMiB: 32, Rate: 16, Rounds: 2, Exe: exe}, &out)
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), "restored pid"); n != 2 {
		t.Fatalf("demo restored %d times, want 2:\n%s", n, out.String())
	}
}
