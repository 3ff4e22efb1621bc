package job

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/procfs"
)

// InitSpec says how to start a job's init.
type InitSpec struct {
	Exe  string   // ferry's executable (default /proc/self/exe)
	Args []string // the job's command; empty to await a restore
	// MainPID is the namespace PID of the job a restore will create
	// (with no Args).
	MainPID int
	// Stdin, Stdout, Stderr are the job's own standard streams (with
	// Args).
	Stdin, Stdout, Stderr *os.File
	Dir                   string
	Env                   []string
	// Scratch is the node's scratch directory, bound at ScratchMount in
	// the job's mount namespace.
	Scratch string
	// Control is the path of the job's control socket (default: in a
	// new temporary directory), ExitFile the path of its exit record.
	Control, ExitFile string
	// Held, if set, are the streams the init keeps for the node: the
	// node's write end of the job's input and a read end of it, the
	// read ends of the job's output, and the logs (opened for
	// appending) the init copies the output into.
	Held *Held
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

// Held are the ends of a job's standard streams its init holds.
type Held struct {
	StdinW, StdinR *os.File
	Out            [2]*os.File
	Logs           [2]*os.File
	// Msg, if set, is the job's message endpoint (a listening
	// SOCK_SEQPACKET socket) at the path MsgPath, which the init binds at
	// MsgMount in the job.
	Msg     *os.File
	MsgPath string
}

// Init is a job's init as a node sees it: started by this node
// (StartInit) or found running by a node started later (Attach).
type Init struct {
	PID   int // on the node
	Hello Hello
	// StdinW and StdinR are the node's ends of the job's input (from the
	// init's Hello); nil if the init holds none.
	StdinW, StdinR *os.File
	// Msg is the job's message endpoint, listening (from the Hello); nil
	// if it has none.
	Msg *os.File
	// Conns are the endpoint connections the init held for the node
	// (HoldConn), by key, given back to the node that attaches.
	Conns map[string]*os.File

	conn   *net.UnixConn
	pidfd  int
	waited <-chan error // nil when attached: not our child
	events chan Event
	done   chan struct{}

	mu      sync.Mutex // guards the fields below
	nextID  int
	pending map[int]chan Event
	closed  bool
	// detached: the node let go; the init runs on.
	detached bool
}

// StartInit starts `ferry jobinit` as PID 1 of new PID and mount
// namespaces, in a session of its own, and attaches to it. The init does
// not die with the node: it lives until its job ends (or, awaiting a
// restore, until the migration failed), and the kernel then ends
// everything in its namespace.
func StartInit(spec InitSpec) (*Init, error) {
	exe := spec.Exe
	if exe == "" {
		exe = "/proc/self/exe"
	}
	if spec.Control == "" {
		dir, err := os.MkdirTemp("", "ferry-init-")
		if err != nil {
			return nil, err
		}
		spec.Control = filepath.Join(dir, "control.sock")
	}
	ln, err := listenControl(spec.Control)
	if err != nil {
		return nil, err
	}
	lf, err := ln.File()
	ln.Close()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	defer lf.Close()
	exitF := "/dev/null"
	if spec.ExitFile != "" {
		exitF = spec.ExitFile
	}
	ef, err := os.OpenFile(exitF, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("exit record: %w", err)
	}
	defer ef.Close()
	args := []string{"ferry", "jobinit", "--control", spec.Control}
	if spec.Scratch != "" {
		args = append(args, "--scratch", spec.Scratch)
	}
	if spec.MainPID > 0 {
		args = append(args, "--main", strconv.Itoa(spec.MainPID))
	}
	if spec.Cred != nil {
		args = append(args, spec.Cred.args()...)
	}
	extra := []*os.File{lf, ef}
	if h := spec.Held; h != nil {
		args = append(args, "--stdio")
		extra = append(extra, h.StdinW, h.StdinR, h.Out[0], h.Out[1], h.Logs[0], h.Logs[1])
		if h.Msg != nil {
			args = append(args, "--endpoint", h.MsgPath)
			extra = append(extra, h.Msg)
		}
	}
	args = append(args, "--")
	args = append(args, spec.Args...)
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
		Stdin: spec.Stdin, Stdout: spec.Stdout, Stderr: spec.Stderr, ExtraFiles: extra}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// An IPC namespace of its own: the job's System V objects are
		// its alone (a migration measures and moves only them, and what
		// other programs of the node do with theirs cannot refuse it).
		Cloneflags:   unix.CLONE_NEWPID | unix.CLONE_NEWIPC,
		Unshareflags: unix.CLONE_NEWNS, // os/exec also makes / private
		// Its own session: the node's terminal and its signals are not
		// the init's.
		Setsid: true,
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start job init: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	in, err := attach(spec.Control, cmd.Process.Pid, waited)
	if err != nil {
		cmd.Process.Kill()
		<-waited
		if e, rerr := ReadExit(exitF); rerr == nil && e.Error != "" {
			return nil, errors.New(e.Error) // "start CMD: ...", from the init
		}
		return nil, fmt.Errorf("job init: %w", err)
	}
	return in, nil
}

// listenControl makes the job's control socket, reachable by root only.
func listenControl(path string) (*net.UnixListener, error) {
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	ln.SetUnlinkOnClose(false) // the init serves it on
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// Attach connects to the init serving the control socket at path: a node
// taking back the jobs it ran before it restarted.
func Attach(path string) (*Init, error) {
	return attach(path, 0, nil)
}

func attach(path string, pid int, waited <-chan error) (*Init, error) {
	c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("attach to the job's init: %w", err)
	}
	fail := func(err error) (*Init, error) {
		c.Close()
		return nil, err
	}
	if pid == 0 {
		sc, err := c.SyscallConn()
		if err != nil {
			return fail(err)
		}
		var cred *unix.Ucred
		sc.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
		if err != nil {
			return fail(fmt.Errorf("the init's credentials: %w", err))
		}
		pid = int(cred.Pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fail(fmt.Errorf("pidfd of the job's init %d: %w", pid, err))
	}
	// The hello, with the input's descriptors.
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, maxControlLine)
	oob := make([]byte, unix.CmsgSpace((3+maxHeldConns)*4))
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	c.SetReadDeadline(time.Time{})
	var files []*os.File
	if err == nil && oobn > 0 {
		files, err = rightsFiles(oob[:oobn])
	}
	closeAll := func() {
		unix.Close(pidfd)
		for _, f := range files {
			f.Close()
		}
	}
	if err != nil || n == 0 {
		closeAll()
		if err == nil {
			err = errors.New("it closed the connection (it ended)")
		}
		return fail(fmt.Errorf("the job's init did not answer: %w", err))
	}
	line, rest, _ := bytes.Cut(buf[:n], []byte{'\n'})
	var h Hello
	if err := json.Unmarshal(line, &h); err != nil {
		closeAll()
		return fail(fmt.Errorf("the job's init: bad hello: %w", err))
	}
	var ev Event
	if json.Unmarshal(line, &ev) == nil && ev.Event == "error" {
		closeAll()
		return fail(fmt.Errorf("the job's init failed: %s", ev.Error))
	}
	if h.Version != ControlVersion {
		closeAll()
		return fail(fmt.Errorf("the job's init speaks control version %d, this node %d", h.Version, ControlVersion))
	}
	in := &Init{PID: pid, Hello: h, conn: c, pidfd: pidfd, waited: waited,
		events: make(chan Event, 16), done: make(chan struct{}), pending: map[int]chan Event{}}
	want := 0
	if h.StdinOpen {
		want++
	}
	if h.StdinHeld {
		want++
	}
	if h.Endpoint {
		want++
	}
	want += len(h.Conns)
	if len(files) != want {
		closeAll()
		return fail(fmt.Errorf("the job's init sent %d descriptors, want %d", len(files), want))
	}
	if h.StdinOpen {
		in.StdinW, files = files[0], files[1:]
	}
	if h.StdinHeld {
		in.StdinR, files = files[0], files[1:]
		unix.SetNonblock(int(in.StdinR.Fd()), true)
	}
	if h.Endpoint {
		in.Msg, files = files[0], files[1:]
	}
	if len(h.Conns) > 0 {
		in.Conns = map[string]*os.File{}
		for i, k := range h.Conns {
			in.Conns[k] = files[i]
		}
	}
	if h.Exited {
		// It ended before this connection: the hello says how.
		in.events <- Event{Event: "exited", PID: h.PID, Status: h.Status}
	}
	go in.read(bufio.NewReaderSize(io.MultiReader(bytes.NewReader(rest), c), maxControlLine))
	return in, nil
}

func rightsFiles(oob []byte) ([]*os.File, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, err
	}
	var files []*os.File
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.CloseOnExec(fd)
			files = append(files, os.NewFile(uintptr(fd), "stdin"))
		}
	}
	return files, nil
}

// read delivers the init's events until it closes the connection, then
// waits until the init has exited.
func (in *Init) read(r *bufio.Reader) {
	defer close(in.done)
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			break
		}
		var ev Event
		if json.Unmarshal(line, &ev) != nil {
			continue
		}
		in.mu.Lock()
		reply := in.pending[ev.ID]
		if ev.ID != 0 {
			delete(in.pending, ev.ID)
		}
		in.mu.Unlock()
		if ev.ID != 0 && reply != nil {
			reply <- ev
			continue
		}
		in.events <- ev
	}
	in.mu.Lock()
	in.closed = true
	for id, c := range in.pending {
		close(c)
		delete(in.pending, id)
	}
	detached := in.detached
	in.mu.Unlock()
	close(in.events)
	in.conn.Close()
	if detached {
		// Not waited for: the init runs on (a child of ours is reaped
		// by os/exec's goroutine when it ends).
	} else if in.waited != nil {
		<-in.waited
	} else {
		// Not our child: wait for the pidfd to say it exited.
		fds := []unix.PollFd{{Fd: int32(in.pidfd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, -1)
			if n > 0 || (err != nil && err != unix.EINTR) {
				break
			}
		}
	}
	in.mu.Lock()
	unix.Close(in.pidfd)
	in.pidfd = -1
	in.mu.Unlock()
}

// ErrInitGone: the init ended (or the node let go of it).
var ErrInitGone = errors.New("the job's init is gone")

// ask sends a command and waits for its answer.
func (in *Init) ask(ctx context.Context, cmd string) (Event, error) {
	return in.askWith(ctx, command{Cmd: cmd}, nil)
}

// askWith sends a command, with descriptors (oob) if any, and waits for
// its answer.
func (in *Init) askWith(ctx context.Context, c command, oob []byte) (Event, error) {
	cmd := c.Cmd
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		return Event{}, ErrInitGone
	}
	in.nextID++
	id := in.nextID
	reply := make(chan Event, 1)
	in.pending[id] = reply
	in.mu.Unlock()
	c.ID = id
	b, _ := json.Marshal(c)
	if _, _, err := in.conn.WriteMsgUnix(append(b, '\n'), oob, nil); err != nil {
		in.mu.Lock()
		delete(in.pending, id)
		in.mu.Unlock()
		return Event{}, fmt.Errorf("job init: %s: %w", cmd, err)
	}
	select {
	case ev, ok := <-reply:
		if !ok {
			return Event{}, fmt.Errorf("job init: %s: %w", cmd, ErrInitGone)
		}
		if ev.Event == "error" {
			return ev, fmt.Errorf("job init: %s: %s", cmd, ev.Error)
		}
		return ev, nil
	case <-ctx.Done():
		return Event{}, fmt.Errorf("job init: %s: %w", cmd, ctx.Err())
	}
}

// HoldConn has the init keep a copy of c (the node's end of a process's
// endpoint connection) under key, so that the connection outlives the
// node daemon. (Not through os.File.Fd, which would make the socket
// blocking, for the node's copy too: its deadlines would stop working.)
func (in *Init) HoldConn(ctx context.Context, key string, c syscall.Conn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	// A copy for the message: the node may close c meanwhile.
	fd := -1
	var derr error
	if cerr := rc.Control(func(u uintptr) { fd, derr = unix.FcntlInt(u, unix.F_DUPFD_CLOEXEC, 0) }); cerr != nil {
		return cerr
	}
	if derr != nil {
		return os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", derr)
	}
	defer unix.Close(fd)
	_, err = in.askWith(ctx, command{Cmd: "hold-conn", Key: key}, unix.UnixRights(fd))
	return err
}

// DropConn has the init let go of the connection held under key (the
// node closed it).
func (in *Init) DropConn(ctx context.Context, key string) error {
	_, err := in.askWith(ctx, command{Cmd: "drop-conn", Key: key}, nil)
	return err
}

// Sync has the init copy all of the (frozen) job's output left in its
// pipes into the logs, and returns the logs' sizes.
func (in *Init) Sync(ctx context.Context) (out, errSize int64, err error) {
	ev, err := in.ask(ctx, "sync")
	return ev.Out, ev.Err, err
}

// CloseStdin has the init close its copy of the job's input.
func (in *Init) CloseStdin(ctx context.Context) error {
	_, err := in.ask(ctx, "close-stdin")
	return err
}

// Keep tells an init awaiting a restore that the migration committed: the
// job stays, whatever happens to the node.
func (in *Init) Keep(ctx context.Context) error {
	_, err := in.ask(ctx, "keep")
	return err
}

// Events delivers the init's reports ("exited", "error"); it
// is closed when the init closed its control connection.
func (in *Init) Events() <-chan Event { return in.events }

// Done is closed when the init has exited (and, if this node started it,
// was reaped).
func (in *Init) Done() <-chan struct{} { return in.done }

// Kill ends the init and with it the whole namespace.
func (in *Init) Kill() {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.pidfd >= 0 {
		unix.PidfdSendSignal(in.pidfd, unix.SIGKILL, nil, 0)
	}
}

// Detach lets go of the init, which runs on: a node that stops while its
// jobs go on. Events and Done end.
func (in *Init) Detach() {
	in.mu.Lock()
	in.detached = true
	in.mu.Unlock()
	in.conn.Close()
}

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
			// The init's PID namespace for the thread's children, and
			// its IPC namespace (at the same place: /proc/PID/ns/ipc).
			for _, ns := range []struct {
				path string
				kind int
			}{{nsPath, unix.CLONE_NEWPID}, {filepath.Join(filepath.Dir(nsPath), "ipc"), unix.CLONE_NEWIPC}} {
				fd, err := unix.Open(ns.path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
				if err != nil {
					started <- fmt.Errorf("open %s: %w", ns.path, err)
					return
				}
				err = unix.Setns(fd, ns.kind)
				unix.Close(fd)
				if err != nil {
					started <- fmt.Errorf("enter %s: %w", ns.path, os.NewSyscallError("setns", err))
					return
				}
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

// Tie makes the calling process die with the thread that started it,
// until Cut. (The kernel keeps the parent-death signal per thread and
// sends it to the threads that set it: it is set, and cleared, on one
// thread of its own that lives until Cut.)
type Tie struct {
	cut  chan struct{}
	done chan error
}

// TieToParent is DieWithParent for a Go program that may undo it.
func TieToParent() (*Tie, error) {
	t := &Tie{cut: make(chan struct{}), done: make(chan error, 1)}
	set := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with it
		set <- DieWithParent()
		<-t.cut
		t.done <- unix.Prctl(unix.PR_SET_PDEATHSIG, 0, 0, 0, 0)
	}()
	if err := <-set; err != nil {
		return nil, fmt.Errorf("die with the node: %w", err)
	}
	return t, nil
}

// Cut undoes the tie: a migration agent whose work the job depends on
// from now on (the new copy runs, its pages come from the agent) goes
// on if its node dies. Safe to call more than once.
func (t *Tie) Cut() error {
	select {
	case <-t.cut:
		return nil
	default:
	}
	close(t.cut)
	return <-t.done
}

// ScratchMount is where a job sees its node's scratch directory: the
// node's local disk for the job's files, the same path on every node, a
// different directory behind it on each. Files a job keeps there are
// checked by content on migration and travel if the destination lacks
// them.
const ScratchMount = "/run/ferry/scratch"

// PrepareScratchMount creates the (empty) mount point on the node.
// It also makes the (empty) file the message endpoint is bound on.
func PrepareScratchMount() error {
	if err := os.MkdirAll(ScratchMount, 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(MsgMount, os.O_RDONLY|os.O_CREATE, 0o666)
	if err != nil {
		return fmt.Errorf("message endpoint mount point: %w", err)
	}
	return f.Close()
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

// MountMsg binds the node's message endpoint socket for a job (path)
// over MsgMount in the caller's mount namespace (an agent's own, where
// the copy it restores will live).
func MountMsg(path string) error {
	if err := unix.Mount(path, MsgMount, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind the message endpoint %s on %s: %w", path, MsgMount, err)
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
	found := 0
	want, err := eachInNS(nsPath, func(host, ns int) bool {
		if ns == vpid {
			found = host
			return false
		}
		return true
	})
	if err != nil {
		return 0, err
	}
	if found == 0 {
		return 0, fmt.Errorf("no process %d in namespace %s: %w", vpid, want, os.ErrNotExist)
	}
	return found, nil
}

// Members lists the node PIDs of the processes in the PID namespace at
// nsPath, but for the namespace's init (skip lists others to leave out).
func Members(nsPath string, skip ...int) ([]int, error) {
	var out []int
	_, err := eachInNS(nsPath, func(host, ns int) bool {
		if ns != 1 && !slices.Contains(skip, host) {
			out = append(out, host)
		}
		return true
	})
	return out, err
}

// eachInNS calls f with the node PID and the namespace PID of each process
// in the PID namespace at nsPath, until f returns false. It returns the
// namespace's name.
func eachInNS(nsPath string, f func(host, ns int) bool) (string, error) {
	want, err := os.Readlink(nsPath)
	if err != nil {
		return "", err
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return want, err
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := pidIn(want, pid); err == nil && !f(pid, ns) {
			break
		}
	}
	return want, nil
}

// pidIn is hostPID's number in the PID namespace named ns, an error if
// the process is not in it.
func pidIn(ns string, hostPID int) (int, error) {
	if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", hostPID)); err != nil || l != ns {
		return 0, fmt.Errorf("process %d is not in namespace %s", hostPID, ns)
	}
	st, err := procfs.Status(hostPID)
	if err != nil {
		return 0, err
	}
	if len(st.NSpid) == 0 {
		return 0, fmt.Errorf("process %d: no NSpid in its status", hostPID)
	}
	return st.NSpid[len(st.NSpid)-1], nil
}

// KeepInit tells the init serving the control socket at path that the
// migration bringing its job committed (see Init.Keep): the receiving
// agent does, before it lets the new copy run.
func KeepInit(ctx context.Context, path string) error {
	in, err := Attach(path)
	if err != nil {
		return err
	}
	defer func() {
		for _, f := range []*os.File{in.StdinW, in.StdinR, in.Msg} {
			if f != nil {
				f.Close()
			}
		}
		in.Detach()
	}()
	return in.Keep(ctx)
}

// PIDIn is the pid, in the PID namespace at nsPath, of the node's process
// hostPID; an error if the process is not in that namespace.
func PIDIn(nsPath string, hostPID int) (int, error) {
	want, err := os.Readlink(nsPath)
	if err != nil {
		return 0, err
	}
	return pidIn(want, hostPID)
}
