package procfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary act as a child that blocks until its
// stdin closes (see TestMain).
const helperEnv = "FERRY_PROCFS_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "block" {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	code := m.Run()
	helperProg.Remove()
	os.Exit(code)
}

// mapping returns the mapping of ms that contains addr.
func mapping(t *testing.T, ms []Mapping, addr uint64) Mapping {
	t.Helper()
	for _, m := range ms {
		if m.Start <= addr && addr < m.End {
			return m
		}
	}
	t.Fatalf("no mapping contains %#x", addr)
	return Mapping{}
}

// Auxiliary vector keys (include/uapi/linux/auxvec.h, asm/auxvec.h).
const (
	atPagesz      = 6
	atSysinfoEhdr = 33
)

func addrOf(b []byte) uint64 { return uint64(reflect.ValueOf(b).Pointer()) }

func TestMapsSelf(t *testing.T) {
	pid := os.Getpid()
	page := PageSize()

	// A shared mapping of an unlinked file whose name has spaces and ") (".
	path := filepath.Join(t.TempDir(), "a b) (c")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(int64(3 * page)); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	fileMem, err := unix.Mmap(int(f.Fd()), int64(page), 2*page, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(fileMem)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}

	anon, err := unix.Mmap(-1, 0, 3*page, unix.PROT_READ|unix.PROT_EXEC, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(anon)
	none, err := unix.Mmap(-1, 0, page, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(none)

	ms, err := Maps(pid)
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i < len(ms); i++ {
		if ms[i].Start < ms[i-1].End {
			t.Errorf("mappings %d and %d overlap or are out of order: %+v %+v", i-1, i, ms[i-1], ms[i])
		}
	}

	fm := mapping(t, ms, addrOf(fileMem))
	want := Mapping{Start: addrOf(fileMem), End: addrOf(fileMem) + uint64(2*page), Read: true, Shared: true,
		Prot: unix.PROT_READ, Offset: uint64(page), Dev: st.Dev, Inode: st.Ino,
		Path: strings.TrimSuffix(path, ""), Deleted: true}
	if fm != want {
		t.Errorf("file mapping = %+v, want %+v", fm, want)
	}
	if fm.Anonymous() || fm.SharedAnon() || fm.Special() {
		t.Errorf("file mapping classified wrongly")
	}
	// map_files reaches the unlinked file.
	var mst unix.Stat_t
	if err := unix.Stat(MapFilesPath(pid, fm.Start, fm.End), &mst); err != nil {
		t.Errorf("stat map_files: %v", err)
	} else if mst.Ino != st.Ino || mst.Dev != st.Dev {
		t.Errorf("map_files inode %d dev %#x, want %d %#x", mst.Ino, mst.Dev, st.Ino, st.Dev)
	}

	am := mapping(t, ms, addrOf(anon))
	if am.Start > addrOf(anon) || am.End < addrOf(anon)+uint64(3*page) || am.Prot != unix.PROT_READ|unix.PROT_EXEC ||
		!am.Read || am.Write || !am.Exec || am.Shared || !am.Anonymous() || am.Path != "" || am.Name != "" {
		t.Errorf("anon mapping = %+v", am)
	}
	if nm := mapping(t, ms, addrOf(none)); nm.Prot != 0 || nm.Read || nm.Write || nm.Exec {
		t.Errorf("PROT_NONE mapping = %+v", nm)
	}

	names := map[string]bool{}
	for _, m := range ms {
		if m.Name != "" {
			names[m.Name] = true
		}
	}
	for _, n := range []string{"[stack]", "[vdso]", "[vvar]"} {
		if !names[n] {
			t.Errorf("no %s mapping in %v", n, names)
		}
	}

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var sawExe bool
	for _, m := range ms {
		if m.Path == exe {
			sawExe = true
		}
	}
	if !sawExe {
		t.Errorf("no mapping of %s", exe)
	}
}

func TestSmapsSelf(t *testing.T) {
	page := PageSize()
	mem, err := unix.Mmap(-1, 0, 4*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	if err := unix.Madvise(mem, unix.MADV_DONTDUMP); err != nil {
		t.Fatal(err)
	}
	mem[0], mem[2*page] = 1, 1

	sm, err := Smaps(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, m := range sm {
		if m.Start == addrOf(mem) {
			found = true
			if m.Size != uint64(4*page) || m.Rss != uint64(2*page) || m.Anonymous != uint64(2*page) {
				t.Errorf("Size %d Rss %d Anonymous %d, want %d %d %d", m.Size, m.Rss, m.Anonymous, 4*page, 2*page, 2*page)
			}
			for _, f := range []string{"rd", "wr", "dd"} {
				if !m.HasVmFlag(f) {
					t.Errorf("VmFlags %q lack %q", m.VmFlags, f)
				}
			}
		}
		if m.Name == "[stack]" && !m.HasVmFlag("gd") {
			t.Errorf("[stack] VmFlags %q lack gd", m.VmFlags)
		}
	}
	if !found {
		t.Errorf("no smaps entry at %#x", addrOf(mem))
	}
}

func TestStatSelf(t *testing.T) {
	runtime.LockOSThread() // so that Gettid names the thread reading its own stat
	defer runtime.UnlockOSThread()
	pid := os.Getpid()
	s, err := Stat(pid)
	if err != nil {
		t.Fatal(err)
	}
	// The state is the leader thread's, which need not be the one running.
	if s.PID != pid || s.PPID != os.Getppid() || !strings.ContainsRune("RS", rune(s.State)) || s.PGRP != unix.Getpgrp() || s.NumThreads < 1 {
		t.Errorf("Stat = %+v", s)
	}
	if s.ExitSignal != int(unix.SIGCHLD) {
		t.Errorf("ExitSignal = %d, want SIGCHLD", s.ExitSignal)
	}
	sid, _ := unix.Getsid(0)
	if s.Session != sid {
		t.Errorf("Session = %d, want %d", s.Session, sid)
	}
	// The mm fields bracket what they describe.
	if !(s.StartCode < s.EndCode && s.ArgStart < s.ArgEnd && s.ArgEnd <= s.EnvStart && s.EnvStart < s.EnvEnd && s.StartStack != 0) {
		t.Errorf("mm fields implausible: %+v", s)
	}
	comm, err := Comm(pid)
	if err != nil {
		t.Fatal(err)
	}
	if s.Comm != comm {
		t.Errorf("Stat comm %q, Comm %q", s.Comm, comm)
	}

	tids, err := Tasks(pid)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tids, pid) || !slices.Contains(tids, unix.Gettid()) || len(tids) < 2 {
		t.Errorf("Tasks = %v (pid %d, tid %d)", tids, pid, unix.Gettid())
	}
	ts, err := TaskStat(pid, unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	if ts.PID != unix.Gettid() || ts.State != 'R' {
		t.Errorf("TaskStat = %+v", ts)
	}
}

func TestStatusSelf(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	pid := os.Getpid()
	s, err := Status(pid)
	if err != nil {
		t.Fatal(err)
	}
	comm, _ := Comm(pid)
	if s.Name != comm || s.Tgid != pid || s.PID != pid || s.PPID != os.Getppid() || s.TracerPID != 0 {
		t.Errorf("Status = %+v", s)
	}
	if s.UID != [4]int{os.Getuid(), os.Geteuid(), os.Getuid(), os.Getuid()} || s.GID[0] != os.Getgid() {
		t.Errorf("UID %v GID %v", s.UID, s.GID)
	}
	if len(s.NSpid) < 1 || s.NSpid[0] != pid || s.NStgid[0] != pid {
		t.Errorf("NSpid %v NStgid %v", s.NSpid, s.NStgid)
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_SIGPENDING, &rl); err != nil {
		t.Fatal(err)
	}
	if s.SigQueueLimit != rl.Cur {
		t.Errorf("SigQueueLimit %d, want RLIMIT_SIGPENDING %d", s.SigQueueLimit, rl.Cur)
	}
	// The Go runtime catches SIGURG for preemption.
	if s.SigCgt&(1<<(unix.SIGURG-1)) == 0 {
		t.Errorf("SigCgt %#x lacks SIGURG", s.SigCgt)
	}
	if s.Threads < 2 {
		t.Errorf("Threads = %d", s.Threads)
	}
	if s.VmRSS == 0 {
		t.Errorf("VmRSS = 0 for a running test binary")
	}
	old := unix.Umask(0o037)
	defer unix.Umask(old)
	ts, err := TaskStatus(pid, unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	if ts.Umask != 0o037 || ts.PID != unix.Gettid() || ts.Tgid != pid {
		t.Errorf("TaskStatus Umask %#o PID %d Tgid %d", ts.Umask, ts.PID, ts.Tgid)
	}
}

func TestFDInfoSelf(t *testing.T) {
	pid := os.Getpid()
	efd, err := unix.Eventfd(42, unix.EFD_SEMAPHORE|unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(tfd)
	its := unix.ItimerSpec{Interval: unix.Timespec{Sec: 3, Nsec: 500}, Value: unix.Timespec{Sec: 100, Nsec: 7}}
	if err := unix.TimerfdSettime(tfd, 0, &its, nil); err != nil {
		t.Fatal(err)
	}
	mask := unix.Sigset_t{Val: [16]uint64{1<<(unix.SIGUSR1-1) | 1<<(36-1)}}
	sfd, err := unix.Signalfd(-1, &mask, unix.SFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sfd)
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(ep)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: 0x11223344, Pad: 0x55667788}
	if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, efd, &ev); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(in)
	wd, err := unix.InotifyAddWatch(in, dir, unix.IN_CREATE|unix.IN_DELETE)
	if err != nil {
		t.Fatal(err)
	}
	var dst unix.Stat_t
	if err := unix.Stat(dir, &dst); err != nil {
		t.Fatal(err)
	}

	fds, err := FDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range []int{0, 1, 2, efd, tfd, sfd, ep, in} {
		if !slices.Contains(fds, fd) {
			t.Errorf("FDs = %v, lacks %d", fds, fd)
		}
	}
	links := map[int]string{efd: "anon_inode:[eventfd]", tfd: "anon_inode:[timerfd]", sfd: "anon_inode:[signalfd]",
		ep: "anon_inode:[eventpoll]", in: "anon_inode:inotify"}
	for fd, want := range links {
		if got, err := FDLink(pid, fd); err != nil || got != want {
			t.Errorf("FDLink(%d) = %q, %v, want %q", fd, got, err, want)
		}
	}

	fi, err := FDInfo(pid, efd)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Eventfd == nil || fi.Eventfd.Count != 42 || !fi.Eventfd.Semaphore {
		t.Errorf("eventfd: %+v", fi.Eventfd)
	}
	if want := unix.O_RDWR | unix.O_NONBLOCK | unix.O_CLOEXEC; fi.Flags != want {
		t.Errorf("eventfd flags %#o, want %#o", fi.Flags, want)
	}

	fi, err = FDInfo(pid, tfd)
	if err != nil {
		t.Fatal(err)
	}
	if tf := fi.Timerfd; tf == nil || tf.ClockID != unix.CLOCK_MONOTONIC || tf.Interval != its.Interval ||
		tf.Value.Sec < 90 || tf.Value.Sec > 100 || tf.Ticks != 0 {
		t.Errorf("timerfd: %+v", tf)
	}

	fi, err = FDInfo(pid, sfd)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Signalfd == nil || fi.Signalfd.Sigmask != mask.Val[0] {
		t.Errorf("signalfd: %+v, want %#x", fi.Signalfd, mask.Val[0])
	}

	fi, err = FDInfo(pid, ep)
	if err != nil {
		t.Fatal(err)
	}
	var est unix.Stat_t
	if err := unix.Fstat(efd, &est); err != nil {
		t.Fatal(err)
	}
	if len(fi.Epoll) != 1 {
		t.Fatalf("epoll targets %+v", fi.Epoll)
	}
	et := fi.Epoll[0]
	// The kernel adds EPOLLERR|EPOLLHUP to every registration.
	wantEv := uint32(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP) | 1<<31
	if et.FD != efd || et.Events != wantEv || et.Data != 0x5566778811223344 || et.Ino != est.Ino || et.Dev != est.Dev {
		t.Errorf("epoll target %+v, want fd %d events %#x ino %d dev %#x", et, efd, wantEv, est.Ino, est.Dev)
	}

	fi, err = FDInfo(pid, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(fi.Inotify) != 1 {
		t.Fatalf("inotify watches %+v", fi.Inotify)
	}
	if w := fi.Inotify[0]; w.WD != wd || w.Ino != dst.Ino || w.Dev != dst.Dev || w.Mask&(unix.IN_CREATE|unix.IN_DELETE) != unix.IN_CREATE|unix.IN_DELETE {
		t.Errorf("inotify watch %+v, want wd %d ino %d dev %#x", w, wd, dst.Ino, dst.Dev)
	}

	// A regular file: position and flags.
	f, err := os.OpenFile(filepath.Join(dir, "f"), os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("hello"); err != nil {
		t.Fatal(err)
	}
	fi, err = FDInfo(pid, int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	var fst unix.Stat_t
	unix.Fstat(int(f.Fd()), &fst)
	if want := unix.O_RDWR | unix.O_APPEND | unix.O_CLOEXEC | OLargefile; fi.Pos != 5 || fi.Flags != want || fi.Ino != fst.Ino || fi.MntID == 0 {
		t.Errorf("file fdinfo %+v, want pos 5 flags %#o ino %d", fi, want, fst.Ino)
	}
	if link, err := FDLink(pid, int(f.Fd())); err != nil || link != f.Name() {
		t.Errorf("FDLink = %q, %v, want %q", link, err, f.Name())
	}
}

func TestSmallFilesSelf(t *testing.T) {
	pid := os.Getpid()
	exe, _ := os.Executable()
	if got, err := Exe(pid); err != nil || got != exe {
		t.Errorf("Exe = %q, %v, want %q", got, err, exe)
	}
	wd, _ := os.Getwd()
	if got, err := Cwd(pid); err != nil || got != wd {
		t.Errorf("Cwd = %q, %v, want %q", got, err, wd)
	}
	if got, err := Root(pid); err != nil || got != "/" {
		t.Errorf("Root = %q, %v", got, err)
	}
	comm, err := Comm(pid)
	if err != nil || comm == "" || !strings.HasPrefix(filepath.Base(exe), comm) {
		t.Errorf("Comm = %q, %v (exe %s)", comm, err, exe)
	}
	if got, err := TaskComm(pid, pid); err != nil || got != comm {
		t.Errorf("TaskComm = %q, %v, want %q", got, err, comm)
	}
	if p, err := Personality(pid); err != nil || p != 0 {
		t.Errorf("Personality = %#x, %v", p, err)
	}
	if raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid)); err != nil {
		t.Error(err)
	} else if got, err := OOMScoreAdj(pid); err != nil || strconv.Itoa(got) != strings.TrimSpace(string(raw)) {
		t.Errorf("OOMScoreAdj = %d, %v; file says %q", got, err, raw)
	}

	auxv, err := Auxv(pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(auxv) < 4 || len(auxv)%2 != 0 || auxv[len(auxv)-2] != 0 {
		t.Fatalf("auxv %v does not end with AT_NULL", auxv)
	}
	av := map[uint64]uint64{}
	for i := 0; i+1 < len(auxv); i += 2 {
		av[auxv[i]] = auxv[i+1]
	}
	if av[atPagesz] != uint64(PageSize()) {
		t.Errorf("AT_PAGESZ = %d", av[atPagesz])
	}
	ms, err := Maps(pid)
	if err != nil {
		t.Fatal(err)
	}
	if m := mapping(t, ms, av[atSysinfoEhdr]); m.Name != "[vdso]" || m.Start != av[atSysinfoEhdr] {
		t.Errorf("AT_SYSINFO_EHDR %#x is in %+v, want [vdso]", av[atSysinfoEhdr], m)
	}

	rls, err := Rlimits(pid)
	if err != nil {
		t.Fatal(err)
	}
	if len(rls) != NumRlimits {
		t.Fatalf("%d rlimits", len(rls))
	}
	for r, rl := range rls {
		var want unix.Rlimit
		if err := unix.Getrlimit(r, &want); err != nil {
			t.Fatal(err)
		}
		if rl.Resource != r || rl.Cur != want.Cur || rl.Max != want.Max {
			t.Errorf("Rlimits[%d] = %+v, want %+v", r, rl, want)
		}
	}

	rel, err := KernelRelease()
	if err != nil {
		t.Fatal(err)
	}
	osrel, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	if rel != string(bytes.TrimSpace(osrel)) {
		t.Errorf("KernelRelease = %q, want %q", rel, osrel)
	}
	if PageSize() != 4096 {
		t.Errorf("PageSize = %d", PageSize())
	}
}

// TestChildren starts helpers from several goroutines: Go forks from
// whichever thread runs the goroutine, so the children hang off different
// threads' children files.
func TestChildren(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const n = 4
	var pids []int
	for range n {
		cmd := exec.Command(exe)
		cmd.Env = append(os.Environ(), helperEnv+"=block")
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			stdin.Close()
			cmd.Wait()
		})
		pids = append(pids, cmd.Process.Pid)
	}
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pids {
		if !slices.Contains(kids, p) {
			t.Errorf("Children = %v, lacks %d", kids, p)
		}
	}
}

// TestLocksSelf takes a flock and an OFD lock and finds them in fdinfo
// and in /proc/locks with the file's device and inode.
func TestLocksSelf(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "lock")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	g, err := os.Open(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	ofd := unix.Flock_t{Type: unix.F_RDLCK, Whence: io.SeekStart, Start: 10, Len: 5}
	if err := unix.FcntlFlock(g.Fd(), unix.F_OFD_SETLK, &ofd); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	dev := fmt.Sprintf("%02x:%02x", unix.Major(st.Dev), unix.Minor(st.Dev))
	pid := os.Getpid()
	wantFlock := Lock{Kind: "FLOCK", Mode: "ADVISORY", Type: "WRITE", PID: pid, Dev: dev, Ino: st.Ino, End: -1}
	wantOFD := Lock{Kind: "OFDLCK", Mode: "ADVISORY", Type: "READ", PID: -1, Dev: dev, Ino: st.Ino, Start: 10, End: 14}

	for _, tt := range []struct {
		fd   uintptr
		want Lock
	}{{f.Fd(), wantFlock}, {g.Fd(), wantOFD}} {
		fi, err := FDInfo(pid, int(tt.fd))
		if err != nil {
			t.Fatal(err)
		}
		if len(fi.Locks) != 1 || fi.Locks[0] != tt.want {
			t.Errorf("FDInfo(%d).Locks = %+v, want [%+v]", tt.fd, fi.Locks, tt.want)
		}
	}
	all, err := Locks()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []Lock{wantFlock, wantOFD} {
		if !slices.Contains(all, want) {
			t.Errorf("Locks() = %+v, lacks %+v", all, want)
		}
	}
}

// TestNetSelf listens on a TCP port and a unix socket and finds both by
// inode in this process's /proc/PID/net tables; it reads btime too.
func TestNetSelf(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	path := filepath.Join(t.TempDir(), "s p.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	inode := func(l net.Listener) uint64 {
		f, err := l.(interface{ File() (*os.File, error) }).File()
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return st.Ino
	}
	pid := os.Getpid()
	tcp, err := NetInet(pid, "tcp")
	if err != nil {
		t.Fatal(err)
	}
	want := InetSocket{Local: ln.Addr().(*net.TCPAddr).AddrPort(), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: TCPListen, Inode: inode(ln)}
	if !slices.Contains(tcp, want) {
		t.Errorf("NetInet(tcp) = %+v, lacks %+v", tcp, want)
	}
	us, err := NetUnix(pid)
	if err != nil {
		t.Fatal(err)
	}
	wantU := UnixSocket{Flags: UnixAcceptCon, Type: unix.SOCK_STREAM, State: 1, Inode: inode(ul), Path: path}
	if !slices.Contains(us, wantU) {
		t.Errorf("NetUnix lacks %+v", wantU)
	}
	bt, err := BootTime()
	if err != nil || bt <= 0 || bt > time.Now().Unix() {
		t.Errorf("BootTime() = %d, %v; want a time in the past", bt, err)
	}
}

func TestMissingProcess(t *testing.T) {
	// Start and reap a child to get a pid that is (almost certainly) free.
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Skip("no /bin/true:", err)
	}
	pid := cmd.Process.Pid
	if _, err := os.Stat(pidPath(pid, "")); err == nil {
		t.Skip("pid reused")
	}
	checks := map[string]error{}
	_, checks["Maps"] = Maps(pid)
	_, checks["Stat"] = Stat(pid)
	_, checks["Status"] = Status(pid)
	_, checks["FDs"] = FDs(pid)
	_, checks["Exe"] = Exe(pid)
	_, checks["Timers"] = Timers(pid)
	_, checks["OpenPagemap"] = OpenPagemap(pid)
	for name, err := range checks {
		if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "procfs: ") || !strings.Contains(err.Error(), pidPath(pid, "")) {
			t.Errorf("%s(dead pid) error = %v, want fs.ErrNotExist naming the file", name, err)
		}
	}
	if _, err := Rlimits(pid); !errors.Is(err, unix.ESRCH) {
		t.Errorf("Rlimits(dead pid) error = %v, want ESRCH", err)
	}
}

func TestPagemapSelf(t *testing.T) {
	page := PageSize()
	mem, err := unix.Mmap(-1, 0, 4*page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	mem[0], mem[2*page] = 1, 1

	f, err := os.Create(filepath.Join(t.TempDir(), "shared"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(int64(page))
	fmem, err := unix.Mmap(int(f.Fd()), 0, page, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(fmem)
	fmem[0] = 1

	start := addrOf(mem)
	es, err := ReadPagemap(os.Getpid(), start, start+uint64(4*page))
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{true, false, true, false}
	for i, e := range es {
		if Present(e) != want[i] {
			t.Errorf("page %d: entry %#x, present %v, want %v", i, e, Present(e), want[i])
		}
		if IsFileOrShared(e) || Swapped(e) {
			t.Errorf("page %d: entry %#x has file/swap bits", i, e)
		}
	}
	if !Exclusive(es[0]) || PFN(es[0]) == 0 {
		t.Errorf("touched anon page: entry %#x, want exclusive with a PFN (as root)", es[0])
	}

	pm, err := OpenPagemap(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	fs, err := pm.Read(addrOf(fmem), addrOf(fmem)+uint64(page), es) // reuses es
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || !Present(fs[0]) || !IsFileOrShared(fs[0]) || &fs[0] != &es[0] {
		t.Errorf("shared file page: %#x (len %d)", fs, len(fs))
	}
	if _, err := pm.Read(start+1, start+uint64(page), nil); !errors.Is(err, os.ErrInvalid) {
		t.Errorf("unaligned Read error = %v, want ErrInvalid", err)
	}
	if got, err := pm.Read(start, start, nil); err != nil || len(got) != 0 {
		t.Errorf("empty Read = %v, %v", got, err)
	}
}

// TestPagemapGiB reads the entries of a 1 GiB reservation (262144 of them,
// 2 MiB of pagemap) in one call.
func TestPagemapGiB(t *testing.T) {
	const size = 1 << 30
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)
	pm, err := OpenPagemap(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	t0 := time.Now()
	es, err := pm.Read(addrOf(mem), addrOf(mem)+size, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1 GiB of pagemap entries in %v", time.Since(t0))
	if len(es) != size/PageSize() {
		t.Fatalf("%d entries", len(es))
	}
	for i, e := range es {
		if e != 0 {
			t.Fatalf("entry %d = %#x, want 0 for an untouched PROT_NONE page", i, e)
		}
	}
}
