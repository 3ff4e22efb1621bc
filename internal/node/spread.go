package node

// Exec-time migration (`ferry run --spread CMD,...`, package spread): the
// job's home serves a unix socket in its scratch directory; each new
// process of the job running one of the commands asks it, through the
// wrapper, where to run, and the node moves it alone (coprocOut) to the
// least loaded node — counting, for each node, the job's spread
// processes that run there now — or lets it stay.

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/job"
	"ferry/internal/migrate"
	"ferry/internal/spread"
)

// spreader places one job's spread processes.
type spreader struct {
	n    *Node
	j    *localJob
	ln   *net.UnixListener
	path string // the socket, on the node

	mu   sync.Mutex
	load map[string]int // the job's spread processes running on each node now
	next int            // ties go round robin
}

// spreadEnv prepares job id's spread directory and socket for the
// commands names and returns env with the job's PATH put behind them.
func (n *Node) spreadEnv(id string, names []string, env []string) ([]string, *net.UnixListener, error) {
	dir := filepath.Join(n.cfg.Scratch, "spread", id)
	if err := spread.MakeDir(dir, n.cfg.Exe, names); err != nil {
		return nil, nil, err
	}
	sock := filepath.Join(n.cfg.Scratch, "spread-"+id+".sock")
	os.Remove(sock)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		return nil, nil, err
	}
	// A job that runs as its owner connects too; a process outside the
	// job that does is told to stay (it is not in the job's namespace).
	if err := os.Chmod(sock, 0o666); err != nil {
		ln.Close()
		return nil, nil, err
	}
	path := "/usr/local/bin:/usr/bin:/bin"
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
			continue
		}
		out = append(out, kv)
	}
	out = append(out, "PATH="+filepath.Join(job.ScratchMount, "spread", id)+":"+path,
		spread.PathEnv+"="+path, spread.SockEnv+"="+filepath.Join(job.ScratchMount, "spread-"+id+".sock"))
	return out, ln, nil
}

// serveSpread answers the job's wrappers until the job ends here.
func (n *Node) serveSpread(j *localJob, ln *net.UnixListener) {
	s := &spreader{n: n, j: j, ln: ln, path: ln.Addr().String(), load: map[string]int{}}
	go func() {
		select {
		case <-j.done:
		case <-n.quit:
		}
		ln.Close()
	}()
	defer os.Remove(s.path)
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			return
		}
		go s.handle(c)
	}
}

func (s *spreader) handle(c *net.UnixConn) {
	defer c.Close()
	log := s.n.log.With("job", s.j.info.ID)
	cred, err := peerCred(c)
	if err != nil {
		return
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "spread ") {
		return
	}
	name := strings.TrimSpace(strings.TrimPrefix(line, "spread "))
	host := int(cred.Pid)
	to := s.place()
	if to == s.n.cfg.ID {
		c.Write([]byte("stay\n"))
		s.note(to)
		s.count(to, host, true)
		return
	}
	pid, err := job.PIDIn(s.j.init.NSPath(), host)
	if err != nil {
		c.Write([]byte("stay\n"))
		return
	}
	if _, err := c.Write([]byte("move\n")); err != nil {
		return
	}
	// The wrapper closes its end before it may be moved.
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	c.Read(make([]byte, 1))
	s.count(to, 0, false)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := s.n.coprocOut(ctx, s.j, MigrateRequest{To: to, Mode: string(migrate.Freeze), PID: pid, Alone: true}, nil)
	if err != nil {
		s.uncount(to)
		log.Warn("spread: the process runs here", "pid", pid, "cmd", name, "to", to, "err", err)
		s.note(s.n.cfg.ID)
		s.count(s.n.cfg.ID, host, true)
	} else {
		log.Info("spread", "pid", pid, "cmd", name, "to", to, "freeze", rep.FreezeTime)
		s.note(to)
		// Off to's load when it ends there: when its stand-in here,
		// which takes on its exit, does.
		s.uncount(to)
		s.count(to, host, true)
	}
	// Go on: on its new node (through its stand-in), or here.
	unix.Kill(host, unix.SIGUSR2)
}

// place picks the node with the fewest of the job's spread processes
// now, among the live members and this one; on a tie another node
// before this one (its home runs the rest of the job: Sprite sent
// remote work to idle hosts), the others in turn.
func (s *spreader) place() string {
	var others []string
	for _, m := range s.n.members() {
		if m.Alive && m.ID != s.n.cfg.ID {
			others = append(others, m.ID)
		}
	}
	slices.Sort(others)
	s.mu.Lock()
	defer s.mu.Unlock()
	best := s.n.cfg.ID
	for i := range others {
		id := others[(s.next+i)%len(others)]
		if best == s.n.cfg.ID && s.load[id] <= s.load[best] || s.load[id] < s.load[best] {
			best = id
		}
	}
	s.next++
	return best
}

// count adds a process to node's load; with track, it is taken off when
// host ends (a process that stays here).
func (s *spreader) count(node string, host int, track bool) {
	s.mu.Lock()
	s.load[node]++
	s.mu.Unlock()
	if !track {
		return
	}
	onExit(host, func() { s.uncount(node) })
}

func (s *spreader) uncount(node string) {
	s.mu.Lock()
	s.load[node]--
	s.mu.Unlock()
}

// note records where a spread process ran (ferry ps --json).
func (s *spreader) note(node string) {
	s.j.mu.Lock()
	defer s.j.mu.Unlock()
	if s.j.info.SpreadRuns == nil {
		s.j.info.SpreadRuns = map[string]int{}
	}
	s.j.info.SpreadRuns[node]++
}
