/*
 * fd_epoll_closed: epoll items outlive the fd number they were added
 * with. Pipe A's read end is added as fd N, dup'd to M, and N closed: the
 * item (A, N) stays. A new pipe B's read end then takes number N and is
 * added too: two items with fd N. A third pipe C is added as fd K and K
 * is dup'd over by /dev/null (dup2), so K now names another file while the
 * item (C, K) lives on through C's other fd. After restore epoll_wait
 * reports each pipe by its own data tag when written, fdinfo lists the same
 * three items, and EPOLL_CTL_DEL of N removes only B's item.
 */
#include "zdtm.h"
#include <sys/epoll.h>

static int tags(int ep, uint64_t *out, int max)
{
	struct epoll_event ev[8];
	int n = epoll_wait(ep, ev, 8, 200);
	for (int i = 0; i < n && i < max; i++)
		out[i] = ev[i].data.u64;
	return n;
}

static int count_items(int ep)
{
	char path[64], buf[4096], *p;
	int n = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; (p = strstr(p, "tfd:")); p++)
		n++;
	return n;
}

static void drain(int fd)
{
	char b[64];
	while (read(fd, b, sizeof(b)) > 0)
		;
}

int main(void)
{
	struct epoll_event ev;
	int ep, a[2], b[2], c[2], n, m, k, kdup;
	uint64_t got[8];

	zdtm_init();
	ep = epoll_create1(0);
	if (ep < 0 || pipe2(a, O_NONBLOCK) || pipe2(c, O_NONBLOCK))
		zdtm_die("setup");
	n = a[0];
	ev.events = EPOLLIN;
	ev.data.u64 = 0xA;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, n, &ev))
		zdtm_die("add A");
	m = dup(n);
	close(n);
	if (pipe2(b, O_NONBLOCK) || b[0] != n)
		zdtm_die("B did not take number %d (got %d)", n, b[0]);
	ev.data.u64 = 0xB;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, n, &ev))
		zdtm_die("add B");
	k = c[0];
	ev.data.u64 = 0xC;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, k, &ev))
		zdtm_die("add C");
	kdup = dup(k);
	if (dup2(open("/dev/null", O_RDONLY), k) != k)
		zdtm_die("dup2 over K");
	if (count_items(ep) != 3)
		zdtm_die("fdinfo: %d items", count_items(ep));

	zdtm_ready();
	zdtm_wait_go();

	CHECK(count_items(ep) == 3, "fdinfo lists %d items, want 3", count_items(ep));
	CHECK(tags(ep, got, 8) == 0, "events before any write");
	if (write(a[1], "a", 1) != 1)
		fail("write A");
	CHECK(tags(ep, got, 8) == 1 && got[0] == 0xA, "write to A: want tag A");
	drain(m);
	if (write(b[1], "b", 1) != 1)
		fail("write B");
	CHECK(tags(ep, got, 8) == 1 && got[0] == 0xB, "write to B: want tag B");
	drain(b[0]);
	if (write(c[1], "c", 1) != 1)
		fail("write C");
	CHECK(tags(ep, got, 8) == 1 && got[0] == 0xC, "write to C: want tag C");
	drain(kdup);
	CHECK(epoll_ctl(ep, EPOLL_CTL_DEL, n, NULL) == 0, "EPOLL_CTL_DEL %d: %s", n, strerror(errno));
	CHECK(count_items(ep) == 2, "after DEL: %d items, want 2", count_items(ep));
	if (write(a[1], "a", 1) != 1)
		fail("write A");
	CHECK(tags(ep, got, 8) == 1 && got[0] == 0xA, "A's item went with B's");
	zdtm_finish();
}
