package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteText writes the report as tables: the figures beside their limits,
// where the time goes, and the targets.
func (r *Report) WriteText(out io.Writer) error {
	fs := "tmpfs"
	if !r.Tmpfs {
		fs = "not tmpfs"
	}
	fmt.Fprintf(out, "images in %s (%s); kernel %s, %d CPUs, THP %s; medians of %d runs after a warm-up; GB/s = 10^9 B/s\n\n",
		r.Dir, fs, r.Kernel, r.CPUs, r.THP, r.Repeat)

	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tfreeze ms\tdump ms\tdump GB/s\treadv limit GB/s\tratio\t"+
		"restore ms\trestore GB/s\tfresh-mem limit GB/s\tratio\t")
	for _, s := range r.Sizes {
		fmt.Fprintf(tw, "%s\t%.1f\t%.1f\t%.2f\t%.2f\t%.0f%%\t%.1f\t%.2f\t%.2f\t%.0f%%\t\n",
			sizeName(s.SizeMiB), s.FreezeMs, s.DumpMs, s.DumpGBps, s.ReadvGBps, 100*s.DumpRatio,
			s.RestoreMs, s.RestoreGBps, s.FreshGBps, 100*s.RestoreRatio)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nwhere the time goes (ms, medians)\n")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "dump\tMiB\t(prealloc, before)\tcollect\tpages\t(in WritePages)\tclose\trelease\ttotal\tkill-mode total\t")
	for _, s := range r.Sizes {
		d := s.DumpPhases
		fmt.Fprintf(tw, "%s\t%.1f\t(%.1f)\t%.1f\t%.1f\t(%.1f)\t%.1f\t%.1f\t%.1f\t%.1f\t\n", sizeName(s.SizeMiB),
			float64(s.PageBytes)/(1<<20), d.Prealloc, d.Collect, d.Pages, d.WriteImage, d.Close, d.Release, s.DumpMs, s.KillDumpMs)
	}
	fmt.Fprintln(tw, "restore\t\t\tsetup\tfill\t\tfinish\t\ttotal\t\t")
	for _, s := range r.Sizes {
		p := s.RestorePhases
		fmt.Fprintf(tw, "%s\t\t\t%.1f\t%.1f\t\t%.1f\t\t%.1f\t\t\n", sizeName(s.SizeMiB),
			p.Setup, p.Fill, p.Finish, s.RestoreMs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nlimits by way of measuring, GB/s (dump or restore as a percentage of it);\n"+
		"-xN: on N threads; the fastest way is the limit in the first table\n")
	for _, s := range r.Sizes {
		fmt.Fprintf(out, "  %s  process_vm_readv, by piece:%s\n", sizeName(s.SizeMiB), byKey(s.ReadvGBpsBy, s.DumpGBps))
		fmt.Fprintf(out, "  %s  fill fresh memory, by method:%s\n", sizeName(s.SizeMiB), byKey(s.FreshGBpsBy, s.RestoreGBps))
		fmt.Fprintf(out, "  %s  no process: write a new file in %s %.2f, write an image there %.2f, decode the image %.2f\n",
			sizeName(s.SizeMiB), r.Dir, s.TmpfsWriteGBps, s.ImageWriteGBps, s.ImageReadGBps)
		fmt.Fprintf(out, "  %s  fixed costs, ms: freeze every thread %.2f, open the image and decode its state %.2f\n",
			sizeName(s.SizeMiB), s.FreezeAloneMs, s.StateDecodeMs)
	}
	fmt.Fprintf(out, "  CRC-32C (image checksums): %.2f\n", r.CRC32CGBps)
	for _, s := range r.Sizes {
		if s.GivenBackMiB >= 0 {
			fmt.Fprintf(out, "  %s  memory the VM gave back to its host meanwhile (slow to touch again): %d MiB\n",
				sizeName(s.SizeMiB), s.GivenBackMiB)
		}
		if len(s.Noisy) > 0 {
			fmt.Fprintf(out, "  %s  noisy (slowest sample over %.1f times the fastest; see --json): %s\n",
				sizeName(s.SizeMiB), noisy, strings.Join(s.Noisy, ", "))
		}
	}

	first := true
	for _, s := range r.Sizes {
		for _, t := range s.Targets {
			if first {
				fmt.Fprintf(out, "\ntargets\n")
				first = false
			}
			verdict := "met"
			if !t.Met {
				verdict = "NOT met"
			}
			fmt.Fprintf(out, "  %s %s: %s (target %s): %s\n", sizeName(s.SizeMiB), t.What, t.Got, t.Want, verdict)
		}
	}
	return nil
}

// byKey formats m as " k1 v1 (p1), k2 v2 (p2)", sorted by key, p being
// engine as a percentage of v.
func byKey(m map[string]float64, engine float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if v, ok := m[k]; ok {
			if b.Len() > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s %.2f (%.0f%%)", k, v, 100*ratio(engine, v))
		}
	}
	return b.String()
}

func sizeName(mib int) string {
	if mib >= 1024 && mib%1024 == 0 {
		return fmt.Sprintf("%d GiB", mib/1024)
	}
	return fmt.Sprintf("%d MiB", mib)
}
