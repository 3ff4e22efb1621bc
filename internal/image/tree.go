package image

import (
	"errors"
	"fmt"
	"slices"
)

// CreationOrder lists a checkpoint's processes in the order a restore
// clones them: parents first (depth first from the root, procs[0]), and
// among the children of a session leader those that stayed in the old
// session before those in the leader's own — they are cloned before the
// leader's setsid. Processes whose parent is missing come last.
func CreationOrder(procs []*Process) []*Process {
	if len(procs) == 0 {
		return nil
	}
	creators := Creators(procs)
	children := map[int][]*Process{}
	for _, p := range procs[1:] {
		children[creators[p.PID]] = append(children[creators[p.PID]], p)
	}
	out := make([]*Process, 0, len(procs))
	seen := map[*Process]bool{}
	var walk func(p *Process)
	walk = func(p *Process) {
		if seen[p] {
			return
		}
		seen[p] = true
		out = append(out, p)
		kids := slices.Clone(children[p.PID])
		slices.SortStableFunc(kids, func(a, b *Process) int {
			return boolInt(a.SID == p.PID) - boolInt(b.SID == p.PID)
		})
		for _, k := range kids {
			walk(k)
		}
	}
	walk(procs[0])
	for _, p := range procs {
		if !seen[p] {
			out = append(out, p)
		}
	}
	return out
}

// Creators returns, for every process of procs but the root, the PID of
// the process that forks it at restore: its parent, except for a process
// in the session of a zombie leader that is not its parent. Such a process
// was forked inside that session and reparented, when the leader died, to
// the leader's parent, a child subreaper: a restore forks it from the
// leader (before the leader exits), and the kernel reparents it the same
// way (the subreaper flag is set first).
func Creators(procs []*Process) map[int]int {
	byPID := map[int]*Process{}
	for _, p := range procs {
		byPID[p.PID] = p
	}
	out := make(map[int]int, len(procs))
	for i, p := range procs {
		if i == 0 {
			continue
		}
		out[p.PID] = p.PPID
		leader, parent := byPID[p.SID], byPID[p.PPID]
		if leader == nil || parent == nil || leader == p || leader == parent || !leader.Zombie {
			continue
		}
		if parent.SID != p.SID && leader.PPID == p.PPID && parent.ChildSubreaper {
			out[p.PID] = leader.PID
		}
	}
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ErrSession: a process's session cannot be rebuilt by cloning the tree.
var ErrSession = errors.New("session cannot be recreated")

// CheckSessions tells whether cloning the tree in CreationOrder, each
// session leader calling setsid between its old-session and its
// new-session children, puts every process in its session. A session is
// inherited from the parent at fork or made by setsid: a process that
// ended up in some other session (reparented to a subreaper of another
// session) cannot be given it. The root's own session, when it does not
// lead one, is whatever session the restore runs in; every process in a
// session led outside the tree must be in that one. Likewise a process
// group led from outside must be the root's.
func CheckSessions(procs []*Process) error {
	if len(procs) == 0 {
		return nil
	}
	const outside = -1 // the session the root was created in
	byPID := map[int]*Process{}
	for _, p := range procs {
		byPID[p.PID] = p
	}
	old, final := map[int]int{}, map[int]int{}
	outsideSID := 0 // the image SID that stands for outside, once known
	creators := Creators(procs)
	for i, p := range CreationOrder(procs) {
		var inherited int
		if i == 0 {
			inherited = outside
		} else {
			parent := byPID[creators[p.PID]]
			if parent == nil {
				return fmt.Errorf("process %d: its parent %d is not in the image: %w", p.PID, p.PPID, ErrMalformed)
			}
			if parent.SID == parent.PID && p.SID == parent.PID {
				inherited = parent.PID
			} else {
				inherited = old[parent.PID]
				if parent.SID != parent.PID {
					inherited = final[parent.PID]
				}
			}
		}
		old[p.PID] = inherited
		final[p.PID] = inherited
		if p.SID == p.PID {
			final[p.PID] = p.PID
		}
		if p.PGID != p.PID && byPID[p.PGID] == nil && p.PGID != procs[0].PGID {
			return fmt.Errorf("process %d is in process group %d, led outside the tree and not the root's: %w",
				p.PID, p.PGID, ErrSession)
		}
		got := final[p.PID]
		switch {
		case got == outside && byPID[p.SID] == nil && (outsideSID == 0 || outsideSID == p.SID):
			outsideSID = p.SID
		case got != outside && got == p.SID:
		default:
			return fmt.Errorf("process %d (parent %d) is in session %d, which it can neither inherit nor create: %w",
				p.PID, p.PPID, p.SID, ErrSession)
		}
	}
	return nil
}
