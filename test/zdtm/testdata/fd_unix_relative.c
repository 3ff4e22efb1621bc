/*
 * fd_unix_relative: unix sockets bound to names relative to the working
 * directory, as programs that bind "name.sock" in their cwd have them.
 * fd 10 listens on "r.sock"; fd 11 is a client connected to it and fd 12
 * the connection accepted, with "c2s" queued for 12. fd 13 is a datagram
 * socket bound to "d.sock" holding, unread, "x" from an unnamed sender and
 * "y" from fd 14, a datagram socket bound to "e.sock" and connected to
 * "d.sock". After restore: getsockname of 10 and 12 is the relative
 * "r.sock" (as the kernel keeps the name given to bind), of 13 "d.sock", of
 * 14 "e.sock"; 12 reads "c2s"; a new client connecting to "r.sock" from
 * the cwd is accepted on 10; 13 receives "x" (unnamed sender) then "y"
 * (from "e.sock"), and a new datagram sent on 14 reaches 13.
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static socklen_t rel(struct sockaddr_un *sa, const char *name)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	strcpy(sa->sun_path, name);
	return offsetof(struct sockaddr_un, sun_path) + strlen(name) + 1;
}

static void put(int s, int fd)
{
	if (s < 0 || dup2(s, fd) != fd)
		zdtm_die("socket at fd %d: %s", fd, strerror(errno));
	close(s);
}

static void check_name(int fd, int peer, const char *want)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	size_t wl = offsetof(struct sockaddr_un, sun_path) + strlen(want) + 1;
	int r;

	memset(&got, 0, sizeof(got));
	r = peer ? getpeername(fd, (struct sockaddr *)&got, &l) : getsockname(fd, (struct sockaddr *)&got, &l);
	CHECK(r == 0 && l == wl && strcmp(got.sun_path, want) == 0, "fd %d: %s is \"%s\" (length %u), want \"%s\"", fd,
	      peer ? "peer" : "name", got.sun_path, (unsigned)l, want);
}

static void check_from(const char *want, const char *from)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	char buf[8] = { 0 };
	ssize_t n;

	memset(&got, 0, sizeof(got));
	n = recvfrom(13, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&got, &l);
	CHECK(n == (ssize_t)strlen(want) && memcmp(buf, want, n) == 0, "fd 13: got %zd bytes \"%.*s\", want \"%s\"", n,
	      n > 0 ? (int)n : 0, buf, want);
	if (from)
		CHECK(l > offsetof(struct sockaddr_un, sun_path) && strcmp(got.sun_path, from) == 0,
		      "\"%s\" came from \"%s\" (length %u), want \"%s\"", want, got.sun_path, (unsigned)l, from);
	else
		CHECK(l <= sizeof(sa_family_t), "\"%s\" came from \"%s\" (length %u), want an unnamed sender", want,
		      got.sun_path, (unsigned)l);
}

int main(void)
{
	struct sockaddr_un ra, da, ea;
	socklen_t rl, dl, el;
	char buf[8];
	int s, c, a;

	zdtm_init();
	unlink("r.sock");
	unlink("d.sock");
	unlink("e.sock");
	rl = rel(&ra, "r.sock");
	dl = rel(&da, "d.sock");
	el = rel(&ea, "e.sock");

	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&ra, rl) || listen(s, 4))
		zdtm_die("listen on r.sock: %s", strerror(errno));
	put(s, 10);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&ra, rl))
		zdtm_die("connect to r.sock: %s", strerror(errno));
	put(c, 11);
	put(accept(10, NULL, NULL), 12);
	if (write(11, "c2s", 3) != 3)
		zdtm_die("write c2s");

	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&da, dl))
		zdtm_die("bind d.sock: %s", strerror(errno));
	put(s, 13);
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || sendto(s, "x", 1, 0, (struct sockaddr *)&da, dl) != 1)
		zdtm_die("send x: %s", strerror(errno));
	close(s);
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&ea, el) || connect(s, (struct sockaddr *)&da, dl))
		zdtm_die("e.sock connected to d.sock: %s", strerror(errno));
	put(s, 14);
	if (send(14, "y", 1, 0) != 1)
		zdtm_die("send y");

	zdtm_ready();
	zdtm_wait_go();

	check_name(10, 0, "r.sock");
	check_name(12, 0, "r.sock");
	check_name(11, 1, "r.sock");
	check_name(13, 0, "d.sock");
	check_name(14, 0, "e.sock");
	check_name(14, 1, "d.sock");
	fcntl(12, F_SETFL, O_NONBLOCK);
	CHECK(read(12, buf, sizeof(buf)) == 3 && memcmp(buf, "c2s", 3) == 0, "fd 12 did not read c2s");
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(connect(c, (struct sockaddr *)&ra, rl) == 0, "connect to r.sock after restore: %s", strerror(errno));
	fcntl(10, F_SETFL, O_NONBLOCK);
	a = accept(10, NULL, NULL);
	CHECK(a >= 0, "accept on fd 10: %s", strerror(errno));
	if (a >= 0) {
		CHECK(write(c, "new", 3) == 3 && read(a, buf, sizeof(buf)) == 3 && memcmp(buf, "new", 3) == 0,
		      "new connection carries no data");
	}
	check_from("x", NULL);
	check_from("y", "e.sock");
	CHECK(send(14, "z", 1, 0) == 1, "send z on fd 14: %s", strerror(errno));
	check_from("z", "e.sock");
	zdtm_finish();
}
