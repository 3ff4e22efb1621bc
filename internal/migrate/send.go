package migrate

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"ferry/internal/dump"
	"ferry/internal/fds"
	"ferry/internal/files"
	"ferry/internal/image"
	"ferry/internal/postcopy"
	"ferry/internal/precopy"
	"ferry/internal/ptrace"
)

// SendOptions tune the source side.
type SendOptions struct {
	Hello Hello
	// BeforeCommit runs while the old copy is frozen and the new one is
	// held: the node drains the job's output and carries its unread
	// input. An error aborts the migration.
	BeforeCommit func(ctx context.Context) error
	// Resolve answers, after a connection broke between Commit and
	// Committed, whether the new copy runs on the destination.
	Resolve func(ctx context.Context) (bool, error)
	// Committed, if set, is called with the report once the new copy
	// runs on the destination, before the old copy is killed (whose
	// death may take the caller's namespace with it).
	Committed func(*Report)
	// Finished, if set, is called with the final report of a committed
	// migration just before the old copy is killed.
	Finished func(*Report)
	// Progress, if set, is called as bytes go out.
	Progress func(Progress)
	// MaxFreeze: precopy stops iterating once the predicted freeze is
	// this short.
	MaxFreeze time.Duration
	// Hasher hashes the job's files for the destination's content check
	// (with a cache, ideally kept by the node).
	Hasher *files.Hasher
	// AfterFreeze and MsgEndpoint are the dump's hooks for the job's
	// message-endpoint connections (dump.Options): the node quiesces
	// them once the job is frozen and names its side of each.
	AfterFreeze func(ctx context.Context) error
	MsgEndpoint func(s fds.PeerSocket) (id string, ok bool)
	// Replace, if set, is called after a commit instead of killing the
	// old copy: a process moved away from its job alone leaves its
	// stand-in in its place (dump.Held.Replace).
	Replace func(ctx context.Context, h *dump.Held) error
	// Fault injects a failure at a named point (tests only), one of
	// SendFaults: "drop-image", "corrupt-image", "drop-commit",
	// "cancel-ready".
	Fault string
	Log   *slog.Logger
}

// Send migrates the process tree rooted at pid over rw, which it closes.
// On error the process runs on here (Report.Resumed), unless the error
// says otherwise.
func Send(ctx context.Context, t *ptrace.Tracer, rw io.ReadWriteCloser, pid int, opts SendOptions) (*Report, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &sender{t: t, pid: pid, opts: opts, log: opts.Log.With("job", opts.Hello.Job, "mode", opts.Hello.Mode),
		c: newConn(rw), start: time.Now()}
	s.rep = &Report{Job: opts.Hello.Job, Mode: opts.Hello.Mode}
	defer rw.Close()
	err := s.run(ctx)
	s.rep.Total = time.Since(s.start)
	s.rep.BytesSent = s.c.sent
	if err != nil {
		s.rep.Error = err.Error()
	}
	return s.rep, err
}

type sender struct {
	t     *ptrace.Tracer
	pid   int
	opts  SendOptions
	log   *slog.Logger
	c     *conn
	rep   *Report
	start time.Time
	held  *dump.Held
	// dumped is the dump's result (postcopy serves its lazy memory).
	dumped *dump.Result
	// pre is the precopy session, if any.
	pre  *precopy.Session
	mark time.Time // end of the last phase
	// filesSeen: the verdict each file got in an earlier file phase.
	filesSeen map[string]files.Verdict
	// commitSent: from here on, cancellation no longer resumes the old
	// copy.
	commitSent atomic.Bool
}

// phase records that the step name ended now.
func (s *sender) phase(name string) {
	now := time.Now()
	if s.mark.IsZero() {
		s.mark = s.start
	}
	s.rep.Phases = append(s.rep.Phases, Phase{Name: name, Took: now.Sub(s.mark)})
	s.mark = now
}

func (s *sender) progress(p Progress) {
	if s.opts.Progress != nil {
		s.opts.Progress(p)
	}
}

func (s *sender) run(ctx context.Context) (err error) {
	// Cancellation before the commit closes the connection, which fails
	// whatever step is waiting on it; the deferred abort resumes.
	stop := context.AfterFunc(ctx, func() {
		if !s.commitSent.Load() {
			s.c.rw.Close()
		}
	})
	defer stop()
	defer func() {
		if err == nil || s.rep.Committed || errors.Is(err, ErrCommitUnknown) {
			return
		}
		if ctx.Err() != nil && !s.commitSent.Load() {
			err = fmt.Errorf("%w: %w", ErrCancelled, ctx.Err())
		} else if reason := s.peerReason(); reason != "" {
			err = fmt.Errorf("%w: %s (%w)", ErrAborted, reason, err)
		}
		s.c.sendJSON(fAbort, abortMsg{Reason: err.Error()})
		if s.held != nil {
			rctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if rerr := s.held.Resume(rctx); rerr != nil {
				err = fmt.Errorf("%w; and resuming the process here failed: %v", err, rerr)
				return
			}
		}
		if s.pre != nil {
			s.pre.Close()
		}
		s.rep.Resumed = true
		err = Mark(err, ErrResumed)
		s.log.Warn("migration failed; the process runs on here", "err", err)
	}()

	h := s.opts.Hello
	h.Version = wireVersion
	if err := s.c.sendJSON(fHello, h); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	var w welcome
	if err := s.c.recvJSON(fWelcome, &w); err != nil {
		return fmt.Errorf("destination: %w", err)
	}
	s.phase("connect")
	if err := s.sendFilesAhead(); err != nil {
		return err
	}

	var pre *precopy.Session
	if s.opts.Hello.Mode == Precopy {
		var err error
		if pre, err = s.precopy(ctx); err != nil {
			return err
		}
		// Tracking ends after the old copy resumed or was killed.
		s.pre = pre
		s.phase("precopy rounds")
	}

	// The image: the old copy stays frozen afterwards.
	est := uint64(dump.EstimateSize(s.pid))
	iw := &countingWriter{w: imageWriter{s.c}, s: s, total: est}
	iwr, err := image.NewWriter(iw)
	if err != nil {
		return err
	}
	s.progress(Progress{Phase: "image", TotalBytes: est})
	dopts := dump.Options{Leave: dump.Frozen, Log: s.opts.Log, BeforeState: s.sendFiles,
		Lazy: s.opts.Hello.Mode == Postcopy, AfterFreeze: s.opts.AfterFreeze, MsgEndpoint: s.opts.MsgEndpoint}
	if pre != nil {
		dopts.Precopy = pre
	}
	res, err := dump.Dump(ctx, s.t, s.pid, iwr, dopts)
	if res != nil && res.Held != nil {
		s.held = res.Held
		s.dumped = res
	}
	if err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	s.rep.ImageBytes = uint64(res.Stats.TotalBytes)
	if err := s.c.send(fImageEnd, true); err != nil {
		return fmt.Errorf("send image: %w", err)
	}
	s.phase("image")
	var rd ready
	if err := s.c.recvJSON(fReady, &rd); err != nil {
		return fmt.Errorf("destination did not restore: %w", err)
	}
	s.rep.RestoreTime = time.Duration(rd.RestoreMS * float64(time.Millisecond))
	s.phase("restore held")
	if s.opts.Fault == "cancel-ready" {
		return fmt.Errorf("%w: cancelled after ready", ErrFault)
	}
	if s.opts.BeforeCommit != nil {
		if err := s.opts.BeforeCommit(ctx); err != nil {
			return fmt.Errorf("before commit: %w", err)
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.phase("carry stdio")
	s.progress(Progress{Phase: "commit", Bytes: s.c.sent, TotalBytes: s.c.sent})
	s.commitSent.Store(true)
	if err := s.c.sendJSON(fCommit, commit{}); err != nil {
		// Not sent for sure? A failed write may still have left bytes
		// in the socket: ask.
		return s.resolve(ctx, fmt.Errorf("send commit: %w", err))
	}
	if s.opts.Fault == "drop-commit" {
		s.c.rw.Close()
	}
	var cm committed
	if err := s.c.recvJSON(fCommitted, &cm); err != nil {
		return s.resolve(ctx, fmt.Errorf("await committed: %w", err))
	}
	s.phase("commit")
	return s.finish()
}

// resolve settles a commit whose answer was lost.
func (s *sender) resolve(ctx context.Context, cause error) error {
	s.log.Warn("commit answer lost; asking the destination node", "err", cause)
	if s.opts.Resolve == nil {
		s.commitSent.Store(false)
		return cause
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	ok, err := s.opts.Resolve(rctx)
	if err != nil {
		// Nobody can say whether the new copy runs (its node may be
		// down while its init keeps it): the old copy must not run
		// either. It stays frozen; its node settles it later.
		return Mark(fmt.Errorf("%w; destination unreachable (%v)", cause, err), ErrCommitUnknown)
	}
	if !ok {
		// The destination does not run it: resume here.
		s.commitSent.Store(false)
		return fmt.Errorf("%w; destination did not commit", cause)
	}
	return s.finish()
}

// finish ends the old copy after a commit: at once, or with postcopy once
// the destination has every page.
func (s *sender) finish() error {
	s.rep.Committed = true
	s.rep.FreezeTime = time.Since(s.held.FrozenSince())
	s.rep.Total = time.Since(s.start)
	s.rep.RunningAfter = s.rep.Total
	s.rep.BytesSent = s.c.sent
	if s.opts.Committed != nil {
		s.opts.Committed(s.rep)
	}
	var perr error
	if s.opts.Hello.Mode == Postcopy {
		// The new copy runs; its memory is still here. No cancelling
		// now: the job depends on this push.
		s.progress(Progress{Phase: "push", Bytes: s.c.sent, TotalBytes: s.c.sent})
		st, err := postcopy.Serve(context.Background(), handoff{s.c}, postcopy.SourceProcesses(s.dumped),
			postcopy.ServeOptions{Log: s.log})
		if st != nil {
			s.rep.BytesSent += uint64(st.BytesSent)
			s.rep.PushedPages = uint64(st.PagesPushed)
			s.rep.OnDemandPages = uint64(st.PagesOnDemand)
			if !st.Acked.IsZero() {
				s.rep.ResidualEnded = st.Acked.Sub(s.start)
			}
		}
		s.phase("postcopy push")
		if err != nil {
			// The new copy ran there: resuming this one would run the job
			// twice. Say plainly what happened.
			perr = Mark(fmt.Errorf("the destination went away during the postcopy push (%w): the job ran there and could not get all its memory; it is lost", err), ErrLost)
			s.rep.Error = perr.Error()
		}
	}
	s.rep.Total = time.Since(s.start)
	if s.opts.Finished != nil {
		s.opts.Finished(s.rep)
	}
	kctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if s.opts.Replace != nil {
		if err := s.opts.Replace(kctx, s.held); err != nil {
			s.log.Error("replace the old copy by its stand-in after commit", "err", err)
			perr = fmt.Errorf("the process runs on the destination, but its stand-in here failed: %w", err)
		}
	} else if err := s.held.Kill(kctx); err != nil {
		s.log.Error("kill the old copy after commit", "err", err)
	}
	if s.pre != nil {
		s.pre.Close()
	}
	return perr
}

// handoff gives the rest of a migration connection to another protocol
// (postcopy): reads go through what the frame reader already buffered.
type handoff struct{ c *conn }

func (h handoff) Read(p []byte) (int, error)  { return h.c.br.Read(p) }
func (h handoff) Write(p []byte) (int, error) { return h.c.rw.Write(p) }
func (h handoff) Close() error                { return h.c.rw.Close() }

// countingWriter reports image progress and injects image faults.
type countingWriter struct {
	w      io.Writer
	s      *sender
	n      uint64
	total  uint64
	last   time.Time
	broken bool
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	switch cw.s.opts.Fault {
	case "drop-image":
		if !cw.broken {
			cw.broken = true
			cw.s.c.rw.Close()
		}
	case "corrupt-image":
		if !cw.broken {
			cw.broken = true
			cw.s.c.sendCorrupt(fImage, p)
		}
	}
	n, err := cw.w.Write(p)
	cw.n += uint64(n)
	if time.Since(cw.last) > 100*time.Millisecond {
		cw.last = time.Now()
		cw.s.progress(Progress{Phase: "image", Bytes: cw.n, TotalBytes: max(cw.total, cw.n)})
	}
	return n, err
}

// peerReason looks, briefly, for the Abort frame a destination sends
// before it hangs up (say, on a corrupt frame), so the user learns why.
func (s *sender) peerReason() string {
	dl, ok := s.c.rw.(interface{ SetReadDeadline(time.Time) error })
	if !ok {
		return ""
	}
	dl.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	defer dl.SetReadDeadline(time.Time{})
	for i := 0; i < 1024; i++ {
		t, p, err := s.c.recv(nil)
		if err != nil {
			return ""
		}
		if t == fAbort {
			var a abortMsg
			json.Unmarshal(p, &a)
			return a.Reason
		}
	}
	return ""
}

// precopy sends memory while the tree runs, round after round, and
// returns the session whose final plan the dump then follows.
func (s *sender) precopy(ctx context.Context) (*precopy.Session, error) {
	sess, err := precopy.Start(ctx, s.t, s.pid, precopy.Options{
		MaxFreeze: s.opts.MaxFreeze,
		Log:       s.log,
		Progress: func(p precopy.Progress) {
			s.progress(Progress{Phase: "precopy", Round: p.Round, Bytes: uint64(p.Sent),
				TotalBytes: uint64(p.Sent + p.Remaining), DirtyRate: p.DirtyRate,
				ETA: p.PredictedFreeze.Seconds()})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("precopy: %w", err)
	}
	ps := &pageSender{c: s.c, s: s, total: uint64(dump.EstimateSize(s.pid))}
	st, err := sess.Run(ctx, ps)
	if err != nil {
		sess.Close()
		return nil, fmt.Errorf("precopy: %w", err)
	}
	for _, r := range st.Rounds {
		s.rep.Rounds = append(s.rep.Rounds, Round{Pages: uint64(r.Pages), Bytes: uint64(r.Bytes),
			DirtyBytes: uint64(r.Reported) * uint64(os.Getpagesize()), Took: r.Duration})
	}
	s.rep.RedundantPages = uint64(st.RedundantPages)
	s.rep.StopReason = st.Reason.String()
	s.log.Info("precopy rounds done", "rounds", len(st.Rounds), "reason", st.Reason, "bytes", st.Bytes)
	return sess, nil
}

// pageSender sends a precopy round's pages as Pages frames, and reports
// progress as they go (the rounds report once each, and the first one is
// most of the transfer).
type pageSender struct {
	c     *conn
	s     *sender
	sent  uint64
	total uint64
	last  time.Time
}

func (p *pageSender) SendPages(pid int, addr uint64, data []byte) error {
	p.sent += uint64(len(data))
	if time.Since(p.last) > 100*time.Millisecond {
		p.last = time.Now()
		p.s.progress(Progress{Phase: "precopy", Bytes: p.sent, TotalBytes: max(p.total, p.sent)})
	}
	for off := 0; off < len(data); {
		n := min(len(data)-off, MaxFrame-pagesHeader)
		var h [pagesHeader]byte
		binary.LittleEndian.PutUint32(h[0:4], uint32(pid))
		binary.LittleEndian.PutUint64(h[4:12], addr+uint64(off))
		if err := p.c.send(fPages, false, h[:], data[off:off+n]); err != nil {
			return err
		}
		off += n
	}
	return nil
}
