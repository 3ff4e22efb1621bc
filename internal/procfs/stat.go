package procfs

import (
	"bytes"
	"os"
	"strings"
)

// ProcStat is /proc/PID/stat or /proc/PID/task/TID/stat (proc(5)). The mm
// fields (StartCode…EnvEnd, StartStack) read as 0 without ptrace access to
// the target; as root they are real. brk is not here: only StartBrk, the
// heap's start.
type ProcStat struct {
	PID  int
	Comm string // raw, may hold any byte but NUL, including ") ("
	// State is the task state letter: 'R' running, 'S' sleeping, 'D'
	// uninterruptible, 'T' stopped, 't' traced, 'Z' zombie, 'X' dead,
	// 'I' idle kernel thread, 'P' parked.
	State byte

	PPID, PGRP, Session int
	TTYNr               int // encoded device number of the controlling tty
	TPGID               int
	Flags               uint32 // PF_* of the task

	MinFlt, CMinFlt, MajFlt, CMajFlt uint64
	UTime, STime, CUTime, CSTime     uint64 // clock ticks
	Priority, Nice                   int64
	NumThreads                       int
	StartTime                        uint64 // clock ticks since boot
	VSize                            uint64 // bytes
	RSS                              uint64 // pages
	RSSLim                           uint64

	StartCode, EndCode uint64
	StartStack         uint64
	KStkESP, KStkEIP   uint64 // 0 unless the task is dead or a core dump is running
	ExitSignal         int    // -1 for threads other than the leader
	Processor          int
	RTPriority, Policy uint32

	StartData, EndData uint64
	StartBrk           uint64
	ArgStart, ArgEnd   uint64
	EnvStart, EnvEnd   uint64
	ExitCode           int
}

// Stat reads /proc/PID/stat: the thread-group leader's state letter with
// process-wide fault and time counters.
func Stat(pid int) (*ProcStat, error) { return readStat(pidPath(pid, "stat")) }

// TaskStat reads /proc/PID/task/TID/stat: this thread's state letter and
// counters.
func TaskStat(pid, tid int) (*ProcStat, error) { return readStat(taskPath(pid, tid, "stat")) }

func readStat(path string) (*ProcStat, error) {
	var buf [1024]byte
	b, err := readInto(path, buf[:], true)
	if err != nil {
		return nil, err
	}
	s := new(ProcStat)
	if err := parseStat(b, s); err != nil {
		return nil, fileErr(path, "%v", err)
	}
	return s, nil
}

// parseStat parses one stat line. comm is printed raw between "(" and ")"
// and may itself contain ") (", spaces and newlines: the comm ends at the
// last ')' of the text.
func parseStat(b []byte, s *ProcStat) error {
	open := bytes.IndexByte(b, '(')
	closing := bytes.LastIndexByte(b, ')')
	if open < 0 || closing < open {
		return errorString("no (comm)")
	}
	pid, err := parseInt(trimSpace(b[:open]))
	if err != nil {
		return errorString("bad pid")
	}
	s.PID = int(pid)
	s.Comm = string(b[open+1 : closing])

	rest := b[closing+1:]
	f, rest := nextField(rest)
	if len(f) != 1 {
		return errorString("bad state")
	}
	s.State = f[0]

	// Fields 4… in proc(5) order; i is the 1-based field number.
	for i := 4; ; i++ {
		f, rest = nextField(rest)
		if len(f) == 0 {
			if i <= 52 {
				// Fields up to exit_code (52) exist since Linux 3.5.
				return errorString("too few fields")
			}
			return nil
		}
		v, err := parseInt(f)
		if err != nil {
			// Unsigned fields (addresses, rsslim) may exceed int64.
			u, uerr := parseUint(f)
			if uerr != nil {
				return errorString("bad field " + itoa(i))
			}
			v = int64(u)
		}
		u := uint64(v)
		switch i {
		case 4:
			s.PPID = int(v)
		case 5:
			s.PGRP = int(v)
		case 6:
			s.Session = int(v)
		case 7:
			s.TTYNr = int(v)
		case 8:
			s.TPGID = int(v)
		case 9:
			s.Flags = uint32(u)
		case 10:
			s.MinFlt = u
		case 11:
			s.CMinFlt = u
		case 12:
			s.MajFlt = u
		case 13:
			s.CMajFlt = u
		case 14:
			s.UTime = u
		case 15:
			s.STime = u
		case 16:
			s.CUTime = u
		case 17:
			s.CSTime = u
		case 18:
			s.Priority = v
		case 19:
			s.Nice = v
		case 20:
			s.NumThreads = int(v)
		case 22:
			s.StartTime = u
		case 23:
			s.VSize = u
		case 24:
			s.RSS = u
		case 25:
			s.RSSLim = u
		case 26:
			s.StartCode = u
		case 27:
			s.EndCode = u
		case 28:
			s.StartStack = u
		case 29:
			s.KStkESP = u
		case 30:
			s.KStkEIP = u
		case 38:
			s.ExitSignal = int(v)
		case 39:
			s.Processor = int(v)
		case 40:
			s.RTPriority = uint32(u)
		case 41:
			s.Policy = uint32(u)
		case 45:
			s.StartData = u
		case 46:
			s.EndData = u
		case 47:
			s.StartBrk = u
		case 48:
			s.ArgStart = u
		case 49:
			s.ArgEnd = u
		case 50:
			s.EnvStart = u
		case 51:
			s.EnvEnd = u
		case 52:
			s.ExitCode = int(v)
		}
	}
}

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(b[n:])
		}
	}
}

// Syscall returns /proc/PID/syscall: the number of the system call the
// process's main thread is blocked in and its arguments, "running", or
// "-1 ..." (not in a call).
func Syscall(pid int) (string, error) {
	b, err := os.ReadFile(pidPath(pid, "syscall"))
	return strings.TrimSpace(string(b)), err
}
