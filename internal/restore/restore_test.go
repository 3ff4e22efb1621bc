package restore

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
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
	if _, err := dump.Dump(context.Background(), tr, cmd.Process.Pid, w, dump.Options{}); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	cmd.Wait() // reap: the PID is free for the restore
	return buf.Bytes(), cmd.Process.Pid
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
