/*
 * fd_async: signal-driven I/O. A pipe's read end has O_ASYNC, owner this
 * process (F_SETOWN) and F_SETSIG SIGRTMIN+1; a socketpair end has O_ASYNC
 * and a thread as owner (F_SETOWN_EX F_OWNER_TID), plain SIGIO. After
 * restore F_GETFL, F_GETOWN_EX and F_GETSIG say the same, writing the pipe
 * brings SIGRTMIN+1 with si_fd the read end and POLL_IN, and writing the
 * socket brings SIGIO to that very thread.
 */
#include "zdtm.h"
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>

static volatile int rt_count, rt_fd, io_count;
static volatile pid_t io_tid;
static volatile pid_t owner_tid;
static volatile int stop;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	rt_fd = si->si_fd;
	rt_count++;
}

static void on_io(int sig)
{
	(void)sig;
	io_tid = zdtm_gettid();
	io_count++;
}

static void *owner(void *arg)
{
	(void)arg;
	owner_tid = zdtm_gettid();
	while (!stop)
		zdtm_sleep_ms(2);
	return NULL;
}

static int wait_for(volatile int *v, int want)
{
	for (int i = 0; i < 2000 && *v < want; i++)
		zdtm_sleep_ms(1);
	return *v >= want;
}

int main(void)
{
	struct sigaction sa;
	struct f_owner_ex ox, got;
	int p[2], sv[2], n;
	pthread_t th;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGRTMIN + 1, &sa, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_io;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGIO, &sa, NULL);
	if (pipe(p) || socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		zdtm_die("pipe/socketpair");
	if (pthread_create(&th, NULL, owner, NULL))
		zdtm_die("pthread_create");
	while (!owner_tid)
		zdtm_sleep_ms(1);
	if (fcntl(p[0], F_SETOWN, getpid()) || fcntl(p[0], F_SETSIG, SIGRTMIN + 1) ||
	    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_ASYNC | O_NONBLOCK))
		zdtm_die("pipe async");
	ox.type = F_OWNER_TID;
	ox.pid = owner_tid;
	if (fcntl(sv[0], F_SETOWN_EX, &ox) || fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_ASYNC | O_NONBLOCK))
		zdtm_die("socket async");
	/* one round before, to see it works here */
	if (write(p[1], "a", 1) != 1 || !wait_for(&rt_count, 1))
		zdtm_die("no signal from the pipe before the checkpoint");
	{
		char c;
		n = read(p[0], &c, 1);
		(void)n;
	}

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fcntl(p[0], F_GETFL) & O_ASYNC, "pipe lost O_ASYNC");
	CHECK(fcntl(p[0], F_GETOWN) == getpid(), "pipe owner %d, want %d", fcntl(p[0], F_GETOWN), getpid());
	CHECK(fcntl(p[0], F_GETSIG) == SIGRTMIN + 1, "pipe F_GETSIG %d, want %d", fcntl(p[0], F_GETSIG), SIGRTMIN + 1);
	CHECK(fcntl(sv[0], F_GETFL) & O_ASYNC, "socket lost O_ASYNC");
	memset(&got, 0, sizeof(got));
	CHECK(fcntl(sv[0], F_GETOWN_EX, &got) == 0 && got.type == F_OWNER_TID && got.pid == owner_tid,
	      "socket owner type %d pid %d, want thread %d", got.type, got.pid, owner_tid);
	if (write(p[1], "b", 1) != 1)
		fail("write pipe");
	CHECK(wait_for(&rt_count, 2), "no SIGRTMIN+1 from the pipe after restore");
	CHECK(rt_fd == p[0], "si_fd %d, want %d", rt_fd, p[0]);
	if (write(sv[1], "c", 1) != 1)
		fail("write socket");
	CHECK(wait_for(&io_count, 1), "no SIGIO from the socket after restore");
	CHECK(io_tid == owner_tid, "SIGIO went to thread %d, want the owner %d", io_tid, owner_tid);
	stop = 1;
	pthread_join(th, NULL);
	zdtm_finish();
}
