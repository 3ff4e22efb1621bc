package procfs

import "bytes"

// ProcStatus is /proc/PID/status or /proc/PID/task/TID/status. Signal masks
// have bit N-1 set for signal N. In a thread's file SigPnd and SigBlk are
// the thread's own; ShdPnd is the process-wide pending set.
type ProcStatus struct {
	Name      string // comm, with the kernel's escaping of '\n' and '\\' undone
	Umask     uint32
	State     byte // first letter of the State line, as in ProcStat.State
	Tgid      int
	Ngid      int
	PID       int
	PPID      int
	TracerPID int
	UID       [4]int // real, effective, saved, filesystem
	GID       [4]int
	FDSize    int
	Groups    []int

	// Namespace ids, outermost (the reader's namespace) first. One entry
	// each unless the task lives in a nested PID namespace.
	NStgid, NSpid, NSpgid, NSsid []int

	// VmRSS is the resident set size in KiB ("VmRSS: %8lu kB"); 0 for
	// a process without memory (a kernel thread, a zombie).
	VmRSS uint64

	Threads       int
	SigQueued     uint64 // SigQ: queued signals / RLIMIT_SIGPENDING
	SigQueueLimit uint64

	SigPnd, ShdPnd, SigBlk, SigIgn, SigCgt uint64
	CapInh, CapPrm, CapEff, CapBnd, CapAmb uint64

	NoNewPrivs     bool
	Seccomp        int // SECCOMP_MODE_*: 0 disabled, 1 strict, 2 filter
	SeccompFilters int
}

// Status reads /proc/PID/status.
func Status(pid int) (*ProcStatus, error) { return readStatus(pidPath(pid, "status")) }

// TaskStatus reads /proc/PID/task/TID/status.
func TaskStatus(pid, tid int) (*ProcStatus, error) {
	return readStatus(taskPath(pid, tid, "status"))
}

func readStatus(path string) (*ProcStatus, error) {
	s := new(ProcStatus)
	err := withFile(path, true, func(b []byte) error { return parseStatus(b, path, s) })
	if err != nil {
		return nil, err
	}
	return s, nil
}

func parseStatus(b []byte, path string, s *ProcStatus) error {
	seen := 0
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b = nextLine(b)
		key, val, ok := splitKey(line)
		if !ok {
			if len(line) == 0 {
				continue
			}
			return lineErr(path, n, "no key in %q", line)
		}
		var err error
		switch string(key) {
		case "Name":
			// Name is printed with tabs kept: use the text after the
			// single tab, not the trimmed value.
			raw := line[len(key)+1:]
			if len(raw) > 0 && raw[0] == '\t' {
				raw = raw[1:]
			}
			s.Name = unescapeName(raw)
			seen++
		case "Umask":
			var u uint64
			u, err = parseOctal(val)
			s.Umask = uint32(u)
		case "State":
			if len(val) == 0 {
				err = errSyntax
			} else {
				s.State = val[0]
			}
		case "Tgid":
			s.Tgid, err = atoi(val)
			seen++
		case "Ngid":
			s.Ngid, err = atoi(val)
		case "Pid":
			s.PID, err = atoi(val)
		case "PPid":
			s.PPID, err = atoi(val)
		case "TracerPid":
			s.TracerPID, err = atoi(val)
		case "Uid":
			err = parseIDs(val, s.UID[:])
		case "Gid":
			err = parseIDs(val, s.GID[:])
		case "FDSize":
			s.FDSize, err = atoi(val)
		case "Groups":
			s.Groups, err = parseIntList(val)
		case "NStgid":
			s.NStgid, err = parseIntList(val)
		case "NSpid":
			s.NSpid, err = parseIntList(val)
		case "NSpgid":
			s.NSpgid, err = parseIntList(val)
		case "NSsid":
			s.NSsid, err = parseIntList(val)
		case "VmRSS":
			s.VmRSS, err = parseKB(val)
		case "Threads":
			s.Threads, err = atoi(val)
		case "SigQ":
			i := bytes.IndexByte(val, '/')
			if i < 0 {
				err = errSyntax
				break
			}
			if s.SigQueued, err = parseUint(val[:i]); err == nil {
				s.SigQueueLimit, err = parseUint(val[i+1:])
			}
		case "SigPnd":
			s.SigPnd, err = parseHex(val)
		case "ShdPnd":
			s.ShdPnd, err = parseHex(val)
		case "SigBlk":
			s.SigBlk, err = parseHex(val)
		case "SigIgn":
			s.SigIgn, err = parseHex(val)
		case "SigCgt":
			s.SigCgt, err = parseHex(val)
		case "CapInh":
			s.CapInh, err = parseHex(val)
		case "CapPrm":
			s.CapPrm, err = parseHex(val)
		case "CapEff":
			s.CapEff, err = parseHex(val)
		case "CapBnd":
			s.CapBnd, err = parseHex(val)
		case "CapAmb":
			s.CapAmb, err = parseHex(val)
		case "NoNewPrivs":
			var v int
			v, err = atoi(val)
			s.NoNewPrivs = v != 0
		case "Seccomp":
			s.Seccomp, err = atoi(val)
		case "Seccomp_filters":
			s.SeccompFilters, err = atoi(val)
		}
		if err != nil {
			return lineErr(path, n, "bad %s value %q", key, val)
		}
	}
	if seen < 2 {
		return fileErr(path, "no Name or Tgid line")
	}
	return nil
}

// unescapeName undoes seq_escape_str(…, ESCAPE_SPACE|ESCAPE_SPECIAL, "\n\\")
// as used for the Name line: "\n" stands for a newline and "\\" for a
// backslash; nothing else is escaped.
func unescapeName(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b)
	}
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		if b[i] == '\\' && i+1 < len(b) {
			switch b[i+1] {
			case 'n':
				out = append(out, '\n')
				i++
				continue
			case '\\':
				out = append(out, '\\')
				i++
				continue
			}
		}
		out = append(out, b[i])
	}
	return string(out)
}

// parseKB parses the "%8lu kB" of the Vm* lines.
func parseKB(b []byte) (uint64, error) {
	v, unit := nextField(b)
	if string(trimSpace(unit)) != "kB" {
		return 0, errSyntax
	}
	return parseUint(v)
}

func atoi(b []byte) (int, error) {
	v, err := parseInt(b)
	return int(v), err
}

// parseIDs parses exactly len(dst) blank-separated decimal ids.
func parseIDs(b []byte, dst []int) error {
	for i := range dst {
		var f []byte
		f, b = nextField(b)
		v, err := parseInt(f)
		if err != nil {
			return err
		}
		dst[i] = int(v)
	}
	return nil
}

// parseIntList parses blank-separated decimal numbers; empty text gives nil.
func parseIntList(b []byte) ([]int, error) {
	var out []int
	for f, rest := nextField(b); len(f) > 0; f, rest = nextField(rest) {
		v, err := parseInt(f)
		if err != nil {
			return nil, err
		}
		out = append(out, int(v))
	}
	return out, nil
}
