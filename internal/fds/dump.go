package fds

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// DefaultHashLimit is the largest regular file DumpProcess hashes by default.
const DefaultHashLimit = 64 << 20

// Dumper records the file descriptors of a frozen process tree. It keeps a
// duplicate of every open file description it saw (taken with
// pidfd_getfd) until Close, which both lets it recognise the same
// description in several processes (kcmp) and lets an in-process restore
// reuse live pipes (Kept).
//
// The duplicates are raw fds, never wrapped in *os.File while dumping:
// os.File.Fd clears O_NONBLOCK and os.NewFile registers the fd with Go's
// poller, and either would act on the target's own description.
type Dumper struct {
	log *slog.Logger
	// HashLimit is the largest regular file that gets a ContentHash
	// (SHA-256, computed in DumpProcess while the tree is frozen); a
	// negative value disables hashing. NewDumper sets DefaultHashLimit.
	HashLimit int64
	// MsgEndpoint, if set, is asked by Finish about each connected unix
	// socket of the tree whose peer is outside it, once per description,
	// with d's lock held (it must not call d): ok means it is a
	// connection to the job's message endpoint, recorded as an
	// image.FDMsg with MsgID id and MsgUnread the packets queued for the
	// process (see msg.go); !ok, or no hook, leaves the socket to the
	// usual rules (a named peer outside the tree is refused).
	MsgEndpoint func(s PeerSocket) (id string, ok bool)

	mu      sync.Mutex // guards the fields below
	descs   map[string]*desc
	byObj   map[devIno][]*desc // candidates for kcmp
	pipes   map[string]*desc   // PipeID → desc holding Buffered (captured once)
	objects map[string]*os.File
	hashes  map[hashKey]string
	seq     int
	closed  bool
	// inflight: the full records of the descriptions only socket queues
	// hold, set by Finish.
	inflight []image.FD
}

type devIno struct{ dev, ino uint64 }

type hashKey struct {
	dev, ino, size uint64
	mtime, ctime   unix.Timespec
}

// desc is one open file description seen while dumping.
type desc struct {
	id   string
	fd   int      // ferry's duplicate
	file *os.File // wraps fd once handed out by Kept
	rec  image.FD // full state; Num and CloExec of the first holder
	pid  int      // first holder
	link string   // its /proc link text
	diag *kernel.UnixDiag
	ep   []procfs.EpollTarget
	// inflight: first seen in a unix socket's queue (SCM_RIGHTS), where
	// pid holds that socket.
	inflight bool
}

// NewDumper returns a Dumper logging to log (nil: discard).
func NewDumper(log *slog.Logger) *Dumper {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Dumper{
		log:       log,
		HashLimit: DefaultHashLimit,
		descs:     make(map[string]*desc),
		byObj:     make(map[devIno][]*desc),
		pipes:     make(map[string]*desc),
		objects:   make(map[string]*os.File),
		hashes:    make(map[hashKey]string),
	}
}

// DumpProcess records every fd of pid, which the caller has frozen; pidfd
// is pidfd_open(pid). The target's fd table is never modified: each fd is
// duplicated into ferry with pidfd_getfd and inspected there. An fd whose
// open file description was already seen (in this or an earlier process)
// yields a record with only Num, CloExec, Desc and the POSIX locks pid
// holds through it (see image.FD.Locks). Cross-process facts
// (External, SockPeer) are filled in by Finish.
func (d *Dumper) DumpProcess(pid, pidfd int) ([]image.FD, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("fds: dumper is closed")
	}
	log := d.log.With("pid", pid)
	nums, err := procfs.FDs(pid)
	if err != nil {
		return nil, err
	}
	pc := &procCache{pid: pid}
	out := make([]image.FD, 0, len(nums))
	for _, num := range nums {
		rec, err := d.dumpFDLocked(log, pc, num, func() (int, error) { return pidfdGetfd(pidfd, num) })
		if err != nil {
			var ue *UnsupportedError
			if errors.As(err, &ue) {
				return nil, err
			}
			return nil, fmt.Errorf("dump pid %d fd %d: %w", pid, num, err)
		}
		if rec != nil {
			out = append(out, *rec)
		}
	}
	return out, nil
}

// dumpFDLocked records fd num of pc.pid; getfd returns ferry's duplicate
// of it (which the Dumper then owns).
func (d *Dumper) dumpFDLocked(log *slog.Logger, pc *procCache, num int, getfd func() (int, error)) (*image.FD, error) {
	pid := pc.pid
	link, err := fdLink(pid, num)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil // not open any more; the tree is frozen, so it was ferry's race
		}
		return nil, err
	}
	info, err := procfs.FDInfo(pid, num)
	if err != nil {
		return nil, err
	}
	kind, err := classify(pc, num, link, info)
	if err != nil {
		return nil, err
	}
	fd, err := getfd()
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fstat", err)
	}
	cloexec := info.Flags&unix.O_CLOEXEC != 0
	var descLocks, posixLocks []image.FileLock
	for _, l := range info.Locks {
		fl := fileLock(l)
		if fl.Kind != image.LockPOSIX {
			descLocks = append(descLocks, fl)
			continue
		}
		key := posixKey{dev: st.Dev, ino: st.Ino, lock: fl}
		if pc.posix == nil {
			pc.posix = make(map[posixKey]bool)
		}
		if !pc.posix[key] {
			pc.posix[key] = true
			posixLocks = append(posixLocks, fl)
		}
	}

	same, err := d.findDescLocked(fd, st)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	if same != nil {
		unix.Close(fd)
		return &image.FD{Num: num, CloExec: cloexec, Desc: same.id, Locks: posixLocks}, nil
	}

	d.seq++
	ds := &desc{id: "desc:" + strconv.Itoa(d.seq), fd: fd, pid: pid, link: link}
	ds.rec = image.FD{
		Num:     num,
		CloExec: cloexec,
		Desc:    ds.id,
		Kind:    kind,
		Flags:   info.Flags &^ unix.O_CLOEXEC,
		Offset:  info.Pos,
		Mode:    st.Mode,
		Dev:     st.Dev,
		Ino:     st.Ino,
		Rdev:    st.Rdev,
		Size:    st.Size,
		Locks:   descLocks,
	}
	// Register before filling so that Close releases fd on any error.
	d.descs[ds.id] = ds
	key := devIno{st.Dev, st.Ino}
	d.byObj[key] = append(d.byObj[key], ds)

	if err := d.fillLocked(log, pc, ds, info, &st); err != nil {
		return nil, err
	}
	fileOwner(&ds.rec, fd)
	rec := ds.rec
	rec.Locks = append(slices.Clip(rec.Locks), posixLocks...)
	return &rec, nil
}

// findDescLocked returns the already-seen description that fd refers to, if
// any. Only descriptions of the same inode are compared, with kcmp.
func (d *Dumper) findDescLocked(fd int, st unix.Stat_t) (*desc, error) {
	self := os.Getpid()
	for _, c := range d.byObj[devIno{st.Dev, st.Ino}] {
		same, err := kernel.KcmpFile(self, fd, self, c.fd)
		if err != nil {
			return nil, fmt.Errorf("compare open file descriptions: %w", err)
		}
		if same {
			return c, nil
		}
	}
	return nil, nil
}

// fillLocked records the kind-specific state of a new description.
func (d *Dumper) fillLocked(log *slog.Logger, pc *procCache, ds *desc, info *procfs.ProcFDInfo, st *unix.Stat_t) error {
	r := &ds.rec
	unsupported := func(resource, detail string) error {
		return &UnsupportedError{PID: pc.pid, FD: r.Num, Resource: resource, Detail: detail}
	}
	switch r.Kind {
	case image.FDFile:
		r.Path = ds.link
		if strings.HasSuffix(ds.link, deletedSuffix) {
			// The name is gone (nlink 0), or this name was removed while
			// other links remain: either way the path no longer leads to
			// it, so the content travels.
			r.Path = strings.TrimSuffix(ds.link, deletedSuffix)
			r.Unlinked = true
			r.FileID = image.ObjectID(st.Dev, st.Ino)
			if st.Nlink > 0 && st.Mode&unix.S_IFMT == unix.S_IFREG {
				// Other links name it: the very inode is opened again
				// where it exists (a write shows through them).
				if h, _, err := unix.NameToHandleAt(ds.fd, "", unix.AT_EMPTY_PATH); err == nil {
					r.Handle, r.HandleType = h.Bytes(), h.Type()
				} else {
					log.Warn("no file handle for an unlinked file that has other links: it comes back as a copy", "fd", r.Num, "path", r.Path, "err", err)
				}
			}
			if err := fileShape(r, ds.fd, st); err != nil {
				return err
			}
			return d.addObjectLocked(r.FileID, ds.fd)
		}
		// Hashing opens the file: that would break a lease on it.
		if st.Mode&unix.S_IFMT == unix.S_IFREG && r.Flags&unix.O_PATH == 0 && !hasLease(r.Locks) &&
			d.HashLimit >= 0 && st.Size <= d.HashLimit {
			h, err := d.hashLocked(ds.fd, st)
			if err != nil {
				log.Warn("cannot hash file", "fd", r.Num, "path", r.Path, "err", err)
			}
			r.ContentHash = h
		}
	case image.FDMemfd:
		r.Path = strings.TrimSuffix(ds.link, deletedSuffix)
		seals, err := unix.FcntlInt(uintptr(ds.fd), unix.F_GET_SEALS, 0)
		if err != nil {
			return fmt.Errorf("memfd %s: F_GET_SEALS: %w", r.Path, err)
		}
		setMemfdSeals(r, seals)
		r.FileID = image.ObjectID(st.Dev, st.Ino)
		if err := fileShape(r, ds.fd, st); err != nil {
			return err
		}
		return d.addObjectLocked(r.FileID, ds.fd)
	case image.FDDir, image.FDChar, image.FDBlock:
		r.Path = ds.link
		if gone, ok := strings.CutSuffix(ds.link, deletedSuffix); ok && st.Nlink == 0 {
			r.Path, r.Unlinked, r.UID, r.GID = gone, true, st.Uid, st.Gid
		}
	case image.FDPipe, image.FDFIFO:
		if r.Kind == image.FDPipe {
			r.PipeID = strconv.FormatUint(st.Ino, 10)
		} else {
			r.Path = ds.link
			r.PipeID = fifoID(st.Dev, st.Ino)
			if gone, ok := strings.CutSuffix(ds.link, deletedSuffix); ok && st.Nlink == 0 {
				r.Path, r.Unlinked, r.UID, r.GID = gone, true, st.Uid, st.Gid
			}
		}
		size, err := unix.FcntlInt(uintptr(ds.fd), unix.F_GETPIPE_SZ, 0)
		if err != nil {
			return fmt.Errorf("F_GETPIPE_SZ: %w", err)
		}
		r.PipeSize = size
		if d.pipes[r.PipeID] == nil {
			rfd := ds.fd
			if r.Flags&unix.O_ACCMODE == unix.O_WRONLY && r.Kind == image.FDFIFO {
				// A FIFO the tree holds for writing only, so far: its
				// bytes are read through a read end of ferry's own.
				f, err := kernel.OpenNoATime(selfFDPath(ds.fd), os.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC)
				if err != nil {
					return fmt.Errorf("open %s for reading its buffered bytes: %w", ds.link, err)
				}
				defer f.Close()
				rfd = int(RawFD(f))
			} else if r.Flags&unix.O_ACCMODE == unix.O_WRONLY {
				rfd = -1 // an anonymous pipe's bytes are read from its read end
			}
			if rfd >= 0 {
				d.pipes[r.PipeID] = ds
				buf, packets, err := peekPipe(rfd, size)
				if err != nil {
					return fmt.Errorf("read buffered bytes of %s: %w", ds.link, err)
				}
				r.Buffered, r.PipePackets = buf, packets
			}
		}
	case image.FDEventfd:
		if info.Eventfd == nil {
			return fmt.Errorf("eventfd fdinfo of %s: no eventfd-count", ds.link)
		}
		r.EventfdCount = info.Eventfd.Count
		r.EventfdSemaphore = info.Eventfd.Semaphore
	case image.FDTimerfd:
		// timerfd_gettime first: the kernel counts the expirations of a
		// periodic timer lazily, and brings ticks up to date there (or
		// at a read); fdinfo alone would show one.
		var its unix.ItimerSpec
		if err := unix.TimerfdGettime(ds.fd, &its); err != nil {
			return os.NewSyscallError("timerfd_gettime", err)
		}
		now, err := procfs.FDInfo(os.Getpid(), ds.fd)
		if err != nil {
			return err
		}
		if now.Timerfd == nil {
			return fmt.Errorf("timerfd fdinfo of %s: no clockid, ticks or settime flags", ds.link)
		}
		r.TimerClock = now.Timerfd.ClockID
		r.TimerTicks = now.Timerfd.Ticks
		r.TimerSettimeFlags = now.Timerfd.SettimeFlags
		r.TimerValueNsec = its.Value.Nano()
		r.TimerIntervalNsec = its.Interval.Nano()
	case image.FDSignalfd:
		if info.Signalfd == nil {
			return fmt.Errorf("signalfd fdinfo of %s: no sigmask", ds.link)
		}
		r.SignalfdMask = info.Signalfd.Sigmask
	case image.FDEpoll:
		// fdinfo lists items in the kernel's tree order (by file address);
		// record them by fd number so images are reproducible.
		// Stable: items of one fd number stay in the kernel's order, which
		// is how KCMP_EPOLL_TFD counts them (toff).
		ds.ep = slices.Clone(info.Epoll)
		slices.SortStableFunc(ds.ep, func(a, b procfs.EpollTarget) int { return cmp.Compare(a.FD, b.FD) })
		for _, e := range ds.ep {
			r.Epoll = append(r.Epoll, image.EpollItem{FD: e.FD, Events: e.Events, Data: e.Data})
		}
	case image.FDUnix:
		return d.fillUnixLocked(log, pc, ds, unsupported)
	case image.FDInotify, image.FDFanotify:
		return d.fillNotifyLocked(pc, ds, unsupported)
	case image.FDPidfd:
		pid, err := strconv.Atoi(info.Fields["Pid"])
		if err != nil {
			return fmt.Errorf("pidfd fdinfo: Pid %q", info.Fields["Pid"])
		}
		if pid <= 0 {
			return unsupported("pidfd of a process that exited", "")
		}
		r.PidfdPID = pid
	default:
		return fmt.Errorf("unexpected kind %q", r.Kind)
	}
	return nil
}

func (d *Dumper) fillUnixLocked(log *slog.Logger, pc *procCache, ds *desc, unsupported func(string, string) error) error {
	r := &ds.rec
	dom, err := unix.GetsockoptInt(ds.fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return os.NewSyscallError("getsockopt(SO_DOMAIN)", err)
	}
	if dom != unix.AF_UNIX {
		return unsupported("socket", fmt.Sprintf("address family %d", dom))
	}
	typ, err := unix.GetsockoptInt(ds.fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return os.NewSyscallError("getsockopt(SO_TYPE)", err)
	}
	r.SockType = typ
	diag, err := kernel.UnixDiagLookup(uint32(r.Ino))
	if err != nil {
		return fmt.Errorf("unix socket inode %d: %w", r.Ino, err)
	}
	ds.diag = diag
	r.SockName = diag.Name
	if err := d.socketFileLocked(ds, pc.pid, unsupported); err != nil {
		return err
	}
	if diag.State == kernel.UnixListen {
		// The connections waiting in the backlog (diag.Icons) are
		// resolved by Finish, which knows every client of the tree.
		r.SockListen = true
		r.SockBacklog = int(diag.WQueue)
		return readSockOpts(ds.fd, r)
	}
	r.SockShutRD = diag.Shutdown&kernel.UnixRcvShutdown != 0
	r.SockShutWR = diag.Shutdown&kernel.UnixSendShutdown != 0
	if typ != unix.SOCK_DGRAM && diag.State != kernel.UnixEstablished {
		// Never connected: nothing can be queued (and a stream read
		// would fail with EINVAL).
		return readSockOpts(ds.fd, r)
	}
	q, rights, from, creds, err := peekSocket(ds.fd, typ)
	if err != nil {
		return fmt.Errorf("read queued data: %w", err)
	}
	r.SockQueue, r.SockFrom, r.SockCreds = q, from, creds
	if r.SockRights, err = d.inFlightLocked(log, ds, rights); err != nil {
		return err
	}
	return readSockOpts(ds.fd, r)
}

// socketFileLocked finds the file of socket ds bound to a path: a
// relative name is looked for in the working directory of pid, the
// process holding it (where programs bind such names); an absolute one
// whose file is gone, or whose path now leads to another file, is
// SockGone.
func (d *Dumper) socketFileLocked(ds *desc, pid int, unsupported func(string, string) error) error {
	r := &ds.rec
	if r.SockName == "" || strings.HasPrefix(r.SockName, "@") || ds.diag.VFSIno == 0 {
		return nil
	}
	path := r.SockName
	if !strings.HasPrefix(path, "/") {
		if pid == os.Getpid() {
			return unsupported("unix socket", "in flight and bound to the relative name "+path+" (the directory it was bound in is not known)")
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
		r.SockDir = cwd
		path = filepath.Join(cwd, path)
	}
	var st unix.Stat_t
	switch err := unix.Lstat(path, &st); {
	case err == unix.ENOENT && r.SockDir != "":
		return unsupported("unix socket", "bound to the relative name "+r.SockName+", whose file is not in the working directory "+r.SockDir)
	case err == unix.ENOENT:
		r.SockGone = true
		return nil
	case err != nil:
		return fmt.Errorf("socket file %s: %w", path, os.NewSyscallError("lstat", err))
	}
	if st.Ino != uint64(ds.diag.VFSIno) || st.Dev != ds.diag.VFSDev {
		if r.SockDir != "" {
			return unsupported("unix socket", "bound to the relative name "+r.SockName+", whose file is not in the working directory "+r.SockDir)
		}
		// Its file was removed (or renamed over) and the path reused:
		// as gone as a removed one.
		r.SockGone = true
	}
	return nil
}

// inFlightLocked records the files peeked out of socket ds's queue
// (ferry's fds, which it takes over) and returns their Descs, per message.
// A file no process of the tree holds becomes a description of its own,
// marked inflight; one that is also open in the tree is the same Desc.
func (d *Dumper) inFlightLocked(log *slog.Logger, ds *desc, rights [][]int) ([][]string, error) {
	if rights == nil {
		return nil, nil
	}
	self := os.Getpid()
	out := make([][]string, len(rights))
	for i, fds := range rights {
		for j, fd := range fds {
			rec, err := d.dumpFDLocked(log, &procCache{pid: self}, fd, func() (int, error) { return fd, nil })
			if err == nil && rec == nil {
				err = errors.New("file vanished from ferry's fd table")
			}
			if err != nil {
				closeRights([][]int{fds[j+1:]})
				closeRights(rights[i+1:])
				var ue *UnsupportedError
				if errors.As(err, &ue) && ue.PID == self {
					return nil, &UnsupportedError{PID: ds.pid, FD: ds.rec.Num, Resource: ue.Resource,
						Detail: joinDetail("in flight in this socket's queue (SCM_RIGHTS)", ue.Detail)}
				}
				return nil, fmt.Errorf("file in flight in the queue: %w", err)
			}
			in := d.descs[rec.Desc]
			if in.pid == self {
				// New here: held, as far as ferry knows, by the queue
				// of ds only.
				in.inflight, in.pid, in.rec.Num, in.rec.CloExec = true, ds.pid, -1, false
				if err := checkInFlight(in); err != nil {
					closeRights([][]int{fds[j+1:]})
					closeRights(rights[i+1:])
					return nil, &UnsupportedError{PID: ds.pid, FD: ds.rec.Num, Resource: in.rec.Kind + " in flight (SCM_RIGHTS)", Detail: err.Error()}
				}
			}
			out[i] = append(out[i], rec.Desc)
		}
	}
	return out, nil
}

// checkInFlight refuses the kinds of file that restore can only make once
// a process holds them.
func checkInFlight(ds *desc) error {
	switch ds.rec.Kind {
	case image.FDPidfd:
		return errors.New("a pidfd is opened once its process exists, after the queues are filled")
	}
	return nil
}

func hasLease(locks []image.FileLock) bool {
	for _, l := range locks {
		if l.Kind == image.LockLease {
			return true
		}
	}
	return false
}

func joinDetail(a, b string) string {
	if b == "" {
		return a
	}
	return a + ": " + b
}

// readSockOpts records the socket options of unix socket fd that restore
// sets again (image.FD.SockSndBuf and the fields after it).
func readSockOpts(fd int, r *image.FD) error {
	var errs []error
	get := func(name string, opt int) int {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
		if err != nil {
			errs = append(errs, os.NewSyscallError("getsockopt("+name+")", err))
		}
		return v
	}
	r.SockSndBuf = get("SO_SNDBUF", unix.SO_SNDBUF)
	r.SockRcvBuf = get("SO_RCVBUF", unix.SO_RCVBUF)
	r.SockPassCred = get("SO_PASSCRED", unix.SO_PASSCRED) != 0
	for _, o := range sockInts {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.opt)
		if err != nil {
			continue // not this kernel's, or not for this socket
		}
		if r.SockInts == nil {
			r.SockInts = map[string]int{}
		}
		r.SockInts[o.name] = v
	}
	for _, t := range []struct {
		opt int
		ns  *int64
	}{{unix.SO_RCVTIMEO, &r.SockRcvTimeoNs}, {unix.SO_SNDTIMEO, &r.SockSndTimeoNs}} {
		if tv, err := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, t.opt); err == nil {
			*t.ns = tv.Nano()
		}
	}
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		errs = append(errs, os.NewSyscallError("getsockopt(SO_PEERCRED)", err))
	} else {
		r.SockCredPID = int(cred.Pid) // 0 for a socket never connected
		if cred.Pid != 0 {
			r.SockCredUID, r.SockCredGID = cred.Uid, cred.Gid
		}
	}
	return errors.Join(errs...)
}

// sockInts are the integer socket options recorded and set again (beyond
// the buffer sizes and SO_PASSCRED); SO_PEEK_OFF last, after the queues.
var sockInts = []struct {
	name string
	opt  int
}{
	{"SO_REUSEADDR", unix.SO_REUSEADDR},
	{"SO_KEEPALIVE", unix.SO_KEEPALIVE},
	{"SO_DONTROUTE", unix.SO_DONTROUTE},
	{"SO_OOBINLINE", unix.SO_OOBINLINE},
	{"SO_PRIORITY", unix.SO_PRIORITY},
	{"SO_RCVLOWAT", unix.SO_RCVLOWAT},
	{"SO_MARK", unix.SO_MARK},
	{"SO_PASSSEC", unix.SO_PASSSEC},
	{"SO_PASSPIDFD", unix.SO_PASSPIDFD},
	{"SO_PEEK_OFF", unix.SO_PEEK_OFF},
}

// addObjectLocked opens a reader (offset 0, a new description) on the
// content object behind fd, once per id.
func (d *Dumper) addObjectLocked(id string, fd int) error {
	if _, ok := d.objects[id]; ok {
		return nil
	}
	f, err := kernel.OpenNoATime(selfFDPath(fd), os.O_RDONLY|unix.O_NOCTTY)
	if err != nil {
		return fmt.Errorf("open content of %s: %w", id, err)
	}
	d.objects[id] = f
	return nil
}

// fileOwner records who gets the signal of signal-driven I/O on the
// description, and which signal (files that know no owner say nothing).
func fileOwner(r *image.FD, fd int) {
	if o, err := kernel.GetOwnerEx(fd); err == nil && o.PID != 0 {
		r.OwnerType, r.OwnerPID = int(o.Type), int(o.PID)
	}
	if sig, err := unix.FcntlInt(uintptr(fd), unix.F_GETSIG, 0); err == nil {
		r.Sig = sig
	}
}

// fileShape records what a recreated copy of a file must have besides its
// bytes: owner, group, times and where its holes are.
func fileShape(r *image.FD, fd int, st *unix.Stat_t) error {
	r.UID, r.GID = st.Uid, st.Gid
	r.AtimeNs, r.MtimeNs = st.Atim.Nano(), st.Mtim.Nano()
	f, err := kernel.OpenNoATime(selfFDPath(fd), os.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK)
	if err != nil {
		return fmt.Errorf("open %s to find its holes: %w", r.Path, err)
	}
	defer f.Close()
	ext, err := dataExtents(int(f.Fd()), st.Size)
	if err != nil {
		return fmt.Errorf("holes of %s: %w", r.Path, err)
	}
	if len(ext) != 1 || ext[0] != [2]int64{0, st.Size} {
		r.Extents = ext // not one extent of the whole file
		if r.Extents == nil {
			r.Extents = [][2]int64{} // all hole
		}
	}
	return nil
}

// dataExtents lists the ranges of fd's first size bytes that hold data,
// by SEEK_DATA and SEEK_HOLE (a filesystem without holes reports one).
func dataExtents(fd int, size int64) ([][2]int64, error) {
	var out [][2]int64
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if err == unix.ENXIO {
			break // only a hole up to the end
		}
		if err != nil {
			return nil, os.NewSyscallError("lseek(SEEK_DATA)", err)
		}
		if start >= size {
			break
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, os.NewSyscallError("lseek(SEEK_HOLE)", err)
		}
		end = min(end, size)
		out = append(out, [2]int64{start, end})
		off = end
	}
	return out, nil
}

// hashLocked returns the SHA-256 (hex) of the first st.Size bytes of the file
// behind fd, read through a new description so the target's offset and
// access mode do not matter. Results are cached by inode, size and times.
func (d *Dumper) hashLocked(fd int, st *unix.Stat_t) (string, error) {
	key := hashKey{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), mtime: st.Mtim, ctime: st.Ctim}
	if h, ok := d.hashes[key]; ok {
		return h, nil
	}
	f, err := kernel.OpenNoATime(selfFDPath(fd), os.O_RDONLY|unix.O_NOCTTY|unix.O_NONBLOCK)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, 0, st.Size)); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	d.hashes[key] = sum
	return sum, nil
}

func fifoID(dev, ino uint64) string { return fmt.Sprintf("fifo:%x:%x", dev, ino) }

// Memfd seals travel in FD.Rdev until image.FD has a field of its own:
// st_rdev of a memfd is always 0, so the field is otherwise unused.
func setMemfdSeals(r *image.FD, seals int) { r.Rdev = uint64(seals) }
func memfdSeals(r *image.FD) int           { return int(r.Rdev) }

// Finish resolves what needs the whole tree, after every process in procs
// was dumped by d, and rewrites procs[i].FDs in place:
//   - the full state of each description moves to its first appearance in
//     procs order; later appearances keep only Num, CloExec and Desc;
//   - pipes and FIFOs also held by a process outside the tree get
//     External=true and lose Buffered (those bytes stay in the live pipe);
//   - unix sockets get SockPeer (the peer's Desc); a peer outside the tree
//     makes the socket an image.FDMsg when MsgEndpoint says it is a
//     message-endpoint connection, else External when the peer is unnamed
//     (a socketpair), and is an *UnsupportedError when it is bound (a
//     server's socket);
//   - every epoll item must be open at its number, with the same inode,
//     in some process holding the epoll, else *UnsupportedError;
//   - a flock taken by a live process outside the tree that still holds
//     the description is an *UnsupportedError (it would outlive the tree);
//   - POSIX locks stay on the fd of the process that owns them, also on
//     the bare references.
func (d *Dumper) Finish(procs []*image.Process) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	tree := make(map[int]bool)
	var used []*desc // in first-appearance order
	seen := make(map[string]bool)
	for _, p := range procs {
		tree[p.PID] = true
		for _, fd := range p.FDs {
			ds := d.descs[fd.Desc]
			if ds == nil {
				return fmt.Errorf("pid %d fd %d: description %q was not dumped by this dumper", p.PID, fd.Num, fd.Desc)
			}
			if !seen[ds.id] {
				seen[ds.id] = true
				used = append(used, ds)
			}
		}
	}

	// The descriptions only a socket queue holds, in the order they
	// were seen.
	var inflight []*desc
	for _, ds := range d.descs {
		if ds.inflight && !seen[ds.id] {
			inflight = append(inflight, ds)
		}
	}
	slices.SortFunc(inflight, func(a, b *desc) int { return cmp.Compare(descSeq(a.id), descSeq(b.id)) })
	all := append(slices.Clip(used), inflight...)

	if err := d.resolvePipesLocked(all, tree); err != nil {
		return err
	}
	if err := d.resolveUnixLocked(all); err != nil {
		return err
	}
	if err := d.checkEpollLocked(procs, used, all); err != nil {
		return err
	}
	if err := d.checkFlockHoldersLocked(all, tree); err != nil {
		return err
	}
	if err := checkOwners(procs, all); err != nil {
		return err
	}
	if err := checkPidfds(procs, used); err != nil {
		return err
	}
	d.inflight = d.inflight[:0]
	for _, ds := range inflight {
		if ds.rec.External {
			return &UnsupportedError{PID: ds.pid, FD: -1, Resource: ds.rec.Kind + " in flight (SCM_RIGHTS)",
				Detail: "its other end is held outside the tree"}
		}
		d.inflight = append(d.inflight, ds.rec)
	}

	first := make(map[string]bool)
	for _, p := range procs {
		for i, fd := range p.FDs {
			posix := posixOnly(fd.Locks)
			if first[fd.Desc] {
				p.FDs[i] = image.FD{Num: fd.Num, CloExec: fd.CloExec, Desc: fd.Desc, Locks: posix}
				continue
			}
			first[fd.Desc] = true
			full := d.descs[fd.Desc].rec
			full.Num, full.CloExec = fd.Num, fd.CloExec
			full.Locks = append(slices.Clip(full.Locks), posix...)
			p.FDs[i] = full
		}
	}
	return nil
}

// InFlight returns, after Finish, the full records of the descriptions
// that only unix socket queues hold (image.Checkpoint.InFlight).
func (d *Dumper) InFlight() []image.FD {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.inflight)
}

func descSeq(id string) int {
	n, _ := strconv.Atoi(strings.TrimPrefix(id, "desc:"))
	return n
}

// checkOwners refuses signal-driven I/O (O_ASYNC) whose owner — thread,
// process or process group — is not in the tree: a restore could not give
// the signal to it.
func checkOwners(procs []*image.Process, used []*desc) error {
	tids, pids, pgids := map[int]bool{}, map[int]bool{}, map[int]bool{}
	for _, p := range procs {
		pids[p.PID], pgids[p.PGID] = true, true
		for _, t := range p.Threads {
			tids[t.TID] = true
		}
	}
	for _, ds := range used {
		r := &ds.rec
		if r.OwnerPID == 0 || r.Flags&unix.O_ASYNC == 0 {
			continue
		}
		var in bool
		switch r.OwnerType {
		case kernel.F_OWNER_TID:
			in = tids[r.OwnerPID]
		case kernel.F_OWNER_PID:
			in = pids[r.OwnerPID]
		case kernel.F_OWNER_PGRP:
			in = pgids[r.OwnerPID]
		}
		if !in {
			return &UnsupportedError{PID: ds.pid, FD: r.Num, Resource: "O_ASYNC owner outside the tree",
				Detail: fmt.Sprintf("owner type %d id %d", r.OwnerType, r.OwnerPID)}
		}
	}
	return nil
}

// checkPidfds refuses a pidfd whose process is not in the tree. A
// PIDFD_THREAD one of a thread that is not a thread leader is carried
// when only that thread's process holds it (its threads are created
// after the fds are in place: the fd is put in then, see
// Restorer.ThreadPidfds), not watched by an epoll nor in flight.
func checkPidfds(procs []*image.Process, used []*desc) error {
	live := map[int]bool{} // a zombie not reaped yet too: pidfd_open takes it
	threadOf := map[int]int{}
	table := map[int]int{} // process → the process whose fd table it uses
	for _, p := range procs {
		live[p.PID] = true
		for _, th := range p.Threads {
			if th.TID != p.PID {
				threadOf[th.TID] = p.PID
			}
		}
		table[p.PID] = p.PID
	}
	for _, p := range procs {
		for q := p; q.FilesOf != 0; {
			table[p.PID] = q.FilesOf
			next := (*image.Process)(nil)
			for _, o := range procs {
				if o.PID == q.FilesOf {
					next = o
				}
			}
			if next == nil {
				break
			}
			q = next
		}
	}
	watched := map[string]bool{}
	for _, ds := range used {
		for _, it := range ds.rec.Epoll {
			watched[it.Desc] = true
		}
	}
	for _, ds := range used {
		r := &ds.rec
		if r.Kind != image.FDPidfd || live[r.PidfdPID] {
			continue
		}
		what := "pidfd of a process outside the tree"
		if owner, ok := threadOf[r.PidfdPID]; ok && r.Flags&unix.O_EXCL != 0 {
			why := ""
			for _, p := range procs {
				for _, fd := range p.FDs {
					if fd.Desc == ds.id && table[p.PID] != table[owner] {
						why = fmt.Sprintf("also held by pid %d", p.PID)
					}
				}
			}
			switch {
			case ds.inflight:
				why = "in flight in a unix socket"
			case watched[ds.id]:
				why = "watched by an epoll"
			}
			if why == "" {
				continue
			}
			what = "pidfd of a thread (PIDFD_THREAD) " + why
		} else if r.Flags&unix.O_EXCL != 0 {
			what = "pidfd of a thread (PIDFD_THREAD) that is not a thread of the tree"
		}
		return &UnsupportedError{PID: ds.pid, FD: r.Num, Resource: what, Detail: "pid " + strconv.Itoa(r.PidfdPID)}
	}
	return nil
}

// posixOnly returns the POSIX locks among locks (nil if none).
func posixOnly(locks []image.FileLock) []image.FileLock {
	var out []image.FileLock
	for _, l := range locks {
		if l.Kind == image.LockPOSIX {
			out = append(out, l)
		}
	}
	return out
}

func (d *Dumper) resolvePipesLocked(used []*desc, tree map[int]bool) error {
	wanted := make(map[string]bool)
	for _, ds := range used {
		if ds.rec.Kind == image.FDPipe || ds.rec.Kind == image.FDFIFO {
			wanted[ds.link] = true
		}
	}
	if len(wanted) == 0 {
		return nil
	}
	self := os.Getpid()
	outside := scanHolders(wanted, func(pid int) bool { return tree[pid] || pid == self })
	external := make(map[string]bool) // by PipeID
	for _, ds := range used {
		if _, ok := outside[ds.link]; ok && (ds.rec.Kind == image.FDPipe || ds.rec.Kind == image.FDFIFO) {
			external[ds.rec.PipeID] = true
		}
	}
	for _, ds := range used {
		if (ds.rec.Kind == image.FDPipe || ds.rec.Kind == image.FDFIFO) && external[ds.rec.PipeID] {
			ds.rec.External = true
			ds.rec.Buffered, ds.rec.PipePackets = nil, nil
			d.log.Debug("pipe leads outside the tree", "pid", ds.pid, "fd", ds.rec.Num, "pipe", ds.link,
				"holder", outside[ds.link].pid)
		}
	}
	return nil
}

func (d *Dumper) resolveUnixLocked(all []*desc) error {
	byIno := make(map[uint32]*desc)
	for _, ds := range all {
		if ds.rec.Kind == image.FDUnix {
			byIno[uint32(ds.rec.Ino)] = ds
		}
	}
	refuse := func(ds *desc, detail string) error {
		return &UnsupportedError{PID: ds.pid, FD: ds.rec.Num, Resource: "unix socket", Detail: detail}
	}
	// Listeners: their names (to tell which end of a named connection a
	// listener of the tree accepted) and the clients whose connections
	// wait in their backlogs, oldest first.
	listening := make(map[string]*desc) // by name, and by socket file
	waiting := make(map[uint32]*desc)   // client inode → listener
	for _, ds := range all {
		r := &ds.rec
		if r.Kind != image.FDUnix || !r.SockListen {
			continue
		}
		listening[r.SockName] = ds
		if ds.diag.VFSIno != 0 {
			listening[vfsKey(ds.diag)] = ds
		}
		for _, c := range ds.diag.Icons {
			cl := byIno[c]
			if cl == nil {
				return refuse(ds, fmt.Sprintf("listening on %s: a connection from a client outside the tree (or closed) waits in its backlog",
					orUnnamed(r.SockName)))
			}
			waiting[c] = ds
			r.SockPending = append(r.SockPending, cl.id)
		}
	}
	// listenerOf returns the listener of the tree that has ds's name.
	listenerOf := func(ds *desc) *desc {
		if ds.diag.VFSIno != 0 {
			return listening[vfsKey(ds.diag)]
		}
		return listening[ds.rec.SockName]
	}
	listens := func(ds *desc) bool { return listenerOf(ds) != nil }
	var everyone []*kernel.UnixDiag // every socket, read once if needed
	for _, ds := range all {
		r := &ds.rec
		if r.Kind != image.FDUnix || r.SockListen {
			continue
		}
		if l := waiting[uint32(r.Ino)]; l != nil {
			// Connected to an embryo socket that no system call can
			// read: what the client sent is out of reach.
			n, err := unix.IoctlGetInt(ds.fd, unix.SIOCOUTQ)
			if err != nil {
				return fmt.Errorf("pid %d fd %d: %w", ds.pid, r.Num, os.NewSyscallError("ioctl(SIOCOUTQ)", err))
			}
			if n > 0 {
				return refuse(ds, fmt.Sprintf("its connection to %s waits in the backlog with %d bytes sent: data on a connection not accepted yet is not carried",
					orUnnamed(l.rec.SockName), n))
			}
			if ds.diag.Shutdown != 0 {
				return refuse(ds, fmt.Sprintf("its connection to %s waits in the backlog and was shut down", orUnnamed(l.rec.SockName)))
			}
			r.SockPendingOn = l.id
			continue
		}
		if ds.diag.Peer == 0 {
			if r.SockType != unix.SOCK_DGRAM && ds.diag.State == kernel.UnixEstablished && ds.diag.Shutdown == 0 {
				// Connected, to a peer with no file: a connection
				// waiting in the backlog of a listener outside the tree?
				if everyone == nil {
					var err error
					if everyone, err = kernel.UnixDiagAll(); err != nil {
						return fmt.Errorf("list unix sockets: %w", err)
					}
				}
				for _, o := range everyone {
					if o.State == kernel.UnixListen && slices.Contains(o.Icons, uint32(r.Ino)) {
						return refuse(ds, "its connection waits in the backlog of "+orUnnamed(o.Name)+", a listener outside the tree")
					}
				}
			}
			continue
		}
		if peer := byIno[ds.diag.Peer]; peer != nil {
			r.SockPeer = peer.id
			if r.SockType == unix.SOCK_DGRAM {
				// Connected to an unnamed one: a socketpair (nothing
				// else reaches an unnamed socket), one end bound later
				// if this one is named (as SO_PASSCRED autobinds it).
				continue
			}
			if r.SockName != "" || peer.rec.SockName != "" {
				r.SockAccepted = acceptedEnd(ds, peer, listens)
				if r.SockAccepted && r.SockName == "" {
					return refuse(ds, "connected to "+peer.rec.SockName+" through a socketpair bound later")
				}
				if l := listenerOf(ds); r.SockAccepted && l != nil {
					r.SockListener = l.id
				}
			}
			continue
		}
		pd, err := kernel.UnixDiagLookup(ds.diag.Peer)
		peerName := ""
		if err == nil {
			peerName = pd.Name
		}
		msg, merr := d.msgEndpointLocked(ds, ds.diag.Peer, peerName)
		if merr != nil {
			return merr
		}
		if msg {
			continue
		}
		if err == nil && pd.Name != "" {
			if r.SockType == unix.SOCK_DGRAM && len(r.SockQueue) == 0 && (strings.HasPrefix(pd.Name, "/") || strings.HasPrefix(pd.Name, "@")) {
				r.SockPeerName = pd.Name // connect to it again (/dev/log)
				continue
			}
			return refuse(ds, "connected to "+pd.Name+" outside the tree")
		}
		if r.SockName != "" {
			return refuse(ds, "accepted on "+r.SockName+" from a client outside the tree")
		}
		r.External = true
		r.SockQueue, r.SockRights, r.SockFrom = nil, nil, nil // the live socket keeps its queue
		d.log.Debug("socketpair leads outside the tree", "pid", ds.pid, "fd", r.Num, "peer_ino", ds.diag.Peer)
	}
	if err := checkSenders(all); err != nil {
		return err
	}
	return d.checkAcceptedLocked(all, listens, &everyone)
}

// checkSenders refuses a datagram queued from a relative name that no
// socket of the tree is bound to: restore could not tell in which
// directory to bind a sender there.
func checkSenders(all []*desc) error {
	names := make(map[string]bool)
	for _, ds := range all {
		if ds.rec.Kind == image.FDUnix && ds.rec.SockType == unix.SOCK_DGRAM && ds.rec.SockName != "" {
			names[ds.rec.SockName] = true
		}
	}
	for _, ds := range all {
		for _, from := range ds.rec.SockFrom {
			if from != "" && !strings.HasPrefix(from, "/") && !strings.HasPrefix(from, "@") && !names[from] && ds.rec.SockDir == "" {
				return &UnsupportedError{PID: ds.pid, FD: ds.rec.Num, Resource: "unix socket",
					Detail: "a datagram queued from the relative name " + from + ", which no socket of the tree holds"}
			}
		}
	}
	return nil
}

// acceptedEnd tells whether ds, a stream or seqpacket socket connected to
// peer with a name at one end at least, is the end a listener accepted:
// the named one; when both are (a client may bind before connecting), the
// one whose name a listener of the tree has; else the first seen.
func acceptedEnd(ds, peer *desc, listens func(*desc) bool) bool {
	a, b := ds.rec.SockName != "", peer.rec.SockName != ""
	if a != b {
		return a
	}
	if la, lb := listens(ds), listens(peer); la != lb {
		return la
	}
	return descSeq(ds.id) < descSeq(peer.id)
}

// checkAcceptedLocked refuses a connection accepted from a listener that
// lives on outside the tree: restore makes each connection again through
// a listener of its own at the accepted end's name, which that listener
// holds.
func (d *Dumper) checkAcceptedLocked(all []*desc, listens func(*desc) bool, everyone *[]*kernel.UnixDiag) error {
	tree := make(map[uint32]bool)
	for _, ds := range all {
		tree[uint32(ds.rec.Ino)] = true
	}
	for _, ds := range all {
		if !ds.rec.SockAccepted || listens(ds) {
			continue
		}
		if *everyone == nil {
			var err error
			if *everyone, err = kernel.UnixDiagAll(); err != nil {
				return fmt.Errorf("list unix sockets: %w", err)
			}
		}
		for _, o := range *everyone {
			if o.State != kernel.UnixListen || tree[o.Ino] {
				continue
			}
			if ds.diag.VFSIno != 0 && o.VFSIno == ds.diag.VFSIno && o.VFSDev == ds.diag.VFSDev ||
				ds.diag.VFSIno == 0 && o.Name == ds.rec.SockName {
				return &UnsupportedError{PID: ds.pid, FD: ds.rec.Num, Resource: "unix socket",
					Detail: "accepted from the listener on " + ds.rec.SockName + ", which is outside the tree"}
			}
		}
	}
	return nil
}

func vfsKey(d *kernel.UnixDiag) string { return fmt.Sprintf("vfs:%d:%d", d.VFSDev, d.VFSIno) }

// checkEpollLocked makes sure each epoll item can be registered again: some
// process holding the epoll has, at the item's fd number, the file the item
// was registered for. (Items whose fd was closed while the file stayed
// open elsewhere cannot be re-added under their old number.)
func (d *Dumper) checkEpollLocked(procs []*image.Process, used, all []*desc) error {
	for _, ep := range all {
		if ep.rec.Kind != image.FDEpoll || len(ep.ep) == 0 {
			continue
		}
		// An epoll in flight is filled by ferry itself, at the items'
		// numbers in a table of its own: its items may watch any file
		// of the image. One a process holds is filled by a holder.
		candidates := used
		if ep.inflight {
			candidates = all
		}
		seen := map[int]uint64{} // items of each fd number so far: toff
		for i, it := range ep.ep {
			toff := seen[it.FD]
			seen[it.FD]++
			ds, err := d.epollTargetLocked(ep, it, toff, candidates)
			if err != nil {
				return err
			}
			if ds == nil {
				return &UnsupportedError{PID: ep.pid, FD: ep.rec.Num, Resource: "epoll",
					Detail: fmt.Sprintf("the item registered as fd %d watches a file no process of the tree holds", it.FD)}
			}
			ep.rec.Epoll[i].Desc = ds.id
		}
	}
	return nil
}

// epollTargetLocked finds the description an epoll item watches, among
// those of the tree with its inode, by KCMP_EPOLL_TFD on ferry's copies.
func (d *Dumper) epollTargetLocked(ep *desc, it procfs.EpollTarget, toff uint64, used []*desc) (*desc, error) {
	self := os.Getpid()
	epPID, epFD := ep.pid, ep.rec.Num
	if ep.inflight {
		epPID, epFD = self, ep.fd // only ferry holds it
	}
	for _, ds := range used {
		if ds.rec.Ino != it.Ino || ds.rec.Dev != it.Dev {
			continue
		}
		same, err := kernel.KcmpEpollTfd(self, ds.fd, epPID, epFD, it.FD, toff)
		if err != nil {
			return nil, fmt.Errorf("pid %d epoll fd %d item fd %d: %w", ep.pid, ep.rec.Num, it.FD, err)
		}
		if same {
			return ds, nil
		}
	}
	return nil, nil
}

// Objects returns the content of unlinked files and memfds seen so far, to
// be stored as FileData: FileID → a file open for reading, each its own
// description (read it with ReadAt or from offset 0). The Dumper owns the
// files; Close closes them.
func (d *Dumper) Objects() map[string]*os.File {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[string]*os.File, len(d.objects))
	for k, v := range d.objects {
		m[k] = v
	}
	return m
}

// Kept returns ferry's duplicate of every pipe, FIFO and unix socket
// description, keyed by Desc, for an in-process restore (NewRestorer's
// inherit) that wants the very same pipes and sockets. Other kinds are
// recreated or reopened anyway, and a kept duplicate of a file would keep
// its flock and OFD locks from the restored process. The Dumper owns the
// files; Close closes them. Do not call Fd on them: it clears O_NONBLOCK
// on the shared description (use RawFD).
func (d *Dumper) Kept() map[string]*os.File {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := make(map[string]*os.File, len(d.descs))
	for id, ds := range d.descs {
		switch ds.rec.Kind {
		case image.FDPipe, image.FDFIFO, image.FDUnix:
		default:
			continue
		}
		if ds.file == nil {
			ds.file = os.NewFile(uintptr(ds.fd), ds.link)
		}
		m[id] = ds.file
	}
	return m
}

// Close releases every duplicate and content file.
func (d *Dumper) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil
	}
	d.closed = true
	var errs []error
	for _, ds := range d.descs {
		if ds.file != nil {
			errs = append(errs, ds.file.Close())
		} else {
			errs = append(errs, unix.Close(ds.fd))
		}
	}
	for _, f := range d.objects {
		errs = append(errs, f.Close())
	}
	d.descs, d.byObj, d.objects = nil, nil, nil
	return errors.Join(errs...)
}

// RawFD returns f's descriptor number without the side effect of
// os.File.Fd, which puts a non-blocking description into blocking mode
// (and the description may be shared with a target process).
func RawFD(f *os.File) int {
	fd := -1
	if rc, err := f.SyscallConn(); err == nil {
		_ = rc.Control(func(u uintptr) { fd = int(u) })
	}
	return fd
}

func pidfdGetfd(pidfd, num int) (int, error) {
	for {
		fd, err := unix.PidfdGetfd(pidfd, num, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, os.NewSyscallError("pidfd_getfd", err)
		}
		return fd, nil
	}
}
