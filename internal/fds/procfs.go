package fds

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// deletedSuffix is what the kernel appends to the /proc link of a file
// whose name was removed.
const deletedSuffix = " (deleted)"

func fdPath(pid, num int) string { return fmt.Sprintf("/proc/%d/fd/%d", pid, num) }

// selfFDPath names one of ferry's own fds; opening it creates a new open
// file description of the same file (also for pipes, FIFOs, memfds and
// unlinked files).
func selfFDPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// listFDs returns pid's open fd numbers in increasing order.
func listFDs(pid int) ([]int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, fmt.Errorf("list fds of pid %d: %w", pid, err)
	}
	nums := make([]int, 0, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		nums = append(nums, n)
	}
	slices.Sort(nums)
	return nums, nil
}

// fdInfo is /proc/PID/fdinfo/N parsed.
type fdInfo struct {
	pos    int64
	flags  int // file status flags including O_CLOEXEC for this fd (octal in the file)
	fields map[string]string
	epoll  []epollEntry
	locks  []lockLine // "lock:" lines: the locks held through this fd
}

// epollEntry is one "tfd:" line of an epoll fdinfo.
type epollEntry struct {
	tfd    int
	events uint32
	data   uint64
	ino    uint64
	sdev   uint64 // the kernel's internal dev_t (MAJOR<<20 | MINOR)
}

func readFDInfo(pid, num int) (*fdInfo, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%d", pid, num))
	if err != nil {
		return nil, err
	}
	return parseFDInfo(string(data))
}

func parseFDInfo(text string) (*fdInfo, error) {
	fi := &fdInfo{fields: make(map[string]string)}
	for _, line := range strings.Split(text, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		switch key {
		case "tfd":
			e, err := parseEpollLine(line)
			if err != nil {
				return nil, err
			}
			fi.epoll = append(fi.epoll, e)
			continue
		case "lock":
			l, ok, err := parseLockLine(val)
			if err != nil {
				return nil, fmt.Errorf("fdinfo: %w", err)
			}
			if ok {
				fi.locks = append(fi.locks, l)
			}
			continue
		case "pos":
			p, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("fdinfo pos %q: %w", val, err)
			}
			fi.pos = p
		case "flags":
			f, err := strconv.ParseUint(val, 8, 32)
			if err != nil {
				return nil, fmt.Errorf("fdinfo flags %q: %w", val, err)
			}
			fi.flags = int(f)
		}
		if _, dup := fi.fields[key]; !dup {
			fi.fields[key] = val
		}
	}
	return fi, nil
}

// parseEpollLine parses
// "tfd:        3 events: 80000019 data:             1234  pos:0 ino:40e sdev:10"
// (fs/eventpoll.c, ep_show_fdinfo): tfd decimal, the rest hex.
func parseEpollLine(line string) (epollEntry, error) {
	var e epollEntry
	f := strings.Fields(line)
	var pairs [][2]string
	for i := 0; i < len(f); i++ {
		k, v, _ := strings.Cut(f[i], ":")
		if v == "" && i+1 < len(f) && !strings.Contains(f[i+1], ":") {
			v = f[i+1]
			i++
		}
		pairs = append(pairs, [2]string{k, v})
	}
	seen := 0
	for _, kv := range pairs {
		var err error
		switch kv[0] {
		case "tfd":
			e.tfd, err = strconv.Atoi(kv[1])
			seen++
		case "events":
			var v uint64
			v, err = strconv.ParseUint(kv[1], 16, 32)
			e.events = uint32(v)
			seen++
		case "data":
			e.data, err = strconv.ParseUint(kv[1], 16, 64)
			seen++
		case "ino":
			e.ino, err = strconv.ParseUint(kv[1], 16, 64)
		case "sdev":
			e.sdev, err = strconv.ParseUint(kv[1], 16, 64)
		}
		if err != nil {
			return e, fmt.Errorf("epoll fdinfo %q: %w", line, err)
		}
	}
	if seen != 3 {
		return e, fmt.Errorf("epoll fdinfo %q: missing fields", line)
	}
	return e, nil
}

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
