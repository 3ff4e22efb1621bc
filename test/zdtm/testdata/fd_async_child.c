/*
 * fd_async_child: signal-driven I/O (O_ASYNC) survives.
 *   fds 70/71: a pipe; the read end is O_ASYNC, F_SETOWN getpid(), no
 *              F_SETSIG (plain SIGIO);
 *   fds 72/73: a socketpair; 72 is O_ASYNC, F_SETOWN_EX F_OWNER_TID (the
 *              main thread), F_SETSIG SIGRTMIN+2;
 *   fds 74/75: a pipe whose read end 74 is owned (F_SETOWN) by a child,
 *              which counts its SIGIOs and exits with that count.
 * After restore the owners, signal and O_ASYNC read back the same; a
 * write to 71 raises SIGIO here, a write to 73 raises SIGRTMIN+2 with
 * si_fd 72 and POLL_IN, and a write to 75 raises SIGIO in the child.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

static volatile sig_atomic_t nsigio, nrt, rt_fd, rt_code, child_sigio;

static void on_sigio(int sig) { nsigio++; }
static void on_rt(int sig, siginfo_t *si, void *uc)
{
	nrt++;
	rt_fd = si->si_fd;
	rt_code = si->si_code;
}
static void on_child_sigio(int sig) { child_sigio++; }

static void async_on(int fd)
{
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_ASYNC | O_NONBLOCK))
		zdtm_die("O_ASYNC on %d", fd);
}

static void wait_for(volatile sig_atomic_t *v, int n, int ms)
{
	int i;
	for (i = 0; i < ms / 2 && *v < n; i++)
		zdtm_sleep_ms(2);
}

int main(void)
{
	struct sigaction sa = { 0 };
	struct f_owner_ex ox = { F_OWNER_TID, 0 };
	int p[2], s[2], q[2], st;
	pid_t child;
	char c;

	zdtm_init();
	if (pipe(p) || dup2(p[0], 70) != 70 || dup2(p[1], 71) != 71 || socketpair(AF_UNIX, SOCK_STREAM, 0, s) ||
	    dup2(s[0], 72) != 72 || dup2(s[1], 73) != 73 || pipe(q) || dup2(q[0], 74) != 74 || dup2(q[1], 75) != 75)
		zdtm_die("pipe/socketpair");
	close(p[0]); close(p[1]); close(s[0]); close(s[1]); close(q[0]); close(q[1]);

	child = fork();
	if (child < 0)
		zdtm_die("fork");
	if (child == 0) {
		zdtm_child_forget_ready();
		signal(SIGIO, on_child_sigio);
		close(70); close(71); close(72); close(73); close(75);
		while (!zdtm_go())
			zdtm_sleep_ms(5);
		wait_for(&child_sigio, 1, 15000);
		_exit(child_sigio > 100 ? 100 : child_sigio);
	}
	/* The child holds the only copy of 74 left; its owner is the child. */
	async_on(74);
	if (fcntl(74, F_SETOWN, child))
		zdtm_die("F_SETOWN 74");
	close(74);

	signal(SIGIO, on_sigio);
	signal(SIGPIPE, SIG_IGN);
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGRTMIN + 2, &sa, NULL))
		zdtm_die("sigaction");
	async_on(70);
	if (fcntl(70, F_SETOWN, getpid()))
		zdtm_die("F_SETOWN 70");
	async_on(72);
	ox.pid = zdtm_gettid();
	if (fcntl(72, F_SETOWN_EX, &ox) || fcntl(72, F_SETSIG, SIGRTMIN + 2))
		zdtm_die("F_SETOWN_EX/F_SETSIG 72");
	zdtm_ready();
	zdtm_wait_go();

	CHECK(fcntl(70, F_GETFL) & O_ASYNC, "fd 70 lost O_ASYNC");
	CHECK(fcntl(70, F_GETOWN) == getpid(), "fd 70: owner %d, want %d", fcntl(70, F_GETOWN), getpid());
	CHECK(fcntl(70, F_GETSIG) == 0, "fd 70: F_GETSIG %d, want 0", fcntl(70, F_GETSIG));
	CHECK(fcntl(72, F_GETFL) & O_ASYNC, "fd 72 lost O_ASYNC");
	ox = (struct f_owner_ex){ 0 };
	CHECK(fcntl(72, F_GETOWN_EX, &ox) == 0 && ox.type == F_OWNER_TID && ox.pid == zdtm_gettid(),
	      "fd 72: owner type %d pid %d, want thread %d", ox.type, ox.pid, zdtm_gettid());
	CHECK(fcntl(72, F_GETSIG) == SIGRTMIN + 2, "fd 72: F_GETSIG %d, want %d", fcntl(72, F_GETSIG), SIGRTMIN + 2);

	if (write(71, "x", 1) != 1 || write(73, "y", 1) != 1)
		fail("write: %s", strerror(errno));
	wait_for(&nsigio, 1, 2000);
	wait_for(&nrt, 1, 2000);
	CHECK(nsigio >= 1, "no SIGIO for the pipe");
	CHECK(nrt >= 1, "no SIGRTMIN+2 for the socketpair");
	CHECK(nrt < 1 || (rt_fd == 72 && rt_code == POLL_IN), "socketpair signal: si_fd %d si_code %d, want 72 %d",
	      (int)rt_fd, (int)rt_code, POLL_IN);
	CHECK(read(70, &c, 1) == 1 && read(72, &c, 1) == 1, "data lost");

	if (write(75, "z", 1) != 1)
		fail("write 75: %s", strerror(errno));
	if (waitpid(child, &st, 0) != child)
		fail("waitpid: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) >= 1, "child (owner of fd 74) got no SIGIO (status %#x)", st);
	zdtm_finish();
}
