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

// TestMessagesBetweenNodes: a receiver on n2 gets the messages of a
// Python sender on n1 and of `ferry send` on n3, each sender's in order,
// each once; a message to a job that ended is refused as ended.
func TestMessagesBetweenNodes(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the message endpoint is tested with the Python client (install python3)")
	}
	lib, _ := filepath.Abs("../../clients/python")
	recvPy, _ := filepath.Abs("testdata/msg_recv.py")
	sendPy, _ := filepath.Abs("testdata/msg_send.py")
	c := startCluster(t, 3, nil)
	rj := strings.TrimSpace(c.mustFerry("n2", "run", "-d", "--", py, recvPy, lib, "5"))
	waitLog(t, c, "n2", rj, "ready")
	rid := strings.Fields(c.logs("n2", rj))[1]
	for i := 1; i <= 2; i++ {
		c.mustFerry("n3", "send", rid, "cli "+itoa(i))
	}
	sj := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", py, sendPy, lib, rid))
	waitLog(t, c, "n2", rj, "done")
	waitLog(t, c, "n1", sj, "done")
	sid := sj + "." + itoa(c.ps("n1")[sj].PID)
	got := c.logs("n2", rj)
	want := "ready " + rid + "\ngot n3-0.1 cli 1\ngot n3-0.2 cli 2\ngot " + sid + " 1\ngot " + sid + " 2\ngot " + sid + " 3\ndone\n"
	if got != want {
		t.Errorf("receiver printed:\n%s\nwant:\n%s", got, want)
	}
	if out := c.logs("n1", sj); !strings.Contains(out, "sent 1\nsent 2\nsent 3\n") || !strings.Contains(out, "unknown UnknownID") {
		t.Errorf("sender printed:\n%s", out)
	}
	// The receiver has ended: a message to it says so.
	c.waitState("n2", rj, "exited")
	out, err := c.ferry("n1", "send", rid, "late")
	if err == nil || !strings.Contains(out, "ended") {
		t.Errorf("send to an ended process: %v\n%s", err, out)
	}
}

// waitLog waits until the job's output holds s.
func waitLog(t *testing.T, c *testCluster, node, job, s string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(c.logs(node, job), s) {
		if time.Now().After(deadline) {
			t.Fatalf("job %s on %s never printed %q:\n%s", job, node, s, c.logs(node, job))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
