package zdtm

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// treePIDs lists pid and its descendants from /proc.
func treePIDs(pid int) []int {
	out := []int{pid}
	for i := 0; i < len(out); i++ {
		tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(out[i]) + "/task")
		for _, tk := range tasks {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(out[i]) + "/task/" + tk.Name() + "/children")
			for _, f := range strings.Fields(string(b)) {
				if n, err := strconv.Atoi(f); err == nil {
					out = append(out, n)
				}
			}
		}
	}
	return out
}

// waitLines waits until file holds at least n lines (the program's own
// progress, not a fixed delay).
func waitLines(t *testing.T, file string, n int) []byte {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(file)
		if bytes.Count(b, []byte("\n")) >= n {
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s has %d lines, want %d", file, bytes.Count(b, []byte("\n")), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestShellPipeline: a real shell pipeline — bash running a counting loop
// (forking sleep) piped into cat, which writes a file — is dumped (and
// killed) as one tree and restored with its PIDs; the file's counter must
// go on with no number lost or repeated.
func TestShellPipeline(t *testing.T) {
	prepare(t, true)
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash not found")
	}
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	cmd := exec.Command("bash", "-c",
		`i=0; while [ $i -lt 100000 ]; do echo $i; i=$((i+1)); sleep 0.01; done | cat > `+out)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	root := cmd.Process.Pid
	waitLines(t, out, 10)
	tree := treePIDs(root)
	if len(tree) < 3 {
		t.Fatalf("pipeline tree %v, want bash, its loop and cat", tree)
	}
	kill := func() {
		for _, p := range tree {
			unix.Kill(p, unix.SIGKILL)
		}
		for _, p := range tree {
			reapPid(p)
		}
	}
	img := filepath.Join(dir, "img")
	if o, err := exec.Command(ferryBin, "dump", strconv.Itoa(root), "--dir", img).CombinedOutput(); err != nil {
		kill()
		cmd.Wait()
		t.Fatalf("ferry dump: %v\n%s", err, o)
	}
	cmd.Wait() // the root; its children come to us, the subreaper
	// Reap every process the image holds (the tree changed since it was
	// listed: sleep comes and goes).
	js, err := exec.Command(ferryBin, "inspect", img, "--json").Output()
	if err != nil {
		t.Fatalf("ferry inspect: %v", err)
	}
	var sum struct {
		Checkpoint struct {
			Processes []struct {
				PID int `json:"pid"`
			} `json:"processes"`
		} `json:"checkpoint"`
	}
	if err := json.Unmarshal(js, &sum); err != nil {
		t.Fatalf("ferry inspect --json: %v", err)
	}
	tree = tree[:0]
	for _, p := range sum.Checkpoint.Processes {
		tree = append(tree, p.PID)
		if p.PID != root {
			reapPid(p.PID)
		}
	}
	before := bytes.Count(waitLines(t, out, 0), []byte("\n"))
	o, err := exec.Command(ferryBin, "restore", "--dir", img).CombinedOutput()
	if err != nil {
		t.Fatalf("ferry restore: %v\n%s", err, o)
	}
	defer kill()
	if !strings.Contains(string(o), "restored pid "+strconv.Itoa(root)) {
		t.Fatalf("ferry restore: %s, want pid %d", o, root)
	}
	data := waitLines(t, out, before+20)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	for i, l := range lines {
		if l != strconv.Itoa(i) {
			t.Fatalf("line %d is %q, want %d: a number was lost or repeated across the checkpoint (lines before it: %d)", i+1, l, i, before)
		}
	}
}
