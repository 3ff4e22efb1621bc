package cluster_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// unprivileged is a user the test creates (and removes after), with a
// group of its own of the same name.
type unprivileged struct {
	name     string
	uid, gid uint32
}

func newUser(t *testing.T) *unprivileged {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	name := "ferrytest" + hex.EncodeToString(b)
	if out, err := exec.Command("useradd", "--no-create-home", "--user-group", "--shell", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Skipf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() {
		// The test's cleanups before this one ended the user's processes
		// (the nodes killed its jobs): give them a moment to be gone, or
		// userdel refuses.
		deadline := time.Now().Add(5 * time.Second)
		for runsAs(name) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if out, err := exec.Command("userdel", name).CombinedOutput(); err != nil {
			t.Errorf("userdel %s: %v\n%s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &unprivileged{name: name, uid: uint32(uid), gid: uint32(gid)}
}

// runsAs reports whether a process of user name runs.
func runsAs(name string) bool {
	u, err := user.Lookup(name)
	if err != nil {
		return false
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "Uid:"); ok {
				if f := strings.Fields(v); len(f) > 0 && f[0] == u.Uid {
					return true
				}
			}
		}
	}
	return false
}

// command is a command run as u, in dir.
func (u *unprivileged) command(ctx context.Context, dir string, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: []uint32{u.gid}}}
	cmd.Dir = dir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + dir}
	return cmd
}

// ferryAs runs the CLI as u against node id.
func (c *testCluster) ferryAs(u *unprivileged, id string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := u.command(ctx, c.dir, ferryBin, args...)
	cmd.Env = append(cmd.Env, "FERRY_SOCKET="+c.socket(id))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

type ownedJob struct {
	ID        string `json:"id"`
	Node      string `json:"node"`
	NodePID   int    `json:"node_pid"`
	State     string `json:"state"`
	Owner     uint32 `json:"owner"`
	OwnerName string `json:"owner_name"`
}

func psAs(t *testing.T, c *testCluster, u *unprivileged, id string) map[string]ownedJob {
	t.Helper()
	var out string
	var err error
	if u == nil {
		out, err = c.ferry(id, "ps", "--json")
	} else {
		out, err = c.ferryAs(u, id, "ps", "--json")
	}
	if err != nil {
		t.Fatalf("ferry ps --json: %v\n%s", err, out)
	}
	var jobs []ownedJob
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		t.Fatalf("ferry ps --json: %v\n%s", err, out)
	}
	m := map[string]ownedJob{}
	for _, j := range jobs {
		m[j.ID] = j
	}
	return m
}

// procStatus is field (Uid, Gid, Groups, NoNewPrivs) of /proc/PID/status.
func procStatus(t *testing.T, pid int, field string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatalf("status of pid %d: %v", pid, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s in the status of pid %d", field, pid)
	return ""
}

// TestUnprivilegedCaller uses a node as a member of its --group that is
// not root: its jobs run as itself with no new privileges, it sees and
// may touch only its own jobs, adopts only its own processes, and root
// sees everything.
func TestUnprivilegedCaller(t *testing.T) {
	u := newUser(t)
	c := startClusterArgs(t, 2, nil, "--group", u.name)
	// The user must reach the control sockets and the programs.
	for _, d := range []string{filepath.Dir(c.dir), c.dir, filepath.Join(c.dir, "n1"), filepath.Join(c.dir, "n2"), filepath.Dir(ferryBin)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	want := func(out string, err error, words ...string) {
		t.Helper()
		if err == nil {
			t.Errorf("succeeded (%q), want refused saying %q", out, words)
			return
		}
		t.Logf("refused: %s", strings.TrimSpace(out))
		for _, w := range words {
			if !strings.Contains(out, w) {
				t.Errorf("refused with %q, want it to say %q", strings.TrimSpace(out), w)
			}
		}
	}
	uidStr := strconv.FormatUint(uint64(u.uid), 10)

	rootJob := strings.TrimSpace(c.mustFerry("n1", "run", "-d", "--", counterBin, "10000"))
	out, err := c.ferryAs(u, "n1", "run", "-d", "--", counterBin, "10000")
	if err != nil {
		t.Fatalf("ferry run as %s: %v\n%s", u.name, err, out)
	}
	mine := strings.TrimSpace(out)
	c.waitTicks("n1", mine, 3)

	// The job runs as the user, with no new privileges.
	j := psAs(t, c, u, "n1")[mine]
	if j.NodePID <= 0 || j.Owner != u.uid || j.OwnerName != u.name {
		t.Fatalf("the user's job in ferry ps: %+v, want owner %d (%s) and a pid", j, u.uid, u.name)
	}
	ids := strings.Repeat(uidStr+" ", 4)
	if got := procStatus(t, j.NodePID, "Uid"); got != strings.TrimSpace(ids) {
		t.Errorf("the job's uids are %q, want %q", got, ids)
	}
	if got := procStatus(t, j.NodePID, "Gid"); got != strings.TrimSpace(strings.Repeat(strconv.Itoa(int(u.gid))+" ", 4)) {
		t.Errorf("the job's gids are %q, want %d", got, u.gid)
	}
	if got := procStatus(t, j.NodePID, "NoNewPrivs"); got != "1" {
		t.Errorf("the job's NoNewPrivs is %q, want 1", got)
	}
	// Its groups are the ones the CLI had (SO_PEERGROUPS), no more.
	if got := procStatus(t, j.NodePID, "Groups"); got != strconv.Itoa(int(u.gid)) {
		t.Errorf("the job's groups are %q, want %d", got, u.gid)
	}

	// The user sees only its own job; root sees both, with their owners.
	if jobs := psAs(t, c, u, "n2"); len(jobs) != 1 || jobs[mine].ID == "" {
		t.Errorf("ferry ps as the user lists %v, want only %s", jobs, mine)
	}
	all := psAs(t, c, nil, "n2")
	if all[rootJob].Owner != 0 || all[rootJob].OwnerName != "root" || all[mine].Owner != u.uid {
		t.Errorf("ferry ps as root: %v, want %s owned by root and %s by %s", all, rootJob, mine, u.name)
	}
	if out := c.mustFerry("n1", "ps"); !strings.Contains(out, "OWNER") || !strings.Contains(out, u.name) || !strings.Contains(out, "root") {
		t.Errorf("ferry ps as root does not show the owners:\n%s", out)
	}

	// Root's job is out of the user's reach, with the reason, from either
	// node (n2 forwards to n1 for the user).
	reason := "belongs to uid 0; you are uid " + uidStr
	for _, node := range []string{"n1", "n2"} {
		out, err = c.ferryAs(u, node, "kill", "-s", "KILL", rootJob)
		want(out, err, "signal", rootJob, reason)
		out, err = c.ferryAs(u, node, "logs", rootJob)
		want(out, err, reason)
		out, err = c.ferryAs(u, node, "migrate", rootJob, "--to", "n2")
		want(out, err, "migrate", reason)
	}
	if st := psAs(t, c, nil, "n1")[rootJob]; st.State != "running" || st.Node != "n1" {
		t.Fatalf("root's job after the user's attempts: %+v", st)
	}

	// Its own job the user may move, and it runs as the user there too.
	out, err = c.ferryAs(u, "n2", "migrate", mine, "--to", "n2")
	if err != nil || !strings.Contains(out, "moved to n2") {
		t.Fatalf("the user migrating its own job: %v\n%s", err, out)
	}
	c.waitTicks("n2", mine, 10)
	j = psAs(t, c, u, "n1")[mine]
	if j.Node != "n2" || j.Owner != u.uid || j.NodePID <= 0 {
		t.Fatalf("the user's job after its migration: %+v", j)
	}
	if got := procStatus(t, j.NodePID, "Uid"); got != strings.TrimSpace(ids) {
		t.Errorf("the migrated job's uids are %q, want %q", got, ids)
	}
	if got := procStatus(t, j.NodePID, "NoNewPrivs"); got != "1" {
		t.Errorf("the migrated job's NoNewPrivs is %q, want 1", got)
	}

	// The caller's environment reaches its job, never the root init
	// that starts it (a library to preload would run as root there).
	preload := filepath.Join(c.dir, "rootcheck.so")
	if out, err := exec.Command("gcc", "-shared", "-fPIC", "-o", preload, "testdata/rootcheck.c").CombinedOutput(); err != nil {
		t.Fatalf("build rootcheck.so: %v\n%s", err, out)
	}
	os.Chmod(preload, 0o755)
	envJob := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := u.command(ctx, c.dir, ferryBin, "run", "--", "sh", "-c", "echo preload=$LD_PRELOAD")
		cmd.Env = append(cmd.Env, "FERRY_SOCKET="+c.socket("n1"), "LD_PRELOAD="+preload)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ferry run with LD_PRELOAD as the user: %v\n%s", err, out)
		}
		return string(out)
	}
	if out := envJob(); strings.Contains(out, "AS ROOT") || !strings.Contains(out, "preload="+preload) {
		t.Errorf("a job run with LD_PRELOAD: %q; want the variable in the job and the library never loaded as root", out)
	}

	// A job the user starts on another node (forwarded) runs as the user
	// there too.
	out, err = c.ferryAs(u, "n1", "run", "-d", "--node", "n2", "--", counterBin, "10000")
	if err != nil {
		t.Fatalf("ferry run --node n2 as the user: %v\n%s", err, out)
	}
	remote := strings.TrimSpace(out)
	c.waitTicks("n2", remote, 2)
	if j := psAs(t, c, u, "n2")[remote]; j.Node != "n2" || j.Owner != u.uid || procStatus(t, j.NodePID, "Uid") != strings.TrimSpace(ids) {
		t.Errorf("the user's job started on n2 through n1: %+v, want it to run there as uid %d", j, u.uid)
	}
	if out, err := c.ferryAs(u, "n1", "kill", "-s", "KILL", remote); err != nil {
		t.Errorf("the user killing its job on n2 through n1: %v\n%s", err, out)
	}

	// Adopt: not root's process, not a setuid one, but its own.
	sleeper := func(cmd *exec.Cmd) *exec.Cmd {
		t.Helper()
		cmd.Stdin, cmd.Stdout, cmd.Stderr = nil, io.Discard, io.Discard
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	rootProc := sleeper(exec.Command(counterBin, "100000"))
	out, err = c.ferryAs(u, "n1", "adopt", strconv.Itoa(rootProc.Process.Pid))
	want(out, err, "cannot adopt pid "+strconv.Itoa(rootProc.Process.Pid), "uid is 0", "you are uid "+uidStr)
	setuid := filepath.Join(c.dir, "counter-setuid")
	if b, err := os.ReadFile(counterBin); err != nil || os.WriteFile(setuid, b, 0o755) != nil {
		t.Fatalf("copy the counter: %v", err)
	}
	os.Chown(setuid, int(u.uid), int(u.gid))
	os.Chmod(setuid, 0o755|os.ModeSetuid)
	suidProc := sleeper(u.command(context.Background(), c.dir, setuid, "100000"))
	out, err = c.ferryAs(u, "n1", "adopt", strconv.Itoa(suidProc.Process.Pid))
	want(out, err, "setuid")
	ownProc := sleeper(u.command(context.Background(), c.dir, counterBin, "100000"))
	out, err = c.ferryAs(u, "n1", "adopt", strconv.Itoa(ownProc.Process.Pid))
	if err != nil {
		t.Fatalf("the user adopting its own process: %v\n%s", err, out)
	}
	var adopted string
	for id, j := range psAs(t, c, u, "n1") {
		if j.NodePID == ownProc.Process.Pid {
			adopted = id
			if j.Owner != u.uid {
				t.Errorf("the adopted job's owner is %d, want %d", j.Owner, u.uid)
			}
		}
	}
	if adopted == "" {
		t.Errorf("ferry ps as the user does not list its adopted process")
	}

	// And it may end its own jobs; root may end anyone's.
	if out, err := c.ferryAs(u, "n1", "kill", "-s", "KILL", mine); err != nil {
		t.Errorf("the user killing its own job: %v\n%s", err, out)
	}
	c.mustFerry("n2", "kill", "-s", "KILL", rootJob)
	deadline := time.Now().Add(10 * time.Second)
	for {
		all := psAs(t, c, nil, "n1")
		if all[mine].State == "exited" && all[rootJob].State == "exited" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the kills: %v", all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
