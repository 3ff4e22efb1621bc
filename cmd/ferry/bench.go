package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"github.com/spf13/cobra"

	"ferry/internal/bench"
)

func benchCmd() *cobra.Command {
	var cfg bench.Config
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Time checkpoint and restore against this machine's memory limits",
		Long: "Start the built-in workload (idle, holding each size of memory), checkpoint it to\n" +
			"an image on tmpfs and restore it, repeatedly; beside each figure, measure in the same\n" +
			"run the limit it is bound by: process_vm_readv from the process's memory for a dump,\n" +
			"writing fresh memory for a restore. Prints medians and the ratio figure/limit.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find ferry's executable for the workload: %w", err)
			}
			cfg.Workload = func(mib int) *exec.Cmd {
				return exec.Command(exe, "workload", "--mem", strconv.Itoa(mib), "--rate", "0",
					"--threads", "1", "--interval", "200ms")
			}
			cfg.Log = logger()
			cfg.Progress = os.Stderr
			rep, err := bench.Run(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(rep)
			}
			return rep.WriteText(os.Stdout)
		},
	}
	cmd.Flags().IntSliceVar(&cfg.SizesMiB, "sizes", []int{64, 1024}, "process sizes in MiB")
	cmd.Flags().IntVar(&cfg.Repeat, "repeat", 5, "counted runs per figure (after one warm-up)")
	cmd.Flags().StringVar(&cfg.Dir, "dir", "", "directory for images (default /dev/shm)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	return cmd
}
