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

// ErrUnsupported is matched (errors.Is) by every *UnsupportedError.
var ErrUnsupported = errors.New("cannot be checkpointed yet")

// UnsupportedError names a file descriptor this package cannot carry.
type UnsupportedError struct {
	PID, FD  int
	Resource string // "tcp socket", "io_uring", "inotify", ...
	Detail   string // e.g. "127.0.0.1:4000 listening"; may be empty
}

func (e *UnsupportedError) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("pid %d fd %d: %s cannot be checkpointed yet", e.PID, e.FD, e.Resource)
	}
	return fmt.Sprintf("pid %d fd %d: %s (%s) cannot be checkpointed yet", e.PID, e.FD, e.Resource, e.Detail)
}

// Is makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// Check inspects pid's fds through /proc only (it never touches them) and
// returns an *UnsupportedError for the first one, in fd order, that this
// package cannot carry. It is meant to run before the process is frozen;
// DumpProcess repeats the same checks on the frozen process.
//
// What Check cannot see from /proc — a socketpair whose peer is outside
// the tree, a unix socket connected to a bound peer elsewhere — is
// reported by Dumper.Finish (which carries a message-endpoint connection
// its MsgEndpoint hook accepts, and refuses other such sockets).
func Check(pid int) error {
	nums, err := procfs.FDs(pid)
	if err != nil {
		return err
	}
	pc := &procCache{pid: pid}
	for _, num := range nums {
		link, err := fdLink(pid, num)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // closed meanwhile
			}
			return fmt.Errorf("check pid %d fd %d: %w", pid, num, err)
		}
		info, err := procfs.FDInfo(pid, num)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			return fmt.Errorf("check pid %d fd %d: %w", pid, num, err)
		}
		kind, err := classify(pc, num, link, info)
		if err != nil {
			return err
		}
		if kind == image.FDInotify || kind == image.FDFanotify {
			if err := checkQueued(pc, num, kind); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkQueued refuses a notification fd with events queued (the dump
// would: see fillNotifyLocked), through a duplicate of the fd.
func checkQueued(pc *procCache, num int, kind string) error {
	pidfd, err := unix.PidfdOpen(pc.pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", pc.pid, err)
	}
	defer unix.Close(pidfd)
	fd, err := pidfdGetfd(pidfd, num)
	if err != nil {
		if errors.Is(err, unix.EBADF) {
			return nil // closed meanwhile
		}
		return fmt.Errorf("check pid %d fd %d: %w", pc.pid, num, err)
	}
	defer unix.Close(fd)
	return queuedEvents(fd, func(detail string) error {
		return &UnsupportedError{PID: pc.pid, FD: num, Resource: kind, Detail: detail}
	})
}

// procCache holds per-process tables that classify reads lazily.
type procCache struct {
	pid int
	// posix holds the POSIX locks DumpProcess has recorded for pid, by
	// inode: fdinfo shows them on every fd of the description they were
	// taken through.
	posix map[posixKey]bool
}

type posixKey struct {
	dev, ino uint64
	lock     image.FileLock
}

// classify decides from fd num's /proc link text, its fdinfo and a stat
// through the link which image kind it is, or returns an *UnsupportedError
// (also for a lock held through it that cannot be carried).
func classify(pc *procCache, num int, link string, info *procfs.ProcFDInfo) (string, error) {
	kind, err := classifyKind(pc, num, link, info)
	if err != nil {
		return "", err
	}
	if err := checkLocks(pc, num, link, kind, info.Locks); err != nil {
		return "", err
	}
	return kind, nil
}

func classifyKind(pc *procCache, num int, link string, info *procfs.ProcFDInfo) (string, error) {
	unsupported := func(resource, detail string) error {
		return &UnsupportedError{PID: pc.pid, FD: num, Resource: resource, Detail: detail}
	}
	switch {
	case strings.HasPrefix(link, "pipe:["):
		return image.FDPipe, nil
	case strings.HasPrefix(link, "socket:["):
		return classifySocket(pc, num, link, info)
	case strings.HasPrefix(link, "anon_inode:"):
		name := strings.Trim(strings.TrimPrefix(link, "anon_inode:"), "[]")
		switch {
		case name == "eventfd":
			return image.FDEventfd, nil
		case name == "timerfd":
			return image.FDTimerfd, nil
		case name == "signalfd":
			return image.FDSignalfd, nil
		case name == "eventpoll":
			return image.FDEpoll, nil
		case name == "perf_event":
			return "", unsupported("perf", "")
		case strings.HasPrefix(name, "bpf"):
			return "", unsupported("bpf", name)
		case name == "inotify":
			return image.FDInotify, nil
		case name == "fanotify":
			return image.FDFanotify, nil
		case name == "pidfd":
			return image.FDPidfd, nil
		case name == "seccomp notify":
			return "", unsupported("seccomp notification listener", "the supervisor's end of a filter with SECCOMP_RET_USER_NOTIF")
		case name == "io_uring", name == "userfaultfd":
			return "", unsupported(name, "")
		}
		return "", unsupported("anonymous inode", name)
	case strings.HasPrefix(link, "pidfd:"):
		return image.FDPidfd, nil
	case !strings.HasPrefix(link, "/"):
		// nsfs ("net:[4026531840]"), or something newer.
		if i := strings.Index(link, ":["); i > 0 {
			switch link[:i] {
			case "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children", "user", "uts":
				return "", unsupported("namespace", link)
			}
		}
		return "", unsupported("special file", link)
	}

	var st unix.Stat_t
	if err := unix.Stat(fdPath(pc.pid, num), &st); err != nil {
		return "", fmt.Errorf("stat pid %d fd %d (%s): %w", pc.pid, num, link, err)
	}
	deleted := strings.HasSuffix(link, deletedSuffix)
	if info.Flags&unix.O_PATH != 0 {
		// An O_PATH fd names a file without opening it: reopened by path
		// whatever the file is, as long as the path still leads to it.
		// One of a removed regular file or directory comes back on its
		// copy or stand-in, as for other fds.
		switch {
		case deleted && st.Mode&unix.S_IFMT == unix.S_IFREG:
			return image.FDFile, nil
		case deleted && st.Mode&unix.S_IFMT != unix.S_IFDIR:
			return "", unsupported("O_PATH fd of a deleted file", link)
		case st.Mode&unix.S_IFMT == unix.S_IFDIR:
			return image.FDDir, nil
		case st.Mode&unix.S_IFMT == unix.S_IFCHR:
			return image.FDChar, nil
		}
		return image.FDFile, nil
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		var sfs unix.Statfs_t
		if err := unix.Statfs(fdPath(pc.pid, num), &sfs); err == nil && sfs.Type == mqueueMagic {
			return "", unsupported("POSIX message queue", link)
		}
		if strings.HasPrefix(link, "/memfd:") && deleted {
			if sfs.Type == unix.HUGETLBFS_MAGIC {
				return "", unsupported("hugetlb memfd", link)
			}
			return image.FDMemfd, nil
		}
		if strings.HasPrefix(link, "/secretmem") {
			return "", unsupported("secretmem", "")
		}
		if !deleted {
			// Reopened by path: the path must lead to this very file.
			var pst unix.Stat_t
			if err := kernel.StatLong(link, &pst); err != nil || pst.Dev != st.Dev || pst.Ino != st.Ino {
				return "", unsupported("file its path does not lead to (another mount namespace?)", link)
			}
		}
		return image.FDFile, nil
	case unix.S_IFBLK:
		if deleted {
			// A stand-in node with its number, on the machine and boot it
			// was dumped on only (the restore checks).
			return image.FDBlock, nil
		}
		return image.FDFile, nil
	case unix.S_IFDIR:
		// A removed directory is carried as a stand-in (see standin.go).
		return image.FDDir, nil
	case unix.S_IFCHR:
		// A removed node is carried as a stand-in (see standin.go); which
		// devices can be is the same question as for a reopen by path.
		link := strings.TrimSuffix(link, deletedSuffix)
		major, minor := unix.Major(st.Rdev), unix.Minor(st.Rdev)
		if major == 5 && minor == 2 || link == "/dev/ptmx" || strings.HasSuffix(link, "/ptmx") {
			return "", unsupported("pty master", link)
		}
		if !reopenableChar(major, minor) {
			return "", unsupported("character device", fmt.Sprintf("%s %d:%d", link, major, minor))
		}
		if deleted && major >= 136 && major <= 143 {
			// devpts removes the node when the master closes: the slave
			// is hung up, and a node made with its number would be a
			// live terminal.
			return "", unsupported("pty slave whose master was closed (hung up)", link)
		}
		return image.FDChar, nil
	case unix.S_IFIFO:
		return image.FDFIFO, nil
	default:
		return "", unsupported("file", fmt.Sprintf("%s mode %o", link, st.Mode))
	}
}

// mqueueMagic is MQUEUE_MAGIC (include/uapi/linux/magic.h).
const mqueueMagic = 0x19800202

// reopenableChar reports whether a character device keeps no state in its
// open file that a reopen by path would lose.
func reopenableChar(major, minor uint32) bool {
	switch {
	case major == 1: // mem: null, zero, full, random, urandom, kmsg...
		return minor == 3 || minor == 5 || minor == 7 || minor == 8 || minor == 9
	case major == 4: // tty0..63 virtual consoles, ttyS serial ports
		return true
	case major == 5: // /dev/tty, /dev/console
		return minor == 0 || minor == 1
	case major >= 136 && major <= 143: // /dev/pts/N
		return true
	}
	return false
}

func classifySocket(pc *procCache, num int, link string, info *procfs.ProcFDInfo) (string, error) {
	unsupported := func(resource, detail string) error {
		return &UnsupportedError{PID: pc.pid, FD: num, Resource: resource, Detail: detail}
	}
	ino, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]"), 10, 64)
	proto := sockProtoName(pc.pid, num)
	switch {
	case strings.HasPrefix(proto, "UNIX"):
		// Bound and listening sockets: refused or carried by the dump
		// (fillUnixLocked), which has sock_diag's full view.
		return image.FDUnix, nil
	case strings.HasPrefix(proto, "TCP"), strings.HasPrefix(proto, "MPTCP"):
		return "", unsupported("tcp socket", inetDetail(pc.pid, ino, "tcp", "tcp6"))
	case strings.HasPrefix(proto, "UDPLITE"):
		return "", unsupported("udplite socket", inetDetail(pc.pid, ino, "udplite", "udplite6"))
	case strings.HasPrefix(proto, "UDP"):
		return "", unsupported("udp socket", inetDetail(pc.pid, ino, "udp", "udp6"))
	case strings.HasPrefix(proto, "RAW"):
		return "", unsupported("raw socket", "")
	case strings.HasPrefix(proto, "PING"):
		return "", unsupported("icmp socket", "")
	case proto == "":
		return "", unsupported("socket", link)
	}
	return "", unsupported(strings.ToLower(proto)+" socket", "")
}

func orUnnamed(s string) string {
	if s == "" {
		return "an unnamed address"
	}
	return s
}

// sockProtoName reads the socket's protocol name ("UNIX-STREAM", "TCP",
// "NETLINK"...) from the sockfs xattr, through the /proc link.
func sockProtoName(pid, num int) string {
	buf := make([]byte, 64)
	n, err := unix.Getxattr(fdPath(pid, num), "system.sockprotoname", buf)
	if err != nil {
		return ""
	}
	return strings.TrimRight(string(buf[:n]), "\x00")
}

// inetDetail finds socket inode ino in the target's /proc/PID/net tables
// and describes it as "ADDR:PORT", adding "listening" or "-> REMOTE".
func inetDetail(pid int, ino uint64, tables ...string) string {
	for _, t := range tables {
		socks, err := procfs.NetInet(pid, t)
		if err != nil {
			continue
		}
		for _, s := range socks {
			if s.Inode != ino {
				continue
			}
			switch {
			case s.State == procfs.TCPListen && strings.HasPrefix(t, "tcp"):
				return s.Local.String() + " listening"
			case !s.Remote.Addr().IsUnspecified() || s.Remote.Port() != 0:
				return s.Local.String() + " -> " + s.Remote.String()
			}
			return s.Local.String()
		}
	}
	return ""
}
