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

// TestClusterDemo runs `ferry demo` as shipped: three nodes, the workload
// migrated around them with every mechanism; RunCluster fails if the
// workload lost or repeated a tick, changed PID or found its memory
// corrupted, or if a migration failed.
func TestClusterDemo(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("needs root (PID namespaces, ptrace)")
	}
	exe := filepath.Join(t.TempDir(), "ferry")
	if out, err := exec.Command("go", "build", "-o", exe, "ferry/cmd/ferry").CombinedOutput(); err != nil {
		t.Fatalf("build ferry: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	// The spread build is left to test/cluster's TestSpreadBuild (the
	// real binary, three daemons): here it once outlasted this test's
	// deadline under the whole suite's load (not understood yet: see the
	// issue's notes).
	err := RunCluster(ctx, ClusterConfig{MemMiB: 32, Rate: 16, Dwell: 400 * time.Millisecond, Exe: exe, NoSpread: true}, &out)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	for _, mode := range []string{"freeze", "precopy", "postcopy"} {
		if !strings.Contains(out.String(), mode+" ") {
			t.Errorf("the demo's table has no %s row", mode)
		}
	}
	// The message part: RunCluster fails if a message was lost,
	// duplicated or out of order; each mechanism has its row.
	for _, mech := range []string{"resend", "origin", "link", "update", "auto"} {
		if !strings.Contains(out.String(), "\n"+mech+" ") && !strings.Contains(out.String(), " "+mech+"  ") {
			t.Errorf("the demo's message table has no %s row", mech)
		}
	}
	if !strings.Contains(out.String(), "every message arrived once and in order under every mechanism: ok") {
		t.Errorf("the demo did not report its messages ok")
	}
}
