package feature

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
	"ferry/internal/procfs"
)

// holdChild is a running "hold" helper: blocked reading its stdin, with a
// scratch buffer and (if the kernel has rseq) an rseq area at known addresses.
type holdChild struct {
	cmd     *exec.Cmd
	stdin   *os.File // our end of its stdin; closing it ends the helper
	pid     int
	fields  map[string]string
	scratch uint64
}

func startHold(ctx context.Context) (*holdChild, error) {
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, err
	}
	cmd := helperCmd(ctx, "hold", 0)
	cmd.Stdin, cmd.Stdout = inR, outW
	err = cmd.Start()
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("start hold helper: %w", err)
	}
	h := &holdChild{cmd: cmd, stdin: inW, pid: cmd.Process.Pid}
	// The context kills the helper, which ends this read with EOF.
	line, err := bufio.NewReader(outR).ReadString('\n')
	outR.Close()
	if err != nil {
		h.stop()
		return nil, fmt.Errorf("hold helper did not report ready: %w", err)
	}
	h.fields = parseFields(line)
	if h.scratch, err = strconv.ParseUint(h.fields["scratch"], 0, 64); err != nil {
		h.stop()
		return nil, fmt.Errorf("hold helper: bad ready line %q", strings.TrimSpace(line))
	}
	return h, nil
}

// stop kills and reaps the helper. It is a no-op for one already reaped.
func (h *holdChild) stop() {
	h.stdin.Close()
	h.cmd.Process.Kill()
	h.cmd.Wait() // "signal: killed" is the expected outcome
}

// probeProcess exercises, against a hold helper, what checkpointing another
// process takes: ptrace (seize, interrupt, rseq configuration), pidfds,
// cross-process memory access and raising another process's rlimits.
func probeProcess(ctx context.Context) []Probe {
	res := newResults(ProbePtrace, ProbeRseq, ProbeRseqConfig, ProbePidfdOpen, ProbePidfdGetfd,
		ProbePidfdSendSignal, ProbeProcessVMReadv, ProbeProcessVMWritev, ProbeProcMemWrite,
		ProbeRaiseHardRlimit)

	// ptrace requests must come from the thread that attached; stop()
	// (deferred below) runs before the unlock, so no tracee outlives it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	h, err := startHold(ctx)
	if err != nil {
		return res.done(err)
	}
	defer h.stop()

	stopped := probePtrace(res, h.pid)
	probeRseq(res, h, stopped)
	probeProcessVM(res, h)
	probeProcMem(res, h, stopped)
	probeRlimit(res, h.pid)
	probePidfd(res, h) // last: it kills the helper through the pidfd
	if ctx.Err() != nil {
		return res.done(ctx.Err())
	}
	return res.done(nil)
}

func yamaScope() string {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	if err != nil {
		return "no Yama LSM"
	}
	v := strings.TrimSpace(string(b))
	meaning := map[string]string{
		"0": "classic",
		"1": "descendants only without CAP_SYS_PTRACE",
		"2": "CAP_SYS_PTRACE only",
		"3": "attach disabled",
	}[v]
	return fmt.Sprintf("Yama ptrace_scope=%s (%s)", v, meaning)
}

// probePtrace seizes and interrupts pid and reports whether it is now in a
// ptrace stop (which the caller's later probes can use).
func probePtrace(res *results, pid int) (stopped bool) {
	yama := yamaScope()
	if err := kernel.PtraceSeize(pid, 0); err != nil {
		err = os.NewSyscallError("ptrace(PTRACE_SEIZE)", err)
		if errors.Is(err, unix.EPERM) {
			res.missing(ProbePtrace, "PTRACE_SEIZE refused; "+yama, err)
		} else {
			res.failed(ProbePtrace, err)
		}
		return false
	}
	if err := unix.PtraceInterrupt(pid); err != nil {
		res.failed(ProbePtrace, os.NewSyscallError("ptrace(PTRACE_INTERRUPT)", err))
		return false
	}
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			res.failed(ProbePtrace, os.NewSyscallError("wait4", err))
			return false
		}
		break
	}
	if !ws.Stopped() || ws.TrapCause() != unix.PTRACE_EVENT_STOP {
		res.failed(ProbePtrace, fmt.Errorf("after PTRACE_INTERRUPT: wait status %#x, want PTRACE_EVENT_STOP", uint32(ws)))
		return false
	}
	res.available(ProbePtrace, "PTRACE_SEIZE + PTRACE_INTERRUPT: child in PTRACE_EVENT_STOP; "+yama)
	return true
}

// probeRseq checks the helper's rseq registration and reads it back with
// PTRACE_GET_RSEQ_CONFIGURATION (5.13+), which needs a ptrace stop. A helper
// linked with glibc (cgo, -race) finds its main thread registered already.
func probeRseq(res *results, h *holdChild, stopped bool) {
	var cfg kernel.RseqConfig
	cfgErr := errors.New("needs a ptrace stop, and ptrace failed")
	if stopped {
		cfg, cfgErr = kernel.PtraceGetRseq(h.pid)
		if cfgErr != nil {
			cfgErr = os.NewSyscallError("ptrace(PTRACE_GET_RSEQ_CONFIGURATION)", cfgErr)
		}
	}

	var want uint64
	reg := h.fields["rseq"]
	if err, isErr := fieldErrno(reg); isErr {
		switch {
		case errors.Is(err, unix.ENOSYS):
			res.missing(ProbeRseq, "rseq(2) = ENOSYS (kernel < 4.18)", nil)
		case (errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EINVAL)) && cfgErr == nil && cfg.RseqAbiPointer != 0:
			res.available(ProbeRseq, fmt.Sprintf("the C library had registered %d bytes at %#x", cfg.RseqAbiSize, cfg.RseqAbiPointer))
		default:
			res.failed(ProbeRseq, fmt.Errorf("rseq: %w", err))
		}
	} else if v, err := strconv.ParseUint(reg, 0, 64); err != nil {
		res.failed(ProbeRseq, fmt.Errorf("hold helper: bad rseq field %q", reg))
	} else {
		want = v
		res.available(ProbeRseq, fmt.Sprintf("registered a %d-byte struct rseq with rseq(2)", rseqLen))
	}

	switch {
	case errors.Is(cfgErr, unix.EIO):
		res.missing(ProbeRseqConfig, "unknown ptrace request (kernel < 5.13)", nil)
	case cfgErr != nil:
		res.failed(ProbeRseqConfig, cfgErr)
	case want != 0 && (cfg.RseqAbiPointer != want || cfg.RseqAbiSize != rseqLen || cfg.Signature != rseqSig):
		res.failed(ProbeRseqConfig, fmt.Errorf("got pointer %#x size %d signature %#x, registered %#x size %d signature %#x",
			cfg.RseqAbiPointer, cfg.RseqAbiSize, cfg.Signature, want, rseqLen, rseqSig))
	default:
		res.available(ProbeRseqConfig, fmt.Sprintf("read back pointer %#x, %d bytes, signature %#x",
			cfg.RseqAbiPointer, cfg.RseqAbiSize, cfg.Signature))
	}
}

// probeProcessVM reads the helper's scratch pattern with process_vm_readv,
// then writes a new one with process_vm_writev and reads that back.
func probeProcessVM(res *results, h *holdChild) {
	readv := func(addr uint64, n int) ([]byte, error) {
		buf := make([]byte, n)
		local := []unix.Iovec{{Base: &buf[0]}}
		local[0].SetLen(n)
		got, err := unix.ProcessVMReadv(h.pid, local, []unix.RemoteIovec{{Base: uintptr(addr), Len: n}}, 0)
		if err != nil {
			return nil, os.NewSyscallError("process_vm_readv", err)
		}
		return buf[:got], nil
	}
	got, err := readv(h.scratch, len(scratchPattern))
	switch {
	case errors.Is(err, unix.ENOSYS):
		res.missing(ProbeProcessVMReadv, "ENOSYS: CONFIG_CROSS_MEMORY_ATTACH is off", nil)
	case err != nil:
		res.failed(ProbeProcessVMReadv, err)
	case string(got) != scratchPattern:
		res.failed(ProbeProcessVMReadv, fmt.Errorf("read %q, child holds %q", got, scratchPattern))
	default:
		res.available(ProbeProcessVMReadv, "read a child's buffer")
	}

	const msg = "written-by-process_vm_writev"
	addr := h.scratch + 64
	buf := []byte(msg)
	local := []unix.Iovec{{Base: &buf[0]}}
	local[0].SetLen(len(buf))
	_, err = unix.ProcessVMWritev(h.pid, local, []unix.RemoteIovec{{Base: uintptr(addr), Len: len(buf)}}, 0)
	if err != nil {
		err = os.NewSyscallError("process_vm_writev", err)
		if errors.Is(err, unix.ENOSYS) {
			res.missing(ProbeProcessVMWritev, "ENOSYS: CONFIG_CROSS_MEMORY_ATTACH is off", nil)
		} else {
			res.failed(ProbeProcessVMWritev, err)
		}
		return
	}
	if back, err := readv(addr, len(msg)); err != nil {
		res.failed(ProbeProcessVMWritev, fmt.Errorf("read back: %w", err))
	} else if string(back) != msg {
		res.failed(ProbeProcessVMWritev, fmt.Errorf("read back %q after writing %q", back, msg))
	} else {
		res.available(ProbeProcessVMWritev, "wrote a child's buffer, read it back")
	}
}

// probeProcMem writes through /proc/PID/mem into the helper's scratch buffer
// and into its read-only ELF header page (FOLL_FORCE, which restore needs
// for read-only pages), restoring the header bytes afterwards.
func probeProcMem(res *results, h *holdChild, stopped bool) {
	mem, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", h.pid), os.O_RDWR, 0)
	if err != nil {
		res.failed(ProbeProcMemWrite, err)
		return
	}
	defer mem.Close()

	const msg = "written-through-proc-mem"
	if _, err := mem.WriteAt([]byte(msg), int64(h.scratch+256)); err != nil {
		res.failed(ProbeProcMemWrite, fmt.Errorf("write to a writable page: %w", err))
		return
	}
	back := make([]byte, len(msg))
	if _, err := mem.ReadAt(back, int64(h.scratch+256)); err != nil || string(back) != msg {
		res.failed(ProbeProcMemWrite, fmt.Errorf("read back %q (%v) after writing %q", back, err, msg))
		return
	}

	start, perms, err := firstMapping(h.pid)
	if err != nil {
		res.failed(ProbeProcMemWrite, err)
		return
	}
	hdr := make([]byte, 16)
	if _, err := mem.ReadAt(hdr, int64(start)); err != nil {
		res.failed(ProbeProcMemWrite, fmt.Errorf("read ELF header: %w", err))
		return
	}
	if string(hdr[:4]) != "\x7fELF" || strings.Contains(perms, "w") {
		res.failed(ProbeProcMemWrite, fmt.Errorf("first mapping (%s) is not a read-only ELF header", perms))
		return
	}
	// e_ident[15] is padding: nothing reads it.
	patched := hdr[15] ^ 0xff
	if _, err := mem.WriteAt([]byte{patched}, int64(start)+15); err != nil {
		how := "while not traced"
		if stopped {
			how = "while ptrace-stopped"
		}
		if errors.Is(err, unix.EIO) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) || errors.Is(err, unix.EFAULT) {
			res.missing(ProbeProcMemWrite, "writable pages only: forced write to a read-only page refused "+how+
				" (proc_mem.force_override?)", err)
		} else {
			res.failed(ProbeProcMemWrite, err)
		}
		return
	}
	var one [1]byte
	_, err = mem.ReadAt(one[:], int64(start)+15)
	mem.WriteAt(hdr[15:16], int64(start)+15)
	if err != nil || one[0] != patched {
		res.failed(ProbeProcMemWrite, fmt.Errorf("read-only page: read back %#x (%v), wrote %#x", one[0], err, patched))
		return
	}
	res.available(ProbeProcMemWrite, fmt.Sprintf("wrote a writable page and the read-only (%s) ELF header", perms))
}

// firstMapping returns the start and permissions of pid's lowest mapping,
// the ELF header of its executable.
func firstMapping(pid int) (uint64, string, error) {
	maps, err := procfs.Maps(pid)
	if err != nil {
		return 0, "", err
	}
	if len(maps) == 0 {
		return 0, "", fmt.Errorf("process %d has no mappings", pid)
	}
	m := maps[0]
	perms := []byte("---p")
	if m.Read {
		perms[0] = 'r'
	}
	if m.Write {
		perms[1] = 'w'
	}
	if m.Exec {
		perms[2] = 'x'
	}
	if m.Shared {
		perms[3] = 's'
	}
	return m.Start, string(perms), nil
}

// probeRlimit lowers the helper's RLIMIT_CORE to 0 and then tries to raise
// its hard limit again, which needs CAP_SYS_RESOURCE.
func probeRlimit(res *results, pid int) {
	if err := unix.Prlimit(pid, unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 0}, nil); err != nil {
		res.failed(ProbeRaiseHardRlimit, os.NewSyscallError("prlimit64", err))
		return
	}
	err := unix.Prlimit(pid, unix.RLIMIT_CORE, &unix.Rlimit{Cur: 0, Max: 1 << 20}, nil)
	switch {
	case errors.Is(err, unix.EPERM):
		res.missing(ProbeRaiseHardRlimit, "prlimit64 raising a hard limit = EPERM: CAP_SYS_RESOURCE is not effective", nil)
	case err != nil:
		res.failed(ProbeRaiseHardRlimit, os.NewSyscallError("prlimit64", err))
	default:
		res.available(ProbeRaiseHardRlimit, "raised a child's hard RLIMIT_CORE with prlimit64")
	}
}

// probePidfd opens a pidfd for the helper, takes a copy of its stdin (our
// pipe) with pidfd_getfd and checks it is the same pipe, then kills the
// helper with pidfd_send_signal.
func probePidfd(res *results, h *holdChild) {
	pidfd, err := unix.PidfdOpen(h.pid, 0)
	if err != nil {
		err = os.NewSyscallError("pidfd_open", err)
		if errors.Is(err, unix.ENOSYS) {
			res.missing(ProbePidfdOpen, "ENOSYS (kernel < 5.3)", nil)
			res.missing(ProbePidfdGetfd, "needs pidfd_open", nil)
			res.missing(ProbePidfdSendSignal, "needs pidfd_open", nil)
		} else {
			res.failed(ProbePidfdOpen, err)
		}
		return
	}
	defer unix.Close(pidfd)
	res.available(ProbePidfdOpen, "opened a pidfd for a child")

	fd, err := unix.PidfdGetfd(pidfd, 0, 0)
	switch {
	case errors.Is(err, unix.ENOSYS):
		res.missing(ProbePidfdGetfd, "ENOSYS (kernel < 5.6)", nil)
	case errors.Is(err, unix.EPERM):
		res.missing(ProbePidfdGetfd, "EPERM: needs PTRACE_MODE_ATTACH on the target", nil)
	case err != nil:
		res.failed(ProbePidfdGetfd, os.NewSyscallError("pidfd_getfd", err))
	default:
		var theirs, ours unix.Stat_t
		err1 := unix.Fstat(fd, &theirs)
		err2 := unix.Fstat(int(h.stdin.Fd()), &ours)
		unix.Close(fd)
		if err1 != nil || err2 != nil || theirs.Ino != ours.Ino || theirs.Dev != ours.Dev {
			res.failed(ProbePidfdGetfd, fmt.Errorf("fd 0 taken from the child is not its stdin pipe (inode %d, want %d)",
				theirs.Ino, ours.Ino))
		} else {
			res.available(ProbePidfdGetfd, "took a child's fd 0: the same pipe")
		}
	}

	err = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
	switch {
	case errors.Is(err, unix.ENOSYS):
		res.missing(ProbePidfdSendSignal, "ENOSYS (kernel < 5.1)", nil)
	case err != nil:
		res.failed(ProbePidfdSendSignal, os.NewSyscallError("pidfd_send_signal", err))
	default:
		res.available(ProbePidfdSendSignal, "killed a child through its pidfd")
	}
}
