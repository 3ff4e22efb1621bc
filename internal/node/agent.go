package node

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"ferry/internal/files"
	"ferry/internal/job"
	"ferry/internal/migrate"
	"ferry/internal/pki"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
)

// Migration agents. A node runs the two sides of a migration in helper
// processes (`ferry agent send|recv`) started inside the job's PID
// namespace, so that the checkpoint and the restore see the job's own
// PIDs (and a /proc of that namespace). An agent talks to its node over
// two pipes: fd 3 carries events (agent → node), fd 4 commands (node →
// agent), one JSON object per line. The two agents talk to each other
// directly over mutual TLS (ALPN "ferry-migrate").

const alpnMigrate = "ferry-migrate"

// agentEvent is one line from an agent.
type agentEvent struct {
	Event    string            `json:"event"` // listening, restored, committed, progress, before-commit, resolve, report, error
	Addr     string            `json:"addr,omitempty"`
	PID      int               `json:"pid,omitempty"`
	Progress *migrate.Progress `json:"progress,omitempty"`
	Report   *migrate.Report   `json:"report,omitempty"`
	Error    string            `json:"error,omitempty"`
	// Phases of the restore, for the destination node's log.
	Phases []restore.Phase `json:"phases,omitempty"`
}

// agentCommand is one line to an agent.
type agentCommand struct {
	OK        bool   `json:"ok"`
	Committed bool   `json:"committed,omitempty"`
	Error     string `json:"error,omitempty"`
}

type agentIO struct {
	mu  sync.Mutex
	enc *json.Encoder
	cmd *bufio.Scanner
	err error // the first failed emit: the node no longer hears the agent
}

// emit sends ev to the node. A failure is kept (the first one, see
// failed): callbacks that cannot return it go on, and the agent's end
// reports it.
func (a *agentIO) emit(ev agentEvent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := a.enc.Encode(ev); err != nil {
		err = fmt.Errorf("agent: send %s event to the node: %w", ev.Event, err)
		if a.err == nil {
			a.err = err
		}
		return err
	}
	return nil
}

// failed is the first error of emit, nil if every event went out.
func (a *agentIO) failed() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.err
}

// ask emits ev and waits for the node's answer.
func (a *agentIO) ask(ev agentEvent) (agentCommand, error) {
	if err := a.emit(ev); err != nil {
		return agentCommand{}, err
	}
	if !a.cmd.Scan() {
		return agentCommand{}, fmt.Errorf("node gone while waiting for its answer to %s", ev.Event)
	}
	var c agentCommand
	if err := json.Unmarshal(a.cmd.Bytes(), &c); err != nil {
		return c, fmt.Errorf("node answer: %w", err)
	}
	return c, nil
}

// AgentMain is the body of `ferry agent send|recv ...`. It returns the
// process exit code.
func AgentMain(ctx context.Context, args []string) int {
	if p := os.Getenv("FERRY_AGENT_CPUPROFILE"); p != "" && len(args) > 0 {
		// Profiling a migration (development): one file per side.
		if f, err := os.Create(p + "." + args[0]); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	aio := &agentIO{enc: json.NewEncoder(os.NewFile(3, "events")), cmd: bufio.NewScanner(os.NewFile(4, "commands"))}
	// The agent's stderr is the node's: what cannot reach the node as an
	// event is logged there.
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("agent", strings.Join(args[:min(len(args), 1)], ""))
	if err := agentMain(ctx, aio, args); err != nil {
		if eerr := aio.emit(agentEvent{Event: "error", Error: err.Error()}); eerr != nil {
			log.Error("migration agent failed", "err", err, "report", eerr)
		}
		return 1
	}
	if err := aio.failed(); err != nil {
		log.Error("migration agent: the node missed events", "err", err)
		return 1
	}
	return 0
}

func agentMain(ctx context.Context, aio *agentIO, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("agent: want send or recv")
	}
	fs := flag.NewFlagSet("agent "+args[0], flag.ContinueOnError)
	pkiDir := fs.String("pki", "", "cluster certificates")
	nodeID := fs.String("node", "", "this node's id")
	mountProc := fs.Bool("mount-proc", false, "mount a /proc of the job's PID namespace first")
	scratch := fs.String("scratch", "", "the node's scratch directory, bound where jobs see it")
	stateDir := fs.String("state", "", "the node's state directory")
	fault := fs.String("fault", "", "inject a failure (tests)")
	verbose := fs.Bool("verbose", false, "log what the agent does to stderr (the node's log)")
	listen := fs.String("listen", "127.0.0.1:0", "recv: address to listen on")
	owner := fs.String("owner", "", "recv: uid:gid:group,... of the job's owner, when not root")
	to := fs.String("to", "", "send: the receiving agent's address")
	pid := fs.Int("pid", 0, "send: the job's main PID, in its namespace")
	mode := fs.String("mode", "freeze", "send: freeze, precopy or postcopy")
	jobID := fs.String("job", "", "send: job id")
	stdio := fs.String("stdio", "", "send: pipe:ID=role,... for the job's standard streams")
	maxFreeze := fs.Duration("max-freeze", 0, "send: precopy stops iterating when the predicted freeze is this short")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if err := job.DieWithParent(); err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).
			With("agent", args[0], "node", *nodeID)
	}
	if *mountProc {
		if err := job.MountProc(); err != nil {
			return err
		}
		if err := job.MountScratch(*scratch); err != nil {
			return err
		}
	}
	var hasher *files.Hasher
	fileCache := ""
	if *stateDir != "" {
		hasher = &files.Hasher{Cache: filepath.Join(*stateDir, "file-hashes.json")}
		fileCache = filepath.Join(*stateDir, "files")
	}
	id, err := pki.Load(*pkiDir, *nodeID)
	if err != nil {
		return err
	}
	t := ptrace.NewTracer()
	defer t.Close()
	switch args[0] {
	case "recv":
		rules, err := parseFileRules(*owner, *stateDir)
		if err != nil {
			return err
		}
		return agentRecv(ctx, aio, id, t, *listen, *fault, hasher, fileCache, rules, log)
	case "send":
		m, err := migrate.ParseMode(*mode)
		if err != nil {
			return err
		}
		h := migrate.Hello{Job: *jobID, Mode: m, Source: *nodeID, Stdio: map[string]string{}}
		for _, kv := range strings.Split(*stdio, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok {
				h.Stdio[k] = v
			}
		}
		return agentSend(ctx, aio, id, t, *to, *pid, h, *maxFreeze, *fault, hasher, log)
	}
	return fmt.Errorf("agent: unknown side %q", args[0])
}

func agentRecv(ctx context.Context, aio *agentIO, id *pki.Identity, t *ptrace.Tracer, listen, fault string, hasher *files.Hasher, fileCache string, rules fileRules, log *slog.Logger) error {
	ln, err := tls.Listen("tcp", listen, id.ServerConfig(alpnMigrate))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := aio.emit(agentEvent{Event: "listening", Addr: ln.Addr().String()}); err != nil {
		ln.Close()
		return err
	}
	// One source, soon. The accepting goroutine ends when ln is closed;
	// every way out of the wait below joins it (<-ac).
	type accepted struct {
		c   net.Conn
		err error
	}
	ac := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ac <- accepted{c, err}
	}()
	var c net.Conn
	select {
	case a := <-ac:
		if a.err != nil {
			return fmt.Errorf("accept: %w", a.err)
		}
		c = a.c
	case <-time.After(2 * time.Minute):
		ln.Close()
		if a := <-ac; a.c != nil {
			a.c.Close()
		}
		return fmt.Errorf("no source connected within 2 minutes")
	case <-ctx.Done():
		ln.Close()
		if a := <-ac; a.c != nil {
			a.c.Close()
		}
		return ctx.Err()
	}
	ln.Close()
	if err := c.(*tls.Conn).HandshakeContext(ctx); err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	stdio := map[string]*os.File{"stdin": os.NewFile(5, "stdin"), "stdout": os.NewFile(6, "stdout"), "stderr": os.NewFile(7, "stderr")}
	opts := migrate.ReceiveOptions{
		Log:   log,
		Stdio: stdio,
		Restored: func(r *restore.Result) {
			// New children of the job continue the PID sequence as they
			// would have on the source.
			top := 0
			for _, p := range r.Checkpoint.Processes {
				top = max(top, p.PID)
				for _, th := range p.Threads {
					top = max(top, th.TID)
				}
			}
			if err := job.SetLastPID(top); err != nil {
				aio.emit(agentEvent{Event: "warning", Error: err.Error()})
			}
			aio.emit(agentEvent{Event: "restored", PID: r.PID})
		},
		Committed: func() { aio.emit(agentEvent{Event: "committed"}) },
		Released:  func() { aio.emit(agentEvent{Event: "released"}) },
		Fault:     fault,
		Hasher:    hasher,
		FileCache: fileCache,
		Owner:     rules.owner,
		Forbidden: rules.forbidden,
	}
	res, err := migrate.Receive(ctx, t, c, opts)
	if err != nil {
		return err
	}
	rep := &migrate.Report{Job: res.Hello.Job, Mode: res.Hello.Mode, Committed: true}
	if res.Restore != nil {
		rep.RestoreTime = res.Restore.Duration
	}
	if st := res.Pager; st != nil {
		rep.Faults, rep.PrefetchHits = uint64(st.Faults), uint64(st.PrefetchHits)
		rep.PushedPages = uint64(st.PagesCopied)
		rep.ResidualEnded = st.ResidualEnded.Sub(st.Started)
	}
	ev := agentEvent{Event: "report", PID: res.PID, Report: rep}
	if res.Restore != nil {
		ev.Phases = res.Restore.Phases
	}
	return aio.emit(ev)
}

func agentSend(ctx context.Context, aio *agentIO, id *pki.Identity, t *ptrace.Tracer, to string, pid int, h migrate.Hello, maxFreeze time.Duration, fault string, hasher *files.Hasher, log *slog.Logger) error {
	// Hash the job's files now, while it runs, so that the frozen
	// window only finds them in the cache.
	if hasher != nil {
		hasher.Manifest(files.LivePaths(pid))
		hasher.Save()
	}
	d := tls.Dialer{Config: id.ClientConfig(alpnMigrate), NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		return fmt.Errorf("connect to the destination agent %s: %w", to, err)
	}
	opts := migrate.SendOptions{
		Log:   log,
		Hello: h,
		BeforeCommit: func(ctx context.Context) error {
			ans, err := aio.ask(agentEvent{Event: "before-commit"})
			if err != nil {
				return err
			}
			if !ans.OK {
				return fmt.Errorf("node: %s", ans.Error)
			}
			return nil
		},
		Resolve: func(ctx context.Context) (bool, error) {
			ans, err := aio.ask(agentEvent{Event: "resolve"})
			if err != nil {
				return false, err
			}
			if ans.Error != "" {
				return false, fmt.Errorf("%s", ans.Error)
			}
			return ans.Committed, nil
		},
		Progress:  func(p migrate.Progress) { aio.emit(agentEvent{Event: "progress", Progress: &p}) },
		Committed: func(r *migrate.Report) { aio.emit(agentEvent{Event: "committed", Report: r}) },
		// Emitted before the old copy dies: its death ends the job's
		// namespace, this agent included.
		Finished: func(r *migrate.Report) { aio.emit(agentEvent{Event: "report", Report: r}) },
		Fault:    fault,
		Hasher:   hasher,
	}
	opts.MaxFreeze = maxFreeze
	rep, err := migrate.Send(ctx, t, c, pid, opts)
	if rep != nil && !rep.Committed {
		aio.emit(agentEvent{Event: "report", Report: rep})
	}
	return err
}
