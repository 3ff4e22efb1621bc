package standin

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/deputy"
	"ferry/internal/ptrace"
	"ferry/internal/testutil"
)

func TestMain(m *testing.M) {
	// The test binary is also the stand-in the tests exec into a child.
	if os.Getenv("FERRY_STANDIN_TEST") == "1" {
		os.Exit(Main(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// TestMessages: every message survives its encoding; malformed ones are
// refused by name.
func TestMessages(t *testing.T) {
	for _, m := range []Msg{
		{Type: 'H', PID: 101},
		{Type: 'S', Sig: 10, Sender: 0},
		{Type: 'S', Sig: 15, Sender: 4711},
		{Type: 'M', Status: deputy.Status{Kind: deputy.Exited, Code: 42}},
		{Type: 'M', Status: deputy.Status{Kind: deputy.Killed, Code: 11, Core: true}},
		{Type: 'M', Status: deputy.Status{Kind: deputy.Stopped, Code: 20}},
		{Type: 'M', Status: deputy.Status{Kind: deputy.Continued, Code: 18}},
	} {
		got, err := Decode(m.Encode())
		if err != nil || got != m {
			t.Errorf("%+v came back as %+v, %v", m, got, err)
		}
	}
	for _, b := range [][]byte{
		nil, {'H', 9, 0, 0, 0, 0}, {'H', 1}, {'S', 0, 0, 0, 0, 0, 0, 0, 0}, {'S', 65, 0, 0, 0, 0, 0, 0, 0},
		{'M', 9, 0, 0, 0, 0, 0}, {'M', 2, 0, 0, 0, 0, 0}, {'M', 1, 0, 1, 0, 0, 0}, {'M', 1, 0, 0, 0, 0, 2}, {'X'},
	} {
		if _, err := Decode(b); !errors.Is(err, ErrMessage) {
			t.Errorf("%q: %v, want ErrMessage", b, err)
		}
	}
}

// TestStandIn: a parent's child is frozen, a signal is sent to it while
// it is, and it is turned into its stand-in in place. The stand-in
// reports that signal and the next, and takes on the statuses its driver
// gives it; the parent's own waitid sees each: a stop by SIGTSTP, the
// continue, then the end (an exit code, or a killing signal).
func TestStandIn(t *testing.T) {
	testutil.NeedRoot(t, "ptrace")
	dir := t.TempDir()
	parent := filepath.Join(dir, "parent")
	if err := testutil.CompileC(parent, "testdata/parent.c", []string{"-O2", "-pthread"}); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		end     deputy.Status
		want    string
		threads bool
	}{
		{deputy.Status{Kind: deputy.Exited, Code: 42}, "exited 42", false},
		{deputy.Status{Kind: deputy.Killed, Code: int(unix.SIGTERM)}, "killed 15 core 0", false},
		{deputy.Status{Kind: deputy.Exited, Code: 7}, "exited 7", true},
	} {
		t.Run(fmt.Sprintf("%s threads=%v", tt.want, tt.threads), func(t *testing.T) {
			sock := filepath.Join(dir, "driver.sock")
			os.Remove(sock)
			ln, err := Listen(sock)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(ln)

			cmd := exec.Command(parent)
			if tt.threads {
				cmd.Args = append(cmd.Args, "threads")
			}
			out, _ := cmd.StdoutPipe()
			errR, errW, _ := os.Pipe() // the child's fd 2: a pipe of its own
			defer errR.Close()
			cmd.Stderr = errW
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			errW.Close()
			defer cmd.Process.Kill()
			lines := make(chan string, 16)
			go func() {
				sc := bufio.NewScanner(out)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			next := func() string {
				select {
				case l := <-lines:
					return l
				case <-time.After(20 * time.Second):
					t.Fatal("the parent says nothing")
				}
				return ""
			}
			var child int
			if _, err := fmt.Sscanf(next(), "child %d", &child); err != nil {
				t.Fatal(err)
			}
			for tt.threads {
				if ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", child)); len(ents) == 4 {
					break
				}
				time.Sleep(time.Millisecond)
			}

			tr := ptrace.NewTracer()
			defer tr.Close()
			err = tr.Do(context.Background(), func() error {
				fz, err := ptrace.Freeze(child, time.Second, slog.Default())
				if err != nil {
					return err
				}
				// Sent while frozen: it must not be lost in the switch.
				unix.Kill(child, unix.SIGUSR1)
				return fz.ExecInPlace(self, []string{"ferry", "--connect", sock}, []string{"FERRY_STANDIN_TEST=1"}, []int{1})
			})
			if err != nil {
				t.Fatalf("exec in place: %v", err)
			}
			unix.SetsockoptTimeval(ln, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 20})
			conn, _, err := unix.Accept(ln)
			for err == unix.EINTR {
				conn, _, err = unix.Accept(ln)
			}
			if err != nil {
				t.Fatalf("the stand-in never connected: %v", err)
			}
			defer unix.Close(conn)
			unix.SetsockoptTimeval(conn, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 20})
			recv := func() Msg {
				t.Helper()
				buf := make([]byte, 64)
				n, err := unix.Read(conn, buf)
				for err == unix.EINTR {
					// A socket with a receive timeout is not restarted
					// after a signal (the Go runtime's preemption).
					n, err = unix.Read(conn, buf)
				}
				if err != nil {
					t.Fatalf("from the stand-in: %v", err)
				}
				m, err := Decode(buf[:n])
				if err != nil {
					t.Fatal(err)
				}
				return m
			}
			send := func(s deputy.Status) {
				if _, err := unix.Write(conn, Msg{Type: 'M', Status: s}.Encode()); err != nil {
					t.Fatal(err)
				}
			}
			if m := recv(); m.Type != 'H' || m.PID != child {
				t.Fatalf("hello %+v, want pid %d", m, child)
			}
			st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", child))
			if !strings.Contains(string(st), fmt.Sprintf("\nPPid:\t%d\n", cmd.Process.Pid)) {
				t.Errorf("the stand-in is not the parent's child:\n%s", st)
			}
			// It holds the pipe end it kept (stdout, the parent's pipe
			// to the test), and nothing else of the child's.
			if _, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/1", child)); err != nil {
				t.Errorf("kept fd 1: %v", err)
			}
			// (Go's runtime opens /dev/null on a closed 0, 1 or 2.)
			if l, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/2", child)); err == nil && l != "/dev/null" {
				t.Errorf("fd 2 (%s) was not closed", l)
			}
			if m := recv(); m.Type != 'S' || m.Sig != int(unix.SIGUSR1) {
				t.Fatalf("got %+v, want the SIGUSR1 sent while frozen", m)
			}
			unix.Kill(child, unix.SIGUSR2)
			if m := recv(); m.Type != 'S' || m.Sig != int(unix.SIGUSR2) {
				t.Fatalf("got %+v, want SIGUSR2", m)
			}
			send(deputy.Status{Kind: deputy.Stopped, Code: int(unix.SIGTSTP)})
			if l := next(); l != "stopped 20" {
				t.Fatalf("parent: %q, want stopped 20", l)
			}
			// The driver continues it (the moved process was continued
			// over there): the stand-in runs again and reports the
			// SIGCONT (the driver knows its own).
			unix.Kill(child, unix.SIGCONT)
			if l := next(); l != "continued" {
				t.Fatalf("parent: %q, want continued", l)
			}
			if m := recv(); m.Type != 'S' || m.Sig != int(unix.SIGCONT) {
				t.Fatalf("got %+v, want SIGCONT", m)
			}
			// Stopped again by the same signal, after the first stop
			// (it must be caught again, not stop the stand-in itself).
			unix.Kill(child, unix.SIGTSTP)
			if m := recv(); m.Type != 'S' || m.Sig != int(unix.SIGTSTP) {
				t.Fatalf("got %+v, want SIGTSTP reported, not taken", m)
			}
			send(tt.end)
			if l := next(); l != tt.want {
				t.Fatalf("parent: %q, want %q", l, tt.want)
			}
			cmd.Wait()
		})
	}
}
