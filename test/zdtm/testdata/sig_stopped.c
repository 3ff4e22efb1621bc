/*
 * sig_stopped: a process that is stopped (SIGSTOP) when checkpointed.
 * The harness stops it before the dump, checks it is still stopped ('T')
 * after restore, then sends SIGCONT. The program counts SIGCONT with a
 * handler and, after go, wants at least one, with its state otherwise
 * intact (a pattern in memory, its pid).
 */
#include "zdtm.h"
#include <signal.h>

static volatile int n_cont;

static void on_cont(int sig)
{
	(void)sig;
	n_cont++;
}

int main(void)
{
	static unsigned char buf[1 << 16];
	struct sigaction sa;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_cont;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGCONT, &sa, NULL);
	zdtm_fill(buf, sizeof(buf), 71);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(n_cont >= 1, "no SIGCONT seen (was the process stopped and continued?)");
	CHECK(zdtm_check(buf, sizeof(buf), 71) < 0, "memory differs");
	zdtm_finish();
}
