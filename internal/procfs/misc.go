package procfs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Exe reads the /proc/PID/exe link (" (deleted)" appended if the binary
// was unlinked; see TrimDeleted).
func Exe(pid int) (string, error) { return readlink(pidPath(pid, "exe")) }

// Cwd reads the /proc/PID/cwd link.
func Cwd(pid int) (string, error) { return readlink(pidPath(pid, "cwd")) }

// Root reads the /proc/PID/root link ("/" unless the process is chrooted
// or in another mount namespace).
func Root(pid int) (string, error) { return readlink(pidPath(pid, "root")) }

// Comm reads /proc/PID/comm: the thread-group leader's name, without the
// trailing newline.
func Comm(pid int) (string, error) { return readComm(pidPath(pid, "comm")) }

// TaskComm reads /proc/PID/task/TID/comm.
func TaskComm(pid, tid int) (string, error) { return readComm(taskPath(pid, tid, "comm")) }

func readComm(path string) (string, error) {
	b, err := readSmall(path, true)
	if err != nil {
		return "", err
	}
	// The name itself may contain '\n'; only the last one is the kernel's.
	b, ok := bytes.CutSuffix(b, []byte{'\n'})
	if !ok {
		return "", fileErr(path, "no trailing newline in %q", b)
	}
	return string(b), nil
}

// Personality reads /proc/PID/personality ("%08x"), the personality(2)
// value.
func Personality(pid int) (uint32, error) {
	path := pidPath(pid, "personality")
	b, err := readSmall(path, true)
	if err != nil {
		return 0, err
	}
	v, err := parseHex(trimSpace(b))
	if err != nil || v > 0xffffffff {
		return 0, fileErr(path, "bad value %q", b)
	}
	return uint32(v), nil
}

// OOMScoreAdj reads /proc/PID/oom_score_adj (-1000..1000).
func OOMScoreAdj(pid int) (int, error) {
	path := pidPath(pid, "oom_score_adj")
	b, err := readSmall(path, true)
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(string(trimSpace(b)))
	if err != nil || v < -1000 || v > 1000 {
		return 0, fileErr(path, "bad value %q", b)
	}
	return v, nil
}

// Auxv reads /proc/PID/auxv as raw native-endian words: (AT_*, value)
// pairs ending with an AT_NULL pair.
func Auxv(pid int) ([]uint64, error) {
	path := pidPath(pid, "auxv")
	b, err := readSmall(path, false)
	if err != nil {
		return nil, err
	}
	if len(b)%8 != 0 {
		return nil, fileErr(path, "%d bytes is not a whole number of words", len(b))
	}
	out := make([]uint64, len(b)/8)
	for i := range out {
		out[i] = binary.NativeEndian.Uint64(b[8*i:])
	}
	return out, nil
}

// Tasks lists the thread ids of pid, sorted (the leader's tid is pid).
func Tasks(pid int) ([]int, error) { return readDirInts(pidPath(pid, "task")) }

// Children returns the pids of pid's children, sorted. Each thread has its
// own children file listing what that thread forked, so all are read; a
// thread that exits meanwhile is skipped. Like everything here, the answer
// is only stable while the tree is frozen.
func Children(pid int) ([]int, error) {
	tids, err := Tasks(pid)
	if err != nil {
		return nil, err
	}
	var out []int
	for _, tid := range tids {
		ids, err := TaskChildren(pid, tid)
		if err != nil {
			if tid != pid && (errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH)) {
				continue
			}
			return nil, err
		}
		out = append(out, ids...)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// TaskChildren reads /proc/PID/task/TID/children: the children thread tid
// forked, in the kernel's order. The file is missing without
// CONFIG_PROC_CHILDREN.
func TaskChildren(pid, tid int) ([]int, error) {
	path := taskPath(pid, tid, "children")
	b, err := readSmall(path, false)
	if err != nil {
		return nil, err
	}
	ids, err := parseIntList(b)
	if err != nil {
		return nil, fileErr(path, "bad pid list %q", b)
	}
	return ids, nil
}

// Rlimit is one resource limit of a process; unix.RLIM_INFINITY means
// unlimited.
type Rlimit struct {
	Resource int // unix.RLIMIT_*
	Cur, Max uint64
}

// NumRlimits is RLIM_NLIMITS: resources 0 (RLIMIT_CPU) to 15 (RLIMIT_RTTIME).
const NumRlimits = 16

// Rlimits returns every resource limit of pid, indexed by resource, read
// with prlimit64(pid, r, NULL, &old) rather than by parsing
// /proc/PID/limits (whose units and "unlimited" spelling vary by row).
func Rlimits(pid int) ([]Rlimit, error) {
	out := make([]Rlimit, NumRlimits)
	for r := range out {
		var old unix.Rlimit
		if err := unix.Prlimit(pid, r, nil, &old); err != nil {
			if err == unix.EPERM {
				// Reading another user's limits with prlimit64 needs
				// CAP_SYS_RESOURCE; /proc/PID/limits does not.
				return limitsFile(pid)
			}
			return nil, fmt.Errorf("procfs: prlimit64(pid %d, resource %d): %w", pid, r, os.NewSyscallError("prlimit64", err))
		}
		out[r] = Rlimit{Resource: r, Cur: old.Cur, Max: old.Max}
	}
	return out, nil
}

// KernelRelease returns uname(2)'s release, e.g. "6.18.44".
func KernelRelease() (string, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "", fmt.Errorf("procfs: %w", os.NewSyscallError("uname", err))
	}
	b := u.Release[:]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b), nil
}

// PageSize returns the size of a base page.
func PageSize() int { return os.Getpagesize() }

// limitsFile parses /proc/PID/limits, whose rows are the RLIMIT_* resources
// in order, printed as "%-25s %-20s %-20s %-10s".
func limitsFile(pid int) ([]Rlimit, error) {
	path := pidPath(pid, "limits")
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("procfs: %w", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) < NumRlimits+1 {
		return nil, fmt.Errorf("procfs: %s: %d lines: %w", path, len(lines), ErrMalformed)
	}
	parse := func(f string) (uint64, error) {
		f = strings.TrimSpace(f)
		if f == "unlimited" {
			return unix.RLIM_INFINITY, nil
		}
		return strconv.ParseUint(f, 10, 64)
	}
	out := make([]Rlimit, NumRlimits)
	for r := range out {
		l := lines[r+1]
		if len(l) < 67 {
			return nil, fmt.Errorf("procfs: %s line %d: %q: %w", path, r+2, l, ErrMalformed)
		}
		cur, err1 := parse(l[26:46])
		max, err2 := parse(l[47:67])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("procfs: %s line %d: %q: %w", path, r+2, l, ErrMalformed)
		}
		out[r] = Rlimit{Resource: r, Cur: cur, Max: max}
	}
	return out, nil
}

// TaskCPUTime is the thread's scheduler CPU time in ns (the first field
// of /proc/PID/task/TID/schedstat, sum_exec_runtime): what the thread's
// CPU-time clock reads while it does not run.
func TaskCPUTime(pid, tid int) (int64, error) {
	path := taskPath(pid, tid, "schedstat")
	b, err := readSmall(path, true)
	if err != nil {
		return 0, err
	}
	return parseSchedstat(path, b)
}

func parseSchedstat(path string, b []byte) (int64, error) {
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return 0, fileErr(path, "want 3 fields, got %q", b)
	}
	ns, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || ns < 0 {
		return 0, fileErr(path, "run time %q is not a count of ns", f[0])
	}
	return ns, nil
}
