package procfs

import (
	"bytes"
	"strconv"

	"golang.org/x/sys/unix"
)

// FDs lists the open file descriptors of pid, sorted.
func FDs(pid int) ([]int, error) { return readDirInts(pidPath(pid, "fd")) }

// FDLink reads the /proc/PID/fd/N link: a path (with " (deleted)" appended
// if unlinked, see TrimDeleted) or a pseudo name such as "pipe:[1234]",
// "socket:[1234]", "anon_inode:[eventfd]" or "anon_inode:inotify".
func FDLink(pid, fd int) (string, error) { return readlink(fdPath(pid, "fd", fd)) }

func fdPath(pid int, dir string, fd int) string {
	b := make([]byte, 0, 32)
	b = append(b, "/proc/"...)
	b = strconv.AppendInt(b, int64(pid), 10)
	b = append(b, '/')
	b = append(b, dir...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(fd), 10)
	return string(b)
}

// OLargefile is O_LARGEFILE as the kernel stores it: open(2) on a 64-bit
// kernel always sets it, so fdinfo flags carry it, while x/sys defines
// unix.O_LARGEFILE as 0 on amd64. Passing it back to open is harmless.
const OLargefile = 0o100000

// ProcFDInfo is /proc/PID/fdinfo/N. The common lines are parsed into the
// first fields; the lines of known file types into the typed parts (nil when
// the fd is of another type); everything is also kept as text.
type ProcFDInfo struct {
	Pos   int64
	Flags int    // open(2) flags: O_ACCMODE bits, O_APPEND, O_NONBLOCK, O_CLOEXEC… (printed in octal)
	MntID int    // mount id as in /proc/PID/mountinfo; 0 for internal mounts (memfd)
	Ino   uint64 // inode number (decimal in this line, hex in the epoll/inotify lines)

	// Fields holds every "key: value" line (pos, flags, eventfd-count, …)
	// with the value trimmed, as printed. Lines that can repeat are in
	// Lines instead.
	Fields map[string]string
	// Lines are the per-object lines that can repeat, verbatim: epoll
	// "tfd:", "inotify wd:", "fanotify …" and "lock:" lines.
	Lines []string

	Eventfd  *EventfdInfo
	Timerfd  *TimerfdInfo
	Signalfd *SignalfdInfo
	// Epoll and Inotify list the targets of an epoll fd and the watches
	// of an inotify fd. One with none has no lines at all: tell the fd's
	// type from FDLink ("anon_inode:[eventpoll]", "anon_inode:inotify").
	Epoll   []EpollTarget
	Inotify []InotifyWatch
	// Fanotify is the group and its marks of a fanotify fd.
	Fanotify *FanotifyInfo
	// Locks are the "lock:" lines: the file locks held through this fd
	// (for a POSIX lock: by its owner, through any fd of the same inode).
	// Waiters are left out.
	Locks []Lock
}

// EventfdInfo is the eventfd part of fdinfo (fs/eventfd.c).
type EventfdInfo struct {
	Count     uint64 // "eventfd-count: %16llx"
	ID        int    // "eventfd-id: %d", the id in the anon inode name
	Semaphore bool   // "eventfd-semaphore: %d", EFD_SEMAPHORE (kernel 6.6+)
}

// TimerfdInfo is the timerfd part of fdinfo (fs/timerfd.c).
type TimerfdInfo struct {
	ClockID      int
	Ticks        uint64 // expirations not yet read
	SettimeFlags int    // TFD_TIMER_ABSTIME|TFD_TIMER_CANCEL_ON_SET, printed in octal
	// Value is the time left until the next expiry (relative, even for an
	// absolute timer); zero when disarmed. Interval is the period.
	Value, Interval unix.Timespec
}

// SignalfdInfo is the signalfd part of fdinfo (fs/signalfd.c).
type SignalfdInfo struct {
	Sigmask uint64 // bit N-1 for signal N
}

// EpollTarget is one "tfd:" line of an epoll fdinfo (fs/eventpoll.c):
//
//	"tfd: %8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x"
type EpollTarget struct {
	FD     int    // the target's fd number in the process that added it
	Events uint32 // EPOLL* bits as registered, including EPOLLET etc.
	Data   uint64
	Pos    int64
	Ino    uint64
	Dev    uint64 // unix.Mkdev form (the kernel prints its internal MKDEV encoding)
}

// InotifyWatch is one "inotify wd:" line (fs/notify/fdinfo.c):
//
//	"inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x fhandle-bytes:%x fhandle-type:%x f_handle:%*phN"
type InotifyWatch struct {
	WD          int
	Ino         uint64
	Dev         uint64 // unix.Mkdev form
	Mask        uint32
	IgnoredMask uint32
	HandleType  int
	Handle      []byte // file handle, usable with open_by_handle_at
}

// FanotifyInfo is the fanotify part of fdinfo (fs/notify/fdinfo.c):
//
//	"fanotify flags:%x event-flags:%x"
//	"fanotify ino:%lx sdev:%x mflags:%x mask:%x ignored_mask:%x fhandle-bytes:%x fhandle-type:%x f_handle:%*phN"
//	"fanotify mnt_id:%x mflags:%x mask:%x ignored_mask:%x"
//	"fanotify sdev:%x mflags:%x mask:%x ignored_mask:%x"
type FanotifyInfo struct {
	Flags      uint32 // fanotify_init flags (FAN_CLASS_*, FAN_NONBLOCK…)
	EventFlags uint32 // fanotify_init event_f_flags (O_RDONLY, O_LARGEFILE…)
	Marks      []FanotifyMark
}

// Fanotify mark kinds.
const (
	FanMarkInode = "inode"
	FanMarkMount = "mount"
	FanMarkFS    = "filesystem"
)

// FanotifyMark is one mark of a fanotify group.
type FanotifyMark struct {
	Kind        string // FanMarkInode, FanMarkMount, FanMarkFS
	Ino         uint64
	Dev         uint64 // unix.Mkdev form
	MntID       int
	MFlags      uint32 // FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE…
	Mask        uint64
	IgnoredMask uint64
	HandleType  int
	Handle      []byte
}

func parseFanotifyLine(fi *ProcFDInfo, line []byte) error {
	if fi.Fanotify == nil {
		fi.Fanotify = &FanotifyInfo{}
	}
	var m FanotifyMark
	group := false
	err := keyVals(line[len("fanotify "):], func(key, val []byte) error {
		var err error
		var u uint64
		switch string(key) {
		case "flags":
			u, err = parseHex(val)
			fi.Fanotify.Flags, group = uint32(u), true
		case "event-flags":
			u, err = parseHex(val)
			fi.Fanotify.EventFlags = uint32(u)
		case "ino":
			m.Ino, err = parseHex(val)
			m.Kind = FanMarkInode
		case "mnt_id":
			u, err = parseHex(val)
			m.MntID, m.Kind = int(u), FanMarkMount
		case "sdev":
			u, err = parseHex(val)
			m.Dev = kernelDev(u)
			if m.Kind == "" {
				m.Kind = FanMarkFS
			}
		case "mflags":
			u, err = parseHex(val)
			m.MFlags = uint32(u)
		case "mask":
			m.Mask, err = parseHex(val)
		case "ignored_mask":
			m.IgnoredMask, err = parseHex(val)
		case "fhandle-type":
			u, err = parseHex(val)
			m.HandleType = int(u)
		case "f_handle":
			m.Handle, err = decodeHex(val)
		}
		if err != nil {
			return errorString("bad " + string(key))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if group {
		return nil
	}
	if m.Kind == "" {
		return errorString("a mark of no known kind")
	}
	fi.Fanotify.Marks = append(fi.Fanotify.Marks, m)
	return nil
}

// FDInfo reads /proc/PID/fdinfo/FD.
func FDInfo(pid, fd int) (*ProcFDInfo, error) {
	path := fdPath(pid, "fdinfo", fd)
	var buf [2048]byte
	b, err := readInto(path, buf[:], true)
	if err != nil {
		return nil, err
	}
	return parseFDInfo(b, path)
}

// kernelDev converts the kernel-internal dev_t (MAJOR<<20 | MINOR, as
// printed by fdinfo's sdev:%x) to the unix.Mkdev form used everywhere else.
func kernelDev(d uint64) uint64 { return unix.Mkdev(uint32(d>>20), uint32(d&(1<<20-1))) }

func parseFDInfo(b []byte, path string) (*ProcFDInfo, error) {
	fi := &ProcFDInfo{Fields: make(map[string]string, 8)}
	var seen int
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		switch {
		case bytes.HasPrefix(line, []byte("tfd:")):
			t, err := parseEpollLine(line)
			if err != nil {
				return nil, lineErr(path, n, "%v in %q", err, line)
			}
			fi.Epoll = append(fi.Epoll, t)
			fi.Lines = append(fi.Lines, string(line))
			continue
		case bytes.HasPrefix(line, []byte("inotify ")):
			w, err := parseInotifyLine(line)
			if err != nil {
				return nil, lineErr(path, n, "%v in %q", err, line)
			}
			fi.Inotify = append(fi.Inotify, w)
			fi.Lines = append(fi.Lines, string(line))
			continue
		case bytes.HasPrefix(line, []byte("fanotify ")):
			if err := parseFanotifyLine(fi, line); err != nil {
				return nil, lineErr(path, n, "%v in %q", err, line)
			}
			fi.Lines = append(fi.Lines, string(line))
			continue
		case bytes.HasPrefix(line, []byte("lock:")):
			l, ok, err := parseLockLine(line[len("lock:"):])
			if err != nil {
				return nil, lineErr(path, n, "%v in %q", err, line)
			}
			if ok {
				fi.Locks = append(fi.Locks, l)
			}
			fi.Lines = append(fi.Lines, string(line))
			continue
		}
		key, val, ok := splitKey(line)
		if !ok {
			return nil, lineErr(path, n, "no key in %q", line)
		}
		fi.Fields[string(key)] = string(val)
		var err error
		var u uint64
		switch string(key) {
		case "pos":
			fi.Pos, err = parseInt(val)
			seen++
		case "flags":
			u, err = parseOctal(val)
			fi.Flags = int(u)
			seen++
		case "mnt_id":
			fi.MntID, err = atoi(val)
		case "ino":
			fi.Ino, err = parseUint(val)
		case "eventfd-count":
			fi.eventfd().Count, err = parseHex(val)
		case "eventfd-id":
			fi.eventfd().ID, err = atoi(val)
		case "eventfd-semaphore":
			var v int
			v, err = atoi(val)
			fi.eventfd().Semaphore = v != 0
		case "clockid":
			fi.timerfd().ClockID, err = atoi(val)
		case "ticks":
			fi.timerfd().Ticks, err = parseUint(val)
		case "settime flags":
			u, err = parseOctal(val)
			fi.timerfd().SettimeFlags = int(u)
		case "it_value":
			fi.timerfd().Value, err = parseTimespec(val)
		case "it_interval":
			fi.timerfd().Interval, err = parseTimespec(val)
		case "sigmask":
			fi.Signalfd = &SignalfdInfo{}
			fi.Signalfd.Sigmask, err = parseHex(val)
		}
		if err != nil {
			return nil, lineErr(path, n, "bad %s value %q", key, val)
		}
	}
	if seen < 2 {
		return nil, fileErr(path, "no pos or flags line")
	}
	return fi, nil
}

func (fi *ProcFDInfo) eventfd() *EventfdInfo {
	if fi.Eventfd == nil {
		fi.Eventfd = new(EventfdInfo)
	}
	return fi.Eventfd
}

func (fi *ProcFDInfo) timerfd() *TimerfdInfo {
	if fi.Timerfd == nil {
		fi.Timerfd = new(TimerfdInfo)
	}
	return fi.Timerfd
}

// parseTimespec parses timerfd's "(%llu, %llu)".
func parseTimespec(b []byte) (unix.Timespec, error) {
	if len(b) < 2 || b[0] != '(' || b[len(b)-1] != ')' {
		return unix.Timespec{}, errSyntax
	}
	b = b[1 : len(b)-1]
	i := bytes.IndexByte(b, ',')
	if i < 0 {
		return unix.Timespec{}, errSyntax
	}
	sec, err := parseInt(trimSpace(b[:i]))
	if err != nil {
		return unix.Timespec{}, err
	}
	nsec, err := parseInt(trimSpace(b[i+1:]))
	if err != nil {
		return unix.Timespec{}, err
	}
	return unix.Timespec{Sec: sec, Nsec: nsec}, nil
}

// keyVals walks "key: value key:value …" pairs, where the value is the
// next blank-separated field (eventpoll puts blanks after some colons).
func keyVals(b []byte, f func(key, val []byte) error) error {
	for len(b) > 0 {
		b = trimSpace(b)
		if len(b) == 0 {
			return nil
		}
		i := bytes.IndexByte(b, ':')
		if i < 0 {
			return errorString("no ':' after " + strconv.Quote(string(b)))
		}
		key := trimSpace(b[:i])
		var val []byte
		val, b = nextField(b[i+1:])
		if err := f(key, val); err != nil {
			return err
		}
	}
	return nil
}

func parseEpollLine(line []byte) (EpollTarget, error) {
	var t EpollTarget
	var seen int
	err := keyVals(line, func(key, val []byte) error {
		var err error
		var u uint64
		switch string(key) {
		case "tfd":
			t.FD, err = atoi(val)
			seen++
		case "events":
			u, err = parseHex(val)
			t.Events = uint32(u)
			seen++
		case "data":
			t.Data, err = parseHex(val)
			seen++
		case "pos":
			t.Pos, err = parseInt(val)
		case "ino":
			t.Ino, err = parseHex(val)
		case "sdev":
			u, err = parseHex(val)
			t.Dev = kernelDev(u)
		}
		if err != nil {
			return errorString("bad " + string(key))
		}
		return nil
	})
	if err == nil && seen != 3 {
		err = errorString("missing tfd, events or data")
	}
	return t, err
}

func parseInotifyLine(line []byte) (InotifyWatch, error) {
	var w InotifyWatch
	var seen int
	err := keyVals(line[len("inotify "):], func(key, val []byte) error {
		var err error
		var u uint64
		switch string(key) {
		case "wd":
			u, err = parseHex(val)
			w.WD = int(u)
			seen++
		case "ino":
			w.Ino, err = parseHex(val)
		case "sdev":
			u, err = parseHex(val)
			w.Dev = kernelDev(u)
		case "mask":
			u, err = parseHex(val)
			w.Mask = uint32(u)
		case "ignored_mask":
			u, err = parseHex(val)
			w.IgnoredMask = uint32(u)
		case "fhandle-type":
			u, err = parseHex(val)
			w.HandleType = int(u)
		case "f_handle":
			w.Handle, err = decodeHex(val)
		}
		if err != nil {
			return errorString("bad " + string(key))
		}
		return nil
	})
	if err == nil && seen != 1 {
		err = errorString("missing wd")
	}
	return w, err
}

func decodeHex(b []byte) ([]byte, error) {
	if len(b)%2 != 0 {
		return nil, errSyntax
	}
	out := make([]byte, len(b)/2)
	for i := range out {
		v, err := parseHex(b[2*i : 2*i+2])
		if err != nil {
			return nil, err
		}
		out[i] = byte(v)
	}
	return out, nil
}
