/*
 * fd_unix_zd_self: unix datagram sockets, one connected to itself.
 * fd 10 is bound to b.sock in the work dir, fd 11 an unbound socket that
 * sends to it with sendto; fd 12 is bound to c.sock, fds 13 and 14 are
 * unbound and both connected to c.sock; fd 15 is bound to s.sock and
 * connected to its own name. Queued, unread: "s1" that 15 sent to itself,
 * and "c13" from 13 at 12. After restore: getsockname and getpeername of
 * 15 are both s.sock; 15 receives "s1" from s.sock, and what it sends
 * next it receives itself; 12 receives "c13" from an unnamed sender, then
 * new datagrams from 13 and 14; getpeername of 13 and 14 is c.sock; a
 * sendto from 11 reaches 10.
 * Modelled on zdtm's sockets_dgram.
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static struct sockaddr_un ba, ca, sa;

static void at(struct sockaddr_un *a, const char *cwd, const char *name)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	snprintf(a->sun_path, sizeof(a->sun_path), "%s/%s", cwd, name);
	unlink(a->sun_path);
}

static void put(int s, int fd)
{
	if (s < 0 || dup2(s, fd) != fd)
		zdtm_die("socket at fd %d", fd);
	close(s);
}

/* recv_from receives one datagram on fd and checks it and its sender (NULL: unnamed). */
static void recv_from(int fd, const char *want, const struct sockaddr_un *from)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	char buf[32] = { 0 };
	ssize_t n;

	memset(&got, 0, sizeof(got));
	n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&got, &l);
	CHECK(n == (ssize_t)strlen(want) && memcmp(buf, want, n) == 0, "fd %d: got %zd \"%s\" (%s), want \"%s\"", fd, n, buf,
	      n < 0 ? strerror(errno) : "", want);
	if (n < 0)
		return;
	if (from)
		CHECK(l > offsetof(struct sockaddr_un, sun_path) && strcmp(got.sun_path, from->sun_path) == 0,
		      "fd %d: \"%s\" came from \"%s\" (length %u), want \"%s\"", fd, want, got.sun_path, l, from->sun_path);
	else
		CHECK(l == 0, "fd %d: \"%s\" came from \"%s\" (length %u), want an unnamed sender", fd, want,
		      got.sun_path, l);
}

static void check_addr(int fd, int peer, const struct sockaddr_un *want)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	int r;

	memset(&got, 0, sizeof(got));
	r = peer ? getpeername(fd, (struct sockaddr *)&got, &l) : getsockname(fd, (struct sockaddr *)&got, &l);
	CHECK(r == 0 && strcmp(got.sun_path, want->sun_path) == 0, "fd %d: %s is \"%s\" (%s), want \"%s\"", fd,
	      peer ? "peer" : "name", got.sun_path, r ? strerror(errno) : "", want->sun_path);
}

int main(void)
{
	char cwd[256];
	int s;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	at(&ba, cwd, "b.sock");
	at(&ca, cwd, "c.sock");
	at(&sa, cwd, "s.sock");

	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&ba, sizeof(ba)))
		zdtm_die("bind b.sock");
	put(s, 10);
	put(socket(AF_UNIX, SOCK_DGRAM, 0), 11);
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&ca, sizeof(ca)))
		zdtm_die("bind c.sock");
	put(s, 12);
	for (int fd = 13; fd <= 14; fd++) {
		s = socket(AF_UNIX, SOCK_DGRAM, 0);
		if (s < 0 || connect(s, (struct sockaddr *)&ca, sizeof(ca)))
			zdtm_die("connect to c.sock");
		put(s, fd);
	}
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		zdtm_die("s.sock connected to itself");
	put(s, 15);
	if (send(15, "s1", 2, 0) != 2 || send(13, "c13", 3, 0) != 3)
		zdtm_die("send");

	zdtm_ready();
	zdtm_wait_go();

	check_addr(15, 0, &sa);
	check_addr(15, 1, &sa);
	recv_from(15, "s1", &sa);
	CHECK(send(15, "s2", 2, MSG_DONTWAIT) == 2, "fd 15: send to itself: %s", strerror(errno));
	recv_from(15, "s2", &sa);
	check_addr(13, 1, &ca);
	check_addr(14, 1, &ca);
	recv_from(12, "c13", NULL);
	CHECK(send(13, "n13", 3, MSG_DONTWAIT) == 3, "fd 13: send: %s", strerror(errno));
	CHECK(send(14, "n14", 3, MSG_DONTWAIT) == 3, "fd 14: send: %s", strerror(errno));
	recv_from(12, "n13", NULL);
	recv_from(12, "n14", NULL);
	CHECK(sendto(11, "b11", 3, MSG_DONTWAIT, (struct sockaddr *)&ba, sizeof(ba)) == 3, "fd 11: sendto b.sock: %s",
	      strerror(errno));
	recv_from(10, "b11", NULL);
	zdtm_finish();
}
