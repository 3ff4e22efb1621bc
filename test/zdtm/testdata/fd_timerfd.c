/*
 * fd_timerfd: armed timerfds.
 *   T1 (fd 36) CLOCK_MONOTONIC, every 20 ms;
 *   T2 (fd 37) CLOCK_REALTIME, one-shot 100 s, non-blocking;
 *   T3 (fd 38) CLOCK_BOOTTIME, absolute deadline start + 60 s.
 * After restore timerfd_gettime gives the same intervals and remaining
 * times within bounds, T1 keeps expiring (reads give counts >= 1, and
 * expirations keep coming), T2 has not expired.
 */
#include "zdtm.h"
#include <poll.h>
#include <sys/timerfd.h>

static int64_t ns(struct timespec t) { return t.tv_sec * 1000000000LL + t.tv_nsec; }

static int mk(clockid_t clk, int flags, int want)
{
	int fd = timerfd_create(clk, flags);
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("timerfd_create");
	close(fd);
	return want;
}

static void check(const char *name, int fd, int64_t lo, int64_t hi, int64_t interval)
{
	struct itimerspec its;

	if (timerfd_gettime(fd, &its)) {
		fail("%s: timerfd_gettime: %s", name, strerror(errno));
		return;
	}
	CHECK(ns(its.it_interval) == interval, "%s: interval %lld, want %lld", name, (long long)ns(its.it_interval),
	      (long long)interval);
	CHECK(ns(its.it_value) > lo && ns(its.it_value) <= hi, "%s: remaining %lld ns, want (%lld, %lld]", name,
	      (long long)ns(its.it_value), (long long)lo, (long long)hi);
}

int main(void)
{
	struct itimerspec its;
	struct timespec now;
	struct pollfd pf;
	uint64_t n = 0;
	int t1, t2, t3;

	zdtm_init();
	t1 = mk(CLOCK_MONOTONIC, 0, 36);
	t2 = mk(CLOCK_REALTIME, TFD_NONBLOCK, 37);
	t3 = mk(CLOCK_BOOTTIME, TFD_NONBLOCK, 38);
	its = (struct itimerspec){ { 0, 20000000 }, { 0, 20000000 } };
	if (timerfd_settime(t1, 0, &its, NULL))
		zdtm_die("settime t1");
	its = (struct itimerspec){ { 0, 0 }, { 100, 0 } };
	if (timerfd_settime(t2, 0, &its, NULL))
		zdtm_die("settime t2");
	clock_gettime(CLOCK_BOOTTIME, &now);
	its = (struct itimerspec){ { 0, 0 }, { now.tv_sec + 60, now.tv_nsec } };
	if (timerfd_settime(t3, TFD_TIMER_ABSTIME, &its, NULL))
		zdtm_die("settime t3");
	if (read(t1, &n, 8) != 8 || n < 1) /* it runs */
		zdtm_die("read t1");

	zdtm_ready();
	zdtm_wait_go();

	check("T1", t1, 0, 20000000, 20000000);
	check("T2", t2, 90000000000LL, 100000000000LL, 0);
	check("T3", t3, 50000000000LL, 60000000000LL, 0);
	pf = (struct pollfd){ .fd = t1, .events = POLLIN };
	if (poll(&pf, 1, 1000) != 1)
		fail("T1 did not expire within 1 s after restore");
	else
		CHECK(read(t1, &n, 8) == 8 && n >= 1, "T1 read: %lu expirations (%s)", (unsigned long)n, strerror(errno));
	CHECK(read(t2, &n, 8) == -1 && errno == EAGAIN, "T2 (100 s) already expired");
	CHECK(fcntl(t2, F_GETFL) & O_NONBLOCK, "T2 lost O_NONBLOCK");
	its = (struct itimerspec){ { 0, 0 }, { 0, 1000000 } };
	CHECK(timerfd_settime(t2, 0, &its, NULL) == 0, "re-arm T2: %s", strerror(errno));
	pf = (struct pollfd){ .fd = t2, .events = POLLIN };
	CHECK(poll(&pf, 1, 1000) == 1, "T2 re-armed to 1 ms did not fire");
	zdtm_finish();
}
