// Package restore reinstates a checkpointed process from a stream of image
// records. It builds the new copy while the old one may still exist:
//
//  1. A seed process is started under ptrace from ferry's own executable
//     and stopped at exec, before it runs a single instruction.
//  2. clone3(CLONE_PARENT, set_tid=[PID]) is injected into the seed, so
//     the new process gets the original PID and becomes ferry's child; the
//     seed is killed.
//  3. Every injected system call runs on the `syscall` instruction of the
//     vDSO: the seed's own mappings are unmapped, the vDSO block is moved to
//     where the image had it, each VMA is mapped (writable while it is
//     filled), pages are written as they stream in, then protections, mm
//     fields (PR_SET_MM_MAP, exe link, auxv), file descriptors, cwd, umask,
//     rlimits, signal handlers, timers, threads (clone3 with set_tid),
//     per-thread state, credentials, pending signals and finally the
//     registers are put back, and every thread is detached.
//
// Anything that fails before detaching kills the half-built copy; the
// caller decides whether the old copy resumes.
package restore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/fds"
	"ferry/internal/image"
	"ferry/internal/ptrace"
)

// Options tune a restore.
type Options struct {
	// NewPIDs accepts new PIDs and TIDs when the original ones are taken.
	NewPIDs bool
	// Inherit maps image Descs (or "pipe:<id>") to open files to reuse, e.g.
	// the pipes kept by an in-process dump.
	Inherit map[string]*os.File
	// RewritePaths reopens files of the image from other paths here
	// (a migration keeps a file that differs on this node in a cache).
	RewritePaths map[string]string
	// Hold leaves the restored tree fully built but stopped under ptrace:
	// Result.Held lets it run (Release) or removes it (Kill). A migration
	// destination holds the new copy until the source says commit.
	Hold bool
	// Staged, when set, holds pages received ahead of the image (precopy):
	// they are written before the image's pages, which overwrite them.
	Staged Staged
	// StagedLazy (with Staged) leaves the staged pages of private
	// anonymous memory out of the restore, but for the few the kernel
	// writes on its own before the processes run (each thread's rseq
	// area): they are registered with a userfaultfd per process like a
	// lazy (postcopy) image's, and Result.Lazy hands them to the caller,
	// who serves them from the Staged after the processes run
	// (postcopy.ServeLocal) or kills them. Pages the image itself writes
	// are never lazy: the image's are newer. See staged.go.
	StagedLazy bool
	// Lazy restores a lazy (postcopy) image: its lazy VMAs are left empty
	// and registered with a userfaultfd per process, handed over in
	// Result.Lazy for a pager (see lazy.go). Without it such an image is
	// refused.
	Lazy bool
	// MsgConnect makes each message-endpoint connection of the image
	// (image.FDMsg: id, the packets the process had not read) again: it
	// returns a new unix SOCK_SEQPACKET socket connected to the node's
	// endpoint, whose queue holds the unread packets again before any
	// newer one (the node re-sends them first). Called once per
	// description, before any process exists; the restore installs the
	// socket at the recorded fd numbers with the recorded flags, and
	// owns the file (fds.Restorer.MsgConnect). Nil: such an image is
	// refused (fds.ErrNoMsgConnect), as on a restore without a node.
	MsgConnect func(id string, unread [][]byte) (*os.File, error)
	// Parent, when set, gives the tree's root a stand-in parent: a
	// process moved away from its job alone keeps its parent's PID
	// (package standin).
	Parent *Parent
	// Into, when set, makes the image's root in an existing process
	// instead of a new one (a process moved apart coming home, into its
	// stand-in: the same PID, parent, session and group).
	Into *Into
	Log  *slog.Logger
}

// Into is the process an image's root is made in (Options.Into).
type Into struct {
	PID int
	// Prepare, called on the tracer thread, makes the process a copy of
	// the restore seed, traced and stopped at the seed's first
	// instruction (ptrace.Frozen.ExecTraced).
	Prepare func() error
	// Abort, on the tracer thread, gives the process back a program of
	// its own if the restore fails: it must not die (its parent would see
	// its child end while the process runs on where it was).
	Abort func(pid int)
}

// Parent is the stand-in parent of a restored root (Options.Parent). It
// is made first, out of the seed, with PID (ErrPIDTaken if that is held),
// leading a session of its own when Session (the root's session and
// group are then PID's); the root is cloned out of it, its child. Once
// the tree is built it becomes Path with Argv and Envp in place, every
// signal blocked (its program reads them with a signalfd), and runs: on
// release, before the tree; on abort it is killed with the tree.
type Parent struct {
	PID        int
	Session    bool
	Path       string
	Argv, Envp []string
	// Leader, when set, is the PID of the session (and group) leader of
	// the root and its parent, neither of which leads it: a stand-in with
	// that PID is made first, leads a session, and is the parent's
	// parent; it runs Path with LeaderArgv.
	Leader     int
	LeaderArgv []string
}

// Result reports a restore.
type Result struct {
	PID        int
	Checkpoint *image.Checkpoint
	// Duration from the first record to the process running.
	Duration time.Duration
	Pages    uint64
	Bytes    uint64
	// StagedBytes counts the bytes written from Options.Staged (not in
	// Pages and Bytes); with StagedLazy only those written before the
	// processes run (Lazy lists the rest).
	StagedBytes uint64
	// Phases: how long each step of the restore took, in order
	// ("create processes", "address spaces", "pages", "state").
	Phases []Phase
	// Held is the built, not yet running tree when Options.Hold was set.
	Held *Held
	// Lazy lists the processes whose memory a pager must serve
	// (Options.Lazy, or Options.StagedLazy: from the Staged), with their
	// userfaultfds.
	Lazy []LazyProcess
}

// Held is a restored tree that has not run yet. Exactly one of Release or
// Kill must be called; later calls do nothing.
type Held struct {
	t    *ptrace.Tracer
	tree *tree
	live []*builder
	done bool
}

// Release lets the held processes run.
func (h *Held) Release(ctx context.Context) error {
	return h.t.Do(ctx, func() error {
		if h.done {
			return nil
		}
		h.done = true
		if err := h.tree.release(h.live); err != nil {
			h.tree.abort()
			return err
		}
		return nil
	})
}

// Kill removes the held processes: the commit did not happen.
func (h *Held) Kill(ctx context.Context) error {
	return h.t.Do(ctx, func() error {
		if h.done {
			return nil
		}
		h.done = true
		h.tree.abort()
		return nil
	})
}

// Phase is one timed step of a restore.
type Phase struct {
	Name string        `json:"name"`
	Took time.Duration `json:"took"`
}

// ErrPIDTaken is returned when the original PID or a TID is in use.
var ErrPIDTaken = errors.New("pid is in use")

// Restore reads an image stream from r and reinstates its process, leaving
// it running (or stopped, if it was stopped). The process is a child of
// the calling process until it exits.
func Restore(ctx context.Context, t *ptrace.Tracer, r *image.Reader, opts Options) (*Result, error) {
	start := time.Now()
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	rec, err := r.Next()
	if err != nil {
		return nil, fmt.Errorf("read image: %w", err)
	}
	if rec.Type != image.RecordState || rec.State == nil {
		return nil, fmt.Errorf("read image: first record is %v, not the process state: %w", rec.Type, image.ErrMalformed)
	}
	c := rec.State
	if len(c.Processes) == 0 {
		return nil, fmt.Errorf("image holds no process: %w", image.ErrMalformed)
	}
	log := opts.Log.With("pid", c.Processes[0].PID)
	rewritePaths(c, opts.RewritePaths)
	if err := checkCompatible(c); err != nil {
		return nil, err
	}

	// File contents (memfds, shared memory, unlinked files) come before pages.
	objects := map[string]*os.File{}
	defer func() {
		for _, f := range objects {
			f.Close()
		}
	}()
	var pending *image.Record
	lazy := map[int][]image.LazyVMA{}
	for {
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read image: %w", err)
		}
		if rec.Type == image.RecordLazy {
			addLazy(lazy, rec)
			continue
		}
		if rec.Type != image.RecordFileData {
			pending = rec
			break
		}
		if err := storeObject(objects, rec); err != nil {
			return nil, err
		}
	}

	if err := checkLazyImage(opts, lazy); err != nil {
		return nil, err
	}
	if opts.StagedLazy && opts.Lazy {
		return nil, errors.New("restore: Lazy and StagedLazy cannot be combined")
	}
	fr := fds.NewRestorer(log, c.Processes, c.InFlight, opts.Inherit, objects)
	fr.BootID = c.BootID
	fr.MsgConnect = opts.MsgConnect
	defer fr.Close()
	if err := fr.Prepare(); err != nil {
		return nil, fmt.Errorf("file descriptors: %w", err)
	}

	res := &Result{Checkpoint: c}
	err = t.Do(ctx, func() error {
		tr := &tree{log: log, opts: opts, fr: fr, objects: objects, res: res, byPID: map[int]*builder{}, lazy: lazy}
		err := tr.build(ctx, r, pending)
		if err != nil {
			tr.abort()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if res.Held != nil {
		res.Held.t = t
	}
	res.Duration = time.Since(start)
	return res, nil
}

func storeObject(objects map[string]*os.File, rec *image.Record) error {
	f, ok := objects[rec.FileID]
	if !ok {
		fd, err := unix.MemfdCreate("ferry-object", unix.MFD_CLOEXEC)
		if err != nil {
			return fmt.Errorf("memfd for %s: %w", rec.FileID, err)
		}
		f = os.NewFile(uintptr(fd), rec.FileID)
		objects[rec.FileID] = f
	}
	if len(rec.Data) == 0 {
		// An empty record marks the object's size.
		var st unix.Stat_t
		if err := unix.Fstat(int(fds.RawFD(f)), &st); err != nil {
			return err
		}
		if st.Size < rec.Offset {
			return f.Truncate(rec.Offset)
		}
		return nil
	}
	if _, err := f.WriteAt(rec.Data, rec.Offset); err != nil {
		return fmt.Errorf("store content of %s: %w", rec.FileID, err)
	}
	return nil
}

// checkCompatible refuses an image this kernel cannot take.
func checkCompatible(c *image.Checkpoint) error {
	if c.PageSize != os.Getpagesize() {
		return fmt.Errorf("image page size %d, this machine %d", c.PageSize, os.Getpagesize())
	}
	return nil
}

// rewritePaths points the image's file paths at their copies here.
func rewritePaths(c *image.Checkpoint, m map[string]string) {
	if len(m) == 0 {
		return
	}
	for _, p := range c.Processes {
		if to, ok := m[p.Exe]; ok {
			p.Exe = to
		}
		for i := range p.VMAs {
			if to, ok := m[p.VMAs[i].Path]; ok && p.VMAs[i].Kind == image.VMAFile {
				p.VMAs[i].Path = to
			}
		}
		for i := range p.FDs {
			if to, ok := m[p.FDs[i].Path]; ok && p.FDs[i].Kind == image.FDFile {
				p.FDs[i].Path = to
			}
		}
	}
}
