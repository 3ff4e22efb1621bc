package procfs

import (
	"errors"
	"io/fs"
	"os"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

// TestAllProcesses parses every process and fd on the machine: whatever the
// kernel prints must parse. Processes and fds that vanish meanwhile, and
// files the kernel refuses (EACCES for some kernel-owned tasks), are fine.
func TestAllProcesses(t *testing.T) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	gone := func(err error) bool {
		return err == nil || errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) ||
			errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM)
	}
	var procs, fdinfos int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		procs++
		check := func(what string, err error) {
			if !gone(err) {
				t.Errorf("pid %d %s: %v", pid, what, err)
			}
		}
		_, err = Stat(pid)
		check("Stat", err)
		_, err = Status(pid)
		check("Status", err)
		_, err = Maps(pid)
		check("Maps", err)
		_, err = Smaps(pid)
		check("Smaps", err)
		_, err = Timers(pid)
		check("Timers", err)
		_, err = Children(pid)
		check("Children", err)
		_, err = Personality(pid)
		check("Personality", err)
		_, err = Auxv(pid)
		check("Auxv", err)
		tids, err := Tasks(pid)
		check("Tasks", err)
		for _, tid := range tids {
			_, err = TaskStat(pid, tid)
			check("TaskStat", err)
			_, err = TaskStatus(pid, tid)
			check("TaskStatus", err)
		}
		fds, err := FDs(pid)
		check("FDs", err)
		for _, fd := range fds {
			_, err = FDInfo(pid, fd)
			check("FDInfo "+strconv.Itoa(fd), err)
			fdinfos++
		}
	}
	t.Logf("%d processes, %d fds", procs, fdinfos)
}
