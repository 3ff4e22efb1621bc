package procfs

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ferry/internal/testutil"
)

// helperProg is testdata/helper.c, built once per test binary.
var helperProg = &testutil.CProgram{Src: "testdata/helper.c", Flags: []string{"-O1", "-Wall", "-Werror"}, After: []string{"-lpthread"}}

// helper is a running testdata/helper.c and what it reported.
type helper struct {
	cmd  *exec.Cmd
	pid  int
	dir  string
	vals map[string]uint64
}

// startHelper runs the helper and waits on its readiness pipe (fd 3) for
// the line describing what it set up.
func startHelper(t *testing.T) *helper {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(helperProg.Path(t), dir)
	cmd.Stderr = os.Stderr
	r := testutil.StartReady(t, cmd)
	h := &helper{cmd: cmd, pid: cmd.Process.Pid, dir: dir, vals: map[string]uint64{}}
	t.Cleanup(func() {
		// The helper's children die with it (PR_SET_PDEATHSIG), but kill
		// them directly too so nothing outlives the test.
		for _, k := range []string{"kid", "threadkid"} {
			if p, ok := h.vals[k]; ok {
				unix.Kill(int(p), unix.SIGKILL)
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
	})
	// One line, then EOF once the helper and its children closed fd 3.
	out, err := io.ReadAll(r)
	line, _, ok := strings.Cut(string(out), "\n")
	if err != nil || !ok {
		t.Fatalf("helper did not report ready: %q, %v", out, err)
	}
	for _, kv := range strings.Fields(line) {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("bad helper output %q", line)
		}
		base := 10
		switch k {
		case "file", "anon", "shanon", "xm":
			base = 16
		}
		n, err := strconv.ParseUint(v, base, 64)
		if err != nil {
			t.Fatalf("bad helper value %q: %v", kv, err)
		}
		h.vals[k] = n
	}
	return h
}

func (h *helper) int(k string) int { return int(h.vals[k]) }

// waitState polls the state letter of thread tid until it is want: after
// reporting ready a thread still has to reach its blocking call. There is
// no event for that, so this is a bounded poll, not a fixed sleep.
func waitState(t *testing.T, pid, tid int, want byte) *ProcStat {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := TaskStat(pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		if st.State == want || time.Now().After(deadline) {
			return st
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHelperMaps(t *testing.T) {
	h := startHelper(t)
	page := uint64(PageSize())
	ms, err := Maps(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	fm := mapping(t, ms, h.vals["file"])
	if want := filepath.Join(h.dir, "a file) (x"); fm.Path != want || !fm.Deleted || !fm.Shared || fm.Len() != 3*page {
		t.Errorf("file mapping %+v, want deleted shared %q", fm, want)
	}
	sm := mapping(t, ms, h.vals["shanon"])
	if !sm.SharedAnon() || sm.Anonymous() {
		t.Errorf("shared anon mapping %+v", sm)
	}
	xm := mapping(t, ms, h.vals["xm"])
	if xm.Prot != unix.PROT_READ|unix.PROT_EXEC || !xm.Anonymous() {
		t.Errorf("xm mapping %+v", xm)
	}
	var specials []string
	for _, m := range ms {
		if m.Special() {
			specials = append(specials, m.Name)
		}
	}
	for _, n := range []string{"[vdso]", "[vvar]", "[vsyscall]"} {
		if !slices.Contains(specials, n) {
			t.Errorf("specials %v lack %s", specials, n)
		}
	}

	sms, err := Smaps(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sms {
		if s.Start == xm.Start {
			if !s.HasVmFlag("dd") || !s.HasVmFlag("dc") || !s.HasVmFlag("ex") || s.HasVmFlag("wr") {
				t.Errorf("xm VmFlags %q, want dd dc ex and no wr", s.VmFlags)
			}
		}
		if s.Start == fm.Start && (!s.HasVmFlag("sh") || s.Rss != page) {
			t.Errorf("file mapping VmFlags %q Rss %d, want sh and one page", s.VmFlags, s.Rss)
		}
	}

	// Pagemap: anon pages 0 and 2 touched; file page 1 touched.
	pm, err := OpenPagemap(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	defer pm.Close()
	es, err := pm.Read(h.vals["anon"], h.vals["anon"]+4*page, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false, true, false} {
		if Present(es[i]) != want || IsFileOrShared(es[i]) {
			t.Errorf("anon page %d entry %#x, want present=%v private", i, es[i], want)
		}
	}
	es, err = pm.Read(h.vals["file"], h.vals["file"]+3*page, es)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{false, true, false} {
		if Present(es[i]) != want || (want && !IsFileOrShared(es[i])) {
			t.Errorf("file page %d entry %#x, want present=%v file", i, es[i], want)
		}
	}
	// The vsyscall page is above the user address space: no entries.
	vs := slices.IndexFunc(ms, func(m Mapping) bool { return m.Name == "[vsyscall]" })
	if _, err := pm.Read(ms[vs].Start, ms[vs].End, nil); err == nil {
		t.Errorf("pagemap of [vsyscall] read without error")
	}
}

func TestHelperTasks(t *testing.T) {
	h := startHelper(t)
	tid0, tid1 := h.int("tid0"), h.int("tid1")
	tids, err := Tasks(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{h.pid, tid0, tid1}; !slices.Equal(tids, want) {
		t.Errorf("Tasks = %v, want %v", tids, want)
	}

	names := map[int]string{h.pid: "m) (a:n", tid0: "wo) (rk", tid1: "a\\b\nc"}
	for tid, name := range names {
		if got, err := TaskComm(h.pid, tid); err != nil || got != name {
			t.Errorf("TaskComm(%d) = %q, %v, want %q", tid, got, err, name)
		}
		st := waitState(t, h.pid, tid, 'S')
		if st.PID != tid || st.Comm != name || st.State != 'S' {
			t.Errorf("TaskStat(%d) pid %d comm %q state %c", tid, st.PID, st.Comm, st.State)
		}
		if wantExit := -1; tid != h.pid && st.ExitSignal != wantExit {
			t.Errorf("TaskStat(%d).ExitSignal = %d, want -1 for a non-leader", tid, st.ExitSignal)
		}
		ss, err := TaskStatus(h.pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		if ss.Name != name || ss.PID != tid || ss.Tgid != h.pid {
			t.Errorf("TaskStatus(%d) name %q pid %d tgid %d", tid, ss.Name, ss.PID, ss.Tgid)
		}
	}
	if c, err := Comm(h.pid); err != nil || c != names[h.pid] {
		t.Errorf("Comm = %q, %v", c, err)
	}

	st, err := Stat(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	if st.PPID != os.Getpid() || st.NumThreads != 3 || st.ExitSignal != int(unix.SIGCHLD) || st.Comm != names[h.pid] {
		t.Errorf("Stat = %+v", st)
	}

	s, err := Status(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	sig := func(n ...int) (m uint64) {
		for _, x := range n {
			m |= 1 << (x - 1)
		}
		return m
	}
	if s.Umask != 0o027 || s.Threads != 3 || s.PPID != os.Getpid() {
		t.Errorf("Status umask %#o threads %d ppid %d", s.Umask, s.Threads, s.PPID)
	}
	if want := sig(int(unix.SIGUSR1), 36); s.SigBlk != want {
		t.Errorf("SigBlk = %#x, want %#x", s.SigBlk, want)
	}
	if s.SigIgn&sig(int(unix.SIGPIPE)) == 0 || s.SigCgt&sig(int(unix.SIGUSR2)) == 0 {
		t.Errorf("SigIgn %#x SigCgt %#x, want SIGPIPE ignored and SIGUSR2 caught", s.SigIgn, s.SigCgt)
	}
	// POSIX timers preallocate their signal: each counts as queued.
	if s.SigQueued < 3 {
		t.Errorf("SigQueued = %d, want >= 3 (one per timer)", s.SigQueued)
	}

	kids, err := Children(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	if want := []int{h.int("threadkid"), h.int("kid")}; !slices.Equal(kids, sorted(want)) {
		t.Errorf("Children = %v, want %v (one forked by a non-leader thread)", kids, sorted(want))
	}

	if p, err := Personality(h.pid); err != nil || p != 0x0040000 { // ADDR_NO_RANDOMIZE
		t.Errorf("Personality = %#x, %v", p, err)
	}
	rls, err := Rlimits(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	if rls[unix.RLIMIT_NOFILE].Cur != 123 {
		t.Errorf("RLIMIT_NOFILE = %+v, want cur 123", rls[unix.RLIMIT_NOFILE])
	}

	// Stopped: every thread reads 'T' once the group stop is reported.
	if err := unix.Kill(h.pid, unix.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(h.pid, &ws, unix.WUNTRACED, nil); err != nil || !ws.Stopped() {
		t.Fatalf("wait4: %v, status %#x", err, ws)
	}
	for _, tid := range tids {
		st, err := TaskStat(h.pid, tid)
		if err != nil {
			t.Fatal(err)
		}
		if st.State != 'T' {
			t.Errorf("stopped thread %d state %c, want T", tid, st.State)
		}
	}
	if s, err := Status(h.pid); err != nil || s.State != 'T' {
		t.Errorf("stopped Status state %c, %v", s.State, err)
	}
	unix.Kill(h.pid, unix.SIGCONT)
}

func sorted(s []int) []int {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func TestHelperFDs(t *testing.T) {
	h := startHelper(t)
	efd, tfd, sfd, ep, in := h.int("efd"), h.int("tfd"), h.int("sfd"), h.int("ep"), h.int("in")
	fds, err := FDs(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	// 0-2 and whatever the test binary inherited without O_CLOEXEC are
	// there too; 3, the readiness pipe, is closed.
	for _, fd := range []int{0, 1, 2, efd, tfd, sfd, ep, in, h.int("pr"), h.int("pw")} {
		if !slices.Contains(fds, fd) {
			t.Errorf("FDs = %v, lacks %d", fds, fd)
		}
	}
	if slices.Contains(fds, 3) {
		t.Errorf("FDs = %v, has the closed fd 3", fds)
	}
	if l, err := FDLink(h.pid, h.int("pr")); err != nil || !strings.HasPrefix(l, "pipe:[") {
		t.Errorf("FDLink(pipe) = %q, %v", l, err)
	}
	fi, err := FDInfo(h.pid, h.int("pw"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Flags != unix.O_WRONLY|unix.O_NONBLOCK {
		t.Errorf("pipe write end flags %#o", fi.Flags)
	}

	fi, err = FDInfo(h.pid, efd)
	if err != nil {
		t.Fatal(err)
	}
	if e := fi.Eventfd; e == nil || e.Count != 42 || !e.Semaphore || fi.Flags != unix.O_RDWR|unix.O_NONBLOCK {
		t.Errorf("eventfd %+v flags %#o", e, fi.Flags)
	}
	fi, err = FDInfo(h.pid, tfd)
	if err != nil {
		t.Fatal(err)
	}
	if tf := fi.Timerfd; tf == nil || tf.ClockID != unix.CLOCK_MONOTONIC || tf.Interval != (unix.Timespec{Sec: 3, Nsec: 500}) ||
		tf.Value.Sec > 100 || tf.Value.Sec < 90 || fi.Flags&unix.O_CLOEXEC == 0 {
		t.Errorf("timerfd %+v flags %#o", tf, fi.Flags)
	}
	fi, err = FDInfo(h.pid, sfd)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Signalfd == nil || fi.Signalfd.Sigmask != 1<<(unix.SIGUSR1-1)|1<<(36-1) {
		t.Errorf("signalfd %+v", fi.Signalfd)
	}
	fi, err = FDInfo(h.pid, ep)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]EpollTarget{}
	for _, e := range fi.Epoll {
		got[e.FD] = e
	}
	if e := got[efd]; len(got) != 2 || e.Data != 0x1122334455667788 || e.Events&(unix.EPOLLIN|1<<31) != unix.EPOLLIN|1<<31 {
		t.Errorf("epoll targets %+v", fi.Epoll)
	}
	if e := got[tfd]; e.Data != 7 || e.Events&unix.EPOLLOUT == 0 {
		t.Errorf("epoll timerfd target %+v", e)
	}
	fi, err = FDInfo(h.pid, in)
	if err != nil {
		t.Fatal(err)
	}
	if len(fi.Inotify) != 1 || fi.Inotify[0].WD != h.int("wd") || fi.Inotify[0].Mask&(unix.IN_CREATE|unix.IN_DELETE) == 0 {
		t.Errorf("inotify %+v", fi.Inotify)
	}
}

func TestHelperTimers(t *testing.T) {
	h := startHelper(t)
	ts, err := Timers(h.pid)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[int]PosixTimer{}
	for _, tm := range ts {
		byID[tm.ID] = tm
	}
	want := []PosixTimer{
		{ID: h.int("t0"), Signal: int(unix.SIGUSR2), SigevValue: 0xdeadbeef, SigevNotify: SigevSignal, NotifyPID: h.pid, ClockID: unix.CLOCK_REALTIME},
		{ID: h.int("t1"), Signal: 35, SigevValue: 7, SigevNotify: SigevThreadID, NotifyPID: h.int("tid1"), ClockID: unix.CLOCK_MONOTONIC},
		// SIGEV_NONE: the kernel still records (and shows) the signal fields.
		{ID: h.int("t2"), Signal: 35, SigevValue: 7, SigevNotify: SigevNone, NotifyPID: h.pid, ClockID: unix.CLOCK_BOOTTIME},
	}
	if len(ts) != len(want) {
		t.Fatalf("Timers = %+v, want %d", ts, len(want))
	}
	for _, w := range want {
		if got := byID[w.ID]; got != w {
			t.Errorf("timer %d = %+v, want %+v", w.ID, got, w)
		}
	}
}
