/*
 * fd_unix_zd_lclosed: a listening unix stream socket (fd 10, backlog 16)
 * bound to the relative name "p.sock" (length without the NUL), with a
 * connection waiting in its backlog whose client was closed before the
 * dump (nothing written). After restore: fd 10 still listens and
 * getsockname is "p.sock"; accept gives the connection, which reads EOF;
 * a second accept gives EAGAIN; a new client connecting to "p.sock" is
 * accepted.
 * Modelled on zdtm's sk-unix-listen03 (sk-unix-listen01 with the client
 * closed).
 */
#include "zdtm_unix.h"

int main(void)
{
	struct sockaddr_un sa, got;
	socklen_t len, l;
	char buf[8];
	int c, a, v = 0;
	ssize_t n;

	zdtm_init();
	len = listen_on(SOCK_STREAM, "p.sock", 10, &sa);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, len))
		zdtm_die("connect");
	close(c);

	zdtm_ready();
	zdtm_wait_go();

	l = sizeof(v);
	CHECK(getsockopt(10, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1, "fd 10 is not listening");
	l = sizeof(got);
	memset(&got, 0, sizeof(got));
	CHECK(getsockname(10, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, "p.sock") == 0,
	      "fd 10: name \"%s\", want \"p.sock\"", got.sun_path);
	fcntl(10, F_SETFL, O_NONBLOCK);
	a = accept(10, NULL, NULL);
	CHECK(a >= 0, "accept of the closed client's connection: %s", strerror(errno));
	if (a >= 0) {
		n = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
		CHECK(n == 0, "the connection of the closed client reads %zd (%s), want EOF", n,
		      n < 0 ? strerror(errno) : "data");
		close(a);
	}
	a = accept(10, NULL, NULL);
	CHECK(a < 0 && errno == EAGAIN, "a second connection was waiting");
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(connect(c, (struct sockaddr *)&sa, len) == 0, "connect to p.sock: %s", strerror(errno));
	a = accept(10, NULL, NULL);
	CHECK(a >= 0, "accept of a new connection: %s", strerror(errno));
	zdtm_finish();
}
