package fds

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// checkLocks refuses what this package cannot carry among the locks held
// through fd num of pc.pid: leases and delegations, mandatory locks,
// POSIX locks owned by another process (sharing the fd table), and any
// lock on a kind of file that is not reopened or recreated in Prepare.
func checkLocks(pc *procCache, num int, link, kind string, locks []procfs.Lock) error {
	for _, l := range locks {
		unsupported := func(resource, why string) error {
			return &UnsupportedError{PID: pc.pid, FD: num, Resource: resource, Detail: l.String() + " on " + link + why}
		}
		switch {
		case l.Kind == "LEASE" && l.Mode == "ACTIVE" && (l.Type == "READ" || l.Type == "WRITE"):
			// Set again by the first holder (Restorer.Finish).
		case l.Kind == "LEASE" || l.Kind == "DELEG":
			return unsupported("file lease", " ("+strings.ToLower(l.Mode)+")")
		case l.Kind != "FLOCK" && l.Kind != "POSIX" && l.Kind != "OFDLCK":
			return unsupported("file lock", "")
		case l.Mode != "ADVISORY":
			return unsupported(strings.ToLower(l.Mode)+" file lock", "")
		case l.Type != "READ" && l.Type != "WRITE":
			return unsupported("file lock", "")
		case l.Kind == "POSIX" && l.PID != pc.pid:
			return unsupported("file lock", fmt.Sprintf(", owned by pid %d, which shares the fd table", l.PID))
		case kind == image.FDUnix:
			return unsupported("file lock", " (a socket)")
		}
	}
	return nil
}

// fileLock turns a checked lock line into its image record.
func fileLock(l procfs.Lock) image.FileLock {
	fl := image.FileLock{Type: image.LockRead, PID: l.PID}
	if l.Type == "WRITE" {
		fl.Type = image.LockWrite
	}
	switch l.Kind {
	case "FLOCK":
		fl.Kind = image.LockFlock
		return fl
	case "LEASE":
		fl.Kind = image.LockLease
		return fl
	case "OFDLCK":
		fl.Kind = image.LockOFD
	default:
		fl.Kind = image.LockPOSIX
	}
	fl.Start = l.Start
	if l.End >= 0 {
		fl.Length = l.End - l.Start + 1
	}
	return fl
}

func describeLock(l image.FileLock) string {
	if l.Kind == image.LockFlock {
		return "flock " + l.Type + " lock"
	}
	end := "EOF"
	if l.Length > 0 {
		end = strconv.FormatInt(l.Start+l.Length-1, 10)
	}
	return fmt.Sprintf("%s %s lock on bytes %d-%s", l.Kind, l.Type, l.Start, end)
}

func lockType(l image.FileLock) int16 {
	if l.Type == image.LockWrite {
		return unix.F_WRLCK
	}
	return unix.F_RDLCK
}

// flockFD wraps flock(2) without blocking, EINTR retried.
func flockFD(fd int, how int) error {
	for {
		err := unix.Flock(fd, how|unix.LOCK_NB)
		if err != unix.EINTR {
			return err
		}
	}
}

// takeDescLock takes a flock or OFD lock l on ferry's fd; the lock then
// belongs to the description, and so to the target once it is installed.
func takeDescLock(fd int, l image.FileLock) error {
	var err error
	switch l.Kind {
	case image.LockFlock:
		how := unix.LOCK_SH
		if l.Type == image.LockWrite {
			how = unix.LOCK_EX
		}
		err = os.NewSyscallError("flock", flockFD(fd, how))
	case image.LockOFD:
		fl := unix.Flock_t{Type: lockType(l), Whence: unix.SEEK_SET, Start: l.Start, Len: l.Length}
		err = os.NewSyscallError("fcntl(F_OFD_SETLK)", unix.FcntlFlock(uintptr(fd), unix.F_OFD_SETLK, &fl))
	default:
		return fmt.Errorf("%s is not a lock of the open file description", describeLock(l))
	}
	if err != nil {
		return lockError(fd, l, err)
	}
	return nil
}

// takePosixLock makes the target take POSIX lock l through its fd num;
// ferryFD is ferry's file of the same description (for the error).
func takePosixLock(inj Injector, num, ferryFD int, l image.FileLock) error {
	fl := unix.Flock_t{Type: lockType(l), Whence: unix.SEEK_SET, Start: l.Start, Len: l.Length}
	addr, err := inj.Scratch(kernel.Bytes(&fl))
	if err != nil {
		return fmt.Errorf("write struct flock: %w", err)
	}
	if _, err := inj.Syscall(unix.SYS_FCNTL, uint64(num), unix.F_SETLK, addr); err != nil {
		return lockError(ferryFD, l, os.NewSyscallError("fcntl(F_SETLK)", err))
	}
	return nil
}

// lockError explains why lock l on the file behind fd could not be taken,
// naming the conflicting holders /proc/locks shows when it is a conflict.
func lockError(fd int, l image.FileLock, err error) error {
	if !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
		return fmt.Errorf("take %s: %w", describeLock(l), err)
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil {
		return fmt.Errorf("take %s: someone else holds a conflicting lock: %w", describeLock(l), err)
	}
	holders := conflictingLocks(st.Dev, st.Ino, l)
	if len(holders) == 0 {
		return fmt.Errorf("take %s: someone else holds a conflicting lock (not found in /proc/locks): %w", describeLock(l), err)
	}
	return fmt.Errorf("take %s: held by %s: %w", describeLock(l), strings.Join(holders, ", "), err)
}

// conflictingLocks lists, from /proc/locks, the locks on inode dev:ino
// that conflict with l, as "pid N (POSIX WRITE 100-199)".
func conflictingLocks(dev, ino uint64, l image.FileLock) []string {
	locks, err := procfs.Locks()
	if err != nil {
		return nil
	}
	wantDev := fmt.Sprintf("%02x:%02x", unix.Major(dev), unix.Minor(dev))
	start, end := l.Start, int64(-1)
	if l.Length > 0 {
		end = l.Start + l.Length - 1
	}
	var out []string
	for _, h := range locks {
		if h.Dev != wantDev || h.Ino != ino {
			continue
		}
		if (h.Kind == "FLOCK") != (l.Kind == image.LockFlock) {
			continue // flock and record locks do not conflict with each other
		}
		if h.Type != "WRITE" && l.Type != image.LockWrite {
			continue
		}
		if l.Kind != image.LockFlock && (end >= 0 && h.Start > end || h.End >= 0 && h.End < start) {
			continue
		}
		who := "pid " + strconv.Itoa(h.PID)
		if h.Kind == "OFDLCK" {
			who = "an open file description"
		}
		out = append(out, fmt.Sprintf("%s (%s)", who, h))
	}
	return out
}

// checkFlockHoldersLocked refuses a flock taken by a live process outside
// the tree that still holds the description: the lock outlives the tree,
// and the restore could not take it again. A flock whose taker has gone,
// or no longer holds the file (such as the ferry that restored it), goes
// with the tree and is carried.
func (d *Dumper) checkFlockHoldersLocked(used []*desc, tree map[int]bool) error {
	self := os.Getpid()
	for _, ds := range used {
		for _, l := range ds.rec.Locks {
			if l.Kind != image.LockFlock || tree[l.PID] || l.PID == self || l.PID <= 0 {
				continue
			}
			if num, ok := d.holdsLocked(l.PID, ds); ok {
				return &UnsupportedError{PID: ds.pid, FD: ds.rec.Num, Resource: "file lock",
					Detail: fmt.Sprintf("%s on %s taken by pid %d outside the tree, which still holds it as fd %d",
						describeLock(l), ds.link, l.PID, num)}
			}
		}
	}
	return nil
}

// holdsLocked reports whether pid has ds's open file description open,
// and at which fd number.
func (d *Dumper) holdsLocked(pid int, ds *desc) (int, bool) {
	nums, err := procfs.FDs(pid)
	if err != nil {
		return 0, false
	}
	self := os.Getpid()
	for _, num := range nums {
		if link, err := fdLink(pid, num); err != nil || link != ds.link {
			continue
		}
		if same, err := kernel.KcmpFile(self, ds.fd, pid, num); err == nil && same {
			return num, true
		}
	}
	return 0, false
}
