package cluster_test

import (
	"strings"
	"testing"
	"time"
)

// TestMoveAgainDuringTransfer migrates the built-in workload (256 MiB,
// dirtying memory and verifying all of it) by postcopy and at once moves
// it on, and again by precopy, while its memory is still arriving: each
// move waits for the previous transfer, and the workload's own checks
// must pass throughout.
func TestMoveAgainDuringTransfer(t *testing.T) {
	c := startCluster(t, 3, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", ferryBin, "workload", "--mem", "256",
		"--rate", "16", "--interval", "100ms"))
	waitLine := func(substr string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(c.logs("n1", id), substr) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the workload's output:\n%s", substr, tail(c.logs("n1", id), 10))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitLine("tick=3 ")
	for _, hop := range []struct{ to, mode string }{
		{"n2", "postcopy"}, {"n3", "postcopy"}, {"n1", "precopy"}, {"n2", "postcopy"}, {"n3", "freeze"},
	} {
		if out := c.mustFerry("n1", "migrate", id, "--to", hop.to, "--mode", hop.mode); !strings.Contains(out, "moved to "+hop.to) {
			t.Fatalf("migrate: %s", out)
		}
	}
	// Two more full verification passes after the last move.
	out := c.logs("n1", id)
	verified := strings.Count(out, "\n")
	_ = verified
	deadline := time.Now().Add(60 * time.Second)
	for {
		out = c.logs("n2", id)
		if strings.Contains(out, "ok=false") {
			t.Fatalf("the workload found its memory corrupted:\n%s", tail(out, 5))
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		last := lines[len(lines)-1]
		if strings.Contains(last, "ok=true") && !strings.Contains(last, "verified=0 ") && len(lines) > 40 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the workload stopped:\n%s", tail(out, 5))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if j := c.ps("n2")[id]; j.Node != "n3" || j.State != "running" || j.Migrations != 5 {
		t.Fatalf("after five moves: %+v", j)
	}
	// Ticks are continuous and the PID never changed (workload lines).
	prev, pid := 0, ""
	for _, l := range strings.Split(out, "\n") {
		var tick int
		var p string
		f := strings.Fields(l)
		if len(f) < 2 || !strings.HasPrefix(f[0], "tick=") {
			continue
		}
		if _, err := fmtSscan(f[0][5:], &tick); err != nil {
			continue
		}
		p = f[1]
		if prev != 0 && tick != prev+1 {
			t.Fatalf("tick %d after %d", tick, prev)
		}
		if pid != "" && p != pid {
			t.Fatalf("%s after %s", p, pid)
		}
		prev, pid = tick, p
	}
}
