/*
 * timer_posix: POSIX timers.
 *   T1 CLOCK_MONOTONIC, SIGEV_SIGNAL SIGRTMIN+2, value 0x1111, every 20 ms;
 *   T2 CLOCK_REALTIME, SIGEV_SIGNAL SIGRTMIN+3, one-shot in 100 s;
 *   T3 CLOCK_MONOTONIC, SIGEV_THREAD_ID to a helper thread, SIGRTMIN+4,
 *      every 30 ms;
 *   T4 CLOCK_BOOTTIME, SIGEV_NONE, one-shot in 50 s.
 * After restore the same timer ids work (timer_gettime on each: intervals
 * equal, remaining times within bounds), /proc/self/timers is the same,
 * T1 keeps firing with its value and si_code SI_TIMER, T3 keeps firing in
 * the helper thread, T2 re-armed to 1 ms fires, and all delete cleanly.
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

#define S1 (SIGRTMIN + 2)
#define S2 (SIGRTMIN + 3)
#define S3 (SIGRTMIN + 4)

static timer_t t1, t2, t3, t4;
static volatile int n1, n2, n3, bad_val, bad_code, bad_tid;
static pid_t helper_tid;
static int helper_done;

static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (si->si_code != SI_TIMER)
		bad_code++;
	if (sig == S1) {
		n1++;
		if (si->si_value.sival_int != 0x1111)
			bad_val++;
	} else if (sig == S2) {
		n2++;
	} else if (sig == S3) {
		n3++;
		if (zdtm_gettid() != helper_tid)
			bad_tid++;
	}
}

static void *helper(void *arg)
{
	(void)arg;
	__atomic_store_n(&helper_tid, zdtm_gettid(), __ATOMIC_RELEASE);
	while (!__atomic_load_n(&helper_done, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(2);
	return NULL;
}

static void mk(clockid_t clk, int notify, int sig, int val, pid_t tid, timer_t *t)
{
	struct sigevent sev;

	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = notify;
	sev.sigev_signo = sig;
	sev.sigev_value.sival_int = val;
	if (notify == SIGEV_THREAD_ID)
		sev.sigev_notify_thread_id = tid;
	if (timer_create(clk, &sev, t))
		zdtm_die("timer_create");
}

static void arm(timer_t t, int64_t value, int64_t interval)
{
	struct itimerspec its = { { interval / 1000000000LL, interval % 1000000000LL },
				  { value / 1000000000LL, value % 1000000000LL } };
	if (timer_settime(t, 0, &its, NULL))
		zdtm_die("timer_settime");
}

static int64_t ts_ns(struct timespec ts) { return ts.tv_sec * 1000000000LL + ts.tv_nsec; }

static void check(const char *name, timer_t t, int64_t max_value, int64_t min_value, int64_t interval)
{
	struct itimerspec its;

	if (timer_gettime(t, &its)) {
		fail("%s: timer_gettime: %s (timer id gone?)", name, strerror(errno));
		return;
	}
	CHECK(ts_ns(its.it_interval) == interval, "%s: interval %lld ns, want %lld", name,
	      (long long)ts_ns(its.it_interval), (long long)interval);
	CHECK(ts_ns(its.it_value) > min_value && ts_ns(its.it_value) <= max_value, "%s: remaining %lld ns, want (%lld, %lld]",
	      name, (long long)ts_ns(its.it_value), (long long)min_value, (long long)max_value);
}

static int wait_count(volatile int *n, int want)
{
	int64_t start = zdtm_mono_ns();
	while (*n < want && zdtm_mono_ns() - start < 2000000000LL)
		zdtm_sleep_ms(2);
	return *n >= want;
}

int main(void)
{
	static char timers0[4096], timers1[4096];
	struct sigaction sa;
	pthread_t th;
	sigset_t s3;
	int b1, b3;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(S1, &sa, NULL);
	sigaction(S2, &sa, NULL);
	sigaction(S3, &sa, NULL);
	/* S3 only in the helper: block it here before the helper inherits */
	if (pthread_create(&th, NULL, helper, NULL))
		zdtm_die("pthread_create");
	while (!__atomic_load_n(&helper_tid, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(1);
	sigemptyset(&s3);
	sigaddset(&s3, S3);
	pthread_sigmask(SIG_BLOCK, &s3, NULL);

	mk(CLOCK_MONOTONIC, SIGEV_SIGNAL, S1, 0x1111, 0, &t1);
	mk(CLOCK_REALTIME, SIGEV_SIGNAL, S2, 0x2222, 0, &t2);
	mk(CLOCK_MONOTONIC, SIGEV_THREAD_ID, S3, 0x3333, helper_tid, &t3);
	mk(CLOCK_BOOTTIME, SIGEV_NONE, 0, 0, 0, &t4);
	arm(t1, 20000000, 20000000);
	arm(t2, 100000000000LL, 0);
	arm(t3, 30000000, 30000000);
	arm(t4, 50000000000LL, 0);
	if (!wait_count(&n1, 2) || !wait_count(&n3, 2))
		zdtm_die("timers do not fire");
	if (zdtm_read_file("/proc/self/timers", timers0, sizeof(timers0)) < 0)
		zdtm_die("read /proc/self/timers");

	zdtm_ready();
	zdtm_wait_go();

	check("T1", t1, 20000000, 0, 20000000);
	check("T2", t2, 100000000000LL, 90000000000LL, 0);
	check("T3", t3, 30000000, 0, 30000000);
	check("T4", t4, 50000000000LL, 40000000000LL, 0);
	if (zdtm_read_file("/proc/self/timers", timers1, sizeof(timers1)) < 0)
		fail("read /proc/self/timers: %s", strerror(errno));
	else
		CHECK(strcmp(timers0, timers1) == 0, "/proc/self/timers differs:\n%s\nwant:\n%s", timers1, timers0);
	b1 = n1;
	b3 = n3;
	CHECK(wait_count(&n1, b1 + 5), "T1 fired %d times in 2 s after restore", n1 - b1);
	CHECK(wait_count(&n3, b3 + 5), "T3 fired %d times in 2 s after restore", n3 - b3);
	CHECK(timer_getoverrun(t1) >= 0, "timer_getoverrun T1: %s", strerror(errno));
	arm(t2, 1000000, 0);
	CHECK(wait_count(&n2, 1), "T2 re-armed to 1 ms did not fire");
	CHECK(!bad_val && !bad_code && !bad_tid, "bad signals: %d wrong value, %d wrong si_code, %d in wrong thread",
	      bad_val, bad_code, bad_tid);
	CHECK(timer_delete(t1) == 0 && timer_delete(t2) == 0 && timer_delete(t3) == 0 && timer_delete(t4) == 0,
	      "timer_delete: %s", strerror(errno));
	__atomic_store_n(&helper_done, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	zdtm_finish();
}
