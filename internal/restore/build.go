package restore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/fds"
	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

const scratchSize = 256 << 10

// traceOptions are the ptrace options of the seed, which every process
// and thread it makes inherits.
const traceOptions = unix.PTRACE_O_TRACECLONE | unix.PTRACE_O_TRACEFORK | unix.PTRACE_O_TRACEVFORK |
	unix.PTRACE_O_EXITKILL | unix.PTRACE_O_TRACESYSGOOD

// callBatchSize is the part of the scratch memory that holds batches of
// injected calls (ptrace.Injector.Batch).
const callBatchSize = 64 << 10

// tree reinstates a process tree. All methods run on the tracer thread.
type tree struct {
	log     *slog.Logger
	opts    Options
	fr      *fds.Restorer
	objects map[string]*os.File
	res     *Result

	procs []*builder // parents first
	byPID map[int]*builder
	// lazy holds the lazy VMAs by image pid (Options.Lazy, lazy.go).
	lazy map[int][]image.LazyVMA
	// own are ferry's capability sets and the kernel's last capability,
	// read once (creds).
	own     *procfs.ProcStatus
	lastCap int
	// segments are the System V segments the tree attaches, by id, once
	// found or made again (sysv.go).
	segments map[int]*segment
	// semMade are the System V semaphore sets made again (sem.go),
	// removed if the restore fails.
	semMade []int
	// parent is the root's stand-in parent (Options.Parent), 0 if none,
	// and its injector.
	parent    int
	parentInj *ptrace.Injector
	// leader, leaderInj: the session leader's stand-in (Parent.Leader).
	leader    int
	leaderInj *ptrace.Injector
	// into: the existing process the root is made in (Options.Into).
	into int
}

// builder reinstates one process of the tree.
type builder struct {
	*tree
	p *image.Process

	pid     int   // the new process
	tids    []int // its threads, leader first
	lead    *ptrace.Injector
	inj     map[int]*ptrace.Injector
	scratch uint64
	tpidfd  uint64 // the target's pidfd for ferry, to pull files in
	// sessionDone: setsid/setpgid of session() ran (it may wait for
	// children that stay in the old session).
	sessionDone bool
	// zombiePID is the PID a zombie had once it exited (pid is 0 then):
	// still the id of its process group and session until reaped.
	zombiePID int
	tfds      map[string]uint64

	// uffd is ferry's copy of the target's userfaultfd while pages are
	// filled (-1: none), registered on uffdRanges (sorted).
	uffd       int
	uffdRanges []kernel.UffdioRange

	// With Options.StagedLazy: the ranges the image's pages were written
	// to (guarded by the fill's mutex while it runs), and the staged pages
	// written eagerly all the same (sorted), see staged.go.
	written []unix.RemoteIovec
	eager   []uint64

	// deferred: created late, forked from its parent once the parent's
	// pages are in (copy-on-write sharing, cow.go); created: it exists.
	deferred, created bool
}

// abort kills every process created so far.
func (t *tree) abort() {
	t.closeLazy()
	defer t.dropSegments() // once its processes, which attach them, are gone
	defer t.dropSemSets()
	for i := len(t.procs) - 1; i >= 0; i-- {
		b := t.procs[i]
		b.endUffd()
		if b.pid <= 0 {
			continue
		}
		if b.pid == t.into && t.opts.Into != nil {
			t.opts.Into.Abort(b.pid)
			continue
		}
		killReap(b.pid)
	}
	t.killParent()
}

// killReap kills a traced process of the restore and waits until it is
// gone.
func killReap(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	for {
		ws, err := ptrace.Wait(pid)
		if err != nil || ws.Exited() || ws.Signaled() {
			return
		}
	}
}

// killParent kills the root's stand-in parent, if there is one still
// traced.
func (t *tree) killParent() {
	if t.parent > 0 {
		killReap(t.parent)
		t.parent = 0
	}
	if t.leader > 0 {
		killReap(t.leader)
		t.leader = 0
	}
}

// makeParent clones the root's stand-in parent out of the seed (in):
// its PID, a session of its own if asked — or, with a Leader, out of a
// first stand-in with the leader's PID that leads the session and group
// they are both in. It returns the parent's injector, whose scratch is
// the seed's page (the clone's copy).
func (b *builder) makeParent(in *ptrace.Injector, sc uint64, addr uint64) (*ptrace.Injector, error) {
	want := b.opts.Parent
	from, flags, exit := in, uint64(unix.CLONE_PARENT), uint64(0)
	if want.Leader > 0 && want.Leader != want.PID {
		pid, lin, err := cloneStandIn(in, want.Leader, flags, exit, sc, addr)
		if pid > 0 {
			b.tree.leader = pid
		}
		if err != nil {
			return nil, fmt.Errorf("the session leader's stand-in %d: %w", want.Leader, err)
		}
		if _, err := lin.Syscall(unix.SYS_SETSID); err != nil {
			return nil, fmt.Errorf("the session leader's stand-in %d: setsid: %w", want.Leader, err)
		}
		b.tree.leaderInj = lin
		from, flags, exit = lin, 0, uint64(unix.SIGCHLD)
	}
	pid, pin, err := cloneStandIn(from, want.PID, flags, exit, sc, addr)
	if pid > 0 {
		b.tree.parent = pid
	}
	if err != nil {
		return nil, fmt.Errorf("the root's stand-in parent %d: %w", want.PID, err)
	}
	if want.Session && b.tree.leader == 0 {
		if _, err := pin.Syscall(unix.SYS_SETSID); err != nil {
			return nil, fmt.Errorf("the root's stand-in parent: setsid: %w", err)
		}
	}
	b.tree.parentInj = pin
	return pin, nil
}

// cloneStandIn clones a process with PID pid out of the one in injects
// into (clone3 flags and exit signal), traced, and returns its injector.
func cloneStandIn(in *ptrace.Injector, pid int, flags, exit uint64, sc, addr uint64) (int, *ptrace.Injector, error) {
	ca := kernel.CloneArgs{Flags: flags, ExitSignal: exit, SetTID: sc + 256, SetTIDSize: 1}
	if _, err := in.ScratchAt(256, le64(uint64(pid))); err != nil {
		return 0, nil, err
	}
	argAddr, err := in.Scratch(kernel.Bytes(&ca))
	if err != nil {
		return 0, nil, err
	}
	got, err := cloneWithPID(pid, func() (uint64, error) {
		return in.Syscall(unix.SYS_CLONE3, argAddr, kernel.CloneArgsSize)
	})
	if err != nil {
		return 0, nil, err
	}
	ws, err := ptrace.Wait(int(got))
	if err != nil {
		return int(got), nil, err
	}
	if !ws.Stopped() {
		return int(got), nil, fmt.Errorf("%s", ptrace.Describe(ws))
	}
	// Its exec must not raise a SIGTRAP (it was not seized).
	if err := unix.PtraceSetOptions(int(got), traceOptions|unix.PTRACE_O_TRACEEXEC); err != nil {
		return int(got), nil, fmt.Errorf("options: %w", err)
	}
	pin, err := ptrace.NewInjector(int(got), addr)
	if err != nil {
		return int(got), nil, err
	}
	if err := pin.AvoidTraps(); err != nil {
		return int(got), nil, err
	}
	pin.SetScratch(sc, 4096)
	return int(got), pin, nil
}

// startParent turns the root's stand-in parent (and the session
// leader's, if any) into its program and lets it run (Options.Parent).
func (t *tree) startParent() error {
	if t.leader > 0 {
		p := t.opts.Parent
		if err := execStandIn(t.leader, t.leaderInj, p.Path, p.LeaderArgv, p.Envp); err != nil {
			return fmt.Errorf("the session leader's stand-in %d: %w", t.leader, err)
		}
		t.leader = 0
	}
	if t.parent <= 0 {
		return nil
	}
	p := t.opts.Parent
	if err := execStandIn(t.parent, t.parentInj, p.Path, p.Argv, p.Envp); err != nil {
		return fmt.Errorf("the root's stand-in parent %d: %w", t.parent, err)
	}
	t.parent = 0
	return nil
}

// execStandIn makes pid (traced, in) run path and lets it go. It is a
// copy of the seed: whatever the seed holds (the restoring program's own
// descriptors: its pipes to its node, the ends the tree inherits) must
// not live on in the stand-in, where it would keep a pipe from ever
// reading EOF. Its standard streams stay.
func execStandIn(pid int, in *ptrace.Injector, path string, argv, envp []string) error {
	fds, err := procfs.FDs(pid)
	if err != nil {
		return err
	}
	for _, fd := range fds {
		if fd > 2 {
			if _, err := in.Syscall(unix.SYS_CLOSE, uint64(fd)); err != nil {
				return fmt.Errorf("close fd %d: %w", fd, err)
			}
		}
	}
	if err := in.Exec(path, argv, envp); err != nil {
		return err
	}
	if _, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_DETACH, uintptr(pid), 0, 0, 0, 0); e != 0 {
		return fmt.Errorf("detach: %w", e)
	}
	return nil
}

func (t *tree) build(ctx context.Context, r *image.Reader, pending *image.Record) error {
	mark := time.Now()
	phase := func(name string) {
		took := time.Since(mark)
		t.log.Debug("restore phase", "phase", name, "took", took)
		t.res.Phases = append(t.res.Phases, Phase{name, took})
		mark = time.Now()
	}
	// 1. Every process, parents first, while each is still a copy of the
	// seed: a child is cloned from its parent's new copy, so the parent
	// relation (and wait4) hold.
	for _, p := range t.res.Checkpoint.Processes {
		b := &builder{tree: t, p: p, uffd: -1}
		t.procs = append(t.procs, b)
		t.byPID[p.PID] = b
	}
	if err := image.CheckSessions(t.res.Checkpoint.Processes); err != nil {
		return err
	}
	deferred := t.markDeferred()
	if deferred && (t.opts.Staged != nil || t.opts.Lazy || len(t.lazy) > 0) {
		return errors.New("restore: an image with pages shared copy-on-write (a whole image) cannot be combined with staged or lazy pages")
	}
	// t.procs stays in image order (the order of the pages); processes are
	// cloned in creation order (image.CreationOrder: sessions).
	order := image.CreationOrder(t.res.Checkpoint.Processes)
	creators := image.Creators(t.res.Checkpoint.Processes)
	for i, p := range order {
		b := t.byPID[p.PID]
		if b.deferred {
			continue // createLate, once its parent's pages are in (cow.go)
		}
		var err error
		if i == 0 {
			err = b.create()
		} else {
			// Its parent, or the zombie leader of its session it was
			// forked from (image.Creators; a zombie is created live and
			// exits below).
			parent := t.byPID[creators[p.PID]]
			if parent == nil || parent.p.Zombie && creators[p.PID] == p.PPID {
				return fmt.Errorf("process %d: its parent %d is not in the image: %w", p.PID, p.PPID, image.ErrMalformed)
			}
			// A child in its parent's new session is cloned after the
			// parent's setsid, one still in the old session before.
			if p.SID == parent.p.PID && !parent.sessionDone {
				if err := parent.session(); err != nil {
					return err
				}
			}
			err = b.createFrom(parent)
		}
		if err != nil {
			return err
		}
		b.created = true
		if i == 0 {
			t.res.PID = b.pid
		}
		if !b.waitsForOldSession() {
			if err := b.session(); err != nil {
				return err
			}
		}
	}
	for _, b := range t.procs {
		if b.created && !b.sessionDone {
			if err := b.session(); err != nil {
				return err
			}
		}
	}
	// Members of a group whose leader was created after them (a sibling,
	// a zombie's group) join it now that every process exists.
	for _, b := range t.procs {
		if !b.created {
			continue
		}
		if err := b.joinGroup(); err != nil {
			return err
		}
	}
	if err := t.checkSessions(); err != nil {
		return err
	}
	phase("create processes")
	// A subreaper that gets a child of a zombie leader when the leader
	// exits is one before (image.Creators).
	for _, p := range t.res.Checkpoint.Processes {
		if c, ok := creators[p.PID]; ok && c != p.PPID {
			sr := t.byPID[p.PPID]
			if _, err := sr.lead.Syscall(unix.SYS_PRCTL, kernel.PR_SET_CHILD_SUBREAPER, 1); err != nil {
				return fmt.Errorf("process %d: child subreaper for %d: %w", sr.p.PID, p.PID, err)
			}
		}
	}
	// Zombies exit now, after their siblings exist.
	for _, b := range t.procs {
		if b.p.Zombie && !b.deferred {
			if err := b.makeZombie(); err != nil {
				return err
			}
		}
	}
	live := make([]*builder, 0, len(t.procs))
	for _, b := range t.procs {
		if !b.p.Zombie {
			live = append(live, b)
		}
	}
	// 2. Address spaces.
	for _, b := range live {
		if b.deferred {
			continue // createLate
		}
		if err := b.clearAddressSpace(nil); err != nil {
			return err
		}
		// The exe link can only change while the old executable is
		// unmapped, and the image may map the same file (the workload is
		// ferry itself).
		if err := b.setMM(false); err != nil {
			return err
		}
		if err := b.mapVMAs(); err != nil {
			return err
		}
		b.fillUffd()
	}
	phase("address spaces")
	// 3. Pages sent ahead (precopy), then the image's, as they stream in.
	if t.opts.Staged != nil {
		if err := t.fillStaged(ctx, live); err != nil {
			return err
		}
		phase("staged pages")
	}
	err := t.fillPages(ctx, r, pending)
	for _, b := range live {
		if uerr := b.endUffd(); err == nil {
			err = uerr
		}
	}
	if err != nil {
		return err
	}
	phase("pages")
	// Segments that had been removed (IPC_RMID) are removed again, now
	// that every process of the tree has attached them.
	if err := t.removeSegments(); err != nil {
		return err
	}
	// System V semaphore adjustments, before the threads are made: they
	// share the leader's list (CLONE_SYSVSEM).
	if err := t.semSets(live); err != nil {
		return err
	}
	// 4. The rest of each process's state.
	for _, b := range live {
		steps := []func() error{b.protect, b.installFDs, b.processAttrs, b.threads,
			// After the threads: a timer may signal one (SIGEV_THREAD_ID).
			b.signalsAndTimers, b.finish}
		for _, step := range steps {
			if err := step(); err != nil {
				return fmt.Errorf("process %d: %w", b.p.PID, err)
			}
		}
	}
	// Queues whose messages carry credentials, which may name only a
	// live process: now that the tree exists.
	if err := t.fr.FillLate(); err != nil {
		return fmt.Errorf("file descriptors: %w", err)
	}
	// Signal-driven I/O last: its owner may be any thread of the tree.
	if err := t.fr.SignalIO(); err != nil {
		return fmt.Errorf("file descriptors: %w", err)
	}
	phase("state")
	if t.opts.Staged != nil && t.opts.StagedLazy {
		if err := t.stagedLazy(live); err != nil {
			return err
		}
	}
	if t.opts.Lazy || len(t.lazy) > 0 {
		if err := t.startLazy(live); err != nil {
			return err
		}
		phase("lazy memory")
	}
	// 5. Let them all run, unless the caller holds them for a commit.
	if t.opts.Hold {
		t.res.Held = &Held{tree: t, live: live}
		return nil
	}
	return t.release(live)
}

// release detaches every live process; from then on they are not ours to
// kill.
func (t *tree) release(live []*builder) error {
	if err := t.startParent(); err != nil {
		return err
	}
	// Children first: a parent that had taken a stopped child's report
	// takes the new one away again before it is let go (stopReports).
	for i := len(live) - 1; i >= 0; i-- {
		b := live[i]
		if err := b.stopReports(); err != nil {
			return fmt.Errorf("process %d: %w", b.p.PID, err)
		}
		if err := b.detach(); err != nil {
			return err
		}
	}
	for _, b := range t.procs {
		b.pid = 0
	}
	return nil
}

// create starts the seed and clones the new process out of it with the
// original PID.
func (b *builder) create() error {
	if b.opts.Into != nil && b == b.tree.procs[0] {
		return b.createInto()
	}
	seed := exec.Command("/proc/self/exe")
	seed.Args = []string{"ferry-restore-seed"}
	seed.Env = []string{}
	seed.SysProcAttr = &syscall.SysProcAttr{Ptrace: true, Pdeathsig: syscall.SIGKILL}
	if err := seed.Start(); err != nil {
		return fmt.Errorf("start restore seed: %w", err)
	}
	spid := seed.Process.Pid
	seed.Process.Release()
	defer killReap(spid)
	ws, err := ptrace.Wait(spid)
	if err != nil {
		return err
	}
	if !ws.Stopped() {
		return fmt.Errorf("restore seed: %s", ptrace.Describe(ws))
	}
	if err := unix.PtraceSetOptions(spid, traceOptions); err != nil {
		return fmt.Errorf("restore seed options: %w", err)
	}
	addr, _, err := ptrace.FindSyscall(spid)
	if err != nil {
		return err
	}
	in, err := ptrace.NewInjector(spid, addr)
	if err != nil {
		return err
	}
	sc, err := in.Syscall(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("seed scratch: %w", err)
	}
	in.SetScratch(sc, 4096)
	ca := kernel.CloneArgs{Flags: unix.CLONE_PARENT}
	if !b.opts.NewPIDs {
		ca.SetTID, ca.SetTIDSize = sc+256, 1
		if _, err := in.ScratchAt(256, le64(uint64(b.p.PID))); err != nil {
			return err
		}
	}
	argAddr, err := in.Scratch(kernel.Bytes(&ca))
	if err != nil {
		return err
	}
	from := in
	if b.opts.Parent != nil {
		// The root is the stand-in parent's child: cloned out of it,
		// without CLONE_PARENT, telling it its end by SIGCHLD.
		if from, err = b.makeParent(in, sc, addr); err != nil {
			return err
		}
		ca.Flags, ca.ExitSignal = 0, uint64(unix.SIGCHLD)
		if !b.opts.NewPIDs {
			if _, err := from.ScratchAt(256, le64(uint64(b.p.PID))); err != nil {
				return err
			}
		}
		if argAddr, err = from.Scratch(kernel.Bytes(&ca)); err != nil {
			return err
		}
	}
	child, err := cloneWithPID(b.p.PID, func() (uint64, error) {
		return from.Syscall(unix.SYS_CLONE3, argAddr, kernel.CloneArgsSize)
	})
	if err != nil {
		if errors.Is(err, ErrPIDTaken) {
			return err
		}
		return fmt.Errorf("clone3 in restore seed: %w", err)
	}
	b.pid = int(child)
	b.fr.MapPID(b.p.PID, b.pid)
	b.tids = []int{b.pid}
	// The child was attached automatically; collect its first stop.
	ws, err = ptrace.Wait(b.pid)
	if err != nil {
		return err
	}
	if !ws.Stopped() {
		return fmt.Errorf("new process %d: %s", b.pid, ptrace.Describe(ws))
	}
	b.lead, err = ptrace.NewInjector(b.pid, addr)
	if err != nil {
		return err
	}
	// The new process inherited the seed's scratch page.
	b.lead.SetScratch(sc, 4096)
	b.inj = map[int]*ptrace.Injector{b.pid: b.lead}
	return nil
}

// createInto makes the root in the existing process of Options.Into,
// turned into a copy of the seed: its PID, its parent, its session and
// group are already the root's.
func (b *builder) createInto() error {
	in := b.opts.Into
	if in.PID != b.p.PID {
		return fmt.Errorf("the image's root is %d, not %d: %w", b.p.PID, in.PID, image.ErrMalformed)
	}
	if err := in.Prepare(); err != nil {
		return fmt.Errorf("make process %d ready for its own restore: %w", in.PID, err)
	}
	b.tree.into = in.PID
	pid := in.PID
	if err := unix.PtraceSetOptions(pid, traceOptions); err != nil {
		return fmt.Errorf("process %d options: %w", pid, err)
	}
	addr, _, err := ptrace.FindSyscall(pid)
	if err != nil {
		return err
	}
	inj, err := ptrace.NewInjector(pid, addr)
	if err != nil {
		return err
	}
	sc, err := inj.Syscall(unix.SYS_MMAP, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		return fmt.Errorf("scratch in %d: %w", pid, err)
	}
	inj.SetScratch(sc, 4096)
	b.pid = pid
	b.fr.MapPID(b.p.PID, pid)
	b.tids = []int{pid}
	b.lead = inj
	b.inj = map[int]*ptrace.Injector{pid: inj}
	return nil
}

// createFrom clones b's process out of its parent's new copy, which is
// still a copy of the seed.
func (b *builder) createFrom(parent *builder) error {
	ca := kernel.CloneArgs{ExitSignal: uint64(unix.SIGCHLD)}
	if b.p.FilesOf != 0 {
		if b.p.FilesOf != parent.p.PID {
			return fmt.Errorf("process %d shares the fd table of %d, not its parent's: %w", b.p.PID, b.p.FilesOf, image.ErrMalformed)
		}
		ca.Flags |= unix.CLONE_FILES // the parent installs the table
	}
	if b.p.FSOf != 0 {
		if b.p.FSOf != parent.p.PID {
			return fmt.Errorf("process %d shares the cwd/umask of %d, not its parent's: %w", b.p.PID, b.p.FSOf, image.ErrMalformed)
		}
		ca.Flags |= unix.CLONE_FS // one cwd, root and umask with the parent
	}
	sc, _ := parent.lead.ScratchAddr()
	if !b.opts.NewPIDs {
		ca.SetTID, ca.SetTIDSize = sc+256, 1
		if _, err := parent.lead.ScratchAt(256, le64(uint64(b.p.PID))); err != nil {
			return err
		}
	}
	argAddr, err := parent.lead.Scratch(kernel.Bytes(&ca))
	if err != nil {
		return err
	}
	child, err := cloneWithPID(b.p.PID, func() (uint64, error) {
		return parent.lead.Syscall(unix.SYS_CLONE3, argAddr, kernel.CloneArgsSize)
	})
	if err != nil {
		if errors.Is(err, ErrPIDTaken) {
			return err
		}
		return fmt.Errorf("clone3 child %d of %d: %w", b.p.PID, parent.p.PID, err)
	}
	b.pid = int(child)
	b.fr.MapPID(b.p.PID, b.pid)
	b.tids = []int{b.pid}
	ws, err := ptrace.Wait(b.pid)
	if err != nil {
		return err
	}
	if !ws.Stopped() {
		return fmt.Errorf("new process %d: %s", b.pid, ptrace.Describe(ws))
	}
	if b.lead, err = ptrace.NewInjector(b.pid, parent.lead.Addr); err != nil {
		return err
	}
	b.lead.SetScratch(sc, 4096)
	b.inj = map[int]*ptrace.Injector{b.pid: b.lead}
	return nil
}

// makeZombie ends a process that was a zombie in the image the way it
// ended then, so that its restored parent can reap it.
func (b *builder) makeZombie() error {
	ws := unix.WaitStatus(b.p.ExitStatus)
	if ws.Signaled() {
		if err := kernel.PtraceSetSigmask(b.pid, 0); err != nil {
			return err
		}
		if err := unix.PtraceCont(b.pid, int(ws.Signal())); err != nil {
			return fmt.Errorf("zombie %d: %w", b.p.PID, err)
		}
		for {
			w, err := ptrace.Wait(b.pid)
			if err != nil {
				return err
			}
			if w.Exited() || w.Signaled() {
				b.zombiePID, b.pid = b.pid, 0
				return nil
			}
			unix.PtraceCont(b.pid, 0)
		}
	}
	_, err := b.lead.Syscall(unix.SYS_EXIT_GROUP, uint64(ws.ExitStatus()))
	if err == nil || !errors.Is(err, ptrace.ErrExited) {
		return fmt.Errorf("zombie %d: exit_group did not end it: %v", b.p.PID, err)
	}
	b.zombiePID, b.pid = b.pid, 0
	return nil
}

func holder(pid int) string {
	st, err := procfs.Stat(pid)
	if err != nil {
		return ""
	}
	if st.State == 'Z' {
		return fmt.Sprintf(" by %q, a zombie its parent (pid %d) has not reaped", st.Comm, st.PPID)
	}
	return fmt.Sprintf(" by %q", st.Comm)
}

// zombieWait bounds how long restore waits for a zombie that holds a PID
// to be reaped. Right after a tree is dumped and killed, its children are
// zombies until init reaps them (about 1.4 s on these machines).
const zombieWait = 5 * time.Second

// cloneWithPID runs clone (an injected clone3 with set_tid=[pid]) and, if
// the PID is held by a zombie, waits for it to be reaped and tries again,
// for zombieWait at most. A PID held by a live task fails at once; one
// whose holder /proc does not show (a task of another PID namespace, or
// one gone between the clone and the look) is tried again until the same
// deadline. Either way the error wraps ErrPIDTaken and unix.EEXIST and
// names the PID and its holder.
func cloneWithPID(pid int, clone func() (uint64, error)) (uint64, error) {
	return cloneRetry(pid, clone, procfs.Stat, zombieWait, 20*time.Millisecond)
}

// cloneRetry is cloneWithPID with the look-up of the holder, the deadline
// and the pause between tries passed in.
func cloneRetry(pid int, clone func() (uint64, error), stat func(int) (*procfs.ProcStat, error), wait, pause time.Duration) (uint64, error) {
	deadline := time.Now().Add(wait)
	for {
		r, err := clone()
		if !errors.Is(err, unix.EEXIST) {
			return r, err
		}
		st, serr := stat(pid)
		if serr == nil && st.State != 'Z' {
			return r, pidTaken(pid, st, nil, 0, err)
		}
		if time.Now().After(deadline) {
			return r, pidTaken(pid, st, serr, wait, err)
		}
		time.Sleep(pause)
	}
}

// pidTaken is the error of a clone3 that could not get pid: held by st
// (nil when /proc did not show it, serr why), after waiting waited.
func pidTaken(pid int, st *procfs.ProcStat, serr error, waited time.Duration, err error) error {
	var by string
	switch {
	case st == nil:
		by = fmt.Sprintf(" by a task /proc does not show (%v)", serr)
	case st.State == 'Z':
		by = fmt.Sprintf(" by %q, a zombie its parent (pid %d) has not reaped", st.Comm, st.PPID)
	default:
		by = fmt.Sprintf(" by %q (state %c, parent %d)", st.Comm, st.State, st.PPID)
	}
	if waited > 0 {
		by += fmt.Sprintf(" after waiting %v", waited)
	}
	return fmt.Errorf("restore pid %d: %w%s (use --new-pids to accept a new one): %w", pid, ErrPIDTaken, by, err)
}

// waitsForOldSession reports whether b's setsid must wait: b leads a
// session of its own and a child not created yet stayed in the old one
// (one cloned in the same pass: a deferred child of a process that is not
// deferred is cloned only after every setsid of the first pass).
func (b *builder) waitsForOldSession() bool {
	if b.p.SID != b.p.PID {
		return false
	}
	for _, c := range b.tree.procs {
		if c.p.PPID == b.p.PID && c != b && c.p.SID != b.p.PID && !c.created && c.deferred == b.deferred {
			return true
		}
	}
	return false
}

// checkSessions verifies every process created so far is in its image
// session (checkSession).
func (t *tree) checkSessions() error {
	for _, b := range t.procs {
		if b.created {
			if err := b.checkSession(); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkSession verifies b's process is in its image session: one led in
// the tree by that leader, one led from outside by the root's (what
// image.CheckSessions promised).
func (b *builder) checkSession() error {
	st, err := procfs.Stat(b.pid)
	if err != nil {
		return err
	}
	want := st.Session
	if l := b.tree.byPID[b.p.SID]; l != nil {
		want = l.idPID()
	} else if root := b.tree.procs[0]; b != root {
		rst, err := procfs.Stat(root.pid)
		if err != nil {
			return err
		}
		want = rst.Session
	}
	if st.Session != want {
		return fmt.Errorf("process %d: its session %d was not recreated (restored in session %d, parent %d): %w",
			b.p.PID, b.p.SID, st.Session, b.p.PPID, image.ErrSession)
	}
	return nil
}

// idPID is the PID b's process has or, a zombie now, had: the id of the
// groups and sessions it leads.
func (b *builder) idPID() int {
	if b.pid == 0 {
		return b.zombiePID
	}
	return b.pid
}

func (b *builder) session() error {
	b.sessionDone = true
	if b.pid != 0 && b.pid == b.tree.into {
		return nil // its session and group are in place
	}
	p := b.p
	switch {
	case p.SID == p.PID:
		if _, err := b.lead.Syscall(unix.SYS_SETSID); err != nil {
			return fmt.Errorf("setsid: %w", err)
		}
	case p.PGID == p.PID:
		if _, err := b.lead.Syscall(unix.SYS_SETPGID, 0, 0); err != nil {
			return fmt.Errorf("setpgid: %w", err)
		}
	}
	return nil
}

// joinGroup moves a process into its image's process group when it did
// not inherit it: a group led in the tree (its leader may have been
// created after it), or the root's when that is led from outside.
func (b *builder) joinGroup() error {
	p := b.p
	if p.PGID == p.PID || p.SID == p.PID {
		return nil
	}
	var want int
	if leader := b.tree.byPID[p.PGID]; leader != nil {
		want = leader.idPID()
	} else if root := b.tree.procs[0]; p.PGID == root.p.PGID && b != root {
		st, err := procfs.Stat(root.pid)
		if err != nil {
			return err
		}
		want = st.PGRP
	} else {
		return nil // the root's own outside group: whatever it is in
	}
	st, err := procfs.Stat(b.pid)
	if err != nil {
		return err
	}
	if st.PGRP == want {
		return nil
	}
	if _, err := b.lead.Syscall(unix.SYS_SETPGID, 0, uint64(want)); err != nil {
		return fmt.Errorf("process %d (session %d, group %d): join process group %d (%d here): %w", p.PID, st.Session, st.PGRP, p.PGID, want, err)
	}
	return nil
}

func isSpecial(kind string) bool {
	switch kind {
	case image.VMAVDSO, image.VMAVVar, image.VMAVVarVclock, image.VMAVsyscall:
		return true
	}
	return false
}

// clearAddressSpace unmaps the seed's mappings, maps scratch memory where
// the image has none, and moves the vDSO block to the image's address.
// The ranges in keep (sorted) stay: a process forked late keeps what it
// inherited (cow.go).
func (b *builder) clearAddressSpace(keep [][2]uint64) error {
	maps, err := procfs.Maps(b.pid)
	if err != nil {
		return err
	}
	var cur []procfs.Mapping
	for _, m := range maps {
		switch m.Name {
		case "[vdso]", "[vvar]", "[vvar_vclock]":
			cur = append(cur, m)
			continue
		case "[vsyscall]":
			continue
		}
		for _, r := range subtract([][2]uint64{{m.Start, m.End}}, keep) {
			if _, err := b.lead.Syscall(unix.SYS_MUNMAP, r[0], r[1]-r[0]); err != nil {
				return fmt.Errorf("unmap seed mapping %#x: %w", r[0], err)
			}
		}
	}
	var want []image.VMA
	var busy [][2]uint64
	for _, v := range b.p.VMAs {
		busy = append(busy, [2]uint64{v.Start, v.End})
		if v.Kind == image.VMAVDSO || v.Kind == image.VMAVVar || v.Kind == image.VMAVVarVclock {
			want = append(want, v)
		}
	}
	for _, m := range cur {
		busy = append(busy, [2]uint64{m.Start, m.End})
	}
	sc := hole(busy, scratchSize)
	if sc == 0 {
		return fmt.Errorf("no room for scratch memory")
	}
	got, err := b.lead.Syscall(unix.SYS_MMAP, sc, scratchSize, unix.PROT_READ|unix.PROT_WRITE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_FIXED_NOREPLACE, ^uint64(0), 0)
	if err != nil || got != sc {
		return fmt.Errorf("map scratch at %#x: %v", sc, err)
	}
	b.scratch = sc
	b.lead.SetScratch(sc, scratchSize)
	// The end of the scratch memory runs batches of system calls (one
	// stop for all the mappings instead of one per call).
	if _, err := b.lead.Syscall(unix.SYS_MPROTECT, sc+scratchSize-callBatchSize, callBatchSize,
		unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC); err == nil {
		b.lead.SetBatchArea(sc+scratchSize-callBatchSize, callBatchSize)
	}
	busy = append(busy, [2]uint64{sc, sc + scratchSize})
	return b.moveVDSO(cur, want, busy)
}

// moveVDSO moves [vvar], [vvar_vclock] and [vdso] together to where the
// image had them. Special mappings cannot be split, so each moves whole,
// all by the same offset, through a temporary address.
func (b *builder) moveVDSO(cur []procfs.Mapping, want []image.VMA, busy [][2]uint64) error {
	if len(want) == 0 {
		return nil // a process that unmapped its vdso
	}
	names := map[string]string{"[vdso]": image.VMAVDSO, "[vvar]": image.VMAVVar, "[vvar_vclock]": image.VMAVVarVclock}
	if len(cur) != len(want) {
		return fmt.Errorf("vdso layout differs: image has %d special mappings, this kernel %d (different kernel?)", len(want), len(cur))
	}
	lo, hi := cur[0].Start, cur[0].End
	for _, m := range cur {
		lo, hi = min(lo, m.Start), max(hi, m.End)
	}
	wlo := want[0].Start
	for _, v := range want {
		wlo = min(wlo, v.Start)
	}
	for _, m := range cur {
		i := slices.IndexFunc(want, func(v image.VMA) bool { return v.Kind == names[m.Name] })
		if i < 0 || want[i].Size() != m.End-m.Start || want[i].Start-wlo != m.Start-lo {
			return fmt.Errorf("vdso layout differs from the image's: %s (different kernel?)", m.Name)
		}
	}
	if wlo == lo {
		return nil
	}
	tmp := hole(append(busy, [2]uint64{wlo, wlo + hi - lo}), hi-lo)
	for _, step := range [][2]uint64{{lo, tmp}, {tmp, wlo}} {
		for _, m := range cur {
			from := step[0] + (m.Start - lo)
			to := step[1] + (m.Start - lo)
			size := m.End - m.Start
			if _, err := b.lead.Syscall(unix.SYS_MREMAP, from, size, size, unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, to); err != nil {
				return fmt.Errorf("move %s to %#x: %w", m.Name, to, err)
			}
			if m.Name == "[vdso]" {
				// Injection runs on the vdso's syscall instruction: follow it.
				b.lead.Addr = b.lead.Addr - from + to
			}
		}
	}
	return nil
}

// hole finds a free, aligned range of size bytes that overlaps none of busy.
func hole(busy [][2]uint64, size uint64) uint64 {
	for a := uint64(0x10000000); a < 0x7f0000000000; a += 0x40000000 {
		free := true
		for _, r := range busy {
			if a < r[1] && r[0] < a+size {
				free = false
				break
			}
		}
		if free {
			return a
		}
	}
	return 0
}

// install brings a file of ferry's into the target and returns its fd
// number there.
func (b *builder) install(f *os.File) (uint64, error) {
	if b.tpidfd == 0 {
		pfd, err := b.lead.Syscall(unix.SYS_PIDFD_OPEN, uint64(os.Getpid()), 0)
		if err != nil {
			return 0, fmt.Errorf("pidfd_open in target: %w", err)
		}
		// Keep it above every fd the image will install.
		high := uint64(64)
		for _, fd := range b.p.FDs {
			high = max(high, uint64(fd.Num)+1)
		}
		nfd, err := b.lead.Syscall(unix.SYS_FCNTL, pfd, unix.F_DUPFD_CLOEXEC, high)
		if err != nil {
			return 0, fmt.Errorf("move pidfd in target: %w", err)
		}
		b.lead.Syscall(unix.SYS_CLOSE, pfd)
		b.tpidfd = nfd
	}
	tfd, err := b.lead.Syscall(unix.SYS_PIDFD_GETFD, b.tpidfd, uint64(fds.RawFD(f)), 0)
	if err != nil {
		return 0, fmt.Errorf("pidfd_getfd in target: %w", err)
	}
	return tfd, nil
}

func (b *builder) mapVMAs() error {
	b.tfds = map[string]uint64{}
	// First the files the mappings need, in the target (one injection
	// each), then every mmap and madvise in one batch.
	var calls []ptrace.Call
	var vmaOf []int // the VMA of each call
	for i := range b.p.VMAs {
		v := &b.p.VMAs[i]
		if isSpecial(v.Kind) || v.Kind == image.VMAAio {
			continue
		}
		if len(v.Inherited) > 0 && b.deferred {
			continue // inherited from the parent by fork (cow.go)
		}
		if v.Kind == image.VMASysV {
			if v.Offset != 0 {
				continue // attached with the VMA before it
			}
			c, err := b.shmAttachCall(i)
			if err != nil {
				return err
			}
			calls = append(calls, c)
			vmaOf = append(vmaOf, i)
			continue
		}
		prot := uint64(v.Prot)
		if !v.Shared {
			prot |= unix.PROT_READ | unix.PROT_WRITE
		}
		flags := uint64(unix.MAP_FIXED)
		if v.Shared {
			flags |= unix.MAP_SHARED
		} else {
			flags |= unix.MAP_PRIVATE
		}
		if v.HasVMFlag("nr") {
			flags |= unix.MAP_NORESERVE
		}
		fd := ^uint64(0)
		var off uint64
		switch v.Kind {
		case image.VMAAnon:
			flags |= unix.MAP_ANONYMOUS
			if v.GrowsDown {
				flags |= unix.MAP_GROWSDOWN
			}
		case image.VMAFile:
			// A shared mapping is mapped from a descriptor of the mode
			// the original was: VM_MAYWRITE (mprotect may add write
			// later) only if the file was opened for writing.
			tfd, err := b.fileFD(v.Path, v.Shared && (v.MayWrite || v.Prot&unix.PROT_WRITE != 0))
			if err != nil {
				return err
			}
			fd, off = tfd, v.Offset
		case image.VMASharedAnon, image.VMAMemfd:
			// The object an fd refers to was recreated by the fds layer
			// (with its name and seals): map that same one.
			obj := b.fr.Object(v.FileID)
			ok := obj != nil
			if !ok {
				obj, ok = b.objects[v.FileID]
			}
			if !ok {
				if v.Kind == image.VMAMemfd && v.Path != "" && !v.Shared {
					return fmt.Errorf("mapping %#x of deleted file %s: content missing from image", v.Start, v.Path)
				}
				return fmt.Errorf("mapping %#x: content of %s missing from image", v.Start, v.FileID)
			}
			tfd, ok := b.tfds[v.FileID]
			if !ok {
				var err error
				if tfd, err = b.install(obj); err != nil {
					return err
				}
				b.tfds[v.FileID] = tfd
			}
			// The offset is the object's too for shared anonymous
			// memory: a region split by mprotect has VMAs past page 0.
			fd, off = tfd, v.Offset
		}
		calls = append(calls, ptrace.Call{Nr: unix.SYS_MMAP, Args: [6]uint64{v.Start, v.Size(), prot, flags, fd, off}})
		vmaOf = append(vmaOf, i)
		for _, f := range v.VMFlags {
			if adv := vmFlagAdvice[f]; adv != 0 {
				calls = append(calls, ptrace.Call{Nr: unix.SYS_MADVISE, Args: [6]uint64{v.Start, v.Size(), adv}})
				vmaOf = append(vmaOf, -1) // advice is best effort
			}
		}
	}
	for len(calls) > 0 {
		res, err := b.lead.Batch(calls)
		for k, r := range res {
			if i := vmaOf[k]; i >= 0 && r != b.p.VMAs[i].Start && (err == nil || k < len(res)-1) {
				v := &b.p.VMAs[i]
				return fmt.Errorf("map %#x-%#x (%s %s): got %#x", v.Start, v.End, v.Kind, v.Path+v.Name, r)
			}
		}
		if err == nil {
			break
		}
		k := len(res) - 1
		if k < 0 {
			return fmt.Errorf("map memory: %w", err)
		}
		if i := vmaOf[k]; i >= 0 {
			v := &b.p.VMAs[i]
			return fmt.Errorf("map %#x-%#x (%s %s): %w", v.Start, v.End, v.Kind, v.Path+v.Name, err)
		}
		// A failed madvise: go on after it.
		calls, vmaOf = calls[k+1:], vmaOf[k+1:]
	}
	for _, tfd := range b.tfds {
		b.lead.Syscall(unix.SYS_CLOSE, tfd)
	}
	b.tfds = nil
	for i := range b.p.VMAs {
		if v := &b.p.VMAs[i]; v.Kind == image.VMAAio {
			if err := b.aioContext(v); err != nil {
				return err
			}
		}
	}
	return nil
}

// aioContext creates an AIO context of the image's size and moves its
// ring to the image's address, which is the context's id (the kernel
// follows a ring that mremap moves).
func (b *builder) aioContext(v *image.VMA) error {
	// io_setup(n) sizes its ring for 2n+2 events (n at least 4 per
	// possible CPU) rounded up to whole pages: (nr-2)/2 gives a ring of
	// nr events again.
	n := uint64(max(v.AioNr, 4)-2) / 2
	// The context id it writes must start as 0.
	idAddr, err := b.lead.Scratch(make([]byte, 8))
	if err != nil {
		return err
	}
	if _, err := b.lead.Syscall(unix.SYS_IO_SETUP, n, idAddr); err != nil {
		return fmt.Errorf("AIO context %#x: io_setup(%d): %w", v.Start, n, err)
	}
	raw, err := b.lead.ReadScratch(idAddr-b.scratch, 8)
	if err != nil {
		return err
	}
	ctx := binary.LittleEndian.Uint64(raw)
	if ctx != v.Start {
		got, err := b.lead.Syscall(unix.SYS_MREMAP, ctx, v.Size(), v.Size(), unix.MREMAP_MAYMOVE|unix.MREMAP_FIXED, v.Start)
		if err != nil || got != v.Start {
			b.lead.Syscall(unix.SYS_IO_DESTROY, ctx)
			return fmt.Errorf("AIO context %#x: move the new ring from %#x: %#x, %v", v.Start, ctx, got, err)
		}
	}
	hdr := make([]byte, kernel.AioRingHeaderSize)
	if err := ptrace.ReadMem(b.pid, v.Start, hdr); err != nil {
		return fmt.Errorf("AIO context %#x: read the new ring: %w", v.Start, err)
	}
	r, err := kernel.ParseAioRing(hdr)
	if err != nil {
		return fmt.Errorf("AIO context %#x: new ring: %w", v.Start, err)
	}
	if r.Nr != v.AioNr {
		return fmt.Errorf("AIO context %#x: the new ring holds %d events, the image's %d", v.Start, r.Nr, v.AioNr)
	}
	if len(v.AioEvents) > 0 {
		if err := b.aioEvents(v, r); err != nil {
			return fmt.Errorf("AIO context %#x: %w", v.Start, err)
		}
	}
	return nil
}

// aioEvents gives a new AIO context the completed events the image's
// held unreaped: as many reads of 0 bytes from /dev/null are submitted
// (they complete at once, into the ring, holding a request slot each as
// the originals did), then their events are overwritten with the
// image's. Where in the ring they sit does not matter: readers go from
// head to tail.
func (b *builder) aioEvents(v *image.VMA, r kernel.AioRing) error {
	n := len(v.AioEvents) / kernel.IoEventSize
	if n*kernel.IoEventSize != len(v.AioEvents) || uint32(n) >= r.Nr {
		return fmt.Errorf("%d bytes of events for a ring of %d: %w", len(v.AioEvents), r.Nr, image.ErrMalformed)
	}
	null, err := os.Open("/dev/null")
	if err != nil {
		return err
	}
	defer null.Close()
	tfd, err := b.install(null)
	if err != nil {
		return err
	}
	defer b.lead.Syscall(unix.SYS_CLOSE, tfd)
	iocb, err := b.lead.ScratchAt(1024, kernel.IocbPread0(uint32(tfd), 0))
	if err != nil {
		return err
	}
	// One iocb submitted again and again: a table of pointers to it.
	const chunk = 256
	ptrs := make([]byte, 8*chunk)
	for i := 0; i < chunk; i++ {
		binary.LittleEndian.PutUint64(ptrs[8*i:], iocb)
	}
	table, err := b.lead.ScratchAt(2048, ptrs)
	if err != nil {
		return err
	}
	for done := 0; done < n; {
		k := min(chunk, n-done)
		got, err := b.lead.Syscall(unix.SYS_IO_SUBMIT, v.Start, uint64(k), table)
		if err != nil || got == 0 {
			return fmt.Errorf("io_submit of %d placeholder reads: %d, %v", k, got, err)
		}
		done += int(got)
	}
	hdr := make([]byte, kernel.AioRingHeaderSize)
	if err := ptrace.ReadMem(b.pid, v.Start, hdr); err != nil {
		return err
	}
	now, err := kernel.ParseAioRing(hdr)
	if err != nil {
		return err
	}
	if now.Pending() != uint32(n) {
		return fmt.Errorf("%d placeholder reads completed into the ring, want %d", now.Pending(), n)
	}
	for i := 0; i < n; i++ {
		if err := ptrace.WriteMem(b.pid, v.Start+now.EventOffset(uint32(i)), v.AioEvents[i*kernel.IoEventSize:(i+1)*kernel.IoEventSize]); err != nil {
			return fmt.Errorf("write event %d into the ring: %w", i, err)
		}
	}
	return nil
}

// vmFlagAdvice maps smaps VmFlags to the madvise call that sets them.
var vmFlagAdvice = map[string]uint64{"dd": unix.MADV_DONTDUMP, "dc": unix.MADV_DONTFORK, "wf": unix.MADV_WIPEONFORK,
	"hg": unix.MADV_HUGEPAGE, "nh": unix.MADV_NOHUGEPAGE, "mg": unix.MADV_MERGEABLE,
	"rr": unix.MADV_RANDOM, "sr": unix.MADV_SEQUENTIAL}

// lockCall returns the mlock2 call that locks v as it was ("lo", with "lf"
// for MLOCK_ONFAULT), or false for memory that was not locked.
func lockCall(v *image.VMA) (ptrace.Call, bool) {
	if !v.HasVMFlag("lo") {
		return ptrace.Call{}, false
	}
	var flags uint64
	if v.HasVMFlag("lf") {
		flags = unix.MLOCK_ONFAULT
	}
	return ptrace.Call{Nr: unix.SYS_MLOCK2, Args: [6]uint64{v.Start, v.Size(), flags}}, true
}

func (b *builder) fileFD(path string, write bool) (uint64, error) {
	key := fmt.Sprintf("%s:%v", path, write)
	if tfd, ok := b.tfds[key]; ok {
		return tfd, nil
	}
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	// Without O_NOATIME, mmap would update the file's access time.
	f, err := kernel.OpenNoATime(path, flag)
	if err != nil {
		return 0, fmt.Errorf("open mapped file: %w", err)
	}
	defer f.Close()
	tfd, err := b.install(f)
	if err != nil {
		return 0, err
	}
	b.tfds[key] = tfd
	return tfd, nil
}

// protect gives every private mapping its real permissions, then locks
// the memory that was locked (after the pages are in: mlock faults in what
// it locks, and a lazy range would wait for a pager not yet running — a
// locked VMA is never lazy).
func (b *builder) protect() error {
	var calls []ptrace.Call
	var starts []uint64
	for _, v := range b.p.VMAs {
		// An attached System V segment has the protection of its attach
		// (shmat): each of its VMAs gets its own now.
		if isSpecial(v.Kind) || v.Shared && v.Kind != image.VMASysV || v.Prot == unix.PROT_READ|unix.PROT_WRITE {
			continue
		}
		calls = append(calls, ptrace.Call{Nr: unix.SYS_MPROTECT, Args: [6]uint64{v.Start, v.Size(), uint64(v.Prot)}})
		starts = append(starts, v.Start)
	}
	for _, v := range b.p.VMAs {
		if c, ok := lockCall(&v); ok && !isSpecial(v.Kind) {
			calls = append(calls, c)
			starts = append(starts, v.Start)
		}
	}
	// Sealing last: a sealed VMA takes no mprotect, madvise(DONTNEED) or
	// munmap any more.
	for _, v := range b.p.VMAs {
		if v.HasVMFlag("sl") && !isSpecial(v.Kind) {
			calls = append(calls, ptrace.Call{Nr: unix.SYS_MSEAL, Args: [6]uint64{v.Start, v.Size(), 0}})
			starts = append(starts, v.Start)
		}
	}
	if res, err := b.lead.Batch(calls); err != nil {
		k := max(0, len(res)-1)
		if k < len(starts) {
			what := "mprotect"
			switch calls[k].Nr {
			case unix.SYS_MLOCK2:
				what = "mlock2"
			case unix.SYS_MSEAL:
				what = "mseal"
			}
			return fmt.Errorf("%s %#x: %w", what, starts[k], err)
		}
		return fmt.Errorf("mprotect: %w", err)
	}
	return nil
}

// setMM sets the mm fields and the exe link; keepExe: the process has the
// right one already (forked late from a parent with the same executable,
// whose mappings of it it keeps — the link cannot change while the old
// file is mapped).
func (b *builder) setMM(keepExe bool) error {
	mm := b.p.MM
	tfd := ^uint64(0) >> 32 // exe_fd -1 (u32): leave the link
	if !keepExe {
		exe, err := kernel.OpenNoATime(b.p.Exe, os.O_RDONLY)
		if err != nil {
			return fmt.Errorf("open executable: %w", err)
		}
		defer exe.Close()
		if tfd, err = b.install(exe); err != nil {
			return err
		}
		defer b.lead.Syscall(unix.SYS_CLOSE, tfd)
	}
	auxv := make([]byte, 0, len(mm.Auxv)*8)
	for _, w := range mm.Auxv {
		auxv = append(auxv, le64(w)...)
	}
	auxvAddr, err := b.lead.ScratchAt(4096, auxv)
	if err != nil {
		return err
	}
	m := kernel.PrctlMMMap{StartCode: mm.StartCode, EndCode: mm.EndCode, StartData: mm.StartData, EndData: mm.EndData,
		StartBrk: mm.StartBrk, Brk: mm.Brk, StartStack: mm.StartStack, ArgStart: mm.ArgStart, ArgEnd: mm.ArgEnd,
		EnvStart: mm.EnvStart, EnvEnd: mm.EnvEnd, Auxv: auxvAddr, AuxvSize: uint32(len(auxv)), ExeFd: uint32(tfd)}
	addr, err := b.lead.Scratch(kernel.Bytes(&m))
	if err != nil {
		return err
	}
	if _, err := b.lead.Syscall(unix.SYS_PRCTL, unix.PR_SET_MM, unix.PR_SET_MM_MAP, addr, kernel.PrctlMMMapSize); err != nil {
		return fmt.Errorf("prctl(PR_SET_MM_MAP): %w", err)
	}
	return nil
}

func le64(w uint64) []byte {
	b := make([]byte, 8)
	for i := range b {
		b[i] = byte(w >> (8 * i))
	}
	return b
}
