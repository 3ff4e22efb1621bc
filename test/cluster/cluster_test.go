// Package cluster_test runs ferry nodes as a user would — three daemons on
// this machine, on loopback, with mutual TLS — and checks what a user
// checks: a migrated job keeps its PID and its memory, its output is
// continuous (no tick lost, none repeated), its input reaches it, and a
// migration that fails at any point leaves exactly one copy running.
package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ferry/internal/testutil"
)

var (
	ferryBin   string
	counterBin string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "test/cluster: needs root (PID namespaces, ptrace, clone3 with set_tid)")
		return 1
	}
	// Descriptors this test inherited must not leak into the programs it
	// starts (an adopted process holding a pipe to the outside cannot move).
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, e := range ents {
			if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
				syscall.CloseOnExec(fd)
			}
		}
	}
	dir, err := os.MkdirTemp("", "ferry-cluster-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if ferryBin, err = testutil.BuildFerry(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	counterBin = filepath.Join(dir, "counter")
	if err := testutil.CompileC(counterBin, "testdata/counter.c", []string{"-O2"}); err != nil {
		fmt.Fprintln(os.Stderr, "build counter:", err)
		return 1
	}
	return m.Run()
}

type testCluster struct {
	t     *testing.T
	dir   string
	nodes map[string]*exec.Cmd
	port  map[string]int
	// bin, if set, is the ferry binary nodes start from (an upgrade).
	bin  string
	args []string // more arguments of every `ferry node`
}

var nextPort = 17500 + os.Getpid()%1000*10

// startCluster starts n nodes (n1..nN); faults["n2"] = {"recv=die-ready"}.
func startCluster(t *testing.T, n int, faults map[string][]string) *testCluster {
	t.Helper()
	return startClusterArgs(t, n, faults)
}

// startClusterArgs is startCluster with more arguments for every node.
func startClusterArgs(t *testing.T, n int, faults map[string][]string, args ...string) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir(), nodes: map[string]*exec.Cmd{}, port: map[string]int{}, args: args}
	var ids []string
	for i := 1; i <= n; i++ {
		ids = append(ids, fmt.Sprintf("n%d", i))
	}
	if out, err := exec.Command(ferryBin, "init", "--dir", filepath.Join(c.dir, "pki"), "--nodes", strings.Join(ids, ",")).CombinedOutput(); err != nil {
		t.Fatalf("ferry init: %v\n%s", err, out)
	}
	base := nextPort
	nextPort += 10
	for i, id := range ids {
		c.port[id] = base + i
	}
	for _, id := range ids {
		c.startNode(id, faults[id])
	}
	t.Cleanup(c.stop)
	// Wait until every node sees every other.
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range ids {
		for {
			out, _ := c.ferry(id, "members")
			if strings.Count(out, "alive") == n {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s sees: %s", id, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

func (c *testCluster) startNode(id string, faults []string) {
	state := filepath.Join(c.dir, id)
	os.MkdirAll(state, 0o700)
	args := []string{"node", "--id", id, "--listen", fmt.Sprintf("127.0.0.1:%d", c.port[id]), "--state", state,
		"--pki", filepath.Join(c.dir, "pki")}
	if id != "n1" {
		args = append(args, "--join", fmt.Sprintf("127.0.0.1:%d", c.port["n1"]))
	}
	for _, f := range faults {
		args = append(args, "--fault", f)
	}
	args = append(args, c.args...)
	bin := ferryBin
	if c.bin != "" {
		bin = c.bin
	}
	cmd := exec.Command(bin, args...)
	// Each node in an IPC namespace of its own, as on a machine of its
	// own: what its tests do with System V objects stays out of the
	// other test packages' way (a dump with --leave-running refuses a
	// multithreaded process while a semaphore of its namespace is busy).
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWIPC}
	logf, _ := os.OpenFile(filepath.Join(c.dir, id+".log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.nodes[id] = cmd
}

func (c *testCluster) stop() {
	for id, cmd := range c.nodes {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			c.t.Errorf("node %s did not stop on SIGTERM", id)
			cmd.Process.Kill()
			<-done
		}
	}
	c.nodes = map[string]*exec.Cmd{}
	// Jobs outlive their nodes: end what this cluster left running.
	killInits(c.dir)
	if c.t.Failed() {
		for _, id := range []string{"n1", "n2", "n3"} {
			b, _ := os.ReadFile(filepath.Join(c.dir, id+".log"))
			c.t.Logf("log of %s:\n%s", id, tail(string(b), 40))
		}
	}
}

// killInits kills the job inits (and so their jobs) whose control sockets
// are under dir.
func killInits(dir string) {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 3 && args[1] == "jobinit" && args[2] == "--control" && strings.HasPrefix(args[3], dir+"/") {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	// Wait for them to go (their namespaces end with them).
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		left := false
		ents, _ := os.ReadDir("/proc")
		for _, e := range ents {
			if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(b), dir+"/") && strings.Contains(string(b), "jobinit") {
				if st, _ := os.ReadFile("/proc/" + e.Name() + "/stat"); !strings.Contains(string(st), ") Z") {
					left = true
				}
			}
		}
		if !left {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killMachine switches node id's machine off: its daemon, the jobs it
// ran and its migration agents, which otherwise outlive the daemon.
func (c *testCluster) killMachine(id string) {
	c.kill(id)
	killInits(filepath.Join(c.dir, id))
	mark := filepath.Join(c.dir, id) + "\x00"
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline"); err == nil && strings.Contains(string(b), "\x00agent\x00") && strings.Contains(string(b), mark) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// kill ends a node at once, as a crash would.
func (c *testCluster) kill(id string) {
	cmd := c.nodes[id]
	cmd.Process.Kill()
	cmd.Wait()
	delete(c.nodes, id)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *testCluster) socket(id string) string { return filepath.Join(c.dir, id, "ferry.sock") }

// ferry runs the CLI against node id.
func (c *testCluster) ferry(id string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, ferryBin, args...)
	cmd.Env = append(os.Environ(), "FERRY_SOCKET="+c.socket(id))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *testCluster) mustFerry(id string, args ...string) string {
	c.t.Helper()
	out, err := c.ferry(id, args...)
	if err != nil {
		c.t.Fatalf("ferry %s (on %s): %v\n%s", strings.Join(args, " "), id, err, out)
	}
	return out
}

type jobInfo struct {
	ID         string `json:"id"`
	Node       string `json:"node"`
	Home       string `json:"home"`
	PID        int    `json:"pid"`
	NodePID    int    `json:"node_pid"`
	State      string `json:"state"`
	Migrations int    `json:"migrations"`
	Signal     string `json:"signal"`
	Exit       *int   `json:"exit"`
	Error      string `json:"error"`
}

func (c *testCluster) ps(id string) map[string]jobInfo {
	c.t.Helper()
	var jobs []jobInfo
	if err := json.Unmarshal([]byte(c.mustFerry(id, "ps", "--json")), &jobs); err != nil {
		c.t.Fatal(err)
	}
	m := map[string]jobInfo{}
	for _, j := range jobs {
		if _, dup := m[j.ID]; dup {
			c.t.Errorf("ferry ps lists job %s twice", j.ID)
		}
		m[j.ID] = j
	}
	return m
}

// runCounter starts the counter program as a job on node and waits until
// it has printed a few ticks.
func (c *testCluster) runCounter(node string) string {
	c.t.Helper()
	id := strings.TrimSpace(c.mustFerry(node, "run", "-d", "--node", node, "--", counterBin, "10000"))
	c.waitTicks(node, id, 5)
	return id
}

// logs returns the job's output so far.
func (c *testCluster) logs(node, job string) string {
	c.t.Helper()
	return c.mustFerry(node, "logs", job)
}

func (c *testCluster) waitTicks(node, job string, n int) int {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ticks := checkOutput(c.t, c.logs(node, job), false)
		if ticks >= n {
			return ticks
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("job %s printed only %d ticks", job, ticks)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkOutput checks the counter's output: ticks 1, 2, 3... each once,
// one PID throughout, no BROKEN line. It returns the last tick.
func checkOutput(t *testing.T, out string, strict bool) int {
	t.Helper()
	last, pid := 0, 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "BROKEN") {
			t.Fatalf("the job says: %s", line)
		}
		var tick, p int
		if _, err := fmt.Sscanf(line, "tick %d pid %d", &tick, &p); err != nil {
			continue
		}
		if tick != last+1 {
			t.Fatalf("tick %d follows tick %d: output lost or repeated\n%s", tick, last, tail(out, 20))
		}
		if pid != 0 && p != pid {
			t.Fatalf("pid changed from %d to %d", pid, p)
		}
		last, pid = tick, p
	}
	return last
}

// copiesSettled is copies, given a killed copy up to five seconds to
// finish dying (a process being torn down after SIGKILL is not a zombie
// yet, and on a loaded machine that takes a while): it returns as soon
// as the count is want, else the last count.
func copiesSettled(t *testing.T, want int) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := copies(t)
		if n == want || n < want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// copies counts the running counter processes on this machine (all
// nodes), by name: a job must run exactly once. (Tests do not run in
// parallel.)
func copies(t *testing.T) int {
	t.Helper()
	n := 0
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(comm)) != "counter" {
			continue
		}
		st, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if strings.Contains(string(st), ") Z") {
			continue
		}
		n++
	}
	return n
}

// lockedBuffer collects a command's output while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMigrateAroundTheCluster follows a job with an attached `ferry run`
// (its output, input and signals) while it moves n1 → n2 → n3 → n1, with
// freeze, precopy and postcopy.
func TestMigrateAroundTheCluster(t *testing.T) {
	c := startCluster(t, 3, nil)
	run, stdin, out, job := c.attachedCounter("n1")
	var sent []string
	modes := []string{"freeze", "precopy", "postcopy"}
	for round, to := range []string{"n2", "n3", "n1"} {
		// Input written just before a move must reach the job after it.
		line := fmt.Sprintf("line %d", round)
		fmt.Fprintln(stdin, line)
		sent = append(sent, line)
		before := c.waitTicks("n2", job, 0)
		res := c.mustFerry("n3", "migrate", job, "--to", to, "--mode", modes[round])
		if !strings.Contains(res, "moved to "+to) {
			t.Fatalf("migrate: %s", res)
		}
		after := c.waitTicks("n1", job, before+5)
		t.Logf("round %d (→ %s): ticks %d → %d; %s", round, to, before, after, strings.TrimSpace(res))
		if n := copiesSettled(t, 1); n != 1 {
			t.Fatalf("%d copies of the job run after migrating to %s", n, to)
		}
		j := c.ps("n2")[job]
		if j.Node != to || j.State != "running" || j.Migrations != round+1 || j.Home != "n1" {
			t.Fatalf("ferry ps after migrating to %s: %+v", to, j)
		}
	}
	stdin.Close()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(c.logs("n1", job), "eof") {
		if time.Now().After(deadline) {
			t.Fatalf("the job never saw the end of its input; ferry run printed:\n%s", tail(out.String(), 30))
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Ctrl-C on the attached ferry run reaches the job.
	interruptAttached(t, run)
	if sig := c.ps("n3")[job].Signal; sig != "SIGINT" {
		t.Errorf("job ended by %q, want SIGINT", sig)
	}
	if n := copiesSettled(t, 0); n != 0 {
		t.Errorf("%d copies still run after the job ended", n)
	}
	// What the attached terminal saw: every tick once, in order, and
	// every input line, in order, then EOF.
	got := out.String()
	checkOutput(t, got, true)
	if checkOutput(t, got, true) != checkOutput(t, c.logs("n2", job), true) {
		t.Errorf("ferry run and ferry logs disagree on the last tick")
	}
	if ins := inputLines(got); strings.Join(ins, "|") != strings.Join(sent, "|") {
		t.Errorf("the job read %q, want %q", inputLines(got), sent)
	}
}

func fmtSscan(s string, v *int) (int, error) { return fmt.Sscan(s, v) }

// attachedCounter starts an attached `ferry run` of the counter on node
// (its input a pipe, its output collected) and waits until it names the
// job.
func (c *testCluster) attachedCounter(node string) (*exec.Cmd, io.WriteCloser, *lockedBuffer, string) {
	c.t.Helper()
	run := exec.Command(ferryBin, "run", "--", counterBin, "10000")
	run.Env = append(os.Environ(), "FERRY_SOCKET="+c.socket(node))
	stdin, _ := run.StdinPipe()
	out := &lockedBuffer{}
	run.Stdout, run.Stderr = out, out
	if err := run.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { run.Process.Kill() })
	var job string
	deadline := time.Now().Add(20 * time.Second)
	for job == "" {
		if _, err := fmt.Sscanf(out.String(), "ferry: job %s runs", &job); err != nil && time.Now().After(deadline) {
			c.t.Fatalf("ferry run printed: %q", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	return run, stdin, out, job
}

// interruptAttached presses Ctrl-C on an attached `ferry run`: it must
// end as its job did, killed by SIGINT.
func interruptAttached(t *testing.T, run *exec.Cmd) {
	t.Helper()
	run.Process.Signal(os.Interrupt)
	err := run.Wait()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 128+int(syscall.SIGINT) {
		t.Errorf("ferry run ended with %v, want exit %d (job killed by SIGINT)", err, 128+int(syscall.SIGINT))
	}
}

// inputLines are the counter's echoes of its input ("in: ...").
func inputLines(out string) []string {
	var ins []string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "in: "); ok {
			ins = append(ins, v)
		}
	}
	return ins
}
