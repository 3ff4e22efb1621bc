package image

import (
	"fmt"
	"slices"
)

// This file holds the process state that travels in an image: everything a
// checkpoint captures except page contents and file contents, which follow
// as separate records. The state is encoded as JSON inside a checksummed
// record (see format.go), so fields may be added without a version bump as
// long as their zero value means "absent / old behaviour".

// Checkpoint is the state record: a process tree and the files it shares.
// It is the first record after the header in every image.
type Checkpoint struct {
	// Root is the PID of the process the checkpoint was asked for.
	Root int `json:"root"`
	// Processes lists the tree, parents before children.
	Processes []*Process `json:"processes"`
	// Kernel is `uname -r` of the source machine; VDSO layout depends on it.
	Kernel string `json:"kernel"`
	// Hostname of the node that took the checkpoint (informational).
	Hostname string `json:"hostname,omitempty"`
	// PageSize of the source machine.
	PageSize int `json:"page_size"`
	// TimeUnixNano when the process was frozen.
	TimeUnixNano int64 `json:"time_unix_nano"`
	// BootID is the source machine's boot id
	// (/proc/sys/kernel/random/boot_id): a device number means the same
	// device only on the same boot of the same machine.
	BootID string `json:"boot_id,omitempty"`
	// InFlight holds the full records of the open file descriptions that
	// no process holds, only a unix socket's queue (FD.SockRights), with
	// Num -1; they refer to each other and to the processes' by Desc.
	InFlight []FD `json:"in_flight,omitempty"`
	// SemSets are the System V semaphore sets on which some process of
	// the tree held adjustments (SEM_UNDO, Process.SemUndo).
	SemSets []SemSet `json:"sem_sets,omitempty"`
}

// Process is one process of the tree.
type Process struct {
	PID  int `json:"pid"`
	PPID int `json:"ppid"` // parent's PID; 0 when the parent is outside the tree
	PGID int `json:"pgid"`
	SID  int `json:"sid"`

	Comm string `json:"comm"`
	// Exe is the path of /proc/PID/exe at checkpoint time.
	Exe string `json:"exe"`
	// ExeHash is the SHA-256 of the executable, hex, so a restore can tell
	// a different binary at the same path.
	ExeHash string `json:"exe_hash,omitempty"`
	Cwd     string `json:"cwd"`
	// CwdGone is set when the working directory had been removed (its
	// /proc link ended in " (deleted)"); Cwd is then its former path and
	// restore enters a stand-in directory made and removed again there.
	CwdGone *GoneDir `json:"cwd_gone,omitempty"`
	// Root is the root directory of a process that chrooted ("": "/"), as
	// ferry sees it; Cwd is then a path from ferry's root too.
	Root  string `json:"root,omitempty"`
	Umask uint32 `json:"umask"`
	// ChildStops tells, for each child of the tree that was stopped, the
	// signal of the stop report this process had not taken yet (waitpid
	// WUNTRACED would give it), or 0 when it had: a restore stops the
	// child with that signal, or takes the new report away again.
	ChildStops map[int]int `json:"child_stops,omitempty"`
	// Stopped is true when the process was in group-stop (SIGSTOP, ^Z);
	// it is restored stopped.
	Stopped bool `json:"stopped,omitempty"`
	// Personality as read from /proc/PID/personality.
	Personality uint32 `json:"personality,omitempty"`

	Creds   Creds    `json:"creds"`
	Rlimits []Rlimit `json:"rlimits"`

	MM   MM    `json:"mm"`
	VMAs []VMA `json:"vmas"`

	Threads []*Thread `json:"threads"` // the leader (TID == PID) first

	// Sigactions has one entry per signal 1..64 (index 0 is signal 1).
	Sigactions []Sigaction `json:"sigactions"`
	// SharedPending holds process-wide pending signals (raw siginfo).
	SharedPending []Siginfo `json:"shared_pending,omitempty"`

	Itimers     [3]Itimer    `json:"itimers"` // ITIMER_REAL, _VIRTUAL, _PROF
	PosixTimers []PosixTimer `json:"posix_timers,omitempty"`

	FDs []FD `json:"fds"`
	// FilesOf is the parent whose fd table this process shares
	// (clone(CLONE_FILES)); its FDs then list the same table.
	FilesOf int `json:"files_of,omitempty"`
	// FSOf is the parent whose cwd, root and umask this process shares
	// (clone(CLONE_FS)).
	FSOf int `json:"fs_of,omitempty"`
	// NotDumpable: PR_SET_DUMPABLE 0 (core dumps off, /proc/PID owned by
	// root, no ptrace by its user).
	NotDumpable bool `json:"not_dumpable,omitempty"`

	// Zombie marks a child that had exited but was not yet reaped; only
	// its identity and ExitStatus (a wait status) are kept.
	Zombie     bool `json:"zombie,omitempty"`
	ExitStatus int  `json:"exit_status,omitempty"`

	// THPDisable and ChildSubreaper are prctl flags of the process.
	THPDisable     bool `json:"thp_disable,omitempty"`
	ChildSubreaper bool `json:"child_subreaper,omitempty"`
	// MDWE is PR_GET_MDWE: memory-deny-write-execute flags of the mm,
	// which can only be set, never cleared.
	MDWE uint64 `json:"mdwe,omitempty"`
	// OOMScoreAdj is /proc/PID/oom_score_adj.
	OOMScoreAdj int `json:"oom_score_adj,omitempty"`
	// Membarrier is the mask of membarrier registrations
	// (MEMBARRIER_CMD_GET_REGISTRATIONS: the REGISTER_* command bits).
	Membarrier uint64 `json:"membarrier,omitempty"`
	// SemUndo is the process's list of System V semaphore adjustments
	// (semadj, applied by the kernel when it exits), one entry per set of
	// Checkpoint.SemSets it held any on.
	SemUndo []SemUndo `json:"sem_undo,omitempty"`
}

// Creds are the process credentials (all threads share them here).
type Creds struct {
	UID    [4]uint32 `json:"uid"` // real, effective, saved, fs
	GID    [4]uint32 `json:"gid"`
	Groups []uint32  `json:"groups,omitempty"`
	// Capability sets as 64-bit masks: inheritable, permitted, effective,
	// bounding, ambient.
	CapInh uint64 `json:"cap_inh"`
	CapPrm uint64 `json:"cap_prm"`
	CapEff uint64 `json:"cap_eff"`
	CapBnd uint64 `json:"cap_bnd"`
	CapAmb uint64 `json:"cap_amb"`
	// NoNewPrivs is the prctl flag.
	NoNewPrivs bool `json:"no_new_privs,omitempty"`
	// Securebits is PR_GET_SECUREBITS (incl. SECBIT_KEEP_CAPS).
	Securebits uint64 `json:"securebits,omitempty"`
}

// Rlimit is one resource limit.
type Rlimit struct {
	Resource int    `json:"resource"`
	Cur      uint64 `json:"cur"`
	Max      uint64 `json:"max"`
}

// MM holds the mm_struct fields that PR_SET_MM_MAP restores.
type MM struct {
	StartCode  uint64   `json:"start_code"`
	EndCode    uint64   `json:"end_code"`
	StartData  uint64   `json:"start_data"`
	EndData    uint64   `json:"end_data"`
	StartBrk   uint64   `json:"start_brk"`
	Brk        uint64   `json:"brk"`
	StartStack uint64   `json:"start_stack"`
	ArgStart   uint64   `json:"arg_start"`
	ArgEnd     uint64   `json:"arg_end"`
	EnvStart   uint64   `json:"env_start"`
	EnvEnd     uint64   `json:"env_end"`
	Auxv       []uint64 `json:"auxv"` // raw auxv words, pairs, ends with AT_NULL
}

// VMA kinds.
const (
	VMAAnon       = "anon"        // private anonymous (incl. heap, stack)
	VMAFile       = "file"        // private or shared mapping of a file on disk
	VMASharedAnon = "shared-anon" // MAP_SHARED|MAP_ANONYMOUS (shows as /dev/zero (deleted))
	VMAMemfd      = "memfd"       // mapping of a memfd (or an unlinked file)
	VMAVDSO       = "vdso"
	VMAVVar       = "vvar"
	VMAVVarVclock = "vvar_vclock"
	VMAVsyscall   = "vsyscall"
	VMAAio        = "aio"      // the ring of a Linux AIO context (io_setup)
	VMASysV       = "sysv-shm" // an attached System V shared memory segment (shmat)
)

// VMA is one memory mapping, as in /proc/PID/maps plus what restore needs.
type VMA struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
	// Prot is PROT_READ|PROT_WRITE|PROT_EXEC bits.
	Prot int `json:"prot"`
	// Shared is true for MAP_SHARED mappings.
	Shared bool   `json:"shared,omitempty"`
	Kind   string `json:"kind"`
	// Name is the maps pathname column ("[heap]", "[stack]", a path, ...).
	Name string `json:"name,omitempty"`
	// Path of the backing file (VMAFile), Offset within it.
	Path   string `json:"path,omitempty"`
	Offset uint64 `json:"offset,omitempty"`
	// FileID names the shared object (memfd, shared anon, unlinked file)
	// whose content is carried in FileData records; FDs may refer to the
	// same object.
	FileID string `json:"file_id,omitempty"`
	// Dev and Ino identify the backing file on the source.
	Dev uint64 `json:"dev,omitempty"`
	Ino uint64 `json:"ino,omitempty"`
	// GrowsDown marks a stack VMA (MAP_GROWSDOWN).
	GrowsDown bool `json:"grows_down,omitempty"`
	// AioNr is the ring's event capacity (struct aio_ring nr) of a VMAAio;
	// the VMA's start is the context id.
	AioNr uint32 `json:"aio_nr,omitempty"`
	// AioEvents are the completed events not yet reaped (struct io_event,
	// 32 bytes each), oldest first.
	AioEvents []byte `json:"aio_events,omitempty"`
	// Shm is the System V segment a VMASysV attaches (its content is the
	// FileData of FileID); Offset is the VMA's place in it.
	Shm *SysVShm `json:"shm,omitempty"`
	// Flags from /proc/PID/smaps VmFlags of interest: madvise advice
	// ("dd", "dc", "wf", "hg", "nh", "mg", "rr", "sr") and mlock ("lo",
	// with "lf" for MLOCK_ONFAULT), "nr" (mapped MAP_NORESERVE: no
	// VM_ACCOUNT) and "sl" (sealed by mseal).
	VMFlags []string `json:"vm_flags,omitempty"`
	// MayWrite is VM_MAYWRITE ("mw"): for a shared file mapping, the file
	// was opened for writing, so mprotect may add PROT_WRITE later.
	MayWrite bool `json:"may_write,omitempty"`
	// Inherited lists, for a private anonymous VMA of a child, the page
	// ranges [start, end) it shared copy-on-write with its parent's VMA at
	// the same address (same physical page, written by neither since the
	// fork). They are not stored for the child: restore forks it from
	// its parent once the parent's memory is in, so the pages are shared
	// again, then discards the rest of the VMA and writes its own pages.
	Inherited [][2]uint64 `json:"inherited,omitempty"`
}

// HasVMFlag reports whether the smaps code f is among v.VMFlags.
func (v *VMA) HasVMFlag(f string) bool { return slices.Contains(v.VMFlags, f) }

// GoneDir describes a removed directory a process still uses (its cwd):
// the stat identity that makes several users one stand-in, and the mode
// and owner the stand-in gets.
type GoneDir struct {
	Mode uint32 `json:"mode"`
	UID  uint32 `json:"uid,omitempty"`
	GID  uint32 `json:"gid,omitempty"`
	Dev  uint64 `json:"dev,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
}

// Size returns End-Start.
func (v *VMA) Size() uint64 { return v.End - v.Start }

// Thread is the per-thread state.
type Thread struct {
	TID int `json:"tid"`
	// Regs is the raw x86-64 user_regs_struct (27 words).
	Regs []uint64 `json:"regs"`
	// Xstate is the raw NT_X86_XSTATE regset.
	Xstate []byte `json:"xstate"`
	// SigMask is the blocked-signal mask.
	SigMask uint64    `json:"sigmask"`
	Pending []Siginfo `json:"pending,omitempty"`
	// Altstack is the sigaltstack.
	Altstack Stack `json:"altstack"`
	// Rseq registration (zero Addr when none).
	RseqAddr uint64 `json:"rseq_addr,omitempty"`
	RseqLen  uint32 `json:"rseq_len,omitempty"`
	RseqSig  uint32 `json:"rseq_sig,omitempty"`
	// Robust futex list head and length (0 when unset).
	RobustList    uint64 `json:"robust_list,omitempty"`
	RobustListLen uint64 `json:"robust_list_len,omitempty"`
	// ClearChildTID is set_tid_address's pointer.
	ClearChildTID uint64 `json:"clear_child_tid,omitempty"`
	Name          string `json:"name"`
	// Seccomp is the thread's seccomp mode (1 strict, 2 filter; 0 none)
	// and SeccompFilters, in filter mode, its filters, oldest first.
	Seccomp        int             `json:"seccomp,omitempty"`
	SeccompFilters []SeccompFilter `json:"seccomp_filters,omitempty"`
	// InSyscall is true when the thread was frozen inside a system call:
	// restore fixes up the registers so that the call is restarted.
	InSyscall bool `json:"in_syscall,omitempty"`

	// Scheduling: policy (SCHED_*), nice, real-time priority, CPU affinity
	// mask words, I/O priority; and per-thread prctl values.
	Policy uint32 `json:"policy,omitempty"`
	Nice   int32  `json:"nice,omitempty"`
	RTPrio uint32 `json:"rt_prio,omitempty"`
	// SchedFlags are sched_attr flags (SCHED_FLAG_RESET_ON_FORK…);
	// Runtime, Deadline and Period the SCHED_DEADLINE parameters (ns).
	SchedFlags    uint64   `json:"sched_flags,omitempty"`
	SchedRuntime  uint64   `json:"sched_runtime,omitempty"`
	SchedDeadline uint64   `json:"sched_deadline,omitempty"`
	SchedPeriod   uint64   `json:"sched_period,omitempty"`
	Affinity      []uint64 `json:"affinity,omitempty"`
	IOPrio        int      `json:"ioprio,omitempty"`
	TimerSlack    uint64   `json:"timer_slack,omitempty"`
	MCEKill       int      `json:"mce_kill,omitempty"`
	// TSCSigsegv: PR_SET_TSC PR_TSC_SIGSEGV, rdtsc faults in the thread.
	TSCSigsegv bool `json:"tsc_sigsegv,omitempty"`
	// Creds are the thread's own credentials when they differ from the
	// process's (credentials are per thread in Linux).
	Creds *Creds `json:"creds,omitempty"`
	// PdeathSig is PR_SET_PDEATHSIG's signal (0: none).
	PdeathSig int `json:"pdeath_sig,omitempty"`
}

// Siginfo is a raw 128-byte siginfo_t.
type Siginfo []byte

// Stack is a stack_t.
type Stack struct {
	SP    uint64 `json:"sp"`
	Flags int32  `json:"flags"`
	Size  uint64 `json:"size"`
}

// Sigaction is the kernel's struct sigaction for one signal.
type Sigaction struct {
	Handler  uint64 `json:"handler"`
	Flags    uint64 `json:"flags"`
	Restorer uint64 `json:"restorer"`
	Mask     uint64 `json:"mask"`
}

// Itimer is one setitimer timer; values in microseconds.
type Itimer struct {
	IntervalUsec int64 `json:"interval_usec"`
	ValueUsec    int64 `json:"value_usec"`
}

// PosixTimer is one timer_create timer.
type PosixTimer struct {
	ID         int    `json:"id"`
	ClockID    int    `json:"clock_id"`
	Signal     int    `json:"signal"`
	Notify     int    `json:"notify"` // SIGEV_* value
	NotifyTID  int    `json:"notify_tid,omitempty"`
	SigevValue uint64 `json:"sigev_value"`
	// Remaining time and interval, nanoseconds; Overrun count.
	ValueNsec    int64 `json:"value_nsec"`
	IntervalNsec int64 `json:"interval_nsec"`
	Overrun      int   `json:"overrun,omitempty"`
	// ClockTID is the thread whose CPU clock a timer on "the calling
	// thread's" clock (CLOCK_THREAD_CPUTIME_ID) counts: the thread that
	// created it. 0: the leader, or a clock that names its own.
	ClockTID int `json:"clock_tid,omitempty"`
}

// FD kinds.
const (
	FDFile     = "file"     // regular file (possibly unlinked: then FileID carries content)
	FDDir      = "dir"      // directory
	FDChar     = "chardev"  // character device (/dev/null, /dev/zero, a tty...)
	FDBlock    = "blockdev" // block device opened through a node that was removed (others are FDFile, by path)
	FDPipe     = "pipe"     // anonymous pipe end
	FDFIFO     = "fifo"     // named pipe
	FDEventfd  = "eventfd"  // eventfd
	FDTimerfd  = "timerfd"  // timerfd
	FDSignalfd = "signalfd" // signalfd
	FDEpoll    = "epoll"    // epoll instance
	FDUnix     = "unix"     // unix socket (socketpair within the tree)
	FDMemfd    = "memfd"    // memfd
	FDPidfd    = "pidfd"    // pidfd of a process of the tree
	FDInotify  = "inotify"  // inotify instance
	FDFanotify = "fanotify" // fanotify group
	// FDMsg is the job's message-endpoint connection, reconnected by the
	// node: a unix SOCK_SEQPACKET socket connected to a listener outside
	// the tree (the node daemon accepted it). It travels as MsgID and
	// MsgUnread; the restore asks its caller for a new connected socket
	// (restore.Options.MsgConnect) and installs that.
	FDMsg = "msg"
)

// FD is one open file descriptor. Fds that share an open file description
// (dup, fork) carry the same Desc; the description's state is stored once
// in the first FD that names it and the others repeat only Num, CloExec
// and Desc.
type FD struct {
	Num     int  `json:"num"`
	CloExec bool `json:"cloexec,omitempty"`
	// Desc identifies the open file description within the checkpoint.
	Desc string `json:"desc"`
	Kind string `json:"kind,omitempty"`
	// Flags are the file status flags (O_APPEND, O_NONBLOCK, access mode).
	Flags int `json:"flags,omitempty"`
	// Path for files, dirs, devices and FIFOs.
	Path   string `json:"path,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	// Mode, Dev, Ino, Rdev, Size from fstat.
	Mode uint32 `json:"mode,omitempty"`
	Dev  uint64 `json:"dev,omitempty"`
	Ino  uint64 `json:"ino,omitempty"`
	Rdev uint64 `json:"rdev,omitempty"`
	Size int64  `json:"size,omitempty"`
	// UID and GID own the file (recorded for what restore recreates:
	// unlinked files, removed directories, FIFOs and device nodes).
	UID uint32 `json:"uid,omitempty"`
	GID uint32 `json:"gid,omitempty"`
	// Unlinked is true for an open file whose path was deleted; a regular
	// file's content travels as FileData with FileID (only its data
	// ranges: holes stay holes). A removed directory, FIFO or character
	// device is made again at Path as a stand-in, opened and removed.
	Unlinked bool   `json:"unlinked,omitempty"`
	FileID   string `json:"file_id,omitempty"`
	// Handle is, for an unlinked regular file that other hard links
	// still name, its file handle (name_to_handle_at; HandleType its
	// type): where the inode still exists, restore opens that very inode
	// by it, and falls back to the copy in FileData elsewhere.
	Handle     []byte `json:"handle,omitempty"`
	HandleType int32  `json:"handle_type,omitempty"`
	// PidfdPID is the process (or, with PIDFD_THREAD in Flags, thread) a
	// pidfd refers to.
	PidfdPID int `json:"pidfd_pid,omitempty"`
	// Signal-driven I/O (O_ASYNC in Flags): the owner that gets the
	// signal (F_SETOWN_EX: OwnerType F_OWNER_TID 0, _PID 1, _PGRP 2) and
	// the signal (F_SETSIG; 0: SIGIO).
	OwnerType int `json:"owner_type,omitempty"`
	OwnerPID  int `json:"owner_pid,omitempty"`
	Sig       int `json:"sig,omitempty"`
	// Times (ns) of an unlinked file or memfd, and the ranges that hold
	// data (SEEK_DATA/SEEK_HOLE: the rest are holes); a restore recreates
	// the same file, holes and all. No Extents: all data.
	AtimeNs int64      `json:"atime_ns,omitempty"`
	MtimeNs int64      `json:"mtime_ns,omitempty"`
	Extents [][2]int64 `json:"extents,omitempty"`
	// ContentHash is the SHA-256 of a regular file's content (hex), so a
	// destination can tell whether its own copy is identical.
	ContentHash string `json:"content_hash,omitempty"`

	// Pipe, FIFO: the pipe identity (inode) shared by both ends, the
	// bytes buffered in it (stored with the read end's first appearance),
	// and whether the other end lives outside the checkpointed tree.
	PipeID   string `json:"pipe_id,omitempty"`
	Buffered []byte `json:"buffered,omitempty"`
	External bool   `json:"external,omitempty"`
	PipeSize int    `json:"pipe_size,omitempty"`

	// Eventfd.
	EventfdCount     uint64 `json:"eventfd_count,omitempty"`
	EventfdSemaphore bool   `json:"eventfd_semaphore,omitempty"`

	// Timerfd.
	TimerClock        int    `json:"timer_clock,omitempty"`
	TimerTicks        uint64 `json:"timer_ticks,omitempty"`
	TimerSettimeFlags int    `json:"timer_settime_flags,omitempty"`
	TimerValueNsec    int64  `json:"timer_value_nsec,omitempty"`
	TimerIntervalNsec int64  `json:"timer_interval_nsec,omitempty"`

	// Signalfd mask.
	SignalfdMask uint64 `json:"signalfd_mask,omitempty"`

	// Epoll registered set.
	Epoll []EpollItem `json:"epoll,omitempty"`

	// Inotify watches and fanotify marks, by path; the fanotify group's
	// fanotify_init flags.
	Watches       []NotifyMark `json:"watches,omitempty"`
	FanFlags      uint32       `json:"fan_flags,omitempty"`
	FanEventFlags uint32       `json:"fan_event_flags,omitempty"`

	// Unix socket: type (SOCK_STREAM...), the peer's Desc, the bytes
	// queued for reading on this end (stream) or the queued datagrams.
	SockType   int      `json:"sock_type,omitempty"`
	SockPeer   string   `json:"sock_peer,omitempty"`
	SockQueue  [][]byte `json:"sock_queue,omitempty"`
	SockShutRD bool     `json:"sock_shut_rd,omitempty"`
	SockShutWR bool     `json:"sock_shut_wr,omitempty"`
	// SockName is the address a unix socket is bound to: a path, or
	// "@name" for the abstract namespace ("" when unbound).
	// SockListen marks a listening socket, SockBacklog its listen(2)
	// backlog.
	SockName    string `json:"sock_name,omitempty"`
	SockListen  bool   `json:"sock_listen,omitempty"`
	SockBacklog int    `json:"sock_backlog,omitempty"`
	// SockDir is the directory a relative SockName is bound in (the
	// name stays relative: getsockname reports it so). SockGone marks a
	// socket whose file was removed (or whose path now leads elsewhere)
	// while it stayed bound: restore binds it under a scratch root, with
	// the same name and no file at the path.
	SockDir  string `json:"sock_dir,omitempty"`
	SockGone bool   `json:"sock_gone,omitempty"`
	// SockRights are the files in flight in the queue (SCM_RIGHTS): for
	// each element of SockQueue, the Descs sent with it, in order (nil:
	// none at all). A description no process holds is in
	// Checkpoint.InFlight. A stream element ends where a read stopped
	// at the buffer carrying its files.
	SockRights [][]string `json:"sock_rights,omitempty"`
	// SockFrom, for a datagram socket, is the address each queued message
	// came from ("" unnamed; nil: none named), which recvfrom reports and
	// a server replies to.
	SockFrom []string `json:"sock_from,omitempty"`
	// SockCreds are, per element of SockQueue, the credentials queued
	// with it (SCM_CREDENTIALS, which a receiver with SO_PASSCRED reads:
	// the sender's, or what it sent explicitly); nil: none recorded. A
	// zero PID means none came with that message.
	SockCreds []SockCred `json:"sock_creds,omitempty"`
	// SockAccepted marks a stream or seqpacket end that a listener bound
	// to SockName accepted (the name is the listener's); its peer is the
	// client. Restore makes the connection again through a listener at
	// that name (the tree's, or one of its own).
	SockAccepted bool `json:"sock_accepted,omitempty"`
	// SockListener is the Desc of the listener of the tree that accepted
	// it, if the tree holds it still: restore makes the connection
	// through it, so that both share the socket file as they did.
	SockListener string `json:"sock_listener,omitempty"`
	// SockPending, on a listener, lists the client ends (Descs) whose
	// connections wait in its backlog, oldest first; SockPendingOn, on
	// such a client, names the listener.
	SockPending   []string `json:"sock_pending,omitempty"`
	SockPendingOn string   `json:"sock_pending_on,omitempty"`
	// SockPeerName is the address of a named socket outside the tree that
	// a datagram socket is connected to (/dev/log); restore connects to
	// it again.
	SockPeerName string `json:"sock_peer_name,omitempty"`

	// PipePackets, for a pipe or FIFO holding packets (written in O_DIRECT
	// mode): the sizes of the packets at the start of Buffered, in order,
	// as read(2) returns them: a read stops at the end of a packet and
	// may start with ordinary bytes the packet was not merged into. The
	// bytes after the packets are ordinary pipe data. Stored with Buffered.
	PipePackets []int `json:"pipe_packets,omitempty"`

	// Unix socket options: SO_SNDBUF and SO_RCVBUF as getsockopt reports
	// them (twice what setsockopt was given), SO_PASSCRED, and the PID
	// SO_PEERCRED reports (for a socketpair, the process that created
	// it). Zero means not recorded.
	SockSndBuf   int  `json:"sock_sndbuf,omitempty"`
	SockRcvBuf   int  `json:"sock_rcvbuf,omitempty"`
	SockPassCred bool `json:"sock_passcred,omitempty"`
	SockCredPID  int  `json:"sock_cred_pid,omitempty"`
	// SockCredUID and SockCredGID are the effective ids SO_PEERCRED
	// reports with SockCredPID (recorded when SockCredPID is not 0).
	SockCredUID uint32 `json:"sock_cred_uid,omitempty"`
	SockCredGID uint32 `json:"sock_cred_gid,omitempty"`
	// SockInts are the other integer socket options, by name
	// ("SO_PRIORITY", "SO_PEEK_OFF"...), as getsockopt reported them;
	// SockRcvTimeoNs and SockSndTimeoNs SO_RCVTIMEO and SO_SNDTIMEO.
	SockInts       map[string]int `json:"sock_ints,omitempty"`
	SockRcvTimeoNs int64          `json:"sock_rcvtimeo_ns,omitempty"`
	SockSndTimeoNs int64          `json:"sock_sndtimeo_ns,omitempty"`

	// Message-endpoint connection (FDMsg). MsgID is the location-independent
	// id the node gave the connection ("n1-4.101"), never empty; MsgUnread
	// the packets queued in its receive queue that the process had not
	// read, oldest first, each packet whole (zero-length ones included).
	// Of the unix socket fields an FDMsg keeps SockType (always
	// SOCK_SEQPACKET), the options set again on the new socket
	// (SockSndBuf, SockRcvBuf, SockPassCred, SockInts, the timeouts) and,
	// for information, SockPeerName (the endpoint's name); Flags and
	// CloExec are those of any fd. It has no SockQueue, SockPeer or other
	// field that ties it to a socket of the tree, and nothing in flight
	// (SCM_RIGHTS) or credentials in its queue: the dump refuses those.
	MsgID     string   `json:"msg_id,omitempty"`
	MsgUnread [][]byte `json:"msg_unread,omitempty"`

	// Locks held through this fd. flock and OFD locks belong to the open
	// file description and are stored with its full record; POSIX record
	// locks belong to a process and are stored on the fd of the process
	// that owns them (also when that record is a bare reference), once
	// per process and inode.
	Locks []FileLock `json:"locks,omitempty"`
}

// EpollItem is one fd registered with an epoll instance.
type EpollItem struct {
	FD     int    `json:"fd"` // the target fd number it was registered with
	Events uint32 `json:"events"`
	Data   uint64 `json:"data"`
	// Desc is the description the item watches. The fd number need not
	// name it any more (closed, dup'd over): the item lives as long as
	// the file.
	Desc string `json:"desc,omitempty"`
}

// SysVShm is a System V shared memory segment as shmctl(IPC_STAT) shows
// it. A restore attaches the very segment when it still exists (same
// id, key, size, creator and creation time), else makes it again under
// the same id with the recorded content.
type SysVShm struct {
	ID   int    `json:"id"`
	Key  int32  `json:"key,omitempty"` // 0: IPC_PRIVATE, or removed (IPC_RMID)
	Size uint64 `json:"size"`
	// Mode is the permission bits; Removed is SHM_DEST: IPC_RMID was
	// called and the segment goes with its last detach.
	Mode    uint32 `json:"mode"`
	UID     uint32 `json:"uid"`
	GID     uint32 `json:"gid"`
	CPID    int32  `json:"cpid"`
	Ctime   int64  `json:"ctime"`
	Removed bool   `json:"removed,omitempty"`
}

// SemSet is a System V semaphore set as semctl(IPC_STAT) shows it, with
// the values and last-operation pids (GETALL, GETPID) it had when the
// tree was frozen: the values the set has again after a restore.
type SemSet struct {
	ID     int      `json:"id"`
	Key    int32    `json:"key,omitempty"` // 0: IPC_PRIVATE
	Mode   uint32   `json:"mode"`          // permission bits
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	CUID   uint32   `json:"cuid"`
	CGID   uint32   `json:"cgid"`
	Values []uint16 `json:"values"`
	PIDs   []int32  `json:"pids"`
}

// SemUndo is one process's adjustments of the semaphores of set Set: the
// kernel adds Adj[i] to semaphore i when the process exits.
type SemUndo struct {
	Set int     `json:"set"`
	Adj []int16 `json:"adj"`
}

// SockCred is struct ucred as SCM_CREDENTIALS carries it.
type SockCred struct {
	PID int32  `json:"pid,omitempty"`
	UID uint32 `json:"uid,omitempty"`
	GID uint32 `json:"gid,omitempty"`
}

// SeccompFilter is one seccomp filter of a thread: its classic BPF
// program (the raw array of struct sock_filter, 8 bytes each) and the
// flags it was installed with that the kernel reports
// (SECCOMP_FILTER_FLAG_LOG).
type SeccompFilter struct {
	Flags uint64 `json:"flags,omitempty"`
	Code  []byte `json:"code"`
}

// ObjectID names a kernel file object (a memfd, a shared anonymous mapping,
// an unlinked file) by its source device and inode. VMAs and FDs that refer
// to the same object carry the same ID, so restore recreates it once.
func ObjectID(dev, ino uint64) string { return fmt.Sprintf("obj:%x:%x", dev, ino) }

// AddPending queues a signal that arrived while the process was frozen:
// on thread tid, or process-wide when tid is 0.
func (p *Process) AddPending(tid int, info Siginfo) error {
	if tid == 0 {
		p.SharedPending = append(p.SharedPending, info)
		return nil
	}
	for _, th := range p.Threads {
		if th.TID == tid {
			th.Pending = append(th.Pending, info)
			return nil
		}
	}
	return fmt.Errorf("signal for thread %d, which process %d does not have", tid, p.PID)
}

// NotifyMark is an inotify watch (WD, Mask with IN_ONESHOT and
// IN_EXCL_UNLINK) or a fanotify mark (Kind inode/mount/filesystem, MFlags,
// Mask, IgnoredMask) on the object Path names.
type NotifyMark struct {
	WD          int    `json:"wd,omitempty"`
	Kind        string `json:"kind,omitempty"`
	Path        string `json:"path"`
	Mask        uint64 `json:"mask"`
	IgnoredMask uint64 `json:"ignored_mask,omitempty"`
	MFlags      uint32 `json:"mflags,omitempty"`
}

// FileLock kinds.
const (
	LockFlock = "flock" // flock(2): owned by the open file description
	LockOFD   = "ofd"   // F_OFD_SETLK: owned by the open file description
	LockPOSIX = "posix" // F_SETLK: owned by the process
	LockLease = "lease" // F_SETLEASE: on the open file description, set by its first holder
)

// FileLock types.
const (
	LockRead  = "read"
	LockWrite = "write"
)

// FileLock is one advisory file lock, as /proc/PID/fdinfo lists it.
type FileLock struct {
	Kind string `json:"kind"` // LockFlock, LockOFD, LockPOSIX, LockLease
	Type string `json:"type"` // LockRead (shared) or LockWrite (exclusive)
	// Start and Length of the byte range (POSIX and OFD); Length 0 means
	// to the end of the file, however far it grows. A flock has neither.
	Start  int64 `json:"start,omitempty"`
	Length int64 `json:"length,omitempty"`
	// PID is the holder /proc reported: the process that took a flock,
	// the owner of a POSIX lock, -1 for an OFD lock.
	PID int `json:"pid,omitempty"`
}

// RseqPages lists, sorted, the pages holding the rseq areas of p's
// threads: the kernel writes them on its own whenever a thread returns to
// user space, so a restore must fill them before the threads run.
func (p *Process) RseqPages(pageSize uint64) []uint64 {
	var pages []uint64
	for _, th := range p.Threads {
		if th.RseqAddr == 0 {
			continue
		}
		end := th.RseqAddr + uint64(max(th.RseqLen, 32))
		for a := th.RseqAddr &^ (pageSize - 1); a < end; a += pageSize {
			pages = append(pages, a)
		}
	}
	slices.Sort(pages)
	return slices.Compact(pages)
}
