/*
 * fd_unix_abstract: unix sockets bound to abstract names (sun_path starting
 * with NUL): a SOCK_STREAM one listening (fd 63, backlog 4) and a
 * SOCK_SEQPACKET one listening (fd 64). After restore both are bound to the
 * same names, and a new client can connect to each; accept() gives a
 * connection whose data flows both ways.
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static socklen_t name(struct sockaddr_un *sa, const char *tag)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path + 1, sizeof(sa->sun_path) - 1, "ferry-zdtm-%s-%d", tag, getpid());
	return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(sa->sun_path + 1);
}

static void check(int fd, int type, const struct sockaddr_un *sa, socklen_t l)
{
	struct sockaddr_un got;
	socklen_t gl = sizeof(got);
	char buf[8];
	int c, a;

	memset(&got, 0, sizeof(got));
	CHECK(getsockname(fd, (struct sockaddr *)&got, &gl) == 0 && gl == l && memcmp(&got, sa, l) == 0,
	      "fd %d bound to \"@%s\", want \"@%s\"", fd, got.sun_path + 1, sa->sun_path + 1);
	c = socket(AF_UNIX, type, 0);
	CHECK(connect(c, (const struct sockaddr *)sa, l) == 0, "fd %d: connect to @%s: %s", fd, sa->sun_path + 1,
	      strerror(errno));
	fcntl(fd, F_SETFL, O_NONBLOCK);
	a = accept(fd, NULL, NULL);
	CHECK(a >= 0, "fd %d: accept: %s", fd, strerror(errno));
	if (a < 0)
		return;
	fcntl(a, F_SETFL, O_NONBLOCK);
	fcntl(c, F_SETFL, O_NONBLOCK);
	CHECK(write(c, "ping", 4) == 4 && read(a, buf, 8) == 4 && memcmp(buf, "ping", 4) == 0, "fd %d: client -> server", fd);
	CHECK(write(a, "pong", 4) == 4 && read(c, buf, 8) == 4 && memcmp(buf, "pong", 4) == 0, "fd %d: server -> client", fd);
	close(a);
	close(c);
}

int main(void)
{
	struct sockaddr_un st, sq;
	socklen_t stl, sql;
	int s;

	zdtm_init();
	stl = name(&st, "stream");
	sql = name(&sq, "seqpacket");
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&st, stl) || listen(s, 4) || dup2(s, 63) != 63)
		zdtm_die("stream listen");
	close(s);
	s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sq, sql) || listen(s, 4) || dup2(s, 64) != 64)
		zdtm_die("seqpacket listen");
	close(s);

	zdtm_ready();
	zdtm_wait_go();

	check(63, SOCK_STREAM, &st, stl);
	check(64, SOCK_SEQPACKET, &sq, sql);
	zdtm_finish();
}
