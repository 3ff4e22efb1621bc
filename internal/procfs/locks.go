package procfs

import (
	"bytes"
	"fmt"
	"strconv"
)

// Lock is one file lock as /proc/locks and the "lock:" lines of
// /proc/PID/fdinfo/N print it (fs/locks.c, lock_get_status):
//
//	1: FLOCK  ADVISORY  READ 7379 fe:00:9977873 0 EOF
//	2: POSIX  ADVISORY  WRITE 7379 fe:00:9977875 100 199
//	1: OFDLCK ADVISORY  WRITE -1 fe:00:9977887 0 9
//	1: LEASE  ACTIVE    READ 7412 fe:00:9977893 0 EOF
//
// The device is the superblock's MAJOR:MINOR in hex, the inode decimal,
// the range inclusive.
type Lock struct {
	Kind  string // FLOCK, POSIX, OFDLCK, LEASE, DELEG, ACCESS...
	Mode  string // ADVISORY (MANDATORY on old kernels); ACTIVE, BREAKING... for leases
	Type  string // READ, WRITE, UNLCK
	PID   int    // -1 for OFD locks
	Dev   string // "fe:00", as printed
	Ino   uint64
	Start int64
	End   int64 // inclusive; -1 for EOF
}

// String is the lock as error messages name it: "FLOCK WRITE",
// "POSIX READ 100-199", "OFDLCK WRITE 0-EOF".
func (l Lock) String() string {
	if l.Kind != "POSIX" && l.Kind != "OFDLCK" {
		return l.Kind + " " + l.Type
	}
	end := "EOF"
	if l.End >= 0 {
		end = strconv.FormatInt(l.End, 10)
	}
	return fmt.Sprintf("%s %s %d-%s", l.Kind, l.Type, l.Start, end)
}

// Locks reads /proc/locks: every lock held in the reader's view of the
// system. Waiters ("->" lines) are left out.
func Locks() ([]Lock, error) {
	var locks []Lock
	err := eachLine("/proc/locks", 0, func(line []byte) error {
		l, ok, err := parseLockLine(line)
		if ok {
			locks = append(locks, l)
		}
		return err
	})
	return locks, err
}

// parseLockLine parses one lock line without fdinfo's "lock:" prefix. ok
// is false for a line that names no held lock (a waiter, "->").
func parseLockLine(line []byte) (l Lock, ok bool, err error) {
	var f [8][]byte
	rest := line
	n := 0
	for n < len(f) {
		f[n], rest = nextField(rest)
		if len(f[n]) == 0 {
			break
		}
		n++
		if n == 2 && string(f[1]) == "->" {
			return l, false, nil
		}
	}
	if extra, _ := nextField(rest); n != len(f) || len(extra) != 0 || !bytes.HasSuffix(f[0], []byte(":")) {
		return l, false, errorString("want 8 fields")
	}
	l.Kind, l.Mode, l.Type = string(f[1]), string(f[2]), string(f[3])
	pid, err := parseInt(f[4])
	if err != nil {
		return l, false, errorString("bad pid")
	}
	l.PID = int(pid)
	i := bytes.LastIndexByte(f[5], ':')
	if i < 0 {
		return l, false, errorString("no device and inode")
	}
	l.Dev = string(f[5][:i])
	if l.Ino, err = parseUint(f[5][i+1:]); err != nil {
		return l, false, errorString("bad inode")
	}
	if l.Start, err = parseInt(f[6]); err != nil {
		return l, false, errorString("bad start")
	}
	l.End = -1
	if string(f[7]) != "EOF" {
		if l.End, err = parseInt(f[7]); err != nil {
			return l, false, errorString("bad end")
		}
	}
	return l, true, nil
}
