package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"ferry/internal/ipc"
	"ferry/internal/migrate"
	"ferry/internal/msgload"
)

// The partner rows: what update's location updates add to the freeze.
// At the commit a job under update tells the node of every partner (every
// node a message to the job came from, counted once per node) its new
// location and waits for their acknowledgements, at most
// ipc.Config.UpdateWait, inside the freeze. The rows have a cluster of
// their own, Partners+2 nodes: the receiver (`ferry msgload recv`) moves
// back and forth between n1 and n2, which run no sender, while a sender
// on each of P of the other nodes sends steadily, so that every move has
// exactly P partner nodes to tell (the source and the destination are
// never told). Each partner count is run under link (no updates) and
// under update; a row's figures, per move from the migration's report,
// are the freeze (FreezeTime) and its "messages" step (the source node's
// handoff of the job's messages: Commit → the router's Handoff, which
// under update waits for the acknowledgements). The cost of the updates
// is update's median less link's, for the same partners.

const (
	defaultPartners = 10
	// partnerTarget: `update` with defaultPartners partners adds at most
	// this to the freeze.
	partnerTarget = time.Millisecond
	// routerUpdateWait is the nodes' bound on that wait (ipc.Config's
	// default UpdateWait, which node.StartLocal's nodes keep).
	routerUpdateWait = 50 * time.Millisecond
)

// PartnerReport is the partner rows' outcome.
type PartnerReport struct {
	Nodes  int     `json:"nodes"`   // the rows' cluster
	StartS float64 `json:"start_s"` // its start (node.StartLocal), seconds
	Rate   float64 `json:"rate_per_sender"`
	Moves  int     `json:"moves"`
	// UpdateWaitMs is the router's bound on the wait for the partners.
	UpdateWaitMs float64       `json:"update_wait_ms"`
	Rows         []PartnerRow  `json:"rows,omitempty"`
	Added        []PartnerCost `json:"added,omitempty"`
	// Error: the cluster could not be had (no rows).
	Error string `json:"error,omitempty"`
}

// PartnerRow is one mechanism with one number of partner nodes.
type PartnerRow struct {
	Mechanism string `json:"mechanism"`
	Partners  int    `json:"partners"` // sender nodes, each a partner of the receiver
	Moves     int    `json:"moves"`
	MovesDone int    `json:"moves_done"`
	Error     string `json:"error,omitempty"`
	// Per move, from the migration's report: the freeze and the
	// "messages" step, ms.
	FreezesMs  []float64 `json:"freezes_ms"`
	MessagesMs []float64 `json:"messages_ms"`
	// Medians over the moves, and the slowest messages step.
	FreezeMs      float64 `json:"freeze_p50_ms"`
	MessagesP50Ms float64 `json:"messages_p50_ms"`
	MessagesMaxMs float64 `json:"messages_max_ms"`
	// From the nodes' router counters over the row: location updates
	// sent, commits that went ahead without every acknowledgement.
	LocUpdates     int `json:"loc_updates"`
	UpdateTimeouts int `json:"update_timeouts"`
	// The senders' messages, as in FwdResult.
	Sent       int `json:"sent"`
	Delivered  int `json:"delivered"`
	Received   int `json:"received"`
	Lost       int `json:"lost"`
	Duplicated int `json:"duplicated"`
	OutOfOrder int `json:"out_of_order"`
	Refused    int `json:"refused"`
	// RefusedBy: the refusals by kind (msgload.ErrKind).
	RefusedBy map[string]int `json:"refused_by,omitempty"`
}

// Failed reports whether the row failed or a message was lost,
// duplicated, out of order or refused.
func (r *PartnerRow) Failed() bool {
	return r.Error != "" || r.MovesDone != r.Moves || r.Lost+r.Duplicated+r.OutOfOrder+r.Refused > 0 || r.Received != r.Sent
}

// PartnerCost is what update adds over link for one number of partners:
// differences of medians, ms.
type PartnerCost struct {
	Partners   int     `json:"partners"`
	FreezeMs   float64 `json:"freeze_ms"`
	MessagesMs float64 `json:"messages_ms"`
	// MessagesVsNoneMs: update's messages step over update's with no
	// partner (0: no such row).
	MessagesVsNoneMs float64 `json:"messages_vs_none_ms"`
}

// partnerCounts are the partner numbers the rows run, up to n.
func partnerCounts(n int) []int {
	var out []int
	for _, k := range []int{0, 1, 3, n} {
		if k <= n && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// partnerNodes are the rows' cluster: n1 and n2 for the receiver, one
// node per partner.
func partnerNodes(partners int) []string {
	ns := make([]string, partners+2)
	for i := range ns {
		ns[i] = "n" + strconv.Itoa(i+1)
	}
	return ns
}

// runPartners runs the partner rows on a cluster of their own (cfg with
// its defaults set).
func runPartners(ctx context.Context, cfg *ForwardingConfig) (*PartnerReport, error) {
	nodes := partnerNodes(cfg.Partners)
	rep := &PartnerReport{Nodes: len(nodes), Rate: cfg.PartnerRate, Moves: cfg.PartnerMoves,
		UpdateWaitMs: ms(routerUpdateWait)}
	fmt.Fprintf(cfg.Progress, "partner rows: starting nodes n1..n%d\n", len(nodes))
	start := time.Now()
	fc, err := startFwdCluster(ctx, cfg, "", nodes)
	if err != nil {
		return nil, err
	}
	defer fc.close()
	rep.StartS = time.Since(start).Seconds()
	for _, p := range partnerCounts(cfg.Partners) {
		for _, m := range []ipc.Mechanism{ipc.Link, ipc.Update} {
			fmt.Fprintf(cfg.Progress, "partners: %s, %d partner nodes, %d moves\n", m, p, cfg.PartnerMoves)
			row := fc.runPartnerRow(ctx, m, p)
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			rep.Rows = append(rep.Rows, row)
		}
	}
	rep.Added = partnerCosts(rep.Rows)
	return rep, nil
}

// runPartnerRow runs one row: the receiver under mech on n1, a sender on
// each of n3..n(p+2), cfg.PartnerMoves moves between n1 and n2.
func (fc *fwdCluster) runPartnerRow(ctx context.Context, mech ipc.Mechanism, p int) PartnerRow {
	cfg := fc.cfg
	row := PartnerRow{Mechanism: mech.String(), Partners: p, Moves: cfg.PartnerMoves}
	log := cfg.Log.With("partners", p, "mechanism", mech.String())
	home, away := fc.nodes[0], fc.nodes[1]
	// The senders' ends, and one the bench sends after the moves (a row
	// with no sender ends so too).
	recv, err := fc.startJob(ctx, home, []string{cfg.Exe, "msgload", "recv", "--senders", strconv.Itoa(p + 1)}, mech.String())
	if err != nil {
		row.Error = err.Error()
		return row
	}
	var senders []*fwdJob
	for i := range p {
		s, err := fc.startJob(ctx, fc.nodes[2+i], msgloadSend(cfg.Exe, recv.msgID, cfg.PartnerRate, 0, i+1), "")
		if err != nil {
			row.Error = err.Error()
			fc.kill(ctx, append(senders, recv)...)
			return row
		}
		senders = append(senders, s)
	}
	pause := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-ctx.Done():
			return false
		}
	}
	// Every sender has sent by the end of the lead: its node is a
	// partner.
	before := fc.stats(ctx, fc.nodes)
	if !pause(cfg.Lead) {
		fc.kill(ctx, append(senders, recv)...)
		return row
	}
	for i := range cfg.PartnerMoves {
		to := away
		if recv.at == away {
			to = home
		}
		mt, err := fc.move(ctx, recv, to, migrate.Freeze, mech, nil)
		if err != nil {
			row.Error = err.Error()
			log.Warn("move failed", "err", err)
			break
		}
		row.MovesDone++
		row.FreezesMs = append(row.FreezesMs, ms(mt.rep.FreezeTime))
		if d, ok := phaseTook(mt.rep, "messages"); ok {
			row.MessagesMs = append(row.MessagesMs, ms(d))
		}
		if i < cfg.PartnerMoves-1 && !pause(cfg.Dwell) {
			break
		}
	}
	pause(cfg.Dwell)
	after := fc.stats(ctx, fc.nodes)
	for n, a := range after {
		b := before[n]
		row.LocUpdates += a.LocUpdates - b.LocUpdates
		row.UpdateTimeouts += a.UpdateTimeout - b.UpdateTimeout
	}
	if row.MovesDone > 0 && len(row.MessagesMs) < row.MovesDone && row.Error == "" {
		row.Error = fmt.Sprintf("%d of %d migration reports have no messages step", row.MovesDone-len(row.MessagesMs), row.MovesDone)
	}
	row.FreezeMs = medianFloat(row.FreezesMs)
	row.MessagesP50Ms = medianFloat(row.MessagesMs)
	if len(row.MessagesMs) > 0 {
		row.MessagesMaxMs = slices.Max(row.MessagesMs)
	}

	for _, s := range senders {
		if err := fc.signal(ctx, s, 10); err != nil && row.Error == "" { // SIGUSR1: stop and end
			row.Error = fmt.Sprintf("stop sender %s: %v", s.id, err)
		}
	}
	var sends []*msgload.SendSummary
	for _, s := range senders {
		out, err := fc.output(ctx, s, 2*time.Minute)
		ss, perr := msgload.ParseSend(strings.NewReader(out))
		if err = errors.Join(err, perr); err != nil && row.Error == "" {
			row.Error = fmt.Sprintf("sender %s: %v", s.id, err)
		}
		if ss != nil {
			sends = append(sends, ss)
		}
	}
	end := msgload.Payload{Kind: msgload.KindEnd}.Append(nil, 0)
	if _, err := fc.lc.Clients[recv.at].Send(ctx, recv.msgID, end); err != nil && row.Error == "" {
		row.Error = fmt.Sprintf("end the receiver: %v", err)
	}
	out, err := fc.output(ctx, recv, 30*time.Second)
	if err != nil {
		fc.signal(ctx, recv, 10) // not every end came: what has it?
		out, _ = fc.output(ctx, recv, 10*time.Second)
	}
	rs, perr := msgload.ParseRecv(strings.NewReader(out))
	if perr != nil && row.Error == "" {
		row.Error = fmt.Sprintf("receiver %s: %v", recv.id, errors.Join(err, perr))
	}
	row.count(rs, sends)
	if row.Error == "" && row.Failed() {
		row.Error = fmt.Sprintf("sent %d, delivered %d, received %d: lost %d, duplicated %d, out of order %d, refused %d %v",
			row.Sent, row.Delivered, row.Received, row.Lost, row.Duplicated, row.OutOfOrder, row.Refused, row.RefusedBy)
	}
	if row.Error != "" {
		log.Warn("partner row failed", "err", row.Error)
	}
	return row
}

// count sets the message counts from the summaries.
func (r *PartnerRow) count(rs *msgload.RecvSummary, sends []*msgload.SendSummary) {
	seen := map[string]*msgload.SenderSeen{}
	if rs != nil {
		for i := range rs.Senders {
			seen[rs.Senders[i].ID] = &rs.Senders[i]
		}
	}
	for _, ss := range sends {
		r.Sent += ss.Sent
		r.Delivered += ss.Delivered
		for k, n := range ss.Errors {
			r.Refused += n
			if r.RefusedBy == nil {
				r.RefusedBy = map[string]int{}
			}
			r.RefusedBy[k] += n
		}
		s := seen[ss.ID]
		if s == nil {
			r.Lost += ss.Sent
			continue
		}
		r.Received += s.Received
		r.Lost += max(s.Lost, ss.Sent-s.Received)
		r.Duplicated += s.Duplicated
		r.OutOfOrder += s.OutOfOrder
	}
}

// phaseTook is the time of the report's step name.
func phaseTook(rep *migrate.Report, name string) (time.Duration, bool) {
	if rep == nil {
		return 0, false
	}
	for _, p := range rep.Phases {
		if p.Name == name {
			return p.Took, true
		}
	}
	return 0, false
}

// partnerCosts: per partner count with both rows, update less link.
func partnerCosts(rows []PartnerRow) []PartnerCost {
	find := func(m string, p int) *PartnerRow {
		for i := range rows {
			if r := &rows[i]; r.Mechanism == m && r.Partners == p && r.MovesDone > 0 && len(r.MessagesMs) > 0 {
				return r
			}
		}
		return nil
	}
	var out []PartnerCost
	for _, r := range rows {
		if r.Mechanism != ipc.Update.String() {
			continue
		}
		u, l := find(r.Mechanism, r.Partners), find(ipc.Link.String(), r.Partners)
		if u == nil || l == nil {
			continue
		}
		c := PartnerCost{Partners: r.Partners, FreezeMs: u.FreezeMs - l.FreezeMs, MessagesMs: u.MessagesP50Ms - l.MessagesP50Ms}
		if z := find(r.Mechanism, 0); z != nil && r.Partners > 0 {
			c.MessagesVsNoneMs = u.MessagesP50Ms - z.MessagesP50Ms
		}
		out = append(out, c)
	}
	return out
}

// partnerTargets: update with the most partners measured adds at most
// partnerTarget to the freeze, by its messages step (the freeze's only
// step that differs between the two mechanisms; the freezes' difference
// beside it), and every row's messages arrived once.
func partnerTargets(p *PartnerReport) []MigrateTarget {
	if p == nil {
		return nil
	}
	var ts []MigrateTarget
	most := -1
	for _, r := range p.Rows {
		most = max(most, r.Partners)
	}
	what := fmt.Sprintf("update, %d partner nodes: added to the freeze (messages step, update − link, medians)", most)
	t := MigrateTarget{Target: Target{What: what, Want: fmt.Sprintf("<= %.0f ms", ms(partnerTarget))}}
	t.Got = "not measured"
	if p.Error != "" {
		t.Got += ": " + p.Error
	}
	for _, c := range p.Added {
		if c.Partners == most && most > 0 {
			t.Got = fmt.Sprintf("%.2f ms (freeze %+.1f ms, update − link)", c.MessagesMs, c.FreezeMs)
			t.Met = c.MessagesMs <= ms(partnerTarget)
		}
	}
	ts = append(ts, t)
	var bad []string
	lost, dup := 0, 0
	for _, r := range p.Rows {
		lost += r.Lost
		dup += r.Duplicated
		if r.Failed() {
			bad = append(bad, fmt.Sprintf("%s with %d partners", r.Mechanism, r.Partners))
		}
	}
	t = MigrateTarget{Target: Target{What: fmt.Sprintf("every partner row (%d): lost, duplicated, out of order, refused", len(p.Rows)),
		Want: "0", Got: fmt.Sprintf("lost %d, duplicated %d", lost, dup), Met: len(bad) == 0 && p.Error == ""}}
	if len(bad) > 0 {
		t.Got += "; failed: " + strings.Join(bad, "; ")
	}
	ts = append(ts, t)
	return ts
}

// writeText writes the partner rows and the costs.
func (p *PartnerReport) writeText(out io.Writer) error {
	fmt.Fprintf(out, "\nthe freeze cost of update's location updates: %d nodes (started in %.1f s); a receiver moved n1 ↔ n2 (freeze)\n"+
		"%d times per row while a sender on each of P other nodes sends at %.0f msg/s: P partner nodes, which update tells\n"+
		"at each commit, waiting for their acks (at most %.0f ms); link tells none. Medians over the moves, ms; messages is the\n"+
		"report's step around the source's handoff of the job's messages (Commit → the router's Handoff)\n",
		p.Nodes, p.StartS, p.Moves, p.Rate, p.UpdateWaitMs)
	if p.Error != "" {
		fmt.Fprintf(out, "  failed: %s\n", p.Error)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mechanism\tpartners\tmoves\tfreeze\tfreeze min–max\tmessages\tmessages max\tupdates/move\tupdate timeouts\tsent\treceived\tlost\tdup\t")
	for _, r := range p.Rows {
		if r.MovesDone == 0 {
			fmt.Fprintf(tw, "%s\t%d\t0 of %d\tfailed\t\t\t\t\t\t\t\t\t\t\n", r.Mechanism, r.Partners, r.Moves)
			continue
		}
		moves := strconv.Itoa(r.MovesDone)
		if r.MovesDone != r.Moves {
			moves = fmt.Sprintf("%d of %d", r.MovesDone, r.Moves)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.1f\t%.0f–%.0f\t%.2f\t%.2f\t%.1f\t%d\t%d\t%d\t%d\t%d\t\n", r.Mechanism, r.Partners, moves,
			r.FreezeMs, slices.Min(r.FreezesMs), slices.Max(r.FreezesMs), r.MessagesP50Ms, r.MessagesMaxMs,
			float64(r.LocUpdates)/float64(r.MovesDone), r.UpdateTimeouts,
			r.Sent, r.Received, r.Lost, r.Duplicated)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range p.Rows {
		if r.Error != "" {
			fmt.Fprintf(out, "  %s with %d partners failed: %s\n", r.Mechanism, r.Partners, r.Error)
		}
	}
	if len(p.Added) == 0 {
		return nil
	}
	fmt.Fprintf(out, "added by update's location updates, ms: update − link with the same partners, medians, of the messages step\n"+
		"(the verdict's figure: the freeze's only step that differs) and of the freeze (within its spread above); and update's\n"+
		"messages step over update's with no partner (the updates and the senders' messages held in the freeze)\n")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "partners\tmessages step\tfreeze\tmessages vs 0 partners\tunder 1 ms\t")
	for _, c := range p.Added {
		under := "yes"
		if c.MessagesMs > ms(partnerTarget) {
			under = "no"
		}
		fmt.Fprintf(tw, "%d\t%+.2f\t%+.1f\t%s\t%s\t\n", c.Partners, c.MessagesMs, c.FreezeMs,
			orDash(c.Partners > 0, "%+.2f", c.MessagesVsNoneMs), under)
	}
	return tw.Flush()
}
