package job

import (
	"bytes"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestMain lets the test binary act as `ferry jobinit`.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "jobinit" {
		InitMainArgs(os.Args[2:])
	}
	os.Exit(m.Run())
}

func waitEvent(t *testing.T, in *Init, want string) Event {
	t.Helper()
	select {
	case ev, ok := <-in.Events():
		if !ok {
			t.Fatalf("init ended before %q", want)
		}
		if ev.Event != want {
			t.Fatalf("init event %+v, want %q", ev, want)
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatalf("no %q event from the init", want)
	}
	return Event{}
}

func TestJobHasItsOwnPIDs(t *testing.T) {
	r, w, _ := os.Pipe()
	in, err := StartInit(InitSpec{Args: []string{"/bin/sh", "-c", `echo "$$ $PPID"; ls /proc | grep -c '^[0-9]'; exit 7`}, Stdout: w, Stderr: w})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Kill()
	started := in.Hello
	ev := waitEvent(t, in, "exited")
	if ws := unix.WaitStatus(ev.Status); !ws.Exited() || ws.ExitStatus() != 7 {
		t.Errorf("exit status %v, want exit 7", ws)
	}
	var out bytes.Buffer
	out.ReadFrom(r)
	lines := strings.Fields(out.String())
	// The shell is PID 2 with parent 1; its /proc shows only the init and
	// itself (and ls, grep).
	if len(lines) != 3 || lines[0] != strconv.Itoa(started.PID) || lines[1] != "1" {
		t.Fatalf("job printed %q, want \"%d 1\" and a process count", out.String(), started.PID)
	}
	if started.PID < JobPID || started.PID > JobPID+20 {
		t.Errorf("job's PID is %d in its namespace, want %d or just above (a thread of the init may take one first)", started.PID, JobPID)
	}
	if n, _ := strconv.Atoi(lines[2]); n < 2 || n > 5 {
		t.Errorf("job's /proc lists %d processes; it should see its own namespace only", n)
	}
	<-in.Done()
}

func TestStartInAndHostPID(t *testing.T) {
	in, err := StartInit(InitSpec{Args: []string{"/bin/sleep", "30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer in.Kill()
	vpid := in.Hello.PID
	host, err := HostPID(in.NSPath(), vpid)
	if err != nil {
		t.Fatal(err)
	}
	if comm, _ := os.ReadFile("/proc/" + strconv.Itoa(host) + "/comm"); strings.TrimSpace(string(comm)) != "sleep" {
		t.Errorf("HostPID(%d) = %d (%q), want the sleep", vpid, host, comm)
	}
	// A helper started in the namespace sees the job as PID 2.
	var out bytes.Buffer
	cmd := exec.Command("/bin/sh", "-c", `mount -t proc proc /proc && cat /proc/`+strconv.Itoa(vpid)+`/comm && echo $$`)
	cmd.Stdout = &out
	waited, err := StartIn(in.NSPath(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(out.String())
	if len(f) != 2 || f[0] != "sleep" || f[1] == strconv.Itoa(cmd.Process.Pid) {
		t.Errorf("helper in the namespace printed %q, want sleep and a namespace PID", out.String())
	}
	in.Kill()
	select {
	case <-in.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("init did not end after Kill")
	}
	if err := unix.Kill(host, 0); err == nil {
		// The job dies with its init (give the kernel a moment to reap).
		for i := 0; i < 100 && unix.Kill(host, 0) == nil; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		if unix.Kill(host, 0) == nil {
			b, _ := os.ReadFile("/proc/" + strconv.Itoa(host) + "/stat")
			if !strings.Contains(string(b), ") Z") {
				t.Errorf("job %d outlived its init", host)
			}
		}
	}
}

func TestJobSignalsAreDefault(t *testing.T) {
	r, w, _ := os.Pipe()
	in, err := StartInit(InitSpec{Args: []string{"/bin/sh", "-c", `grep SigIgn /proc/self/status`}, Stdout: w})
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer in.Kill()
	var out bytes.Buffer
	out.ReadFrom(r)
	if f := strings.Fields(out.String()); len(f) != 2 || f[1] != "0000000000000000" {
		t.Errorf("the job starts with %q; it must ignore no signal", out.String())
	}
}
