package feature

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

// Helper children. Probes that need a second process re-execute this binary
// through /proc/self/exe with helperEnv set to a mode; the init function
// below runs the mode instead of the program and exits. That works for the
// ferry binary and for test binaries alike, needs nothing installed, and
// runs before main, on the main thread (the runtime keeps the main goroutine
// locked to it during initialisation), so TID == PID in the helper.
//
// A helper reports on stdout as one line of key=value fields; errno values
// are written as errno:N so the parent can classify them.
const (
	helperEnv   = "_FERRY_FEATURE_PROBE"
	helperArgv0 = "ferry-feature-probe" // must match too: a stray variable alone does nothing
)

func init() {
	mode, ok := os.LookupEnv(helperEnv)
	if !ok || len(os.Args) == 0 || os.Args[0] != helperArgv0 {
		return
	}
	os.Exit(runHelper(mode, os.Stdout))
}

func runHelper(mode string, out io.Writer) int {
	switch mode {
	case "hold":
		return helperHold(out)
	case "selftest":
		return helperSelftest(out)
	case "clone3":
		return helperClone3(out)
	case "ns":
		return helperNS(out)
	}
	fmt.Fprintf(out, "error=unknown-mode:%s\n", mode)
	return 2
}

// Scratch memory the hold helper exposes for process_vm_* and /proc/PID/mem.
const (
	scratchPattern = "ferry-feature-scratch"
	scratchLen     = 4096
)

// helperKeep keeps memory registered with the kernel (the rseq area)
// reachable for the helper's lifetime.
var helperKeep [][]byte

// helperHold registers rseq on its main thread, says where its scratch
// buffer is, and blocks reading stdin until the parent closes it (or kills
// it): a long-lived, cooperative target that dies with its parent.
func helperHold(out io.Writer) int {
	scratch := make([]byte, scratchLen)
	copy(scratch, scratchPattern)
	helperKeep = append(helperKeep, scratch)

	rseqArea := make([]byte, 2*rseqLen)
	helperKeep = append(helperKeep, rseqArea)
	var rseq string
	if addr, err := rseqRegister(rseqArea); err != nil {
		rseq = errnoField(err)
	} else {
		rseq = fmt.Sprintf("%#x", addr)
	}
	fmt.Fprintf(out, "ready=1 rseq=%s scratch=%#x\n", rseq, addrOf(scratch))

	var b [1]byte
	for {
		n, err := unix.Read(0, b[:])
		if err == unix.EINTR {
			continue
		}
		if n <= 0 {
			return 0
		}
	}
}

// helperSelftest runs the probes that change process-wide state (or need
// memory written after a reset), so that ferry itself is left untouched.
func helperSelftest(out io.Writer) int {
	fmt.Fprintf(out, "subreaper=%s timerids=%s softdirty=%s\n",
		selftestSubreaper(), selftestTimerIDs(), selftestSoftDirty())
	return 0
}

func selftestSubreaper() string {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return errnoField(err)
	}
	v, err := prctlGetInt(unix.PR_GET_CHILD_SUBREAPER)
	if err != nil {
		return errnoField(err)
	}
	if v != 1 {
		return fmt.Sprintf("readback:%d", v)
	}
	return "ok"
}

// helperTimerID is the timer ID requested under PR_TIMER_CREATE_RESTORE_IDS;
// any free ID would do, a fresh process has none in use.
const helperTimerID = 4242

func selftestTimerIDs() string {
	if err := unix.Prctl(unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_ON, 0, 0, 0); err != nil {
		return errnoField(err)
	}
	id, err := timerCreateWithID(unix.CLOCK_MONOTONIC, helperTimerID)
	if err != nil {
		return errnoField(err)
	}
	defer unix.Syscall(unix.SYS_TIMER_DELETE, uintptr(id), 0, 0)
	if id != helperTimerID {
		return fmt.Sprintf("got-id:%d", id)
	}
	return "ok"
}

// selftestSoftDirty: a freshly written page must show PM_SOFT_DIRTY, lose it
// when 4 is written to clear_refs, and regain it on the next write. Without
// CONFIG_MEM_SOFT_DIRTY the bit is never set.
func selftestSoftDirty() string {
	ps := os.Getpagesize()
	mem, err := unix.Mmap(-1, 0, ps, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		return errnoField(err)
	}
	defer unix.Munmap(mem)
	pm, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return errnoField(err)
	}
	defer pm.Close()
	entry := func() (uint64, error) {
		var b [8]byte
		if _, err := pm.ReadAt(b[:], int64(addrOf(mem)/uint64(ps)*8)); err != nil {
			return 0, err
		}
		return binary.LittleEndian.Uint64(b[:]), nil
	}
	const sd = kernel.PM_SOFT_DIRTY
	mem[0] = 1
	first, err := entry()
	if err != nil {
		return errnoField(err)
	}
	if err := os.WriteFile("/proc/self/clear_refs", []byte("4"), 0); err != nil {
		return errnoField(err)
	}
	cleared, err := entry()
	if err != nil {
		return errnoField(err)
	}
	mem[0] = 2
	again, err := entry()
	if err != nil {
		return errnoField(err)
	}
	switch {
	case first&sd == 0 && again&sd == 0:
		return "never-set"
	case cleared&sd != 0:
		return "not-cleared"
	case again&sd == 0:
		return "not-set-again"
	}
	return "ok"
}

// helperClone3Tid is the PID the clone3 helper asks for inside its new PID
// namespace: well above the TIDs its own runtime threads took (2, 3, ...),
// below the smallest pid_max.
const helperClone3Tid = 100

// helperClone3 runs as PID 1 of a new PID namespace and forks a child with
// clone3(set_tid=[helperClone3Tid]).
func helperClone3(out io.Writer) int {
	if os.Getpid() != 1 {
		fmt.Fprintf(out, "clone3=not-pid1:%d\n", os.Getpid())
		return 0
	}
	pid, err := forkWithTID(helperClone3Tid)
	if err != nil {
		fmt.Fprintf(out, "clone3=%s\n", errnoField(err))
		return 0
	}
	var ws unix.WaitStatus
	for {
		_, err = unix.Wait4(pid, &ws, 0, nil)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		fmt.Fprintf(out, "clone3=ok pid=%d wait=%s\n", pid, errnoField(err))
		return 0
	}
	fmt.Fprintf(out, "clone3=ok pid=%d exit=%d\n", pid, ws.ExitStatus())
	return 0
}

// helperNS reports the namespaces it runs in.
func helperNS(out io.Writer) int {
	net, _ := os.Readlink("/proc/self/ns/net")
	mnt, _ := os.Readlink("/proc/self/ns/mnt")
	ipc, _ := os.Readlink("/proc/self/ns/ipc")
	fmt.Fprintf(out, "pid=%d net=%s mnt=%s ipc=%s\n", os.Getpid(), net, mnt, ipc)
	return 0
}

func errnoField(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return "errno:" + strconv.Itoa(int(errno))
	}
	return "error:" + strings.ReplaceAll(err.Error(), " ", "_")
}

// fieldErrno turns a field written by errnoField back into an error; ok is
// false when the field holds neither.
func fieldErrno(v string) (error, bool) {
	if n, ok := strings.CutPrefix(v, "errno:"); ok {
		if i, err := strconv.Atoi(n); err == nil {
			return unix.Errno(i), true
		}
	}
	if s, ok := strings.CutPrefix(v, "error:"); ok {
		return errors.New(strings.ReplaceAll(s, "_", " ")), true
	}
	return nil, false
}

func parseFields(line string) map[string]string {
	f := make(map[string]string)
	for _, kv := range strings.Fields(line) {
		k, v, _ := strings.Cut(kv, "=")
		f[k] = v
	}
	return f
}

// helperCmd prepares a helper child in mode; cloneflags go to clone(2).
// The context kills it.
func helperCmd(ctx context.Context, mode string, cloneflags uintptr) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/proc/self/exe")
	cmd.Args = []string{helperArgv0, mode}
	// GORACE: a -race build would otherwise sleep a second on exit.
	cmd.Env = []string{helperEnv + "=" + mode, "GOMAXPROCS=1", "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneflags}
	cmd.WaitDelay = time.Second
	return cmd
}

// runHelperOnce runs a helper to completion and returns its fields. An
// error from starting it (a clone flag refused) is returned unwrapped
// enough for errors.Is on the errno.
func runHelperOnce(ctx context.Context, mode string, cloneflags uintptr) (map[string]string, error) {
	cmd := helperCmd(ctx, mode, cloneflags)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return nil, fmt.Errorf("helper %s: %w: %s", mode, err, firstLine(msg))
		}
		return nil, fmt.Errorf("helper %s: %w", mode, err)
	}
	return parseFields(stdout.String()), nil
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}
