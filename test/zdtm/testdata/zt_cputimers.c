/*
 * zt_cputimers: POSIX timers on CPU-time clocks.
 *   TP1: CLOCK_PROCESS_CPUTIME_ID, SIGRTMIN+2, value 0x51, one-shot 1000 s
 *        of CPU time (never fires here);
 *   TP2: CLOCK_PROCESS_CPUTIME_ID, SIGRTMIN+3, every 20 ms of CPU time;
 *   TT:  the spinner thread S's own CLOCK_THREAD_CPUTIME_ID, SIGEV_THREAD_ID
 *        to S, SIGRTMIN+4, every 10 ms of S's CPU time;
 *   TS:  created by the main thread on S's clock (pthread_getcpuclockid),
 *        SIGEV_NONE, one-shot 500 s.
 * S spins only while told to (50 ms before ready, 300 ms after go).
 * After restore timer_gettime gives each its interval (0, 20 ms, 10 ms,
 * 0) and a remaining time that is positive and not more than what was
 * set; /proc/self/timers lists the four clocks; while S spins 300 ms, TP2
 * and TT fire again (counted by handlers, TT's in S only) and TP1 never.
 * (The process CPU clock itself is logged, not checked.)
 * Modelled on zdtm's posix_timers (its CPU-time clocks).
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

static timer_t tp1, tp2, tt, ts;
static volatile int spin, quit, n1, n2, nt, nt_other;
static pid_t stid;
static volatile int ready_s;

static void h(int sig, siginfo_t *si, void *uc)
{
	(void)si;
	(void)uc;
	if (sig == SIGRTMIN + 2)
		n1++;
	else if (sig == SIGRTMIN + 3)
		n2++;
	else if (sig == SIGRTMIN + 4) {
		if (zdtm_gettid() == stid)
			nt++;
		else
			nt_other++;
	}
}

static void arm(timer_t t, long sec, long nsec, long isec, long insec)
{
	struct itimerspec its = { { isec, insec }, { sec, nsec } };
	if (timer_settime(t, 0, &its, NULL))
		zdtm_die("timer_settime");
}

static void *spinner(void *a)
{
	struct sigevent sev;
	(void)a;
	stid = zdtm_gettid();
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev.sigev_signo = SIGRTMIN + 4;
	sev.sigev_notify_thread_id = stid;
	if (timer_create(CLOCK_THREAD_CPUTIME_ID, &sev, &tt))
		zdtm_die("timer_create TT");
	arm(tt, 0, 10000000, 0, 10000000);
	ready_s = 1;
	while (!quit) {
		if (spin) {
			volatile unsigned long x = 0;
			int i;
			for (i = 0; i < 100000; i++)
				x += i;
		} else
			zdtm_sleep_ms(2);
	}
	return NULL;
}

static void spin_for(int ms)
{
	spin = 1;
	zdtm_sleep_ms(ms);
	spin = 0;
}

static void check_timer(timer_t t, const char *name, long max_ns, long int_ns)
{
	struct itimerspec cur;
	long long left;

	memset(&cur, 0, sizeof(cur));
	if (timer_gettime(t, &cur)) {
		fail("timer_gettime %s: %s", name, strerror(errno));
		return;
	}
	left = cur.it_value.tv_sec * 1000000000LL + cur.it_value.tv_nsec;
	CHECK(cur.it_interval.tv_sec * 1000000000LL + cur.it_interval.tv_nsec == int_ns,
	      "%s interval %ld.%09ld, want %ld ns", name, (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec, int_ns);
	CHECK(left > 0 && left <= max_ns, "%s remaining %lld ns, want (0, %ld]", name, left, max_ns);
}

int main(void)
{
	struct sigaction sa;
	struct sigevent sev;
	clockid_t sclk;
	pthread_t th;
	char buf[4096];
	int i1, i2, it;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = h;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGRTMIN + 2, &sa, NULL);
	sigaction(SIGRTMIN + 3, &sa, NULL);
	sigaction(SIGRTMIN + 4, &sa, NULL);
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 2;
	sev.sigev_value.sival_int = 0x51;
	if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &tp1))
		zdtm_die("timer_create TP1");
	sev.sigev_signo = SIGRTMIN + 3;
	if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &sev, &tp2))
		zdtm_die("timer_create TP2");
	arm(tp1, 1000, 0, 0, 0);
	arm(tp2, 0, 20000000, 0, 20000000);
	if (pthread_create(&th, NULL, spinner, NULL))
		zdtm_die("pthread_create");
	while (!ready_s)
		zdtm_sleep_ms(1);
	if (pthread_getcpuclockid(th, &sclk))
		zdtm_die("pthread_getcpuclockid");
	memset(&sev, 0, sizeof(sev));
	sev.sigev_notify = SIGEV_NONE;
	if (timer_create(sclk, &sev, &ts))
		zdtm_die("timer_create TS");
	arm(ts, 500, 0, 0, 0);
	spin_for(50);
	zdtm_log("before: n2 %d nt %d, process cpu %lld ns", n2, nt, (long long)zdtm_now_ns(CLOCK_PROCESS_CPUTIME_ID));

	zdtm_ready();
	zdtm_wait_go();

	zdtm_log("after: process cpu %lld ns", (long long)zdtm_now_ns(CLOCK_PROCESS_CPUTIME_ID));
	check_timer(tp1, "TP1", 1000000000000L, 0);
	check_timer(tp2, "TP2", 20000000, 20000000);
	check_timer(tt, "TT", 10000000, 10000000);
	check_timer(ts, "TS", 500000000000L, 0);
	if (zdtm_read_file("/proc/self/timers", buf, sizeof(buf)) > 0)
		zdtm_log("timers:\n%s", buf);
	i1 = n1;
	i2 = n2;
	it = nt;
	spin_for(300);
	zdtm_sleep_ms(20);
	CHECK(n2 - i2 >= 3, "TP2 fired %d times in 300 ms of spinning, want >= 3", n2 - i2);
	CHECK(nt - it >= 3, "TT fired %d times in S, want >= 3", nt - it);
	CHECK(nt_other == 0, "TT's signal reached another thread %d times", nt_other);
	CHECK(n1 == i1 && n1 == 0, "TP1 fired (%d)", n1);
	quit = 1;
	pthread_join(th, NULL);
	CHECK(timer_delete(tp1) == 0 && timer_delete(tp2) == 0 && timer_delete(tt) == 0 && timer_delete(ts) == 0,
	      "timer_delete: %s", strerror(errno));
	zdtm_finish();
}
