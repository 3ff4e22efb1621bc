/*
 * zdtm_unix.h - unix socket helpers shared by the fd_unix_* programs:
 * building addresses as the kernel reports them, checking a socket's own
 * or peer address and a message through a connection, setting up socket
 * pairs and listeners at fixed fds, passing fds in SCM_RIGHTS messages and
 * reading a socket's shutdown state from sock_diag.
 */
#ifndef ZDTM_UNIX_H
#define ZDTM_UNIX_H

#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

/* MAXFDS is the most fds send_fds sends and recv_fds keeps from one message. */
#define MAXFDS 8

#define UNNAMED ((socklen_t)sizeof(sa_family_t))

/* path_addr fills sa with dir/name and returns the length the kernel reports. */
static inline socklen_t path_addr(struct sockaddr_un *sa, const char *dir, const char *name)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%.100s/%s", dir, name);
	return offsetof(struct sockaddr_un, sun_path) + strlen(sa->sun_path) + 1;
}

/* abstract_addr fills sa with @ferry-acc-TAGPID and returns its length. */
static inline socklen_t abstract_addr(struct sockaddr_un *sa, const char *tag)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "ferry-acc-%s%d", tag, getpid());
	return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa->sun_path + 1);
}

static inline const char *show(const struct sockaddr_un *sa, socklen_t l, char *buf, size_t size)
{
	size_t n;

	if (l <= offsetof(struct sockaddr_un, sun_path)) {
		snprintf(buf, size, "unnamed (length %u)", (unsigned)l);
		return buf;
	}
	n = l - offsetof(struct sockaddr_un, sun_path);
	if (n > sizeof(sa->sun_path))
		n = sizeof(sa->sun_path);
	if (sa->sun_path[0] == 0)
		snprintf(buf, size, "@%.*s (length %u)", (int)n - 1, sa->sun_path + 1, (unsigned)l);
	else
		snprintf(buf, size, "\"%.*s\" (length %u)", (int)n, sa->sun_path, (unsigned)l);
	return buf;
}

/* check_addr compares fd's own (peer 0) or its peer's address with want. */
static inline void check_addr(int fd, int peer, const struct sockaddr_un *want, socklen_t wl)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	char b1[256], b2[256];
	int r;

	memset(&got, 0, sizeof(got));
	r = peer ? getpeername(fd, (struct sockaddr *)&got, &l) : getsockname(fd, (struct sockaddr *)&got, &l);
	if (r) {
		fail("fd %d: %s: %s", fd, peer ? "getpeername" : "getsockname", strerror(errno));
		return;
	}
	CHECK(l == wl && got.sun_family == AF_UNIX && memcmp(&got, want, wl) == 0, "fd %d: %s is %s, want %s", fd,
	      peer ? "peer" : "name", show(&got, l, b1, sizeof(b1)), show(want, wl, b2, sizeof(b2)));
}

static inline void check_data(int from, int to, const char *msg)
{
	char buf[16];
	size_t n = strlen(msg);

	memset(buf, 0, sizeof(buf));
	CHECK(send(from, msg, n, MSG_DONTWAIT) == (ssize_t)n && recv(to, buf, sizeof(buf), MSG_DONTWAIT) == (ssize_t)n &&
	      memcmp(buf, msg, n) == 0, "fd %d -> fd %d: sent \"%s\", got \"%s\"", from, to, msg, buf);
}

/* unix_pair makes a socketpair of type and puts its ends at fds a and b. */
static inline void unix_pair(int type, int a, int b)
{
	int sv[2];

	if (socketpair(AF_UNIX, type, 0, sv) || dup2(sv[0], a) != a || dup2(sv[1], b) != b)
		zdtm_die("socketpair type %d", type);
	close(sv[0]);
	close(sv[1]);
}

/*
 * listen_on binds a socket of type to path as zdtm binds (the length does
 * not count the terminating NUL), listens (backlog 16) and puts it at fd;
 * it fills sa and returns the address length.
 */
static inline socklen_t listen_on(int type, const char *path, int fd, struct sockaddr_un *sa)
{
	socklen_t len;
	int s;

	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", path);
	len = offsetof(struct sockaddr_un, sun_path) + strlen(sa->sun_path);
	unlink(sa->sun_path);
	s = socket(AF_UNIX, type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)sa, len) || listen(s, 16) || dup2(s, fd) != fd)
		zdtm_die("listen on %s", sa->sun_path);
	close(s);
	return len;
}

/*
 * send_fds sends len bytes of data through via with n fds attached (none
 * when n is 0), in one SCM_RIGHTS control message or (sep) one per fd.
 */
static inline void send_fds(int via, const char *data, size_t len, const int *fds, int n, int sep)
{
	union {
		char buf[MAXFDS * CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = len };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	int i;

	if (n > 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
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
	}
	if (sendmsg(via, &mh, 0) != (ssize_t)len)
		zdtm_die("sendmsg \"%.*s\" with %d fds on fd %d", (int)len, data, n, via);
}

/* send_byte_fds sends one zero byte through via with n fds (see send_fds). */
static inline void send_byte_fds(int via, const int *fds, int n, int sep)
{
	send_fds(via, "", 1, fds, n, sep);
}

/* recv_fds receives one 1-byte message on fd, checks it has want fds, returns how many it got. */
static inline int recv_fds(int fd, int *fds, int want)
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

/* check_link checks that /proc/self/fd/FD starts with want. */
static inline void check_link(int fd, const char *want, const char *what)
{
	char path[64], got[256];
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, got, sizeof(got) - 1);
	got[n < 0 ? 0 : n] = 0;
	CHECK(n > 0 && strncmp(got, want, strlen(want)) == 0, "%s (fd %d) is \"%s\", want \"%s...\"", what, fd, got, want);
}

/* shut_bits returns the socket's sk_shutdown (1 RCV, 2 SEND) from sock_diag, or -1. */
static inline int shut_bits(int fd)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} msg;
	union {
		char buf[8192];
		struct nlmsghdr align;
	} u;
	struct stat st;
	struct nlmsghdr *h;
	int nl, r = -1;
	ssize_t n;

	if (fstat(fd, &st))
		return -1;
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -1;
	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.req.sdiag_family = AF_UNIX;
	msg.req.udiag_states = -1;
	msg.req.udiag_ino = st.st_ino;
	msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0U;
	if (send(nl, &msg, sizeof(msg), 0) != sizeof(msg) || (n = recv(nl, u.buf, sizeof(u.buf), 0)) <= 0) {
		close(nl);
		return -1;
	}
	for (h = &u.align; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
		struct unix_diag_msg *m = NLMSG_DATA(h);
		struct rtattr *a;
		int len;

		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			break;
		len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
		for (a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
			if (a->rta_type == UNIX_DIAG_SHUTDOWN)
				r = *(unsigned char *)RTA_DATA(a);
		break;
	}
	close(nl);
	return r;
}

#endif
