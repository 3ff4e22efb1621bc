package cluster_test

import (
	"strings"
	"testing"
	"time"
)

// TestLongLogMoves migrates a job whose log is longer than one hand-over
// request may carry: it travels in chunks, and the new node serves all of
// it.
func TestLongLogMoves(t *testing.T) {
	c := startCluster(t, 2, nil)
	const size = 30 << 20 // in one request: 40 MiB of base64, over maxCarryBody
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", "sh", "-c",
		`head -c 31457280 /dev/zero | tr '\0' x; echo; exec sleep 1000`))
	deadline := time.Now().Add(30 * time.Second)
	for len(c.logs("n1", id)) < size+1 {
		if time.Now().After(deadline) {
			t.Fatalf("the job wrote only %d bytes", len(c.logs("n1", id)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := c.mustFerry("n1", "migrate", id, "--to", "n2"); !strings.Contains(out, "moved to n2") {
		t.Fatalf("migrate: %s", out)
	}
	if j := c.ps("n1")[id]; j.Node != "n2" || j.State != "running" {
		t.Fatalf("after the move: %+v", j)
	}
	out := c.mustFerry("n2", "logs", id)
	if len(out) != size+1 || strings.Count(out, "x") != size {
		t.Errorf("the log on n2 has %d bytes (%d x), want %d", len(out), strings.Count(out, "x"), size+1)
	}
	c.mustFerry("n2", "kill", "-s", "KILL", id)
}
