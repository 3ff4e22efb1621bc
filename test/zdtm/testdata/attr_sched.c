/*
 * attr_sched: per-thread scheduling attributes.
 *   main:   nice 7, SCHED_BATCH, affinity {first CPU}, I/O priority BE/6;
 *   thread: nice 3, SCHED_IDLE,  affinity {last CPU},  I/O priority IDLE.
 * After restore each thread reads its own attributes back by tid.
 */
#include "zdtm.h"
#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>

#define IOPRIO_CLASS_SHIFT 13
#define IOPRIO_PRIO_VALUE(c, d) (((c) << IOPRIO_CLASS_SHIFT) | (d))
#define IOPRIO_CLASS_BE 2
#define IOPRIO_CLASS_IDLE 3
#define IOPRIO_WHO_PROCESS 1

struct want {
	const char *who;
	pid_t tid;
	int nice, policy, cpu, ioprio;
};

static struct want wmain, wthr;
static int nready, first_cpu = -1, last_cpu = -1;

static void apply(struct want *w)
{
	struct sched_param sp = { 0 };
	cpu_set_t set;

	w->tid = zdtm_gettid();
	if (setpriority(PRIO_PROCESS, w->tid, w->nice))
		zdtm_die("%s: setpriority", w->who);
	if (sched_setscheduler(w->tid, w->policy, &sp))
		zdtm_die("%s: sched_setscheduler", w->who);
	CPU_ZERO(&set);
	CPU_SET(w->cpu, &set);
	if (sched_setaffinity(w->tid, sizeof(set), &set))
		zdtm_die("%s: sched_setaffinity", w->who);
	if (syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, w->tid, w->ioprio))
		zdtm_die("%s: ioprio_set", w->who);
}

static void verify(struct want *w)
{
	cpu_set_t set;
	int v;

	errno = 0;
	v = getpriority(PRIO_PROCESS, w->tid);
	CHECK(errno == 0 && v == w->nice, "%s: nice %d, want %d", w->who, v, w->nice);
	v = sched_getscheduler(w->tid);
	CHECK(v == w->policy, "%s: policy %d, want %d", w->who, v, w->policy);
	if (sched_getaffinity(w->tid, sizeof(set), &set))
		fail("%s: sched_getaffinity: %s", w->who, strerror(errno));
	else
		CHECK(CPU_COUNT(&set) == 1 && CPU_ISSET(w->cpu, &set), "%s: affinity has %d cpus, want only %d", w->who,
		      CPU_COUNT(&set), w->cpu);
	v = syscall(SYS_ioprio_get, IOPRIO_WHO_PROCESS, w->tid);
	CHECK(v == w->ioprio, "%s: ioprio %#x, want %#x", w->who, v, w->ioprio);
}

static void *thread_main(void *arg)
{
	(void)arg;
	apply(&wthr);
	__atomic_store_n(&nready, 1, __ATOMIC_RELEASE);
	zdtm_wait_go();
	verify(&wthr);
	return NULL;
}

int main(void)
{
	cpu_set_t all;
	pthread_t th;
	int i;

	zdtm_init();
	if (sched_getaffinity(0, sizeof(all), &all))
		zdtm_die("sched_getaffinity");
	for (i = 0; i < CPU_SETSIZE; i++)
		if (CPU_ISSET(i, &all)) {
			if (first_cpu < 0)
				first_cpu = i;
			last_cpu = i;
		}
	wmain = (struct want){ "main", 0, 7, SCHED_BATCH, first_cpu, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 6) };
	wthr = (struct want){ "thread", 0, 3, SCHED_IDLE, last_cpu, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_IDLE, 0) };
	if (pthread_create(&th, NULL, thread_main, NULL))
		zdtm_die("pthread_create");
	while (!__atomic_load_n(&nready, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(1);
	apply(&wmain);

	zdtm_ready();
	zdtm_wait_go();

	verify(&wmain);
	pthread_join(th, NULL);
	zdtm_finish();
}
