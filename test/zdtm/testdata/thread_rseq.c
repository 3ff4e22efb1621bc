/*
 * thread_rseq: restartable sequences registered by glibc for every thread.
 * After restore, in the main thread and in a second thread: the kernel
 * still has the same rseq area registered (registering it again fails with
 * EBUSY, which it only does for an identical registration), and the kernel
 * keeps cpu_id current: after pinning the thread to each allowed CPU in
 * turn, the area's cpu_id and sched_getcpu() name that CPU.
 */
#include "zdtm.h"
#include <pthread.h>
#include <sched.h>
#include <sys/rseq.h>

#ifndef RSEQ_SIG
#define RSEQ_SIG 0x53053053
#endif

static volatile int nready;

static struct rseq *rseq_area(void)
{
	char *tp;
	__asm__("mov %%fs:0, %0" : "=r"(tp));
	return (struct rseq *)(tp + __rseq_offset);
}

/* registered_len returns the length the area is registered with, or -1. */
static int registered_len(void)
{
	unsigned lens[] = { __rseq_size, 32, 20 };

	for (unsigned i = 0; i < 3; i++) {
		if (lens[i] == 0)
			continue;
		if (syscall(SYS_rseq, rseq_area(), lens[i], 0, RSEQ_SIG) == -1 && errno == EBUSY)
			return (int)lens[i];
	}
	return -1;
}

static void check_rseq(const char *who, int len0)
{
	cpu_set_t orig, one;
	int len, cpu, tested = 0;

	len = registered_len();
	CHECK(len == len0, "%s: rseq registration length %d, want %d (-1: area not registered)", who, len, len0);
	if (sched_getaffinity(0, sizeof(orig), &orig)) {
		fail("%s: sched_getaffinity: %s", who, strerror(errno));
		return;
	}
	for (cpu = 0; cpu < CPU_SETSIZE && tested < 4; cpu++) {
		if (!CPU_ISSET(cpu, &orig))
			continue;
		CPU_ZERO(&one);
		CPU_SET(cpu, &one);
		if (sched_setaffinity(0, sizeof(one), &one)) {
			fail("%s: pin to cpu %d: %s", who, cpu, strerror(errno));
			continue;
		}
		zdtm_sleep_ms(1); /* a context switch: the kernel rewrites cpu_id */
		CHECK((int)rseq_area()->cpu_id == cpu, "%s: rseq cpu_id %d after pinning to cpu %d", who,
		      (int)rseq_area()->cpu_id, cpu);
		CHECK((int)rseq_area()->cpu_id_start == cpu, "%s: rseq cpu_id_start %u on cpu %d", who,
		      rseq_area()->cpu_id_start, cpu);
		CHECK(sched_getcpu() == cpu, "%s: sched_getcpu() %d on cpu %d", who, sched_getcpu(), cpu);
		tested++;
	}
	sched_setaffinity(0, sizeof(orig), &orig);
}

static void *thread_main(void *arg)
{
	int len0 = registered_len();

	(void)arg;
	if (len0 < 0)
		zdtm_die("thread: rseq area not registered");
	nready = 1;
	zdtm_wait_go();
	check_rseq("thread", len0);
	return NULL;
}

int main(void)
{
	pthread_t th;
	int len0;

	zdtm_init();
	if (__rseq_size == 0)
		zdtm_die("glibc did not register rseq (glibc.pthread.rseq tunable off?)");
	len0 = registered_len();
	if (len0 < 0)
		zdtm_die("rseq area at offset %td not registered", __rseq_offset);
	if ((int)rseq_area()->cpu_id < 0)
		zdtm_die("rseq cpu_id %d before dump", (int)rseq_area()->cpu_id);
	if (pthread_create(&th, NULL, thread_main, NULL))
		zdtm_die("pthread_create");
	while (!nready)
		zdtm_sleep_ms(1);

	zdtm_ready();
	zdtm_wait_go();

	check_rseq("main", len0);
	pthread_join(th, NULL);
	zdtm_finish();
}
