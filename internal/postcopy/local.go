package postcopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/restore"
)

// LocalOptions tune ServeLocal.
type LocalOptions struct {
	Log *slog.Logger
}

// ServeLocal fills the lazy memory of restored processes (restore.Result
// .Lazy) from read, inside this process: Serve with ServeOptions.Read on
// one end of a socketpair, a Pager on the other. A precopy destination
// uses it to write the pages it staged during the rounds after the new
// copy already runs (restore.Options.StagedLazy; read is the Staging's
// ReadPages): the processes fault on a page not written yet and wait
// until it is, while the push fills the rest. There is no remote source,
// hence no residual dependency on another node.
//
// ServeLocal takes the userfaultfds over: when it returns they are
// closed. It returns the pager's figures once every page is in place.
// On failure (read fails, ctx ends, a userfaultfd breaks) it kills the
// processes of procs with SIGKILL first, since they cannot get their
// memory any more, and says so in its error. A child a process forked
// meanwhile is not among them: its memory reads as zeros where pages were
// missing; the caller kills what surrounds the job.
func ServeLocal(ctx context.Context, procs []restore.LazyProcess, read func(imagePID int, addr uint64, buf []byte) error, opts LocalOptions) (*PagerStats, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	kill := func() {
		for _, lp := range procs {
			unix.Kill(lp.PID, unix.SIGKILL)
		}
	}
	closeUffds := func() {
		for _, lp := range procs {
			if lp.Uffd >= 0 {
				unix.Close(lp.Uffd)
			}
		}
	}
	if read == nil {
		kill()
		closeUffds()
		return nil, fmt.Errorf("postcopy: local source without pages; the processes were killed")
	}
	src, dst, err := localPair()
	if err != nil {
		kill()
		closeUffds()
		return nil, fmt.Errorf("%w; the processes were killed", err)
	}
	sps := make([]SourceProcess, 0, len(procs))
	for _, lp := range procs {
		sps = append(sps, SourceProcess{ImagePID: lp.ImagePID, PID: lp.PID, VMAs: lp.VMAs})
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	type served struct {
		st  *SourceStats
		err error
	}
	done := make(chan served, 1)
	go func() {
		st, err := Serve(sctx, src, sps, ServeOptions{Read: read, Log: opts.Log})
		done <- served{st, err}
	}()
	pager, err := StartPager(ctx, dst, procs, PagerOptions{Log: opts.Log})
	if err != nil {
		kill()
		closeUffds()
		dst.Close()
		stop()
		<-done
		return nil, fmt.Errorf("%w; the processes were killed", err)
	}
	st, err := pager.Wait()
	if err != nil {
		kill()
		pager.Close() // closes its end: Serve stops too
		var s served
		select {
		case s = <-done:
		case <-time.After(5 * time.Second):
			stop()
			s = <-done
		}
		if s.err != nil && !errors.Is(s.err, ErrDestinationGone) && sctx.Err() == nil {
			// The cause, which the pager may not have heard of.
			return st, fmt.Errorf("local source: %w (pager: %w); the processes were killed", s.err, err)
		}
		return st, fmt.Errorf("local pager: %w; the processes were killed", err)
	}
	pager.Close()
	// The pager told the source it is done: Serve returns on its own.
	s := <-done
	if s.err != nil {
		opts.Log.Warn("local postcopy source ended badly after every page was in place", "err", s.err)
	}
	return st, nil
}

// localPair connects Serve and a Pager inside this process.
func localPair() (src, dst io.ReadWriteCloser, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("postcopy: %w", os.NewSyscallError("socketpair", err))
	}
	var conns [2]net.Conn
	for i, fd := range fds {
		// Room for a few frames in flight each way.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 1<<20)
		f := os.NewFile(uintptr(fd), "postcopy-local")
		c, cerr := net.FileConn(f)
		f.Close()
		if cerr != nil {
			if i == 0 {
				unix.Close(fds[1])
			} else {
				conns[0].Close()
			}
			return nil, nil, fmt.Errorf("postcopy: local connection: %w", cerr)
		}
		conns[i] = c
	}
	return conns[0], conns[1], nil
}
