/*
 * sys_futex: futex waits in progress when checkpointed.
 *   - the main thread: FUTEX_WAIT_PRIVATE, no timeout;
 *   - thread B: FUTEX_WAIT_BITSET with an absolute CLOCK_MONOTONIC
 *     deadline 20 s away;
 *   - thread C: FUTEX_WAIT with a relative 20 s timeout.
 * After go a waker thread sets each word and wakes it. Every waiter must
 * come back with its word set and well before its deadline. A spurious
 * EINTR or EAGAIN is retried (as any futex user does) and only logged.
 */
#include "zdtm.h"
#include <linux/futex.h>
#include <pthread.h>

static int w_main, w_b, w_c;
static int spurious;
static int64_t t_b, t_c;

static long futex(int *uaddr, int op, int val, const struct timespec *ts, unsigned bitset)
{
	return syscall(SYS_futex, uaddr, op, val, ts, NULL, bitset);
}

/* wait_word waits until *w != 0; returns 0 or the errno that ended it. */
static int wait_word(int *w, int op, const struct timespec *ts, unsigned bitset)
{
	while (__atomic_load_n(w, __ATOMIC_ACQUIRE) == 0) {
		if (futex(w, op, 0, ts, bitset) == 0)
			continue;
		if (errno == EINTR || errno == EAGAIN) {
			__atomic_add_fetch(&spurious, 1, __ATOMIC_RELAXED);
			continue;
		}
		return errno;
	}
	return 0;
}

static void *thread_b(void *arg)
{
	struct timespec dl;
	int64_t t = zdtm_mono_ns(), until = t + 20000000000LL;
	int e;

	(void)arg;
	dl.tv_sec = until / 1000000000LL;
	dl.tv_nsec = until % 1000000000LL;
	e = wait_word(&w_b, FUTEX_WAIT_BITSET_PRIVATE, &dl, FUTEX_BITSET_MATCH_ANY);
	t_b = zdtm_mono_ns() - t;
	CHECK(e == 0, "B: futex wait bitset: %s", strerror(e));
	return NULL;
}

static void *thread_c(void *arg)
{
	struct timespec rel = { 20, 0 };
	int64_t t = zdtm_mono_ns();
	int e;

	(void)arg;
	e = wait_word(&w_c, FUTEX_WAIT_PRIVATE, &rel, 0);
	t_c = zdtm_mono_ns() - t;
	CHECK(e == 0, "C: futex wait: %s", strerror(e));
	return NULL;
}

static void *waker(void *arg)
{
	int *words[] = { &w_main, &w_b, &w_c };

	(void)arg;
	zdtm_wait_go();
	for (int i = 0; i < 3; i++) {
		__atomic_store_n(words[i], 1, __ATOMIC_RELEASE);
		futex(words[i], FUTEX_WAKE_PRIVATE, 1, NULL, 0);
	}
	return NULL;
}

int main(void)
{
	pthread_t b, c, wk;
	int e;

	zdtm_init();
	if (pthread_create(&b, NULL, thread_b, NULL) || pthread_create(&c, NULL, thread_c, NULL) ||
	    pthread_create(&wk, NULL, waker, NULL))
		zdtm_die("pthread_create");

	zdtm_ready();
	e = wait_word(&w_main, FUTEX_WAIT_PRIVATE, NULL, 0); /* in progress at checkpoint time */

	CHECK(e == 0, "main: futex wait: %s", strerror(e));
	pthread_join(b, NULL);
	pthread_join(c, NULL);
	pthread_join(wk, NULL);
	CHECK(t_b < 15000000000LL, "B waited %.1fs: timed out instead of being woken", t_b / 1e9);
	CHECK(t_c < 15000000000LL, "C waited %.1fs: timed out instead of being woken", t_c / 1e9);
	if (spurious)
		zdtm_log("note: %d spurious futex wake-ups (EINTR/EAGAIN), retried", spurious);
	zdtm_finish();
}
