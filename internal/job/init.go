package job

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// JobPID is where a job's PIDs start in its namespace (the main process
// gets JobPID or, if a thread of the init took it first, the next free).
const JobPID = 100

// Event is one line of the init's report.
type Event struct {
	Event  string `json:"event"`            // "started", "exited", "error"
	PID    int    `json:"pid,omitempty"`    // the main process, in the namespace
	Status int    `json:"status,omitempty"` // raw wait status, for "exited"
	Error  string `json:"error,omitempty"`
}

// InitMain is the body of `ferry jobinit`. With args, it starts them as the
// job (in a session of their own) and waits for them; with mainPID > 0 and
// no args it waits for a job that a migration agent restores with that
// PID. With cred, the job's command runs as cred with no new privileges.
// It never returns.
func InitMain(mainPID int, scratch string, cred *Cred, args []string) {
	// The report pipe must not leak into the job: it would be an fd the
	// job holds that leads outside it.
	unix.CloseOnExec(3)
	report := os.NewFile(3, "report")
	enc := json.NewEncoder(report)
	fail := func(err error) {
		enc.Encode(Event{Event: "error", Error: err.Error()})
		os.Exit(1)
	}
	if os.Getpid() != 1 {
		fail(errors.New("jobinit must be PID 1 of a new PID namespace"))
	}
	// A /proc of this namespace, visible only in this mount namespace, so
	// that /proc/self and /proc/<getpid()> mean this namespace's PIDs.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		fail(fmt.Errorf("mount /proc: %w", err))
	}
	if err := MountScratch(scratch); err != nil {
		fail(err)
	}
	if len(args) == 0 {
		// A restore will create the job with its old PIDs. Whatever
		// runs here before that (the migration agent, the restore's
		// seed and their threads) takes PIDs from the top of the range,
		// out of the job's way.
		if err := parkPIDs(); err != nil {
			fail(err)
		}
		enc.Encode(Event{Event: "ready"})
	}
	if len(args) > 0 {
		// The job starts at JobPID, above the PIDs of this init's own
		// threads (Go starts a few, numbered 2, 3, …): a restore of the
		// job elsewhere must find its PIDs free of the new init's threads.
		if err := SetLastPID(JobPID - 1); err != nil {
			fail(err)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if cred != nil {
			if err := dropTo(cmd, cred); err != nil {
				fail(err)
			}
		}
		if err := cmd.Start(); err != nil {
			fail(fmt.Errorf("start %s: %w", args[0], err))
		}
		mainPID = cmd.Process.Pid
		cmd.Process.Release()
		enc.Encode(Event{Event: "started", PID: mainPID})
	}
	// Signals are for the job, not for its init. (Only now: an ignored
	// signal would stay ignored in the job across exec.)
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	// The init keeps no end of the job's stdio: EOF must mean the job
	// closed them.
	if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd < 3; fd++ {
			unix.Dup3(int(null.Fd()), fd, 0)
		}
		null.Close()
	}
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err == unix.ECHILD {
			// Nothing to reap yet (a restore has not created the job);
			// wait for SIGCHLD.
			waitChild()
			continue
		}
		if err != nil {
			fail(fmt.Errorf("wait4: %w", err))
		}
		if pid == mainPID && (ws.Exited() || ws.Signaled()) {
			enc.Encode(Event{Event: "exited", PID: pid, Status: int(ws)})
			os.Exit(0)
		}
	}
}

// waitChild blocks until a child may be waitable.
func waitChild() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGCHLD)
	defer signal.Stop(c)
	var info unix.Siginfo
	// Re-check under the notification, in case a child appeared between
	// the failed wait4 and signal.Notify.
	if err := unix.Waitid(unix.P_ALL, 0, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT|unix.WALL, nil); err == nil && info.Signo != 0 {
		return
	}
	<-c
}

// dropTo makes cmd start as cred, with no new privileges, in the
// environment StartInit kept from the init (jobEnvVar), its program found
// in that environment's PATH. no_new_privs is a thread's attribute,
// inherited at fork: the calling goroutine stays on its thread (this init
// does nothing else afterwards) so that cmd is forked from the thread
// that has it. The working directory is entered again as cred, so that
// one it may not enter is refused.
func dropTo(cmd *exec.Cmd, cred *Cred) error {
	var env []string
	if err := json.Unmarshal([]byte(os.Getenv(jobEnvVar)), &env); err != nil {
		return fmt.Errorf("the job's environment: %w", err)
	}
	cmd.Env = env
	if !strings.Contains(cmd.Args[0], "/") {
		path := ""
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, "PATH="); ok {
				path = v
			}
		}
		p, err := lookPath(cmd.Args[0], path)
		if err != nil {
			return err
		}
		cmd.Path, cmd.Err = p, nil
	}
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_NO_NEW_PRIVS): %w", err)
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups}
	if wd, err := os.Getwd(); err == nil {
		cmd.Dir = wd
	}
	return nil
}

// lookPath finds an executable file called name in the directories of
// path (empty elements, the current directory, are skipped).
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("start %s: %w", name, exec.ErrNotFound)
}

// InitMainArgs parses `jobinit [--main PID] [--scratch DIR] [--uid U --gid G
// --groups G,G] [--] CMD ARGS` and runs InitMain.
func InitMainArgs(args []string) {
	mainPID, scratch := 0, ""
	var cred *Cred
	id := func(s string) uint32 {
		v, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			fmt.Fprintf(os.Stderr, "jobinit: bad id %q\n", s)
			os.Exit(2)
		}
		return uint32(v)
	}
	for len(args) > 0 {
		switch args[0] {
		case "--uid", "--gid", "--groups":
			if len(args) > 1 {
				if cred == nil {
					cred = &Cred{}
				}
				switch args[0] {
				case "--uid":
					cred.UID = id(args[1])
				case "--gid":
					cred.GID = id(args[1])
				default:
					for _, g := range strings.Split(args[1], ",") {
						if g != "" {
							cred.Groups = append(cred.Groups, id(g))
						}
					}
				}
				args = args[2:]
				continue
			}
		case "--scratch":
			if len(args) > 1 {
				scratch = args[1]
				args = args[2:]
				continue
			}
		case "--main":
			if len(args) > 1 {
				fmt.Sscan(args[1], &mainPID)
				args = args[2:]
				continue
			}
		case "--":
			args = args[1:]
		}
		break
	}
	InitMain(mainPID, scratch, cred, args)
}

// parkPIDs moves this PID namespace's next PID near the top of the range.
func parkPIDs() error {
	b, err := os.ReadFile("/proc/sys/kernel/pid_max")
	if err != nil {
		return err
	}
	var max int
	fmt.Sscan(string(b), &max)
	if max < 8192 {
		return fmt.Errorf("pid_max %d is too small to keep restore helpers apart from the job", max)
	}
	return SetLastPID(max - 4096)
}

// SetLastPID sets the last PID handed out in the caller's PID namespace
// (as seen through a /proc of that namespace): the next fork gets pid+1.
func SetLastPID(pid int) error {
	if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(fmt.Sprint(pid)), 0); err != nil {
		return fmt.Errorf("set ns_last_pid: %w", err)
	}
	return nil
}
