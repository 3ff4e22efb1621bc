/*
 * fd_unix_zd_scmep: an epoll fd in flight that watches the socket it is
 * queued on. Datagram pair 20<->21; epoll E watches fd 21 for EPOLLIN
 * (data.fd 21); E is sent twice from 20 (two one-byte messages queued at
 * 21) and closed by the program. After restore: 21 receives E; epoll_wait
 * on it reports fd 21 readable (data.fd 21, EPOLLIN), since the second
 * message is queued; 21 receives the second message, whose fd is the same
 * epoll (kcmp KCMP_FILE); with 21's queue empty, epoll_wait reports
 * nothing; a datagram sent from 20 makes it report fd 21 again.
 * Modelled on zdtm's scm05.
 */
#include "zdtm_unix.h"
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <linux/kcmp.h>

static void ready(int ep, int want, const char *what)
{
	struct epoll_event ev[4];
	int n;

	memset(ev, 0, sizeof(ev));
	n = epoll_wait(ep, ev, 4, 0);
	if (!want) {
		CHECK(n == 0, "%s: epoll_wait gave %d (%s), want nothing ready", what, n, n < 0 ? strerror(errno) : "events");
		return;
	}
	CHECK(n == 1 && ev[0].data.fd == 21 && (ev[0].events & EPOLLIN), "%s: epoll_wait gave %d, fd %d, events %#x; want 1, "
	      "fd 21, EPOLLIN", what, n, ev[0].data.fd, ev[0].events);
}

int main(void)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = 21 };
	int sv[2], ep, fds[MAXFDS], e1 = -1, pid = getpid();

	zdtm_init();
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) || dup2(sv[0], 20) != 20 || dup2(sv[1], 21) != 21)
		zdtm_die("socketpair");
	close(sv[0]);
	close(sv[1]);
	ep = epoll_create1(0);
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, 21, &ev))
		zdtm_die("epoll");
	send_byte_fds(20, &ep, 1, 0);
	send_byte_fds(20, &ep, 1, 0);
	close(ep);

	zdtm_ready();
	zdtm_wait_go();

	if (recv_fds(21, fds, 1) == 1) {
		e1 = fds[0];
		ready(e1, 1, "with the second message queued");
	}
	if (recv_fds(21, fds, 1) == 1 && e1 >= 0) {
		CHECK(syscall(SYS_kcmp, pid, pid, KCMP_FILE, e1, fds[0]) == 0, "the two epoll fds received are not one file");
		ready(e1, 0, "with fd 21's queue empty");
		CHECK(send(20, "x", 1, 0) == 1, "send on fd 20: %s", strerror(errno));
		ready(e1, 1, "after a new datagram");
	}
	zdtm_finish();
}
