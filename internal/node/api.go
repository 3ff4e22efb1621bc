package node

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/cluster"
	"ferry/msg/wire"
)

// The node API, the same on the control socket and between nodes:
//
//	GET  /v1/members
//	POST /v1/run                     RunRequest → JobInfo
//	POST /v1/adopt                   {"pid":N} → JobInfo
//	GET  /v1/jobs[?local=1]          → []JobInfo
//	GET  /v1/jobs/{id}               → JobInfo
//	GET  /v1/jobs/{id}/logs?out=N&err=M&follow=1   → log frames
//	POST /v1/jobs/{id}/stdin[?eof=1] body: bytes
//	POST /v1/jobs/{id}/signal?sig=N
//	POST /v1/jobs/{id}/migrate       MigrateRequest → progress lines, then the report
//	POST /v1/incoming                (node to node) prepare a destination
//	POST /v1/jobs/{id}/carry         (node to node) logs and unread input at the commit
//	GET  /v1/jobs/{id}/committed     (node to node) did an incoming migration commit?
//
// A request for a job held by another node is forwarded there (header
// X-Ferry-Hop marks a forwarded request, which is never forwarded again).
// Log frames: kind (1 stdout, 2 stderr, 0 end), length u32 little endian,
// payload; the end frame's payload is the JobInfo as JSON.

const hopHeader = "X-Ferry-Hop"

// RunRequest starts a job.
type RunRequest struct {
	Cmd  []string `json:"cmd"`
	Node string   `json:"node,omitempty"`
	Dir  string   `json:"dir,omitempty"`
	Env  []string `json:"env,omitempty"`
	// Forwarding is the job's message-forwarding mechanism (resend,
	// origin, link, update, auto); "" is the node's.
	Forwarding string `json:"forwarding,omitempty"`
	// KeepTogether and NoSeparateWaiting are the job's rules about
	// moving its processes apart (package coproc).
	KeepTogether      bool `json:"keep_together,omitempty"`
	NoSeparateWaiting bool `json:"no_separate_waiting,omitempty"`
	// Spread: commands whose new processes are each placed on the least
	// loaded node as they start (package spread).
	Spread []string `json:"spread,omitempty"`
}

// MigrateRequest moves a job.
type MigrateRequest struct {
	To        string        `json:"to"`
	Mode      string        `json:"mode"`
	MaxFreeze time.Duration `json:"max_freeze,omitempty"`
	// PID, if set, moves only that process of the job (with Alone, one
	// without children), the rest staying (coproc.go).
	PID   int  `json:"pid,omitempty"`
	Alone bool `json:"alone,omitempty"`
}

// Size limits of a request: a larger header gets 431 (net/http), a
// larger body 413, and nothing of the request is done.
const (
	maxHeaderBytes = 64 << 10
	maxJSONBody    = 1 << 20 // run, adopt, migrate, incoming, and bodiless requests
	maxStdinBody   = 4 << 20 // one write to a job's input
	// maxCarryBody bounds one /carry: up to carryChunk of each stream
	// (base64 in JSON: 4/3 of it) and the input the job had not read.
	maxCarryBody = 32 << 20
	carryChunk   = 8 << 20
	// maxPeerAnswer bounds a JSON answer from another node (a job list).
	maxPeerAnswer = 64 << 20
)

// routes is the API of the control socket (peer false) or of the TLS
// port for other nodes (peer true). Adopting a process is asked of its
// own node, on the control socket; the steps of a migration between two
// nodes are only for nodes.
func (n *Node) routes(peer bool) *http.ServeMux {
	m := http.NewServeMux()
	h := func(pattern string, limit int64, f http.HandlerFunc) { m.Handle(pattern, limitBody(limit, f)) }
	h("GET /v1/members", maxJSONBody, n.handleMembers)
	h("GET /v1/node/stats", maxJSONBody, n.handleStats)
	h("POST /v1/run", maxJSONBody, n.handleRun)
	h("GET /v1/jobs", maxJSONBody, n.handleJobs)
	h("GET /v1/jobs/{id}", maxJSONBody, n.routed(actSee, n.handleJob))
	h("GET /v1/jobs/{id}/logs", maxJSONBody, n.handleLogs)
	h("POST /v1/jobs/{id}/stdin", maxStdinBody, n.routed(actInput, n.handleStdin))
	h("POST /v1/jobs/{id}/signal", maxJSONBody, n.routed(actSignal, n.handleSignal))
	h("POST /v1/jobs/{id}/migrate", maxJSONBody, n.routed(actMigrate, n.handleMigrate))
	h("POST /v1/send", maxJSONBody+2*wire.MaxPayload, n.handleSend)
	h("GET /v1/where/{id}", maxJSONBody, n.handleWhere)
	if !peer {
		h("POST /v1/adopt", maxJSONBody, n.handleAdopt)
		return m
	}
	h("POST /v1/incoming", maxJSONBody, n.handleIncoming)
	h("POST /v1/peer/coproc", maxJSONBody, n.handleCoprocIn)
	h("GET /v1/peer/coproc/{move}/committed", maxJSONBody, n.handleCoprocCommitted)
	h("POST /v1/peer/coproc/{move}/onward", maxJSONBody, n.handleCoprocOnward)
	h("POST /v1/peer/msgs", maxMsgBatch, n.handlePeerMsgs)
	h("GET /v1/peer/msgs/mechanism", maxJSONBody, n.handlePeerMechanism)
	h("POST /v1/jobs/{id}/carry", maxCarryBody, n.handleCarry)
	h("GET /v1/jobs/{id}/committed", maxJSONBody, n.handleCommitted)
	h("GET /v1/jobs/{id}/arrival", maxJSONBody, n.handleArrival)
	return m
}

// limitBody caps r's body at limit bytes (bodyError tells the caller).
func limitBody(limit int64, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, limit)
		h(w, r)
	})
}

// bodyError answers a request whose body could not be read: 413 if it
// was over its limit, 400 otherwise.
func bodyError(w http.ResponseWriter, err error) {
	var mb *http.MaxBytesError
	if errors.As(err, &mb) {
		httpError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("request body larger than its limit of %d bytes", mb.Limit))
		return
	}
	httpError(w, http.StatusBadRequest, err)
}

// decodeBody reads r's body as JSON into v, answering the error if it
// cannot.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		bodyError(w, err)
		return false
	}
	return true
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	http.Error(w, err.Error(), code)
}

// ErrNoJob is returned for a job no node holds.
var ErrNoJob = errors.New("no such job")

// local returns the job if it runs here.
func (n *Node) local(id string) *localJob {
	n.mu.Lock()
	defer n.mu.Unlock()
	j := n.jobs[id]
	if j == nil {
		return nil
	}
	j.mu.Lock()
	st := j.info.State
	j.mu.Unlock()
	if st == stateMoved || st == stateIncoming {
		return nil
	}
	return j
}

// members lists the cluster's alive members.
func (n *Node) members() []cluster.Member {
	var out []cluster.Member
	for _, m := range n.cl.Members() {
		if m.Alive {
			out = append(out, m)
		}
	}
	return out
}

// where finds the node that holds job id now.
func (n *Node) where(ctx context.Context, id string) (string, error) {
	if n.local(id) != nil {
		return n.cfg.ID, nil
	}
	n.mu.Lock()
	hint := n.moved[id]
	n.mu.Unlock()
	seen := map[string]bool{}
	for hint != "" && !seen[hint] {
		seen[hint] = true
		info, err := n.remoteJob(ctx, hint, id)
		if err != nil {
			break
		}
		if info.State == stateIncoming {
			break // not running there (yet): the source still has it
		}
		if info.State != stateMoved {
			return hint, nil
		}
		hint = info.MovedTo
	}
	for _, m := range n.members() {
		if m.ID == n.cfg.ID || seen[m.ID] {
			continue
		}
		if info, err := n.remoteJob(ctx, m.ID, id); err == nil && info.State != stateMoved && info.State != stateIncoming {
			return m.ID, nil
		}
	}
	n.mu.Lock()
	j := n.jobs[id]
	n.mu.Unlock()
	if j != nil {
		// Moved away and nobody has it now: show what is known here.
		return n.cfg.ID, nil
	}
	if down := n.downNodeOf(id); down != "" {
		return "", fmt.Errorf("job %s is on node %s, which is down: %w", id, down, ErrNodeDown)
	}
	return "", fmt.Errorf("job %s: %w", id, ErrNoJob)
}

func (n *Node) remoteJob(ctx context.Context, nodeID, id string) (*JobInfo, error) {
	var info JobInfo
	err := n.call(ctx, nodeID, "GET", "/v1/jobs/"+id+"?local=1", nil, &info)
	return &info, err
}

// peerURL is the base URL of a member's API.
func (n *Node) peerURL(nodeID string) (string, error) {
	m, ok := n.cl.Lookup(nodeID)
	if !ok || !m.Alive {
		return "", fmt.Errorf("node %s is not a live member of the cluster", nodeID)
	}
	return "https://" + m.RPC, nil
}

// call does a JSON request to another node.
func (n *Node) call(ctx context.Context, nodeID, method, path string, in, out any) error {
	resp, err := n.do(ctx, nodeID, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	lr := &io.LimitedReader{R: resp.Body, N: maxPeerAnswer + 1}
	err = json.NewDecoder(lr).Decode(out)
	if lr.N <= 0 {
		return fmt.Errorf("node %s: answer to %s %s larger than %d bytes", nodeID, method, path, maxPeerAnswer)
	}
	if err != nil {
		return fmt.Errorf("node %s: answer to %s %s: %w", nodeID, method, path, err)
	}
	return nil
}

func (n *Node) do(ctx context.Context, nodeID, method, path string, in any) (*http.Response, error) {
	return n.doWith(n.peer, ctx, nodeID, method, path, in)
}

// doWith is do with a client of its own (the message path's).
func (n *Node) doWith(client *http.Client, ctx context.Context, nodeID, method, path string, in any) (*http.Response, error) {
	base, err := n.peerURL(nodeID)
	if err != nil && client == n.msgPeer {
		// The message layer has its own retries and deadlines: it tries
		// a member the gossip holds dead too (under load the gossip's
		// verdict flaps; a node truly down just does not answer).
		if m, ok := n.cl.Lookup(nodeID); ok {
			base, err = "https://"+m.RPC, nil
		}
	}
	if err != nil {
		return nil, err
	}
	var body io.Reader
	if in != nil {
		if r, ok := in.(io.Reader); ok {
			body = r
		} else {
			b, err := json.Marshal(in)
			if err != nil {
				return nil, err
			}
			body = bytes.NewReader(b)
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, base+path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set(hopHeader, n.cfg.ID)
	if c, ok := ctx.Value(forwardKey{}).(*Caller); ok && c != nil && !c.Node {
		req.Header.Set(callerHeader, c.header())
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", nodeID, err)
	}
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &RemoteError{Node: nodeID, Code: resp.StatusCode, Msg: string(trimNL(b))}
	}
	return resp, nil
}

// RemoteError is an error answer from a node.
type RemoteError struct {
	Node string
	Code int
	Msg  string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("node %s: %s", e.Node, e.Msg) }

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// routed runs h here if the job is here and the caller may do act on
// it, and forwards the request to the job's node otherwise (which
// decides).
func (n *Node) routed(act string, h func(http.ResponseWriter, *http.Request, *localJob)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		c := callerOf(r.Context())
		allowed := func(j *localJob) bool {
			if err := mayAccess(c, act, id, j.snapshot().Owner); err != nil {
				httpError(w, http.StatusForbidden, err)
				return false
			}
			return true
		}
		if j := n.local(id); j != nil {
			if allowed(j) {
				h(w, r, j)
			}
			return
		}
		if r.Header.Get(hopHeader) != "" || r.URL.Query().Get("local") != "" {
			n.mu.Lock()
			j := n.jobs[id]
			n.mu.Unlock()
			if j != nil && r.Method == "GET" {
				if allowed(j) {
					writeJSON(w, j.snapshot()) // a tombstone: where it went
				}
				return
			}
			httpError(w, http.StatusNotFound, fmt.Errorf("job %s is not on node %s", id, n.cfg.ID))
			return
		}
		to, err := n.where(r.Context(), id)
		if err != nil {
			httpError(w, http.StatusNotFound, err)
			return
		}
		if to == n.cfg.ID {
			n.mu.Lock()
			j := n.jobs[id]
			n.mu.Unlock()
			if j != nil && !allowed(j) {
				return
			}
			if r.Method == "GET" && j != nil {
				writeJSON(w, j.snapshot())
				return
			}
			httpError(w, http.StatusConflict, fmt.Errorf("job %s has ended", id))
			return
		}
		n.forward(w, r, to)
	}
}

// forward proxies r to node to, for r's caller, and streams the answer
// back.
func (n *Node) forward(w http.ResponseWriter, r *http.Request, to string) {
	resp, err := n.do(forwarding(r.Context()), to, r.Method, r.URL.RequestURI(), r.Body)
	if err != nil {
		var re *RemoteError
		if errors.As(err, &re) {
			http.Error(w, re.Msg, re.Code)
			return
		}
		httpError(w, http.StatusBadGateway, err)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	fl, _ := w.(http.Flusher)
	buf := make([]byte, 32<<10)
	for {
		k, err := resp.Body.Read(buf)
		if k > 0 {
			w.Write(buf[:k])
			if fl != nil {
				fl.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

func (n *Node) handleMembers(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, n.cl.Members())
}

func (n *Node) handleRun(w http.ResponseWriter, r *http.Request) {
	var req RunRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Node != "" && req.Node != n.cfg.ID {
		if r.Header.Get(hopHeader) != "" {
			httpError(w, http.StatusBadRequest, fmt.Errorf("this is node %s, not %s", n.cfg.ID, req.Node))
			return
		}
		var info JobInfo
		if err := n.call(forwarding(r.Context()), req.Node, "POST", "/v1/run", req, &info); err != nil {
			var re *RemoteError
			if errors.As(err, &re) {
				http.Error(w, re.Msg, re.Code)
				return
			}
			httpError(w, http.StatusBadGateway, err)
			return
		}
		writeJSON(w, info)
		return
	}
	info, err := n.startJob(req, callerOf(r.Context()))
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, info)
}

func (n *Node) handleAdopt(w http.ResponseWriter, r *http.Request) {
	var req struct {
		PID int `json:"pid"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	info, err := n.adopt(req.PID, callerOf(r.Context()))
	if errors.Is(err, ErrNotYours) {
		httpError(w, http.StatusForbidden, err)
		return
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, info)
}

func (n *Node) handleJobs(w http.ResponseWriter, r *http.Request) {
	c := callerOf(r.Context())
	var out []JobInfo
	n.mu.Lock()
	for _, j := range n.jobs {
		if info := j.snapshot(); mayAccess(c, actSee, info.ID, info.Owner) == nil {
			out = append(out, info)
		}
	}
	n.mu.Unlock()
	for i := range out {
		if out[i].State == stateRunning || out[i].State == stateMigrating {
			out[i].Msgs = n.msgCounts(out[i].ID)
		}
	}
	if r.Header.Get(hopHeader) != "" || r.URL.Query().Get("local") != "" {
		writeJSON(w, out)
		return
	}
	// The whole cluster: every job once, from the node that holds it
	// (during a migration's commit both nodes may claim it for a moment:
	// the running copy wins).
	var all []JobInfo
	seen := map[string]int{}
	add := func(info JobInfo) {
		if info.State == stateMoved || info.State == stateIncoming {
			return
		}
		if i, ok := seen[info.ID]; ok {
			if all[i].State != stateRunning && info.State == stateRunning {
				all[i] = info
			}
			return
		}
		seen[info.ID] = len(all)
		all = append(all, info)
	}
	for _, info := range out {
		add(info)
	}
	for _, theirs := range n.peerJobs(r.Context()) {
		for _, info := range theirs {
			if mayAccess(c, actSee, info.ID, info.Owner) == nil {
				add(info)
			}
		}
	}
	sort.Slice(all, func(a, b int) bool { return all[a].ID < all[b].ID })
	writeJSON(w, all)
}

func (n *Node) handleJob(w http.ResponseWriter, r *http.Request, j *localJob) {
	writeJSON(w, j.snapshot())
}

func (n *Node) handleStdin(w http.ResponseWriter, r *http.Request, j *localJob) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		bodyError(w, err)
		return
	}
	j.ioMu.Lock()
	defer j.ioMu.Unlock()
	// A migration may have committed while this request waited: the
	// input belongs to the new node.
	if n.local(j.info.ID) == nil {
		if to, err := n.where(r.Context(), j.info.ID); err == nil && to != n.cfg.ID {
			r.Body = io.NopCloser(bytes.NewReader(b))
			n.forward(w, r, to)
			return
		}
	}
	if err := j.writeInput(b, r.URL.Query().Get("eof") != ""); err != nil {
		httpError(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, map[string]int{"written": len(b)})
}

func (n *Node) handleSignal(w http.ResponseWriter, r *http.Request, j *localJob) {
	sig, err := strconv.Atoi(r.URL.Query().Get("sig"))
	if err != nil || sig <= 0 || sig > 64 {
		httpError(w, http.StatusBadRequest, fmt.Errorf("bad signal %q", r.URL.Query().Get("sig")))
		return
	}
	j.ioMu.Lock() // not while a migration holds the job
	defer j.ioMu.Unlock()
	j.mu.Lock()
	hp := j.hostPIDLocked()
	adopted := j.info.Adopted
	j.mu.Unlock()
	if hp <= 0 {
		httpError(w, http.StatusConflict, fmt.Errorf("job %s has no running process", j.info.ID))
		return
	}
	target := -hp // the job's process group, like a terminal's Ctrl-C
	if adopted {
		target = hp
	}
	if err := unix.Kill(target, syscall.Signal(sig)); err != nil {
		if err := unix.Kill(hp, syscall.Signal(sig)); err != nil {
			httpError(w, http.StatusConflict, fmt.Errorf("signal job %s: %w", j.info.ID, err))
			return
		}
	}
	writeJSON(w, map[string]string{"sent": unix.SignalName(syscall.Signal(sig))})
}

func stateOf(j *localJob) string {
	if j == nil {
		return ""
	}
	return j.snapshot().State
}

// log frames
const (
	frameEnd    = 0
	frameStdout = 1
	frameStderr = 2
)

func writeFrame(w io.Writer, kind byte, p []byte) error {
	var h [5]byte
	h[0] = kind
	binary.LittleEndian.PutUint32(h[1:], uint32(len(p)))
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(p)
	return err
}

// ReadFrame reads one log frame.
func ReadFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := binary.LittleEndian.Uint32(h[1:])
	if n > 16<<20 {
		return 0, nil, fmt.Errorf("log frame of %d bytes", n)
	}
	p := make([]byte, n)
	_, err := io.ReadFull(r, p)
	return h[0], p, err
}

// handleLogs streams a job's output from the given offsets. The node a
// client asks follows the job across migrations: when the node that held
// it says it moved, the stream goes on from the new node at the same
// offsets.
func (n *Node) handleLogs(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	q := r.URL.Query()
	off := [2]int64{}
	off[0], _ = strconv.ParseInt(q.Get("out"), 10, 64)
	off[1], _ = strconv.ParseInt(q.Get("err"), 10, 64)
	follow := q.Get("follow") != ""
	fl, _ := w.(http.Flusher)
	w.Header().Set("Content-Type", "application/octet-stream")
	hop := r.Header.Get(hopHeader) != ""
	// Once a frame is out, errors end the stream with an end frame, not
	// an HTTP error.
	started := false
	fail := func(code int, err error) {
		if !started {
			httpError(w, code, err)
			return
		}
		b, _ := json.Marshal(JobInfo{ID: id, State: stateLost, Error: err.Error()})
		writeFrame(w, frameEnd, b)
	}
	var lookFor time.Time // when the job was first not found (a move may be committing)
	for {
		n.mu.Lock()
		j := n.jobs[id]
		n.mu.Unlock()
		// Here unless it moved away or has not arrived yet (incoming: it
		// still runs on its source, which streams it).
		if st := stateOf(j); j != nil && (hop || (st != stateMoved && st != stateIncoming)) {
			if err := mayAccess(callerOf(r.Context()), actSee, id, j.snapshot().Owner); err != nil {
				fail(http.StatusForbidden, err)
				return
			}
			started = true
			end := n.streamLocal(r.Context(), w, fl, j, &off, follow)
			if end == nil {
				return
			}
			if hop || end.State != stateMoved || !follow {
				// The node that asked follows the move itself.
				b, _ := json.Marshal(end)
				writeFrame(w, frameEnd, b)
				return
			}
			// Moved while we streamed: go on from the new node.
			continue
		}
		if hop {
			httpError(w, http.StatusNotFound, fmt.Errorf("job %s is not on node %s", id, n.cfg.ID))
			return
		}
		to, err := n.where(r.Context(), id)
		if err != nil || to == n.cfg.ID {
			if err == nil {
				err = fmt.Errorf("job %s: %w", id, ErrNoJob)
			}
			// While a migration commits, the job may be on neither node
			// for a moment: look again for a while.
			if lookFor.IsZero() {
				lookFor = time.Now()
			}
			if !follow || time.Since(lookFor) > 10*time.Second {
				fail(http.StatusNotFound, err)
				return
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			continue
		}
		lookFor = time.Time{}
		end, err := n.proxyLogs(forwarding(r.Context()), w, fl, to, id, &off, follow, &started)
		if err != nil {
			if r.Context().Err() != nil {
				return
			}
			if re := (*RemoteError)(nil); errors.As(err, &re) && re.Code == http.StatusForbidden {
				fail(re.Code, errors.New(re.Msg))
				return
			}
			// The node may have died or the job moved on: look again.
			n.log.Debug("log stream interrupted", "job", id, "node", to, "err", err)
			select {
			case <-time.After(200 * time.Millisecond):
			case <-r.Context().Done():
				return
			}
			continue
		}
		if end.State != stateMoved {
			b, _ := json.Marshal(end)
			writeFrame(w, frameEnd, b)
			return
		}
		n.mu.Lock()
		n.moved[id] = end.MovedTo
		n.mu.Unlock()
	}
}

// proxyLogs copies another node's log stream, advancing off, and returns
// its end frame. It sets started once that node answered.
func (n *Node) proxyLogs(ctx context.Context, w io.Writer, fl http.Flusher, to, id string, off *[2]int64, follow bool, started *bool) (*JobInfo, error) {
	path := fmt.Sprintf("/v1/jobs/%s/logs?out=%d&err=%d", id, off[0], off[1])
	if follow {
		path += "&follow=1"
	}
	resp, err := n.do(ctx, to, "GET", path, nil)
	if err != nil {
		return nil, err
	}
	*started = true
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	for {
		kind, p, err := ReadFrame(br)
		if err != nil {
			return nil, err
		}
		switch kind {
		case frameStdout, frameStderr:
			if err := writeFrame(w, kind, p); err != nil {
				return nil, err
			}
			off[kind-1] += int64(len(p))
			if fl != nil {
				fl.Flush()
			}
		case frameEnd:
			var info JobInfo
			if err := json.Unmarshal(p, &info); err != nil {
				return nil, err
			}
			return &info, nil
		}
	}
}

// streamLocal streams a local job's logs from off until the job ends here
// (or at once without follow). It returns the job as it ended here, or
// nil if the client went away.
func (n *Node) streamLocal(ctx context.Context, w io.Writer, fl http.Flusher, j *localJob, off *[2]int64, follow bool) *JobInfo {
	for {
		// The state first: bytes appended before a state change are then
		// seen by the reads below.
		info := j.snapshot()
		progressed := false
		var wakes [2]<-chan struct{}
		closed := true
		for i := range 2 {
			b, wake, c, err := j.logs[i].readAt(off[i], 1<<20)
			if err != nil {
				info.State, info.Error = stateLost, err.Error()
				return &info
			}
			wakes[i] = wake
			closed = closed && c
			if len(b) > 0 {
				if writeFrame(w, byte(i+1), b) != nil {
					return nil
				}
				off[i] += int64(len(b))
				progressed = true
			}
		}
		if progressed {
			if fl != nil {
				fl.Flush()
			}
			continue
		}
		ended := info.State == stateExited || info.State == stateLost
		gone := false
		select {
		case <-j.done:
			gone = true // its files are closed: nothing more will come
		default:
		}
		if !follow || (ended && (closed || gone)) || info.State == stateMoved {
			// A moved job's logs here are complete up to the commit.
			return &info
		}
		select {
		case <-wakes[0]:
		case <-wakes[1]:
		case <-j.done:
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return nil
		}
	}
}
