package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestTreeJob moves a job that is a process tree — a shell running the
// counter piped into `cat -n` — with each mechanism: the tree moves whole
// (PIDs, the pipe between them with what is in it), and cat's line numbers
// must match the counter's ticks on every line: no byte lost or repeated
// inside the job or on its way out.
func TestTreeJob(t *testing.T) {
	c := startCluster(t, 2, nil)
	job := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", "/bin/sh", "-c", counterBin+" 10000 | cat -n"))
	at := "n1"
	for _, mode := range []string{"freeze", "precopy", "postcopy", "freeze"} {
		to := map[string]string{"n1": "n2", "n2": "n1"}[at]
		before := strings.Count(c.logs("n1", job), "\n")
		if out := c.mustFerry("n1", "migrate", job, "--to", to, "--mode", mode); !strings.Contains(out, "moved to "+to) {
			t.Fatalf("migrate: %s", out)
		}
		at = to
		deadline := time.Now().Add(30 * time.Second)
		for strings.Count(c.logs("n2", job), "\n") < before+5 {
			if time.Now().After(deadline) {
				t.Fatalf("the job stopped printing after moving to %s by %s", to, mode)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if n := copiesSettled(t, 1); n != 1 {
			t.Fatalf("%d copies of the counter after %s", n, mode)
		}
	}
	out := c.logs("n1", job)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 20 {
		t.Fatalf("only %d lines:\n%s", len(lines), out)
	}
	pid := ""
	for i, l := range lines {
		var n, tick int
		var p string
		if _, err := fmt.Sscanf(strings.TrimSpace(l), "%d\ttick %d pid %s", &n, &tick, &p); err != nil {
			t.Fatalf("line %d: %q: %v", i+1, l, err)
		}
		if n != i+1 || tick != i+1 {
			t.Fatalf("line %d reads %q: a line lost or repeated", i+1, l)
		}
		if pid != "" && p != pid {
			t.Fatalf("the counter's pid changed from %s to %s", pid, p)
		}
		pid = p
	}
}
