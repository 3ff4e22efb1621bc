package kernel

import (
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// CPU-time clock ids (include/linux/posix-timers.h): a negative id names a
// process or thread, ~pid<<3, with the thread bit and the kind of time.
const cpuclockPerthread = 4

// SelfThreadClock reports whether a timer's clock id counts the CPU time
// of "the calling thread": CLOCK_THREAD_CPUTIME_ID, or a thread clock
// whose pid part is 0 (what the C library passes for it). Such a clock
// means the thread that called timer_create.
func SelfThreadClock(clk int) bool {
	if clk == unix.CLOCK_THREAD_CPUTIME_ID {
		return true
	}
	return clk < 0 && ^(clk>>3) == 0 && clk&cpuclockPerthread != 0
}

// SiginfoTimer returns the timer id of a POSIX timer's signal (si_code
// SI_TIMER), or ok false for any other siginfo.
func SiginfoTimer(si []byte) (id int, ok bool) {
	if len(si) < 16 || int32(binary.LittleEndian.Uint32(si[8:])) != siTimer {
		return 0, false
	}
	return int(int32(binary.LittleEndian.Uint32(si[12:]))), true
}

const siTimer = -2 // SI_TIMER

// sigev_notify values (include/uapi/asm-generic/siginfo.h).
const (
	SIGEV_NONE      = 1
	SIGEV_THREAD_ID = 4
)
