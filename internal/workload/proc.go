package workload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Proc is a running copy of ferry's built-in workload (see package
// workload), started by StartProc. Its output goes to a pipe that the
// Proc reads; the pipe outlives the process, so a restored copy writes
// its progress lines to the same place.
type Proc struct {
	cmd   *exec.Cmd
	pid   int
	pr    *os.File
	lines chan Progress
	wg    sync.WaitGroup // the pipe reader

	mu    sync.Mutex // guards other
	other []string   // output that is not a progress line (a panic, say)

	last   Progress // the newest line Next or Drain returned
	reaped bool
}

// linesBuffered bounds the progress lines kept unread: at one line per
// 200 ms that is minutes, longer than any phase of a benchmark.
const linesBuffered = 4096

// StartProc starts cmd, which must run ferry's built-in workload
// (`ferry workload ...`, or a test binary that runs workload.Run), and
// waits up to timeout for its first progress line, printed once its memory
// is filled. cmd's Stdout and Stderr are set here.
func StartProc(ctx context.Context, cmd *exec.Cmd, timeout time.Duration) (*Proc, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start workload: %w", err)
	}
	pw.Close()
	w := &Proc{cmd: cmd, pid: cmd.Process.Pid, pr: pr, lines: make(chan Progress, linesBuffered)}
	w.wg.Go(w.read)
	p, err := w.Next(ctx, timeout)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("workload pid %d not ready: %w", w.pid, err)
	}
	if p.Tick != 1 {
		w.Close()
		return nil, fmt.Errorf("workload pid %d: first line has tick %d, want 1", w.pid, p.Tick)
	}
	return w, nil
}

// read forwards progress lines until the pipe is closed by Close.
func (w *Proc) read() {
	defer close(w.lines)
	sc := bufio.NewScanner(w.pr)
	for sc.Scan() {
		if p, ok := ParseLine(sc.Text()); ok {
			select {
			case w.lines <- p:
			default: // nobody has read for minutes: drop rather than stall the workload
			}
			continue
		}
		w.mu.Lock()
		if len(w.other) < 20 {
			w.other = append(w.other, sc.Text())
		}
		w.mu.Unlock()
	}
}

// PID is the workload's process ID, which a restored copy keeps.
func (w *Proc) PID() int { return w.pid }

// Next returns the next progress line, waiting up to timeout. A line that
// reports corruption is returned with an error.
func (w *Proc) Next(ctx context.Context, timeout time.Duration) (Progress, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case p, ok := <-w.lines:
		if !ok {
			return p, fmt.Errorf("workload output ended%s", w.otherOutput())
		}
		if !p.OK {
			return p, fmt.Errorf("workload reports corruption: %s: %w", p.Err, ErrCorrupt)
		}
		w.last = p
		return p, nil
	case <-timer.C:
		return Progress{}, fmt.Errorf("no progress line for %v%s", timeout, w.otherOutput())
	case <-ctx.Done():
		return Progress{}, ctx.Err()
	}
}

// Drain discards the lines already printed and returns the newest line
// seen so far (this call's or an earlier one's). It waits until no line
// has arrived for quiet, so that every line of a process that just died
// is counted.
func (w *Proc) Drain(quiet time.Duration) (Progress, error) {
	timer := time.NewTimer(quiet)
	defer timer.Stop()
	for {
		select {
		case p, ok := <-w.lines:
			if !ok {
				return w.last, fmt.Errorf("workload output ended%s", w.otherOutput())
			}
			if !p.OK {
				return p, fmt.Errorf("workload reports corruption: %s: %w", p.Err, ErrCorrupt)
			}
			w.last = p
			timer.Reset(quiet)
		case <-timer.C:
			return w.last, nil
		}
	}
}

func (w *Proc) otherOutput() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.other) == 0 {
		return ""
	}
	return ": " + strings.Join(w.other, "; ")
}

// Reap collects the original process once a dump has killed it, so that
// its PID is free for a restore.
func (w *Proc) Reap() {
	if w.reaped {
		return
	}
	w.reaped = true
	// It died of SIGKILL: the error says so and nothing more.
	_ = w.cmd.Wait()
}

// Close kills the original process if it still runs and stops reading
// the pipe. A restored copy is the caller's to kill (KillRestored).
func (w *Proc) Close() {
	if !w.reaped {
		w.cmd.Process.Kill()
		w.Reap()
	}
	w.pr.Close()
	w.wg.Wait()
}

// KillRestored kills a restored process, which is a child of the calling
// process, and reaps it so that its PID is free again.
func KillRestored(pid int) error {
	if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("kill restored process %d: %w", pid, err)
	}
	for {
		var ws unix.WaitStatus
		_, err := unix.Wait4(pid, &ws, 0, nil)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return fmt.Errorf("reap restored process %d: %w", pid, err)
		}
		if ws.Exited() || ws.Signaled() {
			return nil
		}
	}
}
