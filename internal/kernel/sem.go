package kernel

// System V semaphores (include/uapi/linux/sem.h, ipc.h): semctl(2),
// semget(2) and semop(2), which golang.org/x/sys/unix lacks, and the
// x86-64 layouts of struct semid64_ds and struct sembuf.

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// semctl commands (include/uapi/linux/sem.h, ipc.h).
const (
	IPC_RMID    = 0
	IPC_SET     = 1
	IPC_STAT    = 2
	SEM_GETPID  = 11 // GETPID
	SEM_GETALL  = 13 // GETALL
	SEM_GETNCNT = 14 // GETNCNT
	SEM_GETZCNT = 15 // GETZCNT
	SEM_SETALL  = 17 // SETALL
	SEM_STAT    = 18
	SEM_INFO    = 19
)

// Semaphore limits and flags.
const (
	SEM_UNDO   = 0x1000 // sem_flg: adjust on exit
	IPC_NOWAIT = 0o4000 // sem_flg: fail (EAGAIN) rather than block
	SEMVMX     = 32767  // largest semaphore value
	SEMAEM     = SEMVMX // largest adjust-on-exit value (and -SEMAEM-1 the lowest)
	// KcmpSysVSem is KCMP_SYSVSEM: whether two tasks share one list of
	// semaphore adjustments (CLONE_SYSVSEM); two tasks without one
	// compare equal too.
	KcmpSysVSem = 6
)

// SemidDs is struct semid64_ds (arch/x86/include/uapi/asm/sembuf.h).
type SemidDs struct {
	Perm  unix.SysvIpcPerm
	Otime int64
	_     uint64
	Ctime int64
	_     uint64
	Nsems uint64
	_     uint64
	_     uint64
}

// Sembuf is struct sembuf, one operation of semop(2).
type Sembuf struct {
	Num uint16
	Op  int16
	Flg int16
}

// SembufSize is sizeof(struct sembuf).
const SembufSize = 6

// EncodeSembufs lays ops out as the kernel reads them.
func EncodeSembufs(ops []Sembuf) []byte {
	b := make([]byte, 0, len(ops)*SembufSize)
	for _, o := range ops {
		b = binary.LittleEndian.AppendUint16(b, o.Num)
		b = binary.LittleEndian.AppendUint16(b, uint16(o.Op))
		b = binary.LittleEndian.AppendUint16(b, uint16(o.Flg))
	}
	return b
}

// SemUndoOps returns the operations with SEM_UNDO (and IPC_NOWAIT) that
// make a process's adjustments adj of a set's semaphores again: each
// takes the opposite amount, so the kernel records adj[i]. positive picks
// those that raise values (they never wait), else those that lower them.
func SemUndoOps(adj []int16, positive bool) []Sembuf {
	var ops []Sembuf
	for i, a := range adj {
		if a == 0 || (a < 0) != positive {
			continue
		}
		ops = append(ops, Sembuf{Num: uint16(i), Op: -a, Flg: SEM_UNDO | IPC_NOWAIT})
	}
	return ops
}

// SemNoopPair returns two plain operations that leave semaphore num (of
// value v) as it is and make the caller its last operator (GETPID).
func SemNoopPair(num, v uint16) []Sembuf {
	a, b := int16(-1), int16(1)
	if v == 0 {
		a, b = 1, -1
	}
	return []Sembuf{{Num: num, Op: a, Flg: IPC_NOWAIT}, {Num: num, Op: b, Flg: IPC_NOWAIT}}
}

func semctl(id, num, cmd int, arg uintptr) (int, error) {
	for {
		r, _, errno := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), uintptr(num), uintptr(cmd), arg, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(r), nil
	}
}

// SemMaxIndex wraps semctl(0, 0, SEM_INFO): the highest index of the
// semaphore sets of ferry's IPC namespace in use (-1: none).
func SemMaxIndex() (int, error) {
	var info [40]byte // struct seminfo
	r, err := semctlPtr(0, 0, SEM_INFO, info[:])
	if err != nil {
		return 0, os.NewSyscallError("semctl(SEM_INFO)", err)
	}
	return r, nil
}

// SemStatIndex wraps semctl(index, 0, SEM_STAT): the id and description
// of the set at that index of the kernel's table (EINVAL: none there).
func SemStatIndex(index int) (int, *SemidDs, error) {
	var ds SemidDs
	r, err := semctlPtr(index, 0, SEM_STAT, Bytes(&ds))
	if err != nil {
		return 0, nil, err
	}
	return r, &ds, nil
}

// SemStat wraps semctl(id, 0, IPC_STAT).
func SemStat(id int) (*SemidDs, error) {
	var ds SemidDs
	if _, err := semctlPtr(id, 0, IPC_STAT, Bytes(&ds)); err != nil {
		return nil, err
	}
	return &ds, nil
}

// SemSet wraps semctl(id, 0, IPC_SET): owner and mode.
func SemSet(id int, ds *SemidDs) error {
	_, err := semctlPtr(id, 0, IPC_SET, Bytes(ds))
	return err
}

// SemRemove wraps semctl(id, 0, IPC_RMID).
func SemRemove(id int) error {
	_, err := semctl(id, 0, IPC_RMID, 0)
	return err
}

// SemGetAll wraps semctl(id, 0, GETALL) for a set of n semaphores.
func SemGetAll(id, n int) ([]uint16, error) {
	vals := make([]uint16, n)
	if n == 0 {
		return vals, nil
	}
	b := make([]byte, 2*n)
	if _, err := semctlPtr(id, 0, SEM_GETALL, b); err != nil {
		return nil, err
	}
	for i := range vals {
		vals[i] = binary.LittleEndian.Uint16(b[2*i:])
	}
	return vals, nil
}

// SemSetAll wraps semctl(id, 0, SETALL). It clears every process's
// adjustments of the set's semaphores.
func SemSetAll(id int, vals []uint16) error {
	if len(vals) == 0 {
		return nil
	}
	b := make([]byte, 0, 2*len(vals))
	for _, v := range vals {
		b = binary.LittleEndian.AppendUint16(b, v)
	}
	_, err := semctlPtr(id, 0, SEM_SETALL, b)
	return err
}

// SemGetInt wraps the semctl commands that answer an int about one
// semaphore: SEM_GETPID, SEM_GETNCNT, SEM_GETZCNT.
func SemGetInt(id, num, cmd int) (int, error) { return semctl(id, num, cmd, 0) }

// SemGet wraps semget(2).
func SemGet(key, nsems, flags int) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_SEMGET, uintptr(key), uintptr(nsems), uintptr(flags))
	if errno != 0 {
		return 0, os.NewSyscallError("semget", errno)
	}
	return int(r), nil
}

// Semop wraps semop(2) for ferry's own operations.
func Semop(id int, ops []Sembuf) error {
	if len(ops) == 0 {
		return nil
	}
	b := EncodeSembufs(ops)
	return semop(id, b, len(ops))
}

// SemOpMax returns SEMOPM, the most operations one semop may carry
// (/proc/sys/kernel/sem: SEMMSL SEMMNS SEMOPM SEMMNI).
func SemOpMax() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/sem")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) != 4 {
		return 0, fmt.Errorf("/proc/sys/kernel/sem: %q", b)
	}
	n, err := strconv.Atoi(f[2])
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("/proc/sys/kernel/sem: SEMOPM %q", f[2])
	}
	return n, nil
}

// SemLockPath is the file ferry processes lock (flock) while they operate
// on semaphore sets to measure or make again adjustments, so that two of
// them never do at once.
const SemLockPath = "/run/ferry-sysv-sem.lock"

// SemLock takes the lock of SemLockPath and returns its release.
func SemLock() (func(), error) {
	fd, err := unix.Open(SemLockPath, unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("semaphore lock %s: %w", SemLockPath, err)
	}
	for {
		err = unix.Flock(fd, unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("semaphore lock %s: %w", SemLockPath, os.NewSyscallError("flock", err))
	}
	return func() { unix.Close(fd) }, nil
}
