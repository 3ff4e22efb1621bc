package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
)

// The goals for forwarding: no message lost or duplicated in any case
// (and in the large run); and after type3Moves moves, type 3's median
// latency within type3VsNever times that of the same mechanism never
// moved, for the mechanisms that shorten or update the path.
const (
	type3Moves   = 10
	type3VsNever = 1.2
)

var type3Mechanisms = []string{"link", "update", "auto"}

// forwardingTargets evaluates the goals whose cases the run had.
func forwardingTargets(r *ForwardingReport) []MigrateTarget {
	var ts []MigrateTarget
	for _, m := range type3Mechanisms {
		for _, c := range r.Cases {
			if c.Mechanism != m || c.Moves != type3Moves {
				continue
			}
			what := fmt.Sprintf("%s, %d moves (%s): median of type 3 after the last move / never moved", m, c.Moves, c.Mode)
			why := ""
			if c.Type3Last.N == 0 {
				why = "not measured: " + c.Error
			}
			t := atMost(what, fmt.Sprintf("<= %.1fx", type3VsNever), c.LastVsNever, type3VsNever,
				fmt.Sprintf("%.2fx (%.2f ms / %.2f ms; all type 3 of the case %.2fx)", c.LastVsNever, c.Type3Last.P50Us/1e3,
					ratioBase(c.Type3Last.P50Us, c.LastVsNever)/1e3, c.Type3VsNever), why)
			if why == "" && c.LastVsNever == 0 {
				t.Got = "no 0-move case to compare with"
			}
			ts = append(ts, t)
		}
	}
	lost, dup, bad := 0, 0, []string{}
	all := slices.Clone(r.Cases)
	if r.Big != nil {
		all = append(all, *r.Big)
	}
	for _, c := range all {
		lost += c.Lost
		dup += c.Duplicated
		if c.Failed() {
			bad = append(bad, c.String())
		}
	}
	t := MigrateTarget{Target: Target{What: fmt.Sprintf("every case (%d): lost, duplicated, out of order, refused", len(all)),
		Want: "0", Got: fmt.Sprintf("lost %d, duplicated %d", lost, dup), Met: len(bad) == 0}}
	if len(bad) > 0 {
		t.Got += "; failed: " + strings.Join(bad, "; ")
	}
	ts = append(ts, t)
	return append(ts, partnerTargets(r.Partners)...)
}

// ratioBase is the denominator of a ratio: v / ratio.
func ratioBase(v, ratio float64) float64 {
	if ratio == 0 {
		return 0
	}
	return v / ratio
}

// WriteText writes the report: latencies by message type, then costs and
// state, the large run, the drawback rows and the targets.
func (r *ForwardingReport) WriteText(out io.Writer) error {
	fmt.Fprintf(out, "message forwarding across moves: %d nodes on loopback, mutual TLS; kernel %s, %d CPUs\n",
		len(fwdNodes), r.Kernel, r.CPUs)
	fmt.Fprintf(out, "receiver on n1 moved round robin (n1 → n2 → n3 → n4 → n1 …), a sender on each of n2..n4 at %.0f msg/s; "+
		"%.0f ms before the first move, %.0f ms between moves, %.0f ms after the last\n", r.Rate, r.LeadMs, r.DwellMs, r.TailMs)
	fmt.Fprintf(out, "limit: round trip %s → %s, %s over the nodes' kept-alive TLS link: p50 %.3f ms, p99 %.3f ms (%d samples)\n",
		r.RTT.From, r.RTT.To, r.RTT.Route, r.RTT.P50Us/1e3, r.RTT.P99Us/1e3, r.RTT.Samples)
	fmt.Fprintf(out, "\none-way latency, ms, p50/p99 (messages), by when a message was sent: before the first migration (never moved);\n"+
		"while the next migration prepared (preparing: destination, agents, precopy rounds); while the receiver was frozen (type 1);\n"+
		"after the commit while the sender's node still sent to the old location (type 2); after that (type 3). Messages from\n"+
		"a sender on the receiver's node then, and those sent before every sender was ready, are left out. Ratios of medians:\n"+
		"type 3 (all of the case, and those after the last move) over the RTT limit and over the same mechanism never moved\n")
	cases := r.Cases
	if r.Big != nil {
		cases = append(slices.Clone(cases), *r.Big)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mechanism\tmoves\tmode\tfreeze ms\tnever moved\tpreparing\ttype 1\ttype 2\ttype 3\tafter the last move\t"+
		"t3/RTT\tt3/never\tlast/RTT\tlast/never\t")
	for _, c := range cases {
		if c.MovesDone == 0 && c.Moves > 0 {
			fmt.Fprintf(tw, "%s\t%d\t%s\tfailed\t\t\t\t\t\t\t\t\t\t\t\n", c.Mechanism, c.Moves, c.Mode)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", c.Mechanism, movesCell(c), c.Mode,
			orDash(c.MovesDone > 0, "%.1f", c.FreezeMs), latCell(c.Types[classNever]), latCell(c.Types[classPrepare]),
			latCell(c.Types[classType1]), latCell(c.Types[classType2]), latCell(c.Types[classType3]), latCell(c.Type3Last),
			orDash(c.Type3VsRTT > 0, "%.2fx", c.Type3VsRTT), orDash(c.Type3VsNever > 0, "%.2fx", c.Type3VsNever),
			orDash(c.LastVsRTT > 0, "%.2fx", c.LastVsRTT), orDash(c.LastVsNever > 0, "%.2fx", c.LastVsNever))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nmessages and the nodes' router counters (summed over the nodes, over the case): hops per delivered message,\n"+
		"relayed by a creating or an old node, forwarding state held for the receiver at the end (links, creator's table)\n")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mechanism\tmoves\tsent\treceived\tlost\tdup\tout of order\trefused\tmsgs/s\thops/msg\trelayed\t"+
		"links\ttable\ttry-later\tunknown\tlocates\tupdates\t")
	for _, c := range cases {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.2f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", c.Mechanism, movesCell(c),
			c.Sent, c.Received, c.Lost, c.Duplicated, c.OutOfOrder, c.Refused, c.MsgsPerSec, c.HopsPerMsg, c.Relayed,
			c.Links, c.OriginTable, c.TryLater, c.Unknown, c.Locates, c.LocUpdates)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if b := r.Big; b != nil {
		fmt.Fprintf(out, "  large run (auto, the last row): %d messages across %d moves, %d of them while messages flowed\n",
			b.Sent, b.MovesDone, b.MovesInFlow)
	}
	for _, c := range cases {
		if c.Error != "" {
			fmt.Fprintf(out, "  %s failed: %s\n", c, c.Error)
		}
	}
	if len(r.Drawbacks) > 0 {
		fmt.Fprintf(out, "\na node down: the receiver moved along the route, then the node stopped (no goodbye); for %.0f s a sender on a\n"+
			"node that knew the receiver (warm) and one on a node that had never sent to it (cold); delivered / sent\n", drawbackFor.Seconds())
		tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mechanism\tstopped\troute\twarm sender\tcold sender\tlost\tdup\t")
		for _, d := range r.Drawbacks {
			if d.Error != "" {
				fmt.Fprintf(tw, "%s\t%s (%s)\t%s\tfailed\t\t\t\t\n", d.Mechanism, d.Stopped, d.Role, d.Route)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s (%s)\t%s\t%s\t%s\t%d\t%d\t\n", d.Mechanism, d.Stopped, d.Role, d.Route,
				sideCell(d.Warm), sideCell(d.Cold), d.Lost, d.Duplicated)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, d := range r.Drawbacks {
			if d.Error != "" {
				fmt.Fprintf(out, "  %s failed: %s\n", d, d.Error)
			}
		}
	}
	if r.Partners != nil {
		if err := r.Partners.writeText(out); err != nil {
			return err
		}
	}
	if len(r.Targets) > 0 {
		fmt.Fprintf(out, "\ntargets\n")
	}
	for _, t := range r.Targets {
		verdict := "pass"
		if !t.Met {
			verdict = "MISS"
		}
		fmt.Fprintf(out, "  %s: %s (target %s): %s\n", t.What, t.Got, t.Want, verdict)
	}
	return nil
}

// movesCell is the moves made, and asked if fewer.
func movesCell(c FwdResult) string {
	if c.MovesDone == c.Moves {
		return fmt.Sprint(c.Moves)
	}
	return fmt.Sprintf("%d of %d", c.MovesDone, c.Moves)
}

// latCell is "p50/p99 (n)" in ms, or "-".
func latCell(l Latency) string {
	if l.N == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f/%.2f (%d)", l.P50Us/1e3, l.P99Us/1e3, l.N)
}

func sideCell(s DrawbackSide) string {
	return fmt.Sprintf("%s %d/%d %s", s.Node, s.Delivered, s.Sent, pct(s.Fraction()))
}
