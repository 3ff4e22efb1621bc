package cluster_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

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
					if out, err := c.ferry("n1", "migrate", j, "--to", to, "--mode", mode); err != nil {
						t.Fatalf("migrate %s to %s (%s): %v\n%s\nreceiver:\n%s\nsender:\n%s", j, to, mode, err, out, c.logs("n1", j), c.logs("n1", sj))
					}
					at[j] = to
				}
			}
			c.mustFerry("n2", "send", sid, "stop")
			waitLog(t, c, "n3", sj, "sent ")
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
