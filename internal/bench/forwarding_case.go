package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"ferry/internal/ipc"
	"ferry/internal/migrate"
	"ferry/internal/msgload"
	"ferry/internal/node"
	"ferry/internal/pki"
)

// fwdCluster is a local cluster for the forwarding cases (fwdNodes) or
// the partner rows.
type fwdCluster struct {
	cfg   *ForwardingConfig
	dir   string
	lc    *node.Local
	nodes []string

	calls []time.Duration // every move's call, for typicalMove
	once  sync.Once
}

func startFwdCluster(ctx context.Context, cfg *ForwardingConfig, forwarding string, nodes []string) (*fwdCluster, error) {
	dir, err := os.MkdirTemp(cfg.Dir, "ferry-bench-forwarding-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	lc, err := node.StartLocal(ctx, node.LocalConfig{Dir: dir, IDs: nodes, Exe: cfg.Exe, Log: cfg.Log, Forwarding: forwarding})
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: start nodes: %w", err)
	}
	return &fwdCluster{cfg: cfg, dir: dir, lc: lc, nodes: nodes}, nil
}

func (fc *fwdCluster) close() {
	fc.once.Do(func() {
		fc.lc.Stop()
		os.RemoveAll(fc.dir)
	})
}

// typicalMove is the median move call so far (half a second before any).
func (fc *fwdCluster) typicalMove() time.Duration {
	if len(fc.calls) == 0 {
		return 500 * time.Millisecond
	}
	return median(fc.calls)
}

// measureRTT times n POSTs of an empty message batch from node from to
// node to over one kept-alive TLS connection with from's certificate,
// after a warm-up.
func (fc *fwdCluster) measureRTT(ctx context.Context, from, to string, n int) (RTTLimit, error) {
	const route = "/v1/peer/msgs"
	lim := RTTLimit{From: from, To: to, Route: "POST " + route + " (empty batch)", Samples: n}
	id, err := pki.Load(localPKI(fc.dir), from)
	if err != nil {
		return lim, err
	}
	tr := &http.Transport{TLSClientConfig: id.ClientConfig("http/1.1"), MaxIdleConnsPerHost: 1}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	body, err := ipc.EncodeBatch(nil)
	if err != nil {
		return lim, err
	}
	url := "https://" + fc.lc.Addrs[to] + route
	once := func() (time.Duration, error) {
		req, err := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		d := time.Since(start)
		if resp.StatusCode/100 != 2 {
			return 0, fmt.Errorf("%s: %s", url, resp.Status)
		}
		return d, nil
	}
	var us []int64
	for i := -100; i < n; i++ { // 100 not counted: connection, handshake, warm-up
		d, err := once()
		if err != nil {
			return lim, err
		}
		if i >= 0 {
			us = append(us, d.Microseconds())
		}
	}
	l := latencyOf(us)
	lim.P50Us, lim.P99Us = l.P50Us, l.P99Us
	return lim, nil
}

// fwdJob is a msgload job of the cluster.
type fwdJob struct {
	id    string // the job
	msgID string // its process's message id, from its "ready" line
	at    string // the node it runs on
}

// startJob runs cmd as a job on node at and waits for its "ready" line.
func (fc *fwdCluster) startJob(ctx context.Context, at string, cmd []string, forwarding string) (*fwdJob, error) {
	info, err := fc.lc.Clients[at].Run(ctx, node.RunRequest{Node: at, Cmd: cmd, Forwarding: forwarding})
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", strings.Join(cmd[1:3], " "), err)
	}
	j := &fwdJob{id: info.ID, at: at}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var out, errOut bytes.Buffer
		ji, err := fc.lc.Clients[at].Logs(ctx, j.id, false, &out, &errOut)
		if err != nil {
			return nil, fmt.Errorf("job %s: %w", j.id, err)
		}
		if j.msgID = msgload.ReadyID(out.String()); j.msgID != "" {
			return j, nil
		}
		if ji != nil && (ji.State == "exited" || ji.State == "lost") || time.Now().After(deadline) {
			return nil, fmt.Errorf("job %s (%s) not ready (%s): %s%s", j.id, strings.Join(cmd[1:3], " "), ji.State, out.String(), errOut.String())
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// output follows the job's output on its node until it ends (at most
// limit) and returns it.
func (fc *fwdCluster) output(ctx context.Context, j *fwdJob, limit time.Duration) (string, error) {
	lctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var out, errOut bytes.Buffer
	info, err := fc.lc.Clients[j.at].Logs(lctx, j.id, true, &out, &errOut)
	if err != nil {
		return out.String(), fmt.Errorf("job %s did not end within %v: %w%s", j.id, limit, err, suffix(errOut.String()))
	}
	if info != nil && info.State == "lost" {
		return out.String(), fmt.Errorf("job %s lost: %s", j.id, info.Error)
	}
	return out.String(), nil
}

func suffix(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return ""
	}
	return ": " + s
}

func (fc *fwdCluster) signal(ctx context.Context, j *fwdJob, sig int) error {
	return fc.lc.Clients[j.at].Signal(ctx, j.id, sig)
}

// kill ends jobs left running by a failed case (best effort).
func (fc *fwdCluster) kill(ctx context.Context, js ...*fwdJob) {
	for _, j := range js {
		if j != nil {
			fc.lc.Clients[j.at].Signal(ctx, j.id, 9)
		}
	}
}

// stats reads every running node's router counters.
func (fc *fwdCluster) stats(ctx context.Context, nodes []string) map[string]ipc.Stats {
	out := map[string]ipc.Stats{}
	for _, n := range nodes {
		if st, err := fc.lc.Clients[n].Stats(ctx); err == nil {
			out[n] = st.Msgs
		}
	}
	return out
}

// moveTimes is one move as the classification needs it.
type moveTimes struct {
	from, to              string
	start, freeze, commit time.Time // the call, the image progress, the commit progress
	// learnt: per sender node, when it (under origin: the creating node)
	// first showed the new location; missing: not within learnFor.
	learnt map[string]time.Time
	rep    *migrate.Report
}

// move migrates j to node to and times its freeze and commit by the
// migration's progress, and from the commit on polls the views that end
// the type-2 window of each sender node.
func (fc *fwdCluster) move(ctx context.Context, j *fwdJob, to string, mode migrate.Mode, mech ipc.Mechanism, senders []string) (moveTimes, error) {
	mt := moveTimes{from: j.at, to: to}
	mctx, cancel := context.WithTimeout(ctx, fc.cfg.MoveTimeout)
	defer cancel()
	var learnt chan map[string]time.Time
	start := time.Now()
	mt.start = start
	rep, err := fc.lc.Clients[j.at].Migrate(mctx, j.id, node.MigrateRequest{To: to, Mode: string(mode)}, func(p migrate.Progress) {
		now := time.Now()
		switch p.Phase {
		case "image":
			if mt.freeze.IsZero() {
				mt.freeze = now
			}
		case "commit":
			if mt.commit.IsZero() {
				mt.commit = now
				learnt = fc.pollLearnt(ctx, j.id, to, mech, senders, now)
			}
		}
	})
	fc.calls = append(fc.calls, time.Since(start))
	if learnt != nil {
		mt.learnt = <-learnt
	}
	if err == nil && (rep == nil || !rep.Committed) {
		err = errors.New("the migration ended without committing")
	}
	if err != nil {
		return mt, fmt.Errorf("move %s → %s: %w", j.at, to, err)
	}
	if mt.freeze.IsZero() || mt.commit.IsZero() {
		return mt, fmt.Errorf("move %s → %s: no image or commit progress to time it by", j.at, to)
	}
	mt.rep = rep
	j.at = to
	return mt, nil
}

// pollLearnt polls, every learnPoll for at most learnFor, each sender
// node's own view of job (under origin the creating node's, for all of
// them) until it shows node to, and sends when each first did. A view
// that shows it at the first poll counts as learnt at the commit.
func (fc *fwdCluster) pollLearnt(ctx context.Context, job, to string, mech ipc.Mechanism, senders []string, commit time.Time) chan map[string]time.Time {
	out := make(chan map[string]time.Time, 1)
	polled := slices.Clone(senders)
	if mech == ipc.Origin {
		polled = []string{ipc.CreatorOf(job)}
	}
	go func() {
		var mu sync.Mutex
		got := map[string]time.Time{}
		var wg sync.WaitGroup
		for _, n := range polled {
			wg.Go(func() {
				c := fc.lc.Clients[n]
				for first := true; time.Since(commit) < learnFor && ctx.Err() == nil; first = false {
					at := time.Now()
					v, err := c.WhereHere(ctx, job)
					if err == nil && knows(v, n, to, mech) {
						if first {
							at = commit
						}
						mu.Lock()
						got[n] = at
						mu.Unlock()
						return
					}
					time.Sleep(learnPoll)
				}
			})
		}
		wg.Wait()
		if mech == ipc.Origin {
			if t, ok := got[polled[0]]; ok {
				for _, s := range senders {
					got[s] = t
				}
			}
		}
		out <- got
	}()
	return out
}

// knows reports whether node n's view v sends a message for the job to
// node to: the job is there, or (under origin, n being its creator) the
// table says to, or (otherwise) n's location cache does.
func knows(v node.Where, n, to string, mech ipc.Mechanism) bool {
	if n == to && v.Local {
		return true
	}
	if mech == ipc.Origin {
		return v.Table != nil && v.Table.Node == to
	}
	return v.Cache != nil && v.Cache.Node == to
}

// classify names the class of a message sent at t by a sender on node
// sn, the receiver having started on node start and moved as moves say;
// local: the sender ran on the receiver's node then.
func classify(t time.Time, sn, start string, moves []moveTimes) (class int, local bool) {
	k := -1
	for i, m := range moves {
		if !t.Before(m.start) {
			k = i
		}
	}
	if k < 0 {
		return classNever, sn == start
	}
	m := moves[k]
	if t.Before(m.freeze) {
		return classPrepare, sn == m.from
	}
	if !t.After(m.commit) {
		return classType1, sn == m.from
	}
	l, ok := m.learnt[sn]
	switch {
	case !ok: // not learnt within the polls: the window is theirs
		if t.Sub(m.commit) < learnFor {
			return classType2, sn == m.to
		}
	case l.After(m.commit) && !t.After(l):
		return classType2, sn == m.to
	}
	return classType3, sn == m.to
}

// caseShape: the senders' rate, and the messages of all of them
// together (0: until stopped after the tail).
type caseShape struct {
	rate  float64
	total int
}

// minDwell is the least time between moves of a run whose moves are
// spread over its sending.
const minDwell = 100 * time.Millisecond

// count is sender i's (from 0) share of total among n.
func (s caseShape) count(i, n int) int {
	if s.total == 0 {
		return 0
	}
	c := s.total / n
	if i < s.total%n {
		c++
	}
	return c
}

func msgloadSend(exe, to string, rate float64, count, index int) []string {
	return []string{exe, "msgload", "send", "--to", to, "--rate", strconv.FormatFloat(rate, 'f', -1, 64),
		"--count", strconv.Itoa(count), "--index", strconv.Itoa(index)}
}

// runCase runs one case on the cluster: receiver on n1, a sender on each
// other node, c.Moves moves round robin, then every figure.
func (fc *fwdCluster) runCase(ctx context.Context, c FwdCase, shape caseShape) FwdResult {
	res := FwdResult{FwdCase: c}
	mech, err := ipc.ParseMechanism(c.Mechanism)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	log := fc.cfg.Log.With("case", c.String())
	senderNodes := fwdNodes[1:]
	ends := len(senderNodes)
	if shape.total > 0 {
		// The senders stop by themselves, perhaps before the last move:
		// the receiver waits for one more end, the bench's, after it.
		ends++
	}
	recv, err := fc.startJob(ctx, fwdNodes[0], []string{fc.cfg.Exe, "msgload", "recv", "--senders", strconv.Itoa(ends)}, c.Mechanism)
	if err != nil {
		res.Error = err.Error()
		return res
	}
	before := fc.stats(ctx, fwdNodes)
	var senders []*fwdJob
	nodeOf := map[uint32]string{}
	for i, n := range senderNodes {
		s, err := fc.startJob(ctx, n, msgloadSend(fc.cfg.Exe, recv.msgID, shape.rate, shape.count(i, len(senderNodes)), i+1), "")
		if err != nil {
			res.Error = err.Error()
			fc.kill(ctx, append(senders, recv)...)
			return res
		}
		senders = append(senders, s)
		nodeOf[uint32(i+1)] = n
	}
	warm := time.Now()
	sendEnd := warm.Add(time.Duration(float64(shape.count(0, len(senderNodes))) / shape.rate * float64(time.Second)))
	var moves []moveTimes
	pause := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-ctx.Done():
			return false
		}
	}
	if !pause(fc.cfg.Lead) {
		fc.kill(ctx, append(senders, recv)...)
		return res
	}
	for i := 0; i < c.Moves; i++ {
		to := nextNode(recv.at)
		mt, err := fc.move(ctx, recv, to, c.Mode, mech, senderNodes)
		if err != nil {
			res.Error = err.Error()
			log.Warn("move failed", "err", err)
			break
		}
		moves = append(moves, mt)
		dwell := fc.cfg.Dwell
		if shape.total > 0 {
			// Spread the moves left over the sending left: each takes
			// about as long as the moves so far.
			left := sendEnd.Sub(time.Now()) / time.Duration(c.Moves-i)
			dwell = max(minDwell, left-fc.typicalMove())
		}
		if i < c.Moves-1 && !pause(dwell) {
			break
		}
	}
	pause(fc.cfg.Tail)
	res.Links, res.OriginTable = fc.heldFor(ctx, recv.id)
	if shape.total == 0 {
		for _, s := range senders {
			if err := fc.signal(ctx, s, 10); err != nil && res.Error == "" { // SIGUSR1: stop and end
				res.Error = fmt.Sprintf("stop sender %s: %v", s.id, err)
			}
		}
	}
	var sends []*msgload.SendSummary
	for _, s := range senders {
		out, err := fc.output(ctx, s, 2*time.Minute)
		ss, perr := msgload.ParseSend(strings.NewReader(out))
		if perr != nil {
			err = errors.Join(err, perr)
		}
		if err != nil && res.Error == "" {
			res.Error = fmt.Sprintf("sender %s: %v", s.id, err)
		}
		if ss != nil {
			sends = append(sends, ss)
		}
	}
	if shape.total > 0 {
		end := msgload.Payload{Kind: msgload.KindEnd}.Append(nil, 0)
		if _, err := fc.lc.Clients[recv.at].Send(ctx, recv.msgID, end); err != nil && res.Error == "" {
			res.Error = fmt.Sprintf("end the receiver: %v", err)
		}
	}
	out, err := fc.output(ctx, recv, 30*time.Second)
	if err != nil {
		// Not every end came: ask the receiver for what it has.
		fc.signal(ctx, recv, 10)
		out, _ = fc.output(ctx, recv, 10*time.Second)
	}
	rs, perr := msgload.ParseRecv(strings.NewReader(out))
	if perr != nil && res.Error == "" {
		res.Error = fmt.Sprintf("receiver %s: %v", recv.id, errors.Join(err, perr))
	}
	after := fc.stats(ctx, fwdNodes)
	res.counters(before, after)
	res.analyze(rs, sends, nodeOf, fwdNodes[0], warm, moves)
	if res.Error == "" && res.Failed() {
		res.Error = fmt.Sprintf("sent %d, delivered %d, received %d: lost %d, duplicated %d, out of order %d, refused %d",
			res.Sent, res.Delivered, res.Received, res.Lost, res.Duplicated, res.OutOfOrder, res.Refused)
	}
	if res.Error != "" {
		log.Warn("case failed", "err", res.Error)
	}
	return res
}

// nextNode is the node after at in fwdNodes, round robin.
func nextNode(at string) string {
	i := slices.Index(fwdNodes, at)
	return fwdNodes[(i+1)%len(fwdNodes)]
}

// heldFor counts the forwarding state the nodes hold for a job that runs
// elsewhere: links left, and the creating node's table entry.
func (fc *fwdCluster) heldFor(ctx context.Context, job string) (links, table int) {
	for _, n := range fwdNodes {
		v, err := fc.lc.Clients[n].WhereHere(ctx, job)
		if err != nil || v.Local {
			continue
		}
		if v.Link != nil {
			links++
		}
		if v.Table != nil {
			table++
		}
	}
	return links, table
}

// counters sets the router figures: deltas over the case.
func (r *FwdResult) counters(before, after map[string]ipc.Stats) {
	var hops int
	for n, a := range after {
		b := before[n]
		r.RouterDelivered += a.Delivered - b.Delivered
		hops += a.HopsDelivered - b.HopsDelivered
		r.Relayed += a.RelayedOrigin + a.RelayedLink - b.RelayedOrigin - b.RelayedLink
		r.TryLater += a.TryLater - b.TryLater
		r.Unknown += a.UnknownSent - b.UnknownSent
		r.Locates += a.Locates - b.Locates
		r.LocUpdates += a.LocUpdates - b.LocUpdates
		r.UpdateTimeouts += a.UpdateTimeout - b.UpdateTimeout
	}
	if r.RouterDelivered > 0 {
		r.HopsPerMsg = float64(hops) / float64(r.RouterDelivered)
	}
}

// analyze sets the counts and latencies from the summaries.
// Messages sent before warm (every sender ready) count, but are in no
// latency: the senders' jobs were starting beside them.
func (r *FwdResult) analyze(rs *msgload.RecvSummary, sends []*msgload.SendSummary, nodeOf map[uint32]string, start string, warm time.Time, moves []moveTimes) {
	r.MovesDone = len(moves)
	var freezes []time.Duration
	for _, m := range moves {
		if m.rep != nil {
			freezes = append(freezes, m.rep.FreezeTime)
		}
	}
	r.FreezeMs = ms(median(freezes))
	var first, last int64
	for _, s := range sends {
		r.Sent += s.Sent
		r.Delivered += s.Delivered
		for k, n := range s.Errors {
			r.Refused += n
			if r.RefusedBy == nil {
				r.RefusedBy = map[string]int{}
			}
			r.RefusedBy[k] += n
		}
		if s.FirstNs != 0 && (first == 0 || s.FirstNs < first) {
			first = s.FirstNs
		}
		last = max(last, s.LastNs)
	}
	for _, m := range moves {
		if m.freeze.UnixNano() < last {
			r.MovesInFlow++
		}
		mark := MoveMark{From: m.from, To: m.to, FreezeAt: msSince(first, m.freeze), CommitAt: msSince(first, m.commit),
			LearntAtMs: map[string]float64{}}
		if m.rep != nil {
			mark.FreezeMs = ms(m.rep.FreezeTime)
		}
		for _, n := range fwdNodes[1:] {
			mark.LearntAtMs[n] = -1
			if t, ok := m.learnt[n]; ok {
				mark.LearntAtMs[n] = ms(t.Sub(m.commit))
			}
		}
		r.Timeline = append(r.Timeline, mark)
	}
	if rs == nil {
		r.Lost = r.Sent
		return
	}
	seen := map[string]*msgload.SenderSeen{}
	for i := range rs.Senders {
		seen[rs.Senders[i].ID] = &rs.Senders[i]
	}
	var lat [nClasses][]int64
	var tail []int64
	for _, ss := range sends {
		s := seen[ss.ID]
		if s == nil {
			r.Lost += ss.Sent
			continue
		}
		r.Received += s.Received
		r.Lost += max(s.Lost, ss.Sent-s.Received)
		r.Duplicated += s.Duplicated
		r.OutOfOrder += s.OutOfOrder
		sn := nodeOf[s.Index]
		for i, l := range s.LatUs {
			if l < 0 {
				continue
			}
			t := time.Unix(0, s.BaseNs+s.SentUs[i]*1000)
			if t.Before(warm) {
				continue
			}
			class, local := classify(t, sn, start, moves)
			if local {
				r.Local++
				continue
			}
			lat[class] = append(lat[class], l)
			if class == classType3 && len(moves) > 0 && t.After(moves[len(moves)-1].commit) {
				tail = append(tail, l)
			}
		}
	}
	for k := range lat {
		r.Types[k] = latencyOf(lat[k])
	}
	r.Type3Last = latencyOf(tail)
	if span := time.Duration(last - first); span > 0 {
		r.MsgsPerSec = float64(r.Received) / span.Seconds()
	}
}

func msSince(base int64, t time.Time) float64 {
	return ms(t.Sub(time.Unix(0, base)))
}
