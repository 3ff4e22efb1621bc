package bench

import (
	"fmt"
	"io"
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

	fmt.Fprintf(out, "\nwhere the time goes (ms, medians; MiB = memory in the image)\n")
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "size\tMiB\t| dump: collect\tread pages\twrite image\tclose\trelease\tkill-mode dump\t"+
		"| restore: setup\tfill\t(read file)\tfinish\t")
	for _, s := range r.Sizes {
		d, p := s.DumpPhases, s.RestorePhases
		fmt.Fprintf(tw, "%s\t%.1f\t| %.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t| %.1f\t%.1f\t(%.1f)\t%.1f\t\n",
			sizeName(s.SizeMiB), float64(s.PageBytes)/(1<<20), d.Collect, d.ReadPages, d.WriteImage, d.Close, d.Release, s.KillDumpMs,
			p.Setup, p.Fill, p.ImageRead, p.Finish)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(out, "\nwhat the phases are built on (GB/s): CRC-32C %.2f", r.CRC32CGBps)
	for _, s := range r.Sizes {
		fmt.Fprintf(out, "; %s: tmpfs write %.2f, process_vm_writev of %d KiB into fresh memory %.2f",
			sizeName(s.SizeMiB), s.TmpfsWriteGBps, RecordSize>>10, s.WritevFreshGBps)
	}
	fmt.Fprintln(out)

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

func sizeName(mib int) string {
	if mib >= 1024 && mib%1024 == 0 {
		return fmt.Sprintf("%d GiB", mib/1024)
	}
	return fmt.Sprintf("%d MiB", mib)
}
