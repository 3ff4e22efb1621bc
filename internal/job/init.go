package job

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// JobPID is where a job's PIDs start in its namespace (the main process
// gets JobPID or, if a thread of the init took it first, the next free).
const JobPID = 100

// The init's descriptors (set up by StartInit).
const (
	fdControl = 3  // the control socket, listening
	fdExit    = 4  // the exit record
	fdStdinW  = 5  // --stdio: the node's end of the job's input
	fdStdinR  = 6  //   and a read end, to take back unread input
	fdOut     = 7  //   read ends of the job's stdout
	fdErr     = 8  //   and stderr
	fdOutLog  = 9  //   the logs they go to (O_APPEND)
	fdErrLog  = 10 //
	fdMsg     = 11 // --endpoint: the job's message endpoint, listening
)

// MsgMount is where every job finds its node's message endpoint (package
// msg): the same path on every node.
const MsgMount = "/run/ferry/msg.sock"

// initState is the init's own record of its job, guarded by mu.
type initState struct {
	mu     sync.Mutex
	hello  Hello
	conns  map[*net.UnixConn]*sync.Mutex // open connections → write lock
	served bool                          // a connection was open once
	stdinW *os.File                      // nil once closed
	stdinR *os.File
	msgLn  *os.File // the message endpoint's listener, or nil
	// held: the node's ends of the processes' endpoint connections, by
	// the node's key, kept so that they outlive the node daemon (their
	// unread packets with them) for the next one to take.
	held     map[string]int // raw fds: os.File.Fd would make them blocking, the node's copy too
	heldKeys []string       // in the order they came
	copiers  [2]*copier
	exitF    *os.File
}

// InitMain is the body of `ferry jobinit`. With args, it starts them as the
// job (in a session of their own) and waits for them; with mainPID > 0 and
// no args it waits for a job that a migration agent restores with that
// PID. With cred, the job's command runs as cred with no new privileges.
// It never returns.
//
// The init outlives the node daemon that started it: it holds the job's
// standard streams (input open, output copied into the job's logs) and
// its exit status for whichever node attaches next (control.go).
func InitMain(mainPID int, scratch, endpoint string, stdio bool, cred *Cred, args []string) {
	for fd := fdControl; fd <= fdMsg; fd++ {
		// Nothing of the init's may leak into the job: it would be an
		// fd the job holds that leads outside it.
		unix.CloseOnExec(fd)
	}
	s := &initState{conns: map[*net.UnixConn]*sync.Mutex{}, exitF: os.NewFile(fdExit, "exit")}
	s.hello = Hello{Version: ControlVersion, Restore: len(args) == 0, PID: mainPID}
	if os.Getpid() != 1 {
		s.fail(errors.New("jobinit must be PID 1 of a new PID namespace"))
	}
	// listen(2) again: the kernel gives a connecting node the
	// credentials of the last process that called it, so that a node
	// that attaches later finds this init's PID by SO_PEERCRED.
	if err := unix.Listen(fdControl, 16); err != nil {
		s.fail(fmt.Errorf("control socket: %w", os.NewSyscallError("listen", err)))
	}
	fl, err := net.FileListener(os.NewFile(fdControl, "control"))
	if err != nil {
		s.fail(fmt.Errorf("control socket: %w", err))
	}
	unix.Close(fdControl)
	if stdio {
		s.stdinW, s.stdinR = os.NewFile(fdStdinW, "stdin"), os.NewFile(fdStdinR, "stdin")
		s.hello.StdinOpen, s.hello.StdinHeld = true, true
		for i, fd := range []int{fdOut, fdErr} {
			if err := unix.SetNonblock(fd, true); err != nil {
				s.fail(fmt.Errorf("output pipe: %w", err))
			}
			s.copiers[i] = &copier{fd: fd, log: os.NewFile(uintptr(fdOutLog+i), roles[i+1]+" log")}
		}
	}
	// A /proc of this namespace, visible only in this mount namespace, so
	// that /proc/self and /proc/<getpid()> mean this namespace's PIDs.
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		s.fail(fmt.Errorf("mount /proc: %w", err))
	}
	if err := MountScratch(scratch); err != nil {
		s.fail(err)
	}
	if endpoint != "" {
		// The node's socket for this job, at the path every job knows.
		if err := unix.Mount(endpoint, MsgMount, "", unix.MS_BIND, ""); err != nil {
			s.fail(fmt.Errorf("bind the message endpoint %s on %s: %w", endpoint, MsgMount, err))
		}
		s.msgLn = os.NewFile(fdMsg, "message endpoint")
		s.hello.Endpoint = true
	}
	if len(args) == 0 {
		// A restore will create the job with its old PIDs. Whatever
		// runs here before that (the migration agent, the restore's
		// seed and their threads) takes PIDs from the top of the range,
		// out of the job's way.
		if err := parkPIDs(); err != nil {
			s.fail(err)
		}
	} else {
		// The job starts at JobPID, above the PIDs of this init's own
		// threads (Go starts a few, numbered 2, 3, …): a restore of the
		// job elsewhere must find its PIDs free of the new init's threads.
		if err := SetLastPID(JobPID - 1); err != nil {
			s.fail(err)
		}
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if cred != nil {
			if err := dropTo(cmd, cred); err != nil {
				s.fail(err)
			}
		}
		if err := cmd.Start(); err != nil {
			s.fail(fmt.Errorf("start %s: %w", args[0], err))
		}
		mainPID = cmd.Process.Pid
		cmd.Process.Release()
		s.mu.Lock()
		s.hello.PID = mainPID
		s.mu.Unlock()
	}
	// Signals are for the job, not for its init. (Only now: an ignored
	// signal would stay ignored in the job across exec.)
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGPIPE)
	// The init keeps no end of the job's own stdio: EOF on its output
	// must mean the job closed it.
	if null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0); err == nil {
		for fd := 0; fd < 3; fd++ {
			unix.Dup3(int(null.Fd()), fd, 0)
		}
		null.Close()
	}
	for _, c := range s.copiers {
		if c != nil {
			go c.run()
		}
	}
	go s.serve(fl.(*net.UnixListener))
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
			s.fail(fmt.Errorf("wait4: %w", err))
		}
		if pid == mainPID && (ws.Exited() || ws.Signaled()) {
			s.finish(int(ws))
		}
	}
}

// finish ends the job: whatever else runs in the namespace is killed, the
// output that is left goes into the logs, the exit is recorded and told,
// and the init exits (which ends the namespace).
func (s *initState) finish(status int) {
	unix.Kill(-1, unix.SIGKILL) // everything in this namespace but the init
	s.mu.Lock()
	s.hello.Exited, s.hello.Status = true, status
	s.mu.Unlock()
	// Every writer of the job's output is gone now, unless the job gave
	// a pipe to a process outside: copy until EOF, for a while at most.
	deadline := time.Now().Add(3 * time.Second)
	for _, c := range s.copiers {
		if c != nil {
			c.waitEOF(deadline)
		}
	}
	e := Exit{Status: status}
	e.Out, e.Err = s.sync()
	s.record(e)
	s.broadcast(Event{Event: "exited", PID: s.hello.PID, Status: status, Out: e.Out, Err: e.Err})
	os.Exit(0)
}

// fail reports an error of the init itself and exits, ending the
// namespace.
func (s *initState) fail(err error) {
	s.record(Exit{Error: err.Error()})
	s.broadcast(Event{Event: "error", Error: err.Error()})
	os.Exit(1)
}

// record writes the exit record, durably: the node may be away.
func (s *initState) record(e Exit) {
	b, _ := json.Marshal(e)
	s.exitF.Truncate(0)
	s.exitF.WriteAt(b, 0)
	s.exitF.Sync()
}

// sync copies what is left in the output pipes into the logs and returns
// the logs' sizes.
func (s *initState) sync() (out, errSize int64) {
	var sizes [2]int64
	for i, c := range s.copiers {
		if c != nil {
			sizes[i] = c.drain()
		}
	}
	return sizes[0], sizes[1]
}

func (s *initState) broadcast(ev Event) {
	s.mu.Lock()
	conns := make(map[*net.UnixConn]*sync.Mutex, len(s.conns))
	for c, m := range s.conns {
		conns[c] = m
	}
	s.mu.Unlock()
	for c, m := range conns {
		s.send(c, m, ev)
	}
}

func (s *initState) send(c *net.UnixConn, m *sync.Mutex, ev Event) {
	b, _ := json.Marshal(ev)
	m.Lock()
	defer m.Unlock()
	c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	c.Write(append(b, '\n'))
}

// serve accepts the nodes (and agents) that attach.
func (s *initState) serve(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if !rootPeer(c) {
			c.Close()
			continue
		}
		go s.handle(c)
	}
}

// rootPeer: only root (the node, its agents) may attach.
func rootPeer(c *net.UnixConn) bool {
	sc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	var cred *unix.Ucred
	sc.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	return err == nil && cred != nil && cred.Uid == 0
}

func (s *initState) handle(c *net.UnixConn) {
	wmu := &sync.Mutex{}
	s.mu.Lock()
	h := s.hello
	var files []int
	if s.stdinW != nil {
		files = append(files, int(s.stdinW.Fd()))
	}
	h.StdinOpen = s.stdinW != nil
	if s.stdinR != nil {
		files = append(files, int(s.stdinR.Fd()))
	}
	h.StdinHeld = s.stdinR != nil
	if s.msgLn != nil {
		files = append(files, int(s.msgLn.Fd()))
	}
	h.Conns = nil
	for _, k := range s.heldKeys {
		h.Conns = append(h.Conns, k)
		files = append(files, s.held[k])
	}
	// Registered under mu with the hello taken: every event after this
	// hello reaches the connection.
	s.conns[c] = wmu
	s.served = true
	b, _ := json.Marshal(h)
	var oob []byte
	if len(files) > 0 {
		oob = unix.UnixRights(files...)
	}
	wmu.Lock()
	_, _, err := c.WriteMsgUnix(append(b, '\n'), oob, nil)
	wmu.Unlock()
	s.mu.Unlock()
	if err == nil {
		s.commands(c, wmu)
	}
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	orphaned := s.hello.Restore && !s.hello.Kept && len(s.conns) == 0
	s.mu.Unlock()
	if orphaned {
		// The destination node is gone before the migration committed:
		// nothing of it may run here.
		s.fail(errors.New("the node left before the incoming migration committed"))
	}
}

// commands reads a connection's commands, one JSON line each, and the
// descriptors that come with them (hold-conn), and answers each.
func (s *initState) commands(c *net.UnixConn, wmu *sync.Mutex) {
	buf := make([]byte, 0, 4096)
	chunk := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	var fds []int // came, not yet taken by a command
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for {
		for {
			line, rest, ok := bytes.Cut(buf, []byte{'\n'})
			if !ok {
				break
			}
			var cmd command
			if json.Unmarshal(line, &cmd) != nil {
				return
			}
			buf = append(buf[:0], rest...)
			if cmd.Cmd == "hold-conn" {
				f := -1
				if len(fds) > 0 {
					f, fds = fds[0], fds[1:]
				}
				s.send(c, wmu, s.hold(cmd, f))
				continue
			}
			s.send(c, wmu, s.do(cmd))
		}
		if len(buf) > maxControlLine {
			return
		}
		n, oobn, _, _, err := c.ReadMsgUnix(chunk, oob)
		if oobn > 0 {
			if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
				for i := range msgs {
					if got, rerr := unix.ParseUnixRights(&msgs[i]); rerr == nil {
						for _, fd := range got {
							unix.CloseOnExec(fd)
						}
						fds = append(fds, got...)
					}
				}
			}
		}
		if err != nil || n == 0 {
			return
		}
		buf = append(buf, chunk[:n]...)
	}
}

// maxHeldConns bounds the endpoint connections an init keeps for its
// node (a hello carries them all, and one message at most SCM_MAX_FD
// descriptors): the connections of further processes end with the
// node daemon, and those processes connect again.
const maxHeldConns = 240

// hold keeps fd, the node's end of one endpoint connection, under the
// command's key (hold-conn without a descriptor is refused).
func (s *initState) hold(cmd command, f int) Event {
	if f < 0 || cmd.Key == "" {
		if f >= 0 {
			unix.Close(f)
		}
		return Event{Event: "error", ID: cmd.ID, Error: "hold-conn without a key and one descriptor"}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == nil {
		s.held = map[string]int{}
	}
	if old, ok := s.held[cmd.Key]; ok {
		unix.Close(old)
	} else {
		if len(s.held) >= maxHeldConns {
			unix.Close(f)
			return Event{Event: "error", ID: cmd.ID, Error: fmt.Sprintf("already %d connections held", maxHeldConns)}
		}
		s.heldKeys = append(s.heldKeys, cmd.Key)
	}
	s.held[cmd.Key] = f
	return Event{Event: "held", ID: cmd.ID}
}

func (s *initState) do(cmd command) Event {
	switch cmd.Cmd {
	case "drop-conn":
		s.mu.Lock()
		if f, ok := s.held[cmd.Key]; ok {
			unix.Close(f)
			delete(s.held, cmd.Key)
			s.heldKeys = slices.DeleteFunc(s.heldKeys, func(k string) bool { return k == cmd.Key })
		}
		s.mu.Unlock()
		return Event{Event: "dropped", ID: cmd.ID}
	case "sync":
		out, e := s.sync()
		return Event{Event: "synced", ID: cmd.ID, Out: out, Err: e}
	case "close-stdin":
		s.mu.Lock()
		if s.stdinW != nil {
			s.stdinW.Close()
			s.stdinW = nil
		}
		s.mu.Unlock()
		return Event{Event: "stdin-closed", ID: cmd.ID}
	case "keep":
		s.mu.Lock()
		s.hello.Kept = true
		s.mu.Unlock()
		return Event{Event: "kept", ID: cmd.ID}
	}
	return Event{Event: "error", ID: cmd.ID, Error: fmt.Sprintf("unknown command %q", cmd.Cmd)}
}

// copier moves one of the job's output streams into its log, whether a
// node runs or not. Nothing is held in memory: when the log cannot be
// written (a full disk), the copier waits and the job blocks on its full
// pipe; nothing is dropped.
type copier struct {
	mu  sync.Mutex // held while bytes are between the pipe and the log
	fd  int        // the pipe's read end, non-blocking
	log *os.File
	eof bool
	buf [64 << 10]byte
}

func (c *copier) run() {
	fds := []unix.PollFd{{Fd: int32(c.fd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			return
		}
		c.mu.Lock()
		c.copyLocked()
		eof := c.eof
		c.mu.Unlock()
		if eof {
			return
		}
	}
}

// copyLocked copies until the pipe is empty (or at its end).
func (c *copier) copyLocked() {
	for !c.eof {
		n, err := unix.Read(c.fd, c.buf[:])
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			return
		}
		if n == 0 || err != nil {
			c.eof = true
			return
		}
		for p := c.buf[:n]; len(p) > 0; {
			k, err := c.log.Write(p)
			p = p[k:]
			if err != nil {
				time.Sleep(time.Second) // ENOSPC and the like: try again
			}
		}
	}
}

// drain copies what is in the pipe now and returns the log's size.
func (c *copier) drain() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.copyLocked()
	st, err := c.log.Stat()
	if err != nil {
		return -1
	}
	return st.Size()
}

func (c *copier) waitEOF(deadline time.Time) {
	for time.Now().Before(deadline) {
		c.mu.Lock()
		c.copyLocked()
		eof := c.eof
		c.mu.Unlock()
		if eof {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var roles = [3]string{"stdin", "stdout", "stderr"}

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

// InitMainArgs parses `jobinit [--main PID] [--scratch DIR] [--stdio]
// [--control PATH] [--uid U --gid G --groups G,G] [--] CMD ARGS` and runs
// InitMain. (--control only names the socket, for people reading ps; the
// socket is fd 3.)
func InitMainArgs(args []string) {
	mainPID, scratch, endpoint, stdio := 0, "", "", false
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
		case "--stdio":
			stdio = true
			args = args[1:]
			continue
		case "--scratch", "--control", "--endpoint":
			if len(args) > 1 {
				switch args[0] {
				case "--scratch":
					scratch = args[1]
				case "--endpoint":
					endpoint = args[1]
				}
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
	InitMain(mainPID, scratch, endpoint, stdio, cred, args)
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
