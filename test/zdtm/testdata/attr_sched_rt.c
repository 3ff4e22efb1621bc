/*
 * attr_sched_rt: real-time scheduling. The main thread runs SCHED_RR at
 * priority 3 with SCHED_RESET_ON_FORK, a second thread SCHED_FIFO at
 * priority 7, a child process SCHED_RR at priority 11. After restore each
 * reads its policy (with the reset-on-fork flag) and priority back.
 * (Real-time tasks here only sleep: they cannot starve the machine.)
 */
#include "zdtm.h"
#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>

#ifndef SCHED_RESET_ON_FORK
#define SCHED_RESET_ON_FORK 0x40000000
#endif

static int thr_ok = -1, thr_set;

static int check_self(const char *who, int policy, int prio)
{
	struct sched_param sp;
	int p = sched_getscheduler(0);

	if (sched_getparam(0, &sp))
		return -1;
	if (p != policy || sp.sched_priority != prio) {
		zdtm_log("%s: policy %#x prio %d, want %#x prio %d", who, p, sp.sched_priority, policy, prio);
		return -1;
	}
	return 0;
}

static void *thread_main(void *arg)
{
	struct sched_param sp = { .sched_priority = 7 };

	(void)arg;
	if (sched_setscheduler(0, SCHED_FIFO, &sp))
		zdtm_die("thread: SCHED_FIFO");
	__atomic_store_n(&thr_set, 1, __ATOMIC_RELEASE);
	zdtm_wait_go();
	__atomic_store_n(&thr_ok, check_self("thread", SCHED_FIFO, 7), __ATOMIC_RELEASE);
	return NULL;
}

int main(void)
{
	struct sched_param sp = { .sched_priority = 11 };
	pthread_t th;
	pid_t c;
	int st;

	zdtm_init();
	c = fork();
	if (c < 0)
		zdtm_die("fork");
	if (c == 0) {
		zdtm_child_forget_ready();
		if (sched_setscheduler(0, SCHED_RR, &sp))
			_exit(2);
		zdtm_wait_go();
		_exit(check_self("child", SCHED_RR, 11) ? 1 : 0);
	}
	sp.sched_priority = 3;
	if (sched_setscheduler(0, SCHED_RR | SCHED_RESET_ON_FORK, &sp))
		zdtm_die("SCHED_RR");
	if (pthread_create(&th, NULL, thread_main, NULL))
		zdtm_die("pthread_create");
	while (!__atomic_load_n(&thr_set, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(1);
	zdtm_ready();
	zdtm_wait_go();
	CHECK(check_self("main", SCHED_RR | SCHED_RESET_ON_FORK, 3) == 0, "main thread: policy/priority changed");
	pthread_join(th, NULL);
	CHECK(thr_ok == 0, "thread: policy/priority changed");
	if (waitpid(c, &st, 0) != c)
		fail("waitpid: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: policy/priority changed (status %#x)", st);
	zdtm_finish();
}
