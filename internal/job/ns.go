package job

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// InitSpec says how to start a job's init.
type InitSpec struct {
	Exe  string   // ferry's executable (default /proc/self/exe)
	Args []string // the job's command; empty to await a restore
	// MainPID is the namespace PID of the job a restore will create
	// (with no Args).
	MainPID               int
	Stdin, Stdout, Stderr *os.File
	Dir                   string
	Env                   []string
	// Scratch is the node's scratch directory, bound at ScratchMount in
	// the job's mount namespace.
	Scratch string
	// Cred, if set, is who the job's command runs as, with no new
	// privileges; the init itself stays root. Nil: as the init.
	Cred *Cred
}

// Cred is a job command's identity: its uid, gid and supplementary
// groups. The command also runs with PR_SET_NO_NEW_PRIVS: no setuid
// binary or file capability gives it more than it has.
type Cred struct {
	UID, GID uint32
	Groups   []uint32
}

// jobEnvVar carries the environment of a job with a Cred to its command,
// past the init (JSON array of "K=V").
const jobEnvVar = "FERRY_JOB_ENV"

// args are the jobinit flags that carry c.
func (c *Cred) args() []string {
	gs := make([]string, len(c.Groups))
	for i, g := range c.Groups {
		gs[i] = strconv.FormatUint(uint64(g), 10)
	}
	return []string{"--uid", strconv.FormatUint(uint64(c.UID), 10), "--gid", strconv.FormatUint(uint64(c.GID), 10),
		"--groups", strings.Join(gs, ",")}
}

// Init is a running job init, seen from the node.
type Init struct {
	PID    int // on the node
	cmd    *exec.Cmd
	events chan Event
	done   chan struct{}
}

// StartInit starts `ferry jobinit` as PID 1 of new PID and mount
// namespaces. It dies with the calling thread's process (Pdeathsig), and
// the kernel then ends everything in its namespace.
func StartInit(spec InitSpec) (*Init, error) {
	exe := spec.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	args := []string{"ferry", "jobinit"}
	if spec.Scratch != "" {
		args = append(args, "--scratch", spec.Scratch)
	}
	if spec.MainPID > 0 {
		args = append(args, "--main", strconv.Itoa(spec.MainPID))
	}
	if spec.Cred != nil {
		args = append(args, spec.Cred.args()...)
	}
	args = append(args, "--")
	args = append(args, spec.Args...)
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer pw.Close()
	env := spec.Env
	if spec.Cred != nil {
		// The init runs as root, started by the dynamic loader and the Go
		// runtime: the caller's environment (LD_PRELOAD, GODEBUG, ...)
		// must not reach them. It travels in one inert variable and
		// becomes the command's.
		b, err := json.Marshal(spec.Env)
		if err != nil {
			return nil, err
		}
		env = []string{jobEnvVar + "=" + string(b)}
	}
	cmd := &exec.Cmd{Path: exe, Args: args, Dir: spec.Dir, Env: env,
		Stdin: spec.Stdin, Stdout: spec.Stdout, Stderr: spec.Stderr, ExtraFiles: []*os.File{pw}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:   unix.CLONE_NEWPID,
		Unshareflags: unix.CLONE_NEWNS, // os/exec also makes / private
		Pdeathsig:    syscall.SIGKILL,
	}
	// Pdeathsig fires when the creating thread exits: the thread that
	// starts the init lives, locked, until the init is reaped.
	in := &Init{events: make(chan Event, 4), done: make(chan struct{})}
	waited, err := startLocked("", cmd)
	if err != nil {
		pr.Close()
		return nil, fmt.Errorf("start job init: %w", err)
	}
	in.PID, in.cmd = cmd.Process.Pid, cmd
	go in.read(pr, waited)
	if len(spec.Args) == 0 {
		// Awaiting a restore: the init must have moved the namespace's
		// PIDs out of the job's way before anything else starts there.
		select {
		case ev, ok := <-in.events:
			if !ok || ev.Event != "ready" {
				in.Kill()
				if ev.Error == "" {
					ev.Error = "it ended"
				}
				return nil, fmt.Errorf("job init not ready: %s", ev.Error)
			}
		case <-time.After(30 * time.Second):
			in.Kill()
			return nil, fmt.Errorf("job init not ready after 30 s")
		}
	}
	return in, nil
}

func (in *Init) read(r io.ReadCloser, waited <-chan error) {
	defer close(in.done)
	defer close(in.events)
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var ev Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			in.events <- ev
		}
	}
	<-waited
}

// Events delivers the init's reports; it is closed when the init has
// exited and was reaped.
func (in *Init) Events() <-chan Event { return in.events }

// Done is closed when the init has exited and was reaped.
func (in *Init) Done() <-chan struct{} { return in.done }

// Kill ends the init and with it the whole namespace.
func (in *Init) Kill() { in.cmd.Process.Kill() }

// NSPath is the init's PID namespace file.
func (in *Init) NSPath() string { return fmt.Sprintf("/proc/%d/ns/pid", in.PID) }

// startLocked starts cmd from a goroutine locked to its own OS thread,
// after entering the PID namespace at nsPath (if any) for the thread's
// children. The goroutine waits for cmd and only then ends, taking the
// thread (and its namespace) with it: Pdeathsig, which follows the
// creating thread, fires only when cmd is done or ferry dies.
func startLocked(nsPath string, cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error, 1)
	waited := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread is discarded
		if nsPath != "" {
			fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				started <- fmt.Errorf("open %s: %w", nsPath, err)
				return
			}
			err = unix.Setns(fd, unix.CLONE_NEWPID)
			unix.Close(fd)
			if err != nil {
				started <- fmt.Errorf("enter %s: %w", nsPath, os.NewSyscallError("setns", err))
				return
			}
		}
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		waited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return waited, nil
}

// StartIn starts cmd inside the PID namespace at nsPath (a job init's
// /proc/PID/ns/pid), in a mount namespace of its own where it may mount a
// /proc of the job's namespace. The returned channel yields cmd.Wait's
// result; do not call cmd.Wait yourself.
func StartIn(nsPath string, cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Unshareflags |= unix.CLONE_NEWNS
	// No Pdeathsig here: os/exec's check that the parent is still alive
	// compares getppid() with the parent's PID, and across a PID
	// namespace getppid() is 0. The helper calls DieWithParent itself.
	cmd.SysProcAttr.Pdeathsig = 0
	return startLocked(nsPath, cmd)
}

// DieWithParent asks the kernel to kill the calling process when the
// thread that started it ends (for helpers started by StartIn).
func DieWithParent() error {
	return unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
}

// ScratchMount is where a job sees its node's scratch directory: the
// node's local disk for the job's files, the same path on every node, a
// different directory behind it on each. Files a job keeps there are
// checked by content on migration and travel if the destination lacks
// them.
const ScratchMount = "/run/ferry/scratch"

// PrepareScratchMount creates the (empty) mount point on the node.
func PrepareScratchMount() error {
	return os.MkdirAll(ScratchMount, 0o755)
}

// MountScratch binds dir over ScratchMount in the caller's mount
// namespace (a job's or an agent's own).
func MountScratch(dir string) error {
	if dir == "" {
		return nil
	}
	if err := unix.Mount(dir, ScratchMount, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind %s on %s: %w", dir, ScratchMount, err)
	}
	return nil
}

// MountProc mounts a /proc of the caller's PID namespace over /proc; call
// it first thing in a process started by StartIn.
func MountProc() error {
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc of the job's namespace: %w", err)
	}
	return nil
}

// HostPID finds the node PID of the process whose PID is vpid inside the
// PID namespace at nsPath.
func HostPID(nsPath string, vpid int) (int, error) {
	want, err := os.Readlink(nsPath)
	if err != nil {
		return 0, err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); err != nil || l != want {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if f, ok := strings.CutPrefix(line, "NSpid:"); ok {
				fs := strings.Fields(f)
				if len(fs) > 0 && fs[len(fs)-1] == strconv.Itoa(vpid) {
					return pid, nil
				}
			}
		}
	}
	return 0, fmt.Errorf("no process %d in namespace %s: %w", vpid, want, os.ErrNotExist)
}
