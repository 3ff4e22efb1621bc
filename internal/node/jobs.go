package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/fds"
	"ferry/internal/job"
	"ferry/internal/migrate"
	"ferry/internal/procfs"
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
	// Forwarding is the job's message-forwarding mechanism.
	Forwarding string `json:"forwarding,omitempty"`
	// Msgs counts the job's messages on its node now (ferry ps).
	Msgs  *MsgCounts `json:"msgs,omitempty"`
	Error string     `json:"error,omitempty"`
	// Parts are the job's processes that run on other nodes than its
	// home (coproc.go); KeepTogether and NoSeparateWaiting its rules
	// about moving them apart (package coproc).
	Parts             []Part `json:"parts,omitempty"`
	KeepTogether      bool   `json:"keep_together,omitempty"`
	NoSeparateWaiting bool   `json:"no_separate_waiting,omitempty"`
	// Spread: the commands whose processes are placed as they start
	// (package spread); SpreadRuns counts, by node, where they ran.
	Spread     []string       `json:"spread,omitempty"`
	SpreadRuns map[string]int `json:"spread_runs,omitempty"`
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
// may use it unlocked. The pipes and logs (stdinR, stdinW, logs, pipes)
// are set up before the job's init starts (or, for an incoming job,
// before the source is told where to connect; for a job taken back after
// a restart, before it is in the table) and only read after; the files
// are closed under mu (closeFiles). ioMu is synchronisation of its own;
// done is closed under mu.
//
// The job's output does not pass through the node: its init copies it
// into the logs (package job), whether a node runs or not.
type localJob struct {
	n    *Node
	mu   sync.Mutex
	info JobInfo
	init *job.Init // nil for an adopted process
	// stdin: the node writes w; r is kept to take back unread input
	// when the job moves. Both come from the init, which holds them too.
	stdinR, stdinW *os.File
	stdinEOF       bool
	logs           [2]*logFile
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
	// msgCarry is the message state an incoming migration carried, taken
	// by the router when the new copy runs.
	msgCarry *MsgCarry
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
	st, err := procfs.Status(pid)
	if err != nil {
		return 0
	}
	return int64(st.VmRSS)
}

// newPipes creates the job's three standard streams and its logs: the
// child's ends (for the job, or for the agent that restores it) and the
// ends its init holds. The node's own ends of the input come back from
// the init (useInit).
func (n *Node) newPipes(j *localJob) (child [3]*os.File, held *job.Held, err error) {
	dir := n.jobDir(j.info.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return child, nil, err
	}
	j.pipes = map[string]string{}
	held = &job.Held{}
	var files []*os.File
	defer func() {
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			held = nil
		}
	}()
	for i := range 3 {
		r, w, err := os.Pipe()
		if err != nil {
			return child, nil, err
		}
		files = append(files, r, w)
		var st unix.Stat_t
		if err := unix.Fstat(fds.RawFD(r), &st); err != nil {
			return child, nil, err
		}
		j.pipes["pipe:"+strconv.FormatUint(st.Ino, 10)] = roles[i]
		if i == 0 {
			// The init keeps a read end of the input besides the
			// job's, to give unread input back when the job moves.
			fd, err := unix.FcntlInt(uintptr(fds.RawFD(r)), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				return child, nil, os.NewSyscallError("dup", err)
			}
			held.StdinR = os.NewFile(uintptr(fd), "stdin")
			files = append(files, held.StdinR)
			held.StdinW, child[0] = w, r
		} else {
			// A job that writes much output while no node reads its
			// log still has room before it blocks.
			unix.FcntlInt(uintptr(fds.RawFD(r)), unix.F_SETPIPE_SZ, pipeSize)
			held.Out[i-1], child[i] = r, w
		}
	}
	for i, name := range []string{"stdout", "stderr"} {
		path := filepath.Join(dir, name)
		if j.logs[i], err = openLog(path, true); err != nil {
			return child, nil, err
		}
		n.logWatch.add(j.logs[i], path)
		if held.Logs[i], err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0); err != nil {
			return child, nil, err
		}
		files = append(files, held.Logs[i])
	}
	if held.Msg, held.MsgPath, err = n.newEndpoint(j.info.ID); err != nil {
		return child, nil, err
	}
	files = append(files, held.Msg)
	return child, held, nil
}

// pipeSize is the capacity of a job's output pipes (the kernel's default
// limit for unprivileged pipes, /proc/sys/fs/pipe-max-size).
const pipeSize = 1 << 20

// closeHeld closes the node's copies of what it gave an init.
func closeHeld(child [3]*os.File, h *job.Held) {
	for _, f := range child {
		if f != nil {
			f.Close()
		}
	}
	if h == nil {
		return
	}
	for _, f := range []*os.File{h.StdinW, h.StdinR, h.Out[0], h.Out[1], h.Logs[0], h.Logs[1], h.Msg} {
		if f != nil {
			f.Close()
		}
	}
}

// useInit takes the job's input ends from its init.
func (j *localJob) useInit(in *job.Init) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.init = in
	j.stdinW, j.stdinR = in.StdinW, in.StdinR
	if in.StdinW == nil {
		j.stdinEOF = true
	}
	if in.Msg != nil {
		j.n.serveEndpoint(j, in.Msg)
	}
	for key, f := range in.Conns {
		j.n.goBg(func() { j.n.takeHeldConn(j, key, f) }) // (it takes j.mu)
	}
}

func (n *Node) jobDir(id string) string { return filepath.Join(n.cfg.StateDir, "jobs", id) }

// drainOutput has the init take every byte left in the output pipes
// into the logs. The job must be frozen: then nothing more comes.
func (j *localJob) drainOutput(ctx context.Context) error {
	if _, _, err := j.init.Sync(ctx); err != nil {
		return fmt.Errorf("drain the job's output: %w", err)
	}
	for _, l := range j.logs {
		l.changed()
	}
	return nil
}

// takeInput takes the input the job has not read yet out of its stdin.
func (j *localJob) takeInput() ([]byte, error) {
	if j.stdinR == nil {
		return nil, nil
	}
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
		err := j.stdinW.Close()
		// The init holds the input open too (for a node that restarts):
		// it lets go, and the job reads EOF.
		if j.init != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if cerr := j.init.CloseStdin(ctx); cerr != nil && err == nil {
				err = cerr
			}
		}
		return err
	}
	return nil
}

// watch follows the job's init until the job ends here.
func (j *localJob) watch() {
	exited := false
	for ev := range j.init.Events() {
		switch ev.Event {
		case "exited":
			exited = true
			j.exited(ev.Status)
		case "error":
			j.mu.Lock()
			j.info.Error = ev.Error
			j.mu.Unlock()
		}
	}
	<-j.init.Done()
	if j.n.leaving.Load() {
		// The node stops and leaves the job running: the next node on
		// this state directory takes it back.
		return
	}
	if !exited {
		// The exit may have come between two connections: the init's
		// record has it.
		if e, err := job.ReadExit(j.exitPath()); err == nil && e.Error == "" {
			j.exited(e.Status)
		} else if err == nil {
			j.mu.Lock()
			if j.info.Error == "" {
				j.info.Error = e.Error
			}
			j.mu.Unlock()
		}
	}
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
	j.end()
}

// exited records the job's end.
func (j *localJob) exited(status int) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.info.State == stateMoved || j.info.State == stateMigrating || j.info.State == stateLost {
		return
	}
	ws := unix.WaitStatus(status)
	j.info.State = stateExited
	if ws.Signaled() {
		j.info.Signal = unix.SignalName(ws.Signal())
	} else {
		code := ws.ExitStatus()
		j.info.Exit = &code
	}
}

// end closes what the node holds of a job that ended here, and records it.
func (j *localJob) end() {
	for _, l := range j.logs {
		if l != nil {
			l.close()
		}
	}
	j.n.forgetLogs(j)
	j.closeFiles()
	j.n.saveJob(j)
	if st := j.snapshot().State; st == stateExited || st == stateLost {
		j.n.msgs.jobEnded(j.info.ID)
	}
}

func (j *localJob) exitPath() string { return filepath.Join(j.n.jobDir(j.info.ID), "exit") }

func (j *localJob) closeFiles() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, f := range []*os.File{j.stdinR, j.stdinW} {
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
