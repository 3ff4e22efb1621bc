package restore

import (
	"testing"

	"golang.org/x/sys/unix"

	"ferry/internal/kernel"
)

func neg(n int) uint64 { return uint64(-int64(n)) }

func TestFixRestart(t *testing.T) {
	const rip = 0x1000
	for _, tc := range []struct {
		name string
		in   kernel.PtraceRegs
		want kernel.PtraceRegs
	}{
		{"not in a syscall", kernel.PtraceRegs{Rax: 5, Orig_rax: ^uint64(0), Rip: rip},
			kernel.PtraceRegs{Rax: 5, Orig_rax: ^uint64(0), Rip: rip}},
		{"syscall finished", kernel.PtraceRegs{Rax: 3, Orig_rax: 0, Rip: rip},
			kernel.PtraceRegs{Rax: 3, Orig_rax: ^uint64(0), Rip: rip}},
		{"read ERESTARTSYS", kernel.PtraceRegs{Rax: neg(kernel.ERESTARTSYS), Orig_rax: 0, Rip: rip},
			kernel.PtraceRegs{Rax: 0, Orig_rax: ^uint64(0), Rip: rip - 2}},
		{"poll ERESTARTNOHAND", kernel.PtraceRegs{Rax: neg(kernel.ERESTARTNOHAND), Orig_rax: 7, Rip: rip},
			kernel.PtraceRegs{Rax: 7, Orig_rax: ^uint64(0), Rip: rip - 2}},
		{"relative clock_nanosleep sleeps the remainder",
			kernel.PtraceRegs{Rax: neg(kernel.ERESTART_RESTARTBLOCK), Orig_rax: kernel.SYS_CLOCK_NANOSLEEP, Rip: rip,
				Rdi: 1, Rsi: 0, Rdx: 0xa000, R10: 0xb000},
			kernel.PtraceRegs{Rax: kernel.SYS_CLOCK_NANOSLEEP, Orig_rax: ^uint64(0), Rip: rip - 2,
				Rdi: 1, Rsi: 0, Rdx: 0xb000, R10: 0xb000}},
		{"absolute clock_nanosleep restarts as is",
			kernel.PtraceRegs{Rax: neg(kernel.ERESTART_RESTARTBLOCK), Orig_rax: kernel.SYS_CLOCK_NANOSLEEP, Rip: rip,
				Rdi: 1, Rsi: unix.TIMER_ABSTIME, Rdx: 0xa000, R10: 0xb000},
			kernel.PtraceRegs{Rax: kernel.SYS_CLOCK_NANOSLEEP, Orig_rax: ^uint64(0), Rip: rip - 2,
				Rdi: 1, Rsi: unix.TIMER_ABSTIME, Rdx: 0xa000, R10: 0xb000}},
		{"nanosleep without rem restarts whole",
			kernel.PtraceRegs{Rax: neg(kernel.ERESTART_RESTARTBLOCK), Orig_rax: kernel.SYS_NANOSLEEP, Rip: rip, Rdi: 0xa000},
			kernel.PtraceRegs{Rax: kernel.SYS_NANOSLEEP, Orig_rax: ^uint64(0), Rip: rip - 2, Rdi: 0xa000}},
		{"restart_syscall of unknown origin reports EINTR",
			kernel.PtraceRegs{Rax: neg(kernel.ERESTART_RESTARTBLOCK), Orig_rax: kernel.SYS_RESTART_SYSCALL, Rip: rip},
			kernel.PtraceRegs{Rax: neg(int(unix.EINTR)), Orig_rax: ^uint64(0), Rip: rip}},
	} {
		got := tc.in
		fixRestart(&got)
		if got != tc.want {
			t.Errorf("%s: fixRestart(%+v)\n got %+v\nwant %+v", tc.name, tc.in, got, tc.want)
		}
	}
}
