package restore

// System V semaphore adjustments (SEM_UNDO, dump/sem.go): each set the
// image records is found again (same id, key, size and creator: on the
// machine of the dump) or made again under its id (kernel.sem_next_id)
// with the values it would have had after the dump's kill applied the
// adjustments (the recorded values plus their sum). Then each restored
// process makes its list again with semop SEM_UNDO of the opposite
// amounts, which also takes the values back to the recorded ones: first
// the operations that raise values, in every process, then those that
// lower them, none waiting (IPC_NOWAIT: a value someone outside the tree
// took since the dump fails the restore). Last, the process that last
// operated on each semaphore does a no-op pair on it, so that GETPID
// answers as before.

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
)

// semOffset is where in the scratch memory semop's operations go.
const semOffset = 0

// semSets finds or makes the recorded sets and gives every process its
// adjustments back.
func (t *tree) semSets(live []*builder) error {
	sets := t.res.Checkpoint.SemSets
	if len(sets) == 0 {
		return nil
	}
	opMax, err := kernel.SemOpMax()
	if err != nil {
		return err
	}
	if max := (scratchSize - callBatchSize) / kernel.SembufSize; opMax > max {
		opMax = max
	}
	unlock, err := kernel.SemLock()
	if err != nil {
		return err
	}
	defer unlock()
	sums, err := semSums(sets, live)
	if err != nil {
		return err
	}
	for i := range sets {
		if err := t.semSet(&sets[i], sums[sets[i].ID]); err != nil {
			return fmt.Errorf("System V semaphore set %d: %w", sets[i].ID, err)
		}
	}
	for _, positive := range []bool{true, false} {
		for _, b := range live {
			ops := map[int][]kernel.Sembuf{}
			for _, u := range b.p.SemUndo {
				if o := kernel.SemUndoOps(u.Adj, positive); len(o) > 0 {
					ops[u.Set] = o
				}
			}
			if err := b.semops(ops, opMax); err != nil {
				return fmt.Errorf("process %d: semaphore adjustments: %w", b.p.PID, err)
			}
		}
	}
	// GETPID: the last operator of each semaphore, if it is of the tree.
	for _, b := range live {
		ops := map[int][]kernel.Sembuf{}
		for _, s := range sets {
			for i, p := range s.PIDs {
				if int(p) == b.p.PID {
					ops[s.ID] = append(ops[s.ID], kernel.SemNoopPair(uint16(i), s.Values[i])...)
				}
			}
		}
		if err := b.semops(ops, opMax); err != nil {
			return fmt.Errorf("process %d: semaphores' last operator: %w", b.p.PID, err)
		}
	}
	return nil
}

// semSums adds up, per set, the adjustments of all processes, and checks
// each refers to a recorded set of its size.
func semSums(sets []image.SemSet, live []*builder) (map[int][]int, error) {
	sums := map[int][]int{}
	for _, s := range sets {
		if len(s.PIDs) != len(s.Values) {
			return nil, fmt.Errorf("semaphore set %d: %d values, %d pids: %w", s.ID, len(s.Values), len(s.PIDs), image.ErrMalformed)
		}
		sums[s.ID] = make([]int, len(s.Values))
	}
	for _, b := range live {
		for _, u := range b.p.SemUndo {
			sum, ok := sums[u.Set]
			if !ok || len(u.Adj) != len(sum) {
				return nil, fmt.Errorf("process %d: adjustments of semaphore set %d, not recorded as such: %w", b.p.PID, u.Set, image.ErrMalformed)
			}
			for i, a := range u.Adj {
				sum[i] += int(a)
			}
		}
	}
	return sums, nil
}

// semAfterKill returns the values a set has once the adjustments sum
// were applied to vals (by the dump's kill), or an error if the kernel
// would have clamped one: then the restore could not give the values back.
func semAfterKill(vals []uint16, sum []int) ([]uint16, error) {
	out := make([]uint16, len(vals))
	for i, v := range vals {
		w := int(v) + sum[i]
		if w < 0 || w > kernel.SEMVMX {
			return nil, fmt.Errorf("semaphore %d: value %d with adjustments %+d is out of range", i, v, sum[i])
		}
		out[i] = uint16(w)
	}
	return out, nil
}

// semSet finds want, or makes it again with the values it had after the
// dump's kill.
func (t *tree) semSet(want *image.SemSet, sum []int) error {
	ds, err := kernel.SemStat(want.ID)
	switch {
	case err == nil && ds.Perm.Key == want.Key && int(ds.Nsems) == len(want.Values) &&
		ds.Perm.Cuid == want.CUID && ds.Perm.Cgid == want.CGID:
		return nil // the very set, as the dump's kill left it
	case err == nil:
		return fmt.Errorf("the id is another set's here (key %#x, %d semaphores)", ds.Perm.Key, ds.Nsems)
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EIDRM):
	default:
		return os.NewSyscallError("semctl(IPC_STAT)", err)
	}
	vals, err := semAfterKill(want.Values, sum)
	if err != nil {
		return err
	}
	key := int(want.Key)
	if key != unix.IPC_PRIVATE {
		if id, err := kernel.SemGet(key, 0, 0); err == nil {
			return fmt.Errorf("key %#x belongs to set %d here", want.Key, id)
		}
	}
	// The next set made gets this id (then the kernel forgets it).
	if err := os.WriteFile("/proc/sys/kernel/sem_next_id", []byte(strconv.Itoa(want.ID)), 0); err != nil {
		return fmt.Errorf("ask for id %d (kernel.sem_next_id): %w", want.ID, err)
	}
	id, err := kernel.SemGet(key, len(want.Values), int(want.Mode&0o777)|unix.IPC_CREAT|unix.IPC_EXCL)
	if err != nil {
		return fmt.Errorf("make it again: %w", err)
	}
	t.semMade = append(t.semMade, id)
	if id != want.ID {
		return fmt.Errorf("made again as %d: its id is taken", id)
	}
	if ds, err = kernel.SemStat(id); err != nil {
		return os.NewSyscallError("semctl(IPC_STAT)", err)
	}
	ds.Perm.Uid, ds.Perm.Gid, ds.Perm.Mode = want.UID, want.GID, want.Mode&0o777
	if err := kernel.SemSet(id, ds); err != nil {
		return os.NewSyscallError("semctl(IPC_SET)", err)
	}
	if err := kernel.SemSetAll(id, vals); err != nil {
		return os.NewSyscallError("semctl(SETALL)", err)
	}
	t.log.Debug("semaphore set made again", "id", id, "values", vals)
	return nil
}

// dropSemSets removes the sets made again by a restore that failed.
func (t *tree) dropSemSets() {
	for _, id := range t.semMade {
		kernel.SemRemove(id)
	}
}

// semops runs semop calls (set → operations) inside the process.
func (b *builder) semops(ops map[int][]kernel.Sembuf, opMax int) error {
	ids := make([]int, 0, len(ops))
	for id := range ops {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	for _, id := range ids {
		o := ops[id]
		for len(o) > 0 {
			n := min(len(o), opMax)
			addr, err := b.lead.ScratchAt(semOffset, kernel.EncodeSembufs(o[:n]))
			if err != nil {
				return err
			}
			if _, err := b.lead.Syscall(unix.SYS_SEMOP, uint64(id), addr, uint64(n)); err != nil {
				if errors.Is(err, unix.EAGAIN) {
					return fmt.Errorf("set %d: a value is lower than what its adjustments take back (taken by someone outside the tree since the dump?): %w", id, err)
				}
				return fmt.Errorf("set %d: semop: %w", id, err)
			}
			o = o[n:]
		}
	}
	return nil
}
