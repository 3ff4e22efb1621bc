package procfs

import "bytes"

// sigev_notify values (include/uapi/asm-generic/siginfo.h).
const (
	SigevSignal   = 0 // SIGEV_SIGNAL
	SigevNone     = 1 // SIGEV_NONE
	SigevThread   = 2 // SIGEV_THREAD
	SigevThreadID = 4 // SIGEV_THREAD_ID
)

// PosixTimer is one timer_create(2) timer from /proc/PID/timers
// (kernel/time/posix-timers.c, show_timer):
//
//	ID: %d
//	signal: %d/%px
//	notify: %s/%s.%d
//	ClockID: %d
//
// The file does not show the timer's current setting or overrun: those
// take timer_gettime in the target.
type PosixTimer struct {
	ID         int
	Signal     int    // si_signo
	SigevValue uint64 // sigev_value as a pointer
	// SigevNotify is the sigev_notify the timer was created with, rebuilt
	// from the notify line: "signal"/"none"/"thread" give SigevSignal/
	// SigevNone/SigevThread, and "tid." instead of "pid." adds
	// SigevThreadID.
	SigevNotify int
	NotifyPID   int // the pid ("pid.N") or thread ("tid.N") signalled
	ClockID     int // CLOCK_*, or a negative CPU-clock id (e.g. -6 for CLOCK_PROCESS_CPUTIME_ID of the caller)
}

// Timers reads /proc/PID/timers. The kernel lists them newest first.
func Timers(pid int) ([]PosixTimer, error) {
	path := pidPath(pid, "timers")
	var out []PosixTimer
	err := withFile(path, false, func(b []byte) error {
		var err error
		out, err = parseTimers(b, path)
		return err
	})
	return out, err
}

func parseTimers(b []byte, path string) ([]PosixTimer, error) {
	var out []PosixTimer
	var cur *PosixTimer
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b = nextLine(b)
		if len(line) == 0 {
			continue
		}
		key, val, ok := splitKey(line)
		if !ok {
			return nil, lineErr(path, n, "no key in %q", line)
		}
		if string(key) == "ID" {
			out = append(out, PosixTimer{})
			cur = &out[len(out)-1]
		} else if cur == nil {
			return nil, lineErr(path, n, "%q before the first ID line", line)
		}
		var err error
		switch string(key) {
		case "ID":
			cur.ID, err = atoi(val)
		case "signal":
			i := bytes.IndexByte(val, '/')
			if i < 0 {
				err = errSyntax
				break
			}
			if cur.Signal, err = atoi(val[:i]); err == nil {
				cur.SigevValue, err = parseHex(val[i+1:])
			}
		case "notify":
			err = parseNotify(val, cur)
		case "ClockID":
			cur.ClockID, err = atoi(val)
		}
		if err != nil {
			return nil, lineErr(path, n, "bad %s value %q", key, val)
		}
	}
	return out, nil
}

// parseNotify parses "signal/pid.123", "none/tid.5", "thread/pid.9".
func parseNotify(b []byte, t *PosixTimer) error {
	slash := bytes.IndexByte(b, '/')
	if slash < 0 {
		return errSyntax
	}
	switch string(b[:slash]) {
	case "signal":
		t.SigevNotify = SigevSignal
	case "none":
		t.SigevNotify = SigevNone
	case "thread":
		t.SigevNotify = SigevThread
	default:
		return errSyntax
	}
	rest := b[slash+1:]
	switch {
	case bytes.HasPrefix(rest, []byte("pid.")):
	case bytes.HasPrefix(rest, []byte("tid.")):
		t.SigevNotify |= SigevThreadID
	default:
		return errSyntax
	}
	var err error
	t.NotifyPID, err = atoi(rest[4:])
	return err
}
