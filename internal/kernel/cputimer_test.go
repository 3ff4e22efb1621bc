package kernel

import (
	"encoding/binary"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSelfThreadClock(t *testing.T) {
	for _, c := range []struct {
		clk  int
		want bool
	}{
		{unix.CLOCK_THREAD_CPUTIME_ID, true},
		{-2, true},            // glibc's CLOCK_THREAD_CPUTIME_ID: pid 0, thread, sched
		{-6, false},           // CLOCK_PROCESS_CPUTIME_ID: pid 0, process
		{^1234<<3 | 6, false}, // thread 1234's clock
		{unix.CLOCK_MONOTONIC, false},
		{unix.CLOCK_PROCESS_CPUTIME_ID, false},
	} {
		if got := SelfThreadClock(c.clk); got != c.want {
			t.Errorf("SelfThreadClock(%d) = %v, want %v", c.clk, got, c.want)
		}
	}
}

func TestSiginfoTimer(t *testing.T) {
	si := make([]byte, SiginfoSize)
	binary.LittleEndian.PutUint32(si[0:], 36)
	binary.LittleEndian.PutUint32(si[8:], uint32(0xfffffffe)) // SI_TIMER
	binary.LittleEndian.PutUint32(si[12:], 7)
	if id, ok := SiginfoTimer(si); !ok || id != 7 {
		t.Errorf("SiginfoTimer = %d %v, want 7 true", id, ok)
	}
	binary.LittleEndian.PutUint32(si[8:], uint32(0xffffffff)) // SI_QUEUE
	if _, ok := SiginfoTimer(si); ok {
		t.Error("SI_QUEUE taken for a timer signal")
	}
	if _, ok := SiginfoTimer(si[:10]); ok {
		t.Error("short siginfo taken for a timer signal")
	}
}
