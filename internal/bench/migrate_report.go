package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"

	"ferry/internal/migrate"
)

// The goals set for migration on a 2-core machine, all of 1 GiB processes:
//   - freeze mode moves an idle one in at most freezeVsPush times the time
//     to push its size through loopback TCP into fresh memory;
//   - precopy freezes one dirtying precopyRate MiB/s for at most
//     precopyFreezeMs;
//   - postcopy has it running on the destination within postcopyRunningMs
//     of the start, at most postcopyGrowth times later than a 64 MiB one,
//     and its push ends within postcopyPushVsFreeze times the freeze-mode
//     move of an idle one (at every rate, random writes too).
const (
	targetSmallMiB       = 64
	targetLargeMiB       = 1024
	freezeVsPush         = 1.5
	precopyRate          = 16
	precopyFreezeMs      = 20
	postcopyRunningMs    = 20
	postcopyGrowth       = 2.0
	postcopyPushVsFreeze = 1.5
)

// MigrateTarget is one goal and whether this run met it. Ratio is the
// figure over the bound it must not exceed: met when at most 1.
type MigrateTarget struct {
	Target
	Ratio float64 `json:"ratio"`
}

// find returns the result of case c, if the run had it.
func (r *MigrateReport) find(c MigrateCase) *MigrateResult {
	for i := range r.Sizes {
		for k := range r.Sizes[i].Cases {
			if r.Sizes[i].Cases[k].MigrateCase == c {
				return &r.Sizes[i].Cases[k]
			}
		}
	}
	return nil
}

func (r *MigrateReport) size(mib int) *MigrateSize {
	for i := range r.Sizes {
		if r.Sizes[i].SizeMiB == mib {
			return &r.Sizes[i]
		}
	}
	return nil
}

// atMost is a target "figure <= bound", figures in ms. A figure of zero
// (or none, when its case failed) is not met.
func atMost(what, want string, figure, bound float64, got string, missing string) MigrateTarget {
	t := MigrateTarget{Target: Target{What: what, Want: want, Got: got}}
	switch {
	case missing != "":
		t.Got = missing
	case figure <= 0:
		t.Got = "not reported"
	case bound <= 0:
		t.Got = "no bound measured"
	default:
		t.Ratio = figure / bound
		t.Met = t.Ratio <= 1
	}
	return t
}

// missing says why a figure of res is not there, or "" when it is.
func missing(res *MigrateResult) string {
	if res.Moves == 0 {
		return "not measured: " + res.Error
	}
	return ""
}

// migrateTargets evaluates the goals whose cases the run had.
func migrateTargets(r *MigrateReport) []MigrateTarget {
	var ts []MigrateTarget
	large := r.size(targetLargeMiB)
	if large == nil {
		return nil
	}
	idle := r.find(MigrateCase{SizeMiB: targetLargeMiB, RateMiBps: 0, Mode: migrate.Freeze})
	if idle != nil {
		push := large.Limits.PushFreshMs
		ts = append(ts, atMost(
			fmt.Sprintf("freeze %s idle: move / push %s through loopback TCP into fresh memory",
				sizeName(targetLargeMiB), sizeName(targetLargeMiB)),
			fmt.Sprintf("<= %.1fx", freezeVsPush), idle.TotalMs, freezeVsPush*push,
			fmt.Sprintf("%.2fx (%.1f ms / %.1f ms)", ratio(idle.TotalMs, push), idle.TotalMs, push), missing(idle)))
	}
	if pre := r.find(MigrateCase{SizeMiB: targetLargeMiB, RateMiBps: precopyRate, Mode: migrate.Precopy}); pre != nil {
		ts = append(ts, atMost(pre.String()+": freeze", fmt.Sprintf("<= %d ms", precopyFreezeMs),
			pre.FreezeMs, precopyFreezeMs, fmt.Sprintf("%.1f ms", pre.FreezeMs), missing(pre)))
	}
	for _, post := range large.Cases {
		if post.Mode != migrate.Postcopy {
			continue
		}
		ts = append(ts, atMost(post.String()+": running after", fmt.Sprintf("<= %d ms", postcopyRunningMs),
			post.RunningAfterMs, postcopyRunningMs, fmt.Sprintf("%.1f ms", post.RunningAfterMs), missing(&post)))
		small := post.MigrateCase
		small.SizeMiB = targetSmallMiB
		if s := r.find(small); s != nil {
			why := missing(&post)
			if why == "" {
				why = missing(s)
			}
			ts = append(ts, atMost(
				fmt.Sprintf("%s: running after / %s's", post, sizeName(targetSmallMiB)),
				fmt.Sprintf("<= %.1fx", postcopyGrowth), post.RunningAfterMs, postcopyGrowth*s.RunningAfterMs,
				fmt.Sprintf("%.2fx (%.1f ms / %.1f ms)", ratio(post.RunningAfterMs, s.RunningAfterMs), post.RunningAfterMs, s.RunningAfterMs),
				why))
		}
		if idle != nil {
			why := missing(&post)
			if why == "" {
				why = missing(idle)
			}
			ts = append(ts, atMost(
				fmt.Sprintf("%s: push ended / freeze-mode move of an idle %s", post, sizeName(targetLargeMiB)),
				fmt.Sprintf("<= %.1fx", postcopyPushVsFreeze), post.ResidualEndedMs, postcopyPushVsFreeze*idle.TotalMs,
				fmt.Sprintf("%.2fx (%.1f ms / %.1f ms)", ratio(post.ResidualEndedMs, idle.TotalMs), post.ResidualEndedMs, idle.TotalMs),
				why))
		}
	}
	return ts
}

// WriteText writes the report: a table of moves per size with the limits
// beneath it, failures, then the targets.
func (r *MigrateReport) WriteText(out io.Writer) error {
	fmt.Fprintf(out, "migration n1 ⇄ n2 on loopback, mutual TLS; kernel %s, %d CPUs, THP %s\n", r.Kernel, r.CPUs, r.THP)
	moves := "moves"
	if r.Repeat == 1 {
		moves = "move"
	}
	fmt.Fprintf(out, "medians of %d %s after a warm-up, alternating direction; the workload: 1 writing thread, "+
		"a line and at most one verification pass every %.0f ms; GB/s = 10^9 B/s\n", r.Repeat, moves, r.IntervalMs)
	for _, s := range r.Sizes {
		fmt.Fprintf(out, "\n%s\n", sizeName(s.SizeMiB))
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "mode\trate MiB/s\tfreeze ms\trunning after ms\ttotal ms\tcall ms\trestore ms\tsent MiB\t"+
			"rounds\tfaults\tpushed pages\tresidual ended ms\t")
		for _, c := range s.Cases {
			rate := fmt.Sprintf("%g", c.RateMiBps)
			if c.Random {
				rate += " random"
			}
			if c.Moves == 0 {
				fmt.Fprintf(tw, "%s\t%s\tfailed\t\t\t\t\t\t\t\t\t\t\n", c.Mode, rate)
				continue
			}
			fmt.Fprintf(tw, "%s\t%s\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t\n", c.Mode, rate,
				c.FreezeMs, c.RunningAfterMs, c.TotalMs, c.CallMs, c.RestoreMs, c.BytesSent/(1<<20),
				orDash(c.Mode == migrate.Precopy, "%.0f", c.Rounds), orDash(c.Mode == migrate.Postcopy, "%.0f", c.Faults),
				orDash(c.Mode == migrate.Postcopy, "%.0f", c.PushedPages), orDash(c.Mode == migrate.Postcopy, "%.1f", c.ResidualEndedMs))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for _, c := range s.Cases {
			if c.Failed() {
				fmt.Fprintf(out, "  %s @ %s failed", c.Mode, c.rateName())
				if c.Moves > 0 {
					fmt.Fprintf(out, " after %d counted moves", c.Moves)
				}
				fmt.Fprintf(out, ": %s\n", c.Error)
			}
		}
		l := s.Limits
		fmt.Fprintf(out, "  limits, %s each: loopback TCP %.2f GB/s, TLS 1.3 %.2f GB/s (%s); fill fresh memory, one thread:%s\n",
			sizeName(int(l.Bytes>>20)), l.TCPGBps, l.TLSGBps, l.TLSCipher, listGBps(l.FreshGBpsBy))
		fmt.Fprintf(out, "  push %s through loopback into fresh memory: TCP %.1f ms (%.2f GB/s), TLS %.1f ms (%.2f GB/s)\n",
			sizeName(int(l.Bytes>>20)), l.PushFreshMs, gbpsMs(l.Bytes, l.PushFreshMs), l.PushFreshTLSMs, gbpsMs(l.Bytes, l.PushFreshTLSMs))
		if len(l.Noisy) > 0 {
			fmt.Fprintf(out, "  noisy (slowest sample over %.1f times the fastest; see --json): %s\n", noisy, strings.Join(l.Noisy, ", "))
		}
		if s.GivenBackMiB >= 0 {
			fmt.Fprintf(out, "  memory the VM gave back to its host meanwhile (slow to touch again): %d MiB\n", s.GivenBackMiB)
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

// orDash formats v when applies, "-" otherwise.
func orDash(applies bool, format string, v float64) string {
	if !applies {
		return "-"
	}
	return fmt.Sprintf(format, v)
}

// gbpsMs is bytes per ms milliseconds in GB/s.
func gbpsMs(bytes int64, ms float64) float64 {
	if ms <= 0 {
		return 0
	}
	return float64(bytes) / ms / 1e6
}

// listGBps formats m as " k1 v1, k2 v2 GB/s", sorted by key.
func listGBps(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if b.Len() > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %s %.2f", k, m[k])
	}
	return b.String() + " GB/s"
}
