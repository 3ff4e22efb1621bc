package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/files"
	"ferry/internal/image"
	"ferry/internal/postcopy"
	"ferry/internal/precopy"
	"ferry/internal/ptrace"
	"ferry/internal/restore"
)

// ReceiveOptions tune the destination side.
type ReceiveOptions struct {
	// Accept checks the Hello; an error refuses the migration.
	Accept func(Hello) error
	// Stdio gives the files that stand for the job's standard streams
	// here, by role ("stdin", "stdout", "stderr").
	Stdio map[string]*os.File
	// MsgConnect makes the job's message-endpoint connections again
	// here (restore.Options.MsgConnect).
	MsgConnect func(id string, unread [][]byte) (*os.File, error)
	// Parent, for a process moved away from its job alone, is its
	// stand-in parent here (restore.Options.Parent).
	Parent *restore.Parent
	// Into: a process moved apart comes home, its image's root made in
	// its stand-in (restore.Options.Into).
	Into *restore.Into
	// Restored is called once the new copy is built and held.
	Restored func(*restore.Result)
	// Committed is called when Commit has arrived, just before the new
	// copy is let run; Released once it runs.
	Committed func()
	Released  func()
	// CommitTimeout bounds the wait for Commit after Ready (default 2 min).
	CommitTimeout time.Duration
	// Hasher checks the job's files against this node's; FileCache is
	// where files that differ here are kept.
	Hasher    *files.Hasher
	FileCache string
	// Owner, if set, is the job's owner (not root): files that arrive are
	// created only where it could have created them. Forbidden lists
	// directories no file of a manifest may be in (the node's state).
	Owner     *files.Owner
	Forbidden []string
	// EagerStaged writes a precopy's staged pages before the new copy
	// runs, as before restore.Options.StagedLazy existed: freezing time
	// then grows with the process's size.
	EagerStaged bool
	// Fault injects a failure (tests only), one of ReceiveFaults:
	// "die-image", "die-ready", "drop-ready", "die-commit".
	Fault string
	Log   *slog.Logger
}

// Result is what the destination did.
type Result struct {
	Hello   Hello
	PID     int
	Restore *restore.Result
	// Pager: postcopy's figures (faults, prefetch hits, when the
	// dependency on the source ended); with precopy, those of filling the
	// staged pages here after the new copy ran (FillStaged).
	Pager *postcopy.PagerStats
}

// ErrNotCommitted is wrapped when the source never committed: the new
// copy was removed.
var ErrNotCommitted = errors.New("migration not committed")

// Receive takes a migration from rw (which it closes), restores the tree
// held, and lets it run once the source commits.
func Receive(ctx context.Context, t *ptrace.Tracer, rw io.ReadWriteCloser, opts ReceiveOptions) (*Result, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.CommitTimeout == 0 {
		opts.CommitTimeout = 2 * time.Minute
	}
	defer rw.Close()
	stop := context.AfterFunc(ctx, func() { rw.Close() })
	defer stop()
	c := newConn(rw)
	var h Hello
	if err := c.recvJSON(fHello, &h); err != nil {
		return nil, fmt.Errorf("hello: %w", err)
	}
	if h.Version != wireVersion {
		err := fmt.Errorf("source speaks migration protocol version %d, this node %d", h.Version, wireVersion)
		c.sendJSON(fAbort, abortMsg{Reason: err.Error()})
		return nil, Mark(err, ErrRefused)
	}
	if opts.Accept != nil {
		if err := opts.Accept(h); err != nil {
			c.sendJSON(fAbort, abortMsg{Reason: err.Error()})
			return nil, fmt.Errorf("refused: %w", Mark(err, ErrRefused))
		}
	}
	if err := c.sendJSON(fWelcome, welcome{OK: true}); err != nil {
		return nil, err
	}
	log := opts.Log.With("job", h.Job, "mode", h.Mode, "from", h.Source)
	res := &Result{Hello: h}

	inherit := map[string]*os.File{}
	for id, role := range h.Stdio {
		if f := opts.Stdio[role]; f != nil {
			inherit[id] = f
		}
	}
	store := &files.Store{CacheDir: opts.FileCache, Owner: opts.Owner, Forbidden: opts.Forbidden, Rewrite: map[string]string{}}
	hasher := opts.Hasher
	if hasher == nil {
		hasher = &files.Hasher{}
	}
	ir := &imageReader{c: c, files: func(p []byte) error { return receiveFiles(c, p, hasher, store) }}
	var staging *precopy.Staging
	if h.Mode == Precopy {
		staging = precopy.NewStaging()
		defer staging.Close()
		ir.pages = staging.SendPages
	}
	committedOK := false
	defer func() {
		if !committedOK {
			store.Undo()
		}
	}()
	var src io.Reader = ir
	if opts.Fault == "die-image" {
		src = &dieAfter{r: ir, n: 64 << 10}
	}
	r, err := image.NewReader(src)
	if err != nil {
		c.sendJSON(fAbort, abortMsg{Reason: err.Error()})
		return nil, fmt.Errorf("image: %w", err)
	}
	rres, err := restore.Restore(ctx, t, r, restore.Options{Hold: true, Inherit: inherit, Log: log,
		RewritePaths: store.Rewrite, Lazy: h.Mode == Postcopy, Staged: stagedOrNil(staging),
		StagedLazy: staging != nil && !opts.EagerStaged, MsgConnect: opts.MsgConnect, Parent: opts.Parent, Into: opts.Into})
	if err != nil {
		c.sendJSON(fAbort, abortMsg{Reason: "restore: " + err.Error()})
		return nil, fmt.Errorf("restore: %w", err)
	}
	res.Restore, res.PID = rres, rres.PID
	held := rres.Held
	kill := func(cause error) error {
		kctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		held.Kill(kctx)
		rres.CloseLazy()
		log.Warn("new copy removed", "err", cause)
		return fmt.Errorf("%w: %w", ErrNotCommitted, cause)
	}
	// The rest of the image (its trailer) must have arrived intact.
	if !ir.end {
		if _, err := io.Copy(io.Discard, ir); err != nil {
			c.sendJSON(fAbort, abortMsg{Reason: err.Error()})
			return nil, kill(fmt.Errorf("image end: %w", err))
		}
	}
	if opts.Restored != nil {
		opts.Restored(rres)
	}
	switch opts.Fault {
	case "die-ready":
		os.Exit(3)
	case "drop-ready":
		rw.Close()
	}
	if err := c.sendJSON(fReady, ready{PID: rres.PID, RestoreMS: float64(rres.Duration) / float64(time.Millisecond)}); err != nil {
		return nil, kill(fmt.Errorf("send ready: %w", err))
	}
	waitCtx, cancel := context.WithTimeout(ctx, opts.CommitTimeout)
	defer cancel()
	stopWait := context.AfterFunc(waitCtx, func() { rw.Close() })
	var cm commit
	err = c.recvJSON(fCommit, &cm)
	stopWait()
	if err != nil {
		if waitCtx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("no commit within %v: %w", opts.CommitTimeout, err)
		}
		return nil, kill(fmt.Errorf("await commit: %w", err))
	}
	// Committed: from here the process runs here, whatever happens to
	// the connection.
	committedOK = true
	if opts.Committed != nil {
		opts.Committed()
	}
	if opts.Fault == "die-commit" {
		os.Exit(3)
	}
	if err := held.Release(context.WithoutCancel(ctx)); err != nil {
		rres.CloseLazy() // the tree is gone
		return nil, fmt.Errorf("release the new copy: %w", err)
	}
	if opts.Released != nil {
		opts.Released()
	}
	if err := c.sendJSON(fCommitted, committed{At: time.Now()}); err != nil {
		log.Warn("committed, but the source did not hear it; it will ask", "err", err)
	}
	if h.Mode == Precopy && len(rres.Lazy) > 0 {
		// Precopy: the job runs already; the pages staged during the
		// rounds go in now, from here (the source has let go).
		st, err := fillStaged(context.WithoutCancel(ctx), staging, rres, log)
		res.Pager = st
		return res, err
	}
	if h.Mode != Postcopy {
		return res, nil
	}
	// Postcopy: the job runs here and fetches its memory from the source.
	pager, err := postcopy.StartPager(context.WithoutCancel(ctx), handoff{c}, rres.Lazy, postcopy.PagerOptions{Log: log})
	if err != nil {
		killLazy(rres)
		return res, fmt.Errorf("postcopy pager: %w; the job was killed", err)
	}
	st, err := pager.Wait()
	if err != nil {
		// The pager owns the userfaultfds now: kill, and let it close them.
		for _, lp := range rres.Lazy {
			unix.Kill(lp.PID, unix.SIGKILL)
		}
		pager.Close()
		forgetLazy(rres)
		return res, fmt.Errorf("%w; the job was killed", err)
	}
	pager.Close()
	forgetLazy(rres)
	res.Pager = st
	return res, nil
}

// fillStaged writes the pages a precopy staged during the rounds into a
// tree restored with restore.Options{Staged: staging, StagedLazy: true},
// which runs already: postcopy.ServeLocal serves res.Lazy's userfaultfds
// from the staging. It returns when every page is in place; on failure
// the processes were killed (they cannot get their memory) and the error
// says so. Either way the userfaultfds are closed, and the staging may be
// closed afterwards. The time it took is added to res.Phases, which the
// node logs.
func fillStaged(ctx context.Context, staging *precopy.Staging, res *restore.Result, log *slog.Logger) (*postcopy.PagerStats, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := postcopy.ServeLocal(ctx, res.Lazy, staging.ReadPages, postcopy.LocalOptions{Log: log})
	forgetLazy(res)
	if err != nil {
		return st, fmt.Errorf("fill the staged pages after the commit: %w; the job was killed", err)
	}
	took := st.ResidualEnded.Sub(st.Started)
	res.Phases = append(res.Phases, restore.Phase{Name: "staged pages after release", Took: took})
	log.Info("staged pages filled", "pages", st.PagesCopied, "faults", st.Faults, "took", took)
	return st, nil
}

// forgetLazy marks res.Lazy's userfaultfds as closed by their pager.
func forgetLazy(r *restore.Result) {
	for i := range r.Lazy {
		r.Lazy[i].Uffd = -1
	}
}

// dieAfter ends the process after n bytes (fault injection).
type dieAfter struct {
	r io.Reader
	n int
}

func (d *dieAfter) Read(p []byte) (int, error) {
	if d.n <= 0 {
		os.Exit(3)
	}
	n, err := d.r.Read(p[:min(len(p), d.n)])
	d.n -= n
	return n, err
}

// killLazy ends a postcopy job that cannot get its memory any more.
func killLazy(r *restore.Result) {
	for _, lp := range r.Lazy {
		unix.Kill(lp.PID, unix.SIGKILL)
	}
	r.CloseLazy()
}

// stagedOrNil keeps a nil *Staging from becoming a non-nil interface.
func stagedOrNil(s *precopy.Staging) restore.Staged {
	if s == nil {
		return nil
	}
	return s
}
