/*
 * fd_unix_accepted: accepted unix stream connections. A listener (fd 10,
 * backlog 4) bound to l.sock in the work dir; an unbound client (fd 11)
 * connected to it and accepted as fd 12, with "c2s" queued 11->12 and
 * "s2c" queued 12->11; a client (fd 13) bound to c.sock before connecting,
 * accepted as fd 14, nothing queued. After restore: getsockname of 12 and
 * 14 and getpeername of 11 give l.sock; 11 and the peer of 12 are unnamed;
 * getsockname of 13 and getpeername of 14 give c.sock; the queued data is
 * there, more flows both ways on both connections; no connection is
 * pending on fd 10, which still listens and accepts a new one; closing 11
 * gives EOF on 12.
 */
#include "zdtm_unix.h"

static void connect_accept(int listener, int c, int cfd, int afd, const struct sockaddr_un *sa)
{
	int a;

	if (connect(c, (const struct sockaddr *)sa, sizeof(*sa)) || dup2(c, cfd) != cfd)
		zdtm_die("connect to %s", sa->sun_path);
	close(c);
	a = accept(listener, NULL, NULL);
	if (a < 0 || dup2(a, afd) != afd)
		zdtm_die("accept");
	close(a);
}

int main(void)
{
	struct sockaddr_un sa, ca, un = { .sun_family = AF_UNIX };
	socklen_t sl, cl;
	char cwd[256], buf[16];
	int s, c, a, v = 0;
	socklen_t l;
	ssize_t n;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	sl = path_addr(&sa, cwd, "l.sock");
	cl = path_addr(&ca, cwd, "c.sock");
	unlink(sa.sun_path);
	unlink(ca.sun_path);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 4) || dup2(s, 10) != 10)
		zdtm_die("listen on %s", sa.sun_path);
	close(s);
	connect_accept(10, socket(AF_UNIX, SOCK_STREAM, 0), 11, 12, &sa);
	zdtm_write_all(11, "c2s", 3);
	zdtm_write_all(12, "s2c", 3);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || bind(c, (struct sockaddr *)&ca, sizeof(ca)))
		zdtm_die("bind %s", ca.sun_path);
	connect_accept(10, c, 13, 14, &sa);

	zdtm_ready();
	zdtm_wait_go();

	check_addr(10, 0, &sa, sl);
	check_addr(12, 0, &sa, sl);
	check_addr(14, 0, &sa, sl);
	check_addr(11, 1, &sa, sl);
	check_addr(13, 1, &sa, sl);
	check_addr(11, 0, &un, UNNAMED);
	check_addr(12, 1, &un, UNNAMED);
	check_addr(13, 0, &ca, cl);
	check_addr(14, 1, &ca, cl);

	memset(buf, 0, sizeof(buf));
	n = recv(12, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 3 && memcmp(buf, "c2s", 3) == 0, "fd 12: queued %zd \"%.*s\", want \"c2s\"", n, n > 0 ? (int)n : 0, buf);
	memset(buf, 0, sizeof(buf));
	n = recv(11, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 3 && memcmp(buf, "s2c", 3) == 0, "fd 11: queued %zd \"%.*s\", want \"s2c\"", n, n > 0 ? (int)n : 0, buf);
	CHECK(recv(13, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 13: data queued, want none");
	CHECK(recv(14, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 14: data queued, want none");
	check_data(11, 12, "ping1");
	check_data(12, 11, "pong1");
	check_data(13, 14, "ping2");
	check_data(14, 13, "pong2");

	l = sizeof(v);
	CHECK(getsockopt(10, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1, "fd 10 is not listening");
	fcntl(10, F_SETFL, O_NONBLOCK);
	a = accept(10, NULL, NULL);
	CHECK(a == -1 && errno == EAGAIN, "fd 10: a connection is pending, want none");
	if (a >= 0)
		close(a);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect to %s: %s", sa.sun_path, strerror(errno));
	a = accept(10, NULL, NULL);
	CHECK(a >= 0, "fd 10: accept: %s", strerror(errno));
	if (a >= 0) {
		check_data(c, a, "ping3");
		check_data(a, c, "pong3");
	}

	close(11);
	n = recv(12, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 0, "fd 12: recv %zd (%s) after its peer closed, want EOF", n, n < 0 ? strerror(errno) : "data");
	zdtm_finish();
}
