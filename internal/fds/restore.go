package fds

import (
	"crypto/rand"
	"encoding/binary"
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

// Install is one fd to put into a restored process.
type Install struct {
	Num     int      // the fd number in the target
	File    *os.File // the open file description (get its number with RawFD, not Fd)
	CloExec bool
}

// Injector runs system calls inside the target process; the restore engine
// provides it. Used for what must happen in the target with the target's
// own fd numbers (epoll registration, POSIX record locks).
type Injector interface {
	// Syscall executes system call nr with args in the target and returns
	// its result, or the errno as an error.
	Syscall(nr uintptr, args ...uint64) (uint64, error)
	// Scratch writes b into target memory and returns its address, valid
	// until the next Scratch call.
	Scratch(b []byte) (uint64, error)
}

// Restorer recreates the open file descriptions of a checkpointed tree
// inside ferry (Prepare), hands them out per process (Files) and, once the
// engine has installed them, fills epoll instances from inside the target
// (Finish).
type Restorer struct {
	log *slog.Logger
	// BootID is the boot id of the machine the image was taken on
	// (image.Checkpoint.BootID): a removed block device node is made
	// again only on that very boot.
	BootID string
	// NoLiveScan forbids looking for live holders of External pipes and
	// sockets in /proc. Set it when the image was taken on another machine:
	// inode numbers are only meaningful where they were read.
	NoLiveScan bool
	// MsgConnect makes a message-endpoint connection (image.FDMsg) again:
	// called by Prepare once per such description, before any process
	// exists, with its MsgID and MsgUnread, it returns a new unix
	// SOCK_SEQPACKET socket connected to the node's endpoint, whose
	// receive queue holds (or will hold, before any newer packet) the
	// unread packets in order — the node re-sends them first. More than
	// the socket buffer holds can only be sent once the process runs and
	// reads, so a hook must not wait for all of its writes. The Restorer
	// owns the file (closed by Close; installed copies stay in the
	// targets) and gives it the recorded flags and options. Nil: an image
	// holding such a connection is refused with a *NoMsgConnectError.
	MsgConnect func(id string, unread [][]byte) (*os.File, error)

	procs   []*image.Process
	byPID   map[int]*image.Process
	inherit map[string]*os.File
	objects map[string]*os.File

	mu          sync.Mutex           // guards the fields below
	descs       map[string]*image.FD // Desc → full record
	order       []string             // Descs in first-appearance order
	first       map[string]holder    // Desc → first (pid, num)
	pipeMembers map[string][]string  // PipeID → Descs
	files       map[string]*os.File  // Desc → description to install
	owned       []*os.File           // closed by Close
	objs        map[string]*os.File  // FileID → recreated memfd / unlinked file
	epollAt     map[string]int       // epoll Desc → pid whose numbers register its items
	epollDone   map[string]bool
	asyncDone   map[string]bool         // owner, signal and O_ASYNC set (Finish)
	lateErr     map[holder]error        // why Files has no file for an fd (pidfds)
	credPairs   []*credPair             // socketpairs Finish makes again in their creator
	handedOut   map[int]bool            // PIDs whose Files were taken
	inflight    map[string]bool         // Descs only socket queues hold
	late        map[string]func() error // queues FillLate fills, by Desc (a pair made again replaces its entry)
	lateOrder   []string
	lateClose   []*os.File // peers that were closed, once their queue is filled
	lateNow     bool
	dgrams      []*image.FD       // named or name-connected datagram sockets (connectDgramsLocked)
	ghostRoots  map[string]string // Desc → scratch root it is bound under (SockGone)
	preparing   map[string]bool   // Descs whose prepare is under way
	preShut     map[string]bool   // clients shut down before they connected (setupSocket leaves them)
	pidMap      map[int]int       // image PID or TID → the one it has now (MapPID)
	tmpfileFree map[string]int    // O_TMPFILE objects whose own description no fd took yet → its access mode
	threadFDs   []threadFD        // thread pidfds put in once the thread exists (ThreadPidfds)
	placeholder *os.File          // what holds their numbers until then
	setupErr    error
}

// NewRestorer prepares to restore the fds of procs (records as written by
// Dumper.Finish) and the descriptions in flight in their socket queues
// (Dumper.InFlight, image.Checkpoint.InFlight). inherit maps a Desc, or "pipe:"+PipeID, to an open file
// to reuse instead of recreating it — used for pipes, FIFOs and unix
// sockets (from Dumper.Kept in the same ferry process, or supplied by the
// caller); the caller keeps ownership. objects maps a FileID to a file
// holding the content of a memfd or unlinked file (read with ReadAt from
// offset 0); the caller keeps ownership.
func NewRestorer(log *slog.Logger, procs []*image.Process, inflight []image.FD, inherit map[string]*os.File, objects map[string]*os.File) *Restorer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Restorer{
		log:         log,
		procs:       procs,
		byPID:       make(map[int]*image.Process),
		inherit:     inherit,
		objects:     objects,
		descs:       make(map[string]*image.FD),
		first:       make(map[string]holder),
		asyncDone:   make(map[string]bool),
		lateErr:     make(map[holder]error),
		pipeMembers: make(map[string][]string),
		files:       make(map[string]*os.File),
		objs:        make(map[string]*os.File),
		epollAt:     make(map[string]int),
		epollDone:   make(map[string]bool),
		handedOut:   make(map[int]bool),
		inflight:    make(map[string]bool),
		late:        make(map[string]func() error),
		preparing:   make(map[string]bool),
		preShut:     make(map[string]bool),
		pidMap:      make(map[int]int),
		tmpfileFree: make(map[string]int),
		ghostRoots:  make(map[string]string),
	}
	for _, p := range procs {
		r.byPID[p.PID] = p
		for i := range p.FDs {
			fd := &p.FDs[i]
			if fd.Desc == "" {
				r.setupErr = errors.Join(r.setupErr, fmt.Errorf("pid %d fd %d: record has no Desc", p.PID, fd.Num))
				continue
			}
			if _, ok := r.first[fd.Desc]; !ok {
				r.first[fd.Desc] = holder{pid: p.PID, num: fd.Num}
				r.order = append(r.order, fd.Desc)
			}
			if fd.Kind != "" && r.descs[fd.Desc] == nil {
				r.descs[fd.Desc] = fd
				if fd.Kind == image.FDPipe || fd.Kind == image.FDFIFO {
					r.pipeMembers[fd.PipeID] = append(r.pipeMembers[fd.PipeID], fd.Desc)
				}
			}
		}
	}
	for i := range inflight {
		fd := &inflight[i]
		switch {
		case fd.Desc == "" || fd.Kind == "":
			r.setupErr = errors.Join(r.setupErr, fmt.Errorf("description in flight %q has no full record", fd.Desc))
			continue
		case r.descs[fd.Desc] != nil:
			r.setupErr = errors.Join(r.setupErr, fmt.Errorf("description %s in flight is also held by a process", fd.Desc))
			continue
		}
		r.descs[fd.Desc] = fd
		r.first[fd.Desc] = holder{num: -1}
		r.order = append(r.order, fd.Desc)
		r.inflight[fd.Desc] = true
		if fd.Kind == image.FDPipe || fd.Kind == image.FDFIFO {
			r.pipeMembers[fd.PipeID] = append(r.pipeMembers[fd.PipeID], fd.Desc)
		}
	}
	// Name, for messages, the process holding the socket each file is in
	// flight in (the outer socket first, when sockets travel in sockets).
	for _, id := range r.order {
		rec := r.descs[id]
		if rec == nil {
			continue
		}
		for _, ids := range rec.SockRights {
			for _, in := range ids {
				if r.descs[in] == nil {
					r.setupErr = errors.Join(r.setupErr, fmt.Errorf("%s: file in flight %s has no record", id, in))
				} else if h := r.first[in]; r.inflight[in] && h.pid == 0 {
					r.first[in] = holder{pid: r.first[id].pid, num: -1}
				}
			}
		}
	}
	for _, id := range r.order {
		if r.descs[id] == nil {
			h := r.first[id]
			r.setupErr = errors.Join(r.setupErr, fmt.Errorf("pid %d fd %d: description %s has no full record", h.pid, h.num, id))
		}
	}
	return r
}

// Prepare creates every open file description of the tree inside ferry.
// On error the caller still calls Close.
func (r *Restorer) Prepare() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.setupErr != nil {
		return r.setupErr
	}
	if err := r.checkMsgLocked(); err != nil {
		return err
	}
	// Connections whose listener is gone first: each is made through a
	// listener of ferry's own at its name, before one of the tree may
	// take that name.
	for _, id := range r.order {
		if rec := r.descs[id]; rec.Kind == image.FDUnix && rec.SockAccepted && rec.SockListener == "" && !r.inflight[id] {
			if err := r.prepareDescLocked(id); err != nil {
				return err
			}
		}
	}
	for _, id := range r.order {
		if r.inflight[id] {
			continue // with the queue it is in flight in
		}
		if err := r.prepareDescLocked(id); err != nil {
			return err
		}
	}
	if err := r.connectDgramsLocked(); err != nil {
		return err
	}
	if len(r.late) == 0 {
		if err := r.removeGhostsLocked(); err != nil {
			return err
		}
	} // else once FillLate reached them
	if err := r.prepareCwdsLocked(); err != nil {
		return err
	}
	if err := r.takeDescLocksLocked(); err != nil {
		return err
	}
	return r.assignEpollLocked()
}

// prepareDescLocked creates description id inside ferry, unless it exists.
// A description in flight in a queue is made when that queue is filled;
// preparing marks those under way, so that a queue holding a file whose
// own making needs that queue filled first is an error, not a loop.
func (r *Restorer) prepareDescLocked(id string) error {
	if _, ok := r.files[id]; ok {
		return nil
	}
	if r.preparing[id] {
		return fmt.Errorf("description %s is in flight in a queue that cannot be filled before it exists", id)
	}
	r.preparing[id] = true
	defer delete(r.preparing, id)
	rec := r.descs[id]
	if rec == nil {
		return fmt.Errorf("description %s has no record", id)
	}
	if _, ok := r.procPathLocked(rec); ok {
		return nil // once its process exists (Files)
	}
	var err error
	switch rec.Kind {
	case image.FDBlock:
		// Only a removed node: its number names this very device on the
		// boot of the dump only.
		if !rec.Unlinked {
			err = r.preparePathLocked(rec)
		} else if r.BootID == "" || r.BootID != currentBootID() {
			err = fmt.Errorf("block device %d:%d was opened through a node since removed: its number names a device of the machine and boot of the dump, not this one",
				unix.Major(rec.Rdev), unix.Minor(rec.Rdev))
		} else {
			err = r.prepareGoneLocked(rec)
		}
	case image.FDFile, image.FDDir, image.FDChar:
		switch {
		case rec.Unlinked && rec.Kind == image.FDFile:
			err = r.prepareObjectLocked(rec)
		case rec.Unlinked:
			err = r.prepareGoneLocked(rec)
		default:
			err = r.preparePathLocked(rec)
		}
	case image.FDMemfd:
		err = r.prepareObjectLocked(rec)
	case image.FDPipe, image.FDFIFO:
		err = r.preparePipeLocked(rec)
	case image.FDEventfd:
		err = r.prepareEventfdLocked(rec)
	case image.FDTimerfd:
		err = r.prepareTimerfdLocked(rec)
	case image.FDSignalfd:
		err = r.prepareSignalfdLocked(rec)
	case image.FDEpoll:
		err = r.prepareEpollLocked(rec)
	case image.FDUnix:
		err = r.prepareUnixLocked(rec)
	case image.FDPidfd:
		return nil // once its process exists (Files)
	case image.FDMsg:
		err = r.prepareMsgLocked(rec)
		var nm *NoMsgConnectError
		if errors.As(err, &nm) {
			return err // names the fd already
		}
	case image.FDInotify:
		err = r.prepareInotifyLocked(rec)
	case image.FDFanotify:
		err = r.prepareFanotifyLocked(rec)
	default:
		err = fmt.Errorf("unknown kind %q", rec.Kind)
	}
	if err != nil {
		h := r.first[id]
		if h.num < 0 {
			return fmt.Errorf("restore %s in flight in a socket of pid %d (%s): %w", id, h.pid, describe(rec), err)
		}
		return fmt.Errorf("restore pid %d fd %d (%s): %w", h.pid, h.num, describe(rec), err)
	}
	return nil
}

// takeDescLocksLocked takes the flock and OFD locks of every description
// on ferry's file: they belong to the description, and so to the target
// once it is installed. The checkpointed processes must be gone by now
// (their descriptions closed), or the locks are still theirs.
func (r *Restorer) takeDescLocksLocked() error {
	for _, id := range r.order {
		rec := r.descs[id]
		if r.files[id] == nil {
			continue // a pidfd (none are locked), or in flight in a socket that was inherited
		}
		for _, l := range rec.Locks {
			if l.Kind == image.LockPOSIX || l.Kind == image.LockLease {
				continue // taken by the owner or first holder, in Finish
			}
			if l.Kind == image.LockFlock && r.byPID[l.PID] != nil {
				continue // taken by its taker, in Finish (/proc/locks names it)
			}
			if err := takeDescLock(RawFD(r.files[id]), l); err != nil {
				h := r.first[id]
				return fmt.Errorf("restore pid %d fd %d (%s): %w", h.pid, h.num, describe(rec), err)
			}
		}
	}
	return nil
}

// takeFlocksLocked makes pid take again the flocks it took: the lock is
// the description's, but /proc/locks names the process that took it. One
// it took on a description it no longer holds is taken through the file
// put in for a moment.
func (r *Restorer) takeFlocksLocked(p *image.Process, inj Injector) error {
	for _, id := range r.order {
		rec := r.descs[id]
		if r.files[id] == nil {
			continue
		}
		for _, l := range rec.Locks {
			if l.Kind != image.LockFlock || l.PID != p.PID {
				continue
			}
			num := -1
			for _, fd := range p.FDs {
				if fd.Desc == id {
					num = fd.Num
					break
				}
			}
			tmp := false
			if num < 0 {
				in, ok := inj.(Installer)
				if !ok {
					return fmt.Errorf("pid %d: flock on %s: the taker no longer holds the file and this injector cannot install it", p.PID, describe(rec))
				}
				t, err := in.Install(r.files[id])
				if err != nil {
					return err
				}
				num, tmp = int(t), true
			}
			how := uint64(unix.LOCK_SH)
			if l.Type == image.LockWrite {
				how = unix.LOCK_EX
			}
			_, err := inj.Syscall(unix.SYS_FLOCK, uint64(num), how|unix.LOCK_NB)
			if tmp {
				inj.Syscall(unix.SYS_CLOSE, uint64(num))
			}
			if err != nil {
				h := r.first[id]
				return fmt.Errorf("restore pid %d fd %d (%s): %w", h.pid, h.num, describe(rec),
					lockError(RawFD(r.files[id]), l, os.NewSyscallError("flock", err)))
			}
		}
	}
	return nil
}

// takePosixLocksLocked makes pid take, through inj, the POSIX locks it
// held: they belong to the process, so it must take them itself, on its
// own fd numbers.
func (r *Restorer) takePosixLocksLocked(p *image.Process, inj Injector) error {
	for _, fd := range p.FDs {
		for _, l := range fd.Locks {
			if l.Kind != image.LockPOSIX {
				continue
			}
			if err := takePosixLock(inj, fd.Num, RawFD(r.files[fd.Desc]), l); err != nil {
				return fmt.Errorf("pid %d fd %d (%s): %w", p.PID, fd.Num, describe(r.descs[fd.Desc]), err)
			}
		}
	}
	return nil
}

func describe(rec *image.FD) string {
	switch {
	case rec.Kind == image.FDPipe:
		return "pipe:[" + rec.PipeID + "]"
	case rec.Kind == image.FDMsg:
		return "message endpoint " + rec.MsgID
	case rec.Path != "":
		return rec.Kind + " " + rec.Path
	}
	return rec.Kind
}

// Files returns, after Prepare, what to install into pid: every fd with
// its description and close-on-exec flag. Several entries may share one
// *os.File (a shared description). The Restorer owns the files.
func (r *Restorer) Files(pid int) []Install {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.byPID[pid]
	if p == nil {
		return nil
	}
	r.handedOut[pid] = true
	out := make([]Install, 0, len(p.FDs))
	for _, fd := range p.FDs {
		rec := r.descs[fd.Desc]
		if r.files[fd.Desc] == nil && rec != nil && rec.Kind == image.FDPidfd && r.threadLocked(rec.PidfdPID) {
			// A thread's pidfd (PIDFD_THREAD): the thread comes later.
			ph, err := r.placeholderLocked()
			if err != nil {
				r.lateErr[holder{pid, fd.Num}] = err
			}
			r.threadFDs = append(r.threadFDs, threadFD{pid: pid, num: fd.Num, cloexec: fd.CloExec, desc: fd.Desc})
			out = append(out, Install{Num: fd.Num, File: ph, CloExec: fd.CloExec})
			continue
		}
		if r.files[fd.Desc] == nil && rec != nil && rec.Kind == image.FDPidfd {
			if err := r.preparePidfdLocked(rec); err != nil {
				r.lateErr[holder{pid, fd.Num}] = err
			}
		}
		if path, ok := r.procPathLocked(rec); ok && r.files[fd.Desc] == nil {
			// A file of a process of the tree under /proc, which exists
			// now (threads come later: one of a thread fails here).
			at := *rec
			at.Path = path
			if err := r.preparePathLocked(&at); err != nil {
				r.lateErr[holder{pid, fd.Num}] = fmt.Errorf("restore %s: %w", rec.Path, err)
			}
		}
		out = append(out, Install{Num: fd.Num, File: r.files[fd.Desc], CloExec: fd.CloExec})
	}
	return out
}

// Object returns the recreated memfd or unlinked file for FileID id (nil
// if no fd of the tree refers to it), so that the restore engine can map
// the very object the fds refer to. Valid until Close.
func (r *Restorer) Object(id string) *os.File {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.objs[id]
}

// Finish runs once pid's files are installed at their numbers. Through
// inj (executing in pid) it first makes again the socketpairs pid had
// created, so that SO_PEERCRED names pid (see credPair), replacing them at
// pid's fd numbers and for processes whose Files were not taken yet. Then
// it registers the items of each epoll instance assigned to pid — with
// EPOLL_CTL_ADD on pid's own fd numbers, since epoll keys items by file
// and fd number. Each epoll instance is filled once, in the first process
// holding it that has every item's fd. Last, pid takes the POSIX record
// locks it held (F_SETLK on its fd numbers); nothing may close an fd of a
// locked file in pid afterwards, since that releases them.
func (r *Restorer) Finish(pid int, inj Injector) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.byPID[pid]
	if p == nil {
		return fmt.Errorf("pid %d is not part of the restored tree", pid)
	}
	if err := r.recreatePairsLocked(p, inj); err != nil {
		return err
	}
	for _, fd := range p.FDs {
		id := fd.Desc
		if r.epollAt[id] != pid || r.epollDone[id] {
			continue
		}
		items := r.descs[id].Epoll
		buf := make([]byte, kernel.SizeofEpollEvent*len(items))
		for i, it := range items {
			kernel.PutEpollEvent(buf[i*kernel.SizeofEpollEvent:], it.Events, it.Data)
		}
		addr, err := inj.Scratch(buf)
		if err != nil {
			return fmt.Errorf("pid %d epoll fd %d: write epoll_event array: %w", pid, fd.Num, err)
		}
		byNum := make(map[int]string, len(p.FDs))
		for _, f := range p.FDs {
			byNum[f.Num] = f.Desc
		}
		for i, it := range items {
			ev := addr + uint64(i*kernel.SizeofEpollEvent)
			var err error
			if it.Desc == "" || byNum[it.FD] == it.Desc {
				_, err = inj.Syscall(unix.SYS_EPOLL_CTL, uint64(fd.Num), unix.EPOLL_CTL_ADD, uint64(it.FD), ev)
			} else {
				err = r.addDetachedLocked(inj, fd.Num, it, ev)
			}
			if err != nil {
				return fmt.Errorf("pid %d epoll fd %d: add fd %d (events %#x): %w", pid, fd.Num, it.FD, it.Events, err)
			}
		}
		r.epollDone[id] = true
	}
	if err := r.setAsyncLocked(p, inj); err != nil {
		return err
	}
	if err := r.takeLeasesLocked(p, inj); err != nil {
		return err
	}
	if err := r.takeFlocksLocked(p, inj); err != nil {
		return err
	}
	return r.takePosixLocksLocked(p, inj)
}

// takeLeasesLocked makes pid set again, on its own fd numbers, the leases
// of the descriptions it is the first holder of: the kernel names the
// setter in /proc/locks, and sends it the lease-break signal unless the
// file has another owner (set before, by setAsyncLocked).
func (r *Restorer) takeLeasesLocked(p *image.Process, inj Injector) error {
	for _, fd := range p.FDs {
		if r.first[fd.Desc] != (holder{pid: p.PID, num: fd.Num}) {
			continue
		}
		for _, l := range r.descs[fd.Desc].Locks {
			if l.Kind != image.LockLease {
				continue
			}
			typ := uint64(unix.F_RDLCK)
			if l.Type == image.LockWrite {
				typ = unix.F_WRLCK
			}
			if _, err := inj.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_SETLEASE, typ); err != nil {
				return fmt.Errorf("pid %d fd %d: lease %s on %s: %w", p.PID, fd.Num, l.Type, describe(r.descs[fd.Desc]), err)
			}
		}
	}
	return nil
}

// FileErr tells why Files gave no File for fd num of pid.
func (r *Restorer) FileErr(pid, num int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.lateErr[holder{pid, num}]; err != nil {
		return err
	}
	return errors.New("no file was made for it")
}

// preparePidfdLocked opens the pidfd rec names, once its process exists.
func (r *Restorer) preparePidfdLocked(rec *image.FD) error {
	flags := rec.Flags & (unix.O_NONBLOCK | unix.O_EXCL) // PIDFD_NONBLOCK, PIDFD_THREAD
	pid := r.pidLocked(rec.PidfdPID)
	fd, err := unix.PidfdOpen(pid, flags)
	if err != nil {
		return fmt.Errorf("pidfd_open(%d, %#x): %w", pid, flags, err)
	}
	unix.CloseOnExec(fd)
	r.files[rec.Desc] = r.keepLocked(fd, "anon_inode:[pidfd]")
	return nil
}

// threadFD is an fd number that is to get a thread's pidfd.
type threadFD struct {
	pid, num int
	cloexec  bool
	desc     string
}

// threadLocked reports whether tid is a thread, not a thread leader, of a
// process of the tree.
func (r *Restorer) threadLocked(tid int) bool {
	return r.byPID[tid] == nil && r.inTreeLocked(tid)
}

// placeholderLocked is the file that keeps a thread pidfd's number taken
// until ThreadPidfds puts the pidfd there.
func (r *Restorer) placeholderLocked() (*os.File, error) {
	if r.placeholder == nil {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("placeholder for a thread's pidfd: %w", err)
		}
		r.placeholder = r.keepLocked(fd, "/dev/null")
	}
	return r.placeholder, nil
}

// ThreadPidfds puts into pid (whose threads exist now, with their TIDs
// given to MapPID) the pidfds of its threads that Files could only hold
// places for.
func (r *Restorer) ThreadPidfds(pid int, in Installer) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, t := range r.threadFDs {
		if t.pid != pid {
			continue
		}
		if r.files[t.desc] == nil {
			if err := r.preparePidfdLocked(r.descs[t.desc]); err != nil {
				return fmt.Errorf("fd %d: %w", t.num, err)
			}
		}
		tfd, err := in.Install(r.files[t.desc])
		if err != nil {
			return fmt.Errorf("fd %d: %w", t.num, err)
		}
		var flags uint64
		if t.cloexec {
			flags = unix.O_CLOEXEC
		}
		if _, err := in.Syscall(unix.SYS_DUP3, tfd, uint64(t.num), flags); err != nil {
			return fmt.Errorf("fd %d: dup3 of the thread's pidfd: %w", t.num, err)
		}
		in.Syscall(unix.SYS_CLOSE, tfd)
	}
	return nil
}

// Installer is an Injector that can also put one of ferry's files into
// the target (the restore engine's injector).
type Installer interface {
	Injector
	// Install duplicates f into the target at a free fd number.
	Install(f *os.File) (uint64, error)
}

// addDetachedLocked registers an epoll item whose fd number no longer
// names its file in the target: the file is put at that number for the
// EPOLL_CTL_ADD (the kernel keys the item by file and number), then the
// number gets back what it held (or is closed). The item lives on with
// the file.
func (r *Restorer) addDetachedLocked(inj Injector, epfd int, it image.EpollItem, ev uint64) error {
	in, ok := inj.(Installer)
	if !ok {
		return errors.New("the item's file is not at its number and this injector cannot install files")
	}
	f := r.files[it.Desc]
	if f == nil {
		return fmt.Errorf("the file of the item (%s) was not restored", it.Desc)
	}
	tmp, err := in.Install(f)
	if err != nil {
		return err
	}
	num := uint64(it.FD)
	saved, savedFlags := int64(-1), uint64(0)
	if fl, err := inj.Syscall(unix.SYS_FCNTL, num, unix.F_GETFD); err == nil {
		s, err := inj.Syscall(unix.SYS_FCNTL, num, unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("keep fd %d aside: %w", num, err)
		}
		saved, savedFlags = int64(s), fl
	}
	if tmp != num {
		if _, err := inj.Syscall(unix.SYS_DUP3, tmp, num, 0); err != nil {
			return fmt.Errorf("put the item's file at fd %d: %w", num, err)
		}
		inj.Syscall(unix.SYS_CLOSE, tmp)
	}
	_, addErr := inj.Syscall(unix.SYS_EPOLL_CTL, uint64(epfd), unix.EPOLL_CTL_ADD, num, ev)
	if saved >= 0 {
		var flags uint64
		if savedFlags&unix.FD_CLOEXEC != 0 {
			flags = unix.O_CLOEXEC
		}
		if _, err := inj.Syscall(unix.SYS_DUP3, uint64(saved), num, flags); err != nil {
			return fmt.Errorf("give fd %d back: %w", num, err)
		}
		inj.Syscall(unix.SYS_CLOSE, uint64(saved))
	} else {
		inj.Syscall(unix.SYS_CLOSE, num)
	}
	return addErr
}

// credsLocked returns rec's queued credentials with the PIDs they have now.
func (r *Restorer) credsLocked(rec *image.FD) []image.SockCred {
	if rec.SockCreds == nil || len(r.pidMap) == 0 {
		return rec.SockCreds
	}
	out := slices.Clone(rec.SockCreds)
	for i := range out {
		if out[i].PID != 0 {
			out[i].PID = int32(r.pidLocked(int(out[i].PID)))
		}
	}
	return out
}

// currentBootID returns this machine's boot id ("" if unknown).
func currentBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// withoutPassCred runs fn with SO_PASSCRED off on fds, and puts it back:
// with it on at either end the kernel gives every message the sender's
// credentials, also the ones that came with none.
func withoutPassCred(fds []int, fn func() error) error {
	var on []int
	for _, fd := range fds {
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED); err == nil && v != 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 0); err != nil {
				return os.NewSyscallError("setsockopt(SO_PASSCRED)", err)
			}
			on = append(on, fd)
		}
	}
	err := fn()
	for _, fd := range on {
		if e := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); e != nil && err == nil {
			err = os.NewSyscallError("setsockopt(SO_PASSCRED)", e)
		}
	}
	return err
}

// procPathLocked tells whether rec is a file or directory under
// /proc/PID of a process of the tree (/proc/self/status, the /proc/self
// directory, /proc/CHILD/stat), which can be opened only once that
// process exists, and returns its path with the PID it has now.
func (r *Restorer) procPathLocked(rec *image.FD) (string, bool) {
	if rec == nil || rec.Unlinked || rec.Kind != image.FDFile && rec.Kind != image.FDDir {
		return "", false
	}
	rest, ok := strings.CutPrefix(rec.Path, "/proc/")
	if !ok {
		return "", false
	}
	num, tail, _ := strings.Cut(rest, "/")
	pid, err := strconv.Atoi(num)
	if err != nil || !r.inTreeLocked(pid) {
		return "", false
	}
	path := "/proc/" + strconv.Itoa(r.pidLocked(pid))
	if tail != "" || strings.HasSuffix(rest, "/") {
		path += "/" + tail
	}
	return path, true
}

// inTreeLocked tells whether pid is a process or thread of the tree.
func (r *Restorer) inTreeLocked(pid int) bool {
	if r.byPID[pid] != nil {
		return true
	}
	for _, p := range r.procs {
		for _, th := range p.Threads {
			if th.TID == pid {
				return true
			}
		}
	}
	return false
}

// MapPID tells the Restorer that the process or thread the image calls
// old is now new (a restore that could not keep PIDs: --new-pids), for
// what names one by number: pidfds, owners of signal-driven I/O,
// credentials queued with socket messages.
func (r *Restorer) MapPID(old, new int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if old != new {
		r.pidMap[old] = new
	}
}

// pidLocked returns the number image PID (or TID) old has now.
func (r *Restorer) pidLocked(old int) int {
	if n, ok := r.pidMap[old]; ok {
		return n
	}
	return old
}

// deferLocked keeps fill for FillLate, in place of an earlier one for id.
func (r *Restorer) deferLocked(id string, fill func() error) {
	if _, ok := r.late[id]; !ok {
		r.lateOrder = append(r.lateOrder, id)
	}
	r.late[id] = fill
}

// FillLate fills, once every process of the tree exists and before any
// runs, the socket queues whose messages carry credentials: SCM_CREDENTIALS
// may name only a live process. Then it closes the peers that had been
// closed. Call it after the last Finish, before SignalIO (filling a
// queue raises SIGIO).
func (r *Restorer) FillLate() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lateNow = true
	for _, id := range r.lateOrder {
		fill := r.late[id]
		if fill == nil {
			continue
		}
		delete(r.late, id)
		if err := fill(); err != nil {
			h := r.first[id]
			return fmt.Errorf("restore pid %d fd %d (%s): %w", h.pid, h.num, describe(r.descs[id]), err)
		}
	}
	var errs []error
	for _, f := range r.lateClose {
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	r.lateClose = nil
	errs = append(errs, r.removeGhostsLocked())
	return errors.Join(errs...)
}

// SignalIO gives every description its owner, signal and O_ASYNC back
// (signal-driven I/O), once every process and thread of the tree exists:
// the owner may be any of them.
func (r *Restorer) SignalIO() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		if err := r.signalIOLocked(p); err != nil {
			return err
		}
	}
	return nil
}

func (r *Restorer) signalIOLocked(p *image.Process) error {
	for _, fd := range p.FDs {
		id := fd.Desc
		rec := r.descs[id]
		if r.asyncDone[id] || r.first[id].pid != p.PID || rec == nil || r.files[id] == nil {
			continue
		}
		r.asyncDone[id] = true
		raw := RawFD(r.files[id])
		if rec.Sig != 0 {
			if _, err := unix.FcntlInt(uintptr(raw), unix.F_SETSIG, rec.Sig); err != nil {
				return fmt.Errorf("pid %d fd %d: F_SETSIG %d: %w", p.PID, fd.Num, rec.Sig, err)
			}
		}
		if rec.OwnerPID != 0 {
			o := kernel.FOwnerEx{Type: int32(rec.OwnerType), PID: int32(r.pidLocked(rec.OwnerPID))}
			if err := kernel.SetOwnerEx(raw, o); err != nil {
				return fmt.Errorf("pid %d fd %d: owner type %d id %d: %w", p.PID, fd.Num, rec.OwnerType, rec.OwnerPID, err)
			}
		}
	}
	return nil
}

// setAsyncLocked sets O_ASYNC on the descriptions pid holds first,
// through the target and its own fd number: the kernel remembers that
// number (a signal's si_fd). Their owner comes later (SignalIO).
func (r *Restorer) setAsyncLocked(p *image.Process, inj Injector) error {
	for _, fd := range p.FDs {
		rec := r.descs[fd.Desc]
		if rec == nil || rec.Flags&unix.O_ASYNC == 0 || r.first[fd.Desc].pid != p.PID || r.first[fd.Desc].num != fd.Num {
			continue
		}
		cur, err := inj.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_GETFL)
		if err != nil {
			return fmt.Errorf("pid %d fd %d: fcntl(F_GETFL): %w", p.PID, fd.Num, err)
		}
		if _, err := inj.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_SETFL, cur|unix.O_ASYNC); err != nil {
			return fmt.Errorf("pid %d fd %d: O_ASYNC: %w", p.PID, fd.Num, err)
		}
	}
	return nil
}

// Close releases every file the Restorer created (inherited and object
// files stay with the caller). Files already installed in a target stay
// open there.
func (r *Restorer) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, f := range r.owned {
		if err := f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
			errs = append(errs, err)
		}
	}
	r.owned = nil
	r.files = make(map[string]*os.File)
	r.objs = make(map[string]*os.File)
	errs = append(errs, r.removeGhostsLocked()) // left by a Prepare that failed
	return errors.Join(errs...)
}

// keepLocked wraps a raw fd the Restorer created.
func (r *Restorer) keepLocked(fd int, name string) *os.File {
	f := os.NewFile(uintptr(fd), name)
	r.owned = append(r.owned, f)
	return f
}

// assignEpollLocked picks, for each epoll instance with items, the process
// whose fd numbers register them: the first holder that has an fd at every
// item's number (Dumper.Finish checked that one has the right files).
func (r *Restorer) assignEpollLocked() error {
	for _, id := range r.order {
		rec := r.descs[id]
		if rec.Kind != image.FDEpoll || len(rec.Epoll) == 0 || r.inflight[id] {
			continue // one in flight is filled by ferry (fillEpollHereLocked)
		}
		// Best a holder whose fd numbers name every item's file (plain
		// EPOLL_CTL_ADD); else any holder, when the image says which file
		// each item watches (Finish puts it at the number for a moment).
		any := 0
		for _, p := range r.procs {
			byNum := make(map[int]string, len(p.FDs))
			holds := false
			for _, fd := range p.FDs {
				byNum[fd.Num] = fd.Desc
				holds = holds || fd.Desc == id
			}
			if !holds {
				continue
			}
			if any == 0 {
				any = p.PID
			}
			all := true
			for _, it := range rec.Epoll {
				d, ok := byNum[it.FD]
				all = all && ok && (it.Desc == "" || d == it.Desc)
			}
			if all {
				r.epollAt[id] = p.PID
				break
			}
		}
		if _, ok := r.epollAt[id]; !ok {
			known := any != 0
			for _, it := range rec.Epoll {
				known = known && it.Desc != "" && r.descs[it.Desc] != nil
			}
			if !known {
				h := r.first[id]
				return fmt.Errorf("restore pid %d fd %d (epoll): no process holding it has all of its items' fds", h.pid, h.num)
			}
			r.epollAt[id] = any
		}
	}
	return nil
}

// Flags that F_SETFL can change (fs/fcntl.c, SETFL_MASK).
const setflMask = unix.O_APPEND | unix.O_NONBLOCK | unix.O_DIRECT | unix.O_NOATIME

// setStatusFlags makes fd's changeable file status flags those of want.
func (r *Restorer) setStatusFlags(fd, want int) error {
	cur, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return os.NewSyscallError("fcntl(F_GETFL)", err)
	}
	if (cur^want)&setflMask == 0 {
		return nil
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, cur&^setflMask|want&setflMask); err != nil {
		return os.NewSyscallError("fcntl(F_SETFL)", err)
	}
	return nil
}

// openFlags turns recorded file status flags into flags for reopening.
func openFlags(f int) int {
	if f&unix.O_PATH != 0 {
		return unix.O_PATH | f&(unix.O_NOFOLLOW|unix.O_DIRECTORY) | unix.O_CLOEXEC
	}
	if f&oTmpfileOnly != 0 {
		// An O_TMPFILE file keeps __O_TMPFILE|O_DIRECTORY in f_flags;
		// reopening with them would create another temporary file.
		f &^= unix.O_TMPFILE
	}
	return f&^(unix.O_CREAT|unix.O_EXCL|unix.O_TRUNC|unix.O_CLOEXEC) | unix.O_CLOEXEC | unix.O_NOCTTY
}

// oTmpfileOnly is __O_TMPFILE (include/uapi/asm-generic/fcntl.h); unix.O_TMPFILE
// also contains O_DIRECTORY.
const oTmpfileOnly = unix.O_TMPFILE &^ unix.O_DIRECTORY

// openRetry is open(2), retried on EINTR; a path longer than PATH_MAX is
// opened piece by piece (kernel.OpenLong).
func openRetry(path string, flags int, mode uint32) (int, error) {
	if len(path) >= kernel.PathMax {
		return kernel.OpenLong(path, flags, mode)
	}
	for {
		fd, err := unix.Open(path, flags, mode)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// reopen opens a new description of the file behind ferry's fd.
func reopen(fd, flags int) (int, error) {
	nfd, err := openRetry(selfFDPath(fd), flags|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return -1, fmt.Errorf("reopen through /proc/self/fd: %w", err)
	}
	return nfd, nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFIFO:
		return "FIFO"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFLNK:
		return "symlink"
	}
	return fmt.Sprintf("mode %o", mode)
}

// preparePathLocked reopens a file, directory or device by path.
func (r *Restorer) preparePathLocked(rec *image.FD) error {
	flags := openFlags(rec.Flags)
	if rec.Kind == image.FDDir && rec.Flags&unix.O_PATH == 0 {
		flags |= unix.O_DIRECTORY
	}
	fd, err := openRetry(rec.Path, flags, 0)
	if errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("%s no longer exists", rec.Path)
	}
	if err != nil {
		return fmt.Errorf("open %s: %w", rec.Path, err)
	}
	f := r.keepLocked(fd, rec.Path)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != rec.Mode&unix.S_IFMT {
		return fmt.Errorf("%s is now a %s, was a %s", rec.Path, fileType(st.Mode), fileType(rec.Mode))
	}
	log := r.log.With("path", rec.Path)
	switch rec.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		if st.Size != rec.Size {
			log.Warn("file changed size since the checkpoint", "was", rec.Size, "now", st.Size)
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if st.Rdev != rec.Rdev {
			log.Warn("device number changed since the checkpoint",
				"was", fmt.Sprintf("%d:%d", unix.Major(rec.Rdev), unix.Minor(rec.Rdev)),
				"now", fmt.Sprintf("%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev)))
		}
	}
	if rec.Offset != 0 && rec.Flags&unix.O_PATH == 0 {
		if _, err := unix.Seek(fd, rec.Offset, io.SeekStart); err != nil {
			if rec.Kind == image.FDFile {
				return fmt.Errorf("seek %s to %d: %w", rec.Path, rec.Offset, err)
			}
			log.Warn("cannot restore offset", "offset", rec.Offset, "err", err)
		}
	}
	r.files[rec.Desc] = f
	return nil
}

// prepareObjectLocked opens a new description of a recreated memfd or
// unlinked file, with the recorded flags and offset.
func (r *Restorer) prepareObjectLocked(rec *image.FD) error {
	obj, err := r.objectLocked(rec)
	if err != nil {
		return err
	}
	var fd int
	if acc, ok := r.tmpfileFree[rec.FileID]; ok && rec.Flags&unix.O_ACCMODE == acc {
		// The O_TMPFILE description itself (a reopen loses the flag).
		delete(r.tmpfileFree, rec.FileID)
		if fd, err = unix.FcntlInt(uintptr(RawFD(obj)), unix.F_DUPFD_CLOEXEC, 0); err != nil {
			return fmt.Errorf("dup O_TMPFILE file: %w", err)
		}
		const settable = unix.O_APPEND | unix.O_NONBLOCK | unix.O_NOATIME | unix.O_DIRECT
		if fl := rec.Flags & settable; fl != 0 {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, fl); err != nil {
				unix.Close(fd)
				return fmt.Errorf("O_TMPFILE file flags %#o: %w", fl, err)
			}
		}
	} else if fd, err = reopen(RawFD(obj), openFlags(rec.Flags)); err != nil {
		return err
	}
	f := r.keepLocked(fd, rec.Path)
	if rec.Offset != 0 && rec.Flags&unix.O_PATH == 0 {
		if _, err := unix.Seek(fd, rec.Offset, io.SeekStart); err != nil {
			return fmt.Errorf("seek to %d: %w", rec.Offset, err)
		}
	}
	r.files[rec.Desc] = f
	return nil
}

// objectLocked recreates (once per FileID) the memfd or unlinked file rec
// refers to, filled from objects[rec.FileID].
func (r *Restorer) objectLocked(rec *image.FD) (*os.File, error) {
	if f := r.objs[rec.FileID]; f != nil {
		return f, nil
	}
	if rec.Handle != nil {
		if f := r.openByHandleLocked(rec); f != nil {
			r.objs[rec.FileID] = f
			return f, nil
		}
	}
	src := r.objects[rec.FileID]
	if src == nil {
		return nil, fmt.Errorf("no content supplied for object %s", rec.FileID)
	}
	var f *os.File
	var err error
	if rec.Kind == image.FDMemfd {
		f, err = r.createMemfdLocked(rec, src)
	} else {
		f, err = r.createUnlinkedLocked(rec, src)
	}
	if err != nil {
		return nil, err
	}
	r.objs[rec.FileID] = f
	return f, nil
}

// openByHandleLocked opens the very inode of unlinked file rec, which
// other links still name, by its file handle, if it exists here (same
// device and inode: the machine of the dump); nil otherwise (the copy is
// made instead).
func (r *Restorer) openByHandleLocked(rec *image.FD) *os.File {
	mounts, err := procfs.Mountinfo(os.Getpid())
	if err != nil {
		return nil
	}
	mp, err := mountOf(mounts, rec.Dev)
	if err != nil {
		return nil
	}
	mfd, err := unix.Open(mp, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(rec.HandleType, rec.Handle), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		r.log.Debug("unlinked file with other links: not here, restored as a copy", "path", rec.Path, "err", err)
		return nil
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != rec.Dev || st.Ino != rec.Ino {
		unix.Close(fd)
		return nil
	}
	return r.keepLocked(fd, rec.Path)
}

// fill copies into dst the data ranges of rec (all of its size without
// Extents) from src and gives it its size: what the image left as holes
// stays holes.
func fill(dst, src *os.File, rec *image.FD) error {
	ext := rec.Extents
	if ext == nil {
		ext = [][2]int64{{0, rec.Size}}
	}
	buf := make([]byte, 1<<20)
	for _, e := range ext {
		if e[0] < 0 || e[1] > rec.Size || e[0] > e[1] {
			return fmt.Errorf("data range %d-%d of a %d-byte file: %w", e[0], e[1], rec.Size, image.ErrMalformed)
		}
		w := io.NewOffsetWriter(dst, e[0])
		if _, err := io.CopyBuffer(w, io.NewSectionReader(src, e[0], e[1]-e[0]), buf); err != nil {
			return fmt.Errorf("copy content: %w", err)
		}
	}
	if err := dst.Truncate(rec.Size); err != nil {
		return fmt.Errorf("set size: %w", err)
	}
	return nil
}

// setShape gives a recreated file the owner, group, mode and times of
// rec (the times last: writing and chown change them).
func setShape(fd int, rec *image.FD) error {
	if err := unix.Fchown(fd, int(rec.UID), int(rec.GID)); err != nil {
		return fmt.Errorf("owner %d:%d: %w", rec.UID, rec.GID, os.NewSyscallError("fchown", err))
	}
	if err := unix.Fchmod(fd, rec.Mode&0o7777); err != nil {
		return os.NewSyscallError("fchmod", err)
	}
	if rec.AtimeNs != 0 || rec.MtimeNs != 0 {
		if err := kernel.Futimens(fd, rec.AtimeNs, rec.MtimeNs); err != nil {
			return fmt.Errorf("times: %w", err)
		}
	}
	return nil
}

func (r *Restorer) createMemfdLocked(rec *image.FD, src *os.File) (*os.File, error) {
	name := strings.TrimPrefix(rec.Path, "/memfd:")
	seals := memfdSeals(rec)
	flags := unix.MFD_CLOEXEC
	if seals != unix.F_SEAL_SEAL {
		flags |= unix.MFD_ALLOW_SEALING // a memfd created without it reports just F_SEAL_SEAL
	}
	fd, err := unix.MemfdCreate(name, flags)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	f := r.keepLocked(fd, "memfd:"+name)
	if err := fill(f, src, rec); err != nil {
		return nil, err
	}
	if err := setShape(fd, rec); err != nil {
		return nil, err
	}
	cur, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl(F_GET_SEALS)", err)
	}
	if add := seals &^ cur; add != 0 {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, add); err != nil {
			return nil, fmt.Errorf("add seals %#x: %w", add, err)
		}
	}
	return f, nil
}

// createUnlinkedLocked recreates an unlinked file in its original
// directory: under its original name and unlinked at once (so /proc shows
// the same "PATH (deleted)"), or as O_TMPFILE when the name is taken.
func (r *Restorer) createUnlinkedLocked(rec *image.FD, src *os.File) (*os.File, error) {
	perm := rec.Mode & 0o7777
	dir := filepath.Dir(rec.Path)
	if rec.Flags&oTmpfileOnly != 0 {
		// Made by O_TMPFILE and never linked: made the same way, so that
		// it stays linkable (linkat) and F_GETFL shows the same flags.
		// (O_TMPFILE|O_EXCL, never linkable, shows no difference from
		// outside: it comes back linkable.)
		acc := rec.Flags & unix.O_ACCMODE
		if acc == unix.O_RDONLY {
			acc = unix.O_RDWR
		}
		fd, err := openRetry(dir, unix.O_TMPFILE|acc|unix.O_CLOEXEC, perm)
		if err != nil {
			return nil, fmt.Errorf("recreate O_TMPFILE file in %s: %w", dir, err)
		}
		f := r.keepLocked(fd, rec.Path+deletedSuffix)
		if err := fill(f, src, rec); err != nil {
			return nil, err
		}
		if err := setShape(fd, rec); err != nil {
			return nil, err
		}
		r.tmpfileFree[rec.FileID] = acc
		return f, nil
	}
	fd, err := openRetry(rec.Path, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOCTTY, perm)
	switch {
	case err == nil:
		if err := unix.Unlink(rec.Path); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("unlink %s: %w", rec.Path, err)
		}
	case errors.Is(err, unix.EEXIST):
		fd, err = openRetry(dir, unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, perm)
		if err != nil {
			fd, err = createAndUnlink(rec.Path, perm)
		}
	}
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("directory %s of unlinked file no longer exists", dir)
	}
	if err != nil {
		return nil, fmt.Errorf("recreate unlinked file %s: %w", rec.Path, err)
	}
	f := r.keepLocked(fd, rec.Path+deletedSuffix)
	if err := fill(f, src, rec); err != nil {
		return nil, err
	}
	if err := setShape(fd, rec); err != nil {
		return nil, err
	}
	return f, nil
}

// createAndUnlink creates a fresh name next to path, for filesystems
// without O_TMPFILE, and removes it at once.
func createAndUnlink(path string, perm uint32) (int, error) {
	var rnd [6]byte
	for range 10 {
		_, _ = rand.Read(rnd[:])
		name := path + ".ferry-" + hex.EncodeToString(rnd[:])
		fd, err := openRetry(name, unix.O_RDWR|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC|unix.O_NOCTTY, perm)
		if errors.Is(err, unix.EEXIST) {
			continue
		}
		if err != nil {
			return -1, err
		}
		if err := unix.Unlink(name); err != nil {
			unix.Close(fd)
			return -1, err
		}
		return fd, nil
	}
	return -1, unix.EEXIST
}

// pipeSizeError explains an F_SETPIPE_SZ failure.
func pipeSizeError(size int, err error) error {
	if errors.Is(err, unix.EPERM) {
		max, _ := os.ReadFile("/proc/sys/fs/pipe-max-size")
		return fmt.Errorf("pipe size %d exceeds fs.pipe-max-size (%s) and ferry lacks CAP_SYS_RESOURCE; raise it with sysctl fs.pipe-max-size=%d: %w",
			size, strings.TrimSpace(string(max)), size, err)
	}
	return os.NewSyscallError("fcntl(F_SETPIPE_SZ)", err)
}

func setPipeSize(fd, size int) error {
	if size <= 0 {
		return nil
	}
	cur, err := unix.FcntlInt(uintptr(fd), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return os.NewSyscallError("fcntl(F_GETPIPE_SZ)", err)
	}
	if cur == size {
		return nil
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETPIPE_SZ, size); err != nil {
		return pipeSizeError(size, err)
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("write", err)
		}
		b = b[n:]
	}
	return nil
}

// writeBuffered writes the buffered bytes b of a pipe back through its
// writable end fd so that read(2) stops where it stopped on the original:
// for each of packets (see image.FD.PipePackets), the whole pages before
// its last page as ordinary data, the rest with one write in packet mode
// (O_DIRECT set on fd meanwhile, which makes one packet of up to a page and
// never merges with full pages); then the bytes after the packets as
// ordinary data.
func writeBuffered(fd int, b []byte, packets []int) (err error) {
	total := 0
	for _, n := range packets {
		if n <= 0 {
			return fmt.Errorf("packet of %d bytes in the image", n)
		}
		total += n
	}
	if total > len(b) {
		return fmt.Errorf("packets of %d bytes in all, but only %d bytes buffered", total, len(b))
	}
	if len(packets) == 0 {
		return writeAll(fd, b)
	}
	orig, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return os.NewSyscallError("fcntl(F_GETFL)", err)
	}
	cur := orig
	setDirect := func(on bool) error {
		want := cur &^ unix.O_DIRECT
		if on {
			want |= unix.O_DIRECT
		}
		if want == cur {
			return nil
		}
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFL, want); err != nil {
			return fmt.Errorf("packet mode %v: %w", on, os.NewSyscallError("fcntl(F_SETFL)", err))
		}
		cur = want
		return nil
	}
	defer func() {
		if cur != orig {
			if _, e := unix.FcntlInt(uintptr(fd), unix.F_SETFL, orig); e != nil && err == nil {
				err = os.NewSyscallError("fcntl(F_SETFL)", e)
			}
		}
	}()
	page := os.Getpagesize()
	for i, n := range packets {
		if lead := (n - 1) / page * page; lead > 0 {
			if err := setDirect(false); err != nil {
				return err
			}
			if err := writeAll(fd, b[:lead]); err != nil {
				return fmt.Errorf("packet %d: %w", i, err)
			}
			b, n = b[lead:], n-lead
		}
		if err := setDirect(true); err != nil {
			return err
		}
		m, err := unix.Write(fd, b[:n])
		for err == unix.EINTR {
			m, err = unix.Write(fd, b[:n])
		}
		if err != nil {
			return fmt.Errorf("packet %d: %w", i, os.NewSyscallError("write", err))
		}
		if m != n {
			return fmt.Errorf("packet %d: %d of %d bytes written", i, m, n)
		}
		b = b[n:]
	}
	if err := setDirect(false); err != nil {
		return err
	}
	return writeAll(fd, b)
}

// preparePipeLocked creates every description of rec's pipe or FIFO.
func (r *Restorer) preparePipeLocked(rec *image.FD) error {
	members := r.pipeMembers[rec.PipeID]
	live := -1
	for _, m := range members {
		if f := r.inherit[m]; f != nil {
			r.files[m] = f
			if live < 0 {
				live = RawFD(f)
			}
		}
	}
	if f := r.inherit["pipe:"+rec.PipeID]; f != nil && live < 0 {
		live = RawFD(f)
	}
	if live >= 0 {
		return r.reopenPipeMembersLocked(members, live)
	}
	external := false
	for _, m := range members {
		external = external || r.descs[m].External
	}
	if rec.Kind == image.FDFIFO {
		return r.prepareFIFOLocked(members, external)
	}
	if external {
		fd, err := r.takeLiveLocked("pipe:[" + rec.PipeID + "]")
		if err != nil {
			return fmt.Errorf("pipe leads outside the checkpointed tree: %w", err)
		}
		defer unix.Close(fd)
		return r.reopenPipeMembersLocked(members, fd)
	}

	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return os.NewSyscallError("pipe2", err)
	}
	rf := os.NewFile(uintptr(p[0]), "pipe:["+rec.PipeID+"]")
	wf := os.NewFile(uintptr(p[1]), "pipe:["+rec.PipeID+"]")
	usedR, usedW := false, false
	defer func() {
		if !usedR {
			rf.Close()
		}
		if !usedW {
			wf.Close()
		}
	}()
	if err := setPipeSize(p[1], rec.PipeSize); err != nil {
		return err
	}
	for _, m := range members {
		if mrec := r.descs[m]; len(mrec.Buffered) > 0 {
			if err := writeBuffered(p[1], mrec.Buffered, mrec.PipePackets); err != nil {
				return fmt.Errorf("write back %d buffered bytes: %w", len(mrec.Buffered), err)
			}
			break
		}
	}
	for _, m := range members {
		mrec := r.descs[m]
		acc := mrec.Flags & unix.O_ACCMODE
		var fd int
		switch {
		case acc == unix.O_RDONLY && !usedR:
			fd, usedR = p[0], true
			r.owned = append(r.owned, rf)
			r.files[m] = rf
		case acc == unix.O_WRONLY && !usedW:
			fd, usedW = p[1], true
			r.owned = append(r.owned, wf)
			r.files[m] = wf
		default:
			var err error
			if fd, err = reopen(p[0], acc|unix.O_NONBLOCK); err != nil {
				return err
			}
			r.files[m] = r.keepLocked(fd, "pipe:["+rec.PipeID+"]")
		}
		if err := r.setStatusFlags(fd, mrec.Flags); err != nil {
			return err
		}
	}
	return nil
}

// reopenPipeMembersLocked gives every member without a file a new
// description of the live pipe or FIFO behind ferry's fd live.
func (r *Restorer) reopenPipeMembersLocked(members []string, live int) error {
	for _, m := range members {
		if r.files[m] != nil {
			continue
		}
		rec := r.descs[m]
		fd, err := reopen(live, rec.Flags&unix.O_ACCMODE|unix.O_NONBLOCK)
		if err != nil {
			return err
		}
		r.files[m] = r.keepLocked(fd, describe(rec))
		if err := r.setStatusFlags(fd, rec.Flags); err != nil {
			return err
		}
	}
	return nil
}

// prepareFIFOLocked opens every description of a named pipe by path. An
// O_RDWR "holder" keeps the FIFO's pipe alive meanwhile and lets
// write-only opens succeed without a reader. Buffered bytes are written
// back only if the FIFO is empty: a FIFO still held by the source's frozen
// processes (a restore on the same machine) still has them.
func (r *Restorer) prepareFIFOLocked(members []string, external bool) error {
	rec := r.descs[members[0]]
	path := rec.Path
	if rec.Unlinked {
		if external {
			fd, err := r.takeLiveLocked(rec.Path + deletedSuffix)
			if err != nil {
				return fmt.Errorf("removed FIFO leads outside the checkpointed tree: %w", err)
			}
			defer unix.Close(fd)
			return r.reopenPipeMembersLocked(members, fd)
		}
		sf, err := r.standInLocked(rec.Path, rec.Mode, 0, rec.UID, rec.GID, rec.Dev, rec.Ino)
		if err != nil {
			return err
		}
		path = selfFDPath(RawFD(sf))
	}
	hold, err := openRetry(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) && !rec.Unlinked {
		if external {
			return fmt.Errorf("FIFO %s leads outside the checkpointed tree and no longer exists", rec.Path)
		}
		if err := unix.Mkfifo(rec.Path, rec.Mode&0o7777); err != nil {
			return fmt.Errorf("recreate FIFO %s: %w", rec.Path, err)
		}
		if err := unix.Chmod(rec.Path, rec.Mode&0o7777); err != nil {
			return fmt.Errorf("chmod FIFO %s: %w", rec.Path, err)
		}
		r.log.Info("recreated missing FIFO", "path", rec.Path)
		hold, err = openRetry(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return fmt.Errorf("open FIFO %s: %w", rec.Path, err)
	}
	defer unix.Close(hold)
	var st unix.Stat_t
	if err := unix.Fstat(hold, &st); err != nil {
		return os.NewSyscallError("fstat", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("%s is now a %s, was a FIFO", rec.Path, fileType(st.Mode))
	}
	if !external {
		inq, err := unix.IoctlGetInt(hold, unix.TIOCINQ)
		if err != nil {
			return os.NewSyscallError("ioctl(FIONREAD)", err)
		}
		for _, m := range members {
			b, packets := r.descs[m].Buffered, r.descs[m].PipePackets
			if len(b) == 0 {
				continue
			}
			if inq > 0 {
				r.log.Info("FIFO still holds bytes; not writing the checkpointed ones again", "path", rec.Path, "bytes", inq)
				break
			}
			if err := setPipeSize(hold, rec.PipeSize); err != nil {
				return err
			}
			if err := writeBuffered(hold, b, packets); err != nil {
				return fmt.Errorf("write back %d buffered bytes: %w", len(b), err)
			}
			break
		}
	}
	for _, m := range members {
		mrec := r.descs[m]
		fd, err := openRetry(path, mrec.Flags&unix.O_ACCMODE|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
		if err != nil {
			return fmt.Errorf("open FIFO %s: %w", rec.Path, err)
		}
		r.files[m] = r.keepLocked(fd, rec.Path)
		if err := r.setStatusFlags(fd, mrec.Flags); err != nil {
			return err
		}
	}
	return nil
}

// takeLiveLocked finds a process on this machine (other than ferry) holding
// the file whose /proc link text is link, and duplicates that fd into
// ferry with pidfd_getfd. The caller owns the returned fd.
func (r *Restorer) takeLiveLocked(link string) (int, error) {
	if r.NoLiveScan {
		return -1, fmt.Errorf("no inherited file for %s, and looking for a live holder is disabled", link)
	}
	self := os.Getpid()
	// A holder may exit between the scan and the take (the old copy of a
	// tree that was just killed): try the next one.
	gone := map[int]bool{}
	for {
		h, ok := scanHolders(map[string]bool{link: true}, func(pid int) bool { return pid == self || gone[pid] })[link]
		if !ok {
			return -1, fmt.Errorf("no inherited file for %s and no live process on this machine holds it", link)
		}
		fd, err := takeFrom(h.pid, h.num, link)
		if err == nil {
			r.log.Debug("took live file", "link", link, "from_pid", h.pid, "from_fd", h.num)
			return fd, nil
		}
		if !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.EBADF) && !errors.Is(err, errChanged) {
			return -1, fmt.Errorf("take %s from pid %d fd %d: %w", link, h.pid, h.num, err)
		}
		gone[h.pid] = true
	}
}

// errChanged: the fd of a holder no longer refers to the file it did.
var errChanged = errors.New("the fd changed meanwhile")

// takeFrom duplicates fd num of pid into ferry and checks it is still
// the file link names.
func takeFrom(pid, num int, link string) (int, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return -1, os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	fd, err := pidfdGetfd(pidfd, num)
	if err != nil {
		return -1, err
	}
	if got, err := os.Readlink(selfFDPath(fd)); err != nil || got != link {
		unix.Close(fd)
		return -1, errChanged
	}
	return fd, nil
}

func (r *Restorer) prepareEventfdLocked(rec *image.FD) error {
	flags := unix.EFD_CLOEXEC | unix.EFD_NONBLOCK
	if rec.EventfdSemaphore {
		flags |= unix.EFD_SEMAPHORE
	}
	fd, err := unix.Eventfd(0, flags)
	if err != nil {
		return os.NewSyscallError("eventfd2", err)
	}
	f := r.keepLocked(fd, "anon_inode:[eventfd]")
	if rec.EventfdCount > 0 {
		var b [8]byte
		binary.NativeEndian.PutUint64(b[:], rec.EventfdCount)
		if err := writeAll(fd, b[:]); err != nil {
			return fmt.Errorf("set count %d: %w", rec.EventfdCount, err)
		}
	}
	if err := r.setStatusFlags(fd, rec.Flags); err != nil {
		return err
	}
	r.files[rec.Desc] = f
	return nil
}

// prepareTimerfdLocked re-arms a timerfd with the remaining time and the
// interval read at checkpoint time, relative to now. A CLOCK_REALTIME
// timer that was set with TFD_TIMER_ABSTIME is set absolute again (now +
// remaining) so that TFD_TIMER_CANCEL_ON_SET keeps working. Expirations not
// yet read are restored with TFD_IOC_SET_TICKS.
func (r *Restorer) prepareTimerfdLocked(rec *image.FD) error {
	fd, err := unix.TimerfdCreate(rec.TimerClock, unix.TFD_CLOEXEC|unix.TFD_NONBLOCK)
	if err != nil {
		return fmt.Errorf("timerfd_create(clock %d): %w", rec.TimerClock, err)
	}
	f := r.keepLocked(fd, "anon_inode:[timerfd]")
	value := rec.TimerValueNsec
	if value <= 0 && rec.TimerIntervalNsec > 0 {
		// A periodic timer read at its expiry: timerfd_gettime said 0
		// left (the kernel clamps a negative remainder), which would
		// disarm it. It expires at once, and goes on.
		value = 1
	}
	if value > 0 {
		its := unix.ItimerSpec{
			Value:    unix.NsecToTimespec(value),
			Interval: unix.NsecToTimespec(rec.TimerIntervalNsec),
		}
		flags := 0
		realtime := rec.TimerClock == unix.CLOCK_REALTIME || rec.TimerClock == unix.CLOCK_REALTIME_ALARM
		if rec.TimerSettimeFlags&unix.TFD_TIMER_ABSTIME != 0 && realtime {
			var now unix.Timespec
			if err := unix.ClockGettime(unix.CLOCK_REALTIME, &now); err != nil {
				return os.NewSyscallError("clock_gettime", err)
			}
			its.Value = unix.NsecToTimespec(now.Nano() + value)
			flags = rec.TimerSettimeFlags
		}
		if err := unix.TimerfdSettime(fd, flags, &its, nil); err != nil {
			return os.NewSyscallError("timerfd_settime", err)
		}
	}
	if rec.TimerTicks > 0 {
		if err := kernel.TimerfdSetTicks(fd, rec.TimerTicks); err != nil {
			return fmt.Errorf("restore %d pending expirations: %w", rec.TimerTicks, err)
		}
	}
	if err := r.setStatusFlags(fd, rec.Flags); err != nil {
		return err
	}
	r.files[rec.Desc] = f
	return nil
}

func (r *Restorer) prepareSignalfdLocked(rec *image.FD) error {
	mask := unix.Sigset_t{}
	mask.Val[0] = rec.SignalfdMask
	fd, err := unix.Signalfd(-1, &mask, unix.SFD_CLOEXEC|unix.SFD_NONBLOCK)
	if err != nil {
		return os.NewSyscallError("signalfd4", err)
	}
	f := r.keepLocked(fd, "anon_inode:[signalfd]")
	if err := r.setStatusFlags(fd, rec.Flags); err != nil {
		return err
	}
	r.files[rec.Desc] = f
	return nil
}

// prepareEpollLocked creates an empty epoll instance; Finish fills it.
func (r *Restorer) prepareEpollLocked(rec *image.FD) error {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	f := r.keepLocked(fd, "anon_inode:[eventpoll]")
	if err := r.setStatusFlags(fd, rec.Flags); err != nil {
		return err
	}
	r.files[rec.Desc] = f
	if r.inflight[rec.Desc] && len(rec.Epoll) > 0 {
		return r.fillEpollHereLocked(fd, rec)
	}
	return nil
}

// fillEpollHereLocked registers the items of an epoll instance that no
// process holds (in flight), from ferry: on a thread of its own fd table,
// each item's file is put at the number it was registered with (epoll
// keys items by file and number), added, and left there; the items live
// on with the files.
func (r *Restorer) fillEpollHereLocked(epfd int, rec *image.FD) error {
	for _, it := range rec.Epoll {
		if it.Desc == "" {
			return fmt.Errorf("epoll in flight: the item registered as fd %d does not say which file it watches", it.FD)
		}
		if err := r.prepareDescLocked(it.Desc); err != nil {
			return err
		}
		if r.files[it.Desc] == nil {
			return fmt.Errorf("epoll in flight: the file of the item registered as fd %d (%s) was not made", it.FD, describe(r.descs[it.Desc]))
		}
	}
	return kernel.OnThread(kernel.Thread{OwnFiles: true}, func() error {
		for _, it := range rec.Epoll {
			if err := unix.Dup3(RawFD(r.files[it.Desc]), it.FD, unix.O_CLOEXEC); err != nil {
				return fmt.Errorf("epoll in flight: put its item's file at fd %d: %w", it.FD, os.NewSyscallError("dup3", err))
			}
			// epoll_data is Fd (low half) and Pad (high half) here.
			ev := unix.EpollEvent{Events: it.Events, Fd: int32(uint32(it.Data)), Pad: int32(uint32(it.Data >> 32))}
			if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, it.FD, &ev); err != nil {
				return fmt.Errorf("epoll in flight: add fd %d (events %#x): %w", it.FD, it.Events, os.NewSyscallError("epoll_ctl", err))
			}
		}
		return nil
	})
}

// prepareUnixLocked recreates a unix socket and, with it, its peer: a new
// socketpair whose two queues get the recorded bytes again (each sent from
// the other end), then the recorded shutdowns, flags and options. A socket
// whose peer was closed becomes one end of a pair whose other end is
// closed after sending; an unconnected one a plain socket.
//
// SO_PEERCRED names the process that called socketpair, here ferry; when
// the recorded one is part of the tree, Finish makes the pair again inside
// that process (see credPair).
func (r *Restorer) prepareUnixLocked(rec *image.FD) error {
	var peer *image.FD
	if rec.SockPeer != "" {
		if peer = r.descs[rec.SockPeer]; peer == nil || peer.Kind != image.FDUnix {
			return fmt.Errorf("peer description %s is missing", rec.SockPeer)
		}
	}
	if f := r.inherit[rec.Desc]; f != nil && (peer == nil || r.inherit[peer.Desc] != nil) {
		r.files[rec.Desc] = f
		if peer != nil {
			r.files[peer.Desc] = r.inherit[peer.Desc]
		}
		return nil
	}
	if rec.External {
		if f := r.inherit[fmt.Sprintf("socket:%d", rec.Ino)]; f != nil {
			// An end given for it (a socketpair relayed to a process
			// that stayed on its old node, package coproc).
			r.files[rec.Desc] = f
			return nil
		}
		fd, err := r.takeLiveLocked(fmt.Sprintf("socket:[%d]", rec.Ino))
		if err != nil {
			return fmt.Errorf("unix socket connected outside the checkpointed tree: %w", err)
		}
		r.files[rec.Desc] = r.keepLocked(fd, fmt.Sprintf("socket:[%d]", rec.Ino))
		return nil
	}
	switch {
	case rec.SockAccepted || peer != nil && peer.SockAccepted && rec.SockType != unix.SOCK_DGRAM:
		acc := rec
		if !rec.SockAccepted {
			acc = peer
		}
		return r.prepareAcceptedLocked(acc)
	case rec.SockPendingOn != "":
		// Made, in backlog order, with its listener.
		if err := r.prepareDescLocked(rec.SockPendingOn); err != nil {
			return err
		}
		if r.files[rec.Desc] == nil {
			return fmt.Errorf("listener %s did not make the connection waiting in its backlog", rec.SockPendingOn)
		}
		return nil
	case dgramPair(rec, peer):
		// A datagram socketpair, an end bound later: below.
	case rec.SockType == unix.SOCK_DGRAM && (rec.SockPeerName != "" || peer != nil && peer.SockName != ""):
		// Connected by name once every named socket exists
		// (connectDgramsLocked).
		return r.prepareBoundLocked(rec)
	case rec.SockName != "":
		return r.prepareBoundLocked(rec)
	}
	peerClosed := len(rec.SockQueue) > 0 || rec.SockType != unix.SOCK_DGRAM && rec.SockShutRD && rec.SockShutWR
	if peer == nil && !peerClosed {
		// Never connected: a plain socket.
		fd, err := unix.Socket(unix.AF_UNIX, rec.SockType|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return os.NewSyscallError("socket", err)
		}
		f := r.keepLocked(fd, "socket")
		if err := r.setupSocket(fd, rec); err != nil {
			return err
		}
		r.files[rec.Desc] = f
		return nil
	}

	// SO_PEERCRED of both ends: who called socketpair, with the ids it
	// had (the PID is ferry's unless Finish makes the pair again).
	var sv [2]int
	err := asPeerCred(rec, func() (err error) {
		sv, err = unix.Socketpair(unix.AF_UNIX, rec.SockType|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		return os.NewSyscallError("socketpair", err)
	})
	if err != nil {
		return err
	}
	// Ends bound later (SO_PASSCRED autobinds a datagram socket that
	// sends) are bound again before the queues are filled: datagrams name
	// their sender.
	named := false
	for i, end := range []*image.FD{rec, peer} {
		if end == nil || end.SockName == "" {
			continue
		}
		named = true
		at, err := r.addrOf(end)
		if err == nil {
			err = bindAgain(sv[i], at)
		}
		if err != nil {
			unix.Close(sv[0])
			unix.Close(sv[1])
			return fmt.Errorf("socketpair end bound to %s: %w", end.SockName, err)
		}
	}
	if err := r.adoptPairLocked(sv, rec, peer); err != nil {
		return err
	}
	// A pair made again later would leave an end in flight, or watched
	// by an epoll in flight, behind, or find its name taken by the first
	// pair.
	if r.byPID[rec.SockCredPID] != nil && !named && !r.pinnedLocked(rec) && (peer == nil || !r.pinnedLocked(peer)) {
		r.credPairs = append(r.credPairs, &credPair{pid: rec.SockCredPID, rec: rec, peer: peer})
	}
	return nil
}

// pinnedLocked tells whether something that is not an fd refers to rec's
// description: it is in flight, or an epoll in flight watches it.
func (r *Restorer) pinnedLocked(rec *image.FD) bool {
	if r.inflight[rec.Desc] {
		return true
	}
	for id := range r.inflight {
		for _, it := range r.descs[id].Epoll {
			if it.Desc == rec.Desc {
				return true
			}
		}
	}
	return false
}

// dgramPair tells whether datagram sockets rec and peer are the two ends
// of a socketpair: connected to each other, one of them unnamed (nothing
// but its pair can reach an unnamed socket).
func dgramPair(rec, peer *image.FD) bool {
	return rec.SockType == unix.SOCK_DGRAM && peer != nil && peer.SockPeer == rec.Desc &&
		(rec.SockName == "" || peer.SockName == "")
}

// adoptPairLocked takes ownership of socketpair sv (ferry's fds), makes
// sv[0] rec and sv[1] its peer (nil: closed once the queue is sent), and
// hands them out as rec's and peer's descriptions.
func (r *Restorer) adoptPairLocked(sv [2]int, rec, peer *image.FD) error {
	a := r.keepLocked(sv[0], "socket")
	b := os.NewFile(uintptr(sv[1]), "socket")
	switch {
	case peer != nil:
		r.owned = append(r.owned, b)
	case rec.SockCreds != nil:
		r.owned = append(r.owned, b)
		r.lateClose = append(r.lateClose, b) // once FillLate filled the queue
	default:
		defer b.Close() // the peer goes away as it had
	}
	// In place before the queues are filled: a socket may be in flight
	// in its own queue or its peer's.
	r.files[rec.Desc] = a
	if peer != nil {
		r.files[peer.Desc] = b
	}
	if err := r.fillQueueLocked(sv[1], rec); err != nil {
		return err
	}
	if peer != nil {
		if err := r.fillQueueLocked(sv[0], peer); err != nil {
			return fmt.Errorf("peer: %w", err)
		}
		if err := r.setupSocket(sv[1], peer); err != nil {
			return fmt.Errorf("peer: %w", err)
		}
	}
	return r.setupSocket(sv[0], rec)
}

// fillQueueLocked sends rec's queued messages, and the files in flight
// with them, from from (rec's peer, or a socket connected to it). A queue
// with credentials is filled late (FillLate): they name live processes
// only, and the tree's exist by then.
func (r *Restorer) fillQueueLocked(from int, rec *image.FD) error {
	if rec.SockCreds != nil && !r.lateNow {
		r.deferLocked(rec.Desc, func() error {
			return withoutPassCred([]int{from, RawFD(r.files[rec.Desc])}, func() error { return r.fillQueueLocked(from, rec) })
		})
		return nil
	}
	rights, err := r.rightsLocked(rec)
	if err != nil {
		return err
	}
	if err := sendQueue(from, nil, rec.SockQueue, rights, r.credsLocked(rec), rec.SockType); err != nil {
		return fmt.Errorf("queue %d messages again: %w", len(rec.SockQueue), err)
	}
	return nil
}

// setupSocket gives unix socket fd, once its queues are filled, the
// recorded shutdowns, file status flags and socket options.
func (r *Restorer) setupSocket(fd int, rec *image.FD) error {
	if !r.preShut[rec.Desc] {
		if err := shutdownAs(fd, rec); err != nil {
			return err
		}
	}
	if err := r.setStatusFlags(fd, rec.Flags); err != nil {
		return err
	}
	if err := r.setBufSize(fd, "SO_SNDBUF", unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, rec.SockSndBuf); err != nil {
		return err
	}
	if err := r.setBufSize(fd, "SO_RCVBUF", unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, rec.SockRcvBuf); err != nil {
		return err
	}
	if err := setSockOpts(fd, rec); err != nil {
		return err
	}
	// After the queues: with SO_PASSCRED, sending from an unbound
	// datagram socket would bind it to an abstract address.
	if rec.SockPassCred {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
			return os.NewSyscallError("setsockopt(SO_PASSCRED)", err)
		}
	}
	return nil
}

// setSockOpts sets the integer options and timeouts rec recorded where
// fd's differ (SO_PEEK_OFF among them: the queues are filled by now).
func setSockOpts(fd int, rec *image.FD) error {
	for _, o := range sockInts {
		want, ok := rec.SockInts[o.name]
		if !ok {
			continue
		}
		if cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.opt); err == nil && cur == want {
			continue
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, o.opt, want); err != nil {
			return fmt.Errorf("set %s to %d: %w", o.name, want, os.NewSyscallError("setsockopt", err))
		}
	}
	for _, t := range []struct {
		name string
		opt  int
		ns   int64
	}{{"SO_RCVTIMEO", unix.SO_RCVTIMEO, rec.SockRcvTimeoNs}, {"SO_SNDTIMEO", unix.SO_SNDTIMEO, rec.SockSndTimeoNs}} {
		if t.ns == 0 {
			continue
		}
		tv := unix.NsecToTimeval(t.ns)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, t.opt, &tv); err != nil {
			return fmt.Errorf("set %s: %w", t.name, os.NewSyscallError("setsockopt", err))
		}
	}
	return nil
}

// setBufSize makes getsockopt(opt) of fd report want (0: leave it). The
// kernel stores twice what setsockopt is given, so want/2 is set, with the
// *FORCE variant (CAP_NET_ADMIN) that ignores net.core.[wr]mem_max; without
// the capability the plain option is tried and a different result only
// logged.
func (r *Restorer) setBufSize(fd int, name string, opt, force, want int) error {
	if want <= 0 {
		return nil
	}
	cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
	if err != nil {
		return os.NewSyscallError("getsockopt("+name+")", err)
	}
	if cur == want {
		return nil
	}
	err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, want/2)
	if err == unix.EPERM {
		err = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, want/2)
	}
	if err != nil {
		return fmt.Errorf("set %s to %d: %w", name, want, os.NewSyscallError("setsockopt", err))
	}
	if got, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt); err == nil && got != want {
		r.log.Warn("socket buffer size not restored (capped by net.core.wmem_max/rmem_max without CAP_NET_ADMIN?)",
			"option", name, "want", want, "got", got)
	}
	return nil
}

func shutdownAs(fd int, rec *image.FD) error {
	return shutdownBits(fd, rec.SockShutRD, rec.SockShutWR)
}

func shutdownBits(fd int, rd, wr bool) error {
	how := -1
	switch {
	case rd && wr:
		how = unix.SHUT_RDWR
	case rd:
		how = unix.SHUT_RD
	case wr:
		how = unix.SHUT_WR
	}
	if how < 0 {
		return nil
	}
	if err := unix.Shutdown(fd, how); err != nil && err != unix.ENOTCONN {
		return os.NewSyscallError("shutdown", err)
	}
	return nil
}

// sendQueue sends q through fd (to address to when not nil: datagrams
// only), one message per element (bytes for a stream), each with the
// files of rights (ferry's fds, SCM_RIGHTS; nil: none) and the
// credentials of creds (SCM_CREDENTIALS, nil: none; a PID no process has
// any more becomes ferry's: the kernel takes only a live one). A stream
// element with files is written in two parts, its last byte carrying
// them: the kernel attaches files to the first buffer of a write, and a
// read stops at the end of the buffer that carries files, with the bytes
// before it. When the socket buffer is too small for what the original
// held, it is enlarged for the while (SO_SNDBUFFORCE, which needs
// CAP_NET_ADMIN) and put back afterwards: what is queued stays charged to
// fd, as on the original, and later writes block where they would have.
func sendQueue(fd int, to unix.Sockaddr, q [][]byte, rights [][]int, creds []image.SockCred, typ int) (err error) {
	if rights != nil && len(rights) != len(q) {
		return fmt.Errorf("%d messages but files for %d", len(q), len(rights))
	}
	if creds != nil && len(creds) != len(q) {
		return fmt.Errorf("%d messages but credentials for %d", len(q), len(creds))
	}
	orig := 0
	defer func() {
		if orig == 0 {
			return
		}
		if e := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, orig/2); e != nil && err == nil {
			err = fmt.Errorf("put socket buffer back to %d bytes: %w", orig, os.NewSyscallError("setsockopt(SO_SNDBUFFORCE)", e))
		}
	}()
	for i, m := range q {
		var files, cred []byte
		if rights != nil && len(rights[i]) > 0 {
			files = unix.UnixRights(rights[i]...)
			if typ == unix.SOCK_STREAM && len(m) == 0 {
				return fmt.Errorf("message %d: files in flight without a byte to carry them", i)
			}
		}
		var uc *unix.Ucred
		if creds != nil && creds[i].PID != 0 {
			uc = &unix.Ucred{Pid: creds[i].PID, Uid: creds[i].UID, Gid: creds[i].GID}
			cred = unix.UnixCredentials(uc)
		}
		// plain: bytes of a stream element written without the files.
		plain := len(m)
		if files != nil && typ == unix.SOCK_STREAM {
			plain = len(m) - 1
		}
		for sent, grown := 0, 0; ; {
			var err error
			switch {
			case typ == unix.SOCK_STREAM && sent < plain && cred == nil:
				var n int
				if n, err = unix.Write(fd, m[sent:plain]); err == nil {
					sent += n
					continue
				}
			case typ == unix.SOCK_STREAM && sent < plain:
				var n int
				if n, err = unix.SendmsgN(fd, m[sent:plain], cred, nil, unix.MSG_DONTWAIT); err == nil {
					sent += n
					continue
				}
			case typ == unix.SOCK_STREAM && sent == len(m):
			case typ == unix.SOCK_STREAM:
				// The last byte, with the files.
				if err = unix.Sendmsg(fd, m[sent:], append(files, cred...), nil, unix.MSG_DONTWAIT); err == nil {
					sent = len(m)
					continue
				}
			case to == nil:
				_, err = kernel.Sendmsg(fd, m, append(files, cred...), unix.MSG_DONTWAIT)
			default:
				err = unix.Sendmsg(fd, m, append(files, cred...), to, unix.MSG_DONTWAIT)
			}
			if err == nil {
				break
			}
			switch {
			case err == unix.EINTR:
				continue
			case err == unix.ESRCH && uc != nil && uc.Pid != int32(os.Getpid()):
				// The sender is gone: the credentials name ferry
				// instead, with the recorded ids.
				uc.Pid = int32(os.Getpid())
				cred = unix.UnixCredentials(uc)
				continue
			case (err == unix.EAGAIN || err == unix.EMSGSIZE || err == unix.ENOBUFS) && grown < 16:
				grown++
				cur, gerr := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF)
				if gerr != nil {
					return os.NewSyscallError("getsockopt(SO_SNDBUF)", gerr)
				}
				if orig == 0 {
					orig = cur
				}
				want := 2*cur + 2*len(m) + 4096
				if serr := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, want); serr != nil {
					return fmt.Errorf("socket buffer full after %d bytes and cannot grow: %w", sent, os.NewSyscallError("setsockopt(SO_SNDBUFFORCE)", serr))
				}
				continue
			default:
				return os.NewSyscallError("send", err)
			}
		}
	}
	return nil
}

// rightsLocked makes the files in flight in rec's queue and returns
// ferry's fds for them, per message (nil: none).
func (r *Restorer) rightsLocked(rec *image.FD) ([][]int, error) {
	if rec.SockRights == nil {
		return nil, nil
	}
	if len(rec.SockRights) != len(rec.SockQueue) {
		return nil, fmt.Errorf("files in flight for %d messages, but %d messages queued", len(rec.SockRights), len(rec.SockQueue))
	}
	out := make([][]int, len(rec.SockRights))
	for i, ids := range rec.SockRights {
		for _, id := range ids {
			if err := r.prepareDescLocked(id); err != nil {
				return nil, err
			}
			f := r.files[id]
			if f == nil {
				return nil, fmt.Errorf("file in flight %s (%s) cannot be made before the queue is filled", id, describe(r.descs[id]))
			}
			out[i] = append(out[i], RawFD(f))
		}
	}
	return out, nil
}

// prepareBoundLocked makes unix socket rec bound to its name again, if
// it has one: listening with its backlog and the connections waiting in
// it, or a datagram socket, whose queue and connection
// connectDgramsLocked makes once every named socket exists.
func (r *Restorer) prepareBoundLocked(rec *image.FD) error {
	fd, err := unix.Socket(unix.AF_UNIX, rec.SockType|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	f := r.keepLocked(fd, "socket")
	if rec.SockName != "" {
		at, err := r.addrOf(rec)
		if err == nil {
			err = bindAgain(fd, at)
		}
		if err != nil {
			return fmt.Errorf("unix socket bound to %s: %w", rec.SockName, err)
		}
	}
	r.files[rec.Desc] = f
	if rec.SockType == unix.SOCK_DGRAM {
		r.dgrams = append(r.dgrams, rec)
		return nil // set up once connected and filled
	}
	if rec.SockListen {
		// Its SO_PEERCRED, which clients get too: who called listen.
		err := asPeerCred(rec, func() error { return os.NewSyscallError("listen", unix.Listen(fd, rec.SockBacklog)) })
		if err != nil {
			return fmt.Errorf("unix socket %s: %w", rec.SockName, err)
		}
		if err := r.acceptedByLocked(rec); err != nil {
			return fmt.Errorf("unix socket %s: %w", rec.SockName, err)
		}
		if err := r.pendingLocked(rec); err != nil {
			return fmt.Errorf("unix socket %s: %w", rec.SockName, err)
		}
	}
	return r.setupSocket(fd, rec)
}
