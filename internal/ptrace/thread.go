package ptrace

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// Wait waits for a stop or exit of tid (__WALL) and retries EINTR.
func Wait(tid int) (unix.WaitStatus, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(tid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, fmt.Errorf("wait4 %d: %w", tid, err)
		}
		return ws, nil
	}
}

// WaitTimeout is Wait with a deadline, polling with WNOHANG; it reports
// ok=false when the deadline passes first.
func WaitTimeout(tid int, d time.Duration) (ws unix.WaitStatus, ok bool, err error) {
	deadline := time.Now().Add(d)
	sleep := 20 * time.Microsecond
	for {
		pid, err := unix.Wait4(tid, &ws, unix.WALL|unix.WNOHANG, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return ws, false, fmt.Errorf("wait4 %d: %w", tid, err)
		}
		if pid == tid {
			return ws, true, nil
		}
		if time.Now().After(deadline) {
			return ws, false, nil
		}
		time.Sleep(sleep)
		if sleep < 2*time.Millisecond {
			sleep *= 2
		}
	}
}

// ErrExited reports that a tracee exited while being traced.
var ErrExited = errors.New("tracee exited")

// Describe renders a wait status for error messages.
func Describe(ws unix.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		return fmt.Sprintf("killed by %v", ws.Signal())
	case ws.Stopped():
		if ev := kernel.StopEvent(ws); ev != 0 {
			return fmt.Sprintf("stopped by %v (ptrace event %d)", ws.StopSignal(), ev)
		}
		return fmt.Sprintf("stopped by %v", ws.StopSignal())
	}
	return fmt.Sprintf("wait status %#x", uint32(ws))
}

// Tasks lists the thread IDs of pid.
func Tasks(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	tids := make([]int, 0, len(ents))
	for _, e := range ents {
		if n, err := strconv.Atoi(e.Name()); err == nil {
			tids = append(tids, n)
		}
	}
	return tids, nil
}
