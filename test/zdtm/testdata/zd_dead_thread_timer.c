/*
 * zd_dead_thread_timer: a POSIX timer aimed (SIGEV_THREAD_ID, SIGRTMIN+1)
 * at a thread that has exited since. The thread created it, armed it
 * one-shot 100 s away, and returned; the main thread joined it. A second
 * timer (SIGEV_SIGNAL, CLOCK_REALTIME, 50 s) was created by the main
 * thread after the first.
 * After restore both timer ids still exist: timer_gettime on the dead
 * thread's timer works and reports <= 100 s remaining (not disarmed, not
 * more), the second timer keeps its id and its 50 s, no SIGRTMIN+1 has
 * been raised in the process, and both delete cleanly.
 * Modelled on zdtm's dead_thread_posix_timer.
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

static timer_t tdead, tmain;
static int terr;

static void *worker(void *arg)
{
	struct sigevent sev;
	struct itimerspec its;

	(void)arg;
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = SIGRTMIN + 1;
	sev.sigev_notify_thread_id = zdtm_gettid();
	if (timer_create(CLOCK_MONOTONIC, &sev, &tdead)) {
		terr = errno;
		return NULL;
	}
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = 100;
	if (timer_settime(tdead, 0, &its, NULL))
		terr = errno;
	return NULL;
}

int main(void)
{
	struct itimerspec its, cur;
	struct sigevent sev;
	pthread_t th;
	sigset_t set;

	zdtm_init();
	sigemptyset(&set);
	sigaddset(&set, SIGRTMIN + 1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (pthread_create(&th, NULL, worker, NULL) || pthread_join(th, NULL) || terr)
		zdtm_die("worker: %s", strerror(terr));
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 2;
	if (timer_create(CLOCK_REALTIME, &sev, &tmain))
		zdtm_die("timer_create main");
	memset(&its, 0, sizeof(its));
	its.it_value.tv_sec = 50;
	if (timer_settime(tmain, 0, &its, NULL))
		zdtm_die("settime main");
	zdtm_log("timer ids: dead thread %ld, main %ld", (long)tdead, (long)tmain);

	zdtm_ready();
	zdtm_wait_go();

	memset(&cur, 0, sizeof(cur));
	CHECK(timer_gettime(tdead, &cur) == 0, "timer_gettime(dead thread's timer %ld): %s", (long)tdead,
	      strerror(errno));
	CHECK(cur.it_value.tv_sec > 0 && cur.it_value.tv_sec < 100, "dead thread's timer: %ld.%09ld left, want (0,100) s",
	      (long)cur.it_value.tv_sec, cur.it_value.tv_nsec);
	memset(&cur, 0, sizeof(cur));
	CHECK(timer_gettime(tmain, &cur) == 0 && cur.it_value.tv_sec > 0 && cur.it_value.tv_sec < 50,
	      "main timer %ld: %s, %ld s left", (long)tmain, strerror(errno), (long)cur.it_value.tv_sec);
	sigpending(&set);
	CHECK(!sigismember(&set, SIGRTMIN + 1), "SIGRTMIN+1 is pending in the process");
	CHECK(timer_delete(tdead) == 0, "timer_delete dead thread's timer: %s", strerror(errno));
	CHECK(timer_delete(tmain) == 0, "timer_delete main timer: %s", strerror(errno));
	zdtm_finish();
}
