package fds

import (
	"fmt"
	"os"
	"strconv"
)

// deletedSuffix is what the kernel appends to the /proc link of a file
// whose name was removed.
const deletedSuffix = " (deleted)"

func fdPath(pid, num int) string { return fmt.Sprintf("/proc/%d/fd/%d", pid, num) }

// selfFDPath names one of ferry's own fds; opening it creates a new open
// file description of the same file (also for pipes, FIFOs, memfds and
// unlinked files).
func selfFDPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// holder is one process fd that refers to a file.
type holder struct{ pid, num int }

// scanHolders walks /proc/*/fd of every process for which skip is false
// and returns, for each link text in wanted ("pipe:[123]", a FIFO path,
// "socket:[456]"), the first process fd found with that link. Processes
// and fds that vanish meanwhile are ignored.
func scanHolders(wanted map[string]bool, skip func(pid int) bool) map[string]holder {
	found := make(map[string]holder)
	if len(wanted) == 0 {
		return found
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return found
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || skip(pid) {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/fd/", pid)
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			link, err := os.Readlink(dir + e.Name())
			if err != nil || !wanted[link] {
				continue
			}
			if _, ok := found[link]; ok {
				continue
			}
			num, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			found[link] = holder{pid: pid, num: num}
			if len(found) == len(wanted) {
				return found
			}
		}
	}
	return found
}
