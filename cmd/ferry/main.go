// Command ferry checkpoints, restores and migrates running Linux processes.
// This package only parses flags and calls into internal/.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// seedName is argv[0] of restore's seed process. The seed is stopped at
// exec and never runs; if it ever does, it must do nothing.
const seedName = "ferry-restore-seed"

func main() {
	if len(os.Args) > 0 && os.Args[0] == seedName {
		os.Exit(111)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := root().ExecuteContext(ctx)
	stop()
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
	cmd.AddCommand(checkCmd(), dumpCmd(), restoreCmd(), inspectCmd(), demoCmd(), workloadCmd(), benchCmd())
	return cmd
}
