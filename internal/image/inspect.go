package image

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Summary describes a whole image: its state and what memory and file
// contents it carries. It is what `ferry inspect` prints, and encodes
// with encoding/json for `ferry inspect --json`.
type Summary struct {
	Version    uint32      `json:"version"`
	Stats      Stats       `json:"stats"`
	Checkpoint *Checkpoint `json:"checkpoint"`
	// Processes follows Checkpoint.Processes.
	Processes []ProcessPages `json:"processes"`
	// Files is sorted by ID.
	Files []FileContent `json:"files"`
}

// ProcessPages is what an image holds of one process's memory. Pages sent
// twice (a live migration may resend a page) count twice.
type ProcessPages struct {
	PID   int   `json:"pid"`
	Pages int64 `json:"pages"`
	Bytes int64 `json:"bytes"`
	// VMAPages[i] counts the stored pages inside the process's VMAs[i].
	VMAPages []int64 `json:"vma_pages"`
	// Outside counts stored pages that lie in no VMA: restore has nowhere
	// to put them, so a non-zero value points at a dump bug.
	Outside int64 `json:"outside,omitempty"`
	// LazyPages counts data pages left on the source (lazy records).
	LazyPages int64 `json:"lazy_pages,omitempty"`
}

// FileContent is what an image holds of one file object.
type FileContent struct {
	ID      string `json:"id"`
	Records int    `json:"records"`
	Bytes   int64  `json:"bytes"`
	// End is the highest offset+length stored: the least size the object
	// must have.
	End int64 `json:"end"`
}

// vmaIndex finds the VMAs a page range falls in.
type vmaIndex struct {
	vmas  []VMA
	order []int // indexes into vmas, by Start
}

func newVMAIndex(vmas []VMA) vmaIndex {
	order := make([]int, len(vmas))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return vmas[order[a]].Start < vmas[order[b]].Start })
	return vmaIndex{vmas: vmas, order: order}
}

// add counts the pages of [addr, addr+n) into per-VMA counters and returns
// how many pages no VMA covers.
func (x vmaIndex) add(counts []int64, addr, n uint64, pageSize int) (outside int64) {
	end := addr + n
	ps := uint64(pageSize)
	covered := uint64(0)
	// First VMA that could overlap: the last one starting at or before addr.
	i := sort.Search(len(x.order), func(k int) bool { return x.vmas[x.order[k]].Start > addr })
	if i > 0 {
		i--
	}
	for ; i < len(x.order); i++ {
		v := &x.vmas[x.order[i]]
		if v.Start >= end {
			break
		}
		lo, hi := max(v.Start, addr), min(v.End, end)
		if lo < hi {
			counts[x.order[i]] += int64((hi - lo) / ps)
			covered += hi - lo
		}
	}
	if covered > n {
		covered = n // overlapping VMAs; the state is odd, do not go negative
	}
	return int64((n - covered) / ps)
}

// Summarize reads the rest of r and returns its summary. Records read
// before the call are not counted in the page and file figures. On a
// damaged or truncated image it returns the summary of what it could read
// along with the error, so an inspector can still show it.
func Summarize(r *Reader) (*Summary, error) {
	s := &Summary{Version: r.Version()}
	var (
		byPID   = map[int]int{}
		indexes []vmaIndex
		files   = map[string]*FileContent{}
	)
	setState := func(c *Checkpoint) {
		s.Checkpoint = c
		for i, p := range c.Processes {
			byPID[p.PID] = i
			s.Processes = append(s.Processes, ProcessPages{PID: p.PID, VMAPages: make([]int64, len(p.VMAs))})
			indexes = append(indexes, newVMAIndex(p.VMAs))
		}
	}
	if c := r.State(); c != nil {
		setState(c)
	}
	finish := func() {
		s.Stats = r.Stats()
		s.Files = make([]FileContent, 0, len(files))
		for _, f := range files {
			s.Files = append(s.Files, *f)
		}
		slices.SortFunc(s.Files, func(a, b FileContent) int { return strings.Compare(a.ID, b.ID) })
	}
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			finish()
			return s, nil
		}
		if err != nil {
			finish()
			return s, err
		}
		switch rec.Type {
		case RecordState:
			setState(rec.State)
		case RecordPages:
			i := byPID[rec.PID] // the Reader checked the pid against the state
			pp := &s.Processes[i]
			ps := r.info.pageSize
			pp.Pages += int64(len(rec.Data) / ps)
			pp.Bytes += int64(len(rec.Data))
			pp.Outside += indexes[i].add(pp.VMAPages, rec.Addr, uint64(len(rec.Data)), ps)
		case RecordLazy:
			s.Processes[byPID[rec.PID]].LazyPages += int64(rec.Lazy.DataPages())
		case RecordFileData:
			f := files[rec.FileID]
			if f == nil {
				f = &FileContent{ID: rec.FileID}
				files[rec.FileID] = f
			}
			f.Records++
			f.Bytes += int64(len(rec.Data))
			f.End = max(f.End, rec.Offset+int64(len(rec.Data)))
		}
	}
}

// WriteText writes the summary for people: the image, then for each
// process its threads, VMAs, fds, signal handlers and timers, then the
// file objects.
func (s *Summary) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	st := s.Stats
	p("ferry image v%d: %d records, %s\n", s.Version, st.Records, humanBytes(st.TotalBytes))
	p("  state %s, pages %s (%d pages), file data %s\n", humanBytes(st.StateBytes), humanBytes(st.PageBytes), st.Pages, humanBytes(st.FileBytes))
	c := s.Checkpoint
	if c == nil {
		p("no state record\n")
		return tw.Flush()
	}
	p("checkpoint of pid %d: %d processes, kernel %s", c.Root, len(c.Processes), orDash(c.Kernel))
	if c.Hostname != "" {
		p(", host %s", c.Hostname)
	}
	p(", page size %d", pageSizeOf(c))
	if c.TimeUnixNano != 0 {
		p(", taken %s", time.Unix(0, c.TimeUnixNano).UTC().Format(time.RFC3339Nano))
	}
	p("\n")

	for i, proc := range c.Processes {
		var pp ProcessPages
		if i < len(s.Processes) {
			pp = s.Processes[i]
		}
		p("\n")
		writeProcess(p, proc, pp, pageSizeOf(c))
	}

	if len(c.InFlight) > 0 {
		p("\nin flight (only socket queues hold them)\n")
		p("    KIND\tFLAGS\tDESC\tDETAIL\n")
		for _, fd := range c.InFlight {
			p("    %s\t%s\t%s\t%s\n", fd.Kind, openFlagsString(fd.Flags), fd.Desc, fdDetail(&fd))
		}
	}

	if len(s.Files) > 0 {
		p("\nfile objects\n")
		p("  ID\tBYTES\tRECORDS\tEND\n")
		for _, f := range s.Files {
			p("  %s\t%d\t%d\t%d\n", f.ID, f.Bytes, f.Records, f.End)
		}
	}
	return tw.Flush()
}

func pageSizeOf(c *Checkpoint) int {
	if c.PageSize == 0 {
		return DefaultPageSize
	}
	return c.PageSize
}

type printf func(format string, args ...any)

func writeProcess(p printf, proc *Process, pp ProcessPages, pageSize int) {
	p("process %d %q (ppid %d, pgid %d, sid %d)", proc.PID, proc.Comm, proc.PPID, proc.PGID, proc.SID)
	if proc.Stopped {
		p(" stopped")
	}
	p("\n")
	p("  exe\t%s", orDash(proc.Exe))
	if proc.ExeHash != "" {
		p(" (sha256 %s)", proc.ExeHash)
	}
	p("\n  cwd\t%s", orDash(proc.Cwd))
	if g := proc.CwdGone; g != nil {
		p(" (deleted: stand-in mode %04o owner %d:%d)", g.Mode&0o7777, g.UID, g.GID)
	}
	if proc.Root != "" {
		p("\n  root\t%s (chrooted)", proc.Root)
	}
	p("\n")
	cr := proc.Creds
	p("  creds\tuid %d/%d/%d/%d gid %d/%d/%d/%d umask %04o cap_eff %#x\n",
		cr.UID[0], cr.UID[1], cr.UID[2], cr.UID[3], cr.GID[0], cr.GID[1], cr.GID[2], cr.GID[3], proc.Umask, cr.CapEff)
	if cr.CapPrm != cr.CapEff || cr.CapInh != 0 || cr.CapAmb != 0 || cr.Securebits != 0 {
		p("  caps	permitted %#x inheritable %#x bounding %#x ambient %#x securebits %#x\n",
			cr.CapPrm, cr.CapInh, cr.CapBnd, cr.CapAmb, cr.Securebits)
	}
	var attrs []string
	if proc.OOMScoreAdj != 0 {
		attrs = append(attrs, fmt.Sprintf("oom_score_adj %d", proc.OOMScoreAdj))
	}
	if proc.Membarrier != 0 {
		attrs = append(attrs, fmt.Sprintf("membarrier registrations %#x", proc.Membarrier))
	}
	if proc.FilesOf != 0 {
		attrs = append(attrs, fmt.Sprintf("fd table shared with %d", proc.FilesOf))
	}
	if len(attrs) > 0 {
		p("  attrs\t%s\n", strings.Join(attrs, ", "))
	}
	p("  memory\t%d pages (%s) stored for %d VMAs", pp.Pages, humanBytes(pp.Bytes), len(proc.VMAs))
	if pp.Outside > 0 {
		p(", %d pages outside any VMA", pp.Outside)
	}
	if pp.LazyPages > 0 {
		p(", %d pages left on the source (postcopy)", pp.LazyPages)
	}
	p("\n")

	p("  threads\n")
	p("    TID\tNAME\tSIGMASK\tPENDING\tALTSTACK\tSTATE\n")
	for _, t := range proc.Threads {
		alt := "-"
		if t.Altstack.Size != 0 {
			alt = fmt.Sprintf("%#x+%d", t.Altstack.SP, t.Altstack.Size)
		}
		state := "running"
		if t.InSyscall {
			state = "in syscall"
		}
		if t.Policy != 0 {
			state += fmt.Sprintf(", policy %d prio %d", t.Policy, t.RTPrio)
		}
		if t.PdeathSig != 0 {
			state += ", pdeathsig " + signalName(t.PdeathSig)
		}
		switch t.Seccomp {
		case 1:
			state += ", seccomp strict"
		case 2:
			state += fmt.Sprintf(", %d seccomp filters", len(t.SeccompFilters))
		}
		p("    %d\t%s\t%#016x\t%d\t%s\t%s\n", t.TID, orDash(t.Name), t.SigMask, len(t.Pending), alt, state)
	}

	p("  vmas\n")
	p("    START\tEND\tPROT\tKIND\tPAGES\tNAME\n")
	for i, v := range proc.VMAs {
		var stored int64
		if i < len(pp.VMAPages) {
			stored = pp.VMAPages[i]
		}
		name := v.Name
		if name == "" {
			name = v.Path
		}
		if v.FileID != "" {
			name = strings.TrimSpace(name + " " + v.FileID)
		}
		name = strings.TrimSpace(name + vmaExtra(&v, pageSize))
		p("    %012x\t%012x\t%s\t%s\t%d/%d\t%s\n", v.Start, v.End, protString(v.Prot, v.Shared), v.Kind, stored, v.Size()/uint64(pageSize), orDash(name))
	}

	if len(proc.FDs) > 0 {
		p("  fds\n")
		p("    FD\tKIND\tFLAGS\tDESC\tDETAIL\n")
		for _, fd := range proc.FDs {
			flags := openFlagsString(fd.Flags)
			if fd.CloExec {
				flags += "|O_CLOEXEC"
			}
			kind := fd.Kind
			if kind == "" {
				kind = "(dup)"
				flags = "-"
			}
			p("    %d\t%s\t%s\t%s\t%s\n", fd.Num, kind, flags, orDash(fd.Desc), fdDetail(&fd))
		}
	}

	var handled []int
	for i, sa := range proc.Sigactions {
		if sa.Handler != sigDFL {
			handled = append(handled, i)
		}
	}
	if len(handled) > 0 {
		p("  signal handlers\n")
		p("    SIGNAL\tHANDLER\tFLAGS\tMASK\n")
		for _, i := range handled {
			sa := proc.Sigactions[i]
			h := fmt.Sprintf("%#x", sa.Handler)
			if sa.Handler == sigIGN {
				h = "SIG_IGN"
			}
			p("    %s\t%s\t%s\t%#x\n", signalName(i+1), h, saFlagsString(sa.Flags), sa.Mask)
		}
	}
	if len(proc.SharedPending) > 0 {
		p("  pending\t%d process-wide signals\n", len(proc.SharedPending))
	}

	var timers []string
	for i, it := range proc.Itimers {
		if it.ValueUsec != 0 || it.IntervalUsec != 0 {
			timers = append(timers, fmt.Sprintf("%s\tvalue %s interval %s", itimerNames[i],
				time.Duration(it.ValueUsec)*time.Microsecond, time.Duration(it.IntervalUsec)*time.Microsecond))
		}
	}
	for _, t := range proc.PosixTimers {
		timers = append(timers, fmt.Sprintf("posix timer %d\t%s, signal %s, value %s interval %s, overrun %d",
			t.ID, clockName(t.ClockID), signalName(t.Signal), time.Duration(t.ValueNsec), time.Duration(t.IntervalNsec), t.Overrun))
	}
	if len(timers) > 0 {
		p("  timers\n")
		for _, t := range timers {
			p("    %s\n", t)
		}
	}
}

func fdDetail(fd *FD) string {
	var b strings.Builder
	add := func(format string, args ...any) {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, format, args...)
	}
	if fd.Path != "" {
		add("%s", fd.Path)
	}
	if fd.Unlinked {
		add("(deleted, owner %d:%d)", fd.UID, fd.GID)
	}
	if fd.FileID != "" {
		add("content %s", fd.FileID)
	}
	if fd.Offset != 0 {
		add("offset %d", fd.Offset)
	}
	if fd.OwnerPID != 0 {
		add("sigio to %s %d", [...]string{"thread", "process", "group"}[min(max(fd.OwnerType, 0), 2)], fd.OwnerPID)
	}
	if fd.Sig != 0 {
		add("signal %s", signalName(fd.Sig))
	}
	if fd.UID != 0 || fd.GID != 0 {
		add("owner %d:%d", fd.UID, fd.GID)
	}
	if fd.Extents != nil {
		add("%d data ranges", len(fd.Extents))
	}
	switch fd.Kind {
	case FDPipe, FDFIFO:
		if fd.PipeID != "" {
			add("pipe %s", fd.PipeID)
		}
		if len(fd.Buffered) > 0 {
			add("%d bytes buffered", len(fd.Buffered))
		}
		if fd.External {
			add("other end outside the tree")
		}
	case FDEventfd:
		add("count %d", fd.EventfdCount)
		if fd.EventfdSemaphore {
			add("semaphore")
		}
	case FDTimerfd:
		add("%s, value %s interval %s, %d ticks", clockName(fd.TimerClock),
			time.Duration(fd.TimerValueNsec), time.Duration(fd.TimerIntervalNsec), fd.TimerTicks)
	case FDSignalfd:
		add("mask %#x", fd.SignalfdMask)
	case FDInotify, FDFanotify:
		for _, w := range fd.Watches {
			if fd.Kind == FDInotify {
				add("wd %d %s mask %#x;", w.WD, w.Path, w.Mask)
			} else {
				add("%s mark %s mask %#x ignored %#x;", w.Kind, w.Path, w.Mask, w.IgnoredMask)
			}
		}
	case FDEpoll:
		items := make([]string, len(fd.Epoll))
		for i, it := range fd.Epoll {
			items[i] = fmt.Sprintf("%d:%#x", it.FD, it.Events)
		}
		add("watching [%s]", strings.Join(items, " "))
	case FDMsg:
		add("message endpoint %s", fd.MsgID)
		if fd.SockPeerName != "" {
			add("connected to %s", fd.SockPeerName)
		}
		if n := len(fd.MsgUnread); n > 0 {
			total := 0
			for _, m := range fd.MsgUnread {
				total += len(m)
			}
			add("%d unread (%d bytes)", n, total)
		}
	case FDUnix:
		add("%s", sockTypeName(fd.SockType))
		if fd.SockName != "" {
			add("bound to %s", fd.SockName)
		}
		if fd.SockListen {
			add("listening (backlog %d)", fd.SockBacklog)
		}
		if fd.SockAccepted {
			add("accepted")
		}
		if fd.SockPeer != "" {
			add("peer %s", fd.SockPeer)
		}
		if fd.SockPeerName != "" {
			add("connected to %s", fd.SockPeerName)
		}
		if len(fd.SockPending) > 0 {
			add("pending [%s]", strings.Join(fd.SockPending, " "))
		}
		if fd.SockPendingOn != "" {
			add("waiting in the backlog of %s", fd.SockPendingOn)
		}
		if n := len(fd.SockQueue); n > 0 {
			total := 0
			for _, q := range fd.SockQueue {
				total += len(q)
			}
			add("%d queued (%d bytes)", n, total)
		}
		var rights []string
		for _, ids := range fd.SockRights {
			rights = append(rights, ids...)
		}
		if len(rights) > 0 {
			add("files in flight [%s]", strings.Join(rights, " "))
		}
		if fd.SockShutRD {
			add("shut-rd")
		}
		if fd.SockShutWR {
			add("shut-wr")
		}
	}
	if b.Len() == 0 {
		return "-"
	}
	return b.String()
}

// Linux ABI values used for display only; the image stores raw numbers.

// Protection bits, include/uapi/asm-generic/mman-common.h.
const (
	protRead  = 0x1
	protWrite = 0x2
	protExec  = 0x4
)

func protString(prot int, shared bool) string {
	b := []byte("---p")
	if prot&protRead != 0 {
		b[0] = 'r'
	}
	if prot&protWrite != 0 {
		b[1] = 'w'
	}
	if prot&protExec != 0 {
		b[2] = 'x'
	}
	if shared {
		b[3] = 's'
	}
	return string(b)
}

// Open flags, include/uapi/asm-generic/fcntl.h (x86-64 values).
var openFlagNames = []struct {
	bit  int
	name string
}{
	{0o2000, "O_APPEND"},
	{0o4000, "O_NONBLOCK"},
	{0o10000, "O_DSYNC"},
	{0o20000, "O_ASYNC"},
	{0o40000, "O_DIRECT"},
	{0o100000, "O_LARGEFILE"},
	{0o200000, "O_DIRECTORY"},
	{0o400000, "O_NOFOLLOW"},
	{0o1000000, "O_NOATIME"},
	{0o4000000, "__O_SYNC"},
	{0o10000000, "O_PATH"},
}

func openFlagsString(flags int) string {
	parts := []string{[...]string{"O_RDONLY", "O_WRONLY", "O_RDWR", "O_ACCMODE"}[flags&3]}
	rest := flags &^ 3
	for _, f := range openFlagNames {
		if rest&f.bit != 0 {
			parts = append(parts, f.name)
			rest &^= f.bit
		}
	}
	if rest != 0 {
		parts = append(parts, fmt.Sprintf("%#o", rest))
	}
	return strings.Join(parts, "|")
}

// Signal dispositions and sa_flags, include/uapi/asm-generic/signal-defs.h
// and arch/x86/include/uapi/asm/signal.h.
const (
	sigDFL = 0
	sigIGN = 1
)

var saFlagNames = []struct {
	bit  uint64
	name string
}{
	{0x1, "SA_NOCLDSTOP"},
	{0x2, "SA_NOCLDWAIT"},
	{0x4, "SA_SIGINFO"},
	{0x04000000, "SA_RESTORER"},
	{0x08000000, "SA_ONSTACK"},
	{0x10000000, "SA_RESTART"},
	{0x40000000, "SA_NODEFER"},
	{0x80000000, "SA_RESETHAND"},
}

func saFlagsString(flags uint64) string {
	var parts []string
	for _, f := range saFlagNames {
		if flags&f.bit != 0 {
			parts = append(parts, f.name)
			flags &^= f.bit
		}
	}
	if flags != 0 {
		parts = append(parts, fmt.Sprintf("%#x", flags))
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, "|")
}

// Signal names 1..31, arch/x86/include/uapi/asm/signal.h.
var signalNames = [...]string{
	1: "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
	"SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT",
	"SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN", "SIGTTOU", "SIGURG", "SIGXCPU",
	"SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
}

func signalName(sig int) string {
	if sig > 0 && sig < len(signalNames) {
		return signalNames[sig]
	}
	return fmt.Sprintf("SIG%d", sig) // real-time signals are numbered, as the kernel does
}

var itimerNames = [3]string{"ITIMER_REAL", "ITIMER_VIRTUAL", "ITIMER_PROF"}

// Clock ids, include/uapi/linux/time.h.
var clockNames = [...]string{
	"CLOCK_REALTIME", "CLOCK_MONOTONIC", "CLOCK_PROCESS_CPUTIME_ID", "CLOCK_THREAD_CPUTIME_ID",
	"CLOCK_MONOTONIC_RAW", "CLOCK_REALTIME_COARSE", "CLOCK_MONOTONIC_COARSE", "CLOCK_BOOTTIME",
	"CLOCK_REALTIME_ALARM", "CLOCK_BOOTTIME_ALARM",
}

func clockName(id int) string {
	if id >= 0 && id < len(clockNames) {
		return clockNames[id]
	}
	return fmt.Sprintf("clock %d", id)
}

// Socket types, include/linux/net.h.
func sockTypeName(t int) string {
	switch t {
	case 1:
		return "SOCK_STREAM"
	case 2:
		return "SOCK_DGRAM"
	case 5:
		return "SOCK_SEQPACKET"
	}
	return fmt.Sprintf("socket type %d", t)
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), ""
	for _, s := range []string{"KiB", "MiB", "GiB", "TiB"} {
		v /= unit
		suffix = s
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f %s", v, suffix)
}

// vmaExtra describes the VMA state beyond its bounds: madvise and mlock
// flags, a shared mapping that may be made writable, pages inherited from
// the parent by fork.
func vmaExtra(v *VMA, pageSize int) string {
	var b strings.Builder
	if len(v.VMFlags) > 0 {
		fmt.Fprintf(&b, " vmflags=%s", strings.Join(v.VMFlags, ","))
	}
	if v.Shared && v.MayWrite && v.Prot&protWrite == 0 {
		b.WriteString(" may-write")
	}
	if len(v.Inherited) > 0 {
		var n uint64
		for _, r := range v.Inherited {
			n += (r[1] - r[0]) / uint64(pageSize)
		}
		fmt.Fprintf(&b, " inherited=%d", n)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
