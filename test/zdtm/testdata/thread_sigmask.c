/*
 * thread_sigmask: a different blocked-signal mask in each of five threads.
 * After restore every thread reads its own mask back (pthread_sigmask and
 * SigBlk in /proc/self/task/TID/status), then a process-directed SIGUSR1
 * must be handled by the only thread that does not block it.
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

#define NTHREADS 4
#define RECEIVER 2

static sigset_t want[NTHREADS + 1];
static char sigblk[NTHREADS + 1][32];
static pid_t tids[NTHREADS + 1];
static volatile pid_t handled_by;
static volatile int handled;
static int nready, nchecked, done;

static void on_usr1(int sig)
{
	(void)sig;
	handled_by = zdtm_gettid();
	handled++;
}

static void make_masks(void)
{
	int i;

	for (i = 0; i <= NTHREADS; i++)
		sigemptyset(&want[i]);
	sigaddset(&want[0], SIGUSR1);
	sigaddset(&want[0], SIGTERM);
	sigaddset(&want[0], SIGRTMIN + 2);
	sigaddset(&want[1], SIGUSR1);
	sigaddset(&want[1], SIGHUP);
	sigaddset(&want[1], SIGRTMAX);
	sigaddset(&want[RECEIVER], SIGUSR2);
	sigaddset(&want[RECEIVER], SIGRTMIN + 3);
	sigfillset(&want[3]);
	sigaddset(&want[NTHREADS], SIGUSR1); /* main */
	sigaddset(&want[NTHREADS], SIGUSR2);
	sigaddset(&want[NTHREADS], SIGRTMIN + 1);
}

static void save(int i)
{
	char path[64];

	if (pthread_sigmask(SIG_SETMASK, &want[i], NULL))
		zdtm_die("pthread_sigmask");
	/* what the kernel really holds (glibc keeps its own signals out) */
	pthread_sigmask(SIG_BLOCK, NULL, &want[i]);
	tids[i] = zdtm_gettid();
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tids[i]);
	if (zdtm_status_field(path, "SigBlk", sigblk[i], sizeof(sigblk[i])))
		zdtm_die("no SigBlk in %s", path);
}

static void check(int i)
{
	char path[64], blk[32];
	sigset_t cur;
	int sig;

	pthread_sigmask(SIG_BLOCK, NULL, &cur);
	for (sig = 1; sig < 65; sig++)
		if (sigismember(&cur, sig) != sigismember(&want[i], sig)) {
			fail("thread %d: signal %d %s, want %s", i, sig, sigismember(&cur, sig) ? "blocked" : "unblocked",
			     sigismember(&want[i], sig) ? "blocked" : "unblocked");
			break;
		}
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tids[i]);
	if (zdtm_status_field(path, "SigBlk", blk, sizeof(blk)))
		fail("thread %d: no SigBlk in %s", i, path);
	else
		CHECK(strcmp(blk, sigblk[i]) == 0, "thread %d: SigBlk %s, want %s", i, blk, sigblk[i]);
}

static void *thread_main(void *arg)
{
	long i = (long)arg;

	save(i);
	__atomic_add_fetch(&nready, 1, __ATOMIC_RELEASE);
	zdtm_wait_go();
	check(i);
	__atomic_add_fetch(&nchecked, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&done, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(1);
	return NULL;
}

int main(void)
{
	pthread_t th[NTHREADS];
	struct sigaction sa;
	int64_t start;
	long i;

	zdtm_init();
	make_masks();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	save(NTHREADS); /* threads inherit this; each sets its own */
	for (i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, thread_main, (void *)i))
			zdtm_die("pthread_create");
	while (__atomic_load_n(&nready, __ATOMIC_ACQUIRE) < NTHREADS)
		zdtm_sleep_ms(1);

	zdtm_ready();
	zdtm_wait_go();

	check(NTHREADS);
	while (__atomic_load_n(&nchecked, __ATOMIC_ACQUIRE) < NTHREADS)
		zdtm_sleep_ms(1);
	kill(getpid(), SIGUSR1);
	for (start = zdtm_mono_ns(); !handled && zdtm_mono_ns() - start < 3000000000LL;)
		zdtm_sleep_ms(1);
	CHECK(handled == 1, "SIGUSR1 handled %d times, want 1", handled);
	CHECK(handled_by == tids[RECEIVER], "SIGUSR1 handled by tid %d, want %d (the only thread not blocking it)",
	      handled_by, tids[RECEIVER]);
	__atomic_store_n(&done, 1, __ATOMIC_RELEASE);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	zdtm_finish();
}
