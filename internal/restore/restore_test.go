package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// checkpointShell dumps (and kills) a busy shell loop into memory and
// returns the image and the shell's PID, now free again.
func checkpointShell(t *testing.T, tr *ptrace.Tracer) ([]byte, int) {
	return checkpointShellVia(t, tr, func(w *image.Writer, pid int) dump.Sink { return w })
}

// checkpointShellVia is checkpointShell with the image writer wrapped by
// sink, to act while the shell is frozen.
func checkpointShellVia(t *testing.T, tr *ptrace.Tracer, sink func(w *image.Writer, pid int) dump.Sink) ([]byte, int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", "i=0; while :; do i=$((i+1)); done")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := image.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	if _, err := dump.Dump(context.Background(), tr, pid, sink(w, pid), dump.Options{}); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	cmd.Wait() // reap: the PID is free for the restore
	return buf.Bytes(), pid
}

func restoreBytes(tr *ptrace.Tracer, img []byte) (*Result, error) {
	r, err := image.NewReader(bytes.NewReader(img))
	if err != nil {
		return nil, err
	}
	return Restore(context.Background(), tr, r, Options{})
}

// TestRestoreBadImages: a damaged image is refused with an error naming
// the damage, and no half-built process is left behind.
func TestRestoreBadImages(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace")
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	img, pid := checkpointShell(t, tr)
	for _, tc := range []struct {
		name string
		mut  func([]byte) []byte
		want error
	}{
		{"truncated-in-pages", func(b []byte) []byte { return b[:len(b)*3/4] }, image.ErrTruncated},
		{"truncated-before-trailer", func(b []byte) []byte { return b[:len(b)-1] }, image.ErrTruncated},
		{"corrupt-page-byte", func(b []byte) []byte {
			c := bytes.Clone(b)
			c[len(c)*3/4] ^= 0x40
			return c
		}, image.ErrChecksum},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := restoreBytes(tr, tc.mut(img))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore = %v, want %v", err, tc.want)
			}
			if st, err := procfs.Stat(pid); err == nil && st.State != 'Z' {
				t.Fatalf("a process %d (state %c) is left after a failed restore", pid, st.State)
			}
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, unix.WNOHANG, nil) // reap the killed half-built copy
		})
	}
	// The intact image still restores, with the same PID, running.
	res, err := restoreBytes(tr, img)
	if err != nil {
		t.Fatalf("Restore of the intact image: %v", err)
	}
	defer func() {
		unix.Kill(res.PID, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(res.PID, &ws, 0, nil)
	}()
	if res.PID != pid {
		t.Fatalf("restored pid %d, want %d", res.PID, pid)
	}
	st, err := procfs.Status(res.PID)
	if err != nil {
		t.Fatal(err)
	}
	if st.TracerPID != 0 || st.State == 'T' || st.State == 't' {
		t.Fatalf("restored process: state %c, tracer %d; want running, untraced", st.State, st.TracerPID)
	}
}

// signalingSink sends a signal to the frozen process when the first pages
// are written, i.e. after the state record: a signal that arrives while
// frozen.
type signalingSink struct {
	*image.Writer
	pid  int
	sent bool
}

func (s *signalingSink) WritePages(pid int, addr uint64, data []byte) error {
	if !s.sent {
		s.sent = true
		if err := unix.Kill(s.pid, unix.SIGUSR1); err != nil {
			return err
		}
	}
	return s.Writer.WritePages(pid, addr, data)
}

// TestSignalWhileFrozenIsRequeued: a signal sent during the dump is
// delivered to the restored copy. sh's default SIGUSR1 action is to die,
// so the restored process must end killed by SIGUSR1.
func TestSignalWhileFrozenIsRequeued(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace")
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	var sink *signalingSink
	img, _ := checkpointShellVia(t, tr, func(w *image.Writer, pid int) dump.Sink {
		sink = &signalingSink{Writer: w, pid: pid}
		return sink
	})
	if !sink.sent {
		t.Fatal("no pages written: the signal was never sent")
	}
	res, err := restoreBytes(tr, img)
	if err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(res.PID, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	if !ws.Signaled() || ws.Signal() != unix.SIGUSR1 {
		unix.Kill(res.PID, unix.SIGKILL)
		t.Fatalf("restored process ended with %v, want killed by SIGUSR1 (the signal sent while frozen)", ws)
	}
}

// TestRestorePIDTaken: restoring an image whose PID is in use fails with
// ErrPIDTaken naming the holder; with NewPIDs it restores under a new PID.
func TestRestorePIDTaken(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace")
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	img, pid := checkpointShell(t, tr)
	kill := func(p int) {
		unix.Kill(p, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(p, &ws, 0, nil)
	}
	first, err := restoreBytes(tr, img)
	if err != nil {
		t.Fatal(err)
	}
	defer kill(first.PID)
	if first.PID != pid {
		t.Fatalf("first restore: pid %d, want %d", first.PID, pid)
	}
	_, err = restoreBytes(tr, img)
	if !errors.Is(err, ErrPIDTaken) || !strings.Contains(err.Error(), strconv.Itoa(pid)) {
		t.Fatalf("second restore = %v, want ErrPIDTaken naming pid %d", err, pid)
	}
	r, err := image.NewReader(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Restore(context.Background(), tr, r, Options{NewPIDs: true})
	if err != nil {
		t.Fatalf("restore with NewPIDs: %v", err)
	}
	defer kill(second.PID)
	if second.PID == pid {
		t.Fatalf("restore with NewPIDs reused the taken pid %d", pid)
	}
	if st, err := procfs.Status(second.PID); err != nil || st.TracerPID != 0 {
		t.Fatalf("process restored with a new pid is not running untraced: %v", err)
	}
}
