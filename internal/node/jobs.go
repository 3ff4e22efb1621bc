package node

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/fds"
	"ferry/internal/job"
	"ferry/internal/migrate"
)

// JobInfo is a job as `ferry ps` shows it.
type JobInfo struct {
	ID      string   `json:"id"`
	Home    string   `json:"home"` // the node that started it
	Node    string   `json:"node"` // where it runs now
	Cmd     []string `json:"cmd"`
	PID     int      `json:"pid"`      // in the job's own PID namespace: what getpid() returns
	NodePID int      `json:"node_pid"` // the same process, as this node numbers it
	State   string   `json:"state"`    // starting, running, migrating, exited, moved, lost
	// Owner is the uid of the user whose job it is (who ran it, or whose
	// process was adopted); OwnerName its name where the job started;
	// OwnerGID and OwnerGroups its groups then, which decide where the
	// files that arrive with the job may be created.
	Owner       uint32   `json:"owner"`
	OwnerName   string   `json:"owner_name,omitempty"`
	OwnerGID    uint32   `json:"owner_gid"`
	OwnerGroups []uint32 `json:"owner_groups,omitempty"`
	// Exit is the exit code, Signal the signal that ended it.
	Exit       *int      `json:"exit,omitempty"`
	Signal     string    `json:"signal,omitempty"`
	MemoryKiB  int64     `json:"memory_kib"`
	Migrations int       `json:"migrations"`
	Started    time.Time `json:"started"`
	Adopted    bool      `json:"adopted,omitempty"`
	MovedTo    string    `json:"moved_to,omitempty"`
	Error      string    `json:"error,omitempty"`
}

const (
	stateStarting  = "starting"
	stateRunning   = "running"
	stateMigrating = "migrating"
	stateExited    = "exited"
	stateMoved     = "moved"
	stateLost      = "lost"
	stateIncoming  = "incoming"
)

var roles = [3]string{"stdin", "stdout", "stderr"}

// localJob is a job while this node holds it.
//
// mu guards info, init, stdinEOF, resolved, resolvedOK, agentDone and
// arrival: the fields that change after the job is in the node's table,
// while other goroutines (API handlers, the job's watcher, a migration's
// follower) may look at it; info.ID alone never changes and is read
// unlocked. init is set once, under mu, before the job
// runs; a goroutine that found the job running (its state read under mu)
// may use it unlocked. The pipes and logs (stdinR, stdinW, out, logs,
// pipes) are set up before the job's init starts (or, for an incoming
// job, before the source is told where to connect) and only read after;
// the files are closed under mu (closeFiles). copiers and ioMu are
// synchronisation of their own; done is closed under mu.
type localJob struct {
	n    *Node
	mu   sync.Mutex
	info JobInfo
	init *job.Init // nil for an adopted process
	// stdin: the node writes w; r is kept to take back unread input
	// when the job moves.
	stdinR, stdinW *os.File
	stdinEOF       bool
	out            [2]*os.File // read ends of stdout, stderr
	logs           [2]*logFile
	copiers        sync.WaitGroup
	pipes          map[string]string // "pipe:<ino>" → role, for the agent
	// ioMu is held while input must not reach the job (a migration
	// took the unread input).
	ioMu sync.Mutex
	// done is closed when the job ended here (exited, moved, lost).
	done chan struct{}
	// resolved is closed when an incoming migration is decided;
	// resolvedOK says whether the job runs here.
	resolved   chan struct{}
	resolvedOK bool
	// agentDone is closed when the receiving agent ended; arrival is its
	// report.
	agentDone chan struct{}
	arrival   *migrate.Report
}

func (j *localJob) resolvedDone() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.resolved == nil {
		c := make(chan struct{})
		close(c)
		return c
	}
	return j.resolved
}

// expectArrival makes the channels an incoming migration closes when it
// is decided and when its agent ended. The source may already ask about
// the commit (handleCommitted, handleArrival): they are set under mu.
func (j *localJob) expectArrival() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.resolved = make(chan struct{})
	j.agentDone = make(chan struct{})
}

// agentDoneChan is agentDone, nil unless a migration arrived here.
func (j *localJob) agentDoneChan() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.agentDone
}

func (j *localJob) snapshot() JobInfo {
	j.mu.Lock()
	defer j.mu.Unlock()
	info := j.info
	if info.State == stateRunning || info.State == stateMigrating {
		if hp := j.hostPIDLocked(); hp > 0 {
			info.NodePID = hp
			info.MemoryKiB = rssKiB(hp)
		}
	}
	return info
}

func (j *localJob) hostPIDLocked() int {
	if j.info.Adopted {
		return j.info.PID
	}
	if j.info.NodePID > 0 && unix.Kill(j.info.NodePID, 0) == nil {
		return j.info.NodePID
	}
	if j.init == nil {
		return 0
	}
	hp, err := job.HostPID(j.init.NSPath(), j.info.PID)
	if err != nil {
		return 0
	}
	j.info.NodePID = hp
	return hp
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// newPipes creates the job's three standard streams and its logs.
func (n *Node) newPipes(j *localJob) (child [3]*os.File, err error) {
	dir := filepath.Join(n.cfg.StateDir, "jobs", j.info.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return child, err
	}
	j.pipes = map[string]string{}
	var files []*os.File
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
		}
	}()
	for i := range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			return child, err
		}
		files = append(files, r, w)
		var st unix.Stat_t
		if err := unix.Fstat(fds.RawFD(r), &st); err != nil {
			return child, err
		}
		j.pipes["pipe:"+strconv.FormatUint(st.Ino, 10)] = roles[i]
		if i == 0 {
			// The child's read end is closed once the job holds it; the
			// node keeps its own, to take back unread input.
			fd, err := unix.FcntlInt(uintptr(fds.RawFD(r)), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return child, os.NewSyscallError("dup", err)
			}
			unix.SetNonblock(fd, true)
			j.stdinR = os.NewFile(uintptr(fd), "stdin")
			files = append(files, j.stdinR)
			j.stdinW, child[0] = w, r
		} else {
			j.out[i-1], child[i] = r, w
		}
	}
	for i, name := range []string{"stdout", "stderr"} {
		if j.logs[i], err = openLog(filepath.Join(dir, name)); err != nil {
			return child, err
		}
	}
	return child, nil
}

// startCopiers moves the job's output into its logs.
func (j *localJob) startCopiers() {
	for i := range 2 {
		j.copiers.Add(1)
		go func() {
			defer j.copiers.Done()
			buf := make([]byte, 64<<10)
			for {
				n, err := j.out[i].Read(buf)
				if n > 0 {
					if werr := j.logs[i].append(buf[:n]); werr != nil {
						j.n.log.Error("job log", "job", j.info.ID, "err", werr)
					}
				}
				if err != nil {
					if err == io.EOF {
						j.logs[i].close()
					}
					return
				}
			}
		}()
	}
}

// drainOutput stops the copiers and takes every byte left in the output
// pipes into the logs. The job must be frozen: then nothing more comes.
func (j *localJob) drainOutput() error {
	for i := range 2 {
		j.out[i].SetReadDeadline(time.Unix(1, 0))
	}
	j.copiers.Wait()
	for i := range 2 {
		j.out[i].SetReadDeadline(time.Time{})
		n, err := unix.IoctlGetInt(fds.RawFD(j.out[i]), unix.TIOCINQ)
		if err != nil {
			return fmt.Errorf("drain %s: %w", roles[i+1], err)
		}
		if n > 0 {
			b := make([]byte, n)
			if _, err := io.ReadFull(j.out[i], b); err != nil {
				return fmt.Errorf("drain %s: %w", roles[i+1], err)
			}
			if err := j.logs[i].append(b); err != nil {
				return err
			}
		}
	}
	return nil
}

// takeInput takes the input the job has not read yet out of its stdin.
func (j *localJob) takeInput() ([]byte, error) {
	n, err := unix.IoctlGetInt(fds.RawFD(j.stdinR), unix.TIOCINQ)
	if err != nil || n == 0 {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(j.stdinR, b); err != nil {
		return nil, fmt.Errorf("take unread input: %w", err)
	}
	return b, nil
}

// writeInput writes p to the job's stdin.
func (j *localJob) writeInput(p []byte, eof bool) error {
	j.mu.Lock()
	closed := j.stdinEOF
	j.mu.Unlock()
	if closed {
		if len(p) > 0 {
			return errors.New("the job's input is closed")
		}
		return nil
	}
	if len(p) > 0 {
		if _, err := j.stdinW.Write(p); err != nil {
			return fmt.Errorf("job input: %w", err)
		}
	}
	if eof {
		j.mu.Lock()
		j.stdinEOF = true
		j.mu.Unlock()
		return j.stdinW.Close()
	}
	return nil
}

// watch follows the job's init until the job ends here.
func (j *localJob) watch() {
	for ev := range j.init.Events() {
		switch ev.Event {
		case "exited":
			j.mu.Lock()
			if j.info.State != stateMoved && j.info.State != stateMigrating && j.info.State != stateLost {
				ws := unix.WaitStatus(ev.Status)
				j.info.State = stateExited
				if ws.Signaled() {
					j.info.Signal = unix.SignalName(ws.Signal())
				} else {
					code := ws.ExitStatus()
					j.info.Exit = &code
				}
			}
			j.mu.Unlock()
		case "error":
			j.mu.Lock()
			j.info.Error = ev.Error
			j.mu.Unlock()
		}
	}
	<-j.init.Done()
	// The output ends when every writer is gone; the init was the last
	// one that could hold them.
	j.copiers.Wait()
	j.mu.Lock()
	if j.info.State == stateMigrating {
		// The migration decides: moved (the old copy was killed after
		// the commit) or lost.
		j.mu.Unlock()
		return
	}
	switch j.info.State {
	case stateRunning, stateStarting, stateIncoming:
		j.info.State = stateLost
		if j.info.Error == "" {
			j.info.Error = "the job's init ended without reporting an exit"
		}
	}
	j.mu.Unlock()
	for _, l := range j.logs {
		l.close()
	}
	j.closeFiles()
	j.n.jobEnded(j)
}

func (j *localJob) closeFiles() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, f := range []*os.File{j.stdinR, j.stdinW, j.out[0], j.out[1]} {
		if f != nil {
			f.Close()
		}
	}
	select {
	case <-j.done:
	default:
		close(j.done)
	}
}
