package restore

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/deputy"
	"ferry/internal/dump"
	"ferry/internal/image"
	"ferry/internal/ptrace"
	"ferry/internal/standin"
	"ferry/internal/testutil"
)

var ppidProg = &testutil.CProgram{Src: "testdata/ppid.c", Flags: []string{"-O1", "-Wall"}}

// TestParentStandIn: a child is checkpointed, then its parent ends; the
// child is restored with a stand-in parent of its parent's PID
// (Options.Parent), as a process moved away alone is. The child itself
// sees its PID, its parent's PID, its session and group unchanged; the
// stand-in, turned into its program, reports the child's stop, continue
// and killing signal as waitid tells them, and ends.
func TestParentStandIn(t *testing.T) {
	testutil.NeedRoot(t, "ptrace, clone3 with set_tid")
	defer ppidProg.Remove()
	dir := t.TempDir()
	ids := filepath.Join(dir, "ids")
	cmd := exec.Command(ppidProg.Path(t), ids)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var child int
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatal("no child")
	}
	fmt.Sscanf(sc.Text(), "child %d", &child)
	readIDs := func() string {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if b, err := os.ReadFile(ids); err == nil && len(b) > 0 {
				return string(b)
			}
		}
		t.Fatal("the child writes nothing")
		return ""
	}
	before := readIDs()

	tr := ptrace.NewTracer()
	defer tr.Close()
	var img bytes.Buffer
	w, err := image.NewWriter(&img)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dump.Dump(context.Background(), tr, child, w, dump.Options{}); err != nil {
		t.Fatal(err)
	}
	// The parent goes (reaping the dumped child): both PIDs are free.
	parent := cmd.Process.Pid
	cmd.Process.Kill()
	cmd.Wait()
	os.Remove(ids)

	sock := filepath.Join(dir, "driver.sock")
	ln, err := standin.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ln)
	self, _ := os.Executable()
	r, err := image.NewReader(bytes.NewReader(img.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Restore(context.Background(), tr, r, Options{Parent: &Parent{PID: parent, Path: self,
		Argv: []string{"ferry", "--away", "--connect", sock}, Envp: []string{"FERRY_STANDIN_TEST=1"}}})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	defer func() {
		unix.Kill(res.PID, unix.SIGKILL)
		var ws unix.WaitStatus
		unix.Wait4(parent, &ws, 0, nil) // the stand-in is the test's child
	}()
	st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", res.PID))
	t.Logf("restored %d (parent %d):\n%s", res.PID, parent, st)
	if after := readIDs(); after != before {
		t.Errorf("the child sees itself as\n%s\nafter the restore, as\n%s\nbefore", after, before)
	}
	unix.SetsockoptTimeval(ln, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 20})
	conn, _, err := unix.Accept(ln)
	for err == unix.EINTR { // not restarted with a receive timeout
		conn, _, err = unix.Accept(ln)
	}
	if err != nil {
		t.Fatalf("the stand-in parent never connected: %v", err)
	}
	defer unix.Close(conn)
	unix.SetsockoptTimeval(conn, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 20})
	recv := func() standin.Msg {
		buf := make([]byte, 64)
		n, err := unix.Read(conn, buf)
		for err == unix.EINTR { // not restarted with a receive timeout
			n, err = unix.Read(conn, buf)
		}
		if err != nil {
			t.Fatalf("from the stand-in parent: %v", err)
		}
		m, err := standin.Decode(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	if m := recv(); m.Type != 'H' || m.PID != parent {
		t.Fatalf("hello %+v, want pid %d", m, parent)
	}
	for _, step := range []struct {
		sig  unix.Signal
		want deputy.Status
	}{
		{unix.SIGSTOP, deputy.Status{Kind: deputy.Stopped, Code: int(unix.SIGSTOP)}},
		{unix.SIGCONT, deputy.Status{Kind: deputy.Continued, Code: int(unix.SIGCONT)}},
		{unix.SIGTERM, deputy.Status{Kind: deputy.Killed, Code: int(unix.SIGTERM)}},
	} {
		unix.Kill(res.PID, step.sig)
		if m := recv(); m.Type != 'T' || m.Status != step.want {
			t.Fatalf("after %v: %+v, want status %v", step.sig, m, step.want)
		}
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(parent, &ws, 0, nil); err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Fatalf("the stand-in parent: %v %v, want it to end (no child left)", ws, err)
	}
}
