package node

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/job"
)

// startJob starts a job here, in its own PID namespace.
func (n *Node) startJob(req RunRequest) (JobInfo, error) {
	if len(req.Cmd) == 0 {
		return JobInfo{}, errors.New("no command to run")
	}
	n.mu.Lock()
	n.nextID++
	id := fmt.Sprintf("%s-%d", n.cfg.ID, n.nextID)
	j := &localJob{n: n, done: make(chan struct{}), info: JobInfo{ID: id, Home: n.cfg.ID, Node: n.cfg.ID,
		Cmd: req.Cmd, State: stateStarting, Started: time.Now()}}
	n.jobs[id] = j
	n.mu.Unlock()
	fail := func(err error) (JobInfo, error) {
		n.mu.Lock()
		delete(n.jobs, id)
		n.mu.Unlock()
		j.closeFiles()
		return JobInfo{}, err
	}
	child, err := n.newPipes(j)
	if err != nil {
		return fail(err)
	}
	env := req.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env, "FERRY_SCRATCH="+job.ScratchMount, "FERRY_JOB="+id)
	in, err := job.StartInit(job.InitSpec{Exe: n.cfg.Exe, Args: req.Cmd, Stdin: child[0], Stdout: child[1],
		Stderr: child[2], Dir: req.Dir, Env: env, Scratch: n.cfg.Scratch})
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		return fail(err)
	}
	j.mu.Lock()
	j.init = in
	j.mu.Unlock()
	j.startCopiers()
	var ev job.Event
	select {
	case ev = <-in.Events():
	case <-time.After(30 * time.Second):
		in.Kill()
		return fail(errors.New("the job's init did not report"))
	}
	if ev.Event != "started" {
		in.Kill()
		if ev.Error == "" {
			ev.Error = "the job's init ended before starting it"
		}
		return fail(fmt.Errorf("start %s: %s", req.Cmd[0], strings.TrimPrefix(ev.Error, "start "+req.Cmd[0]+": ")))
	}
	j.mu.Lock()
	j.info.PID = ev.PID
	j.info.State = stateRunning
	j.mu.Unlock()
	n.goBg(j.watch)
	n.log.Info("job started", "job", id, "cmd", req.Cmd, "pid", ev.PID)
	return j.snapshot(), nil
}

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
	n.nextID++
	id := fmt.Sprintf("%s-%d", n.cfg.ID, n.nextID)
	j := &localJob{n: n, done: make(chan struct{}), info: JobInfo{ID: id, Home: n.cfg.ID, Node: n.cfg.ID,
		Cmd: cmd, PID: pid, NodePID: pid, State: stateRunning, Started: time.Now(), Adopted: true}}
	n.jobs[id] = j
	n.mu.Unlock()
	dir := n.cfg.StateDir + "/jobs/" + id
	os.MkdirAll(dir, 0o700)
	for i, name := range []string{"stdout", "stderr"} {
		if j.logs[i], err = openLog(dir + "/" + name); err != nil {
			unix.Close(pidfd)
			return JobInfo{}, err
		}
		j.logs[i].close() // ferry does not carry an adopted process's output
	}
	n.goBg(func() {
		defer unix.Close(pidfd)
		// The node does not kill an adopted process when it stops: the
		// watch ends with the node too (quit), polling for it.
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			k, err := unix.Poll(fds, 200)
			if err == nil && k > 0 {
				break
			}
			if err != nil && !errors.Is(err, unix.EINTR) {
				n.log.Error("watch adopted process", "job", id, "pid", pid, "err", fmt.Errorf("poll pidfd: %w", err))
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
	})
	n.log.Info("process adopted", "job", id, "pid", pid)
	return j.snapshot(), nil
}
