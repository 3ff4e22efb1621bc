package testutil

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// Poll calls cond every interval until it reports done, and fails the
// test naming what and cond's last state once timeout has passed. It
// returns how long it took. For conditions no event announces (a thread
// reaching its blocking call, nodes seeing each other); where the program
// can say it is ready, give it a readiness pipe (StartReady) instead.
func Poll(tb testing.TB, timeout, interval time.Duration, what string, cond func() (done bool, state string)) time.Duration {
	tb.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for {
		done, state := cond()
		if done {
			return time.Since(start)
		}
		if time.Now().After(deadline) {
			if state != "" {
				state = "; last state: " + state
			}
			tb.Fatalf("%s: not after %v%s", what, timeout, state)
		}
		time.Sleep(interval)
	}
}

// StartReady starts cmd with the write end of a new pipe as its fd 3 (and
// extra as fd 4, 5…) and returns the read end, on which the program
// reports that it is ready. The test's copy of the write end is closed
// once cmd has started, so a read sees EOF when the program (and every
// child that inherited fd 3) has closed it. The read end is closed when
// the test ends; stopping cmd is the caller's.
func StartReady(tb testing.TB, cmd *exec.Cmd, extra ...*os.File) *os.File {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	cmd.ExtraFiles = append([]*os.File{w}, extra...)
	err = cmd.Start()
	w.Close()
	if err != nil {
		tb.Fatalf("start %s: %v", cmd.Path, err)
	}
	return r
}
