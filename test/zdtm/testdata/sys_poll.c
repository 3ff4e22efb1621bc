/*
 * sys_poll: poll() and ppoll() in progress when checkpointed.
 *   - the main thread is in poll() with no timeout on a pipe and an
 *     eventfd;
 *   - a second thread is in ppoll() with a 20 s timeout and a signal mask
 *     on another pipe.
 * After go a helper writes to both pipes (not the eventfd): each call
 * returns 1 with POLLIN on the pipe only, without EINTR and well before
 * the 20 s timeout; ppoll's mask was in force during the call only.
 */
#include "zdtm.h"
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>

static int p_main[2], p_thr[2], efd;
static int thr_ret = -2, thr_errno;
static short thr_revents;
static int64_t thr_elapsed;
static int thr_mask_stuck;

static void *ppoller(void *arg)
{
	struct pollfd pf = { .fd = p_thr[0], .events = POLLIN };
	struct timespec to = { 20, 0 };
	sigset_t m;
	int64_t t;

	(void)arg;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR2);
	t = zdtm_mono_ns();
	thr_ret = ppoll(&pf, 1, &to, &m);
	thr_errno = errno;
	thr_elapsed = zdtm_mono_ns() - t;
	thr_revents = pf.revents;
	pthread_sigmask(SIG_BLOCK, NULL, &m);
	thr_mask_stuck = sigismember(&m, SIGUSR2);
	return NULL;
}

static void *waker(void *arg)
{
	(void)arg;
	zdtm_wait_go();
	if (write(p_main[1], "m", 1) != 1 || write(p_thr[1], "t", 1) != 1)
		fail("waker: write: %s", strerror(errno));
	return NULL;
}

int main(void)
{
	struct pollfd pf[2];
	pthread_t th1, th2;
	int r;

	zdtm_init();
	efd = eventfd(0, EFD_NONBLOCK);
	if (pipe(p_main) || pipe(p_thr) || efd < 0)
		zdtm_die("pipe/eventfd");
	if (pthread_create(&th1, NULL, ppoller, NULL) || pthread_create(&th2, NULL, waker, NULL))
		zdtm_die("pthread_create");

	zdtm_ready();
	pf[0] = (struct pollfd){ .fd = p_main[0], .events = POLLIN };
	pf[1] = (struct pollfd){ .fd = efd, .events = POLLIN };
	r = poll(pf, 2, -1); /* in progress at checkpoint time */

	CHECK(r == 1, "poll returned %d (%s), want 1", r, r < 0 ? strerror(errno) : "");
	CHECK(pf[0].revents == POLLIN && pf[1].revents == 0, "poll revents %#x %#x, want POLLIN 0", pf[0].revents,
	      pf[1].revents);
	pthread_join(th1, NULL);
	pthread_join(th2, NULL);
	CHECK(thr_ret == 1, "ppoll returned %d (%s), want 1", thr_ret, thr_ret < 0 ? strerror(thr_errno) : "timeout?");
	CHECK(thr_revents == POLLIN, "ppoll revents %#x", thr_revents);
	CHECK(thr_elapsed < 15000000000LL, "ppoll took %.1fs", thr_elapsed / 1e9);
	CHECK(!thr_mask_stuck, "ppoll's temporary signal mask stayed after the call");
	zdtm_finish();
}
