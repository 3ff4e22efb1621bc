/*
 * zs_thread_churn: threads come and go, and mappings are made and
 * removed, all the time, also while the dump freezes the process. A
 * spawner thread keeps creating short-lived detached threads (each bumps a
 * counter and exits, at most 4 alive); a mapper thread keeps mmapping,
 * filling, checking and unmapping 1..16-page regions; a stable 64-page
 * region holds a pattern. After go (the threads run on) the counters
 * keep growing for 300 ms, the stable region keeps its pattern, the
 * mapper found no bad region, and once they are told to stop only the
 * main thread is left.
 * Modelled on zdtm's thread-bomb and maps007.
 */
#include "zdtm.h"
#include <pthread.h>
#include <sys/mman.h>

#define PG 4096

static volatile int stop;
static long spawned, mapped, bad;
static int alive;

static void *shortlived(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&spawned, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&alive, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *spawner(void *arg)
{
	pthread_attr_t a;
	pthread_t t;

	(void)arg;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&a, 64 * 1024);
	while (!stop) {
		if (__atomic_load_n(&alive, __ATOMIC_RELAXED) >= 4) {
			zdtm_sleep_ns(100000);
			continue;
		}
		__atomic_add_fetch(&alive, 1, __ATOMIC_RELAXED);
		if (pthread_create(&t, &a, shortlived, NULL)) {
			__atomic_sub_fetch(&alive, 1, __ATOMIC_RELAXED);
			zdtm_sleep_ms(1);
		}
	}
	return NULL;
}

static void *mapper(void *arg)
{
	uint64_t i = 0;
	(void)arg;
	while (!stop) {
		size_t len = (1 + zdtm_mix(i) % 16) * PG;
		char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (m == MAP_FAILED) {
			__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
			continue;
		}
		zdtm_fill(m, len, i);
		if (zdtm_check(m, len, i) != -1)
			__atomic_add_fetch(&bad, 1, __ATOMIC_RELAXED);
		munmap(m, len);
		__atomic_add_fetch(&mapped, 1, __ATOMIC_RELAXED);
		i++;
	}
	return NULL;
}

static int nthreads(void)
{
	char v[32];
	if (zdtm_status_field("/proc/self/status", "Threads", v, sizeof(v)))
		return -1;
	return atoi(v);
}

int main(void)
{
	pthread_t ts, tm;
	long s0, m0, s1, m1;
	char *stable;
	int n, i;

	zdtm_init();
	stable = mmap(NULL, 64 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (stable == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(stable, 64 * PG, 99);
	if (pthread_create(&ts, NULL, spawner, NULL) || pthread_create(&tm, NULL, mapper, NULL))
		zdtm_die("pthread_create");
	while (__atomic_load_n(&spawned, __ATOMIC_RELAXED) < 100 || __atomic_load_n(&mapped, __ATOMIC_RELAXED) < 100)
		zdtm_sleep_ms(1);

	zdtm_ready();
	zdtm_wait_go();

	s0 = __atomic_load_n(&spawned, __ATOMIC_RELAXED);
	m0 = __atomic_load_n(&mapped, __ATOMIC_RELAXED);
	zdtm_sleep_ms(300);
	s1 = __atomic_load_n(&spawned, __ATOMIC_RELAXED);
	m1 = __atomic_load_n(&mapped, __ATOMIC_RELAXED);
	CHECK(s1 - s0 > 10, "only %ld threads were spawned in 300 ms after restore", s1 - s0);
	CHECK(m1 - m0 > 10, "only %ld regions were mapped in 300 ms after restore", m1 - m0);
	stop = 1;
	pthread_join(ts, NULL);
	pthread_join(tm, NULL);
	CHECK(bad == 0, "the mapper found %ld bad regions", bad);
	CHECK(zdtm_check(stable, 64 * PG, 99) == -1, "the stable region lost its pattern");
	for (i = 0; i < 200 && (n = nthreads()) != 1; i++)
		zdtm_sleep_ms(5);
	CHECK(nthreads() == 1, "%d threads left after all exited, want 1", nthreads());
	zdtm_finish();
}
