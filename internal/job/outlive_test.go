package job

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// heldJob starts cmd with its stdio held by the init, the way a node does.
func heldJob(t *testing.T, dir string, args ...string) (*Init, [2]string) {
	t.Helper()
	inR, inW := mustPipe(t)
	outR, outW := mustPipe(t)
	errR, errW := mustPipe(t)
	logs := [2]string{filepath.Join(dir, "stdout"), filepath.Join(dir, "stderr")}
	var lf [2]*os.File
	for i, p := range logs {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		lf[i] = f
	}
	inR2, err := os.Open("/proc/self/fd/" + strconv.Itoa(int(inR.Fd())))
	if err != nil {
		t.Fatal(err)
	}
	in, err := StartInit(InitSpec{Args: args, Stdin: inR, Stdout: outW, Stderr: errW,
		Control: filepath.Join(dir, "control.sock"), ExitFile: filepath.Join(dir, "exit"),
		Held: &Held{StdinW: inW, StdinR: inR2, Out: [2]*os.File{outR, errR}, Logs: lf}})
	for _, f := range []*os.File{inR, inR2, inW, outR, outW, errR, errW} {
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.Kill)
	return in, logs
}

func mustPipe(t *testing.T) (*os.File, *os.File) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	return r, w
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestInitOutlivesItsNode: the node that started a job goes away (its
// connection and its descriptors close); the job runs on, its output goes
// on into the log, and a new node attaches, gets the job's input back and
// hears its exit.
func TestInitOutlivesItsNode(t *testing.T) {
	dir := t.TempDir()
	in, logs := heldJob(t, dir, "/bin/sh", "-c", `while read l; do echo "got $l"; done; echo end >&2; exit 3`)
	if in.StdinW == nil || in.StdinR == nil {
		t.Fatal("no input descriptors in the hello")
	}
	in.StdinW.Write([]byte("one\n"))
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	waitFor(t, "got one", func() bool { return read(logs[0]) == "got one\n" })
	// The node dies: everything it held closes.
	in.Detach()
	in.StdinW.Close()
	in.StdinR.Close()
	<-in.Done()
	if err := unix.Kill(in.PID, 0); err != nil {
		t.Fatalf("the init died with its node: %v", err)
	}
	// A new node.
	in2, err := Attach(filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if in2.PID != in.PID || in2.Hello.PID != in.Hello.PID || in2.StdinW == nil {
		t.Fatalf("attached to pid %d (job %d), stdin %v; want pid %d job %d", in2.PID, in2.Hello.PID, in2.StdinW, in.PID, in.Hello.PID)
	}
	in2.StdinW.Write([]byte("two\n"))
	in2.StdinW.Close()
	if err := in2.CloseStdin(context.Background()); err != nil {
		t.Fatal(err)
	}
	var ev Event
	select {
	case ev = <-in2.Events():
	case <-time.After(20 * time.Second):
		t.Fatal("no exit event")
	}
	if ws := unix.WaitStatus(ev.Status); ev.Event != "exited" || !ws.Exited() || ws.ExitStatus() != 3 {
		t.Fatalf("event %+v, want exited with 3", ev)
	}
	<-in2.Done()
	if got := read(logs[0]); got != "got one\ngot two\n" {
		t.Errorf("stdout log %q, want both lines once", got)
	}
	if got := read(logs[1]); got != "end\n" {
		t.Errorf("stderr log %q", got)
	}
	e, err := ReadExit(filepath.Join(dir, "exit"))
	if err != nil {
		t.Fatal(err)
	}
	if ws := unix.WaitStatus(e.Status); !ws.Exited() || ws.ExitStatus() != 3 || e.Out != int64(len("got one\ngot two\n")) {
		t.Errorf("exit record %+v", e)
	}
}

// TestInitOutputWithoutNode: output written while no node is attached is
// all in the log when one comes back.
func TestInitOutputWithoutNode(t *testing.T) {
	dir := t.TempDir()
	in, logs := heldJob(t, dir, "/bin/sh", "-c", `i=0; while [ $i -lt 20000 ]; do echo "line $i"; i=$((i+1)); done; exec sleep 60`)
	in.Detach()
	in.StdinW.Close()
	in.StdinR.Close()
	<-in.Done()
	in2, err := Attach(filepath.Join(dir, "control.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer in2.Kill()
	var want strings.Builder
	for i := 0; i < 20000; i++ {
		want.WriteString("line " + strconv.Itoa(i) + "\n")
	}
	waitFor(t, "all output in the log", func() bool {
		st, err := os.Stat(logs[0])
		return err == nil && st.Size() >= int64(want.Len())
	})
	out, _, err := in2.Sync(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(logs[0])
	if string(b) != want.String() || out != int64(len(b)) {
		t.Errorf("log has %d bytes (sync says %d), want %d, the lines in order once", len(b), out, want.Len())
	}
}

// TestRestoreInitEndsWithoutNode: an init awaiting a restore whose node
// went away before the migration committed ends its namespace; after
// Keep it stays.
func TestRestoreInitEndsWithoutNode(t *testing.T) {
	for _, keep := range []bool{false, true} {
		dir := t.TempDir()
		in, err := StartInit(InitSpec{MainPID: 4242, Control: filepath.Join(dir, "c.sock"), ExitFile: filepath.Join(dir, "exit")})
		if err != nil {
			t.Fatal(err)
		}
		if !in.Hello.Restore || in.Hello.PID != 4242 {
			t.Fatalf("hello %+v", in.Hello)
		}
		if keep {
			if err := in.Keep(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		pid := in.PID
		in.Detach()
		<-in.Done()
		if keep {
			time.Sleep(200 * time.Millisecond)
			if unix.Kill(pid, 0) != nil {
				t.Fatal("a kept init ended when its node left")
			}
			in2, err := Attach(filepath.Join(dir, "c.sock"))
			if err != nil {
				t.Fatal(err)
			}
			if !in2.Hello.Kept {
				t.Errorf("hello after keep: %+v", in2.Hello)
			}
			in2.Kill()
			<-in2.Done()
			continue
		}
		// Our child: reaped by os/exec's waiter, so kill(pid, 0) fails.
		waitFor(t, "the orphaned restore init to end", func() bool { return unix.Kill(pid, 0) != nil })
		if e, err := ReadExit(filepath.Join(dir, "exit")); err != nil || !strings.Contains(e.Error, "before the incoming migration committed") {
			t.Errorf("exit record %+v, %v", e, err)
		}
	}
}
