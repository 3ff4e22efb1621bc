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
	for _, crash := range []bool{false, true} {
		name := "stop"
		if crash {
			name = "crash"
		}
		t.Run(name, func(t *testing.T) {
			c := startCluster(t, 3, nil)
			trigger := filepath.Join(c.dir, "go-recv")
			script := "while [ ! -e " + trigger + " ]; do sleep 0.05; done; exec " + ferryBin + " recv -n 7 --timeout 30s"
			rj := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--forwarding", "origin", "--", "sh", "-c", script))
			rid := rj + "." + itoa(c.ps("n1")[rj].PID)
			t1, t2 := filepath.Join(c.dir, "phase1"), filepath.Join(c.dir, "phase2")
			sj := strings.TrimSpace(c.mustFerry("n3", "run", "-d", "--", py, phases, lib, rid, "3", t1, t2))
			waitLog(t, c, "n3", sj, "ready")
			sid := strings.Fields(c.logs("n3", sj))[1]
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
			restart()
			if j := c.ps("n1")[rj]; j.State != "running" || j.Node != "n1" {
				t.Fatalf("receiver after the restart: %+v", j)
			}
			c.mustFerry("n1", "migrate", rj, "--to", "n2")
			restart()
			touch(t2)
			waitLog(t, c, "n3", sj, "done")
			c.mustFerry("n3", "send", rid, "cli")
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
