// Command ferry checkpoints, restores and migrates running Linux processes.
// This package only parses flags and calls into internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"ferry/internal/agent"
	"ferry/internal/coprocload"
	"ferry/internal/job"
	"ferry/internal/spread"
	"ferry/internal/standin"
)

// seedName is argv[0] of restore's seed process. The seed is stopped at
// exec and never runs; if it ever does, it must do nothing.
const seedName = "ferry-restore-seed"

func main() {
	if len(os.Args) > 0 && os.Args[0] == seedName {
		os.Exit(111)
	}
	// Helpers of the node daemon, not for users.
	if len(os.Args) > 1 && os.Args[1] == "jobinit" {
		job.InitMainArgs(os.Args[2:]) // never returns
	}
	if len(os.Args) > 1 && os.Args[1] == "standin" {
		// Before anything asks for signals: the stand-in takes them all
		// (os/signal).
		os.Exit(standin.Main(os.Args[2:]))
	}
	if spread.IsWrapper(os.Args[0]) {
		// Run as a --spread command of a job: ask the node where to
		// run, then become the command (package spread).
		os.Exit(spread.Main(os.Args))
	}
	if len(os.Args) > 1 && os.Args[1] == "coprocload" {
		// The coprocess bench's load (`ferry bench --coprocess`): its
		// signals are its own.
		os.Exit(coprocload.Main(os.Args[2:]))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if len(os.Args) > 1 && os.Args[1] == "agent" {
		code := agent.Main(ctx, os.Args[2:])
		stop()
		os.Exit(code)
	}
	err := root().ExecuteContext(ctx)
	stop()
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "ferry:", err)
		os.Exit(1)
	}
}

var verbose bool

func logger() *slog.Logger {
	level := slog.LevelWarn
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

func root() *cobra.Command {
	cmd := &cobra.Command{
		Use:           "ferry",
		Short:         "Checkpoint, restore and migrate running Linux processes",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.PersistentFlags().BoolVarP(&verbose, "verbose", "v", false, "log what ferry does")
	cmd.AddCommand(checkCmd(), dumpCmd(), restoreCmd(), inspectCmd(), demoCmd(), workloadCmd(), msgloadCmd(), benchCmd(), initCmd(),
		nodeCmd(), runCmd(), logsCmd(), psCmd(), killCmd(), adoptCmd(), membersCmd(), migrateCmd(),
		sendCmd(), recvCmd(), whereCmd())
	return cmd
}
