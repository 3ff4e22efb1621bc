/*
 * zd_timerfd_ticks: timerfds whose expirations were not read.
 *   T1 (fd 36): CLOCK_MONOTONIC one-shot of 1 ms, expired long before the
 *               dump: disarmed, 1 expiration unread;
 *   T2 (fd 37): CLOCK_MONOTONIC every 5 ms, not read for 300 ms: about 60
 *               expirations pending;
 *   T3 (fd 38): CLOCK_REALTIME absolute, TFD_TIMER_ABSTIME with an
 *               interval of 1 s, first expiry 100 s from now, non-blocking.
 * After restore T1 is disarmed (timerfd_gettime all zero) and a read gives
 * exactly 1; T2's first read gives at least the count it had pending at
 * ready time (about 60; fdinfo "ticks" shows only 1, as the kernel counts
 * them lazily, at read or timerfd_gettime), its interval is 5 ms; T3 has not expired
 * (read: EAGAIN), its interval is 1 s and its next expiry at most 100 s off.
 * Modelled on zdtm's timerfd (the "ticks" it checks).
 */
#include "zdtm.h"
#include <sys/timerfd.h>

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

int main(void)
{
	struct itimerspec its, cur;
	char ticks[64];
	uint64_t n;
	long long t2ticks, t0, due;

	zdtm_init();
	place(timerfd_create(CLOCK_MONOTONIC, 0), 36);
	place(timerfd_create(CLOCK_MONOTONIC, 0), 37);
	place(timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK), 38);
	memset(&its, 0, sizeof(its));
	its.it_value.tv_nsec = 1000000;
	if (timerfd_settime(36, 0, &its, NULL))
		zdtm_die("settime T1");
	its.it_value.tv_nsec = 5000000;
	its.it_interval.tv_nsec = 5000000;
	t0 = zdtm_mono_ns();
	if (timerfd_settime(37, 0, &its, NULL))
		zdtm_die("settime T2");
	clock_gettime(CLOCK_REALTIME, &its.it_value);
	its.it_value.tv_sec += 100;
	its.it_interval.tv_sec = 1;
	its.it_interval.tv_nsec = 0;
	if (timerfd_settime(38, TFD_TIMER_ABSTIME, &its, NULL))
		zdtm_die("settime T3");
	zdtm_sleep_ms(300);
	if (zdtm_fdinfo_field(37, "ticks", ticks, sizeof(ticks)))
		zdtm_die("fdinfo ticks");
	t2ticks = atoll(ticks);
	/* the kernel counts T2's expirations lazily: fdinfo says 1 until a read or gettime */
	due = (zdtm_mono_ns() - t0) / 5000000 - 1;
	zdtm_log("T2 at ready: fdinfo ticks %lld, %lld expirations due", t2ticks, due);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(timerfd_gettime(36, &cur) == 0 && !cur.it_value.tv_sec && !cur.it_value.tv_nsec &&
		      !cur.it_interval.tv_sec && !cur.it_interval.tv_nsec,
	      "T1 is armed again: value %ld.%09ld interval %ld.%09ld", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec,
	      (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
	fcntl(36, F_SETFL, O_NONBLOCK);
	n = 0;
	CHECK(read(36, &n, 8) == 8 && n == 1, "T1: read %llu expirations (%s), want exactly 1", (unsigned long long)n,
	      strerror(errno));
	CHECK(read(36, &n, 8) == -1 && errno == EAGAIN, "T1: a second expiration");
	CHECK(timerfd_gettime(37, &cur) == 0 && cur.it_interval.tv_sec == 0 && cur.it_interval.tv_nsec == 5000000,
	      "T2 interval %ld.%09ld, want 5 ms", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
	n = 0;
	CHECK(read(37, &n, 8) == 8 && (long long)n >= due, "T2: read %llu expirations, want >= %lld (those before the dump)",
	      (unsigned long long)n, due);
	zdtm_log("T2 read %llu", (unsigned long long)n);
	errno = 0;
	CHECK(read(38, &n, 8) == -1 && errno == EAGAIN, "T3: read %s, want EAGAIN", strerror(errno));
	CHECK(timerfd_gettime(38, &cur) == 0 && cur.it_interval.tv_sec == 1 && cur.it_interval.tv_nsec == 0 &&
		      cur.it_value.tv_sec <= 100 && cur.it_value.tv_sec >= 50,
	      "T3: value %ld.%09ld interval %ld.%09ld", (long)cur.it_value.tv_sec, cur.it_value.tv_nsec,
	      (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
	zdtm_finish();
}
