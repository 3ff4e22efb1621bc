package coproc

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"ferry/internal/deputy"
	"ferry/internal/procfs"
	"ferry/internal/testutil"
)

var family = &testutil.CProgram{Src: "testdata/family.c", Flags: []string{"-O1", "-Wall"}}

func TestMain(m *testing.M) {
	code := m.Run()
	family.Remove()
	os.Exit(code)
}

// start runs the family and returns the parent's and the child's PIDs
// and the job (the parent and its descendants).
func start(t *testing.T, args ...string) (parent, child int, job []int) {
	t.Helper()
	cmd := exec.Command(family.Path(t), args...)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The whole session: the parent leads it.
		exec.Command("pkill", "-KILL", "-s", fmt.Sprint(cmd.Process.Pid)).Run()
		cmd.Wait()
	})
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatal("the family says nothing")
	}
	fmt.Sscanf(sc.Text(), "child %d", &child)
	want := 2
	if strings.Contains(strings.Join(args, " "), "grandchild") {
		want = 3
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		kids, _ := descendants(cmd.Process.Pid)
		job = append([]int{cmd.Process.Pid}, kids...)
		if len(job) == want || time.Now().After(deadline) {
			break
		}
	}
	if strings.Contains(strings.Join(args, " "), "wait") {
		for deadline := time.Now().Add(10 * time.Second); !waiting(child) && time.Now().Before(deadline); {
			time.Sleep(5 * time.Millisecond)
		}
	}
	return cmd.Process.Pid, child, job
}

// TestPlan: the child's ends of the two pipes its parent holds become a
// stream each way; its own children go with it unless alone; what
// cannot be relayed or what a policy forbids refuses the move, saying
// why.
func TestPlan(t *testing.T) {
	parent, child, job := start(t)
	p, err := Make(job, child, true, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Parent != parent || p.SID != parent || p.PGID != parent {
		t.Errorf("parent %d session %d group %d, want %d for all", p.Parent, p.SID, p.PGID, parent)
	}
	// The child's ends of its two pipes (fds 3 and 6: down[0], up[1]),
	// and its stdout, which its parent holds too: relayed. (Other fds
	// the test's own environment leaks into both may show up.)
	dirOf := map[int]deputy.Dir{}
	for _, s := range p.Streams {
		if s.Kind != "pipe" {
			t.Errorf("stream %+v", s)
		}
		for _, fd := range s.Holders[child] {
			dirOf[fd] = s.Dir
		}
	}
	for fd, want := range map[int]deputy.Dir{3: deputy.ToAway, 6: deputy.ToHome, 1: deputy.ToHome} {
		if d, ok := dirOf[fd]; !ok || d != want {
			t.Errorf("fd %d of the child: stream %v (%v), want one flowing %v; streams %+v", fd, d, ok, want, p.Streams)
		}
	}
	if _, ok := dirOf[0]; ok {
		t.Errorf("the child's stdin (/dev/null, a file) became a stream")
	}
	if _, err := Make(job, child, false, Policy{KeepTogether: true}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--keep-together") {
		t.Errorf("keep-together: %v", err)
	}
	if _, err := Make(job[:1], child, false, Policy{}); !errors.Is(err, ErrRefused) {
		t.Errorf("a process not of the job: %v", err)
	}
}

func TestPlanChildren(t *testing.T) {
	_, child, job := start(t, "grandchild")
	if _, err := Make(job, child, true, Policy{}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--alone") {
		t.Errorf("alone with a child: %v", err)
	}
	p, err := Make(job, child, false, Policy{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Moved) != 2 || p.Moved[0] != child {
		t.Errorf("moved %v, want the child and its child", p.Moved)
	}
	// The grandchild inherited the child's pipe ends: one stream each
	// way still, held by both.
	for _, s := range p.Streams {
		if len(s.Holders) != 2 {
			t.Errorf("stream %+v: want both moved processes holding it", s)
		}
	}
}

func TestPlanWaiting(t *testing.T) {
	_, child, job := start(t, "grandchild", "wait")
	if st, _ := procfs.Syscall(child); !waiting(child) {
		t.Fatalf("the child does not wait: %s", st)
	}
	if _, err := Make(job, child, false, Policy{NoSeparateWaiting: true}); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "--no-separate-waiting") {
		t.Errorf("no-separate-waiting: %v", err)
	}
	if _, err := Make(job, child, false, Policy{}); err != nil {
		t.Errorf("without the policy: %v", err)
	}
}

func TestPlanSharedMemory(t *testing.T) {
	parent, child, job := start(t, "shm")
	_, err := Make(job, child, true, Policy{})
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", parent)) || !strings.Contains(err.Error(), "shares memory") {
		t.Errorf("shared memory: %v, want a refusal naming the mapping and pid %d", err, parent)
	}
}
