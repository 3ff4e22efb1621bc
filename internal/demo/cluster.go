package demo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"ferry/internal/migrate"
	"ferry/internal/node"
	"ferry/internal/workload"
)

// ClusterConfig tunes the cluster demo.
type ClusterConfig struct {
	MemMiB int
	Rate   float64 // MiB/s dirtied by the workload
	// Modes are tried in order on the hops n1 → n2 → n3 → n1 → ...
	Modes []migrate.Mode
	// Dwell is how long the workload runs between migrations.
	Dwell time.Duration
	Log   *slog.Logger
	// Exe is ferry's binary (default: this one).
	Exe string
	// NoMessages skips the second part: a producer and a consumer of
	// messages, the consumer moved once under each forwarding mechanism.
	NoMessages bool
	// NoSpread skips the third part: make -j6 with its compilers spread
	// over the cluster (ferry run --spread cc).
	NoSpread bool
}

// hop is one migration of the demo.
type hop struct {
	from, to string
	rep      *migrate.Report
	err      error
}

// RunCluster starts three nodes on this machine (loopback, mutual TLS),
// runs the built-in workload as a job on n1 and migrates it around the
// cluster once with each mechanism, then prints a table comparing them;
// then (unless NoMessages) a producer and a consumer of messages, the
// consumer moved once under each forwarding mechanism, and a table of
// their figures. It fails if the workload lost or repeated a tick,
// changed PID, found its memory corrupted, a migration failed, or a
// message was lost, duplicated or out of order; then (unless NoSpread)
// make -j6 with its compilers spread over the nodes, compared with the
// same build on one node.
func RunCluster(ctx context.Context, cfg ClusterConfig, out io.Writer) error {
	if cfg.MemMiB <= 0 {
		cfg.MemMiB = 256
	}
	if len(cfg.Modes) == 0 {
		cfg.Modes = []migrate.Mode{migrate.Freeze, migrate.Precopy, migrate.Postcopy}
	}
	if cfg.Dwell <= 0 {
		cfg.Dwell = 1500 * time.Millisecond
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
	dir, err := os.MkdirTemp("", "ferry-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	ids := []string{"n1", "n2", "n3"}
	lc, err := node.StartLocal(ctx, node.LocalConfig{Dir: dir, IDs: ids, Exe: exe, Log: cfg.Log})
	if err != nil {
		return err
	}
	defer lc.Stop()
	clients := lc.Clients
	fmt.Fprintf(out, "cluster up: nodes n1, n2, n3 on loopback (mutual TLS), state in %s\n", dir)

	c := clients["n1"]
	info, err := c.Run(ctx, node.RunRequest{Node: "n1", Cmd: []string{exe, "workload", "--mem", strconv.Itoa(cfg.MemMiB),
		"--rate", fmt.Sprint(cfg.Rate), "--interval", "200ms"}})
	if err != nil {
		return fmt.Errorf("start the workload: %w", err)
	}
	fmt.Fprintf(out, "job %s: the built-in workload on n1, pid %d, %d MiB, dirtying %.0f MiB/s\n",
		info.ID, info.PID, cfg.MemMiB, cfg.Rate)

	// Follow its output wherever it runs, checking every line.
	w := &watcher{out: out, done: make(chan struct{})}
	pr, pw := io.Pipe()
	logsDone := make(chan error, 1)
	go func() {
		end, err := c.Logs(context.WithoutCancel(ctx), info.ID, true, pw, io.Discard)
		pw.Close()
		if err == nil && end != nil && end.State == "lost" {
			err = fmt.Errorf("job lost: %s", end.Error)
		}
		logsDone <- err
	}()
	go w.read(pr)
	if err := w.waitTicks(ctx, 3, 30*time.Second); err != nil {
		return err
	}

	var hops []hop
	at := "n1"
	for i, mode := range cfg.Modes {
		to := ids[(i+1)%len(ids)]
		select {
		case <-time.After(cfg.Dwell):
		case <-ctx.Done():
			return ctx.Err()
		}
		before := w.last()
		rep, err := c.Migrate(ctx, info.ID, node.MigrateRequest{To: to, Mode: string(mode)}, nil)
		hops = append(hops, hop{from: at, to: to, rep: rep, err: err})
		if err != nil {
			fmt.Fprintf(out, "%-8s %s → %s failed: %v\n", mode, at, to, err)
			continue
		}
		fmt.Fprintf(out, "%-8s %s → %s: moved at tick %d; freeze %.1f ms, total %.1f ms, %s sent\n",
			mode, at, to, before.Tick, msf(rep.FreezeTime), msf(rep.Total), sizeStr(int64(rep.BytesSent)))
		at = to
	}
	select {
	case <-time.After(cfg.Dwell):
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := c.Signal(ctx, info.ID, 15); err != nil {
		return fmt.Errorf("stop the workload: %w", err)
	}
	select {
	case err := <-logsDone:
		if err != nil {
			return err
		}
	case <-time.After(30 * time.Second):
		return errors.New("the workload did not stop")
	}
	<-w.done

	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "mode\troute\tfreeze ms\ttotal ms\tsent\tprecopy rounds\tpostcopy faults\tsource released ms\t")
	var failed error
	for _, h := range hops {
		if h.err != nil {
			fmt.Fprintf(tw, "%s\t%s→%s\tfailed\t\t\t\t\t\t\n", h.rep.Mode, h.from, h.to)
			failed = errors.Join(failed, h.err)
			continue
		}
		r := h.rep
		rounds, faults, released := "-", "-", "-"
		if r.Mode == migrate.Precopy {
			rounds = strconv.Itoa(len(r.Rounds))
		}
		if r.Mode == migrate.Postcopy {
			faults = strconv.FormatUint(r.Faults, 10)
			released = fmt.Sprintf("%.1f", msf(r.ResidualEnded))
		}
		fmt.Fprintf(tw, "%s\t%s→%s\t%.1f\t%.1f\t%s\t%s\t%s\t%s\t\n", r.Mode, h.from, h.to, msf(r.FreezeTime), msf(r.Total),
			sizeStr(int64(r.BytesSent)), rounds, faults, released)
	}
	tw.Flush()
	if err := w.err(); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nthe workload ran %d ticks with pid %d throughout, none lost or repeated, its memory verified %d times: ok\n",
		w.last().Tick, w.pid, w.last().Verified)
	if !cfg.NoMessages {
		failed = errors.Join(failed, runMessages(ctx, lc, exe, out))
	}
	if !cfg.NoSpread {
		failed = errors.Join(failed, runSpread(ctx, lc, dir, out))
	}
	return failed
}

func msf(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// watcher checks the workload's lines: ticks continuous, one PID, memory
// verified ok.
type watcher struct {
	out  io.Writer
	mu   sync.Mutex
	prev workload.Progress
	pid  int
	bad  error
	done chan struct{}
}

func (w *watcher) read(r io.Reader) {
	defer close(w.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		p, ok := workload.ParseLine(sc.Text())
		if !ok {
			continue
		}
		w.mu.Lock()
		switch {
		case w.bad != nil:
		case !p.OK:
			w.bad = fmt.Errorf("the workload found its memory corrupted: %s", p.Err)
		case p.Done:
		case w.prev.Tick != 0 && p.Tick != w.prev.Tick+1:
			w.bad = fmt.Errorf("tick %d followed tick %d: output lost or repeated", p.Tick, w.prev.Tick)
		case w.pid != 0 && p.PID != w.pid:
			w.bad = fmt.Errorf("the workload's pid changed from %d to %d", w.pid, p.PID)
		}
		if !p.Done {
			w.prev, w.pid = p, p.PID
		} else {
			w.prev.Verified = p.Verified
		}
		w.mu.Unlock()
	}
}

func (w *watcher) last() workload.Progress {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.prev
}

func (w *watcher) err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.bad
}

func (w *watcher) waitTicks(ctx context.Context, n uint64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for w.last().Tick < n {
		if err := w.err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the workload printed %d ticks in %v", w.last().Tick, limit)
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func sizeStr(b int64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d B", b)
}
