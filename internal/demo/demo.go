// Package demo runs `ferry demo`: it starts ferry's built-in workload,
// checkpoints it, kills it, restores it from the image and shows that it
// carries on — its progress counter continues without a gap, its PID is
// the same and its own memory verification still passes — printing the
// freeze time, the image size and the restore time of every round
// (Run, `ferry demo --checkpoint`). RunCluster is `ferry demo`: the
// workload migrated around three local nodes with each transfer mode,
// then a message producer and consumer, the consumer moved under each
// forwarding mechanism (messages.go).
package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
	"ferry/internal/workload"
)

// Config tunes the demo.
type Config struct {
	MemMiB int
	Rate   float64 // MiB/s dirtied by the workload
	Rounds int
	Log    *slog.Logger
	// Exe is the ferry binary that runs the workload; default: this one.
	Exe string
}

type round struct {
	freeze, dumpTime, restoreTime time.Duration
	imageBytes                    int64
	pages                         int64
	lastTick, firstTick           uint64
}

// Run runs the demo, writing a narrative and a table to out.
func Run(ctx context.Context, cfg Config, out io.Writer) error {
	if cfg.MemMiB <= 0 {
		cfg.MemMiB = 256
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 2
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	exe := cfg.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	defer pr.Close()
	cmd := exec.CommandContext(ctx, exe, "workload", "--mem", strconv.Itoa(cfg.MemMiB),
		"--rate", fmt.Sprint(cfg.Rate), "--interval", "200ms")
	cmd.Stdout = pw
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		pw.Close()
		return fmt.Errorf("start workload: %w", err)
	}
	pw.Close()
	pid := cmd.Process.Pid
	fmt.Fprintf(out, "started the built-in workload: pid %d, %d MiB, dirtying %.0f MiB/s\n", pid, cfg.MemMiB, cfg.Rate)

	lines := make(chan workload.Progress, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if p, ok := workload.ParseLine(sc.Text()); ok {
				lines <- p
			}
		}
	}()
	next := func(d time.Duration) (workload.Progress, error) {
		select {
		case p, ok := <-lines:
			if !ok {
				return p, errors.New("workload output ended")
			}
			if !p.OK {
				return p, fmt.Errorf("workload reports corruption: %s", p.Err)
			}
			return p, nil
		case <-time.After(d):
			return workload.Progress{}, fmt.Errorf("no progress from the workload for %v", d)
		case <-ctx.Done():
			return workload.Progress{}, ctx.Err()
		}
	}
	var last workload.Progress
	for last.Verified < 1 {
		if last, err = next(60 * time.Second); err != nil {
			cmd.Process.Kill()
			return err
		}
		fmt.Fprintf(out, "  workload: %s\n", last)
	}

	dir, err := os.MkdirTemp(shmDir(), "ferry-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	t := ptrace.NewTracer()
	defer t.Close()
	reaped := false
	var rounds []round
	for i := 0; i < cfg.Rounds; i++ {
		// Drain what was printed so far so "last" is the newest line.
		if last, err = drain(lines, last, 0); err != nil {
			return err
		}
		var rd round
		dw, err := image.CreateWith(dir, image.CreateOptions{Preallocate: dump.EstimateSize(pid)})
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := dump.Dump(ctx, t, pid, dw, dump.Options{KeepFiles: true, Log: cfg.Log})
		if err != nil {
			dw.Abort()
			return fmt.Errorf("checkpoint: %w", err)
		}
		rd.dumpTime, rd.freeze = time.Since(start), res.FreezeTime
		rd.imageBytes, rd.pages = res.Stats.TotalBytes, res.Stats.Pages
		if !reaped {
			cmd.Wait()
			reaped = true
		} else {
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, 0, nil)
		}
		// Whatever the workload printed before it was frozen.
		if last, err = drain(lines, last, 50*time.Millisecond); err != nil {
			return err
		}
		rd.lastTick = last.Tick
		fmt.Fprintf(out, "round %d: checkpointed pid %d (%d MiB image) and killed it; last tick %d\n",
			i+1, pid, rd.imageBytes>>20, last.Tick)
		dr, err := image.OpenMapped(dir)
		if err != nil {
			return err
		}
		start = time.Now()
		rres, err := restore.Restore(ctx, t, dr.Reader, restore.Options{Inherit: res.Kept, Log: cfg.Log})
		dr.Close()
		for _, f := range res.Kept {
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		rd.restoreTime = time.Since(start)
		if rres.PID != pid {
			return fmt.Errorf("restored with pid %d, want %d", rres.PID, pid)
		}
		fmt.Fprintf(out, "round %d: restored pid %d in %.1f ms\n", i+1, rres.PID, ms(rd.restoreTime))
		first, err := next(30 * time.Second)
		if err != nil {
			return fmt.Errorf("after restore: %w", err)
		}
		rd.firstTick = first.Tick
		fmt.Fprintf(out, "  workload: %s\n", first)
		if first.Tick != rd.lastTick+1 || first.PID != pid {
			return fmt.Errorf("after restore the workload printed tick %d pid %d, want tick %d pid %d",
				first.Tick, first.PID, rd.lastTick+1, pid)
		}
		// Wait for a whole verification pass over the restored memory.
		want := first.Verified + 1
		for last = first; last.Verified < want; {
			if last, err = next(60 * time.Second); err != nil {
				return fmt.Errorf("after restore: %w", err)
			}
			fmt.Fprintf(out, "  workload: %s\n", last)
		}
		rounds = append(rounds, rd)
	}
	unix.Kill(pid, unix.SIGTERM)
	var ws unix.WaitStatus
	unix.Wait4(pid, &ws, 0, nil)

	fmt.Fprintf(out, "\nThe workload carried on after every restore: same pid, tick counter continuous, memory verified.\n\n")
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "round\tfreeze ms\tdump ms\timage MiB\tpages\trestore ms\tticks\t")
	for i, r := range rounds {
		fmt.Fprintf(tw, "%d\t%.1f\t%.1f\t%d\t%d\t%.1f\t%d→%d\t\n", i+1, ms(r.freeze), ms(r.dumpTime),
			r.imageBytes>>20, r.pages, ms(r.restoreTime), r.lastTick, r.firstTick)
	}
	return tw.Flush()
}

// drain consumes the progress lines already printed (waiting up to quiet
// for late ones) and returns the newest, or last if there is none.
func drain(lines <-chan workload.Progress, last workload.Progress, quiet time.Duration) (workload.Progress, error) {
	for {
		var p workload.Progress
		var ok bool
		if quiet == 0 {
			select {
			case p, ok = <-lines:
			default:
				return last, nil
			}
		} else {
			select {
			case p, ok = <-lines:
			case <-time.After(quiet):
				return last, nil
			}
		}
		if !ok {
			return last, errors.New("workload output ended")
		}
		last = p
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// shmDir returns a tmpfs directory for images when there is one.
func shmDir() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return ""
}
