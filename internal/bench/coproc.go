package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ferry/internal/coprocload"
	"ferry/internal/migrate"
	"ferry/internal/node"
)

// The cost of separation (`ferry bench --coprocess`): two nodes in this
// process, a parent and its child as a job on n1 (package coprocload)
// timing their pipes, signals and wait — first on one node, then after
// the child moved alone to n2 — beside the raw mutual-TLS link between
// the nodes measured in the same run; and the move of a process alone
// beside the move of a whole job of the same program.

// CoprocConfig describes a coprocess benchmark run.
type CoprocConfig struct {
	Exe string // ferry's binary (the load is `Exe coprocload parent`)
	// NoSpread skips fork+exec+wait spread to the other node.
	NoSpread bool
	Dir      string
	Log      *slog.Logger
	Progress io.Writer
}

// CoprocReport is the outcome of RunCoprocess.
type CoprocReport struct {
	// Local: parent and child on one node; Apart: the child on the other.
	Local coprocload.Round `json:"local"`
	Apart coprocload.Round `json:"apart"`
	// TLSMBps: 64 MiB pushed through a loopback mutual-TLS connection
	// between the nodes' certificates; TLSRTTUS: the median one-byte
	// round trip over one.
	TLSMBps  float64 `json:"tls_mbps"`
	TLSRTTUS float64 `json:"tls_rtt_us"`
	// MoveAloneMs and MoveAloneFreezeMs: ferry migrate JOB --pid CHILD;
	// MoveWholeMs and MoveWholeFreezeMs: the whole job (parent and
	// child) of the same program.
	MoveAloneMs       float64 `json:"move_alone_ms"`
	MoveAloneFreezeMs float64 `json:"move_alone_freeze_ms"`
	MoveWholeMs       float64 `json:"move_whole_ms"`
	MoveWholeFreezeMs float64 `json:"move_whole_freeze_ms"`
	// ForkExecLocalMs and ForkExecSpreadMs: fork, exec and wait of
	// `true`, median, run locally and spread to the other node as it
	// starts (ferry run --spread true); Sprite measured 46 and 81 ms.
	ForkExecLocalMs  float64 `json:"forkexec_local_ms"`
	ForkExecSpreadMs float64 `json:"forkexec_spread_ms"`
	// ForkExecPlaced: where the spread runs ran, by node.
	ForkExecPlaced map[string]int `json:"forkexec_placed"`
	// ComeHomeMs and ComeHomeFreezeMs: the child brought back home from
	// the other node (restored into its stand-in).
	ComeHomeMs       float64  `json:"come_home_ms"`
	ComeHomeFreezeMs float64  `json:"come_home_freeze_ms"`
	Targets          []Target `json:"targets"`
}

// RunCoprocess measures the cost of separation.
func RunCoprocess(ctx context.Context, cfg CoprocConfig) (*CoprocReport, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Progress == nil {
		cfg.Progress = io.Discard
	}
	dir, err := os.MkdirTemp(cfg.Dir, "ferry-bench-coproc-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(cfg.Progress, "starting nodes n1 and n2")
	lc, err := node.StartLocal(ctx, node.LocalConfig{Dir: dir, IDs: nodeIDs, Exe: cfg.Exe, Log: cfg.Log})
	if err != nil {
		return nil, fmt.Errorf("bench: start nodes: %w", err)
	}
	defer lc.Stop()
	c := lc.Clients["n1"]
	rep := &CoprocReport{}

	fmt.Fprintln(cfg.Progress, "the raw link: TLS throughput and round trip")
	tp, err := ClusterTLS(localPKI(dir), "n2", "n1")
	if err != nil {
		return nil, err
	}
	push, err := PushLoopback(ctx, 64<<20, NewBuffer(ChunkSize), tp, false)
	if err != nil {
		return nil, fmt.Errorf("bench: TLS push: %w", err)
	}
	rep.TLSMBps = 64 << 20 / push.Took.Seconds() / 1e6
	if rep.TLSRTTUS, err = tlsRoundTrip(ctx, tp, 1000); err != nil {
		return nil, err
	}

	run := func() (string, int, error) {
		info, err := c.Run(ctx, node.RunRequest{Cmd: []string{cfg.Exe, "coprocload", "parent"}})
		if err != nil {
			return "", 0, err
		}
		m, err := waitOutput(ctx, c, info.ID, regexp.MustCompile(`(?m)^child (\d+)$`), 1)
		if err != nil {
			return "", 0, err
		}
		pid, _ := strconv.Atoi(m[1])
		return info.ID, pid, nil
	}
	// The whole job, moved once, for comparison.
	fmt.Fprintln(cfg.Progress, "a whole job: parent and child moved together")
	whole, _, err := run()
	if err != nil {
		return nil, err
	}
	wr, err := c.Migrate(ctx, whole, node.MigrateRequest{To: "n2", Mode: string(migrate.Freeze)}, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: move the whole job: %w", err)
	}
	rep.MoveWholeMs, rep.MoveWholeFreezeMs = ms(wr.Total), ms(wr.FreezeTime)
	lc.Clients["n2"].Signal(ctx, whole, int(syscall.SIGKILL))

	fmt.Fprintln(cfg.Progress, "parent and child on n1")
	id, child, err := run()
	if err != nil {
		return nil, err
	}
	round := func(n int, sig syscall.Signal) (coprocload.Round, error) {
		if err := c.Signal(ctx, id, int(sig)); err != nil {
			return coprocload.Round{}, err
		}
		m, err := waitOutput(ctx, c, id, regexp.MustCompile(`(?m)^(\{"round":`+strconv.Itoa(n)+`,.*\})$`), 1)
		if err != nil {
			return coprocload.Round{}, err
		}
		var r coprocload.Round
		if err := json.Unmarshal([]byte(m[1]), &r); err != nil {
			return r, err
		}
		if r.Error != "" {
			return r, fmt.Errorf("bench: the load: %s", r.Error)
		}
		return r, nil
	}
	if rep.Local, err = round(1, syscall.SIGUSR1); err != nil {
		return nil, err
	}
	fmt.Fprintln(cfg.Progress, "the child moved alone to n2")
	ar, err := c.Migrate(ctx, id, node.MigrateRequest{To: "n2", Mode: string(migrate.Freeze), PID: child, Alone: true}, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: move the child alone: %w", err)
	}
	rep.MoveAloneMs, rep.MoveAloneFreezeMs = ms(ar.Total), ms(ar.FreezeTime)
	if rep.Apart, err = round(2, syscall.SIGUSR1); err != nil {
		return nil, err
	}
	end, err := round(3, syscall.SIGHUP)
	if err != nil {
		return nil, err
	}
	rep.Apart.WaitUS = end.WaitUS

	fmt.Fprintln(cfg.Progress, "a child moved to n2 and brought back home")
	back, backChild, err := run()
	if err != nil {
		return nil, err
	}
	if _, err := c.Migrate(ctx, back, node.MigrateRequest{To: "n2", Mode: string(migrate.Freeze), PID: backChild}, nil); err != nil {
		return nil, fmt.Errorf("bench: move the child: %w", err)
	}
	hr, err := c.Migrate(ctx, back, node.MigrateRequest{To: "n1", Mode: string(migrate.Freeze), PID: backChild}, nil)
	if err != nil {
		return nil, fmt.Errorf("bench: bring the child home: %w", err)
	}
	rep.ComeHomeMs, rep.ComeHomeFreezeMs = ms(hr.Total), ms(hr.FreezeTime)
	c.Signal(ctx, back, int(syscall.SIGKILL))

	fmt.Fprintln(cfg.Progress, "fork, exec and wait: here, and spread to n2 as it starts")
	for _, spread := range []bool{false, true} {
		if spread && cfg.NoSpread {
			break
		}
		req := node.RunRequest{Cmd: []string{cfg.Exe, "coprocload", "forkexec", "20"}}
		if spread {
			req.Spread = []string{"true"}
		}
		info, err := c.Run(ctx, req)
		if err != nil {
			return nil, err
		}
		m, err := waitOutput(ctx, c, info.ID, regexp.MustCompile(`(?m)^(\{"runs":.*\})$`), 1)
		if err != nil {
			return nil, err
		}
		var fe coprocload.ForkExec
		if err := json.Unmarshal([]byte(m[1]), &fe); err != nil {
			return nil, err
		}
		if spread {
			rep.ForkExecSpreadMs = fe.ForkExecMs
			if ji, err := c.Job(ctx, info.ID); err == nil {
				rep.ForkExecPlaced = ji.SpreadRuns
			}
		} else {
			rep.ForkExecLocalMs = fe.ForkExecMs
		}
	}
	rep.Targets = coprocTargets(rep)
	return rep, nil
}

// coprocTargets are issue 10's goals: pipe throughput across nodes at
// least half the raw TLS throughput; signal and wait latency at most two
// TLS round trips.
func coprocTargets(r *CoprocReport) []Target {
	pipe := min(r.Apart.ToParentMBps, r.Apart.ToChildMBps)
	return []Target{
		{What: "pipe throughput apart (the slower way) / raw TLS throughput", Want: "≥ 0.50",
			Got: fmt.Sprintf("%.2f", pipe/r.TLSMBps), Met: pipe >= r.TLSMBps/2},
		{What: "signal round trip apart / TLS round trip", Want: "≤ 2.0",
			Got: fmt.Sprintf("%.1f", r.Apart.SignalRTTUS/r.TLSRTTUS), Met: r.Apart.SignalRTTUS <= 2*r.TLSRTTUS},
		{What: "wait latency apart / TLS round trip", Want: "≤ 2.0",
			Got: fmt.Sprintf("%.1f", r.Apart.WaitUS/r.TLSRTTUS), Met: r.Apart.WaitUS <= 2*r.TLSRTTUS},
	}
}

// waitOutput waits until job id's output matches re (n: how many
// submatches, beside the whole match), and returns the match.
func waitOutput(ctx context.Context, c *node.Client, id string, re *regexp.Regexp, n int) ([]string, error) {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var out bytes.Buffer
		info, err := c.Logs(ctx, id, false, &out, io.Discard)
		if err != nil {
			return nil, err
		}
		if m := re.FindStringSubmatch(out.String()); len(m) == n+1 {
			return m, nil
		}
		if info != nil && info.State != "running" && info.State != "starting" && info.State != "migrating" {
			return nil, fmt.Errorf("bench: job %s is %s: %s", id, info.State, lastLines(out.String(), 5))
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("bench: job %s: no %s in its output after 2 minutes: %s", id, re, lastLines(out.String(), 5))
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

func lastLines(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// tlsRoundTrip is the median of n one-byte round trips over a loopback
// mutual-TLS connection.
func tlsRoundTrip(ctx context.Context, tp *TLSPair, n int) (float64, error) {
	a, b, err := loopbackPair(ctx, tp)
	if err != nil {
		return 0, err
	}
	defer a.Close()
	defer b.Close()
	go func() {
		one := make([]byte, 1)
		for {
			if _, err := io.ReadFull(b, one); err != nil {
				return
			}
			if _, err := b.Write(one); err != nil {
				return
			}
		}
	}()
	one := make([]byte, 1)
	ds := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		t := time.Now()
		if _, err := a.Write(one); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(a, one); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(t))
	}
	slices.Sort(ds)
	return float64(ds[n/2]) / 1e3, nil
}

// WriteCoprocReport prints r as a table.
func WriteCoprocReport(w io.Writer, r *CoprocReport) {
	fmt.Fprintf(w, "%-34s %12s %12s %10s\n", "", "on one node", "apart", "ratio")
	row := func(name string, l, a float64, unit string) {
		ratio := "-"
		if l > 0 {
			ratio = fmt.Sprintf("%.1f×", a/l)
		}
		fmt.Fprintf(w, "%-34s %12s %12s %10s\n", name, fmt.Sprintf("%.1f %s", l, unit), fmt.Sprintf("%.1f %s", a, unit), ratio)
	}
	row("pipe round trip (1 byte)", r.Local.PipeRTTUS, r.Apart.PipeRTTUS, "µs")
	row("pipe child → parent", r.Local.ToParentMBps, r.Apart.ToParentMBps, "MB/s")
	row("pipe parent → child", r.Local.ToChildMBps, r.Apart.ToChildMBps, "MB/s")
	row("signal round trip", r.Local.SignalRTTUS, r.Apart.SignalRTTUS, "µs")
	row("wait after the child's exit", r.Local.WaitUS, r.Apart.WaitUS, "µs")
	fmt.Fprintf(w, "\nraw link between the nodes (mutual TLS, loopback): %.0f MB/s, round trip %.1f µs\n", r.TLSMBps, r.TLSRTTUS)
	fmt.Fprintf(w, "move of the child alone: %.1f ms (freeze %.1f ms); of the whole job: %.1f ms (freeze %.1f ms); back home: %.1f ms (freeze %.1f ms)\n",
		r.MoveAloneMs, r.MoveAloneFreezeMs, r.MoveWholeMs, r.MoveWholeFreezeMs, r.ComeHomeMs, r.ComeHomeFreezeMs)
	fmt.Fprintf(w, "fork+exec+wait of true: %.1f ms here, %.1f ms spread to the other node (Sprite: 46 and 81 ms; placed %v)\n",
		r.ForkExecLocalMs, r.ForkExecSpreadMs, r.ForkExecPlaced)
	fmt.Fprintln(w)
	for _, t := range r.Targets {
		met := "not met"
		if t.Met {
			met = "met"
		}
		fmt.Fprintf(w, "target: %-60s %s (want %s): %s\n", t.What, t.Got, t.Want, met)
	}
}
