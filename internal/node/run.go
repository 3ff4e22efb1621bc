package node

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/job"
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

// startJob starts a job here, in its own PID namespace.
func (n *Node) startJob(req RunRequest) (JobInfo, error) {
	if len(req.Cmd) == 0 {
		return JobInfo{}, errors.New("no command to run")
	}
	id, err := n.newJobID()
	if err != nil {
		return JobInfo{}, err
	}
	j := &localJob{n: n, done: make(chan struct{}), info: JobInfo{ID: id, Home: n.cfg.ID, Node: n.cfg.ID,
		Cmd: req.Cmd, State: stateStarting, Started: time.Now()}}
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
	if env == nil {
		env = os.Environ()
	}
	env = append(env, "FERRY_SCRATCH="+job.ScratchMount, "FERRY_JOB="+id)
	in, err := job.StartInit(job.InitSpec{Exe: n.cfg.Exe, Args: req.Cmd, Stdin: child[0], Stdout: child[1],
		Stderr: child[2], Dir: req.Dir, Env: env, Scratch: n.cfg.Scratch,
		Control: n.controlPath(id), ExitFile: j.exitPath(), Held: held})
	closeHeld(child, held)
	if err != nil {
		return fail(fmt.Errorf("start %s: %w", req.Cmd[0], err))
	}
	j.useInit(in)
	j.mu.Lock()
	j.info.PID = in.Hello.PID
	j.info.State = stateRunning
	j.mu.Unlock()
	n.saveJob(j)
	n.goBg(j.watch)
	n.log.Info("job started", "job", id, "cmd", req.Cmd, "pid", in.Hello.PID)
	return j.snapshot(), nil
}

// controlPath is a job's control socket (its init serves it).
func (n *Node) controlPath(id string) string { return filepath.Join(n.jobDir(id), "control.sock") }

// adopt makes a process that ferry did not start a job of this node, so
// that it can be migrated. Its standard streams stay its own.
func (n *Node) adopt(pid int) (JobInfo, error) {
	if pid <= 1 || pid == os.Getpid() {
		return JobInfo{}, fmt.Errorf("cannot adopt pid %d", pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return JobInfo{}, fmt.Errorf("adopt pid %d: %w", pid, err)
	}
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
		Cmd: cmd, PID: pid, NodePID: pid, State: stateRunning, Started: time.Now(), Adopted: true}}
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
