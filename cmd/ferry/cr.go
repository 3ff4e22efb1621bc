package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"ferry/internal/dump"
	"ferry/internal/feature"
	"ferry/internal/image"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
)

func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func checkCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Probe the kernel features ferry uses and what they allow",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := feature.Check(cmd.Context())
			if asJSON {
				if err := printJSON(r); err != nil {
					return err
				}
			} else {
				r.WriteText(os.Stdout)
			}
			if !r.CanCheckpoint() {
				return errors.New("checkpoint/restore is not possible on this machine")
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func dumpCmd() *cobra.Command {
	var dir string
	var leaveRunning, leaveStopped, asJSON bool
	var maxDelay time.Duration
	cmd := &cobra.Command{
		Use:   "dump PID --dir DIR",
		Short: "Checkpoint a running process into an image directory",
		Long: "Freeze PID, write its state and memory to DIR, then kill it (default),\n" +
			"or leave it running (--leave-running) or stopped (--leave-stopped).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pid, err := strconv.Atoi(args[0])
			if err != nil {
				return fmt.Errorf("bad pid %q", args[0])
			}
			if dir == "" {
				return errors.New("--dir is required")
			}
			if leaveRunning && leaveStopped {
				return errors.New("--leave-running and --leave-stopped exclude each other")
			}
			opts := dump.Options{MaxDelay: maxDelay, Log: logger()}
			switch {
			case leaveRunning:
				opts.Leave = dump.Running
			case leaveStopped:
				opts.Leave = dump.Stopped
			}
			// Refuse before creating anything.
			if err := dump.Check(pid); err != nil {
				return err
			}
			dw, err := image.CreateWith(dir, image.CreateOptions{Preallocate: dump.EstimateSize(pid)})
			if err != nil {
				return err
			}
			defer dw.Abort()
			t := ptrace.NewTracer()
			defer t.Close()
			res, err := dump.Dump(cmd.Context(), t, pid, dw, opts)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(map[string]any{"pid": pid, "dir": dir, "freeze_time_ms": ms(res.FreezeTime),
					"delayed": res.Delayed, "stats": res.Stats})
			}
			fmt.Printf("dumped pid %d to %s: %s in %d pages, frozen %.2f ms\n", pid, dir,
				human(res.Stats.TotalBytes), res.Stats.Pages, ms(res.FreezeTime))
			for tid, d := range res.Delayed {
				fmt.Printf("  delayed blocking: thread %d waited %.1f ms for its system call to end\n", tid, ms(d))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "image directory (created if needed)")
	cmd.Flags().BoolVar(&leaveRunning, "leave-running", false, "let the process run on after the dump")
	cmd.Flags().BoolVar(&leaveStopped, "leave-stopped", false, "leave the process stopped after the dump")
	cmd.Flags().DurationVar(&maxDelay, "max-delay", 10*time.Second, "how long to wait for a thread in uninterruptible sleep")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func restoreCmd() *cobra.Command {
	var dir string
	var newPIDs, asJSON bool
	cmd := &cobra.Command{
		Use:   "restore --dir DIR",
		Short: "Reinstate a checkpointed process from an image directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				return errors.New("--dir is required")
			}
			dr, err := image.OpenMapped(dir)
			if err != nil {
				return err
			}
			defer dr.Close()
			t := ptrace.NewTracer()
			defer t.Close()
			res, err := restore.Restore(cmd.Context(), t, dr.Reader, restore.Options{NewPIDs: newPIDs, Log: logger()})
			if err != nil {
				return fmt.Errorf("restore from %s: %w", dir, err)
			}
			if asJSON {
				return printJSON(map[string]any{"pid": res.PID, "restore_time_ms": ms(res.Duration), "pages": res.Pages})
			}
			fmt.Printf("restored pid %d in %.2f ms (%d pages)\n", res.PID, ms(res.Duration), res.Pages)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "image directory")
	cmd.Flags().BoolVar(&newPIDs, "new-pids", false, "accept new PIDs/TIDs when the original ones are taken")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func inspectCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "inspect DIR",
		Short: "Show what an image holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dr, err := image.Open(args[0])
			if err != nil {
				return err
			}
			defer dr.Close()
			s, err := image.Summarize(dr.Reader)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(s)
			}
			return s.WriteText(os.Stdout)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func human(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
