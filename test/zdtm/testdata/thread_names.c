/*
 * thread_names: per-thread comm set with pthread_setname_np. After restore
 * each thread's name is the same, through pthread_getname_np and
 * /proc/self/task/TID/comm, and the process name is unchanged.
 */
#include "zdtm.h"
#include <pthread.h>

#define NTHREADS 4

static const char *names[NTHREADS] = { "zdtm-alpha", "zdtm-beta", "z", "zdtm-fifteen-ch" };
static pthread_t th[NTHREADS];
static pid_t tids[NTHREADS];
static int nready, checked;

static void *thread_main(void *arg)
{
	long i = (long)arg;

	tids[i] = zdtm_gettid();
	__atomic_add_fetch(&nready, 1, __ATOMIC_RELEASE);
	zdtm_wait_go();
	while (!__atomic_load_n(&checked, __ATOMIC_ACQUIRE)) /* stay until main looked */
		zdtm_sleep_ms(1);
	return NULL;
}

static void check_comm(const char *label, pid_t tid, const char *want)
{
	char path[64], buf[64];

	snprintf(path, sizeof(path), "/proc/self/task/%d/comm", tid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0) {
		fail("%s: read %s: %s", label, path, strerror(errno));
		return;
	}
	buf[strcspn(buf, "\n")] = 0;
	CHECK(strcmp(buf, want) == 0, "%s: comm \"%s\", want \"%s\"", label, buf, want);
}

int main(void)
{
	char buf[32], main_comm[32];
	long i;

	zdtm_init();
	for (i = 0; i < NTHREADS; i++)
		if (pthread_create(&th[i], NULL, thread_main, (void *)i))
			zdtm_die("pthread_create");
	for (i = 0; i < NTHREADS; i++)
		if (pthread_setname_np(th[i], names[i]))
			zdtm_die("pthread_setname_np %s", names[i]);
	while (__atomic_load_n(&nready, __ATOMIC_ACQUIRE) < NTHREADS)
		zdtm_sleep_ms(1);
	if (pthread_getname_np(pthread_self(), main_comm, sizeof(main_comm)))
		zdtm_die("pthread_getname_np");

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NTHREADS; i++) {
		char label[32];
		snprintf(label, sizeof(label), "thread %ld", i);
		if (pthread_getname_np(th[i], buf, sizeof(buf)) == 0)
			CHECK(strcmp(buf, names[i]) == 0, "%s: name \"%s\", want \"%s\"", label, buf, names[i]);
		else
			fail("%s: pthread_getname_np failed", label);
		check_comm(label, tids[i], names[i]);
	}
	check_comm("main", getpid(), main_comm);
	__atomic_store_n(&checked, 1, __ATOMIC_RELEASE);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	zdtm_finish();
}
