// Package dump takes a checkpoint of a running process: it freezes every
// thread (ptrace), collects the process state (registers, signals, timers,
// memory layout, credentials, file descriptors) and streams it into an
// image.Writer, state first and pages after. The sink may be a directory
// or a network connection; dump does not care.
//
// Failure is safe: everything that could refuse the process (unsupported
// file descriptors, a debugger attached) is checked before the process is
// touched, and on any later error the process is released and runs on as
// before.
package dump

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/fds"
	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// Leave says what happens to the process after a successful dump.
type Leave int

const (
	// Kill kills the process once the image is complete (the default).
	Kill Leave = iota
	// Running lets it run on.
	Running
	// Stopped leaves it in group-stop (as after SIGSTOP).
	Stopped
	// Frozen keeps the whole tree frozen under ptrace after the image is
	// complete; Result.Held resumes or kills it later. This is the source
	// side of a migration transaction: the old copy waits, frozen, until
	// the destination has committed (then Kill) or failed (then Resume).
	Frozen
)

// Options tune a dump.
type Options struct {
	Leave Leave
	// MaxDelay bounds delayed blocking: how long to wait for a thread in
	// uninterruptible sleep to finish its system call. Default 10 s.
	MaxDelay time.Duration
	// KeepFiles keeps ferry's duplicates of the process's open file
	// descriptions (see Result.Kept) for a restore in this same process.
	KeepFiles bool
	// Precopy, when set, makes this dump the final step of a precopy
	// migration: only pages the destination lacks or holds an older copy
	// of are written (see Precopy). Usually with Leave: Frozen, so that
	// the source can resume if the destination fails.
	Precopy Precopy
	// Lazy leaves private anonymous memory out of the image for a
	// postcopy migration (lazy.go): lazy records say which pages hold
	// data, Result.Lazy lists them, and the frozen tree serves them.
	// Needs Leave: Frozen.
	Lazy bool
	// BeforeState, if set, is called with the collected state, the tree
	// still frozen, before anything is written; an error fails the dump
	// (and the tree runs on).
	BeforeState func(*image.Checkpoint) error
	// AfterFreeze, if set, is called once every process of the tree is
	// frozen and before any of their fds is inspected (whatever the
	// transfer: precopy and lazy dumps freeze here too); an error fails
	// the dump (and the tree runs on). A node stops writing into the
	// job's message-endpoint connections there, so that their queues are
	// peeked whole. It runs on the tracer goroutine: it must not use the
	// Tracer.
	AfterFreeze func(ctx context.Context) error
	// MsgEndpoint, if set, tells which connected unix sockets whose peer
	// is outside the tree are connections to the job's message endpoint,
	// and their ids: those are carried as image.FDMsg records, with the
	// packets unread in their queues, for restore.Options.MsgConnect to
	// make again (fds.Dumper.MsgEndpoint). Without it, or for a socket it
	// does not accept, such a socket is refused as before.
	MsgEndpoint func(s fds.PeerSocket) (id string, ok bool)
	Log         *slog.Logger
}

// Result reports what a dump did.
type Result struct {
	PID int
	// FreezeTime is how long the process was stopped (until it was killed,
	// thawed or left stopped).
	FreezeTime time.Duration
	// Delayed lists threads whose stop waited for an uninterruptible
	// system call, and how long.
	Delayed map[int]time.Duration
	Stats   image.Stats
	// Kept holds duplicates of open file descriptions by image Desc, when
	// Options.KeepFiles was set. The caller closes them.
	Kept map[string]*os.File
	// Checkpoint is the state record that was written.
	Checkpoint *image.Checkpoint
	// Held is the still-frozen tree when Options.Leave was Frozen.
	Held *Held
	// Lazy lists, by pid, the VMAs whose data pages stayed on the source
	// (Options.Lazy): what postcopy.Serve hands out.
	Lazy map[int][]image.LazyVMA
}

// Held is a process tree left frozen by a dump (Leave: Frozen). Exactly one
// of Resume or Kill must be called; both are safe to call again after.
type Held struct {
	t      *ptrace.Tracer
	ft     *frozenTree
	log    *slog.Logger
	at     time.Time
	closed bool
}

// PIDs lists the frozen processes, parents first.
func (h *Held) PIDs() []int {
	pids := make([]int, 0, len(h.ft.procs))
	for _, fz := range h.ft.procs {
		pids = append(pids, fz.PID)
	}
	return pids
}

// FrozenSince is when the tree was frozen.
func (h *Held) FrozenSince() time.Time { return h.at }

// Resume lets every process of the tree run on, as if nothing happened.
func (h *Held) Resume(ctx context.Context) error {
	return h.t.Do(ctx, func() error {
		if h.closed {
			return nil
		}
		h.closed = true
		return h.ft.thaw(false, h.log)
	})
}

// Kill ends every process of the tree (the migration committed elsewhere).
func (h *Held) Kill(ctx context.Context) error {
	return h.t.Do(ctx, func() error {
		if h.closed {
			return nil
		}
		h.closed = true
		return h.ft.kill()
	})
}

// Replace turns the tree's root into path (argv, envp) in place, its PID,
// parent, group and session kept (ptrace.Frozen.ExecInPlace, no fd
// kept), and kills the rest of the tree: the process moved away alone
// and its stand-in takes its place. On failure the whole tree is killed
// (the root may be damaged: it must not run on).
func (h *Held) Replace(ctx context.Context, path string, argv, envp []string) error {
	return h.t.Do(ctx, func() error {
		if h.closed {
			return errors.New("the tree was already resumed or killed")
		}
		h.closed = true
		for i := len(h.ft.procs) - 1; i > 0; i-- {
			h.ft.procs[i].Kill()
		}
		if err := h.ft.procs[0].ExecInPlace(path, argv, envp, nil); err != nil {
			h.ft.procs[0].Kill()
			return err
		}
		return nil
	})
}

// Sink receives the image. *image.Writer and *image.DirWriter are sinks;
// Close must make the image complete (trailer written, file committed),
// because the process is killed right after it succeeds.
type Sink interface {
	WriteState(*image.Checkpoint) error
	WriteFileData(id string, off int64, data []byte) error
	WritePages(pid int, addr uint64, data []byte) error
	WriteSignals([]image.PendingSignal) error
	Close() error
	Stats() image.Stats
}

// Dump checkpoints pid into w and closes w. It runs the ptrace work on t.
func Dump(ctx context.Context, t *ptrace.Tracer, pid int, w Sink, opts Options) (*Result, error) {
	if opts.MaxDelay == 0 {
		opts.MaxDelay = 10 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	log := opts.Log.With("pid", pid)
	if err := checkLazyOptions(opts, w); err != nil {
		return nil, err
	}
	if err := Check(pid); err != nil {
		return nil, err
	}
	var res *Result
	err := t.Do(ctx, func() error {
		var err error
		res, err = dumpOnTracer(ctx, pid, w, opts, log)
		return err
	})
	if res != nil && res.Held != nil {
		res.Held.t = t
	}
	return res, err
}

// ErrUnsupported is wrapped by errors about resources ferry cannot carry.
var ErrUnsupported = fds.ErrUnsupported

// Check refuses a process tree that cannot be checkpointed, before it is
// touched: no such process, a kernel thread, a process already traced, or
// an fd ferry cannot carry anywhere in the tree.
func Check(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("invalid pid %d", pid)
	}
	if pid == os.Getpid() {
		return fmt.Errorf("pid %d is ferry itself", pid)
	}
	tree, err := walkTree(pid)
	if err != nil {
		return err
	}
	var live []int
	ppid := map[int]int{}
	for _, q := range tree {
		st, err := procfs.Stat(q)
		if err != nil {
			if q != pid && errors.Is(err, os.ErrNotExist) {
				continue // a child that exited meanwhile
			}
			return fmt.Errorf("pid %d: %w", q, err)
		}
		if st.Flags&0x00200000 != 0 { // PF_KTHREAD
			return fmt.Errorf("pid %d is a kernel thread: %w", q, ErrUnsupported)
		}
		if st.State == 'Z' {
			// A zombie main thread with threads still running is a
			// live process (pthread_exit from main).
			if ps, err := procfs.Status(q); err == nil && ps.Threads > 1 {
				return fmt.Errorf("pid %d: its main thread has exited (pthread_exit) while %d other threads run: %w",
					q, ps.Threads-1, ErrUnsupported)
			}
			if q == pid {
				return fmt.Errorf("pid %d is a zombie", pid)
			}
			continue
		}
		if st.PPID > 0 {
			// A child of vfork runs in its parent's memory while the
			// parent waits, uninterruptibly, for it to exec or exit.
			if same, err := kernel.KcmpOrder(q, st.PPID, kernel.KcmpMemory); err == nil && same == 0 {
				return fmt.Errorf("pid %d (of the tree of %d) was made by vfork and runs in the memory of its parent %d, which waits for it to exec or exit: %w",
					q, pid, st.PPID, ErrUnsupported)
			}
		}
		if st.State == 't' {
			return fmt.Errorf("pid %d is being traced (by a debugger?): %w", q, ErrUnsupported)
		}
		if err := fds.Check(q); err != nil {
			if q != pid && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		if err := checkMaps(q); err != nil {
			if q != pid && errors.Is(err, os.ErrNotExist) {
				continue
			}
			return err
		}
		live = append(live, q)
		ppid[q] = st.PPID
	}
	// A process that exits meanwhile is no reason to refuse: the dump
	// compares the frozen tree again.
	if _, err := sharedTables(live, ppid); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	if _, err := sharedFS(live, ppid); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// EstimateSize returns roughly how large pid's image will be (the resident
// memory of its tree), for preallocating the image file before the freeze.
func EstimateSize(pid int) int64 {
	tree, err := walkTree(pid)
	if err != nil {
		return 0
	}
	var n int64
	for _, q := range tree {
		if st, err := procfs.Stat(q); err == nil {
			n += int64(st.RSS) * int64(os.Getpagesize())
		}
	}
	return n + n/16 + 1<<20 // record headers, state, slack
}

// walkTree lists pid and its descendants, parents before children.
func walkTree(pid int) ([]int, error) {
	if _, err := procfs.Stat(pid); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("pid %d: no such process", pid)
		}
		return nil, fmt.Errorf("pid %d: %w", pid, err)
	}
	tree := []int{pid}
	for i := 0; i < len(tree); i++ {
		kids, err := procfs.Children(tree[i])
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		tree = append(tree, kids...)
	}
	return tree, nil
}

// frozenTree holds every frozen process of a tree and its zombies.
type frozenTree struct {
	procs   []*ptrace.Frozen // parents first
	zombies []*image.Process
}

func (ft *frozenTree) thaw(stopped bool, log *slog.Logger) error {
	var first error
	for i := len(ft.procs) - 1; i >= 0; i-- {
		if err := ft.procs[i].Thaw(stopped); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (ft *frozenTree) kill() error {
	var first error
	for i := len(ft.procs) - 1; i >= 0; i-- {
		if err := ft.procs[i].Kill(); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// freezeTree freezes pid and all its descendants, looking again for
// children forked meanwhile until the tree is stable.
func freezeTree(pid int, maxDelay time.Duration, log *slog.Logger) (*frozenTree, error) {
	ft := &frozenTree{}
	done := map[int]bool{}
	for round := 0; round < 100; round++ {
		tree, err := walkTree(pid)
		if err != nil {
			ft.thaw(false, log)
			return nil, err
		}
		fresh := 0
		for _, q := range tree {
			if done[q] {
				continue
			}
			done[q] = true
			fresh++
			st, err := procfs.Stat(q)
			if err != nil {
				if q != pid && errors.Is(err, os.ErrNotExist) {
					continue // a child that exited and was reaped meanwhile
				}
				ft.thaw(false, log)
				return nil, fmt.Errorf("pid %d: %w", q, err)
			}
			if st.State == 'Z' && q != pid {
				ft.zombies = append(ft.zombies, &image.Process{PID: q, PPID: st.PPID, PGID: st.PGRP,
					SID: st.Session, Comm: st.Comm, Zombie: true, ExitStatus: st.ExitCode})
				continue
			}
			fz, err := ptrace.Freeze(q, maxDelay, log)
			if err != nil {
				if q != pid && (errors.Is(err, os.ErrNotExist) || errors.Is(err, ptrace.ErrExited) || errors.Is(err, unix.ESRCH)) {
					continue // exited while we froze it: no longer part of the tree
				}
				ft.thaw(false, log)
				return nil, err
			}
			ft.procs = append(ft.procs, fz)
		}
		if fresh == 0 {
			return ft, nil
		}
	}
	ft.thaw(false, log)
	return nil, fmt.Errorf("freeze %d: the process tree keeps changing", pid)
}

func dumpOnTracer(ctx context.Context, pid int, w Sink, opts Options, log *slog.Logger) (*Result, error) {
	ft, err := freezeTree(pid, opts.MaxDelay, log)
	if err != nil {
		return nil, err
	}
	frozenAt := ft.procs[0].FrozenAt
	res := &Result{PID: pid, Delayed: map[int]time.Duration{}}
	for _, fz := range ft.procs {
		for tid, d := range fz.Delayed {
			log.Info("delayed blocking: waited for a system call to end", "tid", tid, "wait", d)
			res.Delayed[tid] = d
		}
		if fz.FrozenAt.After(frozenAt) {
			frozenAt = fz.FrozenAt
		}
	}
	ok := false
	defer func() {
		if !ok {
			// Failure is safe: let the processes run on as they were.
			if err := ft.thaw(false, log); err != nil {
				log.Error("release after failed dump", "err", err)
			}
		}
	}()

	c := &image.Checkpoint{Root: pid, PageSize: os.Getpagesize(), TimeUnixNano: frozenAt.UnixNano()}
	if b, err := os.ReadFile("/proc/sys/kernel/random/boot_id"); err == nil {
		c.BootID = strings.TrimSpace(string(b))
	}
	c.Kernel, _ = kernelRelease()
	c.Hostname, _ = os.Hostname()

	if opts.AfterFreeze != nil {
		if err := opts.AfterFreeze(ctx); err != nil {
			return nil, fmt.Errorf("after freeze: %w", err)
		}
	}

	dumper := fds.NewDumper(log)
	dumper.MsgEndpoint = opts.MsgEndpoint
	defer dumper.Close()
	var cols []*collector
	defer func() {
		for _, col := range cols {
			col.close()
		}
	}()
	for _, fz := range ft.procs {
		col, err := collect(ctx, fz, dumper, opts.Log.With("pid", fz.PID))
		if err != nil {
			return nil, err
		}
		cols = append(cols, col)
		c.Processes = append(c.Processes, col.proc)
	}
	live, ppid := make([]int, 0, len(c.Processes)), map[int]int{}
	for _, p := range c.Processes {
		live = append(live, p.PID)
		ppid[p.PID] = p.PPID
	}
	shared, err := sharedTables(live, ppid)
	if err != nil {
		return nil, err
	}
	sharedFs, err := sharedFS(live, ppid)
	if err != nil {
		return nil, err
	}
	for _, p := range c.Processes {
		p.FilesOf, p.FSOf = shared[p.PID], sharedFs[p.PID]
	}
	c.Processes = append(c.Processes, ft.zombies...)
	// A session a restore cannot give back is refused now, while the tree
	// can still run on.
	if err := image.CheckSessions(c.Processes); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnsupported, err)
	}
	if err := dumper.Finish(c.Processes); err != nil {
		return nil, fmt.Errorf("file descriptors: %w", err)
	}
	c.InFlight = dumper.InFlight()
	plans, err := finalPlans(opts.Precopy, cols)
	if err != nil {
		return nil, err
	}
	if !opts.Lazy && opts.Precopy == nil {
		// Only a whole image (every page in it, in process order)
		// can restore pages shared copy-on-write by forking.
		if err := markInherited(cols, image.Creators(c.Processes)); err != nil {
			return nil, err
		}
	}
	// System V semaphore adjustments last, once nothing else refuses the
	// tree: measuring them operates on the sets (sem.go).
	if err := semMeasure(ft, c, opts.Leave, log); err != nil {
		return nil, err
	}
	if opts.BeforeState != nil {
		// Still frozen: the caller may act on the collected state (a
		// migration settles which files travel) before it is written.
		if err := opts.BeforeState(c); err != nil {
			return nil, err
		}
	}
	if err := w.WriteState(c); err != nil {
		return nil, fmt.Errorf("write state: %w", err)
	}
	if err := writeObjects(w, cols, dumper); err != nil {
		return nil, err
	}
	if opts.Lazy {
		if res.Lazy, err = writeLazy(ctx, w, cols); err != nil {
			return nil, err
		}
	}
	ap := newAsyncPages(w, pageBuffers, readChunk)
	for i, col := range cols {
		if err = col.writePages(ctx, ap, plans[i]); err != nil {
			break
		}
	}
	if ferr := ap.finish(); err == nil && ferr != nil {
		err = fmt.Errorf("write pages: %w", ferr)
	}
	if err != nil {
		return nil, err
	}
	// Signals that arrived while the pages were written are not in the
	// state record: carry them in a late record so none is lost.
	var late []image.PendingSignal
	for _, col := range cols {
		late = append(late, col.lateSignals()...)
	}
	if len(late) > 0 {
		log.Info("signals arrived while frozen", "count", len(late))
		if err := w.WriteSignals(late); err != nil {
			return nil, fmt.Errorf("write signals: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("finish image: %w", err)
	}
	res.Stats = w.Stats()
	res.Checkpoint = c

	switch opts.Leave {
	case Kill:
		if opts.KeepFiles {
			if res.Kept, err = dupFiles(dumper.Kept()); err != nil {
				return nil, err
			}
		}
		err = ft.kill()
	case Running:
		err = ft.thaw(false, log)
	case Stopped:
		err = ft.thaw(true, log)
	case Frozen:
		res.Held = &Held{ft: ft, log: log, at: frozenAt}
	}
	ok = true
	res.FreezeTime = time.Since(frozenAt)
	if err != nil {
		return res, err
	}
	return res, nil
}

func kernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", err
	}
	return unix.ByteSliceToString(u.Release[:]), nil
}

// dupFiles duplicates files the Dumper owns so that the result owns its own
// (close-on-exec) descriptors. The open file descriptions are the same.
func dupFiles(in map[string]*os.File) (map[string]*os.File, error) {
	out := make(map[string]*os.File, len(in))
	for id, f := range in {
		nfd, err := unix.FcntlInt(uintptr(fds.RawFD(f)), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			for _, g := range out {
				g.Close()
			}
			return nil, fmt.Errorf("keep %s: %w", id, err)
		}
		out[id] = os.NewFile(uintptr(nfd), f.Name())
	}
	return out, nil
}
