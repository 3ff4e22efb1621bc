/*
 * zdtm_unix.h - unix socket helpers shared by the fd_unix_* programs:
 * building addresses as the kernel reports them, and checking a socket's
 * own or peer address and a message through a connection.
 */
#ifndef ZDTM_UNIX_H
#define ZDTM_UNIX_H

#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

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

#endif
