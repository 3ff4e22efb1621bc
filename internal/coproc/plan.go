// Package coproc plans the move of one process of a job, with its own
// children unless alone, to another node while the rest of the job stays
// (the chapter's coprocesses on different nodes): which of its
// descriptors lead to processes that stay and become relayed streams
// (package deputy), and what refuses the move, by name, before anything
// is touched.
//
// What belongs here: Plan and its rules, read from /proc. What does not:
// the move itself (dump, restore with a stand-in parent, the home
// stand-in: packages dump, restore, standin), the relay (deputy, relay).
package coproc

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/deputy"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// ErrRefused is wrapped by every reason a process cannot move alone.
var ErrRefused = errors.New("the process cannot move apart from its job")

// Policy is a job's rules about separating its processes.
type Policy struct {
	// KeepTogether refuses to separate the job's processes at all.
	KeepTogether bool
	// NoSeparateWaiting refuses to move a process that waits for its
	// children (the UNIX systems' rule of the chapter).
	NoSeparateWaiting bool
	// Name, if set, gives the PID errors use for a process (the job's
	// own numbering, where the plan is made with the node's).
	Name func(pid int) int
}

// Stream is one descriptor end that leads to a process staying home.
type Stream struct {
	ID   deputy.StreamID
	Dir  deputy.Dir
	Kind string // "pipe", "fifo" or "socket" (a socketpair: two streams on one end)
	// Inode is the end's (the pipe's; the moved process's socket).
	Inode uint64
	// Holders are the moved processes' fds on this end (pid → fds).
	Holders map[int][]int
	// SharedRead: a process that stays reads this same end (the job's
	// stdin, say). Its bytes are left to it — relaying them would take
	// them from it — and the moved process gets only the end of file,
	// once every writer closed.
	SharedRead bool
}

// Plan is a move of PID, and Moved, away from the job's other processes.
type Plan struct {
	PID   int
	Moved []int // PID and the descendants that go with it, parents first
	// Parent is PID's parent, which stays: its stand-in on the other
	// node has its PID. SID and PGID are PID's session and group.
	Parent, SID, PGID int
	// Leader, if not 0, leads PID's session and group, and is neither PID
	// nor its parent: its stand-in there leads them (restore.Parent.Leader).
	Leader  int
	Streams []Stream

	name func(int) int
}

// n is how errors name pid.
func (p *Plan) n(pid int) int {
	if p.name == nil {
		return pid
	}
	if v := p.name(pid); v > 0 {
		return v
	}
	return pid
}

func (p *Plan) list(pids []int) string {
	out := make([]int, len(pids))
	for i, q := range pids {
		out[i] = p.n(q)
	}
	return pidList(out)
}

// Make plans the move of pid out of the job whose processes are job
// (every PID of the job as ferry sees them, its init among them). With
// alone, pid must have no children.
func Make(job []int, pid int, alone bool, pol Policy) (*Plan, error) {
	if pol.KeepTogether {
		return nil, fmt.Errorf("the job was started with --keep-together: its processes are not separated: %w", ErrRefused)
	}
	p := &Plan{PID: pid, name: pol.Name}
	if !slices.Contains(job, pid) {
		return nil, fmt.Errorf("pid %d is not a process of the job: %w", p.n(pid), ErrRefused)
	}
	st, err := procfs.Stat(pid)
	if err != nil {
		return nil, fmt.Errorf("pid %d: %w", p.n(pid), err)
	}
	p.Parent, p.SID, p.PGID = st.PPID, st.Session, st.PGRP
	if !slices.Contains(job, p.Parent) {
		return nil, fmt.Errorf("pid %d has no parent in the job (its parent %d is not one of its processes): %w", p.n(pid), p.n(p.Parent), ErrRefused)
	}
	kids, err := descendants(pid)
	if err != nil {
		return nil, err
	}
	if alone && len(kids) > 0 {
		return nil, fmt.Errorf("pid %d has children (%s): --alone moves a process without any: %w", p.n(pid), p.list(kids), ErrRefused)
	}
	if pol.NoSeparateWaiting && waiting(pid) {
		return nil, fmt.Errorf("pid %d waits for its children, and the job was started with --no-separate-waiting: %w", p.n(pid), ErrRefused)
	}
	p.Moved = append([]int{pid}, kids...)
	// Its session and group must be made again there: led by itself or
	// by its parent (whose stand-in there can lead them).
	// Or, as a compiler under make's shell is, both led by one process
	// of the job that stays (the Leader, whose stand-in there leads them).
	if p.SID != pid && p.SID != p.Parent && p.SID == p.PGID && slices.Contains(job, p.SID) && !slices.Contains(p.Moved, p.SID) {
		p.Leader = p.SID
	}
	for _, id := range []struct {
		what string
		v    int
	}{{"session", p.SID}, {"process group", p.PGID}} {
		if id.v != pid && id.v != p.Parent && id.v != p.Leader && !slices.Contains(p.Moved, id.v) {
			return nil, fmt.Errorf("pid %d is in %s %d, led by neither itself, its parent %d nor the leader of its session: %w", p.n(pid), id.what, p.n(id.v), p.n(p.Parent), ErrRefused)
		}
	}
	if p.SID == p.Parent && p.PGID != p.Parent && p.PGID != pid {
		return nil, fmt.Errorf("pid %d is in process group %d of its parent's session: %w", p.n(pid), p.n(p.PGID), ErrRefused)
	}
	home := slices.DeleteFunc(slices.Clone(job), func(q int) bool { return slices.Contains(p.Moved, q) })
	if err := p.checkMemory(home); err != nil {
		return nil, err
	}
	if err := p.planFDs(home); err != nil {
		return nil, err
	}
	return p, nil
}

// descendants lists pid's descendants, parents first.
func descendants(pid int) ([]int, error) {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		q := queue[0]
		queue = queue[1:]
		tids, err := procfs.Tasks(q)
		if err != nil {
			return nil, fmt.Errorf("pid %d: %w", q, err)
		}
		for _, tid := range tids {
			kids, err := procfs.TaskChildren(q, tid)
			if err != nil {
				return nil, fmt.Errorf("pid %d: %w", q, err)
			}
			out = append(out, kids...)
			queue = append(queue, kids...)
		}
	}
	return out, nil
}

// waiting reports whether pid sits in wait4 or waitid.
func waiting(pid int) bool {
	b, err := procfs.Syscall(pid)
	if err != nil {
		return false
	}
	f := strings.Fields(b)
	if len(f) == 0 {
		return false
	}
	nr, err := strconv.Atoi(f[0])
	return err == nil && (nr == unix.SYS_WAIT4 || nr == unix.SYS_WAITID)
}

func pidList(pids []int) string {
	s := make([]string, len(pids))
	for i, p := range pids {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}

// checkMemory refuses memory a moved process shares with one that stays:
// no relay can make two nodes' stores one.
func (p *Plan) checkMemory(home []int) error {
	type key struct{ dev, ino uint64 }
	at := map[key]int{} // shared object → a home pid mapping it
	for _, h := range home {
		maps, err := procfs.Maps(h)
		if err != nil {
			continue // gone meanwhile, or a kernel thread
		}
		for _, m := range maps {
			if m.Shared && m.Inode != 0 {
				at[key{m.Dev, m.Inode}] = h
			}
		}
	}
	for _, q := range p.Moved {
		maps, err := procfs.Maps(q)
		if err != nil {
			return fmt.Errorf("pid %d: %w", p.n(q), err)
		}
		for _, m := range maps {
			if !m.Shared || m.Inode == 0 {
				continue
			}
			if h, ok := at[key{m.Dev, m.Inode}]; ok {
				what := m.Path
				if what == "" {
					what = "shared anonymous memory"
				}
				return fmt.Errorf("pid %d shares memory with pid %d, which stays (%s at %#x-%#x): shared memory cannot be relayed: %w",
					p.n(q), p.n(h), what, m.Start, m.End, ErrRefused)
			}
		}
	}
	return nil
}

// planFDs makes a stream of every pipe or FIFO end a moved process holds
// whose other end (or the same end) a process that stays holds, and
// refuses other descriptors shared with processes that stay.
func (p *Plan) planFDs(home []int) error {
	held := map[string]int{}    // fd link → a home pid holding it
	readers := map[string]int{} // pipe link → a home pid holding its read end
	for _, h := range home {
		fds, err := procfs.FDs(h)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			l, err := procfs.FDLink(h, fd)
			if err != nil {
				continue
			}
			held[l] = h
			if strings.HasPrefix(l, "pipe:[") {
				if info, err := procfs.FDInfo(h, fd); err == nil && info.Flags&unix.O_ACCMODE == unix.O_RDONLY {
					readers[l] = h
				}
			}
		}
	}
	type end struct {
		ino   uint64
		write bool
	}
	streams := map[end]*Stream{}
	sockets := map[uint64][]*Stream{} // by the moved end's inode
	for _, q := range p.Moved {
		fds, err := procfs.FDs(q)
		if err != nil {
			return fmt.Errorf("pid %d: %w", p.n(q), err)
		}
		for _, fd := range fds {
			l, err := procfs.FDLink(q, fd)
			if errors.Is(err, os.ErrNotExist) {
				continue // closed meanwhile (the plan is made again frozen)
			}
			if err != nil {
				return fmt.Errorf("pid %d fd %d: %w", p.n(q), fd, err)
			}
			h, shared := held[l]
			if shared && strings.HasPrefix(l, "anon_inode:") {
				// Every eventpoll (eventfd, timerfd...) has the same
				// link: shared only if it is the same open file.
				h, shared = sameFile(q, fd, l, home)
			}
			if !shared && strings.HasPrefix(l, "socket:[") {
				// A socketpair whose other end stays: two streams, one
				// each way, on this one end.
				if err := p.socketStreams(q, fd, l, held, sockets); err != nil {
					return err
				}
				continue
			}
			if !shared {
				continue // the moved processes' own: it travels
			}
			info, err := procfs.FDInfo(q, fd)
			if err != nil {
				return fmt.Errorf("pid %d fd %d: %w", p.n(q), fd, err)
			}
			kind := ""
			switch {
			case strings.HasPrefix(l, "pipe:["):
				kind = "pipe"
			case strings.HasPrefix(l, "/"):
				var st unix.Stat_t
				if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", q, fd), &st); err == nil && st.Mode&unix.S_IFMT == unix.S_IFIFO {
					kind = "fifo"
				} else {
					continue // a file: carried by content, opened again there
				}
			default:
				return fmt.Errorf("pid %d fd %d (%s) is shared with pid %d, which stays: only pipes and FIFOs are relayed so far: %w",
					p.n(q), fd, l, p.n(h), ErrRefused)
			}
			acc := info.Flags & unix.O_ACCMODE
			if acc == unix.O_RDWR {
				return fmt.Errorf("pid %d fd %d (%s) is open for reading and writing: a relayed end flows one way: %w", p.n(q), fd, l, ErrRefused)
			}
			e := end{info.Ino, acc == unix.O_WRONLY}
			s := streams[e]
			if s == nil {
				dir := deputy.ToAway
				if e.write {
					dir = deputy.ToHome
				}
				s = &Stream{Dir: dir, Kind: kind, Inode: info.Ino, Holders: map[int][]int{}}
				if _, ok := readers[l]; ok && dir == deputy.ToAway {
					s.SharedRead = true
				}
				streams[e] = s
			}
			s.Holders[q] = append(s.Holders[q], fd)
		}
	}
	for _, s := range streams {
		p.Streams = append(p.Streams, *s)
	}
	for _, two := range sockets {
		for _, s := range two {
			p.Streams = append(p.Streams, *s)
		}
	}
	sort.Slice(p.Streams, func(i, j int) bool {
		a, b := p.Streams[i], p.Streams[j]
		if a.Inode != b.Inode {
			return a.Inode < b.Inode
		}
		return a.Dir < b.Dir
	})
	for i := range p.Streams {
		p.Streams[i].ID = deputy.StreamID(i + 1)
	}
	return nil
}

// socketStreams makes the two streams of the moved process's socket fd
// (link l) when its peer is held by a process that stays: a stream
// socketpair, unnamed, the same one every moved holder holds.
func (p *Plan) socketStreams(q, fd int, l string, held map[string]int, sockets map[uint64][]*Stream) error {
	ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 32)
	if err != nil {
		return nil
	}
	if two := sockets[ino]; two != nil {
		for _, s := range two {
			s.Holders[q] = append(s.Holders[q], fd)
		}
		return nil
	}
	d, err := kernel.UnixDiagLookup(uint32(ino))
	if err != nil || d.Peer == 0 {
		return nil // not AF_UNIX, or not connected: it travels (or is refused by the dump)
	}
	h, ok := held[fmt.Sprintf("socket:[%d]", d.Peer)]
	if !ok {
		return nil // its peer moves too, or is outside the job
	}
	if d.Type != unix.SOCK_STREAM {
		return fmt.Errorf("pid %d fd %d (%s) is a datagram or seqpacket socket connected to pid %d, which stays: only stream socketpairs are relayed (message boundaries would be lost): %w",
			p.n(q), fd, l, p.n(h), ErrRefused)
	}
	if d.Name != "" {
		return fmt.Errorf("pid %d fd %d (%s, bound to %s) is connected to pid %d, which stays: only unnamed socketpairs are relayed: %w",
			p.n(q), fd, l, d.Name, p.n(h), ErrRefused)
	}
	for _, dir := range []deputy.Dir{deputy.ToAway, deputy.ToHome} {
		sockets[ino] = append(sockets[ino], &Stream{Dir: dir, Kind: "socket", Inode: ino, Holders: map[int][]int{q: {fd}}})
	}
	return nil
}

// sameFile looks for a process of home holding the open file q's fd
// (link l) holds, by kcmp.
func sameFile(q, fd int, l string, home []int) (int, bool) {
	for _, h := range home {
		fds, err := procfs.FDs(h)
		if err != nil {
			continue
		}
		for _, hfd := range fds {
			if hl, err := procfs.FDLink(h, hfd); err != nil || hl != l {
				continue
			}
			if same, err := kernel.KcmpFile(q, fd, h, hfd); err == nil && same {
				return h, true
			}
		}
	}
	return 0, false
}
