/*
 * fd_unix_accepted_gone: an accepted unix stream connection whose listener
 * is gone. A listener bound to g.sock in the work dir accepted the
 * connection of an unbound client (fd 11) as fd 12, then was closed and
 * g.sock unlinked; "c2s" is queued 11->12 and "s2c" 12->11. After
 * restore: getsockname of 12 and getpeername of 11 still give the g.sock
 * path, 11 and the peer of 12 are unnamed, g.sock does not exist (ENOENT),
 * the queued data is there and more flows both ways.
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#define UNNAMED ((socklen_t)sizeof(sa_family_t))

/* path_addr fills sa with dir/name and returns the length the kernel reports. */
static socklen_t path_addr(struct sockaddr_un *sa, const char *dir, const char *name)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%.100s/%s", dir, name);
	return offsetof(struct sockaddr_un, sun_path) + strlen(sa->sun_path) + 1;
}

static const char *show(const struct sockaddr_un *sa, socklen_t l, char *buf, size_t size)
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
static void check_addr(int fd, int peer, const struct sockaddr_un *want, socklen_t wl)
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

static void check_data(int from, int to, const char *msg)
{
	char buf[16];
	size_t n = strlen(msg);

	memset(buf, 0, sizeof(buf));
	CHECK(send(from, msg, n, MSG_DONTWAIT) == (ssize_t)n && recv(to, buf, sizeof(buf), MSG_DONTWAIT) == (ssize_t)n &&
	      memcmp(buf, msg, n) == 0, "fd %d -> fd %d: sent \"%s\", got \"%s\"", from, to, msg, buf);
}

int main(void)
{
	struct sockaddr_un sa, un = { .sun_family = AF_UNIX };
	char cwd[256], buf[16];
	struct stat st;
	socklen_t sl;
	int s, c, a;
	ssize_t n;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	sl = path_addr(&sa, cwd, "g.sock");
	unlink(sa.sun_path);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 4))
		zdtm_die("listen on %s", sa.sun_path);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) || dup2(c, 11) != 11)
		zdtm_die("connect to %s", sa.sun_path);
	close(c);
	a = accept(s, NULL, NULL);
	if (a < 0 || dup2(a, 12) != 12)
		zdtm_die("accept");
	close(a);
	close(s);
	if (unlink(sa.sun_path))
		zdtm_die("unlink %s", sa.sun_path);
	zdtm_write_all(11, "c2s", 3);
	zdtm_write_all(12, "s2c", 3);

	zdtm_ready();
	zdtm_wait_go();

	check_addr(12, 0, &sa, sl);
	check_addr(11, 1, &sa, sl);
	check_addr(11, 0, &un, UNNAMED);
	check_addr(12, 1, &un, UNNAMED);
	errno = 0;
	CHECK(lstat(sa.sun_path, &st) == -1 && errno == ENOENT, "%s: lstat gives %s, want ENOENT", sa.sun_path,
	      errno ? strerror(errno) : "a file");

	memset(buf, 0, sizeof(buf));
	n = recv(12, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 3 && memcmp(buf, "c2s", 3) == 0, "fd 12: queued %zd \"%.*s\", want \"c2s\"", n, n > 0 ? (int)n : 0, buf);
	memset(buf, 0, sizeof(buf));
	n = recv(11, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 3 && memcmp(buf, "s2c", 3) == 0, "fd 11: queued %zd \"%.*s\", want \"s2c\"", n, n > 0 ? (int)n : 0, buf);
	check_data(11, 12, "ping");
	check_data(12, 11, "pong");
	zdtm_finish();
}
