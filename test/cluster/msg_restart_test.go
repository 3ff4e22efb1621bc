package cluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMessagesNodeRestart: what a node holds of the message layer
// outlives its daemon. A receiver created on n1 under origin (n1, its
// creating node, is then the one that knows where it is) does not read
// yet; `ferry send` on n3 sends it three messages, which wait in n1 for
// it; n1's daemon is restarted (stopped, then killed — a crash — after
// the journal had its time); the receiver moves to n2, taking the
// messages with it; n1 is restarted again; three more messages from n3
// must go through n1's table, then the receiver reads: all six, in
// order, once each.
func TestMessagesNodeRestart(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: the message endpoint is tested with the Python client (install python3)")
	}
	lib, _ := filepath.Abs("../../clients/python")
	phases, _ := filepath.Abs("testdata/msg_phases.py")
	recvPy, _ := filepath.Abs("testdata/msg_recv.py")
	for _, crash := range []bool{false, true} {
		name := "stop"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			c := startCluster(t, 3, nil)
			trigger := filepath.Join(c.dir, "go-recv")
			// One process, waiting without children (a dump taken while a
			// shell's short-lived child exits can fail), then ferry recv.
			script := "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)\nos.execv(sys.argv[2], [sys.argv[2], 'recv', '-n', '7', '--timeout', '30s'])"
			rj := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--forwarding", "origin", "--", py, "-c", script, trigger, ferryBin))
			rid := rj + "." + itoa(c.ps("n1")[rj].PID)
			t1, t2 := filepath.Join(c.dir, "phase1"), filepath.Join(c.dir, "phase2")
			sj := strings.TrimSpace(c.mustFerry("n3", "run", "-d", "--", py, phases, lib, rid, "3", t1, t2))
			waitLog(t, c, "n3", sj, "ready")
			sid := strings.Fields(c.logs("n3", sj))[1]
			// A pair on n1 connected throughout: their connections are
			// held by their jobs' inits while no daemon runs.
			r2 := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", py, recvPy, lib, "6"))
			waitLog(t, c, "n1", r2, "ready")
			r2id := strings.Fields(c.logs("n1", r2))[1]
			s2 := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", py, phases, lib, r2id, "3", t1, t2))
			waitLog(t, c, "n1", s2, "ready")
			s2id := strings.Fields(c.logs("n1", s2))[1]
			restart := func() {
				t.Helper()
				cmd := c.nodes["n1"]
				if crash {
					time.Sleep(200 * time.Millisecond) // > the journal's 20 ms
					cmd.Process.Signal(syscall.SIGKILL)
				} else {
					cmd.Process.Signal(syscall.SIGTERM)
				}
				cmd.Wait()
				delete(c.nodes, "n1")
				c.startNode("n1", nil)
				c.waitNode("n1", 3)
				c.waitNode("n3", 3)
			}
			touch := func(path string) {
				t.Helper()
				if err := os.WriteFile(path, nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			touch(t1)
			waitLog(t, c, "n3", sj, "phase 1 sent 3")
			waitLog(t, c, "n1", s2, "phase 1 sent 3")
			waitLog(t, c, "n1", r2, "got "+s2id+" m3")
			restart()
			if crash {
				// The outcome of what the daemon took in its last moments
				// is unknown: the processes are told, and connect again.
				waitLog(t, c, "n1", r2, "restarted after a crash")
			}
			if j := c.ps("n1")[rj]; j.State != "running" || j.Node != "n1" {
				t.Fatalf("receiver after the restart: %+v", j)
			}
			c.mustFerry("n1", "migrate", rj, "--to", "n2")
			restart()
			touch(t2)
			waitLog(t, c, "n3", sj, "done")
			if crash {
				// (A sender sees the end at its next send: the ERROR, or
				// the closed connection if it wrote first.)
				waitLog(t, c, "n1", s2, "error m4")
				if out := c.logs("n1", s2); !strings.Contains(out, "restarted after a crash") && !strings.Contains(out, "closed the connection") {
					t.Errorf("the sender on n1 after the crash:\n%s", out)
				}
			}
			c.mustFerry("n3", "send", rid, "cli")
			if !crash {
				waitLog(t, c, "n1", s2, "done")
				waitLog(t, c, "n1", r2, "done")
				var w strings.Builder
				w.WriteString("ready " + r2id + "\n")
				for i := 1; i <= 6; i++ {
					w.WriteString("got " + s2id + " m" + itoa(i) + "\n")
				}
				w.WriteString("done\n")
				if got := c.logs("n1", r2); got != w.String() {
					t.Errorf("the receiver connected across the restarts printed:\n%s\nwant:\n%s", got, w.String())
				}
				if got := c.logs("n1", s2); strings.Count(got, "ready") != 1 || strings.Contains(got, "error") {
					t.Errorf("the sender connected across the restarts printed:\n%s", got)
				}
			}
			touch(trigger)
			c.waitState("n2", rj, "exited")
			var want strings.Builder
			for i := 1; i <= 6; i++ {
				want.WriteString(sid + " m" + itoa(i) + "\n")
			}
			want.WriteString("n3-0.1 cli\n")
			got := c.logs("n2", rj)
			if !strings.Contains(got, "receiving as "+rid) {
				t.Errorf("receiver's output:\n%s\nwant it to receive as %s", got, rid)
			}
			var lines []string
			for _, l := range strings.Split(got, "\n") {
				if strings.HasPrefix(l, "n3-") {
					lines = append(lines, l)
				}
			}
			if strings.Join(lines, "\n")+"\n" != want.String() {
				t.Errorf("receiver got:\n%s\nwant:\n%s", got, want.String())
			}
		})
	}
}
