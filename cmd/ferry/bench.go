package main

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"ferry/internal/bench"
	"ferry/internal/ipc"
	"ferry/internal/migrate"
)

func benchCmd() *cobra.Command {
	var cfg bench.Config
	var mcfg bench.MigrateConfig
	var scfg bench.SoakConfig
	var fcfg bench.ForwardingConfig
	var asJSON, migration, soak, forwarding, drawbacks, coprocess bool
	var modes, rates, mechanisms []string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Time checkpoint and restore, or migration, against this machine's limits",
		Long: "Start the built-in workload (idle, holding each size of memory), checkpoint it to\n" +
			"an image on tmpfs and restore it, repeatedly; beside each figure, measure in the same\n" +
			"run the limit it is bound by: process_vm_readv from the process's memory for a dump,\n" +
			"writing fresh memory for a restore. Prints medians and the ratio figure/limit.\n\n" +
			"With --migrate: start two nodes here (loopback, mutual TLS) and, for each size, dirty\n" +
			"rate and mode, run the workload as a job and move it back and forth between them,\n" +
			"checking after each move that it carries on; beside the figures, loopback TCP and TLS\n" +
			"throughput, the fill rate of fresh memory and the time to push each size through\n" +
			"loopback TCP into fresh memory, measured in the same run.\n\n" +
			"With --soak: start --nodes real `ferry node` daemons here and keep --jobs workloads\n" +
			"moving between random nodes in random modes (--modes) for --duration, checking each\n" +
			"after every move; report the migrations, failures by cause, migration times, and each\n" +
			"daemon's fds, threads, RSS and goroutines before and after, with what grew beyond noise.\n" +
			"--sizes and --rates give the jobs' size and dirty rate (one value each).\n\n" +
			"With --forwarding: start four nodes here and, for each message-forwarding mechanism\n" +
			"(--mechanisms) and number of moves (--moves), run a receiver (`ferry msgload recv`, with\n" +
			"that mechanism) on n1 and a sender on each other node at --msg-rate, and move the receiver\n" +
			"round robin while they send (--modes, default freeze); report latency p50/p99 of messages\n" +
			"of type 1, 2 and 3 (by the moves' timeline), hops, messages relayed, forwarding state left,\n" +
			"messages per second, lost and duplicated, beside the round trip of a small request between\n" +
			"two nodes measured in the same run; then --messages across --big-moves moves under auto\n" +
			"at --big-rate, (--drawbacks) what still gets through with the origin or a link node\n" +
			"stopped, and (--partners N) what update's location updates add to the freeze: a receiver\n" +
			"moved between two nodes of an N+2-node cluster while senders on 0, 1, 3 and N others send\n" +
			"(its partners), under link and under update.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find ferry's executable for the workload: %w", err)
			}
			if forwarding {
				if soak || migration {
					return fmt.Errorf("--forwarding, --soak and --migrate: choose one")
				}
				fcfg.Exe = exe
				fcfg.NoDrawbacks = !drawbacks
				if fcfg.BigMessages == 0 {
					fcfg.BigMessages = -1 // none; the zero value means the default
				}
				if fcfg.Partners == 0 {
					fcfg.Partners = -1 // none, likewise
				}
				for _, m := range mechanisms {
					k, err := ipc.ParseMechanism(m)
					if err != nil {
						return err
					}
					fcfg.Mechanisms = append(fcfg.Mechanisms, k)
				}
				if cmd.Flags().Changed("modes") {
					for _, m := range modes {
						mode, err := migrate.ParseMode(m)
						if err != nil {
							return err
						}
						fcfg.Modes = append(fcfg.Modes, mode)
					}
				}
				fcfg.Log = logger()
				fcfg.Progress = os.Stderr
				rep, err := bench.RunForwarding(cmd.Context(), fcfg)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(rep)
				}
				return rep.WriteText(os.Stdout)
			}
			if coprocess {
				rep, err := bench.RunCoprocess(cmd.Context(), bench.CoprocConfig{Exe: exe, Dir: cfg.Dir, Log: logger(), Progress: os.Stderr})
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(rep)
				}
				bench.WriteCoprocReport(os.Stdout, rep)
				return nil
			}
			if soak {
				if migration {
					return fmt.Errorf("--soak and --migrate: choose one")
				}
				return runSoak(cmd, scfg, exe, modes, rates, asJSON)
			}
			if migration {
				mcfg.Exe = exe
				if mcfg.RandomRate == 0 {
					mcfg.RandomRate = -1 // none; the zero value means the default
				}
				mcfg.SizesMiB = cfg.SizesMiB
				if cmd.Flags().Changed("repeat") {
					mcfg.Repeat = cfg.Repeat
				}
				for _, r := range rates {
					v, err := strconv.ParseFloat(r, 64)
					if err != nil {
						return fmt.Errorf("--rates: %w", err)
					}
					mcfg.RatesMiBps = append(mcfg.RatesMiBps, v)
				}
				for _, m := range modes {
					mode, err := migrate.ParseMode(m)
					if err != nil {
						return err
					}
					mcfg.Modes = append(mcfg.Modes, mode)
				}
				mcfg.Log = logger()
				mcfg.Progress = os.Stderr
				rep, err := bench.RunMigrate(cmd.Context(), mcfg)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(rep)
				}
				return rep.WriteText(os.Stdout)
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
	cmd.Flags().IntSliceVar(&cfg.SizesMiB, "sizes", []int{64, 1024}, "process sizes in MiB (--soak: one, the jobs', default 32)")
	cmd.Flags().IntVar(&cfg.Repeat, "repeat", 5, "counted runs per figure, after one warm-up (--migrate: moves per case, default 3)")
	cmd.Flags().StringVar(&cfg.Dir, "dir", "", "directory for images (default /dev/shm)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "machine-readable output")
	cmd.Flags().BoolVar(&migration, "migrate", false, "time migrations between two local nodes instead")
	cmd.Flags().BoolVar(&coprocess, "coprocess", false, "measure a child moved apart from its parent (pipes, signals, wait) beside the same on one node and the raw TLS link")
	cmd.Flags().StringSliceVar(&rates, "rates", []string{"0", "16", "128"}, "--migrate: dirty rates in MiB/s (--soak: one, the jobs', default 4)")
	cmd.Flags().StringSliceVar(&modes, "modes", []string{"freeze", "precopy", "postcopy"}, "--migrate, --soak: transfer modes (--forwarding: default freeze)")
	cmd.Flags().BoolVar(&soak, "soak", false, "keep jobs moving between real local node daemons for --duration")
	cmd.Flags().DurationVar(&scfg.Duration, "duration", 10*time.Minute, "--soak: how long to keep the jobs moving")
	cmd.Flags().IntVar(&scfg.Jobs, "jobs", 10, "--soak: jobs moving at once")
	cmd.Flags().IntVar(&scfg.Nodes, "nodes", 3, "--soak: node daemons")
	cmd.Flags().Int64Var(&scfg.Seed, "seed", 0, "--soak: seed of the random moves (default from the clock; reported)")
	cmd.Flags().Float64Var(&mcfg.RandomRate, "random-rate", 64,
		"--migrate: dirty rate, MiB/s, of one more postcopy case per size with random writes (0: none)")
	cmd.Flags().BoolVar(&forwarding, "forwarding", false, "measure message forwarding across moves between four local nodes instead")
	cmd.Flags().StringSliceVar(&mechanisms, "mechanisms", []string{"resend", "origin", "link", "update", "auto"}, "--forwarding: mechanisms")
	cmd.Flags().IntSliceVar(&fcfg.Moves, "moves", []int{0, 1, 3, 10}, "--forwarding: moves of the receiver per case")
	cmd.Flags().Float64Var(&fcfg.Rate, "msg-rate", 200, "--forwarding: messages per second of each sender")
	cmd.Flags().IntVar(&fcfg.BigMessages, "messages", 20000, "--forwarding: messages of the large run under auto (0: none)")
	cmd.Flags().IntVar(&fcfg.BigMoves, "big-moves", 30, "--forwarding: moves of the large run")
	cmd.Flags().Float64Var(&fcfg.BigRate, "big-rate", 600, "--forwarding: messages per second of the large run, all senders together")
	cmd.Flags().BoolVar(&drawbacks, "drawbacks", true, "--forwarding: the rows with the origin or a link node stopped")
	cmd.Flags().IntVar(&fcfg.Partners, "partners", 10, "--forwarding: the freeze cost of update's location updates with up to this many partner nodes (a cluster of N+2; 0: none)")
	cmd.Flags().IntVar(&fcfg.PartnerMoves, "partner-moves", 10, "--forwarding: moves per partner row")
	return cmd
}

// runSoak runs `ferry bench --soak`: --sizes and --rates, if given, hold
// one value each, the jobs' size and dirty rate (default 32 MiB, 4 MiB/s).
func runSoak(cmd *cobra.Command, cfg bench.SoakConfig, exe string, modes, rates []string, asJSON bool) error {
	cfg.Exe = exe
	if f := cmd.Flags(); f.Changed("sizes") {
		sizes, _ := f.GetIntSlice("sizes")
		if len(sizes) != 1 {
			return fmt.Errorf("--soak: --sizes takes one size, the jobs'")
		}
		cfg.SizeMiB = sizes[0]
	}
	if cmd.Flags().Changed("rates") {
		if len(rates) != 1 {
			return fmt.Errorf("--soak: --rates takes one rate, the jobs'")
		}
		v, err := strconv.ParseFloat(rates[0], 64)
		if err != nil {
			return fmt.Errorf("--rates: %w", err)
		}
		if v == 0 {
			v = -1 // idle jobs; the zero value means the default
		}
		cfg.RateMiBps = v
	}
	for _, m := range modes {
		mode, err := migrate.ParseMode(m)
		if err != nil {
			return err
		}
		cfg.Modes = append(cfg.Modes, mode)
	}
	cfg.Log = logger()
	cfg.Progress = os.Stderr
	rep, err := bench.RunSoak(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	if asJSON {
		return printJSON(rep)
	}
	return rep.WriteText(os.Stdout)
}
