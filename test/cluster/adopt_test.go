package cluster_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestAdoptAndMigrate moves a process ferry did not start: its output
// file keeps growing from the new node, and it keeps its PID.
func TestAdoptAndMigrate(t *testing.T) {
	c := startCluster(t, 2, nil)
	outPath := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(outPath)
	if err != nil {
		t.Fatal(err)
	}
	null, _ := os.Open(os.DevNull)
	cmd := exec.Command(counterBin, "10000")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	null.Close()
	t.Cleanup(func() { cmd.Process.Kill() }) // if it never moved
	// The old copy is killed by the migration; reap it.
	go cmd.Wait()
	read := func() string { b, _ := os.ReadFile(outPath); return string(b) }
	deadline := time.Now().Add(10 * time.Second)
	for checkOutput(t, read(), false) < 3 {
		if time.Now().After(deadline) {
			t.Fatal("the process printed nothing")
		}
		time.Sleep(10 * time.Millisecond)
	}
	out := c.mustFerry("n1", "migrate", "--pid", strconv.Itoa(cmd.Process.Pid), "--to", "n2")
	if !strings.Contains(out, "moved to n2") {
		t.Fatalf("migrate --pid: %s", out)
	}
	before := checkOutput(t, read(), false)
	for checkOutput(t, read(), false) < before+5 {
		if time.Now().After(deadline.Add(10 * time.Second)) {
			out, _ := exec.Command("sh", "-c", "for p in $(pgrep -x counter); do echo $p; grep -E 'State|NSpid|SigBlk|SigPnd|ShdPnd' /proc/$p/status; cat /proc/$p/wchan; echo; ls -l /proc/$p/fd; done").CombinedOutput()
			t.Fatalf("the migrated process stopped writing its file (tail %q); processes:\n%s\nps: %v", tail(read(), 2), out, c.ps("n2"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := copiesSettled(t, 1); n != 1 {
		t.Fatalf("%d copies run", n)
	}
	var job string
	for id, j := range c.ps("n1") {
		if j.PID == cmd.Process.Pid {
			job = id
			if j.Node != "n2" || j.State != "running" {
				t.Fatalf("adopted job after migration: %+v", j)
			}
		}
	}
	if job == "" {
		t.Fatalf("ferry ps does not list the adopted process %d", cmd.Process.Pid)
	}
	c.mustFerry("n1", "kill", "-s", "KILL", job)
}
