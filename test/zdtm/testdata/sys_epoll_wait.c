/*
 * sys_epoll_wait: epoll_wait() and epoll_pwait() in progress when
 * checkpointed.
 *   - the main thread waits with no timeout on an epoll set holding a pipe
 *     (data 0x1111) and an eventfd (data 0x2222);
 *   - a second thread waits with a 20 s timeout on its own epoll set.
 * After go a helper writes the eventfd and the second thread's pipe: the
 * main thread gets exactly the eventfd event with its data, the second
 * thread its pipe event, no timeout.
 *
 * epoll_wait is never restarted by the kernel: Linux documents EINTR from
 * it after a mere stop signal and SIGCONT (signal(7)), and a ptrace freeze
 * is such a stop. So an EINTR is retried, as every epoll user must, and
 * only logged.
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>

static int pmain[2], pthr[2], efd, ep_main, ep_thr;
static int thr_ret = -2, thr_errno;
static struct epoll_event thr_ev;
static int eintr;

static void *waiter(void *arg)
{
	sigset_t m;

	(void)arg;
	sigemptyset(&m);
	do {
		thr_ret = epoll_pwait(ep_thr, &thr_ev, 1, 20000, &m);
		thr_errno = errno;
	} while (thr_ret == -1 && thr_errno == EINTR && __atomic_add_fetch(&eintr, 1, __ATOMIC_RELAXED));
	return NULL;
}

static void *waker(void *arg)
{
	uint64_t one = 1;

	(void)arg;
	zdtm_wait_go();
	if (write(efd, &one, 8) != 8 || write(pthr[1], "x", 1) != 1)
		fail("waker: write: %s", strerror(errno));
	return NULL;
}

static void add(int ep, int fd, uint64_t data)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = data };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev))
		zdtm_die("epoll_ctl add %d", fd);
}

int main(void)
{
	struct epoll_event ev[4];
	pthread_t th1, th2;
	int r;

	zdtm_init();
	efd = eventfd(0, 0);
	ep_main = epoll_create1(EPOLL_CLOEXEC);
	ep_thr = epoll_create1(0);
	if (pipe(pmain) || pipe(pthr) || efd < 0 || ep_main < 0 || ep_thr < 0)
		zdtm_die("set-up");
	add(ep_main, pmain[0], 0x1111);
	add(ep_main, efd, 0x2222);
	add(ep_thr, pthr[0], 0x3333);
	if (pthread_create(&th1, NULL, waiter, NULL) || pthread_create(&th2, NULL, waker, NULL))
		zdtm_die("pthread_create");

	zdtm_ready();
	do
		r = epoll_wait(ep_main, ev, 4, -1); /* in progress at checkpoint time */
	while (r == -1 && errno == EINTR && __atomic_add_fetch(&eintr, 1, __ATOMIC_RELAXED));

	CHECK(r == 1, "epoll_wait returned %d (%s), want 1", r, r < 0 ? strerror(errno) : "");
	if (r == 1)
		CHECK(ev[0].data.u64 == 0x2222 && ev[0].events == EPOLLIN, "event data %#lx events %#x, want 0x2222 EPOLLIN",
		      (unsigned long)ev[0].data.u64, ev[0].events);
	pthread_join(th1, NULL);
	pthread_join(th2, NULL);
	CHECK(thr_ret == 1, "epoll_pwait returned %d (%s), want 1", thr_ret,
	      thr_ret < 0 ? strerror(thr_errno) : "timeout?");
	if (thr_ret == 1)
		CHECK(thr_ev.data.u64 == 0x3333, "second thread's event data %#lx, want 0x3333",
		      (unsigned long)thr_ev.data.u64);
	if (eintr)
		zdtm_log("note: %d EINTR from epoll_wait/epoll_pwait, retried", eintr);
	zdtm_finish();
}
