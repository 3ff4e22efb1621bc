/*
 * sig_stopped: a process that is stopped (SIGSTOP) when checkpointed.
 * The harness stops it before the dump, checks it is still stopped ('T')
 * after restore, then sends SIGCONT. The program counts SIGCONT with a
 * handler and, after go, wants at least one, with its state otherwise
 * intact (a pattern in memory, its pid). With the argument "threads" two
 * more threads (one polling for go, one blocked in a pipe read) share the
 * group stop.
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

static int pfd[2];

static void *poller(void *arg)
{
	(void)arg;
	zdtm_wait_go();
	if (write(pfd[1], "g", 1) != 1)
		fail("poller: write: %s", strerror(errno));
	return NULL;
}

static void *reader(void *arg)
{
	char c = 0;
	ssize_t n;

	(void)arg;
	do
		n = read(pfd[0], &c, 1);
	while (n == -1 && errno == EINTR);
	CHECK(n == 1 && c == 'g', "reader: read returned %zd '%c'", n, c);
	return NULL;
}

static volatile int n_cont;

static void on_cont(int sig)
{
	(void)sig;
	n_cont++;
}

int main(int argc, char **argv)
{
	static unsigned char buf[1 << 16];
	int threads = argc > 1 && strcmp(argv[1], "threads") == 0;
	struct sigaction sa;
	pthread_t th[2];

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_cont;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCONT, &sa, NULL);
	zdtm_fill(buf, sizeof(buf), 71);
	if (threads && (pipe(pfd) || pthread_create(&th[0], NULL, poller, NULL) ||
			pthread_create(&th[1], NULL, reader, NULL)))
		zdtm_die("threads");

	zdtm_ready();
	zdtm_wait_go();

	if (threads) {
		pthread_join(th[0], NULL);
		pthread_join(th[1], NULL);
	}

	CHECK(n_cont >= 1, "no SIGCONT seen (was the process stopped and continued?)");
	CHECK(zdtm_check(buf, sizeof(buf), 71) < 0, "memory differs");
	zdtm_finish();
}
