/*
 * zt_fown_pgrp: signal-driven I/O owned by a process group.
 *   fd 30/31: a pipe; read end 30 O_ASYNC, F_SETOWN -pgrp (our own group),
 *             F_SETSIG SIGRTMIN+3;
 *   fd 32/33: a socketpair; 32 O_ASYNC, F_SETOWN_EX F_OWNER_PGRP pgrp,
 *             plain SIGIO;
 *   fd 34/35: a pipe; read end 34 O_ASYNC, owner set and then reset to 0
 *             (no owner).
 * After restore F_GETOWN of 30 is -pgrp, F_GETOWN_EX of 30 and 32 is
 * {F_OWNER_PGRP, pgrp}, F_GETSIG of 30 is SIGRTMIN+3; writing 31 brings
 * SIGRTMIN+3 with si_fd 30, writing 33 brings SIGIO, and writing 35 brings
 * nothing (F_GETOWN 0).
 * Modelled on zdtm's file_fown (owner types of F_SETOWN).
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/socket.h>

static volatile int n_rt, n_io, rt_fd;

static void h(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGIO)
		n_io++;
	else {
		n_rt++;
		rt_fd = si->si_fd;
	}
}

static void setup(int fd, int owner_pgrp_ex, pid_t pg)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC | O_NONBLOCK))
		zdtm_die("O_ASYNC");
	if (owner_pgrp_ex) {
		struct f_owner_ex o = { F_OWNER_PGRP, pg };
		if (fcntl(fd, F_SETOWN_EX, &o))
			zdtm_die("F_SETOWN_EX");
	} else if (fcntl(fd, F_SETOWN, -pg))
		zdtm_die("F_SETOWN");
}

static void movefd(int from, int to)
{
	if (dup2(from, to) != to)
		zdtm_die("dup2");
	close(from);
}

int main(void)
{
	struct sigaction sa;
	struct f_owner_ex o;
	int p[2], s[2], q[2];
	pid_t pg;
	int64_t t0;

	zdtm_init();
	setpgid(0, 0);
	pg = getpgrp();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = h;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGIO, &sa, NULL);
	sigaction(SIGRTMIN + 3, &sa, NULL);
	if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, s) || pipe(q))
		zdtm_die("pipe");
	movefd(p[0], 30);
	movefd(p[1], 31);
	movefd(s[0], 32);
	movefd(s[1], 33);
	movefd(q[0], 34);
	movefd(q[1], 35);
	setup(30, 0, pg);
	if (fcntl(30, F_SETSIG, SIGRTMIN + 3))
		zdtm_die("F_SETSIG");
	setup(32, 1, pg);
	setup(34, 0, pg);
	if (fcntl(34, F_SETOWN, 0))
		zdtm_die("F_SETOWN 0");
	zdtm_log("pgrp %d (pid %d)", pg, getpid());

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fcntl(30, F_GETOWN) == -pg, "F_GETOWN(30) = %d, want %d", fcntl(30, F_GETOWN), -pg);
	memset(&o, 0, sizeof(o));
	fcntl(30, F_GETOWN_EX, &o);
	CHECK(o.type == F_OWNER_PGRP && o.pid == pg, "F_GETOWN_EX(30) = {%d, %d}, want {PGRP, %d}", o.type, o.pid, pg);
	memset(&o, 0, sizeof(o));
	fcntl(32, F_GETOWN_EX, &o);
	CHECK(o.type == F_OWNER_PGRP && o.pid == pg, "F_GETOWN_EX(32) = {%d, %d}, want {PGRP, %d}", o.type, o.pid, pg);
	CHECK(fcntl(30, F_GETSIG) == SIGRTMIN + 3, "F_GETSIG(30) = %d", fcntl(30, F_GETSIG));
	CHECK(fcntl(34, F_GETOWN) == 0, "F_GETOWN(34) = %d, want 0", fcntl(34, F_GETOWN));
	CHECK(fcntl(30, F_GETFL) & O_ASYNC, "fd 30 lost O_ASYNC");
	CHECK(fcntl(32, F_GETFL) & O_ASYNC, "fd 32 lost O_ASYNC");
	CHECK(fcntl(34, F_GETFL) & O_ASYNC, "fd 34 lost O_ASYNC");

	if (write(31, "a", 1) != 1 || write(33, "b", 1) != 1 || write(35, "c", 1) != 1)
		fail("write: %s", strerror(errno));
	t0 = zdtm_mono_ns();
	while ((n_rt < 1 || n_io < 1) && zdtm_mono_ns() - t0 < 2000000000LL)
		zdtm_sleep_ms(5);
	zdtm_sleep_ms(50);
	CHECK(n_rt == 1, "SIGRTMIN+3 for the pipe came %d times, want 1", n_rt);
	CHECK(rt_fd == 30, "SIGRTMIN+3 si_fd %d, want 30", rt_fd);
	CHECK(n_io == 1, "SIGIO came %d times, want 1 (socket; none for the ownerless pipe)", n_io);
	zdtm_finish();
}
