/*
 * real_counters: a dynamically linked, 4-thread program that keeps
 * computing across the checkpoint. Each worker counts n and keeps the sum
 * of 1..n and of their squares (closed forms known), publishes n, and
 * every 65536 steps mallocs, fills, checks and frees a buffer (per-thread
 * malloc arenas) and sleeps 200 us. The main thread watches the published
 * counters only ever grow. After go: every counter still advances, then
 * the workers stop and check their sums and a buffer they kept from the
 * start.
 */
#include "zdtm.h"
#include <pthread.h>

#define NTHREADS 4
#define KEEP (256 << 10)

static uint64_t progress[NTHREADS];
static int stop, nready;

static void *worker(void *arg)
{
	long idx = (long)arg;
	unsigned char *keep = malloc(KEEP);
	uint64_t n = 0, s1 = 0, s2 = 0;
	unsigned __int128 w1, w2;

	if (!keep)
		zdtm_die("malloc");
	zdtm_fill(keep, KEEP, 200 + idx);
	__atomic_add_fetch(&nready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
		n++;
		s1 += n;
		s2 += n * n;
		if ((n & 0xfff) == 0)
			__atomic_store_n(&progress[idx], n, __ATOMIC_RELEASE);
		if ((n & 0xffff) == 0) {
			size_t len = 4096 + (n >> 16) % 8192;
			unsigned char *p = malloc(len);
			if (!p) {
				fail("worker %ld: malloc failed at n=%lu", idx, n);
				break;
			}
			zdtm_fill(p, len, n);
			if (zdtm_check(p, len, n) >= 0)
				fail("worker %ld: fresh buffer corrupt at n=%lu", idx, n);
			free(p);
			zdtm_sleep_ns(200000);
		}
	}
	w1 = (unsigned __int128)n * (n + 1) / 2;
	w2 = (unsigned __int128)n * (n + 1) * (2 * n + 1) / 6;
	CHECK(s1 == (uint64_t)w1, "worker %ld: sum of 1..%lu is %lu, want %lu", idx, n, s1, (uint64_t)w1);
	CHECK(s2 == (uint64_t)w2, "worker %ld: sum of squares to %lu is %lu, want %lu", idx, n, s2, (uint64_t)w2);
	CHECK(zdtm_check(keep, KEEP, 200 + idx) < 0, "worker %ld: kept buffer differs", idx);
	free(keep);
	return NULL;
}

/* watch checks that no counter went down since last; returns 1 if all grew. */
static int watch(uint64_t last[NTHREADS])
{
	int all_grew = 1;

	for (int i = 0; i < NTHREADS; i++) {
		uint64_t p = __atomic_load_n(&progress[i], __ATOMIC_ACQUIRE);
		if (p < last[i])
			fail("worker %d: counter went back from %lu to %lu", i, last[i], p);
		all_grew &= p > last[i];
		if (p > last[i])
			last[i] = p;
	}
	return all_grew;
}

int main(void)
{
	uint64_t last[NTHREADS] = { 0 }, at_go[NTHREADS];
	pthread_t th[NTHREADS];
	int64_t start;
	long i;

	zdtm_init();
	for (i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, worker, (void *)i))
			zdtm_die("pthread_create");
	while (__atomic_load_n(&nready, __ATOMIC_ACQUIRE) < NTHREADS)
		zdtm_sleep_ms(1);
	while (!watch(last)) /* everyone is counting */
		zdtm_sleep_ms(1);

	zdtm_ready();
	while (!zdtm_go()) {
		watch(last);
		zdtm_sleep_ms(5);
	}

	watch(last);
	memcpy(at_go, last, sizeof(at_go));
	for (start = zdtm_mono_ns(); zdtm_mono_ns() - start < 5000000000LL; zdtm_sleep_ms(5)) {
		int grew = 1;
		watch(last);
		for (i = 0; i < NTHREADS; i++)
			grew &= last[i] > at_go[i] + 0x20000;
		if (grew)
			break;
	}
	for (i = 0; i < NTHREADS; i++)
		CHECK(last[i] > at_go[i] + 0x20000, "worker %ld did not keep counting after go (%lu -> %lu)", i, at_go[i],
		      last[i]);
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	zdtm_finish();
}
