package cluster_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/internal/testutil"
)

var (
	msgProgs             sync.Once
	msgSender, msgGoRecv string
	msgProgsErr          error
)

// buildMsgPrograms builds the C sender (with the C client library) and
// the Go receiver (with ferry/msg) once.
func buildMsgPrograms(t *testing.T) (sender, goRecv string) {
	t.Helper()
	msgProgs.Do(func() {
		dir := filepath.Dir(ferryBin)
		msgSender = filepath.Join(dir, "msg_sender")
		if msgProgsErr = testutil.CompileC(msgSender, "testdata/msg_sender.c", []string{"-O2", "-Wall", "-I../../clients/c"}, "../../clients/c/ferrymsg.c"); msgProgsErr != nil {
			return
		}
		msgGoRecv = filepath.Join(dir, "msgrecv")
		if out, err := exec.Command(testutil.GoTool(), "build", "-o", msgGoRecv, "./testdata/msgrecv").CombinedOutput(); err != nil {
			msgProgsErr = &buildError{err, string(out)}
		}
	})
	if msgProgsErr != nil {
		t.Fatal(msgProgsErr)
	}
	return msgSender, msgGoRecv
}

type buildError struct {
	err error
	out string
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// TestMessagesFollowMoves: under each forwarding mechanism, a Go and a
// Python receiver are moved around three nodes (by freeze, precopy,
// postcopy and freeze again) while a C sender on another node sends them
// numbered messages without pause, each send waiting until delivered.
// Each receiver checks that it got 1, 2, 3, … from the sender, none
// missing, repeated or out of order, up to the sender's own last number
// — messages sent while it was frozen, arriving at its old node, in
// flight, and queued unread in its socket included.
func TestMessagesFollowMoves(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the receivers include the Python client (install python3)")
	}
	lib, _ := filepath.Abs("../../clients/python")
	checkPy, _ := filepath.Abs("testdata/msg_check.py")
	sender, goRecv := buildMsgPrograms(t)
	c := startCluster(t, 3, nil)
	modes := []string{"freeze", "precopy", "postcopy", "freeze"}
	for _, mech := range []string{"resend", "origin", "link", "update", "auto"} {
		t.Run(mech, func(t *testing.T) {
			gj := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--forwarding", mech, "--", goRecv, "1"))
			pj := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--forwarding", mech, "--", py, checkPy, lib, "1"))
			waitLog(t, c, "n1", gj, "ready")
			waitLog(t, c, "n1", pj, "ready")
			gid := strings.Fields(c.logs("n1", gj))[1]
			pid := strings.Fields(c.logs("n1", pj))[1]
			sj := strings.TrimSpace(c.mustFerry("n3", "run", "-d", "--", sender, "1000", gid, pid))
			waitLog(t, c, "n3", sj, "ready")
			sid := strings.Fields(c.logs("n3", sj))[1]
			at := map[string]string{gj: "n1", pj: "n1"}
			next := map[string]string{"n1": "n2", "n2": "n3", "n3": "n1"}
			for _, mode := range modes {
				for _, j := range []string{gj, pj} {
					to := next[at[j]]
					out, err := c.ferry("n1", "migrate", j, "--to", to, "--mode", mode)
					if err != nil {
						t.Fatalf("migrate %s to %s (%s): %v\n%s\nreceiver:\n%s\nsender:\n%s", j, to, mode, err, out, c.logs("n1", j), c.logs("n1", sj))
					}
					at[j] = to
					t.Logf("%s → %s (%s): %s", j, to, mode, lastLine(out))
				}
			}
			c.mustFerry("n2", "send", sid, "stop")
			if !waitLogFor(c, "n3", sj, "sent ", 30*time.Second) {
				for _, j := range []string{gj, pj, sj} {
					w, _ := c.ferry("n2", "where", j)
					t.Logf("where %s:\n%s", j, w)
					w, _ = c.ferry("n2", "where", "--json", j)
					t.Logf("where %s:\n%s", j, w)
				}
				if os.Getenv("FERRY_TEST_DEBUG") != "" {
					pid := c.ps("n3")[sj].NodePID
					st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stack", pid))
					t.Logf("sender stack:\n%s", st)
					ss, _ := exec.Command("ss", "-xp").CombinedOutput()
					for _, l := range strings.Split(string(ss), "\n") {
						if strings.Contains(l, fmt.Sprintf("pid=%d,", pid)) {
							t.Logf("ss: %s", l)
						}
					}
					c.nodes["n3"].Process.Signal(syscall.SIGQUIT)
					time.Sleep(time.Second)
					b, _ := os.ReadFile(filepath.Join(c.dir, "n3.log"))
					os.WriteFile("/tmp/n3-dump.log", b, 0o644)
				}
				t.Fatalf("sender never ended:\n%s", c.logs("n3", sj))
			}
			out := c.logs("n3", sj)
			if strings.Contains(out, "error") {
				t.Fatalf("sender:\n%s", out)
			}
			n := strings.TrimSpace(out[strings.LastIndex(out, "sent ")+len("sent "):])
			for _, j := range []string{gj, pj} {
				waitLog(t, c, at[j], j, "ok ")
				got := c.logs(at[j], j)
				if want := "ok " + sid + " " + n; !strings.Contains(got, want) || strings.Contains(got, "error") {
					t.Errorf("receiver %s printed:\n%s\nwant %q", j, got, want)
				}
			}
			t.Logf("%s: %s messages to each receiver across %d moves each", mech, n, len(modes))
		})
	}
}

// TestMessagesNodeDown shows the chapter's drawbacks and that auto has
// none of them: with origin, the creating node down makes a moved
// process unreachable; with link, a node of the chain down does; auto
// delivers in both cases. The receivers are `ferry recv` inside a job;
// the sender is `ferry send` on a node that never talked to them.
func TestMessagesNodeDown(t *testing.T) {
	c := startCluster(t, 4, nil)
	recv := func(mech string) (job, id string) {
		job = strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--forwarding", mech, "--", ferryBin, "recv", "-n", "1"))
		waitLog(t, c, "n1", job, "receiving as ")
		out := c.logs("n1", job)
		id = strings.Fields(out[strings.Index(out, "receiving as ")+len("receiving as "):])[0]
		return job, id
	}
	move := func(job string, to ...string) {
		for _, n := range to {
			c.mustFerry("n4", "migrate", job, "--to", n)
		}
	}
	check := func(node, job, id, from, mech string, wantOK bool) {
		t.Helper()
		out, err := c.ferry(from, "send", id, "hello "+mech)
		switch {
		case wantOK && err != nil:
			t.Errorf("%s: send to %s from %s: %v\n%s", mech, id, from, err, out)
		case wantOK:
			waitLog(t, c, node, job, "hello "+mech)
		case err == nil:
			t.Errorf("%s: send to %s from %s delivered, want unreachable", mech, id, from)
		case !strings.Contains(out, "unreachable"):
			t.Errorf("%s: send to %s: %v\n%s\nwant unreachable", mech, id, err, out)
		default:
			t.Logf("%s: %s", mech, strings.TrimSpace(out))
		}
	}

	// The creating node down.
	oj, oid := recv("origin")
	aj, aid := recv("auto")
	move(oj, "n2")
	move(aj, "n2")
	c.kill("n1")
	check("n2", oj, oid, "n3", "origin", false)
	check("n2", aj, aid, "n3", "auto", true)
	c.startNode("n1", nil)

	// A node of the chain of links down (n1 → n2 → n3, n2 down).
	lj, lid := recv("link")
	bj, bid := recv("auto")
	move(lj, "n2", "n3")
	move(bj, "n2", "n3")
	c.kill("n2")
	check("n3", lj, lid, "n4", "link", false)
	check("n3", bj, bid, "n4", "auto", true)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// waitLogFor waits at most d until the job's output holds s.
func waitLogFor(c *testCluster, node, job, s string, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for !strings.Contains(c.logs(node, job), s) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}
