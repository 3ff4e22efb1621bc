package node

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"time"

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
}

// agentProc is a running agent, seen from its node.
type agentProc struct {
	cmd    *exec.Cmd
	evR    *os.File
	events *bufio.Scanner
	cmds   *os.File
	waited <-chan error
}

// answer sends the node's answer to the agent's last question.
func (a *agentProc) answer(c agentCommand) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("answer the migration agent: %w", err)
	}
	if _, err := a.cmds.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("answer the migration agent: %w", err)
	}
	return nil
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
	sc := bufio.NewScanner(evR)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	return &agentProc{cmd: cmd, evR: evR, events: sc, cmds: cmdW, waited: waited}, nil
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
	rep, err := n.migrateOut(r.Context(), j, req, func(p migrate.Progress) { emit(map[string]any{"progress": p}) })
	if rep == nil {
		rep = &migrate.Report{Job: j.info.ID, Mode: migrate.Mode(req.Mode), Resumed: true}
	}
	if err != nil {
		rep.Error = err.Error()
	}
	emit(map[string]any{"report": rep})
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
	j.mu.Lock()
	if j.info.State != stateRunning {
		st := j.info.State
		j.mu.Unlock()
		return nil, fmt.Errorf("job %s is %s, not running", j.info.ID, st)
	}
	j.info.State = stateMigrating
	info := j.info
	eof := j.stdinEOF
	j.mu.Unlock()
	log := n.log.With("job", info.ID, "to", req.To, "mode", mode)

	var carried []byte
	drained := false
	committed := false
	defer func() {
		if committed {
			return
		}
		// The old copy runs on here (the agent resumed it): give back
		// the input it had not read, in order, and take output again.
		if len(carried) > 0 {
			if _, err := j.stdinW.Write(carried); err != nil {
				log.Error("give back unread input", "err", err)
			}
		}
		if drained {
			j.startCopiers()
		}
		j.mu.Lock()
		if j.info.State == stateMigrating {
			j.info.State = stateRunning
		}
		j.mu.Unlock()
		if j.init != nil {
			select {
			case <-j.init.Done():
				// The job died meanwhile, here: it is lost.
				j.mu.Lock()
				j.info.State = stateLost
				j.info.Error = "the job ended during a failed migration"
				j.mu.Unlock()
				for _, l := range j.logs {
					l.close()
				}
				j.closeFiles()
			default:
			}
		}
	}()

	var inc incomingReply
	if err := n.call(ctx, req.To, "POST", "/v1/incoming", incomingRequest{Info: info, StdinEOF: eof}, &inc); err != nil {
		return nil, fmt.Errorf("prepare %s: %w", req.To, err)
	}
	var stdio []string
	for id, role := range j.pipes {
		stdio = append(stdio, id+"="+role)
	}
	sort.Strings(stdio)
	args := []string{"--to", inc.Addr, "--pid", strconv.Itoa(info.PID), "--mode", string(mode), "--job", info.ID,
		"--stdio", strings.Join(stdio, ",")}
	if req.MaxFreeze > 0 {
		args = append(args, "--max-freeze", req.MaxFreeze.String())
	}
	ns := ""
	var sentLog [2]int64
	if j.init != nil {
		ns = j.init.NSPath()
		// The log so far goes ahead, while the job runs; the frozen
		// window only carries what came after.
		var err error
		if sentLog, err = n.sendLogAhead(ctx, req.To, j); err != nil {
			return nil, fmt.Errorf("send the job's log to %s: %w", req.To, err)
		}
	}
	ag, err := n.startAgent(ns, "send", args)
	if err != nil {
		return nil, err
	}
	defer ag.cmds.Close()
	// Ctrl-C on `ferry migrate` (the request's context) cancels the
	// migration: the agent gets SIGINT and rolls back, unless it has
	// already sent the commit.
	stop := context.AfterFunc(ctx, func() { ag.cmd.Process.Signal(os.Interrupt) })
	defer stop()

	var rep *migrate.Report
	var agentErr string
	for ag.events.Scan() {
		var ev agentEvent
		if json.Unmarshal(ag.events.Bytes(), &ev) != nil {
			continue
		}
		switch ev.Event {
		case "progress":
			if ev.Progress != nil && progress != nil {
				progress(*ev.Progress)
			}
		case "before-commit":
			// Frozen: take the output so far and the unread input, and
			// hand them to the destination before it may run the job.
			ans := agentCommand{OK: true}
			c, err := n.collectCarry(j, &drained, &carried, sentLog)
			if err == nil && (len(c.Stdout) > 0 || len(c.Stderr) > 0 || len(c.Stdin) > 0 || c.StdinEOF) {
				// (Nothing new to hand over: no round trip in the freeze.)
				err = n.sendCarry(context.WithoutCancel(ctx), req.To, info.ID, c)
			}
			if err != nil {
				ans = agentCommand{Error: err.Error()}
			}
			if err := ag.answer(ans); err != nil {
				// The agent waits in vain and its migration fails; its
				// end (events, exit) tells the rest.
				log.Error("before-commit", "err", err)
			}
		case "resolve":
			var st struct {
				Committed bool `json:"committed"`
			}
			ans := agentCommand{}
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 40*time.Second)
			if err := n.call(rctx, req.To, "GET", "/v1/jobs/"+info.ID+"/committed", nil, &st); err != nil {
				ans.Error = err.Error()
			} else {
				ans.Committed = st.Committed
			}
			cancel()
			if err := ag.answer(ans); err != nil {
				log.Error("resolve", "err", err)
			}
		case "committed":
			// The job runs on the destination now (with postcopy, its
			// memory still comes from here until the push ends).
			rep = ev.Report
			committed = true
			j.mu.Lock()
			j.info.State = stateMoved
			j.info.MovedTo = req.To
			j.mu.Unlock()
			for _, l := range j.logs {
				l.close()
			}
			n.mu.Lock()
			n.moved[info.ID] = req.To
			n.mu.Unlock()
		case "report":
			rep = ev.Report
		case "error":
			agentErr = ev.Error
		}
	}
	werr := <-ag.waited
	ag.evR.Close()
	if committed {
		if j.init != nil {
			j.init.Kill() // nothing of the job is left in its namespace
		}
		n.goBg(func() {
			if j.init != nil {
				<-j.init.Done()
			}
			j.closeFiles()
		})
		if rep == nil {
			rep = &migrate.Report{Job: info.ID, Mode: mode, Committed: true}
		}
		if mode == migrate.Postcopy {
			// The destination's side of the push: faults, prefetch hits.
			var arr migrate.Report
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			if err := n.call(actx, req.To, "GET", "/v1/jobs/"+info.ID+"/arrival", nil, &arr); err == nil {
				rep.Faults, rep.PrefetchHits = arr.Faults, arr.PrefetchHits
			}
			cancel()
		}
		log.Info("job moved", "freeze", rep.FreezeTime, "total", rep.Total, "err", rep.Error)
		if rep.Error != "" {
			return rep, errors.New(rep.Error)
		}
		return rep, nil
	}
	switch {
	case agentErr != "":
		err = errors.New(agentErr)
	case rep != nil && rep.Error != "":
		err = errors.New(rep.Error)
	case werr != nil:
		err = fmt.Errorf("migration agent: %w", werr)
	default:
		err = errors.New("migration agent ended without a report")
	}
	if rep == nil {
		rep = &migrate.Report{Job: info.ID, Mode: mode, Resumed: true}
	}
	log.Warn("migration failed; the job runs on here", "err", err)
	return rep, err
}

// collectCarry drains the frozen job's output and takes its unread input;
// the log travels from the offsets already sent.
func (n *Node) collectCarry(j *localJob, drained *bool, carried *[]byte, sent [2]int64) (*carry, error) {
	if j.init == nil {
		return &carry{Final: true}, nil // an adopted process: its stdio is its own
	}
	if err := j.drainOutput(); err != nil {
		return nil, err
	}
	*drained = true
	in, err := j.takeInput()
	if err != nil {
		return nil, err
	}
	*carried = in
	c := &carry{Stdin: in, Final: true, OutFrom: sent[0], ErrFrom: sent[1]}
	j.mu.Lock()
	c.StdinEOF = j.stdinEOF
	j.mu.Unlock()
	if c.Stdout, _, err = j.logs[0].span(sent[0]); err != nil {
		return nil, err
	}
	if c.Stderr, _, err = j.logs[1].span(sent[1]); err != nil {
		return nil, err
	}
	return c, nil
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
		return "", err
	}
	child, err := n.newPipes(j)
	if err != nil {
		return fail(err)
	}
	if err := giveStdio(child, info); err != nil {
		for _, f := range child {
			f.Close()
		}
		return fail(err)
	}
	in, err := job.StartInit(job.InitSpec{Exe: n.cfg.Exe, MainPID: info.PID, Scratch: n.cfg.Scratch})
	if err != nil {
		for _, f := range child {
			f.Close()
		}
		return fail(err)
	}
	j.mu.Lock()
	j.init = in
	j.mu.Unlock()
	host, _, _ := net.SplitHostPort(n.cfg.Listen)
	if host == "" {
		host = "127.0.0.1"
	}
	recvArgs := []string{"--listen", net.JoinHostPort(host, "0")}
	if o := ownerFlag(info); o != "" {
		recvArgs = append(recvArgs, "--owner", o)
	}
	ag, err := n.startAgent(in.NSPath(), "recv", recvArgs, child[:]...)
	for _, f := range child {
		f.Close()
	}
	if err != nil {
		in.Kill()
		return fail(err)
	}
	j.startCopiers()
	if req.StdinEOF {
		j.mu.Lock()
		j.stdinEOF = true
		j.mu.Unlock()
		j.stdinW.Close()
	}
	var ev agentEvent
	if ag.events.Scan() {
		json.Unmarshal(ag.events.Bytes(), &ev)
	}
	if ev.Event != "listening" {
		in.Kill()
		<-ag.waited
		ag.evR.Close()
		ag.cmds.Close()
		if ev.Error == "" {
			ev.Error = "the receiving agent did not start"
		}
		return fail(errors.New(ev.Error))
	}
	j.expectArrival()
	n.goBg(func() { n.followIncoming(j, ag) })
	return ev.Addr, nil
}

// followIncoming watches the receiving agent until the job runs here or
// the migration failed.
func (n *Node) followIncoming(j *localJob, ag *agentProc) {
	id := j.info.ID
	sawCommit, released := false, false
	var agentErr string
	for ag.events.Scan() {
		var ev agentEvent
		if json.Unmarshal(ag.events.Bytes(), &ev) != nil {
			continue
		}
		switch ev.Event {
		case "committed":
			sawCommit = true
		case "released":
			// The job runs here from now on, whatever the agent's fate.
			released = true
			j.mu.Lock()
			j.info.State = stateRunning
			j.resolvedOK = true
			j.mu.Unlock()
			n.mu.Lock()
			n.committed[id] = true
			delete(n.moved, id)
			n.mu.Unlock()
			close(j.resolved)
			n.goBg(j.watch)
		case "error":
			agentErr = ev.Error
		case "report":
			if ev.Report != nil {
				j.mu.Lock()
				j.arrival = ev.Report
				j.mu.Unlock()
				args := []any{"job", id, "restore", ev.Report.RestoreTime}
				for _, p := range ev.Phases {
					args = append(args, p.Name, p.Took)
				}
				n.log.Info("restored", args...)
			}
		}
	}
	werr := <-ag.waited
	ag.cmds.Close()
	ag.evR.Close()
	defer close(j.agentDone)
	ok := sawCommit && werr == nil && agentErr == ""
	switch {
	case released && !ok:
		// Postcopy: the job ran here but could not get all its memory.
		msg := agentErr
		if msg == "" {
			msg = fmt.Sprint("receiving agent: ", werr)
		}
		n.log.Error("job lost after its migration committed", "job", id, "err", msg)
		j.mu.Lock()
		j.info.State = stateLost
		j.info.Error = msg
		j.mu.Unlock()
		j.init.Kill()
	case released:
		n.log.Info("job arrived", "job", id)
	default:
		n.log.Warn("incoming migration failed; nothing kept here", "job", id, "err", agentErr, "agent", werr)
		j.init.Kill()
		<-j.init.Done()
		j.mu.Lock()
		j.info.State = stateLost
		j.mu.Unlock()
		n.mu.Lock()
		if n.jobs[id] == j {
			delete(n.jobs, id)
		}
		n.mu.Unlock()
		j.closeFiles()
		close(j.resolved)
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
