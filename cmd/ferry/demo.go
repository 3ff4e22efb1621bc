package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"

	"ferry/internal/demo"
	"ferry/internal/workload"
)

func workloadCmd() *cobra.Command {
	var cfg workload.Config
	cmd := &cobra.Command{
		Use:    "workload",
		Short:  "Run the built-in demo workload (a Go program that holds and dirties memory)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return workload.Run(cmd.Context(), cfg, os.Stdout)
		},
	}
	cmd.Flags().IntVar(&cfg.MemMiB, "mem", 256, "MiB of memory to hold")
	cmd.Flags().Float64Var(&cfg.DirtyMiBPerSec, "rate", 16, "MiB/s to dirty")
	cmd.Flags().IntVar(&cfg.Threads, "threads", 4, "dirtying goroutines")
	cmd.Flags().DurationVar(&cfg.Interval, "interval", 200*time.Millisecond, "progress interval")
	cmd.Flags().Int64Var(&cfg.Seed, "seed", 1, "content seed")
	cmd.Flags().BoolVar(&cfg.Random, "random", false, "dirty random pages")
	return cmd
}

func demoCmd() *cobra.Command {
	var cfg demo.Config
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Checkpoint the built-in workload, kill it, restore it, and show it carrying on",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = logger()
			return demo.Run(cmd.Context(), cfg, os.Stdout)
		},
	}
	cmd.Flags().IntVar(&cfg.MemMiB, "mem", 256, "MiB the workload holds")
	cmd.Flags().Float64Var(&cfg.Rate, "rate", 16, "MiB/s the workload dirties")
	cmd.Flags().IntVar(&cfg.Rounds, "rounds", 2, "checkpoint/restore rounds")
	return cmd
}
