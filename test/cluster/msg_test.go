package cluster_test

import (
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestMessagesOnOneNode: two jobs on one node talk through the node's
// message endpoint with the Python client: the receiver gets every
// message once, in order, named by the sender's id; a payload over 64 KiB,
// an unknown process and an unknown job are refused with the reason.
func TestMessagesOnOneNode(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the message endpoint is tested with the Python client (install python3)")
	}
	lib, err := filepath.Abs("../../clients/python")
	if err != nil {
		t.Fatal(err)
	}
	recvPy, _ := filepath.Abs("testdata/msg_recv.py")
	sendPy, _ := filepath.Abs("testdata/msg_send.py")
	c := startCluster(t, 2, nil)
	rj := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", py, recvPy, lib, "3"))
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(c.logs("n1", rj), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("receiver: %s", c.logs("n1", rj))
		}
		time.Sleep(20 * time.Millisecond)
	}
	rid := strings.Fields(c.logs("n1", rj))[1]
	if j := c.ps("n1")[rj]; rid != rj+"."+itoa(j.PID) {
		t.Fatalf("receiver says it is %q; ps: job %s pid %d", rid, rj, j.PID)
	}
	// Its endpoint connection cannot move yet: the migration is refused,
	// saying why, and the job runs on here.
	if out, err := c.ferry("n1", "migrate", rj, "--to", "n2"); err == nil {
		t.Fatalf("a job holding its message endpoint migrated:\n%s", out)
	} else {
		t.Logf("migrate refused: %s", strings.TrimSpace(out))
	}
	if j := c.ps("n2")[rj]; j.State != "running" || j.Node != "n1" {
		t.Fatalf("after the refused migration: %+v", j)
	}
	sj := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", py, sendPy, lib, rid))
	for !strings.Contains(c.logs("n1", sj), "done") || !strings.Contains(c.logs("n1", rj), "done") {
		if time.Now().After(deadline) {
			t.Fatalf("sender:\n%s\nreceiver:\n%s", c.logs("n1", sj), c.logs("n1", rj))
		}
		time.Sleep(20 * time.Millisecond)
	}
	sid := sj + "." + itoa(c.ps("n1")[sj].PID)
	want := "ready " + rid + "\ngot " + sid + " 1\ngot " + sid + " 2\ngot " + sid + " 3\ndone\n"
	if got := c.logs("n1", rj); got != want {
		t.Errorf("receiver printed:\n%s\nwant:\n%s", got, want)
	}
	out := c.logs("n1", sj)
	for _, w := range []string{"sent 1\nsent 2\nsent 3\n", "big TooBig", "unknown UnknownID", "has no process 4000", "nojob UnknownID", "n1-999.100: no such job"} {
		if !strings.Contains(out, w) {
			t.Errorf("sender printed:\n%s\nwant it to contain %q", out, w)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
