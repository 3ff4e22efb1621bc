/*
 * zt_futex_pi: threads blocked on a priority-inheritance mutex when
 * checkpointed. The main thread holds a PTHREAD_PRIO_INHERIT mutex M;
 * thread B waits in pthread_mutex_lock(M) (FUTEX_LOCK_PI, no timeout),
 * thread C in pthread_mutex_timedlock(M) with an absolute deadline 20 s
 * away. Before ready both are asleep in the kernel and M's word is the
 * main tid with FUTEX_WAITERS. After restore the word is the same; the
 * main thread unlocks M; B and C each get it (in either order), bump a
 * counter and unlock, within 3 s and without ETIMEDOUT; at the end M's
 * word is 0 and trylock works.
 * Modelled on zdtm's futex and futex-rl (a PI futex with waiters).
 */
#include "zdtm.h"
#include <linux/futex.h>
#include <pthread.h>

static pthread_mutex_t m;
static pid_t tb, tc;
static volatile int count, rb = -1, rc = -1;

static void *thr_b(void *a)
{
	(void)a;
	tb = zdtm_gettid();
	rb = pthread_mutex_lock(&m);
	if (rb == 0) {
		count++;
		pthread_mutex_unlock(&m);
	}
	return NULL;
}

static void *thr_c(void *a)
{
	struct timespec dl;
	(void)a;
	tc = zdtm_gettid();
	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 20;
	rc = pthread_mutex_timedlock(&m, &dl);
	if (rc == 0) {
		count++;
		pthread_mutex_unlock(&m);
	}
	return NULL;
}

static char state_of(pid_t tid)
{
	char p[64], b[512], *q;
	snprintf(p, sizeof(p), "/proc/self/task/%d/stat", tid);
	if (zdtm_read_file(p, b, sizeof(b)) <= 0 || !(q = strrchr(b, ')')))
		return '?';
	return q[2];
}

int main(void)
{
	pthread_mutexattr_t ma;
	pthread_t b, c;
	int *word = (int *)&m;
	int64_t t0;
	unsigned before;

	zdtm_init();
	pthread_mutexattr_init(&ma);
	pthread_mutexattr_setprotocol(&ma, PTHREAD_PRIO_INHERIT);
	pthread_mutex_init(&m, &ma);
	if (pthread_mutex_lock(&m))
		zdtm_die("lock");
	if (pthread_create(&b, NULL, thr_b, NULL) || pthread_create(&c, NULL, thr_c, NULL))
		zdtm_die("pthread_create");
	t0 = zdtm_mono_ns();
	while (!(tb && tc && state_of(tb) == 'S' && state_of(tc) == 'S' && (*word & FUTEX_WAITERS))) {
		if (zdtm_mono_ns() - t0 > 5000000000LL)
			zdtm_die("waiters did not block (word %#x)", *word);
		zdtm_sleep_ms(5);
	}
	zdtm_sleep_ms(20);
	before = *word;
	zdtm_log("word %#x (main %d), B %d, C %d", before, zdtm_tid0, tb, tc);

	zdtm_ready();
	zdtm_wait_go();

	CHECK((unsigned)*word == before, "M word %#x after restore, want %#x", *word, before);
	CHECK(count == 0 && rb == -1 && rc == -1, "a waiter got M while main held it (count %d rb %d rc %d)", count, rb, rc);
	CHECK(pthread_mutex_unlock(&m) == 0, "unlock: %s", strerror(errno));
	t0 = zdtm_mono_ns();
	while (count < 2 && zdtm_mono_ns() - t0 < 3000000000LL)
		zdtm_sleep_ms(5);
	CHECK(count == 2, "only %d waiters got M within 3 s (rb %d rc %d, word %#x)", count, rb, rc, *word);
	if (count == 2) {
		pthread_join(b, NULL);
		pthread_join(c, NULL);
		CHECK(rb == 0 && rc == 0, "lock results B %d C %d", rb, rc);
		CHECK(*word == 0, "M word %#x at the end, want 0", *word);
		CHECK(pthread_mutex_trylock(&m) == 0, "trylock failed");
	}
	zdtm_finish();
}
