package demo

import (
	"bytes"
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
	"ferry/internal/msgload"
	"ferry/internal/node"
)

// The demo's second part: a producer and a consumer of messages
// (`ferry msgload send` and `recv`), the consumer moved while messages
// flow, once per forwarding mechanism. The consumer checks every
// sequence number; the table shows what each mechanism cost.

// msgRate is the producer's messages per second; msgLead and msgTail
// the flow before and after the move.
const (
	msgRate = 200
	msgLead = 400 * time.Millisecond
	msgTail = 400 * time.Millisecond
)

// msgRow is one mechanism's outcome.
type msgRow struct {
	mech                  string
	route                 string
	freeze                time.Duration
	sent, received        int
	lost, dup, outOfOrder int
	p50, p99, maxLat      time.Duration
	hops                  float64
	relayed               int
	err                   error
}

// runMessages runs the pair once per mechanism on lc: the consumer
// starts on n1 with the mechanism, the producer on n3, and the consumer
// moves to n2 (freeze mode).
func runMessages(ctx context.Context, lc *node.Local, exe string, out io.Writer) error {
	fmt.Fprintf(out, "\nmessages: a consumer (checks every sequence number) on n1, a producer on n3 sending %d/s;\n"+
		"the consumer moved n1 → n2 while they flow, once per forwarding mechanism\n", msgRate)
	var rows []msgRow
	for _, m := range ipc.Mechanisms {
		r := messagesOnce(ctx, lc, exe, m.String())
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.err != nil {
			fmt.Fprintf(out, "%-7s failed: %v\n", r.mech, r.err)
		} else {
			fmt.Fprintf(out, "%-7s %s: %d messages, the consumer frozen %.1f ms; lost %d, duplicated %d\n",
				r.mech, r.route, r.received, msf(r.freeze), r.lost, r.dup)
		}
		rows = append(rows, r)
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "forwarding\tsent\treceived\tlost\tdup\tout of order\tlatency p50 ms\tp99 ms\tmax ms\thops/msg\trelayed\t")
	var failed error
	for _, r := range rows {
		if r.err != nil {
			fmt.Fprintf(tw, "%s\tfailed\t\t\t\t\t\t\t\t\t\t\n", r.mech)
			failed = errors.Join(failed, fmt.Errorf("messages under %s: %w", r.mech, r.err))
			continue
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.1f\t%.2f\t%d\t\n", r.mech, r.sent, r.received, r.lost, r.dup,
			r.outOfOrder, msf(r.p50), msf(r.p99), msf(r.maxLat), r.hops, r.relayed)
	}
	tw.Flush()
	if failed == nil {
		fmt.Fprintf(out, "\nevery message arrived once and in order under every mechanism: ok\n"+
			"(latency: from the producer's send to the consumer's receive, the freeze included; hops: network\n"+
			"transmissions per delivered message; relayed: by the creating node or the old one)\n")
	}
	return failed
}

func messagesOnce(ctx context.Context, lc *node.Local, exe, mech string) msgRow {
	r := msgRow{mech: mech, route: "n1 → n2"}
	statsOf := func() map[string]ipc.Stats {
		out := map[string]ipc.Stats{}
		for id, c := range lc.Clients {
			if st, err := c.Stats(ctx); err == nil {
				out[id] = st.Msgs
			}
		}
		return out
	}
	before := statsOf()
	cons, err := startMsgJob(ctx, lc, "n1", []string{exe, "msgload", "recv", "--senders", "1"}, mech)
	if err != nil {
		r.err = err
		return r
	}
	prod, err := startMsgJob(ctx, lc, "n3", []string{exe, "msgload", "send", "--to", cons.msgID,
		"--rate", strconv.Itoa(msgRate), "--count", "0", "--index", "1"}, "")
	if err != nil {
		lc.Clients[cons.at].Signal(ctx, cons.id, 9)
		r.err = err
		return r
	}
	time.Sleep(msgLead)
	rep, err := lc.Clients["n1"].Migrate(ctx, cons.id, node.MigrateRequest{To: "n2", Mode: "freeze"}, nil)
	if err == nil && (rep == nil || !rep.Committed) {
		err = errors.New("the migration did not commit")
	}
	if err != nil {
		r.err = fmt.Errorf("move the consumer: %w", err)
	} else {
		cons.at, r.freeze = "n2", rep.FreezeTime
	}
	time.Sleep(msgTail)
	lc.Clients[prod.at].Signal(ctx, prod.id, 10) // SIGUSR1: stop, send the end, report
	pout, perr := jobOutput(ctx, lc, prod, time.Minute)
	cout, cerr := jobOutput(ctx, lc, cons, 30*time.Second)
	if r.err != nil {
		return r
	}
	ps, err := msgload.ParseSend(strings.NewReader(pout))
	if err != nil {
		r.err = errors.Join(perr, err)
		return r
	}
	cs, err := msgload.ParseRecv(strings.NewReader(cout))
	if err != nil || len(cs.Senders) != 1 {
		r.err = errors.Join(cerr, err, fmt.Errorf("consumer: %s", strings.TrimSpace(cout)))
		return r
	}
	s := cs.Senders[0]
	r.sent, r.received = ps.Sent, s.Received
	r.lost, r.dup, r.outOfOrder = max(s.Lost, ps.Sent-s.Received), s.Duplicated, s.OutOfOrder
	var lat []int64
	for _, l := range s.LatUs {
		if l >= 0 {
			lat = append(lat, l)
		}
	}
	slices.Sort(lat)
	if n := len(lat); n > 0 {
		us := func(p float64) time.Duration {
			return time.Duration(lat[min(n-1, max(0, int(p*float64(n)+0.5)-1))]) * time.Microsecond
		}
		r.p50, r.p99, r.maxLat = us(0.5), us(0.99), time.Duration(lat[n-1])*time.Microsecond
	}
	after := statsOf()
	var delivered, hops int
	for id, a := range after {
		b := before[id]
		delivered += a.Delivered - b.Delivered
		hops += a.HopsDelivered - b.HopsDelivered
		r.relayed += a.RelayedOrigin + a.RelayedLink - b.RelayedOrigin - b.RelayedLink
	}
	if delivered > 0 {
		r.hops = float64(hops) / float64(delivered)
	}
	if r.lost+r.dup+r.outOfOrder > 0 || ps.Delivered != ps.Sent {
		r.err = fmt.Errorf("sent %d, delivered %d, received %d: lost %d, duplicated %d, out of order %d",
			ps.Sent, ps.Delivered, s.Received, r.lost, r.dup, r.outOfOrder)
	}
	return r
}

// msgJob is a msgload job.
type msgJob struct{ id, msgID, at string }

// startMsgJob runs cmd on node at and waits for its "ready" line.
func startMsgJob(ctx context.Context, lc *node.Local, at string, cmd []string, forwarding string) (*msgJob, error) {
	info, err := lc.Clients[at].Run(ctx, node.RunRequest{Node: at, Cmd: cmd, Forwarding: forwarding})
	if err != nil {
		return nil, fmt.Errorf("start msgload %s: %w", cmd[2], err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		var o, e bytes.Buffer
		ji, err := lc.Clients[at].Logs(ctx, info.ID, false, &o, &e)
		if err != nil {
			return nil, err
		}
		if id := msgload.ReadyID(o.String()); id != "" {
			return &msgJob{id: info.ID, msgID: id, at: at}, nil
		}
		if ji != nil && ji.State != "running" && ji.State != "starting" || time.Now().After(deadline) {
			return nil, fmt.Errorf("msgload %s (job %s) not ready: %s%s", cmd[2], info.ID, o.String(), e.String())
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// jobOutput follows the job's output on its node until it ends.
func jobOutput(ctx context.Context, lc *node.Local, j *msgJob, limit time.Duration) (string, error) {
	lctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var o, e bytes.Buffer
	if _, err := lc.Clients[j.at].Logs(lctx, j.id, true, &o, &e); err != nil {
		return o.String(), fmt.Errorf("job %s: %w %s", j.id, err, e.String())
	}
	return o.String(), nil
}
