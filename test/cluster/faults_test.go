package cluster_test

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMigrationFaults breaks a migration at each phase, on either side,
// and checks the transaction: the job runs exactly once afterwards —
// back on the source, unharmed, unless the destination had committed —
// and its output stays continuous.
func TestMigrationFaults(t *testing.T) {
	cases := []struct {
		node, fault string
		committed   bool // where the job must run afterwards
	}{
		{"n1", "send=drop-image", false},    // the connection drops while the image streams
		{"n1", "send=corrupt-image", false}, // a frame fails its checksum
		{"n1", "send=cancel-ready", false},  // the user gives up after the destination restored
		{"n1", "send=drop-commit", true},    // commit sent, answer lost: the source asks and learns it committed
		{"n2", "recv=die-image", false},     // the destination dies mid-image
		{"n2", "recv=die-ready", false},     // the destination dies with the new copy built
		{"n2", "recv=drop-ready", false},    // the connection drops before ready
		{"n2", "recv=die-commit", false},    // the destination dies after the commit arrived, before the copy ran
	}
	for _, mode := range []string{"freeze", "precopy", "postcopy"} {
		for _, tc := range cases {
			if mode == "postcopy" && tc.fault == "send=drop-commit" {
				continue // TestPostcopySourceGone: after a postcopy commit the job needs its source
			}
			t.Run(mode+"/"+strings.ReplaceAll(tc.node+"-"+tc.fault, "=", "-"), func(t *testing.T) {
				c := startCluster(t, 2, map[string][]string{tc.node: {tc.fault}})
				job := c.runCounter("n1")
				out, err := c.ferry("n1", "migrate", job, "--to", "n2", "--mode", mode)
				if tc.committed != (err == nil) {
					t.Fatalf("migrate with %s: err=%v, want committed=%v\n%s", tc.fault, err, tc.committed, out)
				}
				want := "n1"
				if tc.committed {
					want = "n2"
				} else if !strings.Contains(out, "stays on its node, running") {
					t.Errorf("the user is not told the job runs on: %s", out)
				}
				before := checkOutput(t, c.logs("n1", job), false)
				c.waitTicks("n1", job, before+5)
				if n := copiesSettled(t, 1); n != 1 {
					out, _ := exec.Command("ps", "-eo", "pid,ppid,stat,pidns,args").CombinedOutput()
					t.Logf("processes:\n%s", out)
					t.Fatalf("%d copies of the job run after %s", n, tc.fault)
				}
				j := c.ps("n2")[job]
				if j.Node != want || j.State != "running" {
					t.Fatalf("after %s the job is %+v, want running on %s", tc.fault, j, want)
				}
				checkOutput(t, c.logs("n2", job), true)
				// The job can still move (no tracking or registration left
				// behind by the failed attempt).
				t.Logf("%s: %s", tc.fault, strings.TrimSpace(out))
			})
		}
	}
}

// TestMigrateInterrupted presses Ctrl-C on `ferry migrate` at various
// moments: whatever the outcome, the job runs exactly once and its
// output is continuous.
func TestMigrateInterrupted(t *testing.T) {
	c := startCluster(t, 2, nil)
	job := c.runCounter("n1")
	for i, delay := range []time.Duration{0, 5 * time.Millisecond, 15 * time.Millisecond, 30 * time.Millisecond} {
		node := c.ps("n1")[job].Node
		to := map[string]string{"n1": "n2", "n2": "n1"}[node]
		cmd := exec.Command(ferryBin, "migrate", job, "--to", to)
		cmd.Env = append(os.Environ(), "FERRY_SOCKET="+c.socket("n1"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(delay)
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		before := checkOutput(t, c.logs("n1", job), false)
		c.waitTicks("n2", job, before+3)
		if n := copiesSettled(t, 1); n != 1 {
			t.Fatalf("%d copies of the job run after Ctrl-C at %v", n, delay)
		}
		j := c.ps("n1")[job]
		if j.State != "running" {
			t.Fatalf("after Ctrl-C at %v: %+v", delay, j)
		}
		t.Logf("Ctrl-C after %v: migrate exited with %v; the job runs on %s", delay, err, j.Node)
		_ = i
	}
	checkOutput(t, c.logs("n2", job), true)
}

// TestSourceNodeGone migrates a job away and switches the source node
// off: the job does not depend on it any more.
func TestSourceNodeGone(t *testing.T) {
	for _, mode := range []string{"freeze", "precopy", "postcopy"} {
		t.Run(mode, func(t *testing.T) { testSourceNodeGone(t, mode) })
	}
}

func testSourceNodeGone(t *testing.T, mode string) {
	c := startCluster(t, 3, nil)
	job := c.runCounter("n1")
	c.mustFerry("n1", "migrate", job, "--to", "n2", "--mode", mode)
	c.kill("n1")
	before := checkOutput(t, c.logs("n2", job), false)
	after := c.waitTicks("n3", job, before+10)
	if n := copiesSettled(t, 1); n != 1 {
		t.Fatalf("%d copies run", n)
	}
	j := c.ps("n3")[job]
	if j.Node != "n2" || j.State != "running" || j.Home != "n1" {
		t.Fatalf("after n1 died: %+v", j)
	}
	// And it can move on without its home node.
	c.mustFerry("n3", "migrate", job, "--to", "n3")
	c.waitTicks("n2", job, after+5)
	checkOutput(t, c.logs("n3", job), true)
}

// TestPostcopySourceGone switches the source machine off (its daemon and
// its migration agent, which outlives a daemon that merely dies) while a
// postcopy push is under way: the job cannot get the rest of its memory,
// and the user is told so plainly (ferry ps: lost, with the reason).
func TestPostcopySourceGone(t *testing.T) {
	for attempt, mib := range []int{256, 512, 768} {
		c := startCluster(t, 2, nil)
		id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", ferryBin, "workload", "--mem", strconv.Itoa(mib),
			"--rate", "0", "--threads", "1", "--interval", "100ms"))
		deadline := time.Now().Add(60 * time.Second)
		for !strings.Contains(c.logs("n1", id), "tick=2 ") {
			if time.Now().After(deadline) {
				t.Fatal("the workload did not start")
			}
			time.Sleep(20 * time.Millisecond)
		}
		mig := exec.Command(ferryBin, "migrate", id, "--to", "n2", "--mode", "postcopy")
		mig.Env = append(os.Environ(), "FERRY_SOCKET="+c.socket("n1"))
		if err := mig.Start(); err != nil {
			t.Fatal(err)
		}
		// As soon as the job runs on n2, switch n1 off.
		for c.ps("n2")[id].Node != "n2" {
			if time.Now().After(deadline) {
				t.Fatal("the job never ran on n2")
			}
			time.Sleep(2 * time.Millisecond)
		}
		c.killMachine("n1")
		mig.Wait()
		var j jobInfo
		for {
			j = c.ps("n2")[id]
			if j.State == "lost" || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		if j.State == "running" {
			// The push ended before n1 went away: try a bigger job.
			t.Logf("attempt %d (%d MiB): the push finished before the source died", attempt, mib)
			c.stop()
			continue
		}
		if j.State != "lost" || !strings.Contains(j.Error, "source") {
			t.Fatalf("after the source died mid-push the job is %+v; want lost, saying the source is gone", j)
		}
		t.Logf("the user is told: %s", j.Error)
		return
	}
	t.Fatal("could not kill the source during a postcopy push in 3 attempts")
}
