package cluster_test

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestSpreadBuild is the chapter's pmake: `make -j6` of a C project run
// with `ferry run --spread cc`, so that each compiler process is placed,
// as it starts, on the least loaded of three nodes (moved there alone,
// its parent and make staying home). The compilers ran on every node,
// and the program and every object file are byte for byte those of the
// same build on one node, without ferry.
func TestSpreadBuild(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal("make is not installed (scripts/test installs it)")
	}
	c := startCluster(t, 3, nil)
	dir := filepath.Join(t.TempDir(), "proj")
	if out, err := exec.Command("cp", "-r", "../../internal/demo/spreadproj", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	out, err := c.ferry("n1", "run", "--spread", "cc", "--", "make", "-C", dir, "-j6")
	if err != nil {
		t.Fatalf("ferry run --spread cc -- make -j6: %v\n%s", err, out)
	}
	spread := sums(t, dir)
	var jobs []struct {
		ID         string         `json:"id"`
		Spread     []string       `json:"spread"`
		SpreadRuns map[string]int `json:"spread_runs"`
	}
	if err := json.Unmarshal([]byte(c.mustFerry("n1", "ps", "--json")), &jobs); err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 1 {
		t.Fatalf("%d jobs", len(jobs))
	}
	runs := jobs[0].SpreadRuns
	total := 0
	for _, id := range []string{"n1", "n2", "n3"} {
		if runs[id] == 0 {
			t.Errorf("no compiler ran on %s: %v", id, runs)
		}
		total += runs[id]
	}
	if total != 14 { // 13 compiles and the link
		t.Errorf("%d compiler processes placed (%v), want 14", total, runs)
	}
	t.Logf("compilers placed: %v\n%s", runs, out)
	if b, err := os.ReadFile(filepath.Join(c.dir, "n1.log")); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.Contains(l, "spread: the process runs here") {
				t.Errorf("a move failed: %s", l)
			}
		}
	}

	if out, err := exec.Command("make", "-C", dir, "clean").CombinedOutput(); err != nil {
		t.Fatalf("make clean: %v\n%s", err, out)
	}
	if out, err := exec.Command("make", "-C", dir, "-j6").CombinedOutput(); err != nil {
		t.Fatalf("make -j6 on one node: %v\n%s", err, out)
	}
	local := sums(t, dir)
	if len(local) != 14 {
		t.Fatalf("the local build made %d files", len(local))
	}
	for f, h := range local {
		if spread[f] != h {
			t.Errorf("%s differs between the spread build and the build on one node", f)
		}
	}
	if got, err := exec.Command(filepath.Join(dir, "prog")).Output(); err != nil || len(strings.TrimSpace(string(got))) != 16 {
		t.Errorf("the program: %v %q", err, got)
	}
}

// sums hashes the build's products in dir: the program and its objects.
func sums(t *testing.T, dir string) map[string]string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*.o"))
	files = append(files, filepath.Join(dir, "prog"))
	sort.Strings(files)
	out := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatalf("the build did not make %s: %v", filepath.Base(f), err)
		}
		out[filepath.Base(f)] = fmt.Sprintf("%x", sha256.Sum256(b))
	}
	return out
}
