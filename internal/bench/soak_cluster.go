package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ferry/internal/node"
	"ferry/internal/pki"
	"ferry/internal/procfs"
)

// daemonCluster is a cluster of real `ferry node` daemons on loopback,
// each a child process of this one, so that each daemon's descriptors,
// threads and memory can be read from outside, apart from the others'.
type daemonCluster struct {
	dir     string // certificates, state directories and logs; removed by stop
	ids     []string
	daemons map[string]*daemon
	clients map[string]*node.Client
}

// daemon is one `ferry node` process.
type daemon struct {
	id   string
	cmd  *exec.Cmd
	log  string        // its standard output and error
	done chan struct{} // closed when it has exited
	err  error         // how it exited; set before done is closed
}

// startDaemons starts n daemons (n1…nN) from exe with certificates from
// pki.Init (what `ferry init` writes) and faults[id] as their --fault
// flags, joins them and waits until each sees every one alive.
func startDaemons(ctx context.Context, exe, parent string, n int, faults map[string][]string) (*daemonCluster, error) {
	dir, err := os.MkdirTemp(parent, "ferry-soak-")
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	dc := &daemonCluster{dir: dir, daemons: map[string]*daemon{}, clients: map[string]*node.Client{}}
	for i := 1; i <= n; i++ {
		dc.ids = append(dc.ids, "n"+strconv.Itoa(i))
	}
	pkiDir := filepath.Join(dir, "pki")
	if err := pki.Init(pkiDir, dc.ids); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("bench: cluster certificates: %w", err)
	}
	var first string
	for _, id := range dc.ids {
		addr, err := loopbackAddr()
		if err != nil {
			dc.stop()
			return nil, fmt.Errorf("bench: %w", err)
		}
		state := filepath.Join(dir, id)
		args := []string{"node", "--id", id, "--listen", addr, "--state", state, "--pki", pkiDir}
		if first != "" {
			args = append(args, "--join", first)
		} else {
			first = addr
		}
		for _, f := range faults[id] {
			args = append(args, "--fault", f)
		}
		d, err := startDaemon(exe, id, filepath.Join(dir, id+".log"), args)
		if err != nil {
			dc.stop()
			return nil, err
		}
		dc.daemons[id] = d
		dc.clients[id] = node.NewClient(filepath.Join(state, "ferry.sock"))
	}
	if err := dc.waitMembers(ctx, 30*time.Second); err != nil {
		dc.stop()
		return nil, err
	}
	return dc, nil
}

func startDaemon(exe, id, logPath string, args []string) (*daemon, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: node %s: %w", id, err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A group of its own: a Ctrl-C at the terminal reaches the bench,
	// which stops the jobs before the daemons. Pdeathsig: no daemon
	// outlives a bench that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start node %s: %w", id, err)
	}
	d := &daemon{id: id, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { // owned by d: stop waits for done
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// gone says how d exited, or is nil while it runs.
func (d *daemon) gone() error {
	select {
	case <-d.done:
		if d.err == nil {
			return errors.New("exited")
		}
		return fmt.Errorf("exited: %w", d.err)
	default:
		return nil
	}
}

// logTail is the end of d's log, for an error message.
func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	b = bytes.TrimSpace(b)
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	if len(b) == 0 {
		return ""
	}
	return "; its log ends:\n" + string(b)
}

func (dc *daemonCluster) waitMembers(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for _, id := range dc.ids {
		for {
			if err := dc.daemons[id].gone(); err != nil {
				return fmt.Errorf("bench: node %s: %v%s", id, err, dc.daemons[id].logTail())
			}
			ms, err := dc.clients[id].Members(ctx)
			alive := 0
			for _, m := range ms {
				if m.Alive {
					alive++
				}
			}
			if err == nil && alive == len(dc.ids) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bench: node %s sees %d of %d nodes alive after %v (%v)", id, alive, len(dc.ids), timeout, err)
			}
			select {
			case <-time.After(100 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// downNodes lists the daemons that have exited, with why.
func (dc *daemonCluster) downNodes() []string {
	var down []string
	for _, id := range dc.ids {
		if err := dc.daemons[id].gone(); err != nil {
			down = append(down, fmt.Sprintf("%s (%v)", id, err))
		}
	}
	return down
}

// stop ends the daemons (SIGTERM, SIGKILL after 15 s), then kills every
// process left that names the cluster's directory in its command line —
// job inits, agents — and removes the directory. Stop the jobs first:
// jobs may outlive their daemon. It returns how many processes it had to
// kill after the daemons were gone.
func (dc *daemonCluster) stop() int {
	for _, d := range dc.daemons {
		d.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, d := range dc.daemons {
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	left := killNaming(dc.dir)
	os.RemoveAll(dc.dir)
	return left
}

// killNaming SIGKILLs every process whose command line contains s, but
// this one, and returns how many it found.
func killNaming(s string) int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self, n := os.Getpid(), 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !strings.Contains(string(b), s) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// DaemonFigures are one daemon's resources at one moment: descriptors,
// threads and resident memory read from /proc/PID, goroutines and Go heap
// from its GET /v1/node/stats.
type DaemonFigures struct {
	Node       string `json:"node"`
	PID        int    `json:"pid"`
	FDs        int    `json:"fds"`
	Threads    int    `json:"threads"`
	RSSBytes   uint64 `json:"rss_bytes"`
	Goroutines int    `json:"goroutines"`
	HeapBytes  uint64 `json:"heap_bytes"`
	// FDKinds counts the descriptors by what they are: "socket", "pipe",
	// "anon_inode:[pidfd]", or a path, with the cluster's directory
	// written <dir> and numbers masked as #.
	FDKinds map[string]int `json:"fd_kinds"`
}

// figures reads every daemon's figures.
func (dc *daemonCluster) figures(ctx context.Context) ([]DaemonFigures, error) {
	out := make([]DaemonFigures, 0, len(dc.ids))
	for _, id := range dc.ids {
		d := dc.daemons[id]
		if err := d.gone(); err != nil {
			return nil, fmt.Errorf("node %s: %v%s", id, err, d.logTail())
		}
		f := DaemonFigures{Node: id, PID: d.cmd.Process.Pid}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := dc.clients[id].Stats(sctx)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("node %s: stats: %w", id, err)
		}
		if st.PID != f.PID {
			return nil, fmt.Errorf("node %s: its socket is answered by pid %d, not by the daemon started (pid %d)", id, st.PID, f.PID)
		}
		f.Goroutines, f.HeapBytes = st.Goroutines, st.HeapBytes
		fds, err := procfs.FDs(f.PID)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", id, err)
		}
		tasks, err := procfs.Tasks(f.PID)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", id, err)
		}
		f.FDs, f.Threads = len(fds), len(tasks)
		f.FDKinds = map[string]int{}
		for _, fd := range fds {
			if target, err := procfs.FDLink(f.PID, fd); err == nil { // closed meanwhile otherwise
				f.FDKinds[fdKind(target, dc.dir)]++
			}
		}
		if f.RSSBytes, err = rssBytes(f.PID); err != nil {
			return nil, fmt.Errorf("node %s: %w", id, err)
		}
		out = append(out, f)
	}
	return out, nil
}

// fdKind names what a descriptor's /proc link target is, for counting.
func fdKind(target, dir string) string {
	if kind, _, ok := strings.Cut(target, ":["); ok && !strings.HasPrefix(target, "/") {
		if kind == "anon_inode" {
			return target
		}
		return kind
	}
	if rest, ok := strings.CutPrefix(target, dir); ok {
		target = "<dir>" + rest
	}
	return causeOf(target)
}

// rssBytes reads the resident set of pid from /proc/PID/statm (its second
// field, in pages).
func rssBytes(pid int) (uint64, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/statm"
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, fmt.Errorf("%s: %q: no resident field", path, b)
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return pages * uint64(os.Getpagesize()), nil
}

// loopbackAddr is a loopback TCP address free a moment ago.
func loopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}
