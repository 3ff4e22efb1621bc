package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"ferry/internal/ipc"
	"ferry/internal/msgload"
)

// The drawback rows: what still gets through when a node the mechanism
// leans on is down. Each row has a cluster of its own whose nodes all
// default to the row's mechanism (a node that cannot ask a job's
// creating node for the job's mechanism falls back to its own). The
// receiver starts on n1 and moves along route while a first sender on
// the warm node sends; that one stops, the stopped node goes down (its
// daemon ends without a word, as a machine that fails), and two senders
// start: one on the warm node (which knows where the receiver is) and
// one on the cold node (which never sent to it). They send for
// drawbackFor; each message is delivered or, after the node's deadline
// (5 s), refused as unreachable.
type drawbackSpec struct {
	mech       ipc.Mechanism
	role       string   // "origin" or "link"
	route      []string // the receiver's nodes, from n1
	stop       string
	warm, cold string
}

var drawbackRows = []drawbackSpec{
	{ipc.Origin, "origin", []string{"n1", "n2"}, "n1", "n3", "n4"},
	{ipc.Auto, "origin", []string{"n1", "n2"}, "n1", "n3", "n4"},
	{ipc.Link, "link", []string{"n1", "n2", "n3"}, "n2", "n1", "n4"},
	{ipc.Auto, "link", []string{"n1", "n2", "n3"}, "n2", "n1", "n4"},
}

const drawbackFor = 2 * time.Second

func runDrawback(ctx context.Context, cfg *ForwardingConfig, d drawbackSpec) Drawback {
	row := Drawback{Mechanism: d.mech.String(), Stopped: d.stop, Role: d.role, Route: strings.Join(d.route, " → "),
		Warm: DrawbackSide{Node: d.warm}, Cold: DrawbackSide{Node: d.cold}}
	fail := func(err error) Drawback {
		row.Error = err.Error()
		cfg.Log.Warn("drawback row failed", "mechanism", row.Mechanism, "stopped", d.stop, "err", err)
		return row
	}
	fc, err := startFwdCluster(ctx, cfg, d.mech.String(), fwdNodes)
	if err != nil {
		return fail(err)
	}
	defer fc.close()
	recv, err := fc.startJob(ctx, d.route[0], []string{cfg.Exe, "msgload", "recv", "--senders", "3"}, d.mech.String())
	if err != nil {
		return fail(err)
	}
	send := func(at string, index int) (*fwdJob, error) {
		return fc.startJob(ctx, at, msgloadSend(cfg.Exe, recv.msgID, cfg.Rate, 0, index), "")
	}
	w0, err := send(d.warm, 1)
	if err != nil {
		return fail(err)
	}
	time.Sleep(cfg.Lead)
	for _, to := range d.route[1:] {
		if _, err := fc.move(ctx, recv, to, cfg.Modes[0], d.mech, nil); err != nil {
			return fail(err)
		}
		time.Sleep(cfg.Dwell)
	}
	// sum stops the senders js, all at once, and collects their
	// summaries (each waits for its messages' outcomes).
	sum := func(js ...*fwdJob) ([]*msgload.SendSummary, error) {
		for _, j := range js {
			if err := fc.signal(ctx, j, 10); err != nil {
				return nil, err
			}
		}
		var out []*msgload.SendSummary
		for _, j := range js {
			o, err := fc.output(ctx, j, 2*time.Minute)
			ss, perr := msgload.ParseSend(strings.NewReader(o))
			if perr != nil {
				return nil, fmt.Errorf("sender %s: %w", j.id, errors.Join(err, perr))
			}
			out = append(out, ss)
		}
		return out, nil
	}
	first, err := sum(w0)
	if err != nil {
		return fail(fmt.Errorf("first sender: %w", err))
	}
	s0 := first[0]
	if s0.Delivered != s0.Sent {
		return fail(fmt.Errorf("before the stop: %d of %d delivered", s0.Delivered, s0.Sent))
	}
	if err := fc.lc.StopNode(d.stop); err != nil {
		return fail(err)
	}
	w, err := send(d.warm, 2)
	if err != nil {
		return fail(err)
	}
	c, err := send(d.cold, 3)
	if err != nil {
		return fail(err)
	}
	time.Sleep(drawbackFor)
	after, err := sum(w, c)
	if err != nil {
		return fail(err)
	}
	for i, side := range []*DrawbackSide{&row.Warm, &row.Cold} {
		side.Sent, side.Delivered, side.Errors = after[i].Sent, after[i].Delivered, after[i].Errors
	}
	sums := append(first, after...)
	out, err := fc.output(ctx, recv, 10*time.Second)
	if err != nil {
		// Ends that were refused never came: ask for what did.
		fc.signal(ctx, recv, 10)
		out, _ = fc.output(ctx, recv, 10*time.Second)
	}
	rs, err := msgload.ParseRecv(strings.NewReader(out))
	if err != nil {
		return fail(fmt.Errorf("receiver: %w", err))
	}
	seen := map[string]*msgload.SenderSeen{}
	for i := range rs.Senders {
		seen[rs.Senders[i].ID] = &rs.Senders[i]
	}
	for _, ss := range sums {
		got := 0
		if s := seen[ss.ID]; s != nil {
			got = s.Received
			row.Duplicated += s.Duplicated
		}
		// Delivered but never received is lost; received though refused
		// would be as wrong: both count.
		row.Lost += max(ss.Delivered-got, got-ss.Delivered, 0)
	}
	return row
}

// String names the row: "origin with n1 (its origin) stopped".
func (d Drawback) String() string {
	return d.Mechanism + " with " + d.Stopped + " (" + d.Role + ") stopped"
}

func pct(f float64) string { return strconv.FormatFloat(100*f, 'f', 0, 64) + "%" }
