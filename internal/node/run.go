package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/ipc"
	"ferry/internal/job"
	"ferry/internal/procfs"
	"ferry/internal/spread"
)

// newJobID takes the next job id, durably: ids are never reused, also
// across restarts.
func (n *Node) newJobID() (string, error) {
	seq, err := n.db.Next("job")
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s-%d", n.cfg.ID, seq), nil
}

// startJob starts a job here, in its own PID namespace, for caller c: a
// caller other than root gets a job that runs as itself.
func (n *Node) startJob(req RunRequest, c *Caller) (JobInfo, error) {
	if len(req.Cmd) == 0 {
		return JobInfo{}, errors.New("no command to run")
	}
	forwarding := ipc.Auto.String()
	if n.msgs != nil {
		forwarding = n.msgs.def.String()
	}
	if req.Forwarding != "" {
		k, err := ipc.ParseMechanism(req.Forwarding)
		if err != nil {
			return JobInfo{}, err
		}
		forwarding = k.String()
	}
	var cred *job.Cred
	owner := uint32(0)
	if !c.Root() {
		owner = c.UID
		cred = &job.Cred{UID: c.UID, GID: c.GID, Groups: c.Groups}
	}
	id, err := n.newJobID()
	if err != nil {
		return JobInfo{}, err
	}
	j := &localJob{n: n, done: make(chan struct{}), info: JobInfo{ID: id, Home: n.cfg.ID, Node: n.cfg.ID,
		Cmd: req.Cmd, State: stateStarting, Started: time.Now(), Owner: owner, OwnerName: userName(owner),
		Forwarding: forwarding, KeepTogether: req.KeepTogether, NoSeparateWaiting: req.NoSeparateWaiting,
		Spread: req.Spread}}
	if len(req.Spread) > 0 && req.KeepTogether {
		return JobInfo{}, fmt.Errorf("--spread moves the job's processes apart: not with --keep-together")
	}
	for _, name := range req.Spread {
		if err := spread.ValidName(name); err != nil {
			return JobInfo{}, err
		}
	}
	if cred != nil {
		j.info.OwnerGID, j.info.OwnerGroups = cred.GID, cred.Groups
	}
	n.mu.Lock()
	n.jobs[id] = j
	n.mu.Unlock()
	fail := func(err error) (JobInfo, error) {
		n.mu.Lock()
		delete(n.jobs, id)
		n.mu.Unlock()
		j.closeFiles()
		n.forgetLogs(j)
		return JobInfo{}, err
	}
	child, held, err := n.newPipes(j)
	if err != nil {
		return fail(err)
	}
	env := req.Env
	if env == nil && cred == nil {
		env = os.Environ()
	} else if env == nil {
		env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"} // not the node's own environment
	}
	env = append(env, "FERRY_SCRATCH="+job.ScratchMount, "FERRY_JOB="+id)
	var spreadLn *net.UnixListener
	if len(req.Spread) > 0 {
		if env, spreadLn, err = n.spreadEnv(id, req.Spread, env); err != nil {
			closeHeld(child, held)
			return fail(err)
		}
	}
	if err := giveStdio(child, j.info); err != nil {
		closeHeld(child, held)
		return fail(err)
	}
	// Its messages are routed from before its first process runs.
	n.msgs.jobStarted(id, forwarding)
	in, err := job.StartInit(job.InitSpec{Exe: n.cfg.Exe, Args: req.Cmd, Stdin: child[0], Stdout: child[1],
		Stderr: child[2], Dir: req.Dir, Env: env, Scratch: n.cfg.Scratch, Cred: cred,
		Control: n.controlPath(id), ExitFile: j.exitPath(), Held: held})
	closeHeld(child, held)
	if err != nil {
		if spreadLn != nil {
			spreadLn.Close()
		}
		n.msgs.jobEnded(id)
		return fail(err) // the init's own error names the command
	}
	j.useInit(in)
	j.mu.Lock()
	j.info.PID = in.Hello.PID
	j.info.State = stateRunning
	j.mu.Unlock()
	n.saveJob(j)
	n.goBg(j.watch)
	if spreadLn != nil {
		n.goBg(func() { n.serveSpread(j, spreadLn) })
	}
	n.log.Info("job started", "job", id, "cmd", req.Cmd, "pid", in.Hello.PID)
	return j.snapshot(), nil
}

// controlPath is a job's control socket (its init serves it).
func (n *Node) controlPath(id string) string { return filepath.Join(n.jobDir(id), "control.sock") }

// adopt makes a process that ferry did not start a job of this node, so
// that it can be migrated. Its standard streams stay its own. A caller
// other than root may adopt only a process that is wholly its own
// (mayAdopt); the job's owner is the process's real uid.
func (n *Node) adopt(pid int, c *Caller) (JobInfo, error) {
	if pid <= 1 || pid == os.Getpid() {
		return JobInfo{}, fmt.Errorf("cannot adopt pid %d", pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return JobInfo{}, fmt.Errorf("adopt pid %d: %w", pid, err)
	}
	pi, err := readProcIdentity(pid)
	if err == nil {
		err = mayAdopt(c, pid, pi)
	}
	if err == nil {
		// Still the process the pidfd names: what was read is its.
		if err = unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
			err = fmt.Errorf("adopt pid %d: it ended: %w", pid, err)
		}
	}
	if err != nil {
		unix.Close(pidfd)
		return JobInfo{}, err
	}
	owner := uint32(pi.UID[0])
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	cmd := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	n.mu.Lock()
	for _, j := range n.jobs {
		if j.info.Adopted && j.info.PID == pid && j.info.State == stateRunning {
			n.mu.Unlock()
			unix.Close(pidfd)
			return JobInfo{}, fmt.Errorf("pid %d is already job %s", pid, j.info.ID)
		}
	}
	n.mu.Unlock()
	id, err := n.newJobID()
	if err != nil {
		unix.Close(pidfd)
		return JobInfo{}, err
	}
	n.mu.Lock()
	j := &localJob{n: n, done: make(chan struct{}), info: JobInfo{ID: id, Home: n.cfg.ID, Node: n.cfg.ID,
		Cmd: cmd, PID: pid, NodePID: pid, State: stateRunning, Started: time.Now(), Adopted: true,
		Owner: owner, OwnerName: userName(owner), OwnerGID: uint32(pi.GID[0]), OwnerGroups: ids32(pi.Groups)}}
	n.jobs[id] = j
	n.mu.Unlock()
	dir := n.cfg.StateDir + "/jobs/" + id
	os.MkdirAll(dir, 0o700)
	for i, name := range []string{"stdout", "stderr"} {
		if j.logs[i], err = openLog(dir+"/"+name, true); err != nil {
			unix.Close(pidfd)
			return JobInfo{}, err
		}
		j.logs[i].close() // ferry does not carry an adopted process's output
	}
	unix.Close(pidfd)
	n.saveJob(j)
	n.watchAdopted(j)
	n.log.Info("process adopted", "job", id, "pid", pid)
	return j.snapshot(), nil
}

// watchAdopted follows an adopted process until it ends. The node does
// not kill an adopted process when it stops: the watch ends with the
// node too (quit), polling for it.
func (n *Node) watchAdopted(j *localJob) {
	pidfd, err := unix.PidfdOpen(j.info.PID, 0)
	if err != nil {
		n.log.Error("watch adopted process", "job", j.info.ID, "pid", j.info.PID, "err", fmt.Errorf("pidfd_open: %w", err))
		return
	}
	n.goBg(func() {
		defer unix.Close(pidfd)
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			k, err := unix.Poll(fds, 200)
			if err == nil && k > 0 {
				break
			}
			if err != nil && !errors.Is(err, unix.EINTR) {
				n.log.Error("watch adopted process", "job", j.info.ID, "pid", j.info.PID, "err", fmt.Errorf("poll pidfd: %w", err))
				return
			}
			select {
			case <-n.quit:
				return
			default:
			}
		}
		j.mu.Lock()
		if j.info.State == stateRunning {
			j.info.State = stateExited
		}
		j.mu.Unlock()
		j.closeFiles()
		n.saveJob(j)
	})
}

// procIdentity is what decides whether a caller may adopt a process.
type procIdentity struct {
	UID, GID [4]int // real, effective, saved, filesystem
	Groups   []int
	// CapPrm, CapEff, CapAmb: capabilities it holds.
	CapPrm, CapEff, CapAmb uint64
	// Dumpable: /proc/PID belongs to its effective uid and gid (the
	// kernel gives a non-dumpable process's /proc files to root).
	Dumpable bool
	// ExeSetID: its executable has the setuid or setgid bit.
	ExeSetID bool
}

func readProcIdentity(pid int) (procIdentity, error) {
	st, err := procfs.Status(pid)
	if err != nil {
		return procIdentity{}, fmt.Errorf("adopt pid %d: %w", pid, err)
	}
	p := procIdentity{UID: st.UID, GID: st.GID, Groups: st.Groups, CapPrm: st.CapPrm, CapEff: st.CapEff, CapAmb: st.CapAmb}
	var dir unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid), &dir); err != nil {
		return procIdentity{}, fmt.Errorf("adopt pid %d: %w", pid, err)
	}
	p.Dumpable = int(dir.Uid) == st.UID[1] && int(dir.Gid) == st.GID[1]
	var exe unix.Stat_t
	if err := unix.Stat("/proc/"+strconv.Itoa(pid)+"/exe", &exe); err == nil {
		p.ExeSetID = exe.Mode&(unix.S_ISUID|unix.S_ISGID) != 0
	} else if !errors.Is(err, unix.ENOENT) {
		return procIdentity{}, fmt.Errorf("adopt pid %d: its executable: %w", pid, err)
	}
	return p, nil
}

// mayAdopt decides whether c may adopt process pid: root may adopt any;
// anyone else only a process whose every uid is its own and every gid
// and group one of its groups, that holds no capability, is dumpable and
// does not run a setuid or setgid executable — never one that could do
// more than the caller.
func mayAdopt(c *Caller, pid int, p procIdentity) error {
	if c.Root() {
		return nil
	}
	refuse := func(why string, args ...any) error {
		return fmt.Errorf("%w: cannot adopt pid %d: %s; you are uid %d", ErrNotYours, pid, fmt.Sprintf(why, args...), c.UID)
	}
	for i, u := range p.UID {
		if u != int(c.UID) {
			return refuse("its %s uid is %d", idKinds[i], u)
		}
	}
	for i, g := range p.GID {
		if g < 0 || !c.inGroup(uint32(g)) {
			return refuse("its %s gid %d is not one of your groups", idKinds[i], g)
		}
	}
	for _, g := range p.Groups {
		if g < 0 || !c.inGroup(uint32(g)) {
			return refuse("it is in group %d and you are not", g)
		}
	}
	if p.CapPrm|p.CapEff|p.CapAmb != 0 {
		return refuse("it holds capabilities")
	}
	if p.ExeSetID {
		return refuse("its executable is setuid or setgid")
	}
	if !p.Dumpable {
		return refuse("it is not dumpable")
	}
	return nil
}

var idKinds = [4]string{"real", "effective", "saved", "filesystem"}

func ids32(ids []int) []uint32 {
	out := make([]uint32, 0, len(ids))
	for _, id := range ids {
		out = append(out, uint32(id))
	}
	return out
}

// giveStdio gives the job's ends of its standard streams to the job's
// owner, so that it may reopen them (/dev/stdout, /proc/self/fd/1) as a
// process of its own.
func giveStdio(child [3]*os.File, info JobInfo) error {
	if info.Owner == 0 {
		return nil
	}
	for _, f := range child {
		if err := f.Chown(int(info.Owner), int(info.OwnerGID)); err != nil {
			return fmt.Errorf("give the job's stdio to uid %d: %w", info.Owner, err)
		}
	}
	return nil
}
