package node

// A process moved apart moves on (`ferry migrate JOB --pid P --to N3`
// while it runs on N2): no chain of deputies grows. Its home pauses its
// relay end (what it reads meanwhile is held, signals wait), asks N3 to
// prepare a part like the first one (with the streams still open) and
// N2 to send the process there. N2 moves it only once nothing of it is
// in the relay: every byte home sent written into its pipes and read by
// the process, and — the process frozen — every byte it wrote read from
// its pipes and written at home (else the move fails, the process runs
// on at N2, and home goes on with it). Then the old part ends and home's
// relay end goes on with N3's (deputy.Rebase): the same fds at home,
// the same stand-in.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"ferry/internal/agent"
	"ferry/internal/deputy"
	"ferry/internal/job"
	"ferry/internal/migrate"
)

// onwardRequest asks the node a part runs on to move it on.
type onwardRequest struct {
	To     string                     `json:"to"`
	Addr   string                     `json:"addr"` // the receiving agent's
	Move   string                     `json:"move"` // the part's name there
	Expect map[deputy.StreamID]uint64 `json:"expect"`
	Mode   string                     `json:"mode"`
}

type onwardReply struct {
	Report *migrate.Report `json:"report,omitempty"`
	Error  *agent.Error    `json:"error,omitempty"`
}

// quietWait bounds each wait for a relay with nothing on its way.
const quietWait = 5 * time.Second

func (n *Node) coprocOnward(ctx context.Context, j *localJob, req MigrateRequest, at Part) (*migrate.Report, error) {
	p := n.findPart(at.Move)
	if p == nil || p.side != deputy.Home {
		return nil, fmt.Errorf("pid %d of job %s: its relay is not here", req.PID, j.info.ID)
	}
	p.mu.Lock()
	if p.moving {
		p.mu.Unlock()
		return nil, fmt.Errorf("pid %d is moving already", req.PID)
	}
	if req.To == p.peer {
		p.mu.Unlock()
		return nil, fmt.Errorf("pid %d of job %s already runs on %s", req.PID, j.info.ID, req.To)
	}
	p.moving = true
	from, link, base, ends := p.peer, p.link, p.base, slices.Clone(p.ends)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.moving = false
		p.mu.Unlock()
	}()
	mode := migrate.Mode(req.Mode) // checked by coprocOut

	var open []deputy.Stream
	var sent map[deputy.StreamID]uint64
	if err := p.end.Do(ctx, func(r *deputy.Relay) []deputy.Action {
		acts := r.Handle(time.Now(), deputy.Pause{})
		open, sent = r.Open(), r.Sent()
		return acts
	}); err != nil {
		return nil, err
	}
	rebased := false
	defer func() {
		if !rebased {
			p.end.Do(context.WithoutCancel(ctx), func(r *deputy.Relay) []deputy.Action {
				return r.Handle(time.Now(), deputy.Unpause{})
			})
		}
	}()
	// The ends still open, under their names.
	isOpen := map[deputy.StreamID]bool{}
	for _, s := range open {
		isOpen[s.ID] = true
	}
	var keep []relayEnd
	for _, e := range ends {
		e.Streams = slices.DeleteFunc(e.Streams, func(id deputy.StreamID) bool { return !isOpen[id] })
		if len(e.Streams) > 0 {
			keep = append(keep, e)
		}
	}
	n.mu.Lock()
	n.moveSeq++
	seq := n.moveSeq
	n.mu.Unlock()
	move := fmt.Sprintf("%s.%d-%d", j.info.ID, req.PID, seq)
	in := base
	in.Move, in.Streams, in.Ends = move, open, keep
	if req.To == n.cfg.ID {
		rep, err := n.comeHome(ctx, j, req, p, from, link, keep, sent, mode)
		if err == nil {
			rebased = true // the relay ends with it
		}
		return rep, err
	}
	var rep coprocInReply
	if err := n.call(ctx, req.To, http.MethodPost, "/v1/peer/coproc", in, &rep); err != nil {
		return nil, fmt.Errorf("prepare %s: %w", req.To, err)
	}
	var ans onwardReply
	if err := n.call(ctx, from, http.MethodPost, "/v1/peer/coproc/"+link+"/onward",
		onwardRequest{To: req.To, Addr: rep.Addr, Move: move, Expect: sent, Mode: string(mode)}, &ans); err != nil {
		return nil, fmt.Errorf("move on from %s: %w", from, err)
	}
	if ans.Error != nil {
		return ans.Report, fmt.Errorf("move on from %s: %w", from, ans.Error.Err())
	}
	if ans.Report == nil || !ans.Report.Committed {
		return ans.Report, fmt.Errorf("move on from %s: no commit", from)
	}
	// It runs on req.To: the relay goes on with it there.
	if err := p.end.Rebase(context.WithoutCancel(ctx)); err != nil {
		return ans.Report, fmt.Errorf("the relay after the move: %w", err)
	}
	rebased = true
	p.mu.Lock()
	if p.dialCancel != nil {
		p.dialCancel()
	}
	rctx, cancel := n.partContext()
	p.dialCancel = cancel
	p.peer, p.link, p.ends = req.To, move, keep
	p.base.Streams, p.base.Ends = open, keep
	p.mu.Unlock()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-rctx.Done():
		}
	}()
	go n.dialRelay(rctx, req.To, move, p.conns)
	j.mu.Lock()
	for i := range j.info.Parts {
		if j.info.Parts[i].PID == req.PID {
			j.info.Parts[i].Node = req.To
		}
	}
	j.mu.Unlock()
	n.saveJob(j)
	return ans.Report, nil
}

// handleCoprocOnward moves a part that runs here on (its home asks).
func (n *Node) handleCoprocOnward(w http.ResponseWriter, r *http.Request) {
	var req onwardRequest
	if !decodeBody(w, r, &req) {
		return
	}
	rep, err := n.onward(r.Context(), r.PathValue("move"), req)
	writeJSON(w, onwardReply{Report: rep, Error: agent.EncodeError(err)})
}

func (n *Node) onward(ctx context.Context, move string, req onwardRequest) (*migrate.Report, error) {
	p := n.findPart(move)
	if p == nil || p.side != deputy.Away || p.end == nil {
		return nil, fmt.Errorf("no part %s runs here", move)
	}
	p.mu.Lock()
	ns, pid := p.nsPath, p.pid
	p.mu.Unlock()
	// Everything home sent, written and read by the process (it runs).
	if err := n.untilIdle(ctx, p, req.Expect, false); err != nil {
		return nil, fmt.Errorf("%w: the process moves on once it has read its input: %w", err, migrate.ErrResumed)
	}
	var stdio []string
	for role, name := range p.roles {
		stdio = append(stdio, name+"="+role)
	}
	sort.Strings(stdio)
	args := []string{"--to", req.Addr, "--pid", strconv.Itoa(pid), "--mode", req.Mode, "--job", strings.SplitN(move, ".", 2)[0],
		"--stdio", strings.Join(stdio, ",")}
	ag, err := n.startAgent(ns, "send", args)
	if err != nil {
		return nil, err
	}
	report, agentErr := n.followSend(ctx, ag, move, req.To, "/v1/peer/coproc/"+req.Move+"/committed", nil, func() error {
		// Frozen: what it wrote is read from its pipes and written at
		// home, or the move fails.
		if err := n.untilIdle(ctx, p, req.Expect, true); err != nil {
			return err
		}
		if err := p.end.Mute(ctx); err != nil {
			return err
		}
		p.leaving.Store(true)
		return nil
	})
	if report == nil || !report.Committed {
		if p.leaving.Swap(false) {
			p.end.Unmute(context.WithoutCancel(ctx))
		}
		return report, agentErr
	}
	// It runs there: this part's relay end goes (home goes on with the
	// new one), and the part with it.
	p.mu.Lock()
	stop := p.stop
	p.mu.Unlock()
	if stop != nil {
		stop()
	}
	n.log.Info("a process moved apart moved on", "move", move, "to", req.To)
	return report, nil
}

// untilIdle waits until part p's relay end has written all home sent
// (expect) and the process read it — and, with frozen (the process
// stopped writing), read and got written at home all it wrote.
func (n *Node) untilIdle(ctx context.Context, p *part, expect map[deputy.StreamID]uint64, frozen bool) error {
	deadline := time.Now().Add(quietWait)
	for {
		idle := false
		if err := p.end.Do(ctx, func(r *deputy.Relay) []deputy.Action {
			// In the relay's goroutine: the fds are its.
			idle = r.IdleIn(expect) && (!frozen || r.IdleOut()) && p.end.Pending(!frozen) == 0
			return nil
		}); err != nil {
			return err
		}
		if idle {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("bytes of its pipes are still on their way after %v (its reader at one end does not read)", quietWait)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// comeHome brings the process back from node from: its image is restored
// into its stand-in here (restore.Options.Into), whose PID, parent,
// session and group it has, with the original ends of its pipes and
// socketpairs (the ones the relay held): reunited, no deputy left. On
// failure the stand-in is its stand-in again and the process runs on
// there.
func (n *Node) comeHome(ctx context.Context, j *localJob, req MigrateRequest, p *part, from, link string,
	keep []relayEnd, sent map[deputy.StreamID]uint64, mode migrate.Mode) (*migrate.Report, error) {
	j.mu.Lock()
	in := j.init
	j.mu.Unlock()
	if in == nil {
		return nil, fmt.Errorf("job %s has no namespace here", j.info.ID)
	}
	// Its ends go back to it: the relay reads none of them from now on.
	p.end.HoldReads()
	home := false
	defer func() {
		if !home {
			p.end.ReleaseReads()
		}
	}()
	var roles []string
	var files []*os.File
	for _, e := range keep {
		roles = append(roles, e.role())
		files = append(files, p.end.FDs[e.Streams[0]])
	}
	host, _, _ := net.SplitHostPort(n.cfg.Listen)
	if host == "" {
		host = "127.0.0.1"
	}
	args := []string{"--listen", net.JoinHostPort(host, "0"), "--into", strconv.Itoa(req.PID),
		"--standin", filepath.Join(job.ScratchMount, "standin-"+p.move+".sock"), "--standin-exe", n.cfg.Exe,
		"--relayed", strings.Join(roles, ",")}
	ag, err := n.startAgent(in.NSPath(), "recv", args, files...)
	if err != nil {
		return nil, err
	}
	addr, err := awaitListening(ag, ag.Interrupt)
	if err != nil {
		return nil, err
	}
	name := "home-" + link
	committed := make(chan struct{})
	n.mu.Lock()
	if n.homeComing == nil {
		n.homeComing = map[string]chan struct{}{}
	}
	n.homeComing[name] = committed
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.homeComing, name)
		n.mu.Unlock()
	}()
	// The receiving agent's events, while the old node sends.
	type result struct {
		released bool
		err      error
	}
	agentDone := make(chan result, 1)
	go func() {
		var r result
		r.released, r.err = n.followRecv(ag, name, committed)
		agentDone <- r
	}()
	var ans onwardReply
	cerr := n.call(ctx, from, http.MethodPost, "/v1/peer/coproc/"+link+"/onward",
		onwardRequest{To: n.cfg.ID, Addr: addr, Move: name, Expect: sent, Mode: string(mode)}, &ans)
	r := <-agentDone
	switch {
	case r.released:
		// Home: the relay and its stand-in are done.
	case cerr != nil:
		return nil, fmt.Errorf("come home from %s: %w", from, cerr)
	case ans.Error != nil:
		return ans.Report, fmt.Errorf("come home from %s: %w", from, ans.Error.Err())
	default:
		return ans.Report, fmt.Errorf("come home from %s: %w", from, r.err)
	}
	home = true
	p.end.GiveBack()
	p.mu.Lock()
	stop := p.stop
	p.mu.Unlock()
	if stop != nil {
		stop() // the relay end goes; its goroutine drops the part
	}
	j.mu.Lock()
	j.info.Parts = slices.DeleteFunc(j.info.Parts, func(q Part) bool { return q.PID == req.PID })
	j.mu.Unlock()
	n.saveJob(j)
	n.log.Info("a process moved apart came home", "job", j.info.ID, "pid", req.PID, "from", from)
	rep := ans.Report
	if rep == nil {
		rep = &migrate.Report{Job: j.info.ID, Mode: mode, Committed: true}
	}
	return rep, nil
}
