/*
 * sys_pipe_read: the main thread is blocked in read() on an empty pipe
 * when checkpointed. After go a helper thread first interrupts it with a
 * SA_RESTART signal (the read must be restarted, not fail with EINTR),
 * then writes 100 bytes; the read returns exactly them.
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

static int pfd[2];
static pid_t main_tid;
static volatile int n_usr1;

static void on_usr1(int sig)
{
	(void)sig;
	n_usr1++;
}

static void *writer(void *arg)
{
	unsigned char buf[100];

	(void)arg;
	zdtm_wait_go();
	syscall(SYS_tgkill, getpid(), main_tid, SIGUSR1);
	zdtm_sleep_ms(30);
	zdtm_fill(buf, sizeof(buf), 81);
	if (write(pfd[1], buf, sizeof(buf)) != (ssize_t)sizeof(buf))
		fail("writer: write: %s", strerror(errno));
	return NULL;
}

int main(void)
{
	unsigned char buf[4096];
	struct sigaction sa;
	pthread_t th;
	ssize_t n;

	zdtm_init();
	main_tid = zdtm_gettid();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGUSR1, &sa, NULL);
	if (pipe(pfd))
		zdtm_die("pipe");
	if (pthread_create(&th, NULL, writer, NULL))
		zdtm_die("pthread_create");

	zdtm_ready();
	n = read(pfd[0], buf, sizeof(buf)); /* blocked here at checkpoint time */

	if (n < 0)
		fail("read: %s", strerror(errno));
	else {
		CHECK(n == 100, "read returned %zd bytes, want 100", n);
		CHECK(zdtm_check(buf, 100, 81) < 0, "read data differs");
	}
	pthread_join(th, NULL);
	CHECK(n_usr1 == 1, "SIGUSR1 handled %d times, want 1", n_usr1);
	zdtm_finish();
}
