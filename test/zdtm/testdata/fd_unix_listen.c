/*
 * fd_unix_listen: a SOCK_STREAM unix socket (fd 62) bound to an absolute
 * path in the work dir and listening with a backlog of 7, no connection
 * pending. After restore: getsockname gives the path, SO_ACCEPTCONN is set,
 * and a new client can connect; accept() gives a connection whose data
 * flows both ways.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, got;
	char cwd[256], buf[8];
	socklen_t l;
	int s, c, a, v = 0;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/l.sock", cwd);
	unlink(sa.sun_path);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 7) || dup2(s, 62) != 62)
		zdtm_die("listen on %s", sa.sun_path);
	close(s);

	zdtm_ready();
	zdtm_wait_go();

	l = sizeof(got);
	memset(&got, 0, sizeof(got));
	CHECK(getsockname(62, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, sa.sun_path) == 0,
	      "fd 62 bound to \"%s\", want \"%s\"", got.sun_path, sa.sun_path);
	l = sizeof(v);
	CHECK(getsockopt(62, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1, "fd 62 is not listening");
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(connect(c, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect to %s: %s", sa.sun_path, strerror(errno));
	fcntl(62, F_SETFL, O_NONBLOCK);
	a = accept(62, NULL, NULL);
	CHECK(a >= 0, "accept: %s", strerror(errno));
	if (a >= 0) {
		fcntl(a, F_SETFL, O_NONBLOCK);
		fcntl(c, F_SETFL, O_NONBLOCK);
		CHECK(write(c, "ping", 4) == 4 && read(a, buf, 8) == 4 && memcmp(buf, "ping", 4) == 0, "client -> server");
		CHECK(write(a, "pong", 4) == 4 && read(c, buf, 8) == 4 && memcmp(buf, "pong", 4) == 0, "server -> client");
	}
	zdtm_finish();
}
