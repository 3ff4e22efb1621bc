package cluster_test

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// waitState polls `ferry ps` on node until job is in state (or fails).
func (c *testCluster) waitState(node, job, state string) jobInfo {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		j := c.ps(node)[job]
		if j.State == state {
			return j
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s on %s: %+v, want state %q", job, node, j, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitNode waits until node answers and sees every other node alive.
func (c *testCluster) waitNode(node string, n int) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := c.ferry(node, "members")
		if strings.Count(out, "alive") == n {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("node %s sees: %s", node, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNodeCrashJobsRunOn kills a node daemon with SIGKILL while its jobs
// run: they run on without it (output captured, nothing lost), the other
// nodes show them as "node down", a job that ends meanwhile is reported
// with its exit status, and the restarted daemon takes them back.
func TestNodeCrashJobsRunOn(t *testing.T) {
	c := startCluster(t, 3, nil)
	a := c.runCounter("n1")
	b := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", "/bin/sh", "-c", "sleep 1; echo bye; exit 7"))
	// The other nodes learn a node's jobs once a second.
	time.Sleep(1500 * time.Millisecond)
	before := checkOutput(t, c.logs("n1", a), false)
	c.kill("n1")
	if n := copies(t); n != 1 {
		t.Fatalf("%d copies of the job run after its node died", n)
	}
	for _, other := range []string{"n2", "n3"} {
		j := c.waitState(other, a, "node down")
		if j.Node != "n1" {
			t.Errorf("ps on %s: %+v", other, j)
		}
	}
	time.Sleep(2 * time.Second) // b ends, a goes on printing, no daemon on n1
	c.startNode("n1", nil)
	for _, id := range []string{"n1", "n2", "n3"} {
		c.waitNode(id, 3)
	}
	j := c.waitState("n1", a, "running")
	if j.Node != "n1" {
		t.Fatalf("after the restart: %+v", j)
	}
	// ps names the job's main process by its location-independent id.
	if out := c.mustFerry("n2", "ps"); !strings.Contains(out, fmt.Sprintf("%s.%d", a, j.PID)) {
		t.Errorf("ferry ps does not show %s.%d:\n%s", a, j.PID, out)
	}
	jb := c.ps("n1")[b]
	if jb.State != "exited" || jb.Exit == nil || *jb.Exit != 7 {
		t.Errorf("the job that ended while the node was down: %+v, want exited 7", jb)
	}
	if out := c.logs("n2", b); out != "bye\n" {
		t.Errorf("its output: %q", out)
	}
	// Every tick printed while no daemon ran is in the log, once.
	after := c.waitTicks("n1", a, before+150)
	checkOutput(t, c.logs("n1", a), true)
	for _, other := range []string{"n2", "n3"} {
		c.waitState(other, a, "running")
	}
	if n := copies(t); n != 1 {
		t.Fatalf("%d copies run after the restart", n)
	}
	// And it moves on as before.
	c.mustFerry("n1", "migrate", a, "--to", "n2")
	c.waitTicks("n3", a, after+5)
	checkOutput(t, c.logs("n3", a), true)
	if n := copiesSettled(t, 1); n != 1 {
		t.Fatalf("%d copies run after the migration", n)
	}
}

// TestNodeUpgradeInPlace stops a node daemon (SIGTERM) while jobs run and
// a migration is under way, and starts a new binary on the same state
// directory: the migration finishes, the jobs carry on.
func TestNodeUpgradeInPlace(t *testing.T) {
	c := startCluster(t, 2, nil)
	stay := c.runCounter("n1")
	move := c.runCounter("n1")
	mig := exec.Command(ferryBin, "migrate", move, "--to", "n2", "--mode", "precopy")
	mig.Env = append(os.Environ(), "FERRY_SOCKET="+c.socket("n1"))
	var migOut lockedBuffer
	mig.Stdout, mig.Stderr = &migOut, &migOut
	if err := mig.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // under way
	// The upgrade: a new binary, started on the same state once the old
	// daemon is gone.
	newBin := filepath.Join(c.dir, "ferry-new")
	copyFile(t, ferryBin, newBin)
	cmd := c.nodes["n1"]
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	delete(c.nodes, "n1")
	migErr := mig.Wait()
	c.bin = newBin
	c.startNode("n1", nil)
	c.waitNode("n1", 2)
	if migErr != nil {
		// The stopping node let it finish, or it failed before the
		// commit and the job stayed: either way one copy runs.
		t.Logf("migrate during the upgrade: %v\n%s", migErr, migOut.String())
	}
	where := "n2"
	if migErr != nil {
		where = "n1"
	}
	c.waitState("n1", move, "running")
	if j := c.ps("n1")[move]; j.Node != where {
		t.Fatalf("the migrated job: %+v, want it on %s", j, where)
	}
	if j := c.ps("n2")[stay]; j.Node != "n1" || j.State != "running" {
		t.Fatalf("the job that stayed: %+v", j)
	}
	for _, id := range []string{stay, move} {
		n := checkOutput(t, c.logs("n2", id), false)
		c.waitTicks("n1", id, n+10)
		checkOutput(t, c.logs("n1", id), true)
	}
	if n := copiesSettled(t, 2); n != 2 {
		t.Fatalf("%d copies of two jobs run", n)
	}
	// The new daemon's processes run the new binary; the jobs' inits,
	// the old one — and they carry on.
	c.mustFerry("n1", "migrate", stay, "--to", "n2")
	c.waitTicks("n2", stay, checkOutput(t, c.logs("n1", stay), false)+5)
}

// TestNodeCrashInMigration kills a node daemon (SIGKILL, the node's own
// fault point) in each phase of a migration, on either side, restarts
// it, and checks the transaction: exactly one copy runs, where the phase
// says, its output continuous; ps agrees on every node. (With postcopy,
// a source daemon that dies after the commit does not take the job's
// memory with it: its agent outlives it and finishes the push.)
func TestNodeCrashInMigration(t *testing.T) {
	cases := []struct {
		node, fault string
		committed   bool
	}{
		{"n1", "die-sending", false},    // source, agent under way
		{"n1", "die-committing", false}, // source, job stopped, commit not yet sent
		{"n1", "die-committed", true},   // source, the new copy runs, the old one not yet killed
		{"n2", "die-prepared", false},   // destination, prepared
		{"n2", "die-released", true},    // destination, the new copy just released
	}
	for _, mode := range []string{"freeze", "precopy", "postcopy"} {
		for _, tc := range cases {
			t.Run(mode+"/"+tc.node+"-"+tc.fault, func(t *testing.T) {
				c := startCluster(t, 2, map[string][]string{tc.node: {"node=" + tc.fault}})
				job := c.runCounter("n1")
				out, err := c.ferry("n1", "migrate", job, "--to", "n2", "--mode", mode)
				t.Logf("migrate: %v: %s", err, strings.TrimSpace(out))
				// The node died at its fault point; start it again
				// without the fault.
				cmd := c.nodes[tc.node]
				cmd.Wait()
				delete(c.nodes, tc.node)
				c.startNode(tc.node, nil)
				c.waitNode(tc.node, 2)
				want := "n1"
				if tc.committed {
					want = "n2"
				}
				deadline := time.Now().Add(30 * time.Second)
				for {
					j1, j2 := c.ps("n1")[job], c.ps("n2")[job]
					if j1.State == "running" && j2.State == "running" && j1.Node == want && j2.Node == want {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("after %s: ps on n1 %+v, on n2 %+v; want running on %s", tc.fault, j1, j2, want)
					}
					time.Sleep(50 * time.Millisecond)
				}
				n := checkOutput(t, c.logs("n1", job), false)
				c.waitTicks("n2", job, n+5)
				if k := copiesSettled(t, 1); k != 1 {
					t.Fatalf("%d copies run after %s", k, tc.fault)
				}
				checkOutput(t, c.logs("n2", job), true)
			})
		}
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestAttachedAcrossNodeRestart: an attached `ferry run` whose node is
// killed (SIGKILL) and started again rides it out: its output goes on
// from where it was (every tick once), input typed while the node was
// away reaches the job once it is back, in order, and EOF and Ctrl-C
// still work.
func TestAttachedAcrossNodeRestart(t *testing.T) {
	c := startCluster(t, 2, nil)
	run, stdin, out, _ := c.attachedCounter("n1")
	waitOut := func(what string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(out.String(), what) {
			if time.Now().After(deadline) {
				var other []string
				for _, l := range strings.Split(out.String(), "\n") {
					if !strings.HasPrefix(l, "tick ") {
						other = append(other, l)
					}
				}
				t.Fatalf("ferry run never printed %q; besides ticks it printed:\n%s", what, strings.Join(other, "\n"))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	fmt.Fprintln(stdin, "a")
	waitOut("in: a")
	c.kill("n1")
	fmt.Fprintln(stdin, "b") // while no daemon runs
	waitOut("does not answer")
	time.Sleep(time.Second)
	c.startNode("n1", nil)
	waitOut("in: b") // (one line at a time: the job echoes what one read gets)
	fmt.Fprintln(stdin, "c")
	waitOut("in: c")
	stdin.Close()
	waitOut("eof")
	interruptAttached(t, run)
	got := out.String()
	checkOutput(t, got, true)
	if ins := inputLines(got); strings.Join(ins, "|") != "a|b|c" {
		t.Errorf("the job read %q, want a, b, c once each, in order", ins)
	}
	if n := copiesSettled(t, 0); n != 0 {
		t.Errorf("%d copies still run after the job ended", n)
	}
}
