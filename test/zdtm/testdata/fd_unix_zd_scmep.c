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
#include "zdtm.h"
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/kcmp.h>

#define MAXFDS 8

/* send_fds sends one byte with fds, in one control message or (sep) one per fd. */
static void send_fds(int via, const int *fds, int n, int sep)
{
	union {
		char buf[MAXFDS * CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char c = 0;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf };
	struct cmsghdr *cm;
	int i;

	memset(&u, 0, sizeof(u));
	mh.msg_controllen = sep ? n * CMSG_SPACE(sizeof(int)) : CMSG_SPACE(n * sizeof(int));
	cm = CMSG_FIRSTHDR(&mh);
	if (sep) {
		for (i = 0; i < n; i++, cm = CMSG_NXTHDR(&mh, cm)) {
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fds[i], sizeof(int));
		}
	} else {
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	}
	if (sendmsg(via, &mh, 0) != 1)
		zdtm_die("sendmsg %d fds on fd %d", n, via);
}

/* recv_fds receives one message on fd, checks it has want fds, returns how many it got. */
static int recv_fds(int fd, int *fds, int want)
{
	union {
		char buf[CMSG_SPACE(MAXFDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	char c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int n = 0, k, m;
	ssize_t r;

	memset(&u, 0, sizeof(u));
	r = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (r != 1) {
		fail("fd %d: recvmsg gave %zd (%s), want the 1-byte message", fd, r, r < 0 ? strerror(errno) : "");
		return 0;
	}
	CHECK(!(mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)), "fd %d: msg_flags %#x", fd, mh.msg_flags);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			fail("fd %d: cmsg level %d type %d", fd, cm->cmsg_level, cm->cmsg_type);
			continue;
		}
		m = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < m && n < MAXFDS; k++)
			memcpy(&fds[n++], CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
	}
	CHECK(n == want, "fd %d: %d fds in the message, want %d", fd, n, want);
	return n;
}

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
	send_fds(20, &ep, 1, 0);
	send_fds(20, &ep, 1, 0);
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
