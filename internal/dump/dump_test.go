package dump

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"ferry/internal/image"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// failingSink accepts limit page bytes and then fails, like a full disk or
// a dropped connection in the middle of an image.
type failingSink struct {
	limit, got int
	closed     bool
}

var errSink = errors.New("sink failed")

func (s *failingSink) WriteState(*image.Checkpoint) error        { return nil }
func (s *failingSink) WriteFileData(string, int64, []byte) error { return nil }
func (s *failingSink) WriteSignals([]image.PendingSignal) error  { return nil }
func (s *failingSink) Close() error                              { s.closed = true; return nil }
func (s *failingSink) Stats() image.Stats                        { return image.Stats{} }
func (s *failingSink) WritePages(pid int, addr uint64, data []byte) error {
	if s.got+len(data) > s.limit {
		return errSink
	}
	s.got += len(data)
	return nil
}

// TestFailedDumpLeavesProcessRunning: whatever fails during a dump, the
// process is released and runs on, untraced and not stopped.
func TestFailedDumpLeavesProcessRunning(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace")
	}
	for _, limit := range []int{0, 4096, 8192} {
		t.Run(fmt.Sprintf("fail-after-%d", limit), func(t *testing.T) {
			// A shell loop that keeps a counter in memory and keeps running.
			cmd := exec.Command("/bin/sh", "-c", "i=0; while :; do i=$((i+1)); done")
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			pid := cmd.Process.Pid
			tr := ptrace.NewTracer()
			defer tr.Close()
			sink := &failingSink{limit: limit}
			_, err := Dump(context.Background(), tr, pid, sink, Options{})
			if !errors.Is(err, errSink) {
				t.Fatalf("Dump with a failing sink = %v, want %v", err, errSink)
			}
			if sink.closed {
				t.Errorf("Dump closed (committed) an image it failed to write")
			}
			st, err := procfs.Status(pid)
			if err != nil {
				t.Fatalf("process %d is gone after a failed dump: %v", pid, err)
			}
			if st.TracerPID != 0 {
				t.Errorf("process still traced by %d after a failed dump", st.TracerPID)
			}
			// It must still be running: its CPU time keeps growing.
			before, _ := procfs.Stat(pid)
			deadline := time.Now().Add(5 * time.Second)
			for {
				now, err := procfs.Stat(pid)
				if err != nil {
					t.Fatal(err)
				}
				if now.UTime+now.STime > before.UTime+before.STime {
					break
				}
				if now.State == 'T' || now.State == 't' {
					t.Fatalf("process left stopped (state %c) after a failed dump", now.State)
				}
				if time.Now().After(deadline) {
					t.Fatalf("process does not run after a failed dump (state %c)", now.State)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

// TestDumpRefusesBadPIDs covers input that must be refused before anything
// is touched.
func TestDumpRefusesBadPIDs(t *testing.T) {
	for _, tc := range []struct {
		pid  int
		want string
	}{
		{0, "invalid pid"},
		{-5, "invalid pid"},
		{os.Getpid(), "ferry itself"},
		{1 << 30, "no such process"},
	} {
		err := Check(tc.pid)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%d) = %v, want an error containing %q", tc.pid, err, tc.want)
		}
	}
}
