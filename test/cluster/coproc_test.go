package cluster_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"ferry/internal/testutil"
)

// TestCoprocessApart: one process of a job, the child of the job's main
// process, moves alone to another node (ferry migrate JOB --pid CHILD)
// while its parent stays; the two then check, themselves, that nothing
// changed for them (testdata/coproc.c): the child's ids, a one-byte
// ping-pong and 4 MiB each way over their pipes, signals both ways, the
// child's own fork, its stop and continue as the parent's waitpid sees
// them, end of file, and its exit code in the parent's waitpid.
func TestCoprocessApart(t *testing.T) {
	c, id, child := coprocJob(t, 2, []string{"n2"}, true)
	ps := c.mustFerry("n1", "ps")
	if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(id+"."+child) + `\s.*\sn2\s`).MatchString(ps) {
		t.Errorf("ferry ps does not show pid %s on n2:\n%s", child, ps)
	}
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	waitJobOutput(t, c, "n1", id, "\nok\n")
	if !strings.Contains(c.logs("n1", id), "child "+child+" writes to the job's output from afar\n") {
		t.Errorf("the moved child's output is not in the job's:\n%s", c.logs("n1", id))
	}
}

// coprocJob builds testdata/coproc.c, starts a cluster of n nodes, runs
// the program as a job on n1 and returns the cluster, the job and the
// child's PID; the child is moved along route (from n1) with --pid.
func coprocJob(t *testing.T, n int, route []string, alone bool) (*testCluster, string, string) {
	t.Helper()
	bin := filepath.Join(filepath.Dir(ferryBin), "coproc")
	if err := testutil.CompileC(bin, "testdata/coproc.c", []string{"-O2"}); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, n, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin))
	child := waitChild(t, c, "n1", id)
	for _, to := range route {
		args := []string{"migrate", id, "--pid", child, "--to", to}
		if alone {
			args = append(args, "--alone")
		}
		if out, err := c.ferry("n1", args...); err != nil {
			t.Fatalf("migrate %s --pid %s --to %s: %v\n%s", id, child, to, err, out)
		}
	}
	return c, id, child
}

// waitChild returns the PID the job's output names in a line "child PID".
func waitChild(t *testing.T, c *testCluster, node, id string) string {
	t.Helper()
	re := regexp.MustCompile(`(?m)^child (\d+)$`)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(c.logs(node, id)); m != nil {
			return m[1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never named its child:\n%s", id, c.logs(node, id))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitJobOutput waits until the job's output has want, and fails at the
// first line with FAIL.
func waitJobOutput(t *testing.T, c *testCluster, node, id, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		out := c.logs(node, id)
		if strings.Contains(out, "FAIL") {
			t.Fatalf("job %s:\n%s", id, out)
		}
		if strings.Contains(out, want) {
			t.Logf("job %s:\n%s", id, out)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s never printed %q:\n%s", id, want, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// coprocWait builds testdata/coproc_wait.c once per test binary.
func coprocWait(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(filepath.Dir(ferryBin), "coproc_wait")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if err := testutil.CompileC(bin, "testdata/coproc_wait.c", []string{"-O2"}); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestCoprocessStatuses: what the parent's waitid reports of a child
// that runs on another node: a SIGTERM the parent sends it kills it
// there, and the parent sees "killed by SIGTERM"; a child whose node
// dies is reported killed by SIGKILL (never a wait that hangs). One moves
// by freeze, the other by precopy.
func TestCoprocessStatuses(t *testing.T) {
	bin := coprocWait(t)
	c := startCluster(t, 2, nil)
	term := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin, "term"))
	wait := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin, "wait"))
	for i, id := range []string{term, wait} {
		child := waitChild(t, c, "n1", id)
		mode := []string{"freeze", "precopy"}[i]
		if out, err := c.ferry("n1", "migrate", id+"."+child, "--alone", "--to", "n2", "--mode", mode); err != nil {
			t.Fatalf("migrate %s.%s (%s): %v\n%s", id, child, mode, err, out)
		}
	}
	c.mustFerry("n1", "kill", "-s", "USR1", term)
	waitJobOutput(t, c, "n1", term, "killed 15 core 0\n")
	c.killMachine("n2")
	waitJobOutput(t, c, "n1", wait, "killed 9 core 0\n")
}

// TestCoprocessHomeDies: the job's home node is switched off while one
// of its processes runs on another node. The job dies with its home (its
// init and the processes there), and the moved process does not outlive
// it: its node kills it once the relay's link has been down for its
// timeout.
func TestCoprocessHomeDies(t *testing.T) {
	bin := coprocWait(t)
	c := startCluster(t, 2, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin, "wait"))
	child := waitChild(t, c, "n1", id)
	if out, err := c.ferry("n1", "migrate", id, "--pid", child, "--alone", "--to", "n2"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	if n := countProcs(bin); n != 2 { // the parent, and the moved child (the stand-in runs ferry)
		t.Fatalf("%d processes of %s, want 2", n, bin)
	}
	c.killMachine("n1")
	deadline := time.Now().Add(40 * time.Second)
	for countProcs(bin) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("a process of the job outlived its home node by 40 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// (n2's ferry ps still shows the job as last seen, "node down", with
	// its process that was apart: what its home said last.)
}

// countProcs counts the live processes whose executable is bin.
func countProcs(bin string) int {
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == bin {
			if st, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); !strings.Contains(string(st), ") Z") {
				n++
			}
		}
	}
	return n
}

// TestCoprocessRefusals: the moves of one process apart that are refused,
// each with the rule that refused it, and the job running on unharmed.
func TestCoprocessRefusals(t *testing.T) {
	bin := coprocWait(t)
	c := startCluster(t, 2, nil)
	for _, tc := range []struct {
		name  string
		run   []string
		alone bool
		main  bool // move the main process, not its child
		want  string
	}{
		{"keep-together", []string{"--keep-together", "--", bin, "wait"}, true, false, "--keep-together"},
		{"no-separate-waiting", []string{"--no-separate-waiting", "--", bin, "nest"}, false, false, "waits for its children, and the job was started with --no-separate-waiting"},
		{"alone with children", []string{"--", bin, "nest"}, true, false, "--alone moves a process without any"},
		{"shared memory", []string{"--", bin, "shm"}, true, false, "shared memory cannot be relayed"},
		{"main process", []string{"--", bin, "wait"}, true, true, "the job's main process"},
		{"message endpoint", []string{"--", bin, "msg"}, true, false, "holds a connection to the job's message endpoint"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := strings.TrimSpace(c.mustFerry("n1", append([]string{"run", "-d"}, tc.run...)...))
			child := waitChild(t, c, "n1", id)
			if tc.name == "no-separate-waiting" || tc.name == "message endpoint" {
				time.Sleep(200 * time.Millisecond) // into its waitpid, connected
			}
			pid := child
			if tc.main {
				pid = "101"
				if j, ok := c.ps("n1")[id]; ok {
					pid = strconv.Itoa(j.PID)
				}
			}
			args := []string{"migrate", id, "--pid", pid, "--to", "n2"}
			if tc.alone {
				args = append(args, "--alone")
			}
			out, err := c.ferry("n1", args...)
			if err == nil {
				t.Fatalf("migrate %v moved it:\n%s", args, out)
			}
			if !strings.Contains(out, tc.want) || !strings.Contains(out, "cannot move apart from its job") {
				t.Errorf("migrate %v: want an error with %q, got:\n%s", args, tc.want, out)
			}
			if !strings.Contains(out, "pid "+pid+" ") && tc.name != "keep-together" {
				t.Errorf("the error does not name pid %s (the job's own numbering):\n%s", pid, out)
			}
			if j := c.ps("n1")[id]; j.State != "running" {
				t.Errorf("the job is %q after the refusal", j.State)
			}
			c.mustFerry("n1", "kill", id)
		})
	}
}

// TestCoprocessSessionLeader: a process in the session and group of the
// job's main process, whose parent is a process between them (as a
// compiler under make's shell is), moves alone: on the other node a
// stand-in of the leader leads its session and group again, and the
// process reports the same PID, parent, group and session before and
// after the move; its parent still gets its exit status.
func TestCoprocessSessionLeader(t *testing.T) {
	bin := coprocWait(t)
	c := startCluster(t, 2, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin, "grand"))
	child := waitChild(t, c, "n1", id)
	idsLine := regexp.MustCompile(`(?m)^ids .*$`)
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	waitJobOutput(t, c, "n1", id, "ids ")
	before := idsLine.FindString(c.logs("n1", id))
	if out, err := c.ferry("n1", "migrate", id, "--pid", child, "--alone", "--to", "n2"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	deadline := time.Now().Add(20 * time.Second)
	for len(idsLine.FindAllString(c.logs("n1", id), -1)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no ids after the move:\n%s", c.logs("n1", id))
		}
		time.Sleep(20 * time.Millisecond)
	}
	after := idsLine.FindAllString(c.logs("n1", id), -1)[1]
	if before != after || !strings.HasPrefix(before, "ids "+child+" ") {
		t.Fatalf("before the move %q, after %q", before, after)
	}
	c.mustFerry("n1", "kill", "-s", "TERM", id)
	waitJobOutput(t, c, "n1", id, "killed 15 core 0\n")
}

// TestCoprocessJobEnds: the job's main process ends while its child runs
// on another node: the job's init ends what is left at home, the child's
// stand-in among them, and the moved child does not outlive its job.
func TestCoprocessJobEnds(t *testing.T) {
	bin := coprocWait(t)
	c := startCluster(t, 2, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin, "grand"))
	child := waitChild(t, c, "n1", id)
	if out, err := c.ferry("n1", "migrate", id, "--pid", child, "--alone", "--to", "n2"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	c.mustFerry("n1", "kill", "-s", "KILL", id)
	deadline := time.Now().Add(20 * time.Second)
	for countProcs(bin) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d processes of the job still run 20 s after it ended", countProcs(bin))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCoprocessWithChildren: a process moves apart with its child (no
// --alone); there it still waits for it and forwards it a signal, and its
// parent at home gets the exit code it derived from its child's.
func TestCoprocessWithChildren(t *testing.T) {
	bin := coprocWait(t)
	c := startCluster(t, 2, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin, "family"))
	child := waitChild(t, c, "n1", id)
	deadline := time.Now().Add(10 * time.Second)
	for countProcs(bin) < 3 { // the grandchild is forked
		if time.Now().After(deadline) {
			t.Fatal("no grandchild")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out, err := c.ferry("n1", "migrate", id, "--pid", child, "--to", "n2"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	if n := countProcs(bin); n != 3 {
		t.Errorf("%d processes of the program after the move, want 3 (the parent here, the child and grandchild there)", n)
	}
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	waitJobOutput(t, c, "n1", id, "exited 17\n")
}

// TestCoprocessMovesOn: the moved child moves on from n2 to n3 (its
// home's relay goes on with the new node: no chain of deputies), and
// there the parent and child check everything of TestCoprocessApart.
func TestCoprocessMovesOn(t *testing.T) {
	c, id, child := coprocJob(t, 3, []string{"n2", "n3"}, false)
	bin := filepath.Join(filepath.Dir(ferryBin), "coproc")
	ps := c.mustFerry("n1", "ps")
	if !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(id+"."+child) + `\s.*\sn3\s`).MatchString(ps) {
		t.Errorf("ferry ps does not show pid %s on n3:\n%s", child, ps)
	}
	if n := countProcs(bin); n != 2 {
		t.Errorf("%d processes of the program, want 2 (the parent at home, the child on n3)", n)
	}
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	waitJobOutput(t, c, "n1", id, "\nok\n")
}

// TestCoprocessMovesUnderTraffic: a ping-pong between a parent and its
// child never stops while the child moves n1 → n2 → n3 → n2: every
// answer and every byte of data checked, none lost, repeated or
// reordered across each move and each hand-over of the relay.
func TestCoprocessMovesUnderTraffic(t *testing.T) {
	bin := filepath.Join(filepath.Dir(ferryBin), "coproc_flow")
	if err := testutil.CompileC(bin, "testdata/coproc_flow.c", []string{"-O2"}); err != nil {
		t.Fatal(err)
	}
	c := startCluster(t, 3, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin))
	child := waitChild(t, c, "n1", id)
	rounds := regexp.MustCompile(`(?m)^rounds (\d+)$`)
	last := func() int {
		m := rounds.FindAllStringSubmatch(c.logs("n1", id), -1)
		if len(m) == 0 {
			return 0
		}
		n, _ := strconv.Atoi(m[len(m)-1][1])
		return n
	}
	for _, to := range []string{"n2", "n3", "n2"} {
		before := last()
		if out, err := c.ferry("n1", "migrate", id, "--pid", child, "--to", to); err != nil {
			t.Fatalf("migrate %s --pid %s --to %s: %v\n%s", id, child, to, err, out)
		}
		deadline := time.Now().Add(30 * time.Second)
		for last() <= before+2000 {
			if strings.Contains(c.logs("n1", id), "FAIL") || time.Now().After(deadline) {
				t.Fatalf("after the move to %s:\n%s", to, tail(c.logs("n1", id), 5))
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	waitJobOutput(t, c, "n1", id, "flow ok ")
}

// TestCoprocessComesHome: the moved child comes back home (n1 → n2 → n3
// → n1): it is restored into its stand-in — the same process, so its
// parent never saw its child change — with the original ends of its
// pipes and socketpair; no relay, no stand-in is left, and parent and
// child check everything of TestCoprocessApart at home.
func TestCoprocessComesHome(t *testing.T) {
	c, id, _ := coprocJob(t, 3, []string{"n2", "n3", "n1"}, false)
	bin := filepath.Join(filepath.Dir(ferryBin), "coproc")
	if ps := c.mustFerry("n1", "ps"); strings.Contains(ps, "moved apart") {
		t.Errorf("ferry ps still shows a part:\n%s", ps)
	}
	if n := countProcs(bin); n != 2 {
		t.Errorf("%d processes of the program, want 2 (both at home)", n)
	}
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	waitJobOutput(t, c, "n1", id, "\nok\n")
}

// TestCoprocessMoveOnRefused: a move on (and home) fails safely when the
// process's bytes cannot all get through — here the parent does not read
// what the child wrote — and the process runs on where it was: the parent,
// reading at last, gets every byte and the child's exit.
func TestCoprocessMoveOnRefused(t *testing.T) {
	bin := coprocWait(t)
	c := startCluster(t, 3, nil)
	id := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", bin, "blast"))
	child := waitChild(t, c, "n1", id)
	if out, err := c.ferry("n1", "migrate", id, "--pid", child, "--to", "n2"); err != nil {
		t.Fatalf("migrate: %v\n%s", err, out)
	}
	time.Sleep(300 * time.Millisecond) // the child fills the pipes
	for _, to := range []string{"n3", "n1"} {
		out, err := c.ferry("n1", "migrate", id, "--pid", child, "--to", to)
		if err == nil || !strings.Contains(out, "still on their way") {
			t.Fatalf("the move to %s with the pipe full: err %v\n%s", to, err, out)
		}
	}
	if ps := c.mustFerry("n1", "ps"); !regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(id+"."+child) + `\s.*\sn2\s`).MatchString(ps) {
		t.Fatalf("the child is not on n2 any more:\n%s", ps)
	}
	c.mustFerry("n1", "kill", "-s", "USR1", id)
	waitJobOutput(t, c, "n1", id, "blast ok\n")
}

// TestCoprocessUnprivileged: a user (not root) moves a process of its own
// job apart; the moved process runs as the user there, and its stand-in
// at home (the user's too) still reports its killing signal to the parent.
func TestCoprocessUnprivileged(t *testing.T) {
	u := newUser(t)
	bin := coprocWait(t)
	c := startClusterArgs(t, 2, nil, "--group", u.name)
	// The user must reach the control sockets and the programs.
	for _, d := range []string{filepath.Dir(c.dir), c.dir, filepath.Join(c.dir, "n1"), filepath.Join(c.dir, "n2"), filepath.Dir(ferryBin)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	out, err := c.ferryAs(u, "n1", "run", "-d", "--", bin, "term")
	if err != nil {
		t.Fatalf("run as %s: %v\n%s", u.name, err, out)
	}
	id := strings.TrimSpace(out)
	child := waitChild(t, c, "n1", id)
	if out, err := c.ferryAs(u, "n1", "migrate", id, "--pid", child, "--alone", "--to", "n2"); err != nil {
		t.Fatalf("migrate as %s: %v\n%s", u.name, err, out)
	}
	for _, p := range hostPIDsOf(bin) {
		if uid := strings.Fields(procStatus(t, p, "Uid"))[0]; uid != strconv.Itoa(int(u.uid)) {
			t.Errorf("process %d of the job runs as uid %s, want %d", p, uid, u.uid)
		}
	}
	if out, err := c.ferryAs(u, "n1", "kill", "-s", "USR1", id); err != nil {
		t.Fatalf("kill as %s: %v\n%s", u.name, err, out)
	}
	waitJobOutput(t, c, "n1", id, "killed 15 core 0\n")
}

// hostPIDsOf lists the live processes whose executable is bin.
func hostPIDsOf(bin string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if exe, err := os.Readlink("/proc/" + e.Name() + "/exe"); err == nil && exe == bin {
			if st, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); !strings.Contains(string(st), ") Z") {
				out = append(out, pid)
			}
		}
	}
	return out
}
