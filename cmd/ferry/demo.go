package main

import (
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"ferry/internal/demo"
	"ferry/internal/migrate"
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
	var ccfg demo.ClusterConfig
	var modes string
	var checkpoint, messages, spreadBuild bool
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Start a 3-node cluster here and migrate the built-in workload with each mechanism",
		Long: "Start three ferry nodes on this machine (loopback, mutual TLS), run the built-in\n" +
			"workload (it holds memory, dirties it at a steady rate and verifies it) as a job on n1,\n" +
			"migrate it n1 → n2 → n3 → n1 with freeze, precopy and postcopy, check that it never\n" +
			"noticed (same PID, no tick lost or repeated, memory intact) and compare the mechanisms;\n" +
			"then a message consumer (checking every sequence number) and a producer sending steadily,\n" +
			"the consumer moved while messages flow once per forwarding mechanism (resend, origin,\n" +
			"link, update, auto), and a table of hops, latency and lost/duplicated per mechanism;\n" +
			"then make -j6 of a C program with its compilers spread over the nodes as they start\n" +
			"(ferry run --spread cc), compared byte for byte with the same build on one node.\n" +
			"With --checkpoint: the single-machine demo instead (checkpoint, kill, restore).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if checkpoint {
				cfg.Log = logger()
				return demo.Run(cmd.Context(), cfg, os.Stdout)
			}
			ccfg.Log = logger()
			ccfg.MemMiB, ccfg.Rate, ccfg.NoMessages, ccfg.NoSpread = cfg.MemMiB, cfg.Rate, !messages, !spreadBuild
			for _, m := range strings.Split(modes, ",") {
				mode, err := migrate.ParseMode(m)
				if err != nil {
					return err
				}
				ccfg.Modes = append(ccfg.Modes, mode)
			}
			return demo.RunCluster(cmd.Context(), ccfg, os.Stdout)
		},
	}
	cmd.Flags().IntVar(&cfg.MemMiB, "mem", 256, "MiB the workload holds")
	cmd.Flags().Float64Var(&cfg.Rate, "rate", 16, "MiB/s the workload dirties")
	cmd.Flags().StringVar(&modes, "modes", "freeze,precopy,postcopy", "mechanisms, one per hop")
	cmd.Flags().DurationVar(&ccfg.Dwell, "dwell", 1500*time.Millisecond, "how long the workload runs between hops")
	cmd.Flags().BoolVar(&messages, "messages", true, "the message part: a consumer moved under each forwarding mechanism")
	cmd.Flags().BoolVar(&spreadBuild, "spread", true, "the spread build: make -j6 with its compilers placed over the nodes")
	cmd.Flags().BoolVar(&checkpoint, "checkpoint", false, "run the single-machine checkpoint/restore demo")
	cmd.Flags().IntVar(&cfg.Rounds, "rounds", 2, "--checkpoint: checkpoint/restore rounds")
	return cmd
}
