package restore

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/ptrace"
)

// newPIDsScript holds, at fd 10, a pidfd of itself and, at fd 11, the read
// end of a pipe with O_ASYNC whose owner is itself, then says "R" on fd 1
// and spins.
const newPIDsScript = `
import os, fcntl, sys
p = os.pidfd_open(os.getpid()); os.dup2(p, 10); os.close(p)
r, w = os.pipe(); os.dup2(r, 11); os.close(r)
fcntl.fcntl(11, fcntl.F_SETOWN, os.getpid())
fcntl.fcntl(11, fcntl.F_SETFL, fcntl.fcntl(11, fcntl.F_GETFL) | os.O_ASYNC)
os.write(1, b"R")
while True:
    pass
`

// TestNewPIDsRemap: restored under new PIDs (the old one taken), what
// named the process by number names the new one: its pidfd (fdinfo's Pid)
// and the owner of its signal-driven I/O (F_GETOWN).
func TestNewPIDsRemap(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for ptrace")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found: it makes the pidfd-holding process")
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	cmd := exec.Command(py, "-c", newPIDsScript)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := out.Read(make([]byte, 1)); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper did not start: %v", err)
	}
	pid := cmd.Process.Pid
	var buf bytes.Buffer
	w, err := image.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dump.Dump(context.Background(), tr, pid, w, dump.Options{}); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatal(err)
	}
	cmd.Wait()
	kill := func(p int) {
		unix.Kill(p, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(p, &ws, 0, nil)
	}
	first, err := restoreBytes(tr, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	defer kill(first.PID) // holds the old PID
	r, err := image.NewReader(bytes.NewReader(buf.Bytes()))
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
	for _, p := range []int{first.PID, second.PID} {
		info, err := os.ReadFile("/proc/" + strconv.Itoa(p) + "/fdinfo/10")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(info), "\nPid:\t"+strconv.Itoa(p)+"\n") {
			t.Errorf("pid %d: its pidfd names another process:\n%s", p, info)
		}
		pidfd, err := unix.PidfdOpen(p, 0)
		if err != nil {
			t.Fatal(err)
		}
		dup, err := unix.PidfdGetfd(pidfd, 11, 0)
		unix.Close(pidfd)
		if err != nil {
			t.Fatal(err)
		}
		owner, err := unix.FcntlInt(uintptr(dup), unix.F_GETOWN, 0)
		unix.Close(dup)
		if err != nil || owner != p {
			t.Errorf("pid %d: owner of its O_ASYNC pipe is %d (%v), want itself", p, owner, err)
		}
	}
}
