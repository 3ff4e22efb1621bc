/*
 * fd_epoll: an epoll set (fd 42) holding an eventfd (fd 43, data
 * 0xE0E0, EPOLLIN, count 1 so it is ready) and a pipe read end (fd 44,
 * data 0xB1B1, EPOLLIN|EPOLLET, empty). After restore: the fdinfo targets
 * (fd, events, data) are the same, epoll_wait reports only the eventfd with its data,
 * EPOLL_CTL_MOD on the pipe (by fd number) works, the pipe turns ready
 * when written, EPOLL_CTL_DEL of the eventfd works, adding it back works
 * and adding it twice gives EEXIST.
 */
#include "zdtm.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>

#define EP 42
#define EV 43
#define PR 44
#define PW 45

/*
 * tfd_lines collects "tfd N events E data D" of every target in the
 * epoll fdinfo, sorted by tfd. Inode and device are left out: the
 * targets are new objects after a restore.
 */
static int tfd_lines(char *out, size_t size)
{
	char path[64], buf[4096], *p;
	struct {
		int tfd;
		unsigned events;
		unsigned long long data;
	} t[16], tmp;
	int n = 0, i, j;
	size_t len = 0;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", EP);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (p = strstr(buf, "tfd:"); p && n < 16; p = strstr(p + 1, "tfd:"))
		if (sscanf(p, "tfd: %d events: %x data: %llx", &t[n].tfd, &t[n].events, &t[n].data) == 3)
			n++;
	for (i = 0; i < n; i++)
		for (j = i + 1; j < n; j++)
			if (t[j].tfd < t[i].tfd) {
				tmp = t[i];
				t[i] = t[j];
				t[j] = tmp;
			}
	out[0] = 0;
	for (i = 0; i < n; i++)
		len += snprintf(out + len, size - len, "tfd %d events %#x data %#llx; ", t[i].tfd, t[i].events, t[i].data);
	return 0;
}

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("dup2 %d", want);
	close(fd);
}

int main(void)
{
	struct epoll_event ev, out[4];
	char tfd0[1024], tfd1[1024];
	uint64_t one = 1;
	int p[2], n;

	zdtm_init();
	place(epoll_create1(0), EP);
	place(eventfd(0, EFD_NONBLOCK), EV);
	if (pipe(p))
		zdtm_die("pipe");
	place(p[0], PR);
	place(p[1], PW);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0xE0E0 };
	if (epoll_ctl(EP, EPOLL_CTL_ADD, EV, &ev))
		zdtm_die("add eventfd");
	ev = (struct epoll_event){ .events = EPOLLIN | EPOLLET, .data.u64 = 0xB1B1 };
	if (epoll_ctl(EP, EPOLL_CTL_ADD, PR, &ev))
		zdtm_die("add pipe");
	if (write(EV, &one, 8) != 8)
		zdtm_die("write eventfd");
	if (tfd_lines(tfd0, sizeof(tfd0)))
		zdtm_die("fdinfo");

	zdtm_ready();
	zdtm_wait_go();

	if (tfd_lines(tfd1, sizeof(tfd1)))
		fail("fdinfo of fd %d: %s", EP, strerror(errno));
	else
		CHECK(strcmp(tfd0, tfd1) == 0, "epoll targets: %s want: %s", tfd1, tfd0);
	n = epoll_wait(EP, out, 4, 0);
	CHECK(n == 1 && out[0].data.u64 == 0xE0E0 && out[0].events == EPOLLIN, "epoll_wait: %d events, first data %#lx",
	      n, n > 0 ? (unsigned long)out[0].data.u64 : 0UL);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0xB2B2 };
	CHECK(epoll_ctl(EP, EPOLL_CTL_MOD, PR, &ev) == 0, "EPOLL_CTL_MOD fd %d: %s", PR, strerror(errno));
	CHECK(write(PW, "x", 1) == 1, "write pipe");
	CHECK(epoll_ctl(EP, EPOLL_CTL_DEL, EV, NULL) == 0, "EPOLL_CTL_DEL fd %d: %s", EV, strerror(errno));
	n = epoll_wait(EP, out, 4, 1000);
	CHECK(n == 1 && out[0].data.u64 == 0xB2B2, "after MOD/DEL: %d events, first data %#lx, want 1 0xb2b2", n,
	      n > 0 ? (unsigned long)out[0].data.u64 : 0UL);
	ev = (struct epoll_event){ .events = EPOLLIN, .data.u64 = 0xE1E1 };
	CHECK(epoll_ctl(EP, EPOLL_CTL_ADD, EV, &ev) == 0, "re-ADD eventfd: %s", strerror(errno));
	CHECK(epoll_ctl(EP, EPOLL_CTL_ADD, EV, &ev) == -1 && errno == EEXIST, "second ADD did not give EEXIST");
	zdtm_finish();
}
