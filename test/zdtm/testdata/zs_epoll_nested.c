/*
 * zs_epoll_nested: epoll sets watching other epoll sets.
 *   E1 (fd 40) watches eventfd V (fd 43, count 1: ready), data 0x11;
 *   E2 (fd 41) watches E1 (EPOLLIN, data 0x21) and pipe P's read end
 *      (fd 44, empty, data 0x22);
 *   E3 (fd 42) watches E2 (EPOLLIN, data 0x31).
 * After restore fdinfo of E2 and E3 lists the same targets; epoll_wait on
 * E3 reports 0x31, on E2 only 0x21, on E1 0x11; after V is drained none is
 * ready; after P is written E2 reports 0x22 and E3 0x31 again.
 * Modelled on zdtm's epoll01.
 */
#include "zdtm.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

static void add(int ep, int fd, uint32_t ev, uint64_t data)
{
	struct epoll_event e = { .events = ev, .data.u64 = data };
	if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e))
		zdtm_die("epoll_ctl add %d to %d", fd, ep);
}

/* ready returns the data tags epoll_wait(ep, 0 timeout) reports, or'ed into a mask of low bytes */
static int ready(int ep, uint64_t *tags, int max)
{
	struct epoll_event ev[8];
	int n = epoll_wait(ep, ev, 8, 0), i;
	for (i = 0; i < n && i < max; i++)
		tags[i] = ev[i].data.u64;
	return n;
}

static int count_tfd(int ep)
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

int main(void)
{
	int p[2], n;
	uint64_t tags[8], v = 1;

	zdtm_init();
	place(epoll_create1(0), 40);
	place(epoll_create1(0), 41);
	place(epoll_create1(0), 42);
	place(eventfd(1, EFD_NONBLOCK), 43);
	if (pipe(p))
		zdtm_die("pipe");
	place(p[0], 44);
	place(p[1], 45);
	add(40, 43, EPOLLIN, 0x11);
	add(41, 40, EPOLLIN, 0x21);
	add(41, 44, EPOLLIN, 0x22);
	add(42, 41, EPOLLIN, 0x31);
	if (ready(42, tags, 8) != 1)
		zdtm_die("E3 not ready before the dump");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(count_tfd(41) == 2, "E2 fdinfo lists %d targets, want 2", count_tfd(41));
	CHECK(count_tfd(42) == 1, "E3 fdinfo lists %d targets, want 1", count_tfd(42));
	n = ready(42, tags, 8);
	CHECK(n == 1 && tags[0] == 0x31, "E3 reports %d events (first %#llx), want 0x31", n,
	      n > 0 ? (unsigned long long)tags[0] : 0ULL);
	n = ready(41, tags, 8);
	CHECK(n == 1 && tags[0] == 0x21, "E2 reports %d events (first %#llx), want only 0x21", n,
	      n > 0 ? (unsigned long long)tags[0] : 0ULL);
	n = ready(40, tags, 8);
	CHECK(n == 1 && tags[0] == 0x11, "E1 reports %d events, want 0x11", n);
	CHECK(read(43, &v, 8) == 8 && v == 1, "eventfd count %llu, want 1", (unsigned long long)v);
	CHECK(ready(42, tags, 8) == 0, "E3 still ready after the eventfd was drained");
	CHECK(ready(41, tags, 8) == 0, "E2 still ready after the eventfd was drained");
	if (write(45, "x", 1) != 1)
		fail("write pipe");
	n = ready(41, tags, 8);
	CHECK(n == 1 && tags[0] == 0x22, "E2 after the pipe write: %d events (first %#llx), want 0x22", n,
	      n > 0 ? (unsigned long long)tags[0] : 0ULL);
	n = ready(42, tags, 8);
	CHECK(n == 1 && tags[0] == 0x31, "E3 after the pipe write: %d events, want 0x31", n);
	zdtm_finish();
}
