/*
 * thread_clear_tid: clear_child_tid (set_tid_address) of each thread.
 * pthread_join waits on the tid word the kernel clears and wakes when the
 * thread exits; three threads exit after go and the main thread joins them
 * with a timeout (a lost clear_child_tid makes the join hang). The address
 * itself (PR_GET_TID_ADDRESS) is compared too, when the kernel offers it.
 */
#include "zdtm.h"
#include <dirent.h>
#include <pthread.h>
#include <sys/prctl.h>

#define NTHREADS 3

static void *tidaddr0[NTHREADS + 1];
static int have_get_tid_address;
static int nready;

static void *get_tid_address(void)
{
	void *a = NULL;
	if (prctl(PR_GET_TID_ADDRESS, &a, 0, 0, 0))
		return (void *)-1;
	return a;
}

static void *thread_main(void *arg)
{
	long idx = (long)arg;

	tidaddr0[idx] = get_tid_address();
	__atomic_add_fetch(&nready, 1, __ATOMIC_RELEASE);
	zdtm_wait_go();
	if (have_get_tid_address)
		CHECK(get_tid_address() == tidaddr0[idx], "thread %ld: clear_child_tid %p, want %p", idx,
		      get_tid_address(), tidaddr0[idx]);
	zdtm_sleep_ms(20 * idx); /* exit one by one while main is already joining */
	return (void *)(idx + 100);
}

static int count_tasks(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *e;
	int n = 0;

	if (!d)
		return -1;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

int main(void)
{
	pthread_t th[NTHREADS];
	struct timespec dl;
	void *ret;
	long i;
	int r;

	zdtm_init();
	have_get_tid_address = get_tid_address() != (void *)-1;
	if (!have_get_tid_address)
		zdtm_log("PR_GET_TID_ADDRESS unsupported: checking joins only");
	for (i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, thread_main, (void *)i))
			zdtm_die("pthread_create");
	while (__atomic_load_n(&nready, __ATOMIC_ACQUIRE) < NTHREADS)
		zdtm_sleep_ms(1);
	tidaddr0[NTHREADS] = get_tid_address();

	zdtm_ready();
	zdtm_wait_go();

	if (have_get_tid_address)
		CHECK(get_tid_address() == tidaddr0[NTHREADS], "main: clear_child_tid %p, want %p",
		      get_tid_address(), tidaddr0[NTHREADS]);
	for (i = 0; i < NTHREADS; i++) {
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 5;
		r = pthread_timedjoin_np(th[i], &ret, &dl);
		if (r) {
			fail("join thread %ld: %s (clear_child_tid not restored?)", i, strerror(r));
			continue;
		}
		CHECK(ret == (void *)(i + 100), "thread %ld returned %p", i, ret);
	}
	r = count_tasks();
	CHECK(r == 1, "%d tasks left after joining all threads", r);
	zdtm_finish();
}
