/*
 * fd_pidfd: pidfds of a child (one plain, one PIDFD_NONBLOCK, at fd 20 and
 * 21). After restore both refer to the child: fdinfo's Pid is its pid, the
 * second is still non-blocking, pidfd_send_signal through the first kills
 * it, poll on the second reports it ended, and waitid(P_PIDFD) reaps it
 * with that signal.
 */
#include "zdtm.h"
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

static int fdinfo_pid(int fd)
{
	char path[64], val[64];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_status_field(path, "Pid", val, sizeof(val)))
		return -2;
	return atoi(val);
}

int main(void)
{
	struct pollfd pfd;
	siginfo_t si;
	pid_t c;
	int a, b;

	zdtm_init();
	c = fork();
	if (c == 0) {
		zdtm_child_forget_ready();
		for (;;)
			pause();
	}
	a = syscall(SYS_pidfd_open, c, 0);
	b = syscall(SYS_pidfd_open, c, PIDFD_NONBLOCK);
	if (a < 0 || b < 0 || dup2(a, 20) != 20 || dup2(b, 21) != 21)
		zdtm_die("pidfd_open: %s", strerror(errno));
	close(a);
	close(b);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fdinfo_pid(20) == c && fdinfo_pid(21) == c, "fdinfo Pid %d/%d, want %d", fdinfo_pid(20), fdinfo_pid(21), c);
	CHECK(fcntl(21, F_GETFL) & O_NONBLOCK, "second pidfd lost PIDFD_NONBLOCK");
	CHECK(!(fcntl(20, F_GETFL) & O_NONBLOCK), "first pidfd became non-blocking");
	pfd.fd = 21;
	pfd.events = POLLIN;
	CHECK(poll(&pfd, 1, 0) == 0, "poll says the child ended before it did");
	CHECK(syscall(SYS_pidfd_send_signal, 20, SIGTERM, NULL, 0) == 0, "pidfd_send_signal: %s", strerror(errno));
	CHECK(poll(&pfd, 1, 5000) == 1 && (pfd.revents & POLLIN), "poll did not see the child end");
	memset(&si, 0, sizeof(si));
	CHECK(waitid(P_PIDFD, 20, &si, WEXITED) == 0 && si.si_pid == c && si.si_code == CLD_KILLED && si.si_status == SIGTERM,
	      "waitid(P_PIDFD): pid %d code %d status %d (%s)", si.si_pid, si.si_code, si.si_status, strerror(errno));
	zdtm_finish();
}
