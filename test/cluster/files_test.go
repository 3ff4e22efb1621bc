package cluster_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestFilesTravelByContent runs a job from its node's scratch directory
// (each node has its own behind the same path, /run/ferry/scratch): its
// executable differs on the destination, its log file is missing there,
// and a file it keeps open is identical on both. Only the first two
// travel; the destination's own different file is left alone; the job
// goes on appending to its log on the new node.
func TestFilesTravelByContent(t *testing.T) {
	c := startCluster(t, 2, nil)
	scratch := func(node string) string { return filepath.Join(c.dir, node, "scratch") }
	bin, _ := os.ReadFile(counterBin)
	for _, n := range []string{"n1", "n2"} {
		os.MkdirAll(filepath.Join(scratch(n), "bin"), 0o755)
		os.WriteFile(filepath.Join(scratch(n), "same.txt"), []byte("identical on both nodes\n"), 0o644)
	}
	os.WriteFile(filepath.Join(scratch("n1"), "bin", "counter"), bin, 0o755)
	other := []byte("#!/bin/sh\necho n2's own program\n")
	os.WriteFile(filepath.Join(scratch("n2"), "bin", "counter"), other, 0o755)

	cmd := exec.Command(ferryBin, "run", "-d", "--", "/run/ferry/scratch/bin/counter", "10000")
	cmd.Env = append(os.Environ(), "FERRY_SOCKET="+c.socket("n1"),
		"COUNTER_LOG=/run/ferry/scratch/data.log", "COUNTER_KEEP=/run/ferry/scratch/same.txt")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ferry run: %v\n%s", err, out)
	}
	job := strings.TrimSpace(string(out))
	c.waitTicks("n1", job, 5)
	res := c.mustFerry("n1", "migrate", job, "--to", "n2", "--json")
	var rep struct {
		Committed bool `json:"committed"`
		Files     struct {
			Checked, Sent, Differ int
		} `json:"files"`
	}
	if err := json.Unmarshal([]byte(res), &rep); err != nil || !rep.Committed {
		t.Fatalf("migrate: %v\n%s", err, res)
	}
	if rep.Files.Sent != 2 || rep.Files.Differ != 1 || rep.Files.Checked < 3 {
		t.Errorf("files checked %d, sent %d (%d differ); want the executable (differs) and data.log (missing) sent, same.txt not",
			rep.Files.Checked, rep.Files.Sent, rep.Files.Differ)
	}
	before := c.waitTicks("n2", job, 0)
	c.waitTicks("n2", job, before+5)
	if got, _ := os.ReadFile(filepath.Join(scratch("n2"), "bin", "counter")); !bytes.Equal(got, other) {
		t.Errorf("the destination's own file at the job's path was changed")
	}
	// The log file moved with the job and grows on n2.
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(scratch("n2"), "data.log"))
		if n := checkOutput(t, string(b), true); n > before+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("data.log on n2 does not grow:\n%s", tail(string(b), 5))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := copiesSettled(t, 1); n != 1 {
		t.Fatalf("%d copies run", n)
	}
}
