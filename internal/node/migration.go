package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/agent"
	"ferry/internal/ipc"
	"ferry/internal/job"
	"ferry/internal/migrate"
)

// incomingRequest prepares a destination.
type incomingRequest struct {
	Info     JobInfo `json:"info"`
	StdinEOF bool    `json:"stdin_eof"`
}

type incomingReply struct {
	Addr string `json:"addr"`
}

// carry is what the source hands over at the commit: the job's output so
// far (the whole streams, so the new node serves any offset) and the
// input the job had not read yet.
type carry struct {
	// Stdout and Stderr are the streams' bytes from offsets OutFrom and
	// ErrFrom on: most of a long log goes ahead while the job still
	// runs (Final false), only the rest in the frozen window (Final).
	OutFrom  int64  `json:"out_from"`
	ErrFrom  int64  `json:"err_from"`
	Stdout   []byte `json:"stdout"`
	Stderr   []byte `json:"stderr"`
	Stdin    []byte `json:"stdin"`
	StdinEOF bool   `json:"stdin_eof"`
	Final    bool   `json:"final"`
	// Messages: the job's message state (Final only).
	Messages *MsgCarry `json:"messages,omitempty"`
}

// agentProc is a running agent, seen from its node.
type agentProc struct {
	cmd     *exec.Cmd
	evR     *os.File
	events  *agent.Decoder
	cmds    *os.File
	answers *agent.Encoder
	waited  <-chan error
}

// Next returns the agent's next event.
func (a *agentProc) Next() (agent.Event, error) { return a.events.Event() }

// Answer sends the node's answer to the agent's last question.
func (a *agentProc) Answer(ans agent.Answer) error {
	if err := a.answers.Answer(ans); err != nil {
		return fmt.Errorf("answer the migration agent: %w", err)
	}
	return nil
}

// Interrupt makes the agent cancel its migration (SIGINT).
func (a *agentProc) Interrupt() { a.cmd.Process.Signal(os.Interrupt) }

// Wait waits for the agent's exit and closes the node's ends of its pipes.
func (a *agentProc) Wait() error {
	err := <-a.waited
	a.cmds.Close()
	a.evR.Close()
	return err
}

// startAgent starts `ferry agent side args...`, inside the job's PID
// namespace when nsPath is set. files become fds 5, 6, ...
func (n *Node) startAgent(nsPath, side string, args []string, files ...*os.File) (*agentProc, error) {
	evR, evW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmdR, cmdW, err := os.Pipe()
	if err != nil {
		evR.Close()
		evW.Close()
		return nil, err
	}
	full := []string{"ferry", "agent", side, "--pki", n.cfg.PKIDir, "--node", n.cfg.ID,
		"--state", n.cfg.StateDir}
	if nsPath != "" {
		full = append(full, "--mount-proc", "--scratch", n.cfg.Scratch)
	}
	if f := n.cfg.Faults[side]; f != "" {
		full = append(full, "--fault", f)
	}
	if n.log.Enabled(context.Background(), slog.LevelDebug) {
		full = append(full, "--verbose")
	}
	full = append(full, args...)
	cmd := &exec.Cmd{Path: n.cfg.Exe, Args: full, Stderr: os.Stderr,
		ExtraFiles: append([]*os.File{evW, cmdR}, files...)}
	var waited <-chan error
	if nsPath != "" {
		waited, err = job.StartIn(nsPath, cmd)
	} else {
		w := make(chan error, 1)
		if err = cmd.Start(); err == nil {
			n.goBg(func() { w <- cmd.Wait() })
		}
		waited = w
	}
	evW.Close()
	cmdR.Close()
	if err != nil {
		evR.Close()
		cmdW.Close()
		return nil, fmt.Errorf("start migration agent: %w", err)
	}
	return &agentProc{cmd: cmd, evR: evR, events: agent.NewDecoder(evR), cmds: cmdW,
		answers: agent.NewEncoder(cmdW), waited: waited}, nil
}

// handleMigrate runs a migration of a job held here and streams progress
// lines, then the report, to the caller.
func (n *Node) handleMigrate(w http.ResponseWriter, r *http.Request, j *localJob) {
	var req MigrateRequest
	if !decodeBody(w, r, &req) {
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	fl, _ := w.(http.Flusher)
	enc := json.NewEncoder(w)
	emit := func(v any) {
		if err := enc.Encode(v); err != nil {
			// The caller went away; the migration goes on regardless.
			n.log.Debug("migrate: progress to the caller", "job", j.info.ID, "err", err)
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
	progress := func(p migrate.Progress) { emit(migrateLine{Progress: &p}) }
	var rep *migrate.Report
	var err error
	if req.PID != 0 {
		rep, err = n.coprocOut(r.Context(), j, req, progress)
	} else {
		rep, err = n.migrateOut(r.Context(), j, req, progress)
	}
	if rep == nil {
		rep = &migrate.Report{Job: j.info.ID, Mode: migrate.Mode(req.Mode), Resumed: true}
	}
	if err != nil {
		rep.Error = err.Error()
	}
	// The error's codes, so that errors.Is works at the CLI (Client.Migrate).
	emit(migrateLine{Report: rep, Error: agent.EncodeError(err)})
}

// migrateLine is one line of the migrate call's answer: progress, or at
// the end the report and the error, if any.
type migrateLine struct {
	Progress *migrate.Progress `json:"progress,omitempty"`
	Report   *migrate.Report   `json:"report,omitempty"`
	Error    *agent.Error      `json:"error,omitempty"`
}

// migrateOut is the source node's part of a migration.
func (n *Node) migrateOut(ctx context.Context, j *localJob, req MigrateRequest, progress func(migrate.Progress)) (*migrate.Report, error) {
	mode, err := migrate.ParseMode(req.Mode)
	if err != nil {
		return nil, err
	}
	if req.To == n.cfg.ID {
		return nil, fmt.Errorf("job %s already runs on %s", j.info.ID, req.To)
	}
	if parts := j.snapshot().Parts; len(parts) > 0 {
		return nil, fmt.Errorf("job %s has a process on %s (pid %d), moved apart: the job moves whole only when its processes are together again", j.info.ID, parts[0].Node, parts[0].PID)
	}
	n.inFlight.Add(1)
	defer n.inFlight.Done()
	if n.stopping.Load() {
		return nil, fmt.Errorf("migrate job %s: node %s: %w", j.info.ID, n.cfg.ID, errStopping)
	}
	if _, err := n.peerURL(req.To); err != nil {
		return nil, err
	}
	// A job that arrived here by postcopy (or precopy) may still be
	// getting its memory: it cannot move on before it has all of it (a
	// lazy checkpoint would take the missing pages for empty ones).
	if done := j.agentDoneChan(); done != nil {
		select {
		case <-done:
		case <-ctx.Done():
			return nil, fmt.Errorf("job %s is still receiving its memory from its previous node: %w", j.info.ID, ctx.Err())
		}
	}
	// While the job moves, its input and signals wait (ioMu), to go to
	// wherever it runs afterwards.
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	return n.newOutgoing(j, req, mode, progress).run(ctx)
}

// stopForCommit queues SIGSTOP for every process of the frozen job (not
// for its agent): they stay frozen under the agent's ptrace, and stop
// instead of running if the agent dies. It returns them, for SIGCONT.
func (n *Node) stopForCommit(j *localJob, ag *agentProc) ([]int, error) {
	pids, err := job.Members(j.init.NSPath(), ag.cmd.Process.Pid)
	if err != nil {
		return nil, fmt.Errorf("list the job's processes: %w", err)
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, unix.SIGSTOP); err != nil && !errors.Is(err, unix.ESRCH) {
			for _, p := range pids {
				unix.Kill(p, unix.SIGCONT)
			}
			return nil, fmt.Errorf("stop pid %d for the commit: %w", pid, err)
		}
	}
	return pids, nil
}

// handleIncoming prepares this node to receive a job: a job init awaiting
// the restore in fresh namespaces, new stdio, and a receiving agent.
func (n *Node) handleIncoming(w http.ResponseWriter, r *http.Request) {
	var req incomingRequest
	if !decodeBody(w, r, &req) {
		return
	}
	addr, err := n.prepareIncoming(req)
	if err != nil {
		httpError(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, incomingReply{Addr: addr})
}

func (n *Node) prepareIncoming(req incomingRequest) (string, error) {
	id := req.Info.ID
	if n.stopping.Load() {
		return "", fmt.Errorf("node %s: %w", n.cfg.ID, errStopping)
	}
	n.mu.Lock()
	if old := n.jobs[id]; old != nil {
		st := old.snapshot().State
		if st != stateMoved && st != stateExited && st != stateLost {
			n.mu.Unlock()
			return "", fmt.Errorf("job %s is already %s on %s", id, st, n.cfg.ID)
		}
	}
	info := req.Info
	info.Node, info.State, info.NodePID, info.MovedTo = n.cfg.ID, stateIncoming, 0, ""
	// Here it lives in a PID namespace of its own, like any job.
	info.Adopted = false
	info.Migrations++
	j := &localJob{n: n, info: info, done: make(chan struct{})}
	n.jobs[id] = j
	delete(n.committed, id)
	n.mu.Unlock()
	fail := func(err error) (string, error) {
		n.mu.Lock()
		if n.jobs[id] == j {
			delete(n.jobs, id)
		}
		n.mu.Unlock()
		j.closeFiles()
		n.forgetLogs(j)
		n.forgetJob(id)
		n.setPhase(migrationRecord{Job: id})
		return "", err
	}
	child, held, err := n.newPipes(j)
	if err != nil {
		return fail(err)
	}
	if err := giveStdio(child, info); err != nil {
		closeHeld(child, held)
		return fail(err)
	}
	in, err := job.StartInit(job.InitSpec{Exe: n.cfg.Exe, MainPID: info.PID, Scratch: n.cfg.Scratch,
		Control: n.controlPath(id), ExitFile: j.exitPath(), Held: held})
	closeHeld([3]*os.File{}, held)
	if err != nil {
		closeHeld(child, nil)
		return fail(err)
	}
	j.useInit(in)
	n.saveJob(j)
	host, _, _ := net.SplitHostPort(n.cfg.Listen)
	if host == "" {
		host = "127.0.0.1"
	}
	recvArgs := []string{"--listen", net.JoinHostPort(host, "0"), "--control", n.controlPath(id),
		"--msg-socket", filepath.Join(n.jobDir(id), "msg.sock")}
	if o := ownerFlag(info); o != "" {
		recvArgs = append(recvArgs, "--owner", o)
	}
	ag, err := n.startAgent(in.NSPath(), "recv", recvArgs, child[:]...)
	closeHeld(child, nil)
	if err != nil {
		in.Kill()
		return fail(err)
	}
	// Only this agent may carry the job's endpoint connections over.
	agentPID := ag.cmd.Process.Pid
	n.eps.mu.Lock()
	n.eps.init()
	n.eps.agents[agentPID] = id
	n.eps.mu.Unlock()
	defer func() {
		if err != nil {
			n.eps.mu.Lock()
			delete(n.eps.agents, agentPID)
			n.eps.mu.Unlock()
		}
	}()
	if req.StdinEOF {
		if err := j.writeInput(nil, true); err != nil {
			n.log.Warn("close the arriving job's input", "job", id, "err", err)
		}
	}
	addr, err := awaitListening(ag, in.Kill)
	if err != nil {
		return fail(err)
	}
	n.migrationJournal().record(phaseRecord{Job: id, Peer: req.Info.Node, Phase: inPrepared})
	if n.msgs != nil {
		// Messages that reach this node for it before it arrives wait.
		n.msgs.setMech(id, mechOrAuto(req.Info.Forwarding))
		n.msgs.handle(ipc.Expect{Job: id})
	}
	j.expectArrival()
	n.goBg(func() {
		n.followIncoming(j, req.Info.Node, ag, n.migrationJournal())
		n.eps.mu.Lock()
		delete(n.eps.agents, agentPID)
		n.eps.mu.Unlock()
	})
	n.crashPoint("die-prepared")
	return addr, nil
}

// awaitListening waits for a receiving agent's first event, the address
// it listens on; on anything else it ends the agent (stop) and waits for
// it.
func awaitListening(ag *agentProc, stop func()) (string, error) {
	ev, err := ag.Next()
	if err == nil && ev.Kind != agent.Listening {
		err = fmt.Errorf("the receiving agent said %q before it listened", ev.Kind)
		if ev.Kind == agent.Failed {
			err = ev.Err.Err()
		}
	}
	if err != nil {
		stop()
		if werr := ag.Wait(); err == io.EOF {
			err = fmt.Errorf("the receiving agent did not start: %v", werr)
		}
		return "", err
	}
	return ev.Addr, nil
}

// receivingAgent is the receiving agent as the node sees it, once it
// listens: a source of events.
type receivingAgent interface {
	// Next returns the next event (see sendingAgent).
	Next() (agent.Event, error)
	// Wait waits for the agent to exit and releases the pipes.
	Wait() error
}

// followIncoming watches the receiving agent until the job runs here or
// the migration (from node from) failed; jr records the phases.
func (n *Node) followIncoming(j *localJob, from string, ag receivingAgent, jr journal) {
	id := j.info.ID
	phase := func(p migPhase) { jr.record(phaseRecord{Job: id, Peer: from, Phase: p}) }
	sawCommit, released := false, false
	var agentErr error
	for {
		ev, err := ag.Next()
		if errors.Is(err, agent.ErrProtocol) {
			n.log.Warn("receiving agent: bad event", "job", id, "err", err)
			continue
		}
		if err != nil {
			if err != io.EOF {
				n.log.Error("receiving agent: events", "job", id, "err", err)
			}
			break
		}
		switch ev.Kind {
		case agent.Restored:
			n.log.Info("new copy held", "job", id, "pid", ev.PID)
		case agent.Committed:
			sawCommit = true
			phase(inCommitted)
		case agent.Released:
			// The job runs here from now on, whatever the agent's fate.
			released = true
			n.crashPoint("die-released")
			j.mu.Lock()
			j.info.State = stateRunning
			j.resolvedOK = true
			j.mu.Unlock()
			n.mu.Lock()
			n.committed[id] = true
			delete(n.moved, id)
			n.mu.Unlock()
			n.forgetMoved(id)
			n.saveJob(j)
			j.mu.Lock()
			mc := j.msgCarry
			j.msgCarry = nil
			j.mu.Unlock()
			if mc == nil {
				mc = &MsgCarry{Forwarding: j.info.Forwarding, State: []byte(`{"job":"` + id + `"}`)}
			}
			if n.msgs == nil {
				// a node of tests, without messages
			} else if err := n.msgs.arrive(id, mc); err != nil {
				n.log.Error("the arriving job's messages", "job", id, "err", err)
			}
			close(j.resolved)
			phase(inReleased)
			if j.init != nil {
				n.goBg(j.watch)
			}
		case agent.Failed:
			agentErr = ev.Err.Err()
		case agent.Warning:
			n.log.Warn("receiving agent", "job", id, "warning", ev.Message)
		case agent.Report:
			j.mu.Lock()
			j.arrival = ev.Report
			j.mu.Unlock()
			args := []any{"job", id, "restore", ev.Report.RestoreTime}
			for _, p := range ev.Phases {
				args = append(args, p.Name, p.Took)
			}
			n.log.Info("restored", args...)
		default:
			n.log.Warn("receiving agent: unexpected event", "job", id, "event", ev.Kind)
		}
	}
	werr := ag.Wait()
	defer close(j.agentDone)
	ok := sawCommit && werr == nil && agentErr == nil
	switch {
	case released && !ok:
		// Postcopy: the job ran here but could not get all its memory.
		msg := fmt.Sprint("receiving agent: ", werr)
		if agentErr != nil {
			msg = agentErr.Error()
		}
		phase(inFailed)
		n.log.Error("job lost after its migration committed", "job", id, "err", msg)
		j.mu.Lock()
		j.info.State = stateLost
		j.info.Error = msg
		j.mu.Unlock()
		j.killInit(false)
	case released:
		phase(inArrived)
		n.log.Info("job arrived", "job", id)
	default:
		phase(inFailed)
		if n.msgs != nil {
			n.msgs.handle(ipc.Unexpect{Job: id})
		}
		n.log.Warn("incoming migration failed; nothing kept here", "job", id, "err", agentErr, "agent", werr)
		j.killInit(true)
		j.mu.Lock()
		j.info.State = stateLost
		j.mu.Unlock()
		n.mu.Lock()
		if n.jobs[id] == j {
			delete(n.jobs, id)
		}
		n.mu.Unlock()
		j.closeFiles()
		n.forgetLogs(j)
		n.forgetJob(id)
		n.setPhase(migrationRecord{Job: id})
		close(j.resolved)
	}
}

// killInit kills the job's init (if any: tests have none), and with wait
// waits until it is gone.
func (j *localJob) killInit(wait bool) {
	if j.init == nil {
		return
	}
	j.init.Kill()
	if wait {
		<-j.init.Done()
	}
}

// handleArrival returns the receiving agent's report (postcopy: faults,
// prefetch hits), once the agent is done.
func (n *Node) handleArrival(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n.mu.Lock()
	j := n.jobs[id]
	n.mu.Unlock()
	var agentDone <-chan struct{}
	if j != nil {
		agentDone = j.agentDoneChan()
	}
	if agentDone == nil {
		httpError(w, http.StatusNotFound, fmt.Errorf("no migration of %s arrived here", id))
		return
	}
	select {
	case <-agentDone:
	case <-r.Context().Done():
		return
	}
	j.mu.Lock()
	rep := j.arrival
	j.mu.Unlock()
	if rep == nil {
		httpError(w, http.StatusNotFound, fmt.Errorf("the migration of %s left no report here", id))
		return
	}
	writeJSON(w, rep)
}

// handleCarry takes the source's output and unread input before commit.
func (n *Node) handleCarry(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n.mu.Lock()
	j := n.jobs[id]
	n.mu.Unlock()
	if j == nil || j.snapshot().State != stateIncoming {
		httpError(w, http.StatusConflict, fmt.Errorf("no incoming migration of job %s here", id))
		return
	}
	var c carry
	if !decodeBody(w, r, &c) {
		return
	}
	if err := j.logs[0].writeAt(c.OutFrom, c.Stdout); err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	if err := j.logs[1].writeAt(c.ErrFrom, c.Stderr); err != nil {
		httpError(w, http.StatusInternalServerError, err)
		return
	}
	if c.Messages != nil {
		j.mu.Lock()
		j.msgCarry = c.Messages
		j.mu.Unlock()
	}
	if c.Final {
		if err := j.writeInput(c.Stdin, c.StdinEOF); err != nil {
			httpError(w, http.StatusInternalServerError, err)
			return
		}
	}
	writeJSON(w, map[string]bool{"ok": true})
}

// handleCommitted answers a source whose commit answer was lost: does the
// new copy run here? It waits for the receiving agent to finish.
func (n *Node) handleCommitted(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n.mu.Lock()
	j := n.jobs[id]
	done := n.committed[id]
	n.mu.Unlock()
	if done || j == nil {
		writeJSON(w, map[string]bool{"committed": done})
		return
	}
	select {
	case <-j.resolvedDone():
		j.mu.Lock()
		ok := j.resolvedOK
		j.mu.Unlock()
		writeJSON(w, map[string]bool{"committed": ok})
	case <-time.After(30 * time.Second):
		httpError(w, http.StatusGatewayTimeout, fmt.Errorf("incoming migration of %s still undecided", id))
	case <-r.Context().Done():
	}
}
