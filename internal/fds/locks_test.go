package fds

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/image"
)

// waitExit waits until pid (a child of the test, not reaped) has exited,
// so that its locks are released.
func waitExit(t *testing.T, pid int) {
	t.Helper()
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open(%d): %v", pid, err)
	}
	defer unix.Close(pidfd)
	unix.Kill(pid, unix.SIGKILL)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != unix.EINTR {
			if err != nil {
				t.Fatalf("poll pidfd: %v", err)
			}
			return
		}
	}
}

// TestLocks dumps a child holding flock, OFD and POSIX locks, kills it,
// restores its fds into the test process and has a separate process
// probe that the locks are held again.
func TestLocks(t *testing.T) {
	dir := t.TempDir()
	pid := startChild(t, "locks", dir, nil)[0]
	if err := Check(pid); err != nil {
		t.Fatalf("Check(locks child) = %v, want nil", err)
	}
	d := NewDumper(testLogger(t))
	defer d.Close()
	procs := dumpTree(t, d, []int{pid})
	recs := records(procs, procs[0])

	posix := func(typ string, start, length int64) image.FileLock {
		return image.FileLock{Kind: image.LockPOSIX, Type: typ, Start: start, Length: length, PID: pid}
	}
	ofd := func(typ string, start, length int64) image.FileLock {
		return image.FileLock{Kind: image.LockOFD, Type: typ, Start: start, Length: length, PID: -1}
	}
	for _, tt := range []struct {
		num  int
		want []image.FileLock
	}{
		{100, []image.FileLock{{Kind: image.LockFlock, Type: image.LockWrite, PID: pid}}},
		{101, []image.FileLock{posix(image.LockWrite, 100, 100), posix(image.LockRead, 300, 0)}},
		{103, []image.FileLock{ofd(image.LockRead, 0, 10), ofd(image.LockWrite, 20, 10)}},
		{104, []image.FileLock{{Kind: image.LockFlock, Type: image.LockRead, PID: pid}}},
	} {
		got := slices.SortedFunc(slices.Values(recs[tt.num].Locks), func(a, b image.FileLock) int { return int(a.Start - b.Start) })
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("fd %d: Locks = %+v, want %+v", tt.num, got, tt.want)
		}
	}
	// fdinfo shows 101's POSIX locks on its dup 102 too; they are
	// recorded once per process and inode, so the bare reference has none.
	for _, fd := range procs[0].FDs {
		if fd.Num == 102 && (fd.Kind != "" || len(fd.Locks) != 0) {
			t.Errorf("fd 102 = %+v, want a bare reference without locks", fd)
		}
	}

	// As after a dump: ferry's duplicates and the checkpointed process
	// are gone, and with them the locks.
	d.Close()
	waitExit(t, pid)
	r := NewRestorer(testLogger(t), procs, nil, nil, nil)
	defer r.Close()
	if err := r.Prepare(); err != nil {
		t.Fatalf("Prepare: %v", err)
	}
	install(t, r, pid)
	inj := newLocalInjector(t)
	if err := r.Finish(pid, inj); err != nil {
		t.Fatalf("Finish: %v", err)
	}
	var setlk []string
	for _, c := range inj.calls {
		if strings.HasPrefix(c, strconv.Itoa(unix.SYS_FCNTL)+"[") {
			setlk = append(setlk, c)
		}
	}
	if len(setlk) != 2 {
		t.Errorf("injected fcntl calls %v, want two F_SETLK", setlk)
	}

	// The POSIX locks now belong to the process Finish ran in: the test.
	self := os.Getpid()
	out, err := exec.Command(buildChild(t), "probe", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, out)
	}
	wantProbe := fmt.Sprintf(`flock.bin shared: busy
shared.bin exclusive: busy
shared.bin shared: free
posix.bin@150: write pid %d 100+100
posix.bin@250: none
posix.bin@1000: read pid %d 300+0
ofd.bin@5: read pid -1 0+10
ofd.bin@15: none
ofd.bin@25: write pid -1 20+10
`, self, self)
	if string(out) != wantProbe {
		t.Errorf("probe after restore:\n%s\nwant:\n%s", out, wantProbe)
	}

	// A second restore while these locks are held fails, naming the file,
	// the lock and its holder: in Prepare for the description's OFD lock
	// (flocks are taken by their takers, in Finish).
	r2 := NewRestorer(testLogger(t), procs, nil, nil, nil)
	defer r2.Close()
	err = r2.Prepare()
	for _, want := range []string{"fd 103", "ofd.bin", "ofd write lock on bytes 20-29", "held by an open file description", "OFDLCK WRITE 20-29"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("second Prepare() = %v, want an error containing %q", err, want)
		}
	}
}
