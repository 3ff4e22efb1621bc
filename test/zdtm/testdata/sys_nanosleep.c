/*
 * sys_nanosleep: sleeps in progress when checkpointed.
 *   - the main thread is in a relative nanosleep(3 s);
 *   - a second thread is in clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME)
 *     until start + 3.5 s.
 * Both must return 0 (no EINTR), not early, and not restarted from zero:
 * the harness waits 1.5 s before dumping this one, so a relative sleep
 * restarted at full length would end after 4.5 s. Upper bound 4.4 s:
 * 1.4 s of slack for the checkpoint and restore themselves.
 */
#include "zdtm.h"
#include <pthread.h>

#define SLEEP_NS 3000000000LL
#define ABS_NS 3500000000LL
#define SLACK_NS 1400000000LL

static int64_t t0;
static int abs_ret = -1;
static int64_t abs_end;

static void *abs_sleeper(void *arg)
{
	struct timespec ts;
	int64_t until = t0 + ABS_NS;

	(void)arg;
	ts.tv_sec = until / 1000000000LL;
	ts.tv_nsec = until % 1000000000LL;
	abs_ret = clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
	abs_end = zdtm_mono_ns();
	return NULL;
}

int main(void)
{
	struct timespec req = { SLEEP_NS / 1000000000LL, SLEEP_NS % 1000000000LL }, rem = { 0, 0 };
	int64_t elapsed;
	pthread_t th;
	int r;

	zdtm_init();
	t0 = zdtm_mono_ns();
	if (pthread_create(&th, NULL, abs_sleeper, NULL))
		zdtm_die("pthread_create");

	zdtm_ready();
	r = nanosleep(&req, &rem); /* in progress at checkpoint time */
	elapsed = zdtm_mono_ns() - t0;

	zdtm_wait_go();
	pthread_join(th, NULL);
	CHECK(r == 0, "nanosleep returned %d (%s), remaining %ld.%09lds", r, r ? strerror(errno) : "",
	      (long)rem.tv_sec, rem.tv_nsec);
	CHECK(elapsed >= SLEEP_NS, "nanosleep(3s) returned after %.3fs: cut short", elapsed / 1e9);
	CHECK(elapsed <= SLEEP_NS + SLACK_NS, "nanosleep(3s) returned after %.3fs: restarted from zero?", elapsed / 1e9);
	CHECK(abs_ret == 0, "clock_nanosleep(TIMER_ABSTIME) returned %d (%s)", abs_ret, strerror(abs_ret));
	CHECK(abs_end - t0 >= ABS_NS, "absolute sleep ended early: %.3fs", (abs_end - t0) / 1e9);
	CHECK(abs_end - t0 <= ABS_NS + SLACK_NS, "absolute sleep ended late: %.3fs", (abs_end - t0) / 1e9);
	zdtm_log("slept %.3fs (relative) and %.3fs (absolute)", elapsed / 1e9, (abs_end - t0) / 1e9);
	zdtm_finish();
}
