package agent

import (
	"context"
	"crypto/tls"
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

	"golang.org/x/sys/unix"

	"ferry/internal/dump"
	"ferry/internal/fds"
	"ferry/internal/files"
	"ferry/internal/job"
	"ferry/internal/migrate"
	"ferry/internal/pki"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
)

// agentIO is an agent's end of the pipes to its node.
type agentIO struct {
	enc *Encoder
	dec *Decoder
	mu  sync.Mutex // guards err
	err error      // the first failed emit: the node no longer hears the agent
}

// emit sends ev to the node. A failure is kept (the first one, see
// failed): callbacks that cannot return it go on, and the agent's end
// reports it.
func (a *agentIO) emit(ev Event) error {
	if err := a.enc.Event(ev); err != nil {
		err = fmt.Errorf("agent: send %s event to the node: %w", ev.Kind, err)
		a.mu.Lock()
		if a.err == nil {
			a.err = err
		}
		a.mu.Unlock()
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

// ask emits the question q and waits for the node's answer.
func (a *agentIO) ask(q Kind) (Answer, error) {
	if err := a.emit(Event{Kind: q}); err != nil {
		return Answer{}, err
	}
	return a.dec.Answer(q)
}

// Main is the body of `ferry agent send|recv ...`: fd 3 carries its
// events to the node, fd 4 the node's answers. It returns the process
// exit code.
func Main(ctx context.Context, args []string) int {
	if p := os.Getenv("FERRY_AGENT_CPUPROFILE"); p != "" && len(args) > 0 {
		// Profiling a migration (development): one file per side.
		if f, err := os.Create(p + "." + args[0]); err == nil {
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
	}
	aio := &agentIO{enc: NewEncoder(os.NewFile(3, "events")), dec: NewDecoder(os.NewFile(4, "answers"))}
	// The agent's stderr is the node's: what cannot reach the node as an
	// event is logged there.
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("agent", strings.Join(args[:min(len(args), 1)], ""))
	if err := agentMain(ctx, aio, args); err != nil {
		if eerr := aio.emit(Event{Kind: Failed, Err: EncodeError(err)}); eerr != nil {
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
	control := fs.String("control", "", "recv: the job init's control socket")
	msgSocket := fs.String("msg-socket", "", "recv: the job's message endpoint on this node")
	owner := fs.String("owner", "", "recv: uid:gid:group,... of the job's owner, when not root")
	to := fs.String("to", "", "send: the receiving agent's address")
	pid := fs.Int("pid", 0, "send: the job's main PID, in its namespace")
	mode := fs.String("mode", "freeze", "send: freeze, precopy or postcopy")
	jobID := fs.String("job", "", "send: job id")
	stdio := fs.String("stdio", "", "send: pipe:ID=role,... for the job's standard streams")
	standin := fs.String("standin", "", "a process moved apart from its job: its stand-in's connection, as seen in the job")
	standinExe := fs.String("standin-exe", "", "the ferry executable its stand-in runs, as seen in the job")
	parent := fs.Int("parent", 0, "recv, a process moved apart: its parent's PID, made first as a stand-in")
	parentSession := fs.Bool("parent-session", false, "recv, a process moved apart: its parent's stand-in leads its session")
	leader := fs.Int("leader", 0, "recv, a process moved apart: the leader of its session and group (neither it nor its parent), made first as a stand-in")
	relayed := fs.String("relayed", "", "recv, a process moved apart: role,... of its relayed streams' ends, fds 5, 6, ... (in the image's --stdio roles)")
	into := fs.Int("into", 0, "recv, a process moved apart coming home: its stand-in's PID, the process the image's root is made in (--standin: the stand-in's connection, if that fails)")
	lastPID := fs.Int("last-pid", 0, "recv: the PID the processes forked after the restore continue from (0: after the restored ones)")
	maxFreeze := fs.Duration("max-freeze", 0, "send: precopy stops iterating when the predicted freeze is this short")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	// A receiving agent dies with its node until the new copy runs (its
	// half-built copy dies with it). A sending agent never does: dying
	// with the job frozen could leave a thread mid-step; it rolls back
	// itself when its node is gone (the next question fails) or, past
	// the commit, finishes the migration.
	var tie *job.Tie
	if args[0] == "recv" {
		var err error
		if tie, err = job.TieToParent(); err != nil {
			return err
		}
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
		// The copy it restores lives in this mount namespace: its
		// processes find the job's endpoint on this node where every
		// job does (also those that connect only after the move).
		// Not fatal: the carried connections do not need it; only a
		// process that connects after the move would be refused.
		if args[0] == "recv" && *msgSocket != "" {
			if err := job.MountMsg(*msgSocket); err != nil {
				fmt.Fprintf(os.Stderr, "ferry agent: %v (processes that connect after the move will be refused)\n", err)
			}
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
		rs := recvSetup{listen: *listen, control: *control, msgSocket: *msgSocket, fault: *fault,
			fileCache: fileCache, rules: rules, lastPID: *lastPID}
		if *parent > 0 {
			rs.parent = &restore.Parent{PID: *parent, Session: *parentSession, Path: *standinExe,
				Argv: []string{"ferry", "standin", "--away", "--connect", *standin}, Envp: []string{},
				Leader: *leader, LeaderArgv: []string{"ferry", "standin", "--leader"}}
		}
		if *relayed != "" {
			rs.relayed = strings.Split(*relayed, ",")
		}
		if *into > 0 {
			rs.into = intoStandIn(t, *into, *standinExe, *standin, log)
		}
		return agentRecv(ctx, aio, id, t, tie, rs, hasher, log)
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
		var replace func(context.Context, *dump.Held) error
		if *standin != "" {
			exe, sock := *standinExe, *standin
			replace = func(ctx context.Context, held *dump.Held) error {
				return held.Replace(ctx, exe, []string{"ferry", "standin", "--connect", sock}, []string{})
			}
		}
		return agentSend(ctx, aio, id, t, *to, *pid, h, *maxFreeze, *fault, hasher, replace, log)
	}
	return fmt.Errorf("agent: unknown side %q", args[0])
}

// recvSetup is what the receiving agent's flags say.
type recvSetup struct {
	listen, control, msgSocket, fault, fileCache string
	rules                                        fileRules
	// parent, relayed: a process moved apart from its job (its stand-in
	// parent; the roles of its relayed ends, fds 5, 6, ...).
	parent  *restore.Parent
	relayed []string
	lastPID int
	into    *restore.Into
}

func agentRecv(ctx context.Context, aio *agentIO, id *pki.Identity, t *ptrace.Tracer, tie *job.Tie, rs recvSetup, hasher *files.Hasher, log *slog.Logger) error {
	listen, control, msgSocket, fault, fileCache, rules := rs.listen, rs.control, rs.msgSocket, rs.fault, rs.fileCache, rs.rules
	ln, err := tls.Listen("tcp", listen, id.ServerConfig(ALPN))
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if err := aio.emit(Event{Kind: Listening, Addr: ln.Addr().String()}); err != nil {
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
	var stdio map[string]*os.File
	if rs.relayed == nil {
		stdio = map[string]*os.File{"stdin": os.NewFile(5, "stdin"), "stdout": os.NewFile(6, "stdout"), "stderr": os.NewFile(7, "stderr")}
	} else {
		// A process moved apart has no stdio of the job's here: its
		// ends of the relayed streams stand for what it shared at home.
		// (Only files made for fds that are there: a dropped *os.File
		// closes its fd.)
		stdio = map[string]*os.File{}
		for i, role := range rs.relayed {
			stdio[role] = os.NewFile(uintptr(5+i), role)
		}
	}
	opts := migrate.ReceiveOptions{
		Log:    log,
		Stdio:  stdio,
		Parent: rs.parent,
		Into:   rs.into,
		MsgConnect: func(id string, unread [][]byte) (*os.File, error) {
			return reconnect(msgSocket, id, unread)
		},
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
			if rs.into != nil {
				// Home again, in the job's own namespace: its PIDs go
				// on as they were.
				aio.emit(Event{Kind: Restored, PID: r.PID})
				return
			}
			if rs.lastPID > 0 {
				// A part of a job away from home: its home assigned the
				// PIDs its forks take (they must not meet home's).
				top = rs.lastPID
			}
			if err := job.SetLastPID(top); err != nil {
				aio.emit(Event{Kind: Warning, Message: "set the namespace's last PID: " + err.Error()})
			}
			aio.emit(Event{Kind: Restored, PID: r.PID})
		},
		Committed: func() {
			// Before the new copy runs: its init keeps it from now on,
			// whatever happens to the node.
			if control != "" {
				kctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if err := job.KeepInit(kctx, control); err != nil {
					aio.emit(Event{Kind: Warning, Message: "keep the job's init: " + err.Error()})
				}
				cancel()
			}
			aio.emit(Event{Kind: Committed})
		},
		Released: func() {
			// The new copy runs; its pages may still come from this
			// agent (postcopy, staged precopy pages): it must not die
			// with its node now.
			if err := tie.Cut(); err != nil {
				aio.emit(Event{Kind: Warning, Message: "outlive the node: " + err.Error()})
			}
			aio.emit(Event{Kind: Released})
		},
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
	ev := Event{Kind: Report, PID: res.PID, Report: rep}
	if res.Restore != nil {
		ev.Phases = res.Restore.Phases
	}
	return aio.emit(ev)
}

func agentSend(ctx context.Context, aio *agentIO, id *pki.Identity, t *ptrace.Tracer, to string, pid int, h migrate.Hello, maxFreeze time.Duration, fault string, hasher *files.Hasher, replace func(context.Context, *dump.Held) error, log *slog.Logger) error {
	// Hash the job's files now, while it runs, so that the frozen
	// window only finds them in the cache.
	if hasher != nil {
		hasher.Manifest(files.LivePaths(pid))
		hasher.Save()
	}
	d := tls.Dialer{Config: id.ClientConfig(ALPN), NetDialer: &net.Dialer{Timeout: 10 * time.Second}}
	c, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		return fmt.Errorf("connect to the destination agent %s: %w", to, err)
	}
	// The job's message-endpoint connections: the node names its side of
	// each once the job is frozen (endpoint.go).
	var eps map[uint64]string
	opts := migrate.SendOptions{
		Log:   log,
		Hello: h,
		AfterFreeze: func(ctx context.Context) error {
			var err error
			eps, err = askFrozen(aio)
			return err
		},
		MsgEndpoint: func(s fds.PeerSocket) (string, bool) {
			id, ok := eps[s.PeerIno]
			return id, ok
		},
		BeforeCommit: func(ctx context.Context) error {
			ans, err := aio.ask(BeforeCommit)
			if err != nil {
				return err
			}
			if ans.Err != nil {
				return fmt.Errorf("node: %w", ans.Err.Err())
			}
			return nil
		},
		Resolve: func(ctx context.Context) (bool, error) {
			ans, err := aio.ask(Resolve)
			if err != nil {
				return false, err
			}
			if ans.Err != nil {
				return false, ans.Err.Err()
			}
			return ans.Committed, nil
		},
		Progress:  func(p migrate.Progress) { aio.emit(Event{Kind: Progress, Progress: &p}) },
		Committed: func(r *migrate.Report) { aio.emit(Event{Kind: Committed, Report: r}) },
		// Emitted before the old copy dies: its death ends the job's
		// namespace, this agent included.
		Finished: func(r *migrate.Report) { aio.emit(Event{Kind: Report, Report: r}) },
		Fault:    fault,
		Hasher:   hasher,
		Replace:  replace,
	}
	opts.MaxFreeze = maxFreeze
	rep, err := migrate.Send(ctx, t, c, pid, opts)
	if rep != nil && !rep.Committed {
		aio.emit(Event{Kind: Report, Report: rep})
	}
	return err
}

// intoStandIn is the restore.Into of a process coming home: its stand-in
// (pid, in this namespace) becomes a copy of the restore seed, traced by
// t; if the restore fails it runs its stand-in program again, connected
// at sock, and takes its place as before.
func intoStandIn(t *ptrace.Tracer, pid int, exe, sock string, log *slog.Logger) *restore.Into {
	self, err := os.Executable()
	if err != nil {
		self = exe
	}
	return &restore.Into{
		PID: pid,
		Prepare: func() error {
			fz, err := ptrace.Freeze(pid, 10*time.Second, log)
			if err != nil {
				return err
			}
			if err := fz.ExecTraced(self, []string{"ferry-restore-seed"}, []string{}); err != nil {
				fz.Kill()
				return err
			}
			return nil
		},
		Abort: func(pid int) {
			err := func() error {
				addr, _, err := ptrace.FindSyscall(pid)
				if err != nil {
					return err
				}
				in, err := ptrace.NewInjector(pid, addr)
				if err != nil {
					return err
				}
				if err := in.AvoidTraps(); err != nil {
					return err
				}
				if err := in.Exec(exe, []string{"ferry", "standin", "--connect", sock}, []string{}); err != nil {
					return err
				}
				return ptrace.Detach(pid)
			}()
			if err != nil {
				// Not its stand-in any more: it ends (its parent sees it
				// killed), rather than run as half a restore.
				log.Error("the process coming home could not be its stand-in again", "pid", pid, "err", err)
				unix.Kill(pid, unix.SIGKILL)
			}
		},
	}
}
