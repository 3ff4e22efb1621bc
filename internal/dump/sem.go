package dump

// System V semaphore adjustments (SEM_UNDO). A process that operated on a
// semaphore with SEM_UNDO holds a list of adjustments (semadj) that the
// kernel applies when it exits; no interface reads the list. It can be
// measured, though: unshare(CLONE_SYSVSEM) applies the list at once, as an
// exit would, and detaches it. So, the tree frozen, for each process that
// may hold one (one at a time, so that each change is its own):
//
//  1. of the sets it may hold adjustments on, those a process of the tree
//     operated on last ferry moves to the middle of the value range
//     (plain semop: no one's adjustments change), so that no adjustment
//     is clamped at 0 or SEMVMX and every semaphore names ferry as its
//     last operator; the others (last operated on from outside the tree)
//     are left where they are, not to disturb what GETPID tells of them;
//  2. unshare(CLONE_SYSVSEM) is injected into every thread of the process:
//     the kernel adds the adjustments and names the process the last
//     operator of each semaphore it adjusted — the value's change is the
//     adjustment (a value that ends at 0 or SEMVMX, where the kernel
//     clamps, fails the dump: part of the adjustment may be lost);
//  3. the list is made again inside the process by a semop with SEM_UNDO
//     of the opposite amounts, which takes each value back;
//  4. ferry moves the values it moved back where they were.
//
// A lock file (kernel.SemLockPath) keeps two ferry processes from doing
// this, or a restore's part, at once.
//
// At the end the process that last operated on each semaphore does a
// no-op pair (-1 +1) on it, so that GETPID answers as before. The values
// and adjustments go into the image (Checkpoint.SemSets,
// Process.SemUndo); the dump's kill applies the adjustments again, which
// a restore takes back by making the lists again (restore/sem.go).
//
// Limits, refused before anything is touched: a process whose threads
// share one list (all threads made by pthread_create do) cannot get it
// back once taken apart, so it is measured only when it dies with the
// dump (Kill); processes of the tree sharing one list (clone with
// CLONE_SYSVSEM, no CLONE_THREAD), a process of another IPC namespace
// holding a list, or a process outside the tree waiting on a set the
// tree may hold adjustments on (it would take what the measurement
// releases) are refused. A set may hold a process's adjustments only if
// it was operated on since the process started (its sem_otime); others
// are left alone. What stays visible: the sets' sem_otime is now, and a
// semaphore the process adjusted that was last operated on from outside
// the tree names the process in GETPID.

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sort"
	"syscall"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// semMid is the value semaphores are measured at: adjustments from
// -semMid to SEMVMX-semMid are seen whole.
const semMid = 16384

// semSet is one set of ferry's IPC namespace as found at the freeze.
type semSet struct {
	id   int
	ds   *kernel.SemidDs
	vals []uint16 // GETALL
	pids []int    // GETPID of each semaphore
}

// listSemSets lists the semaphore sets of ferry's IPC namespace.
func listSemSets() ([]*semSet, error) {
	max, err := kernel.SemMaxIndex()
	if err != nil {
		return nil, err
	}
	var sets []*semSet
	for i := 0; i <= max; i++ {
		id, ds, err := kernel.SemStatIndex(i)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("semaphore set at index %d: %w", i, os.NewSyscallError("semctl(SEM_STAT)", err))
		}
		s := &semSet{id: id, ds: ds}
		if err := s.read(); err != nil {
			return nil, err
		}
		sets = append(sets, s)
	}
	return sets, nil
}

// read fills in the values and last-operation pids.
func (s *semSet) read() error {
	var err error
	if s.vals, err = kernel.SemGetAll(s.id, int(s.ds.Nsems)); err != nil {
		return fmt.Errorf("semaphore set %d: %w", s.id, os.NewSyscallError("semctl(GETALL)", err))
	}
	if s.pids, err = semInts(s.id, len(s.vals), kernel.SEM_GETPID); err != nil {
		return fmt.Errorf("semaphore set %d: %w", s.id, err)
	}
	return nil
}

func semInts(id, n, cmd int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		v, err := kernel.SemGetInt(id, i, cmd)
		if err != nil {
			return nil, os.NewSyscallError("semctl", err)
		}
		out[i] = v
	}
	return out, nil
}

// moveOps returns plain operations (IPC_NOWAIT) that take each semaphore
// from from[i] to to[i]; one that stays gets a no-op pair, so that every
// semaphore names the caller as its last operator.
func moveOps(from, to []uint16) []kernel.Sembuf {
	var ops []kernel.Sembuf
	for i := range from {
		d := int(to[i]) - int(from[i])
		if d == 0 {
			ops = append(ops, kernel.SemNoopPair(uint16(i), from[i])...)
			continue
		}
		ops = append(ops, kernel.Sembuf{Num: uint16(i), Op: int16(d), Flg: kernel.IPC_NOWAIT})
	}
	return ops
}

// readAdj turns the values and last-operation pids of a set before and
// after the list of pid was applied into its adjustments. The kernel
// names pid the last operator of each semaphore it adjusted, and clamps
// values to 0..SEMVMX: a value that ends there may hide part of an
// adjustment, an unchanged one last operated on by pid already may hide
// a whole one.
func readAdj(before []uint16, beforePIDs []int, after []uint16, afterPIDs []int, pid int) ([]int16, error) {
	adj := make([]int16, len(after))
	for i, v := range after {
		was := before[i]
		clamps := v == 0 || v == kernel.SEMVMX
		switch {
		case afterPIDs[i] != pid:
			if v != was || afterPIDs[i] != beforePIDs[i] {
				return nil, fmt.Errorf("semaphore %d changed meanwhile (pid %d operated on it)", i, afterPIDs[i])
			}
		case v == was && beforePIDs[i] == pid && !clamps:
			// pid operated on it last already, and nothing changed.
		case clamps:
			return nil, fmt.Errorf("semaphore %d: pid %d adjusts it to %d, where the kernel clamps: the adjustment cannot be read whole", i, pid, v)
		default:
			adj[i] = int16(int(v) - int(was))
		}
	}
	return adj, nil
}

// semChunks cuts ops into semop calls of at most max operations.
func semChunks(ops []kernel.Sembuf, max int) [][]kernel.Sembuf {
	var out [][]kernel.Sembuf
	for len(ops) > max {
		out = append(out, ops[:max])
		ops = ops[max:]
	}
	if len(ops) > 0 {
		out = append(out, ops)
	}
	return out
}

// semMeasure measures and records the adjustments of every process of ft
// (see the top of this file) into c.
func semMeasure(ft *frozenTree, c *image.Checkpoint, leave Leave, log *slog.Logger) (err error) {
	if sets, err := listSemSets(); err != nil || len(sets) == 0 {
		return err
	}
	// Another ferry may be measuring: the sets as they are once it is done.
	unlock, err := kernel.SemLock()
	if err != nil {
		return err
	}
	defer unlock()
	sets, err := listSemSets()
	if err != nil {
		return err
	}
	opMax, err := kernel.SemOpMax()
	if err != nil {
		return err
	}
	procs := map[int]*image.Process{}
	for _, p := range c.Processes {
		procs[p.PID] = p
	}
	ref, err := startNullList()
	if err != nil {
		return err
	}
	defer stopNullList(ref)
	selfNS, err := os.Readlink("/proc/self/ns/ipc")
	if err != nil {
		return err
	}
	boot, err := procfs.BootTime()
	if err != nil {
		return err
	}
	type plan struct {
		fz    *ptrace.Frozen
		cands []*semSet
	}
	var plans []plan
	for i, fz := range ft.procs {
		has, err := hasSemList(fz.PID, ref.Process.Pid)
		if err != nil {
			return err
		}
		for _, tid := range fz.TIDs[1:] {
			if same, err := kernel.KcmpOrder(fz.PID, tid, kernel.KcmpSysVSem); err != nil {
				return fmt.Errorf("pid %d: thread %d: semaphore adjustments: %w", fz.PID, tid, err)
			} else if same != 0 {
				return fmt.Errorf("thread %d of pid %d has a list of System V semaphore adjustments of its own (made without CLONE_SYSVSEM): %w",
					tid, fz.PID, ErrUnsupported)
			}
		}
		if !has {
			continue
		}
		for _, other := range ft.procs[:i] {
			if same, err := kernel.KcmpOrder(fz.PID, other.PID, kernel.KcmpSysVSem); err != nil {
				return fmt.Errorf("pid %d: semaphore adjustments: %w", fz.PID, err)
			} else if same == 0 {
				return fmt.Errorf("pids %d and %d share one list of System V semaphore adjustments (clone with CLONE_SYSVSEM): %w",
					other.PID, fz.PID, ErrUnsupported)
			}
		}
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/ipc", fz.PID)); err != nil {
			return fmt.Errorf("pid %d: IPC namespace: %w", fz.PID, err)
		} else if ns != selfNS {
			return fmt.Errorf("pid %d holds System V semaphore adjustments in another IPC namespace (%s), which ferry cannot measure: %w",
				fz.PID, ns, ErrUnsupported)
		}
		st, err := procfs.Stat(fz.PID)
		if err != nil {
			return err
		}
		// Seconds (sem_otime) against clock ticks since an approximate
		// boot time (btime): a margin of two seconds.
		started := boot + int64(st.StartTime/100) - 2
		var cands []*semSet
		for _, s := range sets {
			if s.ds.Otime >= started {
				cands = append(cands, s)
			}
		}
		if len(cands) == 0 {
			continue // nothing was operated on since it started
		}
		if len(fz.TIDs) > 1 && leave != Kill {
			return fmt.Errorf("pid %d may hold System V semaphore adjustments (set %d was operated on since it started), and its %d threads share them: measuring them takes the list apart for good, which only a dump that ends the process may do (not with --leave-running/--leave-stopped or a migration): %w",
				fz.PID, cands[0].id, len(fz.TIDs), ErrUnsupported)
		}
		for _, s := range cands {
			for cmd, what := range map[int]string{kernel.SEM_GETNCNT: "an increase", kernel.SEM_GETZCNT: "zero"} {
				n, err := semInts(s.id, len(s.vals), cmd)
				if err != nil {
					return fmt.Errorf("semaphore set %d: %w", s.id, err)
				}
				for num, k := range n {
					if k > 0 {
						return fmt.Errorf("pid %d may hold adjustments of System V semaphore set %d, where %d process(es) outside the tree wait for %s of semaphore %d: measuring them would hand them what it releases: %w",
							fz.PID, s.id, k, what, num, ErrUnsupported)
					}
				}
			}
		}
		plans = append(plans, plan{fz, cands})
	}
	if len(plans) == 0 {
		return nil
	}
	recorded := map[int]bool{}
	touched := map[int]*semSet{}
	defer func() {
		// Whatever happened, the last operators are named again.
		if ferr := semFixPIDs(touched, procs, opMax); ferr != nil {
			log.Error("semaphores: name the last operators again", "err", ferr)
			if err == nil {
				err = ferr
			}
		}
	}()
	for _, pl := range plans {
		pid := pl.fz.PID
		// Sets the tree operated on last move to the middle (the tree's
		// processes name themselves again at the end); others are
		// measured where they are, which only a clamped value defeats.
		var moved []*semSet
		for _, s := range pl.cands {
			if !semOurs(s, procs) {
				continue
			}
			touched[s.id] = s
			moved = append(moved, s)
			if err := semopChunks(s.id, moveOps(s.vals, fill(len(s.vals), semMid)), opMax); err != nil {
				semMoveBack(moved[:len(moved)-1], opMax, log)
				return fmt.Errorf("semaphore set %d: move to %d for measuring: %w", s.id, semMid, err)
			}
		}
		before := map[int]*semSet{}
		for _, s := range pl.cands {
			now := &semSet{id: s.id, ds: s.ds}
			if err := now.read(); err != nil {
				semMoveBack(moved, opMax, log)
				return err
			}
			before[s.id] = now
		}
		if len(pl.fz.TIDs) > 1 {
			log.Warn("semaphore adjustments: taking apart the list the threads share (the process ends with the dump)", "pid", pid)
		}
		if err := semUnshare(pl.fz); err != nil {
			semMoveBack(moved, opMax, log)
			return err
		}
		undo := map[int][]int16{}
		var merr error
		for _, s := range pl.cands {
			now := &semSet{id: s.id, ds: s.ds}
			if err := now.read(); err != nil {
				merr = errors.Join(merr, err)
				continue
			}
			was := before[s.id]
			adj, err := readAdj(was.vals, was.pids, now.vals, now.pids, pid)
			if err != nil {
				// Make again what can be seen: the value's change.
				adj = make([]int16, len(now.vals))
				for i, v := range now.vals {
					if now.pids[i] == pid {
						adj[i] = int16(int(v) - int(was.vals[i]))
					}
				}
				merr = errors.Join(merr, fmt.Errorf("semaphore set %d: %w", s.id, err))
			}
			if slicesAny(adj) {
				undo[s.id] = adj
				touched[s.id] = s
			}
		}
		if err := semInject(pid, undo, opMax); err != nil {
			merr = errors.Join(merr, fmt.Errorf("make the list of semaphore adjustments of pid %d again: %w", pid, err))
		}
		if err := semMoveBack(moved, opMax, log); err != nil {
			merr = errors.Join(merr, err)
		}
		if merr != nil {
			return fmt.Errorf("pid %d: System V semaphore adjustments: %w", pid, merr)
		}
		ids := make([]int, 0, len(undo))
		for id := range undo {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			procs[pid].SemUndo = append(procs[pid].SemUndo, image.SemUndo{Set: id, Adj: undo[id]})
			recorded[id] = true
		}
		log.Debug("semaphore adjustments measured", "pid", pid, "sets", len(ids))
	}
	for _, s := range sets {
		if !recorded[s.id] {
			continue
		}
		rec := image.SemSet{ID: s.id, Key: s.ds.Perm.Key, Mode: s.ds.Perm.Mode & 0o777, UID: s.ds.Perm.Uid,
			GID: s.ds.Perm.Gid, CUID: s.ds.Perm.Cuid, CGID: s.ds.Perm.Cgid, Values: s.vals}
		for _, p := range s.pids {
			rec.PIDs = append(rec.PIDs, int32(p))
		}
		c.SemSets = append(c.SemSets, rec)
	}
	return nil
}

// semOurs reports whether a process of the tree operated last on some
// semaphore of s.
func semOurs(s *semSet, procs map[int]*image.Process) bool {
	for _, p := range s.pids {
		if procs[p] != nil {
			return true
		}
	}
	return false
}

func fill(n int, v uint16) []uint16 {
	out := make([]uint16, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func slicesAny(adj []int16) bool {
	for _, a := range adj {
		if a != 0 {
			return true
		}
	}
	return false
}

// semMoveBack takes the sets from semMid back to the values they had.
func semMoveBack(sets []*semSet, opMax int, log *slog.Logger) error {
	var errs error
	for _, s := range sets {
		if err := semopChunks(s.id, moveOps(fill(len(s.vals), semMid), s.vals), opMax); err != nil {
			log.Error("semaphores: move back", "set", s.id, "err", err)
			errs = errors.Join(errs, fmt.Errorf("semaphore set %d: move back: %w", s.id, err))
		}
	}
	return errs
}

func semopChunks(id int, ops []kernel.Sembuf, opMax int) error {
	for _, ch := range semChunks(ops, opMax) {
		if err := kernel.Semop(id, ch); err != nil {
			return os.NewSyscallError("semop", err)
		}
	}
	return nil
}

// semFixPIDs makes the process of the tree that last operated on each
// semaphore of sets do so again (a no-op pair), so that GETPID names it.
// A semaphore last operated on from outside the tree names ferry.
func semFixPIDs(sets map[int]*semSet, procs map[int]*image.Process, opMax int) error {
	byPID := map[int]map[int][]kernel.Sembuf{}
	for id, s := range sets {
		for i, p := range s.pids {
			if procs[p] == nil {
				continue
			}
			if byPID[p] == nil {
				byPID[p] = map[int][]kernel.Sembuf{}
			}
			byPID[p][id] = append(byPID[p][id], kernel.SemNoopPair(uint16(i), s.vals[i])...)
		}
	}
	var errs error
	for pid, ops := range byPID {
		if err := semInjectOps(pid, ops, opMax); err != nil {
			errs = errors.Join(errs, fmt.Errorf("pid %d: %w", pid, err))
		}
	}
	return errs
}

// semInject makes the adjustments undo (set → adj) in pid: the raising
// operations first, then the lowering ones.
func semInject(pid int, undo map[int][]int16, opMax int) error {
	ops := map[int][]kernel.Sembuf{}
	for id, adj := range undo {
		ops[id] = append(kernel.SemUndoOps(adj, true), kernel.SemUndoOps(adj, false)...)
	}
	return semInjectOps(pid, ops, opMax)
}

// semInjectOps runs semop calls (set → operations) inside frozen pid.
func semInjectOps(pid int, ops map[int][]kernel.Sembuf, opMax int) error {
	if len(ops) == 0 {
		return nil
	}
	return injectInto(pid, pid, func(in *ptrace.Injector) error {
		ps := uint64(os.Getpagesize())
		size := (uint64(opMax*kernel.SembufSize) + ps - 1) &^ (ps - 1)
		mem, err := in.Syscall(unix.SYS_MMAP, 0, size, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return fmt.Errorf("map scratch: %w", err)
		}
		defer in.Syscall(unix.SYS_MUNMAP, mem, size)
		in.SetScratch(mem, size)
		ids := make([]int, 0, len(ops))
		for id := range ops {
			ids = append(ids, id)
		}
		sort.Ints(ids)
		for _, id := range ids {
			for _, ch := range semChunks(ops[id], opMax) {
				addr, err := in.Scratch(kernel.EncodeSembufs(ch))
				if err != nil {
					return err
				}
				if _, err := in.Syscall(unix.SYS_SEMOP, uint64(id), addr, uint64(len(ch))); err != nil {
					return fmt.Errorf("semaphore set %d: semop: %w", id, err)
				}
			}
		}
		return nil
	})
}

// semUnshare applies and drops the list of adjustments of fz: every thread
// lets go of it (unshare(CLONE_SYSVSEM)), the leader last.
func semUnshare(fz *ptrace.Frozen) error {
	tids := append(append([]int(nil), fz.TIDs[1:]...), fz.PID)
	for _, tid := range tids {
		err := injectInto(fz.PID, tid, func(in *ptrace.Injector) error {
			_, err := in.Syscall(unix.SYS_UNSHARE, unix.CLONE_SYSVSEM)
			return err
		})
		if err != nil {
			return fmt.Errorf("pid %d: thread %d: unshare(CLONE_SYSVSEM): %w", fz.PID, tid, err)
		}
	}
	return nil
}

// injectInto runs fn with an injector on thread tid of frozen pid.
func injectInto(pid, tid int, fn func(*ptrace.Injector) error) error {
	addr, _, err := ptrace.FindSyscall(pid)
	if err != nil {
		return err
	}
	in, err := ptrace.NewInjector(tid, addr)
	if err != nil {
		return err
	}
	err = fn(in)
	if rerr := in.Restore(); err == nil {
		err = rerr
	}
	return err
}

// startNullList starts a process that stops (traced) at its exec, before
// it runs anything: a task without a list of semaphore adjustments (fork
// gives none), to compare others with (kcmp answers "equal" for two tasks
// without one). The caller ends it with stopNullList.
func startNullList() (*exec.Cmd, error) {
	cmd := exec.Command("/proc/self/exe")
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Ptrace: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("semaphore adjustments: start a reference process: %w", err)
	}
	return cmd, nil
}

func stopNullList(cmd *exec.Cmd) {
	cmd.Process.Kill()
	cmd.Wait()
}

// hasSemList reports whether pid has a list of semaphore adjustments
// (ref, a zombie, has none).
func hasSemList(pid, ref int) (bool, error) {
	same, err := kernel.KcmpOrder(pid, ref, kernel.KcmpSysVSem)
	if err != nil {
		return false, fmt.Errorf("pid %d: semaphore adjustments: %w", pid, err)
	}
	return same != 0, nil
}
