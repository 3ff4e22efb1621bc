/*
 * zt_pidfd_thread: pidfds that refer to a thread (pidfd_open PIDFD_THREAD)
 * rather than to a thread group.
 *   fd 20: PIDFD_THREAD pidfd of thread W (not the leader);
 *   fd 21: PIDFD_THREAD|PIDFD_NONBLOCK pidfd of the main thread;
 *   fd 22: a plain pidfd of the process.
 * SIGUSR2 is blocked in every thread; W waits for it with sigwaitinfo.
 * After restore fdinfo Pid of fd 20 is W's tid, of 21 and 22 our pid;
 * F_GETFL of 20 and 21 still has PIDFD_THREAD (O_EXCL), 21 O_NONBLOCK;
 * pidfd_send_signal(20, SIGUSR2, PIDFD_SIGNAL_THREAD) reaches W (its
 * sigwaitinfo returns SIGUSR2, nothing is left pending for the process),
 * W then exits, and poll on fd 20 reports POLLIN
 * (thread exit) while poll on fd 22 does not (the process lives).
 * Modelled on zdtm's pidfd_of_thread.
 */
#include "zdtm.h"
#include <poll.h>
#include <pthread.h>
#include <signal.h>

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif
#ifndef PIDFD_NONBLOCK
#define PIDFD_NONBLOCK O_NONBLOCK
#endif
#ifndef PIDFD_SIGNAL_THREAD
#define PIDFD_SIGNAL_THREAD 1
#endif

static pid_t wtid;
static volatile int wsig, wcode;

static void *w(void *a)
{
	sigset_t set;
	siginfo_t si;
	(void)a;
	wtid = zdtm_gettid();
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	memset(&si, 0, sizeof(si));
	/* A checkpoint interrupts the wait (EINTR), as any ptrace stop does. */
	while ((wsig = sigwaitinfo(&set, &si)) < 0 && errno == EINTR)
		;
	wcode = si.si_code;
	return NULL;
}

static int fdinfo_pid(int fd)
{
	char v[32];
	if (zdtm_fdinfo_field(fd, "Pid", v, sizeof(v)))
		return -999;
	return atoi(v);
}

static void at(int fd, int to)
{
	if (fd < 0 || dup2(fd, to) != to)
		zdtm_die("pidfd for %d", to);
	close(fd);
}

int main(void)
{
	struct pollfd pf[2];
	pthread_t th;
	sigset_t set;
	int fl20, fl21, r;

	zdtm_init();
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (pthread_create(&th, NULL, w, NULL))
		zdtm_die("pthread_create");
	while (!wtid)
		zdtm_sleep_ms(1);
	at(syscall(SYS_pidfd_open, wtid, PIDFD_THREAD), 20);
	at(syscall(SYS_pidfd_open, getpid(), PIDFD_THREAD | PIDFD_NONBLOCK), 21);
	at(syscall(SYS_pidfd_open, getpid(), 0), 22);
	fl20 = fcntl(20, F_GETFL);
	fl21 = fcntl(21, F_GETFL);
	zdtm_log("W %d, fdinfo pids %d %d %d, flags %#o %#o", wtid, fdinfo_pid(20), fdinfo_pid(21), fdinfo_pid(22),
		 fl20, fl21);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fdinfo_pid(20) == wtid, "fd 20 Pid %d, want W %d", fdinfo_pid(20), wtid);
	CHECK(fdinfo_pid(21) == getpid(), "fd 21 Pid %d", fdinfo_pid(21));
	CHECK(fdinfo_pid(22) == getpid(), "fd 22 Pid %d", fdinfo_pid(22));
	CHECK(fcntl(20, F_GETFL) == fl20, "fd 20 F_GETFL %#o, want %#o", fcntl(20, F_GETFL), fl20);
	CHECK(fcntl(21, F_GETFL) == fl21, "fd 21 F_GETFL %#o, want %#o", fcntl(21, F_GETFL), fl21);
	pf[0].fd = 20;
	pf[0].events = POLLIN;
	pf[1].fd = 22;
	pf[1].events = POLLIN;
	r = poll(pf, 2, 0);
	CHECK(r == 0, "poll before W's exit: %d (revents %#x %#x)", r, pf[0].revents, pf[1].revents);
	r = syscall(SYS_pidfd_send_signal, 20, SIGUSR2, NULL, PIDFD_SIGNAL_THREAD);
	CHECK(r == 0, "pidfd_send_signal(20, PIDFD_SIGNAL_THREAD): %s", strerror(errno));
	pthread_join(th, NULL);
	CHECK(wsig == SIGUSR2, "W's sigwaitinfo gave %d", wsig);
	sigpending(&set);
	CHECK(!sigismember(&set, SIGUSR2), "SIGUSR2 left pending on the process (not sent to the thread)");
	pf[0].revents = pf[1].revents = 0;
	r = poll(pf, 2, 2000);
	CHECK(r == 1 && (pf[0].revents & POLLIN) && !pf[1].revents, "poll after W's exit: %d (revents %#x %#x)", r,
	      pf[0].revents, pf[1].revents);
	zdtm_finish();
}
