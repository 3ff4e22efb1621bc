package dump

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/fds"
	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/ptrace"
)

// scratchSize is the anonymous mapping dump injects into the target for
// the arguments of injected calls; it is unmapped before memory is read.
const scratchSize = 128 << 10

// callBatchSize is the end of the scratch memory, which runs batches of
// injected calls (ptrace.Injector.Batch).
const callBatchSize = 64 << 10

// collector gathers one frozen process's state.
type collector struct {
	fz      *ptrace.Frozen
	proc    *image.Process
	pidfd   int
	objects map[string]*os.File // FileID → content, for FileData records
	log     *slog.Logger
	// lazy: private anonymous VMAs are left out of the pages (lazy.go).
	lazy bool
	// parent is the collector of the process's parent in the tree (nil
	// for the root), for copy-on-write sharing (cow.go).
	parent *collector
}

func (c *collector) close() {
	for _, f := range c.objects {
		f.Close()
	}
	if c.pidfd > 0 {
		unix.Close(c.pidfd)
	}
}

func collect(ctx context.Context, fz *ptrace.Frozen, dumper *fds.Dumper, log *slog.Logger) (*collector, error) {
	pid := fz.PID
	c := &collector{fz: fz, objects: map[string]*os.File{}, log: log}
	p := &image.Process{PID: pid}
	c.proc = p
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()

	t0 := time.Now()
	// Memory layout first, before the scratch mapping exists.
	if err := c.collectVMAs(); err != nil {
		return nil, err
	}

	tVMAs := time.Since(t0)
	st, err := procfs.Stat(pid)
	if err != nil {
		return nil, err
	}
	p.PPID, p.PGID, p.SID = st.PPID, st.PGRP, st.Session
	p.MM = image.MM{StartCode: st.StartCode, EndCode: st.EndCode, StartData: st.StartData, EndData: st.EndData,
		StartBrk: st.StartBrk, StartStack: st.StartStack, ArgStart: st.ArgStart, ArgEnd: st.ArgEnd,
		EnvStart: st.EnvStart, EnvEnd: st.EnvEnd}
	if p.MM.Auxv, err = procfs.Auxv(pid); err != nil {
		return nil, err
	}
	if p.Exe, err = procfs.Exe(pid); err != nil {
		return nil, fmt.Errorf("executable of %d: %w", pid, err)
	}
	p.Exe = strings.TrimSuffix(p.Exe, " (deleted)")
	if p.Cwd, err = longLink(procfs.Cwd, pid, "cwd"); err != nil {
		return nil, err
	}
	root, err := longLink(procfs.Root, pid, "root")
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(root, " (deleted)") {
		return nil, fmt.Errorf("pid %d is chrooted into a removed directory (%s): %w", pid, root, ErrUnsupported)
	}
	if root != "/" {
		p.Root = root
	}
	if gone, ok := strings.CutSuffix(p.Cwd, " (deleted)"); ok {
		var st unix.Stat_t
		if err := unix.Stat(fmt.Sprintf("/proc/%d/cwd", pid), &st); err != nil {
			return nil, fmt.Errorf("stat removed cwd %s of %d: %w", gone, pid, err)
		}
		if st.Nlink == 0 {
			p.Cwd = gone
			p.CwdGone = &image.GoneDir{Mode: st.Mode, UID: st.Uid, GID: st.Gid, Dev: st.Dev, Ino: st.Ino}
		}
	}
	if p.Comm, err = procfs.Comm(pid); err != nil {
		return nil, err
	}
	if pers, err := procfs.Personality(pid); err == nil {
		p.Personality = pers
	}
	status, err := procfs.Status(pid)
	if err != nil {
		return nil, err
	}
	p.Umask = status.Umask
	p.Creds = statusCreds(status)
	p.Stopped = fz.WasStopped
	if p.OOMScoreAdj, err = procfs.OOMScoreAdj(pid); err != nil {
		return nil, err
	}
	rl, err := procfs.Rlimits(pid)
	if err != nil {
		return nil, err
	}
	for _, r := range rl {
		p.Rlimits = append(p.Rlimits, image.Rlimit{Resource: r.Resource, Cur: r.Cur, Max: r.Max})
	}

	// File descriptors (no ptrace needed).
	c.pidfd, err = unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	tAttrs := time.Since(t0)
	if p.FDs, err = dumper.DumpProcess(pid, c.pidfd); err != nil {
		return nil, err
	}
	tFDs := time.Since(t0)
	if err := c.collectInjected(); err != nil {
		return nil, err
	}
	log.Debug("collected", "vmas", tVMAs, "attrs", tAttrs-tVMAs, "fds", tFDs-tAttrs, "injected", time.Since(t0)-tFDs)
	ok = true
	return c, nil
}

// collectVMAs turns /proc/PID/smaps (the maps lines plus VmFlags) into
// image VMAs and opens shared objects.
func (c *collector) collectVMAs() error {
	pid := c.fz.PID
	smaps, err := procfs.Smaps(pid)
	if err != nil {
		return err
	}
	for _, sm := range smaps {
		m := sm.Mapping
		v := image.VMA{Start: m.Start, End: m.End, Prot: m.Prot, Shared: m.Shared, Name: m.Name,
			Path: m.Path, Offset: m.Offset, Dev: m.Dev, Ino: m.Inode}
		for _, f := range sm.VmFlags {
			switch f {
			case "gd":
				v.GrowsDown = true
			case "dd", "dc", "wf", "lo", "lf", "hg", "nh", "mg", "rr", "sr", "nr", "sl":
				v.VMFlags = append(v.VMFlags, f)
			case "mw":
				// A shared file mapping may be made writable later only
				// if the file was opened for writing: restore maps it
				// from a descriptor of the same mode.
				v.MayWrite = true
			}
		}
		switch {
		case m.Name == "[vdso]":
			v.Kind = image.VMAVDSO
		case m.Name == "[vvar]":
			v.Kind = image.VMAVVar
		case m.Name == "[vvar_vclock]":
			v.Kind = image.VMAVVarVclock
		case m.Name == "[vsyscall]":
			v.Kind = image.VMAVsyscall
		case m.Name == "[uprobes]":
			return fmt.Errorf("pid %d maps [uprobes] at %#x: %w", pid, m.Start, ErrUnsupported)
		case isSysV(&m):
			v.Kind = image.VMASysV
			shm, err := sysvSegment(pid, &m)
			if err != nil {
				return err
			}
			v.Shm = shm
		case m.Path == kernel.AioRingMapsPath && m.Deleted:
			v.Kind = image.VMAAio
			r, events, err := aioRing(pid, m.Start)
			if err != nil {
				return err
			}
			v.AioNr, v.AioEvents = r.Nr, events
		case m.SharedAnon():
			v.Kind = image.VMASharedAnon
		case m.Path == "" && m.Inode == 0:
			v.Kind = image.VMAAnon
		case strings.HasPrefix(m.Path, "/memfd:") || m.Deleted:
			v.Kind = image.VMAMemfd
		default:
			v.Kind = image.VMAFile
		}
		if v.Kind == image.VMASharedAnon || v.Kind == image.VMAMemfd || v.Kind == image.VMASysV {
			f, err := os.Open(procfs.MapFilesPath(pid, m.Start, m.End))
			if err != nil {
				return fmt.Errorf("open mapping %#x-%#x of %d: %w", m.Start, m.End, pid, err)
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(fds.RawFD(f)), &st); err != nil {
				f.Close()
				return err
			}
			v.FileID = image.ObjectID(st.Dev, st.Ino)
			if _, dup := c.objects[v.FileID]; dup {
				f.Close()
			} else {
				c.objects[v.FileID] = f
			}
		}
		c.proc.VMAs = append(c.proc.VMAs, v)
	}
	return checkSysVAttach(pid, c.proc.VMAs)
}

// collectInjected gathers what only the process itself can tell, by
// injecting system calls: signal handlers, alternate stacks, timers, brk,
// clear_child_tid. Registers and masks are read around it.
func (c *collector) collectInjected() error {
	pid := c.fz.PID
	p := c.proc
	addr, _, err := ptrace.FindSyscall(pid)
	if err != nil {
		return err
	}
	lead, err := ptrace.NewInjector(pid, addr)
	if err != nil {
		return err
	}
	defer func() {
		c.noteStop(lead)
		if err := lead.Restore(); err != nil {
			c.log.Error("restore leader registers", "err", err)
		}
	}()
	scratch, err := lead.Syscall(unix.SYS_MMAP, 0, scratchSize, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
	if err != nil {
		// Executable memory may be refused (a hardened kernel): then
		// every call is injected on its own.
		scratch, err = lead.Syscall(unix.SYS_MMAP, 0, scratchSize, unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANONYMOUS, ^uint64(0), 0)
		if err != nil {
			return fmt.Errorf("map scratch memory in %d: %w", pid, err)
		}
	} else {
		lead.SetBatchArea(scratch+scratchSize-callBatchSize, callBatchSize)
	}
	lead.SetScratch(scratch, scratchSize)
	defer func() {
		if _, err := lead.Syscall(unix.SYS_MUNMAP, scratch, scratchSize); err != nil {
			c.log.Error("unmap scratch", "err", err)
		}
	}()

	// Signal handlers 1..64, then the interval timers: one batch, each
	// answer in its own 32 bytes of scratch memory.
	const sigOff, itOff = 4096, 4096 + 64*32
	var calls []ptrace.Call
	for sig := 1; sig <= 64; sig++ {
		calls = append(calls, ptrace.Call{Nr: unix.SYS_RT_SIGACTION,
			Args: [6]uint64{uint64(sig), 0, scratch + sigOff + uint64(sig-1)*32, 8}})
	}
	for which := 0; which < 3; which++ {
		calls = append(calls, ptrace.Call{Nr: unix.SYS_GETITIMER, Args: [6]uint64{uint64(which), scratch + itOff + uint64(which)*32}})
	}
	failed := map[int]bool{}
	for done := 0; done < len(calls); {
		res, err := lead.Batch(calls[done:])
		if err == nil {
			break
		}
		k := done + len(res) - 1
		if len(res) == 0 || calls[k].Nr != unix.SYS_RT_SIGACTION {
			return fmt.Errorf("getitimer: %w", err)
		}
		failed[k] = true // SIGKILL/SIGSTOP and 32/33 on some kernels
		done = k + 1
	}
	b, err := lead.ReadScratch(sigOff, 64*32+3*32)
	if err != nil {
		return err
	}
	p.Sigactions = make([]image.Sigaction, 64)
	for i := range 64 {
		if !failed[i] {
			e := b[i*32:]
			p.Sigactions[i] = image.Sigaction{Handler: le(e, 0), Flags: le(e, 8), Restorer: le(e, 16), Mask: le(e, 24)}
		}
	}
	for which := range 3 {
		e := b[64*32+which*32:]
		p.Itimers[which] = image.Itimer{
			IntervalUsec: int64(le(e, 0))*1e6 + int64(le(e, 8)),
			ValueUsec:    int64(le(e, 16))*1e6 + int64(le(e, 24)),
		}
	}
	// POSIX timers.
	timers, err := procfs.Timers(pid)
	if err != nil {
		return err
	}
	for _, t := range timers {
		if _, err := lead.Syscall(unix.SYS_TIMER_GETTIME, uint64(t.ID), scratch); err != nil {
			return fmt.Errorf("timer_gettime %d: %w", t.ID, err)
		}
		b, _ := lead.ReadScratch(0, 32)
		ov, _ := lead.Syscall(unix.SYS_TIMER_GETOVERRUN, uint64(t.ID))
		p.PosixTimers = append(p.PosixTimers, image.PosixTimer{ID: t.ID, ClockID: t.ClockID, Signal: t.Signal,
			Notify: t.SigevNotify, NotifyTID: t.NotifyPID, SigevValue: t.SigevValue,
			IntervalNsec: int64(le(b, 0))*1e9 + int64(le(b, 8)),
			ValueNsec:    int64(le(b, 16))*1e9 + int64(le(b, 24)), Overrun: int(ov)})
	}
	if v, err := lead.Syscall(unix.SYS_PRCTL, kernel.PR_GET_THP_DISABLE); err == nil {
		p.THPDisable = v != 0
	}
	// Kernels before 6.3 lack PR_GET_MDWE (EINVAL): nothing was set then.
	if v, err := lead.Syscall(unix.SYS_PRCTL, unix.PR_GET_MDWE, 0, 0, 0, 0); err == nil {
		p.MDWE = v
	}
	if err := c.childStops(lead, scratch); err != nil {
		return err
	}
	if _, err := lead.Syscall(unix.SYS_PRCTL, kernel.PR_GET_CHILD_SUBREAPER, scratch); err == nil {
		b, _ := lead.ReadScratch(0, 4)
		p.ChildSubreaper = binary.LittleEndian.Uint32(b) != 0
	}
	if v, err := lead.Syscall(unix.SYS_PRCTL, unix.PR_GET_DUMPABLE); err == nil {
		p.NotDumpable = v == 0
	}
	if v, err := lead.Syscall(unix.SYS_PRCTL, unix.PR_GET_SECUREBITS); err == nil {
		p.Creds.Securebits = v
	}
	// Kernels before 6.3 lack GET_REGISTRATIONS (EINVAL): nothing is
	// known then, and nothing is registered again.
	if v, err := lead.Syscall(unix.SYS_MEMBARRIER, kernel.MEMBARRIER_CMD_GET_REGISTRATIONS, 0, 0); err == nil {
		p.Membarrier = v
	}
	brk, err := lead.Syscall(unix.SYS_BRK, 0)
	if err != nil {
		return fmt.Errorf("brk: %w", err)
	}
	p.MM.Brk = brk

	// Process-wide pending signals.
	sh, err := kernel.PtracePeekAllSiginfo(pid, true)
	if err != nil {
		return fmt.Errorf("process-wide pending signals: %w", err)
	}
	for _, s := range sh {
		p.SharedPending = append(p.SharedPending, image.Siginfo(s))
	}

	for _, tid := range c.fz.TIDs {
		th, err := c.collectThread(tid, lead, addr, scratch)
		if err != nil {
			return fmt.Errorf("thread %d: %w", tid, err)
		}
		p.Threads = append(p.Threads, th)
	}
	return c.timerClockThreads(lead, scratch)
}

// timerClockThreads finds the thread whose CPU clock each timer on "the
// calling thread's" clock counts: the kernel keeps the creator, and shows
// no one. Armed at an absolute far time X for a moment, the timer tells
// X minus the CPU time of its thread; that time names the thread among
// the frozen ones (their clocks stand still). Then it is set back as it
// was. A timer whose signal is pending is not probed (setting it again
// would cancel the signal): its thread is taken to be the one it
// signals, or the leader.
func (c *collector) timerClockThreads(lead *ptrace.Injector, scratch uint64) error {
	p := c.proc
	pending := map[int]bool{}
	for _, s := range p.SharedPending {
		if id, ok := kernel.SiginfoTimer(s); ok {
			pending[id] = true
		}
	}
	for _, th := range p.Threads {
		for _, s := range th.Pending {
			if id, ok := kernel.SiginfoTimer(s); ok {
				pending[id] = true
			}
		}
	}
	const far = int64(1) << 60 // ns: 36 years of CPU time
	var cpu []int64            // each thread's CPU time, read once
	for i := range p.PosixTimers {
		t := &p.PosixTimers[i]
		if !kernel.SelfThreadClock(t.ClockID) || len(p.Threads) < 2 {
			continue
		}
		if t.Notify&kernel.SIGEV_THREAD_ID != 0 {
			t.ClockTID = t.NotifyTID
		}
		if pending[t.ID] {
			continue
		}
		abs := kernel.Itimerspec{ValueSec: far / 1e9, ValueNsec: far % 1e9}
		absAddr, err := lead.ScratchAt(256, kernel.Bytes(&abs))
		if err != nil {
			return err
		}
		if _, err := lead.Syscall(unix.SYS_TIMER_SETTIME, uint64(t.ID), unix.TIMER_ABSTIME, absAddr, 0); err != nil {
			return fmt.Errorf("timer %d: arm at an absolute time to find its thread: %w", t.ID, err)
		}
		_, gerr := lead.Syscall(unix.SYS_TIMER_GETTIME, uint64(t.ID), scratch)
		b, _ := lead.ReadScratch(0, 32)
		back := kernel.Itimerspec{IntervalSec: t.IntervalNsec / 1e9, IntervalNsec: t.IntervalNsec % 1e9,
			ValueSec: t.ValueNsec / 1e9, ValueNsec: t.ValueNsec % 1e9}
		backAddr, err := lead.ScratchAt(256, kernel.Bytes(&back))
		if err != nil {
			return err
		}
		if _, err := lead.Syscall(unix.SYS_TIMER_SETTIME, uint64(t.ID), 0, backAddr, 0); err != nil {
			return fmt.Errorf("timer %d: set back after finding its thread: %w", t.ID, err)
		}
		if gerr != nil {
			return fmt.Errorf("timer_gettime %d: %w", t.ID, gerr)
		}
		used := far - (int64(le(b, 16))*1e9 + int64(le(b, 24)))
		if cpu == nil {
			// The threads are frozen: their CPU times stand still.
			for _, th := range p.Threads {
				ns, err := procfs.TaskCPUTime(c.fz.PID, th.TID)
				if err != nil {
					return fmt.Errorf("timer %d: %w", t.ID, err)
				}
				cpu = append(cpu, ns)
			}
		}
		found := 0
		for j, ns := range cpu {
			if ns == used {
				found = p.Threads[j].TID
				break
			}
		}
		if found == 0 {
			return fmt.Errorf("timer %d counts a thread's CPU time (%d ns) that no thread of pid %d has (%v): %w",
				t.ID, used, c.fz.PID, cpu, ErrUnsupported)
		}
		t.ClockTID = found
	}
	return nil
}

func (c *collector) collectThread(tid int, lead *ptrace.Injector, addr, scratch uint64) (*image.Thread, error) {
	in := lead
	if tid != lead.TID {
		var err error
		if in, err = ptrace.NewInjector(tid, addr); err != nil {
			return nil, err
		}
		in.SetScratch(scratch, scratchSize)
		defer func() {
			c.noteStop(in)
			in.Restore()
		}()
	}
	regs := in.Saved()
	th := &image.Thread{TID: tid, Regs: kernel.RegsToWords(&regs), SigMask: in.SavedMask()}
	th.InSyscall = int64(regs.Orig_rax) >= 0
	var err error
	if th.Xstate, err = kernel.PtraceGetXstate(tid); err != nil {
		return nil, fmt.Errorf("xstate: %w", err)
	}
	pend, err := kernel.PtracePeekAllSiginfo(tid, false)
	if err != nil {
		return nil, fmt.Errorf("pending signals: %w", err)
	}
	for _, s := range pend {
		th.Pending = append(th.Pending, image.Siginfo(s))
	}
	if sig, ok := c.fz.Swallowed[tid]; ok {
		var si [kernel.SiginfoSize]byte
		binary.LittleEndian.PutUint32(si[0:], uint32(sig))
		th.Pending = append(th.Pending, image.Siginfo(si[:]))
	}
	if rs, err := kernel.PtraceGetRseq(tid); err == nil && rs.RseqAbiPointer != 0 {
		th.RseqAddr, th.RseqLen, th.RseqSig = rs.RseqAbiPointer, rs.RseqAbiSize, rs.Signature
	}
	if h, l, err := kernel.GetRobustList(tid); err == nil {
		th.RobustList, th.RobustListLen = h, l
	}
	if th.Name, err = procfs.TaskComm(c.fz.PID, tid); err != nil {
		return nil, err
	}
	if err := schedState(th); err != nil {
		return nil, err
	}
	st, err := procfs.TaskStatus(c.fz.PID, tid)
	if err != nil {
		return nil, err
	}
	if err := seccompState(th, st); err != nil {
		return nil, err
	}
	if tid != c.fz.PID {
		cr := statusCreds(st)
		// Securebits (with keepcaps) are per thread, like the rest.
		cr.Securebits = c.proc.Creds.Securebits
		if v, err := in.Syscall(unix.SYS_PRCTL, unix.PR_GET_SECUREBITS); err == nil {
			cr.Securebits = v
		}
		if !reflect.DeepEqual(cr, c.proc.Creds) {
			th.Creds = &cr
		}
	}
	if v, err := in.Syscall(unix.SYS_PRCTL, kernel.PR_GET_TIMERSLACK); err == nil {
		th.TimerSlack = v
	}
	if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_GET_TSC, scratch); err == nil {
		b, _ := in.ReadScratch(0, 4)
		th.TSCSigsegv = binary.LittleEndian.Uint32(b) == unix.PR_TSC_SIGSEGV
	}
	if v, err := in.Syscall(unix.SYS_PRCTL, kernel.PR_MCE_KILL_GET, 0, 0, 0, 0); err == nil {
		th.MCEKill = int(v)
	}
	if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_GET_PDEATHSIG, scratch); err == nil {
		b, _ := in.ReadScratch(0, 4)
		th.PdeathSig = int(int32(binary.LittleEndian.Uint32(b)))
	}
	// sigaltstack(NULL, &old)
	if _, err := in.Syscall(unix.SYS_SIGALTSTACK, 0, scratch); err != nil {
		return nil, fmt.Errorf("sigaltstack: %w", err)
	}
	b, _ := in.ReadScratch(0, 24)
	th.Altstack = image.Stack{SP: le(b, 0), Flags: int32(le(b, 8)), Size: le(b, 16)}
	// prctl(PR_GET_TID_ADDRESS, &addr)
	if _, err := in.Syscall(unix.SYS_PRCTL, unix.PR_GET_TID_ADDRESS, scratch); err == nil {
		b, _ := in.ReadScratch(0, 8)
		th.ClearChildTID = le(b, 0)
	}
	return th, nil
}

// seccompState records the thread's seccomp mode and, in filter mode,
// its filters oldest first (PTRACE_SECCOMP_GET_FILTER numbers them from
// the newest). A filter that hands system calls to a supervisor
// (SECCOMP_RET_USER_NOTIF) is refused: the supervisor holds a listener
// fd a restore cannot give back to it.
func seccompState(th *image.Thread, st *procfs.ProcStatus) error {
	th.Seccomp = st.Seccomp
	if st.Seccomp != kernel.SECCOMP_MODE_FILTER {
		return nil
	}
	var newestFirst []image.SeccompFilter
	for i := 0; ; i++ {
		code, err := kernel.PtraceSeccompFilter(th.TID, i)
		if errors.Is(err, unix.ENOENT) {
			break
		}
		if err != nil {
			return fmt.Errorf("seccomp filter %d: %w", i, os.NewSyscallError("ptrace(PTRACE_SECCOMP_GET_FILTER)", err))
		}
		if kernel.SeccompUserNotif(code) {
			return fmt.Errorf("thread %d runs under a seccomp filter that notifies a supervisor (SECCOMP_RET_USER_NOTIF): %w",
				th.TID, ErrUnsupported)
		}
		flags, err := kernel.PtraceSeccompFlags(th.TID, i)
		if err != nil {
			return fmt.Errorf("seccomp filter %d: %w", i, os.NewSyscallError("ptrace(PTRACE_SECCOMP_GET_METADATA)", err))
		}
		newestFirst = append(newestFirst, image.SeccompFilter{Flags: flags, Code: code})
	}
	if len(newestFirst) != st.SeccompFilters {
		return fmt.Errorf("thread %d: %d seccomp filters read, /proc says %d", th.TID, len(newestFirst), st.SeccompFilters)
	}
	slices.Reverse(newestFirst)
	th.SeccompFilters = newestFirst
	return nil
}

// childStops asks the process, for each of its stopped children, whether
// it has taken the child's stop report yet: waitid(P_PID, child,
// WSTOPPED|WNOHANG|WNOWAIT) answers without taking it.
func (c *collector) childStops(lead *ptrace.Injector, scratch uint64) error {
	pid := c.fz.PID
	tids, err := procfs.Tasks(pid)
	if err != nil {
		return err
	}
	for _, tid := range tids {
		children, err := procfs.TaskChildren(pid, tid)
		if err != nil {
			continue // CONFIG_PROC_CHILDREN missing: stops come back reported
		}
		for _, child := range children {
			// Frozen by ferry, a stopped child shows 't' like the others;
			// only one in group stop can have a report (WSTOPPED).
			if st, err := procfs.Stat(child); err != nil || st.State != 'T' && st.State != 't' {
				continue
			}
			const wstopped, wnohang, wnowait = 2, 1, 0x01000000
			if _, err := lead.ScratchAt(0, make([]byte, 128)); err != nil { // si_pid 0 if nothing waits
				return err
			}
			if _, err := lead.Syscall(unix.SYS_WAITID, unix.P_PID, uint64(child), scratch, wstopped|wnohang|wnowait, 0); err != nil {
				return fmt.Errorf("waitid for stopped child %d: %w", child, err)
			}
			si, err := lead.ReadScratch(0, 28)
			if err != nil {
				return err
			}
			if c.proc.ChildStops == nil {
				c.proc.ChildStops = map[int]int{}
			}
			if int(int32(binary.LittleEndian.Uint32(si[16:]))) == child { // si_pid: a report waits
				c.proc.ChildStops[child] = int(int32(binary.LittleEndian.Uint32(si[24:]))) // si_status
			} else {
				c.proc.ChildStops[child] = 0 // taken, or not stopped: restore looks at Stopped too
			}
		}
	}
	return nil
}

func le(b []byte, off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }

func u32x4(a [4]int) [4]uint32 {
	return [4]uint32{uint32(a[0]), uint32(a[1]), uint32(a[2]), uint32(a[3])}
}

func u32s(a []int) []uint32 {
	out := make([]uint32, len(a))
	for i, v := range a {
		out[i] = uint32(v)
	}
	return out
}

// statusCreds are the credentials /proc/PID/status shows (all but the
// securebits).
func statusCreds(st *procfs.ProcStatus) image.Creds {
	return image.Creds{UID: u32x4(st.UID), GID: u32x4(st.GID), Groups: u32s(st.Groups),
		CapInh: st.CapInh, CapPrm: st.CapPrm, CapEff: st.CapEff, CapBnd: st.CapBnd, CapAmb: st.CapAmb,
		NoNewPrivs: st.NoNewPrivs}
}

// schedState reads a thread's scheduling attributes from outside.
func schedState(th *image.Thread) error {
	attr, err := unix.SchedGetAttr(th.TID, 0)
	if err != nil {
		return fmt.Errorf("sched_getattr: %w", err)
	}
	th.Policy, th.Nice, th.RTPrio = attr.Policy, attr.Nice, attr.Priority
	th.SchedFlags = attr.Flags
	th.SchedRuntime, th.SchedDeadline, th.SchedPeriod = attr.Runtime, attr.Deadline, attr.Period
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(th.TID, &set); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	th.Affinity = make([]uint64, len(set))
	for i, w := range set {
		th.Affinity[i] = uint64(w)
	}
	if th.IOPrio, err = kernel.IoprioGet(th.TID); err != nil {
		return fmt.Errorf("ioprio_get: %w", err)
	}
	return nil
}

// lateSignals returns the signals pending now that were not pending when
// the state was collected (a multiset difference on raw siginfo).
func (c *collector) lateSignals() []image.PendingSignal {
	var out []image.PendingSignal
	diff := func(tid int, before []image.Siginfo, shared bool) {
		q := tid
		if shared {
			q = c.fz.PID
		}
		now, err := kernel.PtracePeekAllSiginfo(q, shared)
		if err != nil {
			return
		}
		seen := map[string]int{}
		for _, s := range before {
			seen[string(s)]++
		}
		for _, s := range now {
			if seen[string(s)] > 0 {
				seen[string(s)]--
				continue
			}
			ps := image.PendingSignal{PID: c.fz.PID, Info: image.Siginfo(bytes.Clone(s))}
			if !shared {
				ps.TID = tid
			}
			out = append(out, ps)
		}
	}
	diff(c.fz.PID, c.proc.SharedPending, true)
	for _, th := range c.proc.Threads {
		diff(th.TID, th.Pending, false)
	}
	return out
}

// noteStop records a stop signal that arrived during injection (and was
// suppressed by it): the process counts as stopped, in the image and when
// it is thawed.
func (c *collector) noteStop(in *ptrace.Injector) {
	switch in.StopSeen {
	case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
		c.log.Info("stop signal arrived while frozen", "tid", in.TID, "signal", in.StopSeen)
		c.fz.WasStopped = true
		c.proc.Stopped = true
	}
}

// longLink reads a directory link of /proc/PID (cwd, root) with read; a
// path longer than PATH_MAX, which the kernel cannot report
// (ENAMETOOLONG), is found by walking up from the directory instead.
func longLink(read func(int) (string, error), pid int, name string) (string, error) {
	s, err := read(pid)
	if err == nil || !errors.Is(err, unix.ENAMETOOLONG) {
		return s, err
	}
	s, lerr := kernel.ProcDirPath(fmt.Sprintf("/proc/%d/%s", pid, name))
	if lerr != nil {
		return "", fmt.Errorf("%w: %w", err, lerr)
	}
	return s, nil
}
