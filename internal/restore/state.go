package restore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// fdInjector is the lead's injector that can also install ferry's files
// (fds.Installer).
type fdInjector struct {
	*ptrace.Injector
	b *builder
}

func (f fdInjector) Install(file *os.File) (uint64, error) { return f.b.install(file) }

// installFDs replaces the seed's fd table with the image's.
func (b *builder) installFDs() error {
	if b.p.FilesOf != 0 {
		// The table is its parent's, installed already.
		b.fr.Files(b.p.PID)
		if err := b.fr.Finish(b.p.PID, fdInjector{b.lead, b}); err != nil {
			return fmt.Errorf("file descriptors: %w", err)
		}
		return nil
	}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", b.pid))
	if err != nil {
		return err
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil || uint64(n) == b.tpidfd {
			continue
		}
		b.lead.Syscall(unix.SYS_CLOSE, uint64(n))
	}
	for _, in := range b.fr.Files(b.p.PID) {
		if in.File == nil {
			return fmt.Errorf("fd %d: %w", in.Num, b.fr.FileErr(b.p.PID, in.Num))
		}
		tfd, err := b.install(in.File)
		if err != nil {
			return fmt.Errorf("fd %d: %w", in.Num, err)
		}
		var flags uint64
		if in.CloExec {
			flags = unix.O_CLOEXEC
		}
		if tfd != uint64(in.Num) {
			if _, err := b.lead.Syscall(unix.SYS_DUP3, tfd, uint64(in.Num), flags); err != nil {
				return fmt.Errorf("fd %d: dup3: %w", in.Num, err)
			}
			b.lead.Syscall(unix.SYS_CLOSE, tfd)
		} else if !in.CloExec {
			b.lead.Syscall(unix.SYS_FCNTL, tfd, unix.F_SETFD, 0)
		}
	}
	if err := b.fr.Finish(b.p.PID, fdInjector{b.lead, b}); err != nil {
		return fmt.Errorf("file descriptors: %w", err)
	}
	if b.tpidfd != 0 {
		b.lead.Syscall(unix.SYS_CLOSE, b.tpidfd)
		b.tpidfd = 0
	}
	return nil
}

// chdir enters the recorded working directory: by path, or, when it had
// been removed, the stand-in the fds layer made for it, or when its path is
// longer than the kernel takes whole (PATH_MAX), the directory ferry opened
// piece by piece (fchdir on an O_PATH fd brought in and closed again).
func (b *builder) chdir() error {
	p := b.p
	if p.CwdGone != nil {
		f := b.fr.Cwd(p.PID)
		if f == nil {
			return fmt.Errorf("removed cwd %s: no stand-in was made", p.Cwd)
		}
		if err := b.fchdir(f); err != nil {
			return fmt.Errorf("fchdir to the stand-in of removed cwd %s: %w", p.Cwd, err)
		}
		return nil
	}
	if len(p.Cwd) >= kernel.PathMax {
		fd, err := kernel.OpenLong(p.Cwd, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("cwd of %d bytes (longer than PATH_MAX): %w", len(p.Cwd), err)
		}
		f := os.NewFile(uintptr(fd), "cwd")
		defer f.Close()
		if err := b.fchdir(f); err != nil {
			return fmt.Errorf("fchdir to the cwd of %d bytes (longer than PATH_MAX): %w", len(p.Cwd), err)
		}
		return nil
	}
	addr, err := b.lead.Scratch(cstring(p.Cwd))
	if err != nil {
		return err
	}
	if _, err := b.lead.Syscall(unix.SYS_CHDIR, addr); err != nil {
		return fmt.Errorf("chdir %s: %w", p.Cwd, err)
	}
	return nil
}

// fchdir makes directory f (ferry's) the target's working directory,
// through a copy of it brought into the target and closed again.
func (b *builder) fchdir(f *os.File) error {
	tfd, err := b.install(f)
	if err != nil {
		return err
	}
	_, err = b.lead.Syscall(unix.SYS_FCHDIR, tfd)
	b.lead.Syscall(unix.SYS_CLOSE, tfd)
	if b.tpidfd != 0 {
		b.lead.Syscall(unix.SYS_CLOSE, b.tpidfd)
		b.tpidfd = 0
	}
	return err
}

// chroot gives a process that had chrooted its root back, after its cwd
// (a path from ferry's root, entered first).
func (b *builder) chroot() error {
	if b.p.Root == "" || b.p.Root == "/" {
		return nil
	}
	addr, err := b.lead.Scratch(cstring(b.p.Root))
	if err != nil {
		return err
	}
	if _, err := b.lead.Syscall(unix.SYS_CHROOT, addr); err != nil {
		return fmt.Errorf("chroot %s: %w", b.p.Root, err)
	}
	return nil
}

func cstring(s string) []byte { return append([]byte(s), 0) }

func (b *builder) processAttrs() error {
	p := b.p
	// cwd and root are its parent's when it shares them (CLONE_FS),
	// set there already.
	if p.FSOf == 0 {
		if err := b.chdir(); err != nil {
			return err
		}
		if err := b.chroot(); err != nil {
			return err
		}
	}
	b.lead.Syscall(unix.SYS_UMASK, uint64(p.Umask))
	if p.THPDisable {
		if _, err := b.lead.Syscall(unix.SYS_PRCTL, kernel.PR_SET_THP_DISABLE, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("THP disable: %w", err)
		}
	}
	if p.ChildSubreaper {
		if _, err := b.lead.Syscall(unix.SYS_PRCTL, kernel.PR_SET_CHILD_SUBREAPER, 1); err != nil {
			return fmt.Errorf("child subreaper: %w", err)
		}
	}
	if p.Personality != 0 {
		b.lead.Syscall(unix.SYS_PERSONALITY, uint64(p.Personality))
	}
	if err := setOOMScoreAdj(b.pid, p.OOMScoreAdj); err != nil {
		return err
	}
	for _, cmd := range kernel.MembarrierRegisterCmds {
		if p.Membarrier&cmd != 0 {
			if _, err := b.lead.Syscall(unix.SYS_MEMBARRIER, cmd, 0, 0); err != nil {
				return fmt.Errorf("membarrier registration %#x: %w", cmd, err)
			}
		}
	}
	for _, r := range p.Rlimits {
		rl := unix.Rlimit{Cur: r.Cur, Max: r.Max}
		if err := unix.Prlimit(b.pid, r.Resource, &rl, nil); err != nil {
			if errors.Is(err, unix.EPERM) {
				return fmt.Errorf("rlimit %d (%d/%d): raising a hard limit needs CAP_SYS_RESOURCE, which this ferry lacks: %w", r.Resource, r.Cur, r.Max, err)
			}
			return fmt.Errorf("rlimit %d: %w", r.Resource, err)
		}
	}
	return nil
}

// trapTouchy reports whether the image ignores SIGTRAP or has one pending.
func trapTouchy(p *image.Process) bool {
	if i := int(unix.SIGTRAP) - 1; i < len(p.Sigactions) && p.Sigactions[i].Handler == 1 /* SIG_IGN */ {
		return true
	}
	isTrap := func(si image.Siginfo) bool {
		return len(si) >= 4 && binary.LittleEndian.Uint32(si) == uint32(unix.SIGTRAP)
	}
	for _, si := range p.SharedPending {
		if isTrap(si) {
			return true
		}
	}
	for _, th := range p.Threads {
		for _, si := range th.Pending {
			if isTrap(si) {
				return true
			}
		}
	}
	return false
}

// setOOMScoreAdj writes /proc/PID/oom_score_adj when it differs.
func setOOMScoreAdj(pid, v int) error {
	path := fmt.Sprintf("/proc/%d/oom_score_adj", pid)
	cur, err := procfs.OOMScoreAdj(pid)
	if err != nil {
		return err
	}
	if cur == v {
		return nil
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(v)), 0); err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return fmt.Errorf("oom_score_adj %d (ferry's is %d): lowering it needs CAP_SYS_RESOURCE, which this ferry lacks: %w", v, cur, err)
		}
		return fmt.Errorf("oom_score_adj %d: %w", v, err)
	}
	return nil
}

func (b *builder) signalsAndTimers() error {
	p := b.p
	if trapTouchy(p) {
		// From now on a forced trap would disturb the program's SIGTRAP.
		for _, in := range b.inj {
			if err := in.AvoidTraps(); err != nil {
				return err
			}
		}
	}
	for i, sa := range p.Sigactions {
		sig := i + 1
		if sig == int(unix.SIGKILL) || sig == int(unix.SIGSTOP) || sa == (image.Sigaction{}) {
			continue
		}
		ks := kernel.KSigaction{Handler: sa.Handler, Flags: sa.Flags, Restorer: sa.Restorer, Mask: sa.Mask}
		addr, err := b.lead.Scratch(kernel.Bytes(&ks))
		if err != nil {
			return err
		}
		if _, err := b.lead.Syscall(unix.SYS_RT_SIGACTION, uint64(sig), addr, 0, 8); err != nil {
			return fmt.Errorf("sigaction %d: %w", sig, err)
		}
	}
	for which, it := range p.Itimers {
		if it == (image.Itimer{}) {
			continue
		}
		if it.ValueUsec == 0 {
			// An ITIMER_REAL that fired while the process was frozen reads
			// 0 with its interval: the kernel re-arms it when its SIGALRM
			// (pending, in the image) is taken. A value of 0 would disarm
			// it; 1 µs fires once more into the same pending SIGALRM and
			// leaves it waiting to be re-armed the same way.
			it.ValueUsec = 1
		}
		v := kernel.Itimerval{IntervalSec: it.IntervalUsec / 1e6, IntervalUsec: it.IntervalUsec % 1e6,
			ValueSec: it.ValueUsec / 1e6, ValueUsec: it.ValueUsec % 1e6}
		addr, err := b.lead.Scratch(kernel.Bytes(&v))
		if err != nil {
			return err
		}
		if _, err := b.lead.Syscall(unix.SYS_SETITIMER, uint64(which), addr, 0); err != nil {
			return fmt.Errorf("setitimer %d: %w", which, err)
		}
	}
	if len(p.PosixTimers) > 0 {
		if _, err := b.lead.Syscall(unix.SYS_PRCTL, kernel.PR_TIMER_CREATE_RESTORE_IDS, kernel.PR_TIMER_CREATE_RESTORE_IDS_ON); err != nil {
			return fmt.Errorf("POSIX timers need PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15+): %w", err)
		}
		// /proc/PID/timers lists the newest first: create the oldest first
		// so the kernel's list comes out in the same order.
		for i := len(p.PosixTimers) - 1; i >= 0; i-- {
			t := p.PosixTimers[i]
			notify, tid := t.Notify, 0
			if notify&sigevThreadID != 0 {
				// Its thread, as numbered now; one that has exited gets no
				// signal from it any more, as a SIGEV_NONE timer.
				for j, th := range p.Threads {
					if th.TID == t.NotifyTID && j < len(b.tids) {
						tid = b.tids[j]
					}
				}
				if tid == 0 {
					notify = sigevNone
				}
			}
			sev := kernel.Sigevent{Value: t.SigevValue, Signo: int32(t.Signal), Notify: int32(notify), TID: int32(tid)}
			// A timer on "the calling thread's" CPU clock is created by
			// the thread whose time it counts (the ids are the process's).
			in := b.lead
			for j, th := range p.Threads {
				if t.ClockTID != 0 && th.TID == t.ClockTID && j < len(b.tids) {
					in = b.inj[b.tids[j]]
				}
			}
			sevAddr, err := in.ScratchAt(0, kernel.Bytes(&sev))
			if err != nil {
				return err
			}
			idAddr, err := in.ScratchAt(128, le64(uint64(t.ID)))
			if err != nil {
				return err
			}
			if _, err := in.Syscall(unix.SYS_TIMER_CREATE, uint64(t.ClockID), sevAddr, idAddr); err != nil {
				return fmt.Errorf("timer_create %d: %w", t.ID, err)
			}
			got, _ := in.ReadScratch(128, 4)
			if id := int(int32(binary.LittleEndian.Uint32(got))); id != t.ID {
				return fmt.Errorf("timer_create gave id %d, want %d", id, t.ID)
			}
			if t.ValueNsec == 0 && t.IntervalNsec == 0 {
				continue
			}
			its := kernel.Itimerspec{IntervalSec: t.IntervalNsec / 1e9, IntervalNsec: t.IntervalNsec % 1e9,
				ValueSec: t.ValueNsec / 1e9, ValueNsec: t.ValueNsec % 1e9}
			itsAddr, err := b.lead.ScratchAt(256, kernel.Bytes(&its))
			if err != nil {
				return err
			}
			if _, err := b.lead.Syscall(unix.SYS_TIMER_SETTIME, uint64(t.ID), 0, itsAddr, 0); err != nil {
				return fmt.Errorf("timer_settime %d: %w", t.ID, err)
			}
		}
		b.lead.Syscall(unix.SYS_PRCTL, kernel.PR_TIMER_CREATE_RESTORE_IDS, kernel.PR_TIMER_CREATE_RESTORE_IDS_OFF)
	}
	return nil
}

// threads creates every thread but the leader with its original TID.
func (b *builder) threads() error {
	const flags = unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND |
		unix.CLONE_THREAD | unix.CLONE_SYSVSEM
	for _, th := range b.p.Threads[1:] {
		ca := kernel.CloneArgs{Flags: flags}
		if !b.opts.NewPIDs {
			ca.SetTID, ca.SetTIDSize = b.scratch+512, 1
			if _, err := b.lead.ScratchAt(512, le64(uint64(th.TID))); err != nil {
				return err
			}
		}
		addr, err := b.lead.Scratch(kernel.Bytes(&ca))
		if err != nil {
			return err
		}
		tid, err := b.lead.Syscall(unix.SYS_CLONE3, addr, kernel.CloneArgsSize)
		if err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("restore thread %d: %w%s", th.TID, ErrPIDTaken, holder(th.TID))
			}
			return fmt.Errorf("clone3 thread %d: %w", th.TID, err)
		}
		ws, err := ptrace.Wait(int(tid))
		if err != nil {
			return err
		}
		if !ws.Stopped() {
			return fmt.Errorf("new thread %d: %s", tid, ptrace.Describe(ws))
		}
		in, err := ptrace.NewInjector(int(tid), b.lead.Addr)
		if err != nil {
			return err
		}
		in.SetScratch(b.scratch, scratchSize)
		b.tids = append(b.tids, int(tid))
		b.inj[int(tid)] = in
		b.fr.MapPID(th.TID, int(tid))
	}
	// Pidfds of threads (PIDFD_THREAD), which exist now.
	if err := b.fr.ThreadPidfds(b.p.PID, fdInjector{b.lead, b}); err != nil {
		return fmt.Errorf("file descriptors: %w", err)
	}
	if b.tpidfd != 0 {
		b.lead.Syscall(unix.SYS_CLOSE, b.tpidfd)
		b.tpidfd = 0
	}
	return nil
}

// finish sets per-thread state, credentials, pending signals and
// registers, unmaps the scratch memory and detaches.
func (b *builder) finish() error {
	p := b.p
	for i, th := range p.Threads {
		in := b.inj[b.tids[i]]
		if err := b.threadState(in, th); err != nil {
			return fmt.Errorf("thread %d: %w", th.TID, err)
		}
	}
	// seccomp before the credentials, while the thread may still install
	// a filter without no_new_privs (CAP_SYS_ADMIN); ferry's calls get
	// past it from then on (PTRACE_O_SUSPEND_SECCOMP, until detach).
	for i, th := range p.Threads {
		if err := seccompState(b.inj[b.tids[i]], th); err != nil {
			return fmt.Errorf("thread %d: %w", th.TID, err)
		}
	}
	for i, th := range p.Threads {
		c := p.Creds
		if th.Creds != nil {
			c = *th.Creds
		}
		if err := b.creds(b.inj[b.tids[i]], c); err != nil {
			return fmt.Errorf("thread %d: %w", th.TID, err)
		}
	}
	// Memory-deny-write-execute last of the memory state: it refuses
	// every later mapping made executable, ferry's own included.
	if p.MDWE != 0 {
		if _, err := b.lead.Syscall(unix.SYS_PRCTL, unix.PR_SET_MDWE, p.MDWE, 0, 0, 0); err != nil {
			return fmt.Errorf("PR_SET_MDWE %#x: %w", p.MDWE, err)
		}
	}
	// Dumpable after the credentials too: changing the effective ids
	// sets it to fs.suid_dumpable (0 by default), also for a process that
	// was dumpable.
	dumpable := uint64(1)
	if p.NotDumpable {
		dumpable = 0
	}
	if _, err := b.lead.Syscall(unix.SYS_PRCTL, unix.PR_SET_DUMPABLE, dumpable); err != nil {
		return fmt.Errorf("PR_SET_DUMPABLE %d: %w", dumpable, err)
	}
	// The parent-death signal after the credentials (changing them clears
	// it). Not for the tree's root: its parent is ferry now, which exits.
	for i, th := range p.Threads {
		if th.PdeathSig == 0 || b.pid == b.tree.res.PID {
			continue
		}
		if _, err := b.inj[b.tids[i]].Syscall(unix.SYS_PRCTL, unix.PR_SET_PDEATHSIG, uint64(th.PdeathSig)); err != nil {
			return fmt.Errorf("thread %d: parent-death signal %d: %w", th.TID, th.PdeathSig, err)
		}
	}
	for _, si := range p.SharedPending {
		addr, err := b.lead.Scratch(si)
		if err != nil {
			return err
		}
		sig := binary.LittleEndian.Uint32(si)
		if _, err := b.lead.Syscall(unix.SYS_RT_SIGQUEUEINFO, uint64(b.pid), uint64(sig), addr); err != nil {
			return fmt.Errorf("re-queue signal %d: %w", sig, err)
		}
	}
	if len(b.takenStops()) == 0 { // else stopReports needs it, and unmaps it
		if _, err := b.lead.Syscall(unix.SYS_MUNMAP, b.scratch, scratchSize); err != nil {
			return fmt.Errorf("unmap scratch: %w", err)
		}
	}
	for i, th := range p.Threads {
		in := b.inj[b.tids[i]]
		var regs kernel.PtraceRegs
		kernel.WordsToRegs(th.Regs, &regs)
		fixRestart(&regs)
		in.SetSaved(regs)
		in.SetSavedMask(th.SigMask)
		if err := kernel.PtraceSetXstate(in.TID, th.Xstate); err != nil {
			return fmt.Errorf("thread %d: set xstate: %w", th.TID, err)
		}
		if err := in.Restore(); err != nil {
			return err
		}
	}
	return nil
}

// detach lets the process run (or leaves it stopped, if it was: with the
// signal its parent had still to hear of, SIGSTOP otherwise).
func (b *builder) detach() error {
	if b.p.Stopped {
		sig := unix.SIGSTOP
		if parent := b.byPID[b.p.PPID]; parent != nil {
			if s := parent.p.ChildStops[b.p.PID]; s == int(unix.SIGTSTP) || s == int(unix.SIGTTIN) || s == int(unix.SIGTTOU) {
				sig = unix.Signal(s)
			}
		}
		unix.Kill(b.pid, sig)
	}
	for _, tid := range b.tids {
		if err := unix.PtraceDetach(tid); err != nil {
			return fmt.Errorf("detach %d: %w", tid, err)
		}
	}
	return nil
}

// takenStops lists the children (new PIDs) whose stop report the process
// had taken before the dump (image.Process.ChildStops) and that come
// back stopped: their stop at restore makes new reports.
func (b *builder) takenStops() []int {
	var taken []int
	for child, sig := range b.p.ChildStops {
		if c := b.byPID[child]; sig == 0 && c != nil && c.p.Stopped && !c.p.Zombie {
			taken = append(taken, child)
		}
	}
	return taken
}

// stopReports takes those new reports away again, from inside the
// process (a fresh injector: its registers are the program's by now),
// once each child, let go already (release goes children first), is in
// its stop; and the SIGCHLD of that stop, unless one was pending. Then
// the scratch memory finish left for it goes.
func (b *builder) stopReports() error {
	taken := b.takenStops()
	if len(taken) == 0 {
		return nil
	}
	in, err := ptrace.NewInjector(b.pid, b.lead.Addr)
	if err != nil {
		return err
	}
	in.SetScratch(b.scratch, scratchSize)
	defer in.Restore()
	const wstopped, wnohang = 2, 1
	for _, child := range taken {
		pid := b.byPID[child].pid
		for deadline := time.Now().Add(2 * time.Second); ; {
			if st, err := procfs.Stat(pid); err == nil && st.State == 'T' {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("child %d did not stop again", pid)
			}
			time.Sleep(time.Millisecond)
		}
		if _, err := in.Syscall(unix.SYS_WAITID, unix.P_PID, uint64(pid), 0, wstopped|wnohang, 0); err != nil {
			return fmt.Errorf("take the new stop report of child %d: %w", pid, err)
		}
	}
	if !pendingSignal(b.p, unix.SIGCHLD) {
		var set [8]byte
		binary.LittleEndian.PutUint64(set[:], 1<<(unix.SIGCHLD-1))
		setAddr, err := in.ScratchAt(0, set[:])
		if err != nil {
			return err
		}
		tsAddr, err := in.ScratchAt(64, make([]byte, 16)) // struct timespec {0, 0}: do not wait
		if err != nil {
			return err
		}
		in.Syscall(unix.SYS_RT_SIGTIMEDWAIT, setAddr, 0, tsAddr, 8) // EAGAIN: none came
	}
	if _, err := in.Syscall(unix.SYS_MUNMAP, b.scratch, scratchSize); err != nil {
		return fmt.Errorf("unmap scratch: %w", err)
	}
	return in.Restore()
}

// pendingSignal tells whether sig is among p's recorded pending signals.
func pendingSignal(p *image.Process, sig unix.Signal) bool {
	has := func(infos []image.Siginfo) bool {
		for _, si := range infos {
			if len(si) >= 4 && int32(binary.LittleEndian.Uint32(si)) == int32(sig) {
				return true
			}
		}
		return false
	}
	if has(p.SharedPending) {
		return true
	}
	for _, th := range p.Threads {
		if has(th.Pending) {
			return true
		}
	}
	return false
}

func (b *builder) threadState(in *ptrace.Injector, th *image.Thread) error {
	name, err := in.ScratchAt(1024, cstring(th.Name))
	if err != nil {
		return err
	}
	if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_NAME, name); err != nil {
		return fmt.Errorf("set name: %w", err)
	}
	if th.Altstack.Flags&2 == 0 /* SS_DISABLE */ && th.Altstack.Size != 0 {
		st := kernel.StackT{SP: th.Altstack.SP, Flags: th.Altstack.Flags &^ 1 /* SS_ONSTACK is not settable */, Size: th.Altstack.Size}
		addr, err := in.Scratch(kernel.Bytes(&st))
		if err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_SIGALTSTACK, addr, 0); err != nil {
			return fmt.Errorf("sigaltstack: %w", err)
		}
	}
	if th.TimerSlack != 0 {
		if _, err := in.Syscall(unix.SYS_PRCTL, kernel.PR_SET_TIMERSLACK, th.TimerSlack); err != nil {
			return fmt.Errorf("timer slack: %w", err)
		}
	}
	if th.TSCSigsegv {
		if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_TSC, unix.PR_TSC_SIGSEGV); err != nil {
			return fmt.Errorf("PR_SET_TSC SIGSEGV: %w", err)
		}
	}
	if th.MCEKill != kernel.PR_MCE_KILL_DEFAULT && th.MCEKill >= 0 {
		if _, err := in.Syscall(unix.SYS_PRCTL, kernel.PR_MCE_KILL, kernel.PR_MCE_KILL_SET, uint64(th.MCEKill), 0, 0); err != nil {
			return fmt.Errorf("MCE kill policy: %w", err)
		}
	}
	if err := setSched(in.TID, th); err != nil {
		return err
	}
	if th.RobustList != 0 {
		if _, err := in.Syscall(unix.SYS_SET_ROBUST_LIST, th.RobustList, th.RobustListLen); err != nil {
			return fmt.Errorf("set_robust_list: %w", err)
		}
	}
	if _, err := in.Syscall(unix.SYS_SET_TID_ADDRESS, th.ClearChildTID); err != nil {
		return fmt.Errorf("set_tid_address: %w", err)
	}
	if th.RseqAddr != 0 {
		if _, err := in.Syscall(unix.SYS_RSEQ, th.RseqAddr, uint64(th.RseqLen), 0, uint64(th.RseqSig)); err != nil {
			return fmt.Errorf("rseq: %w", err)
		}
	}
	for _, si := range th.Pending {
		addr, err := in.Scratch(si)
		if err != nil {
			return err
		}
		sig := binary.LittleEndian.Uint32(si)
		if _, err := in.Syscall(unix.SYS_RT_TGSIGQUEUEINFO, uint64(b.pid), uint64(in.TID), uint64(sig), addr); err != nil {
			return fmt.Errorf("re-queue signal %d: %w", sig, err)
		}
	}
	return nil
}

// creds gives one thread the image's credentials: bounding set, groups
// and ids, then capability sets, ambient capabilities and securebits.
// Every thread does it itself (credentials are per thread). The thread
// starts as ferry's copy: root with ferry's capabilities.
func (b *builder) creds(in *ptrace.Injector, c image.Creds) error {
	if c.NoNewPrivs {
		if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("no_new_privs: %w", err)
		}
	}
	own, last, err := b.ownCaps()
	if err != nil {
		return err
	}
	root := c.UID == [4]uint32{} && c.GID == [4]uint32{} && len(c.Groups) == 0
	if root && c.CapEff == own.CapEff && c.CapPrm == own.CapPrm && c.CapInh == 0 && c.CapAmb == 0 &&
		c.CapBnd == own.CapBnd && c.Securebits == 0 {
		return nil // as ferry: nothing to change
	}
	if extra := (c.CapPrm | c.CapInh | c.CapBnd | c.CapAmb) &^ own.CapBnd; extra != 0 {
		return fmt.Errorf("capabilities %#x of the image are outside this ferry's bounding set %#x: %w", extra, own.CapBnd, ErrCapability)
	}
	if extra := c.CapPrm &^ own.CapPrm; extra != 0 {
		return fmt.Errorf("permitted capabilities %#x of the image are not held by this ferry: %w", extra, ErrCapability)
	}
	// The bounding set, while the thread still has CAP_SETPCAP.
	for cp := 0; cp <= last; cp++ {
		if c.CapBnd&(1<<cp) == 0 && own.CapBnd&(1<<cp) != 0 {
			if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_CAPBSET_DROP, uint64(cp)); err != nil {
				return fmt.Errorf("drop capability %d from the bounding set: %w", cp, err)
			}
		}
	}
	// Keep the permitted set across the change of ids.
	if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_KEEPCAPS, 1); err != nil {
		return fmt.Errorf("keepcaps: %w", err)
	}
	if !root {
		if err := ids(in, c); err != nil {
			return err
		}
	}
	// Effective back to everything still permitted (CAP_SETPCAP for the
	// securebits), inheritable as in the image (ambient needs it).
	if err := capset(in, own.CapPrm, own.CapPrm, c.CapInh); err != nil {
		return err
	}
	for cp := 0; cp <= last; cp++ {
		if c.CapAmb&(1<<cp) != 0 {
			if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uint64(cp), 0, 0); err != nil {
				return fmt.Errorf("raise ambient capability %d: %w", cp, err)
			}
		}
	}
	if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_SECUREBITS, c.Securebits); err != nil {
		return fmt.Errorf("securebits %#x: %w", c.Securebits, err)
	}
	return capset(in, c.CapEff, c.CapPrm, c.CapInh)
}

// ErrCapability: the image holds capabilities this ferry cannot give.
var ErrCapability = errors.New("ferry lacks the capability")

// capset runs capset(2) in the thread.
func capset(in *ptrace.Injector, eff, prm, inh uint64) error {
	hdr, data := kernel.CapsetArgs(eff, prm, inh)
	h, err := in.ScratchAt(2048, hdr)
	if err != nil {
		return err
	}
	d, err := in.ScratchAt(2048+64, data)
	if err != nil {
		return err
	}
	if _, err := in.Syscall(unix.SYS_CAPSET, h, d); err != nil {
		return fmt.Errorf("capset(effective %#x, permitted %#x, inheritable %#x): %w", eff, prm, inh, err)
	}
	return nil
}

// ownCaps are ferry's own capability sets and the last capability the
// kernel knows.
func (b *builder) ownCaps() (*procfs.ProcStatus, int, error) {
	if b.tree.own == nil {
		st, err := procfs.Status(os.Getpid())
		if err != nil {
			return nil, 0, err
		}
		last, err := capLastCap()
		if err != nil {
			return nil, 0, err
		}
		b.tree.own, b.tree.lastCap = st, last
	}
	return b.tree.own, b.tree.lastCap, nil
}

// capLastCap is the highest capability this kernel knows.
func capLastCap() (int, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > 63 {
		return 0, fmt.Errorf("/proc/sys/kernel/cap_last_cap: bad value %q", b)
	}
	return n, nil
}

// ids sets the thread's groups, gids and uids.
func ids(in *ptrace.Injector, c image.Creds) error {
	groups := make([]byte, 0, 4*len(c.Groups))
	for _, g := range c.Groups {
		groups = binary.LittleEndian.AppendUint32(groups, g)
	}
	addr := uint64(0)
	if len(groups) > 0 {
		var err error
		if addr, err = in.ScratchAt(2048, groups); err != nil {
			return err
		}
	}
	if _, err := in.Syscall(unix.SYS_SETGROUPS, uint64(len(c.Groups)), addr); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if _, err := in.Syscall(unix.SYS_SETRESGID, uint64(c.GID[0]), uint64(c.GID[1]), uint64(c.GID[2])); err != nil {
		return fmt.Errorf("setresgid: %w", err)
	}
	in.Syscall(unix.SYS_SETFSGID, uint64(c.GID[3]))
	if _, err := in.Syscall(unix.SYS_SETRESUID, uint64(c.UID[0]), uint64(c.UID[1]), uint64(c.UID[2])); err != nil {
		return fmt.Errorf("setresuid: %w", err)
	}
	in.Syscall(unix.SYS_SETFSUID, uint64(c.UID[3]))
	return nil
}

// fixRestart rewrites a thread frozen inside a system call so that the
// call runs again when the thread resumes: the kernel's own restart logic
// only applies to the process that was interrupted.
func fixRestart(r *kernel.PtraceRegs) {
	if int64(r.Orig_rax) < 0 {
		return
	}
	switch -int64(r.Rax) {
	case kernel.ERESTARTSYS, kernel.ERESTARTNOINTR, kernel.ERESTARTNOHAND:
		r.Rax = r.Orig_rax
		r.Rip -= 2
	case kernel.ERESTART_RESTARTBLOCK:
		switch r.Orig_rax {
		case kernel.SYS_RESTART_SYSCALL:
			// The original call is unknown: report an interruption.
			r.Rax = negErrno(unix.EINTR)
		case kernel.SYS_NANOSLEEP:
			// nanosleep(req, rem): the kernel wrote the remaining time
			// to rem when the sleep was interrupted; sleep that long.
			if r.Rsi != 0 {
				r.Rdi = r.Rsi
			}
			r.Rax = r.Orig_rax
			r.Rip -= 2
		case kernel.SYS_CLOCK_NANOSLEEP:
			// clock_nanosleep(clock, flags, req, rem): absolute sleeps
			// restart as they are; relative ones sleep the remainder.
			if r.Rsi&unix.TIMER_ABSTIME == 0 && r.R10 != 0 {
				r.Rdx = r.R10
			}
			r.Rax = r.Orig_rax
			r.Rip -= 2
		default:
			r.Rax = r.Orig_rax
			r.Rip -= 2
		}
	}
	r.Orig_rax = ^uint64(0)
}

func negErrno(e unix.Errno) uint64 { return uint64(-int64(e)) }

// setSched applies a thread's scheduling attributes from outside.
func setSched(tid int, th *image.Thread) error {
	if len(th.Affinity) > 0 {
		var set unix.CPUSet
		for cpu := 0; cpu < len(th.Affinity)*64 && cpu < len(set)*64; cpu++ {
			if th.Affinity[cpu/64]&(1<<(cpu%64)) != 0 {
				set.Set(cpu)
			}
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil {
			return fmt.Errorf("sched_setaffinity: %w", err)
		}
	}
	attr := unix.SchedAttr{Size: unix.SizeofSchedAttr, Policy: th.Policy, Flags: th.SchedFlags, Nice: th.Nice, Priority: th.RTPrio,
		Runtime: th.SchedRuntime, Deadline: th.SchedDeadline, Period: th.SchedPeriod}
	if err := unix.SchedSetAttr(tid, &attr, 0); err != nil {
		return fmt.Errorf("sched_setattr(policy %d, nice %d, prio %d): %w", th.Policy, th.Nice, th.RTPrio, err)
	}
	// sched_setattr ignores nice for SCHED_IDLE, which still keeps one.
	if err := unix.Setpriority(unix.PRIO_PROCESS, tid, int(th.Nice)); err != nil {
		return fmt.Errorf("setpriority(%d): %w", th.Nice, err)
	}
	if th.IOPrio != 0 {
		if err := kernel.IoprioSet(tid, th.IOPrio); err != nil {
			return fmt.Errorf("ioprio_set: %w", err)
		}
	}
	return nil
}

// seccompState puts thread th under the seccomp filters it had, oldest
// first, or into strict mode.
func seccompState(in *ptrace.Injector, th *image.Thread) error {
	if th.Seccomp == 0 {
		return nil
	}
	if err := unix.PtraceSetOptions(in.TID, traceOptions|kernel.PTRACE_O_SUSPEND_SECCOMP); err != nil {
		return fmt.Errorf("suspend seccomp for ferry's calls (needs CAP_SYS_ADMIN): %w", os.NewSyscallError("ptrace(PTRACE_SETOPTIONS)", err))
	}
	switch th.Seccomp {
	case kernel.SECCOMP_MODE_STRICT:
		if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, kernel.SECCOMP_MODE_STRICT); err != nil {
			return fmt.Errorf("seccomp strict mode: %w", err)
		}
		return nil
	case kernel.SECCOMP_MODE_FILTER:
	default:
		return fmt.Errorf("image: unknown seccomp mode %d", th.Seccomp)
	}
	if len(th.SeccompFilters) == 0 {
		return errors.New("image: seccomp filter mode without a filter")
	}
	for i, f := range th.SeccompFilters {
		n := len(f.Code) / kernel.SizeofSockFilter
		if n == 0 || n > bpfMaxInsns || len(f.Code)%kernel.SizeofSockFilter != 0 {
			return fmt.Errorf("image: seccomp filter %d is %d bytes, not 1 to %d instructions of %d bytes", i, len(f.Code), bpfMaxInsns, kernel.SizeofSockFilter)
		}
		code, err := in.ScratchAt(kernel.SizeofSockFprog, f.Code)
		if err != nil {
			return err
		}
		var prog [kernel.SizeofSockFprog]byte // struct sock_fprog: u16 len, pad, u64 filter
		binary.LittleEndian.PutUint16(prog[0:], uint16(n))
		binary.LittleEndian.PutUint64(prog[8:], code)
		addr, err := in.ScratchAt(0, prog[:])
		if err != nil {
			return err
		}
		if _, err := in.Syscall(unix.SYS_SECCOMP, kernel.SECCOMP_SET_MODE_FILTER, f.Flags, addr); err != nil {
			return fmt.Errorf("seccomp filter %d of %d (%d instructions): %w", i+1, len(th.SeccompFilters), n, err)
		}
	}
	return nil
}

// bpfMaxInsns is the longest classic BPF program (BPF_MAXINSNS).
const bpfMaxInsns = 4096

const (
	sigevNone     = kernel.SIGEV_NONE
	sigevThreadID = kernel.SIGEV_THREAD_ID
)
