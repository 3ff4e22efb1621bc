/*
 * timer_itimer: interval timers.
 *   - ITIMER_REAL every 20 ms (SIGALRM counted by a handler);
 *   - ITIMER_VIRTUAL 100 s with a 50 s interval, ITIMER_PROF 200 s with a
 *     70 s interval (they barely move: the program uses little CPU).
 * After restore the intervals are the same, the remaining values are
 * within bounds (never more than what was set, not zero), and SIGALRMs
 * keep coming: at least 5 more within a second.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/time.h>

static volatile int n_alrm;

static void on_alrm(int sig)
{
	(void)sig;
	n_alrm++;
}

static int64_t tv_ns(struct timeval tv) { return tv.tv_sec * 1000000000LL + tv.tv_usec * 1000LL; }

static void check_itimer(int which, const char *name, int64_t value, int64_t interval)
{
	struct itimerval it;

	if (getitimer(which, &it)) {
		fail("getitimer %s: %s", name, strerror(errno));
		return;
	}
	CHECK(tv_ns(it.it_interval) == interval, "%s interval %lld ns, want %lld", name,
	      (long long)tv_ns(it.it_interval), (long long)interval);
	/* CPU-time timers are kept in ticks: allow one tick (up to 20 ms) over */
	CHECK(tv_ns(it.it_value) > 0 && tv_ns(it.it_value) <= value + 20000000, "%s remaining %lld ns, want (0, %lld]",
	      name, (long long)tv_ns(it.it_value), (long long)value + 20000000);
	CHECK(tv_ns(it.it_value) > value - 10000000000LL, "%s remaining %lld ns: more than 10 s of CPU time gone?",
	      name, (long long)tv_ns(it.it_value));
}

int main(void)
{
	struct itimerval real = { { 0, 20000 }, { 0, 20000 } };
	struct itimerval virt = { { 50, 0 }, { 100, 0 } };
	struct itimerval prof = { { 70, 0 }, { 200, 0 } };
	struct sigaction sa;
	int64_t start;
	int before;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alrm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL) ||
	    setitimer(ITIMER_PROF, &prof, NULL))
		zdtm_die("setitimer");
	while (n_alrm < 3)
		zdtm_sleep_ms(5);

	zdtm_ready();
	zdtm_wait_go();

	{
		struct itimerval it;
		if (getitimer(ITIMER_REAL, &it) == 0) {
			CHECK(tv_ns(it.it_interval) == 20000000, "ITIMER_REAL interval %lld ns, want 20 ms",
			      (long long)tv_ns(it.it_interval));
			CHECK(tv_ns(it.it_value) > 0 && tv_ns(it.it_value) <= 20000000,
			      "ITIMER_REAL remaining %lld ns, want (0, 20 ms]", (long long)tv_ns(it.it_value));
		} else
			fail("getitimer REAL: %s", strerror(errno));
	}
	check_itimer(ITIMER_VIRTUAL, "ITIMER_VIRTUAL", 100000000000LL, 50000000000LL);
	check_itimer(ITIMER_PROF, "ITIMER_PROF", 200000000000LL, 70000000000LL);
	before = n_alrm;
	for (start = zdtm_mono_ns(); n_alrm < before + 5 && zdtm_mono_ns() - start < 1000000000LL;)
		zdtm_sleep_ms(5);
	CHECK(n_alrm >= before + 5, "only %d SIGALRMs in a second after restore", n_alrm - before);
	zdtm_finish();
}
