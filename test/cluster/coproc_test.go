package cluster_test

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ferry/internal/testutil"
)

// TestCoprocessApart: one process of a job, the child of the job's main
// process, moves alone to another node (ferry migrate JOB --pid CHILD)
// while its parent stays; the two then check, themselves, that nothing
// changed for them (testdata/coproc.c): the child's ids, a one-byte
// ping-pong and 4 MiB each way over their pipes, signals both ways, the
// child's own fork, its stop and continue as the parent's waitpid sees
// them, end of file, and its exit code in the parent's waitpid.
func TestCoprocessApart(t *testing.T) {
	bin := filepath.Join(filepath.Dir(ferryBin), "coproc")
	if err := testutil.CompileC(bin, "testdata/coproc.c", []string{"-O2"}); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, 2, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin))
	child := waitChild(t, c, "n1", id)
	out, err := c.ferry("n1", "migrate", id, "--pid", child, "--alone", "--to", "n2")
	if err != nil {
		t.Fatalf("migrate %s --pid %s: %v\n%s", id, child, err, out)
	}
	ps := c.mustFerry("n1", "ps")
	if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(id+"."+child) + `\s.*\sn2\s`).MatchString(ps) {
		t.Errorf("ferry ps does not show pid %s on n2:\n%s", child, ps)
	}
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	waitJobOutput(t, c, "n1", id, "\nok\n")
}

// waitChild returns the PID the job's output names in a line "child PID".
func waitChild(t *testing.T, c *testCluster, node, id string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^child (\d+)$`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(c.logs(node, id)); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never named its child:\n%s", id, c.logs(node, id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitJobOutput waits until the job's output has want, and fails at the
// first line with FAIL.
func waitJobOutput(t *testing.T, c *testCluster, node, id, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := c.logs(node, id)
		if strings.Contains(out, "FAIL") {
			t.Fatalf("job %s:\n%s", id, out)
		}
		if strings.Contains(out, want) {
			t.Logf("job %s:\n%s", id, out)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never printed %q:\n%s", id, want, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
