package fds

import (
	"bufio"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
	"ferry/internal/kernel"
	"ferry/internal/procfs"
	"ferry/internal/testutil"
)

// childProg is testdata/child.c, built once per test binary.
var childProg = &testutil.CProgram{Src: "testdata/child.c", Flags: []string{"-O1", "-Wall"}}

func TestMain(m *testing.M) {
	code := m.Run()
	childProg.Remove()
	os.Exit(code)
}

// buildChild returns the test child; the tests that run it need root
// (pidfd_getfd, kcmp on other processes).
func buildChild(t *testing.T) string {
	t.Helper()
	testutil.NeedRoot(t, "pidfd_getfd, kcmp on other processes")
	return childProg.Path(t)
}

func testLogger(t *testing.T) *slog.Logger { return testutil.Logger(t, slog.LevelDebug) }

// startChild runs the test child with kind in dir, passing extra (if not
// nil) as its fd 4, and waits for the readiness lines of the child (and of
// its grandchild for "full"). It returns their PIDs, child first; both are
// killed when the test ends.
func startChild(t *testing.T, kind, dir string, extra *os.File) []int {
	t.Helper()
	bin := buildChild(t)
	stderr, err := os.Create(filepath.Join(dir, "child.stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer stderr.Close()
	cmd := exec.Command(bin, kind, dir)
	cmd.Stderr = stderr
	var extras []*os.File
	if extra != nil {
		extras = append(extras, extra)
	}
	readyR := testutil.StartReady(t, cmd, extras...)
	pids := []int{cmd.Process.Pid}
	t.Cleanup(func() {
		for _, pid := range pids[1:] {
			unix.Kill(pid, unix.SIGKILL) // the grandchild; init reaps it
		}
		cmd.Process.Kill()
		cmd.Wait()
	})

	want := 1
	if kind == "full" {
		want = 2
	}
	br := bufio.NewReader(readyR)
	for got := 0; got < want; got++ {
		line, err := br.ReadString('\n')
		if err != nil {
			msg, _ := os.ReadFile(stderr.Name())
			t.Fatalf("child %s did not get ready: %v\n%s", kind, err, msg)
		}
		who, pidText, _ := strings.Cut(strings.TrimSpace(line), " ")
		pid, _ := strconv.Atoi(pidText)
		if who == "g" {
			pids = append(pids, pid)
		}
	}
	return pids
}

// startHolder starts a process that holds f (as its fd 3) and nothing
// else of interest, killed when the test ends.
func startHolder(t *testing.T, f *os.File) {
	t.Helper()
	cmd := exec.Command("sleep", "1000")
	cmd.ExtraFiles = []*os.File{f}
	if err := cmd.Start(); err != nil {
		t.Skipf("cannot start a holder process: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
}

func dumpTree(t *testing.T, d *Dumper, pids []int) []*image.Process {
	t.Helper()
	var procs []*image.Process
	for i, pid := range pids {
		pidfd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			t.Fatalf("pidfd_open(%d): %v", pid, err)
		}
		fds, err := d.DumpProcess(pid, pidfd)
		unix.Close(pidfd)
		if err != nil {
			t.Fatalf("DumpProcess(%d): %v", pid, err)
		}
		p := &image.Process{PID: pid, FDs: fds}
		if i > 0 {
			p.PPID = pids[0]
		}
		procs = append(procs, p)
	}
	if err := d.Finish(procs); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	return procs
}

// records returns fd number → full record of p (state looked up through
// Desc in all of procs).
func records(procs []*image.Process, p *image.Process) map[int]image.FD {
	full := make(map[string]image.FD)
	for _, q := range procs {
		for _, fd := range q.FDs {
			if fd.Kind != "" {
				if _, ok := full[fd.Desc]; !ok {
					full[fd.Desc] = fd
				}
			}
		}
	}
	m := make(map[int]image.FD)
	for _, fd := range p.FDs {
		r := full[fd.Desc]
		r.Num, r.CloExec = fd.Num, fd.CloExec
		m[fd.Num] = r
	}
	return m
}

func sha(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

func TestDumpRestore(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "ro.txt"), []byte("abcdefghij"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The external pipe: its writer lives in a holder process outside the
	// tree, its read end in the child (fd 117).
	extR, extW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := extW.Write([]byte("ext-bytes")); err != nil {
		t.Fatal(err)
	}
	startHolder(t, extW)
	extW.Close()
	pids := startChild(t, "full", dir, extR)
	extR.Close()
	if len(pids) != 2 {
		t.Fatalf("got pids %v, want child and grandchild", pids)
	}
	if err := Check(pids[0]); err != nil {
		t.Fatalf("Check(full child) = %v, want nil", err)
	}

	d := NewDumper(testLogger(t))
	defer d.Close()
	procs := dumpTree(t, d, pids)
	recs := records(procs, procs[0])

	// epoll_ctl always adds EPOLLERR and EPOLLHUP to what was asked for.
	const epollIn = unix.EPOLLIN | unix.EPOLLERR | unix.EPOLLHUP
	sigmask := uint64(1)<<(unix.SIGUSR1-1) | uint64(1)<<(unix.SIGUSR2-1)
	checks := []struct {
		num   int
		check func(r image.FD) error
	}{
		{100, func(r image.FD) error {
			return want(r.Kind == image.FDFile && r.Flags&unix.O_APPEND != 0 && r.Offset == 3 &&
				r.Path == filepath.Join(dir, "append.txt") && r.Size == 10 && r.ContentHash == sha("0123456789"), "append file")
		}},
		{101, func(r image.FD) error {
			return want(r.Offset == 5 && r.CloExec && r.Flags&unix.O_ACCMODE == unix.O_RDONLY, "offset 5, cloexec")
		}},
		{102, func(r image.FD) error {
			return want(r.Desc == recs[101].Desc && !r.CloExec, "same Desc as 101 (%s), not cloexec; got %s", recs[101].Desc, r.Desc)
		}},
		{103, func(r image.FD) error { return want(r.Kind == image.FDDir && r.Path == dir, "directory") }},
		{104, func(r image.FD) error {
			return want(r.Kind == image.FDChar && r.Path == "/dev/null" && r.Flags&unix.O_ACCMODE == unix.O_WRONLY, "/dev/null")
		}},
		{105, func(r image.FD) error {
			return want(r.Kind == image.FDPipe && string(r.Buffered) == "pipe-data" && r.PipeSize == 128<<10 && !r.External,
				"pipe read end with buffered bytes; got %q size %d external %v", r.Buffered, r.PipeSize, r.External)
		}},
		{106, func(r image.FD) error {
			return want(r.PipeID == recs[105].PipeID && r.Flags&unix.O_ACCMODE == unix.O_WRONLY && len(r.Buffered) == 0, "pipe write end")
		}},
		{107, func(r image.FD) error {
			return want(r.Kind == image.FDEventfd && r.EventfdCount == 7 && r.EventfdSemaphore && r.Flags&unix.O_NONBLOCK != 0, "eventfd")
		}},
		{108, func(r image.FD) error {
			return want(r.Kind == image.FDTimerfd && r.TimerClock == unix.CLOCK_MONOTONIC &&
				r.TimerValueNsec > int64(90*time.Second) && r.TimerValueNsec <= int64(100*time.Second) &&
				r.TimerIntervalNsec == int64(5*time.Second), "timerfd; got %+v", r)
		}},
		{109, func(r image.FD) error {
			return want(r.Kind == image.FDSignalfd && r.SignalfdMask == sigmask, "signalfd mask %#x, got %#x", sigmask, r.SignalfdMask)
		}},
		{110, func(r image.FD) error {
			return want(r.Kind == image.FDEpoll && r.CloExec && len(r.Epoll) == 2 &&
				r.Epoll[0] == image.EpollItem{FD: 105, Events: epollIn, Data: 0xabc, Desc: recs[105].Desc} &&
				r.Epoll[1] == image.EpollItem{FD: 107, Events: epollIn | unix.EPOLLET, Data: 7, Desc: recs[107].Desc},
				"epoll items (each naming the description it watches); got %+v", r.Epoll)
		}},
		{111, func(r image.FD) error {
			return want(r.Kind == image.FDUnix && r.SockType == unix.SOCK_STREAM && r.SockPeer == recs[112].Desc &&
				queue(r.SockQueue) == `["to-a"]` && r.SockSndBuf == 100000 && !r.SockPassCred && r.SockCredPID == pids[0],
				"stream end a, SO_SNDBUF 100000, created by %d; got peer %s queue %s sndbuf %d passcred %v cred pid %d",
				pids[0], r.SockPeer, queue(r.SockQueue), r.SockSndBuf, r.SockPassCred, r.SockCredPID)
		}},
		{112, func(r image.FD) error {
			return want(r.SockPeer == recs[111].Desc && queue(r.SockQueue) == `["to-b-1to-b-2"]` && r.SockRcvBuf == 140000 && r.SockPassCred,
				"stream end b, SO_RCVBUF 140000, SO_PASSCRED; got %s rcvbuf %d passcred %v", queue(r.SockQueue), r.SockRcvBuf, r.SockPassCred)
		}},
		{113, func(r image.FD) error {
			return want(r.SockType == unix.SOCK_DGRAM && queue(r.SockQueue) == `["d1" "" "d333"]`, "datagrams; got %s", queue(r.SockQueue))
		}},
		{115, func(r image.FD) error {
			return want(r.Kind == image.FDMemfd && r.Path == "/memfd:ferrytest" && r.Offset == 2 && r.Size == 13 &&
				r.FileID == image.ObjectID(r.Dev, r.Ino) && memfdSeals(&r) == unix.F_SEAL_GROW|unix.F_SEAL_SHRINK, "memfd; got %+v", r)
		}},
		{116, func(r image.FD) error {
			return want(r.Kind == image.FDFile && r.Unlinked && r.Path == filepath.Join(dir, "gone.txt") && r.Offset == 4 && r.FileID != "",
				"unlinked file; got %+v", r)
		}},
		{117, func(r image.FD) error {
			return want(r.Kind == image.FDPipe && r.External && len(r.Buffered) == 0, "external pipe without bytes; got %+v", r)
		}},
		{118, func(r image.FD) error {
			return want(r.SockType == unix.SOCK_SEQPACKET && queue(r.SockQueue) == `["s1" "s22"]` && r.SockShutWR && !r.SockShutRD,
				"seqpacket; got %+v", r)
		}},
		{119, func(r image.FD) error {
			return want(r.SockShutRD && !r.SockShutWR, "peer of shut-down seqpacket; got %+v", r)
		}},
		{120, func(r image.FD) error {
			return want(r.Kind == image.FDFIFO && string(r.Buffered) == "fifo-data" && r.Path == filepath.Join(dir, "fifo"), "FIFO; got %+v", r)
		}},
		{121, func(r image.FD) error { return want(r.Flags&unix.O_PATH != 0, "O_PATH") }},
		{122, func(r image.FD) error {
			return want(r.TimerClock == unix.CLOCK_REALTIME && r.TimerTicks == 1 && r.TimerValueNsec == 0, "expired timer; got %+v", r)
		}},
		{123, func(r image.FD) error {
			return want(string(r.Buffered) == "orphan" && !r.External, "orphan pipe; got %+v", r)
		}},
		{124, func(r image.FD) error {
			return want(r.SockPeer == "" && !r.External && queue(r.SockQueue) == `["bye"]` && r.SockShutRD && r.SockShutWR,
				"socket with closed peer; got %+v", r)
		}},
		{125, func(r image.FD) error {
			return want(r.Kind == image.FDFile && r.Unlinked && strings.HasPrefix(r.Path, dir+"/#") && r.Offset == 1 && r.Size == 7,
				"O_TMPFILE file; got %+v", r)
		}},
		{126, func(r image.FD) error {
			return want(r.Kind == image.FDFile && r.Flags&unix.O_PATH != 0 && r.Mode&unix.S_IFMT == unix.S_IFIFO, "O_PATH FIFO; got %+v", r)
		}},
		{127, func(r image.FD) error {
			return want(r.Kind == image.FDPipe && string(r.Buffered) == "pk1packet-23" && fmt.Sprint(r.PipePackets) == "[3 8 1]",
				"packet pipe; got %q packets %v", r.Buffered, r.PipePackets)
		}},
	}
	for _, c := range checks {
		r, ok := recs[c.num]
		if !ok {
			t.Errorf("fd %d not dumped", c.num)
			continue
		}
		if err := c.check(r); err != nil {
			t.Errorf("fd %d: %v", c.num, err)
		}
	}

	// The grandchild shares the child's descriptions and repeats only
	// Num, CloExec and Desc; its own fd 130 has a full record.
	for _, fd := range procs[1].FDs {
		if fd.Num == 130 {
			if fd.Kind != image.FDChar || fd.Path != "/dev/zero" {
				t.Errorf("grandchild fd 130 = %+v, want /dev/zero", fd)
			}
			continue
		}
		if fd.Kind != "" || fd.Desc != recs[fd.Num].Desc {
			t.Errorf("grandchild fd %d = %+v, want a bare reference to %s", fd.Num, fd, recs[fd.Num].Desc)
		}
	}

	objs := d.Objects()
	for _, c := range []struct {
		num  int
		want string
	}{{115, "memfd-content"}, {116, "unlinked-content"}} {
		f := objs[recs[c.num].FileID]
		if f == nil {
			t.Errorf("Objects()[%s] missing (fd %d)", recs[c.num].FileID, c.num)
			continue
		}
		got, _ := io.ReadAll(io.NewSectionReader(f, 0, 1<<20))
		if string(got) != c.want {
			t.Errorf("object of fd %d = %q, want %q", c.num, got, c.want)
		}
	}

	t.Run("restore", func(t *testing.T) { testRestore(t, procs, objs, dir) })
	t.Run("inherit", func(t *testing.T) { testInherit(t, d, procs, objs) })
}

func want(ok bool, format string, args ...any) error {
	if ok {
		return nil
	}
	return fmt.Errorf("want "+format, args...)
}

func queue(q [][]byte) string {
	var parts []string
	for _, m := range q {
		parts = append(parts, strconv.Quote(string(m)))
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// install puts the restored files of pid numbered 100-199 at their
// numbers in the test process (as the restore engine would in the target)
// and returns those numbers; they are closed when the test ends.
func install(t *testing.T, r *Restorer, pid int) map[int]Install {
	t.Helper()
	got := make(map[int]Install)
	for _, in := range r.Files(pid) {
		if in.Num < 100 || in.Num >= 200 {
			continue // the child's stdio, readiness pipe, fds inherited from the environment
		}
		if in.File == nil {
			t.Fatalf("fd %d: no file prepared", in.Num)
		}
		if _, err := unix.FcntlInt(uintptr(in.Num), unix.F_GETFD, 0); err != unix.EBADF {
			t.Fatalf("fd %d is in use in the test process", in.Num)
		}
		flags := 0
		if in.CloExec {
			flags = unix.O_CLOEXEC
		}
		if err := unix.Dup3(RawFD(in.File), in.Num, flags); err != nil {
			t.Fatalf("install fd %d: %v", in.Num, err)
		}
		num := in.Num
		t.Cleanup(func() { unix.Close(num) })
		got[in.Num] = in
	}
	return got
}

func readN(fd, n int) (string, error) {
	buf := make([]byte, n)
	got := 0
	for got < n {
		m, err := unix.Read(fd, buf[got:])
		if err != nil {
			return string(buf[:got]), err
		}
		if m == 0 {
			break
		}
		got += m
	}
	return string(buf[:got]), nil
}

func testRestore(t *testing.T, procs []*image.Process, objs map[string]*os.File, dir string) {
	r := NewRestorer(testLogger(t), procs, nil, nil, objs)
	defer r.Close()
	if err := r.Prepare(); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	child, grandchild := procs[0].PID, procs[1].PID
	installed := install(t, r, child)
	inj := newLocalInjector(t)
	if err := r.Finish(child, inj); err != nil {
		t.Fatalf("Finish(child): %v", err)
	}
	if err := r.Finish(grandchild, inj); err != nil {
		t.Fatalf("Finish(grandchild): %v", err)
	}
	// The four socketpairs the child made are made again "in" it (here:
	// in the test process) for SO_PEERCRED, then the epoll items added.
	calls := map[string]int{}
	for _, c := range inj.calls {
		nr, _, _ := strings.Cut(c, "[")
		calls[nr]++
	}
	if calls[strconv.Itoa(unix.SYS_SOCKETPAIR)] != 4 || calls[strconv.Itoa(unix.SYS_EPOLL_CTL)] != 2 {
		t.Errorf("injected %v, want four socketpair and two epoll_ctl calls", inj.calls)
	}
	self := os.Getpid()
	for _, in := range r.Files(child) {
		if _, ok := installed[in.Num]; !ok {
			continue
		}
		same, err := kernel.KcmpFile(self, in.Num, self, RawFD(in.File))
		if err != nil || !same {
			t.Errorf("fd %d: installed file is not the one Files hands out after Finish (%v)", in.Num, err)
		}
		if in.Num == 111 && installed[111].File == in.File {
			t.Errorf("fd 111: Finish did not replace the socketpair Prepare made")
		}
	}
	if cred, err := unix.GetsockoptUcred(111, unix.SOL_SOCKET, unix.SO_PEERCRED); err != nil || int(cred.Pid) != self {
		t.Errorf("fd 111 SO_PEERCRED = %+v, %v; want pid %d (the process Finish ran in)", cred, err, self)
	}
	if o := r.Object(records(procs, procs[0])[115].FileID); o == nil {
		t.Errorf("Object(memfd) = nil")
	}

	// The epoll instance first: both items are ready (pipe has data,
	// eventfd count > 0) and report their data.
	evs := make([]unix.EpollEvent, 8)
	n, err := unix.EpollWait(110, evs, 0)
	if err != nil {
		t.Fatalf("epoll_wait: %v", err)
	}
	var datas []uint64
	for _, ev := range evs[:n] {
		datas = append(datas, uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32)
	}
	if fmt.Sprint(datas) != fmt.Sprint([]uint64{0xabc, 7}) && fmt.Sprint(datas) != fmt.Sprint([]uint64{7, 0xabc}) {
		t.Errorf("epoll_wait data = %#x, want 0xabc and 0x7", datas)
	}

	checks := []struct {
		name  string
		check func() error
	}{
		{"append file offset and flags", func() error {
			off, _ := unix.Seek(100, 0, io.SeekCurrent)
			fl, _ := unix.FcntlInt(100, unix.F_GETFL, 0)
			return want(off == 3 && fl&unix.O_APPEND != 0, "offset 3 with O_APPEND; got %d %#o", off, fl)
		}},
		{"shared description 101/102", func() error {
			s, err := readN(102, 5)
			off, _ := unix.Seek(101, 0, io.SeekCurrent)
			fd101, _ := unix.FcntlInt(101, unix.F_GETFD, 0)
			fd102, _ := unix.FcntlInt(102, unix.F_GETFD, 0)
			return want(err == nil && s == "fghij" && off == 10 && fd101 == unix.FD_CLOEXEC && fd102 == 0,
				"read fghij via 102, offset 10 via 101, cloexec only on 101; got %q %v %d %d %d", s, err, off, fd101, fd102)
		}},
		{"directory", func() error {
			var st unix.Stat_t
			unix.Fstat(103, &st)
			return want(st.Mode&unix.S_IFMT == unix.S_IFDIR, "a directory")
		}},
		{"pipe bytes and size", func() error {
			s, err := readN(105, 9)
			size, _ := unix.FcntlInt(105, unix.F_GETPIPE_SZ, 0)
			return want(err == nil && s == "pipe-data" && size == 128<<10, "pipe-data in 128 KiB pipe; got %q %v %d", s, err, size)
		}},
		{"pipe ends connected", func() error {
			unix.Write(106, []byte("x"))
			s, err := readN(105, 1)
			return want(err == nil && s == "x", "106 writes into 105; got %q %v", s, err)
		}},
		{"eventfd semaphore", func() error {
			s, err := readN(107, 8)
			v := uint64(0)
			if len(s) == 8 {
				v = binary.NativeEndian.Uint64([]byte(s))
			}
			info, _ := procfs.FDInfo(os.Getpid(), 107)
			return want(err == nil && v == 1 && info.Fields["eventfd-count"] == "6", "read 1, count left 6; got %d %v %q", v, err, info.Fields["eventfd-count"])
		}},
		{"timerfd armed", func() error {
			var its unix.ItimerSpec
			err := unix.TimerfdGettime(108, &its)
			v := time.Duration(its.Value.Nano())
			return want(err == nil && v > 80*time.Second && v <= 100*time.Second && its.Interval.Nano() == int64(5*time.Second),
				"about 100 s left, 5 s interval; got %v %v %v", v, time.Duration(its.Interval.Nano()), err)
		}},
		{"signalfd mask", func() error {
			info, _ := procfs.FDInfo(os.Getpid(), 109)
			return want(info.Fields["sigmask"] == "0000000000000a00", "mask of SIGUSR1|SIGUSR2; got %q", info.Fields["sigmask"])
		}},
		{"stream pair options", func() error {
			snd, err1 := unix.GetsockoptInt(111, unix.SOL_SOCKET, unix.SO_SNDBUF)
			rcv, err2 := unix.GetsockoptInt(112, unix.SOL_SOCKET, unix.SO_RCVBUF)
			pc, err3 := unix.GetsockoptInt(112, unix.SOL_SOCKET, unix.SO_PASSCRED)
			return want(snd == 100000 && rcv == 140000 && pc == 1 && errors.Join(err1, err2, err3) == nil,
				"SO_SNDBUF 100000 on 111, SO_RCVBUF 140000 and SO_PASSCRED on 112; got %d %d %d %v", snd, rcv, pc, errors.Join(err1, err2, err3))
		}},
		{"packet pipe", func() error {
			var got []string
			buf := make([]byte, 64)
			for range 3 {
				n, err := unix.Read(127, buf)
				if err != nil {
					return err
				}
				got = append(got, string(buf[:n]))
			}
			fl, _ := unix.FcntlInt(128, unix.F_GETFL, 0)
			return want(fmt.Sprintf("%q", got) == `["pk1" "packet-2" "3"]` && fl&unix.O_DIRECT != 0,
				"one packet per read, write end O_DIRECT; got %q %#o", got, fl)
		}},
		{"stream pair queues", func() error {
			a, err1 := readN(111, 4)
			b, err2 := readN(112, 12)
			unix.Write(111, []byte("ping"))
			c, err3 := readN(112, 4)
			return want(a == "to-a" && b == "to-b-1to-b-2" && c == "ping" && errors.Join(err1, err2, err3) == nil,
				"queues and connection; got %q %q %q", a, b, c)
		}},
		{"datagram queue", func() error {
			var got []string
			buf := make([]byte, 64)
			for range 3 {
				n, _, err := unix.Recvfrom(113, buf, unix.MSG_DONTWAIT)
				if err != nil {
					return err
				}
				got = append(got, string(buf[:n]))
			}
			return want(fmt.Sprintf("%q", got) == `["d1" "" "d333"]`, "three datagrams; got %q", got)
		}},
		{"seqpacket queue and shutdown", func() error {
			buf := make([]byte, 64)
			n1, _, err1 := unix.Recvfrom(118, buf, unix.MSG_DONTWAIT)
			s1 := string(buf[:max(n1, 0)])
			n2, _, err2 := unix.Recvfrom(118, buf, unix.MSG_DONTWAIT)
			s2 := string(buf[:max(n2, 0)])
			err3 := unix.Sendto(118, []byte("no"), unix.MSG_NOSIGNAL, nil)
			return want(s1 == "s1" && s2 == "s22" && errors.Join(err1, err2) == nil && err3 == unix.EPIPE,
				"s1, s22, then EPIPE on send; got %q %q %v", s1, s2, errors.Join(err1, err2, err3))
		}},
		{"memfd", func() error {
			link, _ := os.Readlink("/proc/self/fd/115")
			seals, _ := unix.FcntlInt(115, unix.F_GET_SEALS, 0)
			off, _ := unix.Seek(115, 0, io.SeekCurrent)
			s, err := readN(115, 64)
			return want(link == "/memfd:ferrytest (deleted)" && seals == unix.F_SEAL_GROW|unix.F_SEAL_SHRINK && off == 2 && s == "mfd-content" && err == nil,
				"name, seals, offset, content; got %q %#x %d %q", link, seals, off, s)
		}},
		{"unlinked file", func() error {
			link, _ := os.Readlink("/proc/self/fd/116")
			var st unix.Stat_t
			unix.Fstat(116, &st)
			s, err := readN(116, 64)
			return want(link == filepath.Join(dir, "gone.txt")+deletedSuffix && st.Nlink == 0 && s == "nked-content" && err == nil,
				"unlinked with content at offset 4; got %q nlink %d %q", link, st.Nlink, s)
		}},
		{"external pipe is the live one", func() error {
			s, err := readN(117, 9)
			return want(s == "ext-bytes" && err == nil, "ext-bytes from the live pipe; got %q %v", s, err)
		}},
		{"FIFO", func() error {
			s, err := readN(120, 9)
			return want(s == "fifo-data" && err == nil, "fifo-data; got %q %v", s, err)
		}},
		{"O_PATH", func() error {
			fl, _ := unix.FcntlInt(121, unix.F_GETFL, 0)
			return want(fl&unix.O_PATH != 0, "O_PATH; got %#o", fl)
		}},
		{"expired timer ticks", func() error {
			s, err := readN(122, 8)
			v := uint64(0)
			if len(s) == 8 {
				v = binary.NativeEndian.Uint64([]byte(s))
			}
			return want(v == 1 && err == nil, "one expiration; got %d %v", v, err)
		}},
		{"O_TMPFILE file", func() error {
			fl, _ := unix.FcntlInt(125, unix.F_GETFL, 0)
			s, err := readN(125, 64)
			return want(fl&unix.O_ACCMODE == unix.O_RDWR && fl&unix.O_TMPFILE == unix.O_TMPFILE && s == "mpfile" && err == nil,
				"read-write O_TMPFILE (as F_GETFL showed it), content from offset 1; got %#o %q %v", fl, s, err)
		}},
		{"O_PATH FIFO", func() error {
			fl, _ := unix.FcntlInt(126, unix.F_GETFL, 0)
			var st unix.Stat_t
			unix.Fstat(126, &st)
			return want(fl&unix.O_PATH != 0 && st.Mode&unix.S_IFMT == unix.S_IFIFO, "O_PATH on a FIFO; got %#o %o", fl, st.Mode)
		}},
		{"orphan pipe reads then EOF", func() error {
			s, err := readN(123, 64)
			return want(s == "orphan" && err == nil, "orphan then EOF; got %q %v", s, err)
		}},
		{"closed peer reads then EOF", func() error {
			s, err := readN(124, 64)
			return want(s == "bye" && err == nil, "bye then EOF; got %q %v", s, err)
		}},
	}
	for _, c := range checks {
		if err := c.check(); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	if in := installed[110]; !in.CloExec {
		t.Errorf("Install for fd 110 has CloExec false, want true")
	}
}

// testInherit restores with the Dumper's kept descriptions, as an
// in-process migration does: pipes and sockets are the very same
// descriptions, nothing is recreated for them.
func testInherit(t *testing.T, d *Dumper, procs []*image.Process, objs map[string]*os.File) {
	kept := d.Kept()
	r := NewRestorer(testLogger(t), procs, nil, kept, objs)
	defer r.Close()
	if err := r.Prepare(); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	recs := records(procs, procs[0])
	files := make(map[int]*os.File)
	for _, in := range r.Files(procs[0].PID) {
		files[in.Num] = in.File
	}
	self := os.Getpid()
	for _, num := range []int{105, 106, 111, 112, 117, 120} {
		same, err := kernel.KcmpFile(self, RawFD(files[num]), self, RawFD(kept[recs[num].Desc]))
		if err != nil || !same {
			t.Errorf("fd %d: restored description is not the kept one (%v)", num, err)
		}
	}
	if f := kept[recs[100].Desc]; f != nil {
		t.Errorf("Kept() has fd 100, a regular file (reopened, never inherited)")
	}
}

func TestCheck(t *testing.T) {
	tests := []struct {
		kind     string
		resource string
		detail   string
	}{
		{"tcp", "tcp socket", "127.0.0.1:"},
		{"udp", "udp socket", "127.0.0.1:"},
		{"netlink", "netlink socket", ""},
		{"ptmx", "pty master", "/dev/ptmx"},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			dir := t.TempDir()
			pid := startChild(t, tt.kind, dir, nil)[0]
			err := Check(pid)
			var ue *UnsupportedError
			if !errors.As(err, &ue) || !errors.Is(err, ErrUnsupported) {
				t.Fatalf("Check(%s child) = %v, want an *UnsupportedError", tt.kind, err)
			}
			if ue.PID != pid || ue.FD != 100 || ue.Resource != tt.resource || !strings.Contains(ue.Detail, tt.detail) {
				t.Errorf("Check(%s child) = %+v, want pid %d fd 100 %q with detail containing %q", tt.kind, ue, pid, tt.resource, tt.detail)
			}
			// DumpProcess refuses the same fd.
			pidfd, err := unix.PidfdOpen(pid, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(pidfd)
			d := NewDumper(nil)
			defer d.Close()
			if _, err := d.DumpProcess(pid, pidfd); !errors.As(err, &ue) || ue.FD != 100 {
				t.Errorf("DumpProcess(%s child) = %v, want an *UnsupportedError for fd 100", tt.kind, err)
			}
		})
	}
}

func TestUnsupportedError(t *testing.T) {
	tests := []struct {
		err  *UnsupportedError
		want string
	}{
		{&UnsupportedError{PID: 123, FD: 5, Resource: "tcp socket", Detail: "127.0.0.1:4000"},
			"pid 123 fd 5: tcp socket (127.0.0.1:4000) cannot be checkpointed yet"},
		{&UnsupportedError{PID: 1, FD: 0, Resource: "io_uring"}, "pid 1 fd 0: io_uring cannot be checkpointed yet"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
		wrapped := fmt.Errorf("checkpoint: %w", tt.err)
		if !errors.Is(wrapped, ErrUnsupported) {
			t.Errorf("errors.Is(%v, ErrUnsupported) = false", wrapped)
		}
	}
}

// TestPrepareRecords restores hand-written records: the paths a dump of a
// live child does not reach.
func TestPrepareRecords(t *testing.T) {
	dir := t.TempDir()
	content := filepath.Join(dir, "content")
	if err := os.WriteFile(content, []byte("hello memfd"), 0o600); err != nil {
		t.Fatal(err)
	}
	obj, err := os.Open(content)
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	maxSize, _ := os.ReadFile("/proc/sys/fs/pipe-max-size")
	tooBig := 4 << 20
	if m, _ := strconv.Atoi(strings.TrimSpace(string(maxSize))); m >= tooBig {
		tooBig = 0
	}

	tests := []struct {
		name    string
		fds     []image.FD
		wantErr string // substring; "" for success
		check   func(t *testing.T, files []Install)
	}{
		{
			name:    "missing file",
			fds:     []image.FD{{Num: 5, Desc: "d1", Kind: image.FDFile, Path: filepath.Join(dir, "nope"), Mode: unix.S_IFREG | 0o644}},
			wantErr: "pid 1 fd 5 (file " + filepath.Join(dir, "nope") + "): " + filepath.Join(dir, "nope") + " no longer exists",
		},
		{
			name:    "pipe beyond pipe-max-size",
			fds:     []image.FD{{Num: 3, Desc: "d1", Kind: image.FDPipe, PipeID: "1", PipeSize: tooBig}},
			wantErr: "fs.pipe-max-size",
		},
		{
			name: "FIFO recreated with its bytes",
			fds: []image.FD{{Num: 3, Desc: "d1", Kind: image.FDFIFO, Path: filepath.Join(dir, "fifo"), PipeID: "fifo:1:2",
				Mode: unix.S_IFIFO | 0o600, Flags: unix.O_RDONLY | unix.O_NONBLOCK, Buffered: []byte("queued")}},
			check: func(t *testing.T, files []Install) {
				s, err := readN(RawFD(files[0].File), 6)
				if s != "queued" || err != nil {
					t.Errorf("read FIFO = %q, %v; want queued", s, err)
				}
			},
		},
		{
			name: "memfd from an object file",
			fds: []image.FD{{Num: 3, Desc: "d1", Kind: image.FDMemfd, Path: "/memfd:obj", FileID: "obj:1:2", Size: 11,
				Mode: unix.S_IFREG | 0o644, Flags: unix.O_RDWR, Offset: 6, Rdev: unix.F_SEAL_WRITE}},
			check: func(t *testing.T, files []Install) {
				fd := RawFD(files[0].File)
				s, _ := readN(fd, 64)
				seals, _ := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
				if _, err := unix.Write(fd, []byte("x")); err != unix.EPERM {
					t.Errorf("write to F_SEAL_WRITE memfd: %v, want EPERM", err)
				}
				if s != "memfd" || seals != unix.F_SEAL_WRITE {
					t.Errorf("memfd read %q seals %#x, want \"memfd\" and F_SEAL_WRITE", s, seals)
				}
			},
		},
		{
			name: "eventfd with a count beyond 32 bits",
			fds:  []image.FD{{Num: 3, Desc: "d1", Kind: image.FDEventfd, EventfdCount: 1 << 40}},
			check: func(t *testing.T, files []Install) {
				s, _ := readN(RawFD(files[0].File), 8)
				if len(s) != 8 || binary.NativeEndian.Uint64([]byte(s)) != 1<<40 {
					t.Errorf("eventfd read %x, want 1<<40", s)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.name == "pipe beyond pipe-max-size" && tooBig == 0 {
				t.Skip("pipe-max-size is large here")
			}
			procs := []*image.Process{{PID: 1, FDs: tt.fds}}
			r := NewRestorer(testLogger(t), procs, nil, nil, map[string]*os.File{"obj:1:2": obj})
			defer r.Close()
			err := r.Prepare()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Prepare() = %v, want error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Prepare() = %v", err)
			}
			tt.check(t, r.Files(1))
		})
	}
}
