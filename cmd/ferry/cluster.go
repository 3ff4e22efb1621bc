package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"ferry/internal/migrate"
	"ferry/internal/node"
)

var socketPath string

func defaultSocket() string {
	if s := os.Getenv("FERRY_SOCKET"); s != "" {
		return s
	}
	return "/var/lib/ferry/ferry.sock"
}

func client() *node.Client {
	c := node.NewClient(socketPath)
	c.Notice = os.Stderr // a follower is told when its node goes away and comes back
	return c
}

func addSocketFlag(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&socketPath, "socket", defaultSocket(), "the local node's control socket (env FERRY_SOCKET)")
}

func nodeCmd() *cobra.Command {
	var cfg node.Config
	var join string
	var faults []string
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run this machine's ferry node daemon",
		Long: "Run the node daemon: it starts and keeps jobs (each in its own PID namespace),\n" +
			"carries their output and input, joins the other nodes (membership over mutual TLS)\n" +
			"and migrates jobs. The CLI talks to it over the unix socket <state>/ferry.sock.\n" +
			"Create the cluster's certificates first with `ferry init`.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.Log = logger()
			if join != "" {
				cfg.Join = strings.Split(join, ",")
			}
			var err error
			if cfg.Faults, err = node.ParseFaults(faults); err != nil {
				return err
			}
			if cfg.Socket == "" && cmd.Flags().Changed("socket") {
				cfg.Socket = socketPath
			}
			n, err := node.New(cfg)
			if err != nil {
				return err
			}
			return n.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.ID, "id", "", "this node's id (as in its certificate)")
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:7400", "address of the node's TLS port (nodes and membership)")
	f.StringVar(&cfg.StateDir, "state", "/var/lib/ferry", "state directory (jobs, logs, control socket)")
	f.StringVar(&cfg.PKIDir, "pki", "", "cluster certificates from `ferry init` (default <state>/pki)")
	f.StringVar(&join, "join", "", "comma-separated addresses of nodes to join")
	f.StringVar(&cfg.Group, "group", "", "group allowed to use the control socket besides root")
	f.BoolVar(&cfg.StopJobs, "stop-jobs", false, "end the node's jobs when it stops (default: they run on, and the next node on this state directory takes them back)")
	f.StringVar(&cfg.Socket, "control", "", "control socket path (default <state>/ferry.sock)")
	f.StringVar(&cfg.Forwarding, "forwarding", "auto", "message forwarding of jobs that choose none: resend, origin, link, update or auto")
	f.StringSliceVar(&faults, "fault", nil, "inject a migration failure: send=NAME or recv=NAME (tests)")
	f.MarkHidden("fault")
	return cmd
}

func runCmd() *cobra.Command {
	var req node.RunRequest
	var detach bool
	cmd := &cobra.Command{
		Use:   "run [--node N] [-d] -- CMD [ARGS...]",
		Short: "Start a managed job (attached: its output here, your input and Ctrl-C to it)",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req.Cmd = args
			req.Dir, _ = os.Getwd()
			req.Env = os.Environ()
			// The job, not this command, decides when it ends: keep
			// Ctrl-C for forwarding.
			ctx := context.WithoutCancel(cmd.Context())
			c := client()
			info, err := c.Run(ctx, req)
			if err != nil {
				return err
			}
			if detach {
				fmt.Println(info.ID)
				return nil
			}
			fmt.Fprintf(os.Stderr, "ferry: job %s runs on %s as pid %d\n", info.ID, info.Node, info.PID)
			return attach(ctx, c, info.ID)
		},
	}
	cmd.Flags().StringVar(&req.Node, "node", "", "node to run on (default: the local one)")
	cmd.Flags().StringVar(&req.Forwarding, "forwarding", "", "the job's message forwarding: resend, origin, link, update or auto (default: its node's)")
	cmd.Flags().StringSliceVar(&req.Spread, "spread", nil, "place each new process of the job running one of these commands (found in its PATH) on the least loaded node as it starts, e.g. --spread cc,gcc")
	cmd.Flags().BoolVar(&req.KeepTogether, "keep-together", false, "refuse to move the job's processes apart (ferry migrate JOB --pid)")
	cmd.Flags().BoolVar(&req.NoSeparateWaiting, "no-separate-waiting", false, "refuse to move apart a process that waits for its children")
	cmd.Flags().BoolVarP(&detach, "detach", "d", false, "print the job id and return")
	addSocketFlag(cmd)
	return cmd
}

// exitError carries a job's exit code out of the CLI.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

// attach follows a job: its output here, this terminal's input and
// signals to it, and its exit code as ours.
func attach(ctx context.Context, c *node.Client, id string) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)
	go func() {
		for s := range sigs {
			if err := c.Signal(ctx, id, int(s.(syscall.Signal))); err != nil {
				fmt.Fprintln(os.Stderr, "ferry:", err)
			}
		}
	}()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := os.Stdin.Read(buf)
			if n > 0 {
				if c.Stdin(ctx, id, buf[:n], false, true) != nil {
					return
				}
			}
			if err != nil {
				if err == io.EOF {
					c.Stdin(ctx, id, nil, true, true)
				}
				return
			}
		}
	}()
	info, err := c.Logs(ctx, id, true, os.Stdout, os.Stderr)
	if err != nil {
		return err
	}
	return jobExit(info)
}

func jobExit(info *node.JobInfo) error {
	switch {
	case info.Exit != nil && *info.Exit != 0:
		return exitError{*info.Exit}
	case info.Signal != "":
		fmt.Fprintf(os.Stderr, "ferry: job %s killed by %s\n", info.ID, info.Signal)
		return exitError{128 + int(unix.SignalNum(info.Signal))}
	case info.State == "lost":
		return fmt.Errorf("job %s lost: %s", info.ID, info.Error)
	}
	return nil
}

func logsCmd() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "logs [-f] JOB",
		Short: "Print a job's output, wherever it runs (with -f: follow it across migrations)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := client().Logs(cmd.Context(), args[0], follow, os.Stdout, os.Stderr)
			if err != nil {
				return err
			}
			if follow {
				return jobExit(info)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow the output until the job ends")
	addSocketFlag(cmd)
	return cmd
}

func psCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List every job of the cluster (yours only, unless you are root)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			jobs, err := client().Jobs(cmd.Context())
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(jobs)
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "JOB\tOWNER\tPID\tMSG ID\tNODE\tHOME\tSTATE\tMEMORY\tMIGRATIONS\tFORWARDING\tQUEUED\tFORWARDED\tCOMMAND")
			for _, j := range jobs {
				st := j.State
				if j.Exit != nil {
					st += fmt.Sprintf(" (%d)", *j.Exit)
				} else if j.Signal != "" {
					st += " (" + j.Signal + ")"
				}
				owner := j.OwnerName
				if owner == "" {
					owner = strconv.FormatUint(uint64(j.Owner), 10)
				}
				// The main process's location-independent id (package
				// msg): the job and its pid in the job's own namespace.
				// An adopted process has no namespace of its own.
				msgID := "-"
				if !j.Adopted && j.PID > 0 {
					msgID = fmt.Sprintf("%s.%d", j.ID, j.PID)
				}
				// Messages on its node now: waiting for its processes
				// (in the node, or held while it was frozen) / sent by it
				// and not yet delivered; and what its node relayed for
				// jobs elsewhere.
				queued, fwd := "-", "-"
				if m := j.Msgs; m != nil {
					queued = fmt.Sprintf("%d/%d", m.Queued+m.Held, m.Outbox)
					fwd = strconv.Itoa(m.Forwarded)
				}
				forwarding := j.Forwarding
				if forwarding == "" {
					forwarding = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", j.ID, owner, j.PID, msgID, j.Node, j.Home, st,
					mib(j.MemoryKiB), j.Migrations, forwarding, queued, fwd, strings.Join(j.Cmd, " "))
				// Its processes that run apart, on other nodes.
				for _, p := range j.Parts {
					fmt.Fprintf(tw, "  %s.%d	%s	%d	%s.%d	%s	%s	%s	-	-	-	-	-	(moved apart)\n", j.ID, p.PID, owner, p.PID, j.ID, p.PID,
						p.Node, j.Home, "running")
				}
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	addSocketFlag(cmd)
	return cmd
}

func mib(kib int64) string {
	if kib == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f MiB", float64(kib)/1024)
}

func killCmd() *cobra.Command {
	var sig string
	cmd := &cobra.Command{
		Use:   "kill [-s SIGNAL] JOB",
		Short: "Send a signal to a job (default SIGTERM), wherever it runs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			n, err := parseSignal(sig)
			if err != nil {
				return err
			}
			return client().Signal(cmd.Context(), args[0], n)
		},
	}
	cmd.Flags().StringVarP(&sig, "signal", "s", "TERM", "signal name or number")
	addSocketFlag(cmd)
	return cmd
}

func parseSignal(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		return n, nil
	}
	s = strings.ToUpper(s)
	if !strings.HasPrefix(s, "SIG") {
		s = "SIG" + s
	}
	if n := unix.SignalNum(s); n != 0 {
		return int(n), nil
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}

func adoptCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "adopt PID",
		Short: "Make a running process that ferry did not start a job, so it can migrate",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pid, err := strconv.Atoi(args[0])
			if err != nil {
				return fmt.Errorf("bad pid %q", args[0])
			}
			info, err := client().Adopt(cmd.Context(), pid)
			if err != nil {
				return err
			}
			fmt.Println(info.ID)
			return nil
		},
	}
	addSocketFlag(cmd)
	return cmd
}

func membersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "members",
		Short: "List the cluster's nodes",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ms, err := client().Members(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tADDRESS\tSTATE")
			for _, m := range ms {
				st := "alive"
				if !m.Alive {
					st = "dead"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", m.ID, m.Addr, st)
			}
			return tw.Flush()
		},
	}
	addSocketFlag(cmd)
	return cmd
}

func migrateCmd() *cobra.Command {
	var req node.MigrateRequest
	var asJSON bool
	var pid int
	cmd := &cobra.Command{
		Use:   "migrate JOB[.PID] --to NODE [--mode freeze|precopy|postcopy] [--pid PID [--alone]]",
		Short: "Move a running job, or one process of it, to another node",
		Long: "Move a running job to another node. With a job and --pid PID (or JOB.PID), only that\n" +
			"process moves (with --alone, one that has no children); the rest of the job stays, and\n" +
			"its parent, signals and pipes keep working across the nodes; a process already apart\n" +
			"moves on to another node, or comes back to its job's home (--to the home node), where it\n" +
			"is one process with its parent again. --pid PID alone adopts a process ferry did not\n" +
			"start and moves it as a job.",
		Args: cobra.RangeArgs(0, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := client()
			ctx := cmd.Context()
			if req.To == "" {
				return errors.New("--to NODE is required")
			}
			if _, err := migrate.ParseMode(req.Mode); err != nil {
				return err
			}
			var id string
			if len(args) == 1 && pid == 0 {
				// JOB.PID: one process of the job (its message id).
				if i := strings.LastIndexByte(args[0], '.'); i > 0 {
					if p, err := strconv.Atoi(args[0][i+1:]); err == nil && p > 0 {
						args[0], pid = args[0][:i], p
					}
				}
			}
			switch {
			case len(args) == 1 && pid > 0:
				id, req.PID = args[0], pid
			case len(args) == 1 && pid == 0:
				id = args[0]
			case len(args) == 0 && pid > 0:
				info, err := c.Adopt(ctx, pid)
				if err != nil {
					return err
				}
				id = info.ID
			default:
				return errors.New("give a job id or --pid PID")
			}
			bar := newProgressBar(os.Stderr, !asJSON)
			rep, err := c.Migrate(ctx, id, req, bar.update)
			bar.done()
			if asJSON && rep != nil {
				if eerr := printJSON(rep); eerr != nil {
					return errors.Join(err, fmt.Errorf("write the report: %w", eerr))
				}
			} else if rep != nil {
				what := "job " + id
				if req.PID > 0 {
					what = fmt.Sprintf("process %s.%d", id, req.PID)
				}
				printReport(os.Stdout, what, req.To, rep)
			}
			return err
		},
	}
	cmd.Flags().StringVar(&req.To, "to", "", "destination node")
	cmd.Flags().StringVar(&req.Mode, "mode", "freeze", "freeze, precopy or postcopy")
	cmd.Flags().DurationVar(&req.MaxFreeze, "max-freeze", 0, "precopy: stop iterating once the predicted freeze is this short")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.Flags().IntVar(&pid, "pid", 0, "with JOB: move only this process of the job (its PID in the job); alone: adopt a process ferry did not start and move it")
	cmd.Flags().BoolVar(&req.Alone, "alone", false, "with --pid: move the process without children (refused if it has any)")
	addSocketFlag(cmd)
	return cmd
}

// printReport says what a migration did; what is "job ID" or "process ID.PID".
func printReport(w io.Writer, what, to string, r *migrate.Report) {
	switch {
	case r.Committed:
		fmt.Fprintf(w, "%s moved to %s (%s): freeze %s, total %s, %s sent",
			what, to, r.Mode, msd(r.FreezeTime), msd(r.Total), human(int64(r.BytesSent)))
		if len(r.Rounds) > 0 {
			fmt.Fprintf(w, ", %d precopy rounds, %d redundant pages", len(r.Rounds), r.RedundantPages)
		}
		if r.Mode == migrate.Postcopy {
			fmt.Fprintf(w, ", %d faults (%d prefetch hits), %d pages pushed, source released after %s",
				r.Faults, r.PrefetchHits, r.PushedPages, msd(r.ResidualEnded))
		}
		fmt.Fprintln(w)
		if len(r.Phases) > 0 {
			parts := make([]string, 0, len(r.Phases))
			for _, p := range r.Phases {
				parts = append(parts, fmt.Sprintf("%s %s", p.Name, msd(p.Took)))
			}
			fmt.Fprintf(w, "  steps: %s\n", strings.Join(parts, ", "))
		}
	case r.Resumed:
		fmt.Fprintf(w, "%s stays on its node, running: the migration did not complete\n", what)
	}
}

func msd(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// progressBar draws one line of migration progress on a terminal.
type progressBar struct {
	w     io.Writer
	on    bool
	drawn bool
	start time.Time
}

func newProgressBar(w io.Writer, on bool) *progressBar {
	if f, ok := w.(*os.File); !ok || !isTerminal(f) {
		on = false
	}
	return &progressBar{w: w, on: on, start: time.Now()}
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (p *progressBar) update(pr migrate.Progress) {
	if !p.on {
		return
	}
	const width = 30
	frac := 0.0
	if pr.TotalBytes > 0 {
		frac = min(1, float64(pr.Bytes)/float64(pr.TotalBytes))
	}
	fill := int(frac * width)
	line := fmt.Sprintf("\r%-8s [%s%s] %s/%s", pr.Phase, strings.Repeat("=", fill), strings.Repeat(" ", width-fill),
		human(int64(pr.Bytes)), human(int64(pr.TotalBytes)))
	if pr.Round > 0 {
		line += fmt.Sprintf("  round %d", pr.Round)
	}
	if pr.DirtyRate > 0 {
		line += fmt.Sprintf("  dirty %s/s", human(int64(pr.DirtyRate)))
	}
	if pr.ETA > 0 {
		line += fmt.Sprintf("  ETA %.1fs", pr.ETA)
	}
	fmt.Fprintf(p.w, "%s\x1b[K", line)
	p.drawn = true
}

func (p *progressBar) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}
