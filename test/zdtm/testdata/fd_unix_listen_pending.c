/*
 * fd_unix_listen_pending: a listening unix stream socket (fd 10, backlog
 * 5) bound to p.sock in the work dir with two connections pending in its
 * backlog, not accepted and without data: client A (fd 11) connected
 * first, client B (fd 12) second. After restore: fd 10 is still listening;
 * accept() gives A's connection first and B's second (what A and B write
 * is read on the first and second accepted socket), each named p.sock;
 * data flows both ways on both; a third accept() gives EAGAIN.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

static void check_data(int from, int to, const char *msg, const char *what)
{
	char buf[16];
	size_t n = strlen(msg);

	memset(buf, 0, sizeof(buf));
	CHECK(send(from, msg, n, MSG_DONTWAIT) == (ssize_t)n && recv(to, buf, sizeof(buf), MSG_DONTWAIT) == (ssize_t)n &&
	      memcmp(buf, msg, n) == 0, "%s: fd %d -> fd %d: sent \"%s\", got \"%s\"", what, from, to, msg, buf);
}

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, got;
	char cwd[256], buf[16];
	int s, c, a[3], e[3], i, v = 0;
	socklen_t l;
	ssize_t n;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/p.sock", cwd);
	unlink(sa.sun_path);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 5) || dup2(s, 10) != 10)
		zdtm_die("listen on %s", sa.sun_path);
	close(s);
	for (i = 11; i <= 12; i++) {
		c = socket(AF_UNIX, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)) || dup2(c, i) != i)
			zdtm_die("connect fd %d", i);
		close(c);
	}

	zdtm_ready();
	zdtm_wait_go();

	l = sizeof(v);
	CHECK(getsockopt(10, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1, "fd 10 is not listening");
	for (i = 11; i <= 12; i++) {
		l = sizeof(got);
		memset(&got, 0, sizeof(got));
		CHECK(getpeername(i, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, sa.sun_path) == 0,
		      "fd %d: peer \"%s\", want \"%s\"", i, got.sun_path, sa.sun_path);
		fcntl(i, F_SETFL, O_NONBLOCK);
	}
	/* both clients write before anything is accepted: the order shows */
	CHECK(send(11, "A", 1, MSG_DONTWAIT) == 1, "fd 11 (A): send: %s", strerror(errno));
	CHECK(send(12, "B", 1, MSG_DONTWAIT) == 1, "fd 12 (B): send: %s", strerror(errno));
	fcntl(10, F_SETFL, O_NONBLOCK);
	for (i = 0; i < 3; i++) {
		a[i] = accept(10, NULL, NULL);
		e[i] = errno;
	}
	CHECK(a[0] >= 0, "first accept: %s", strerror(e[0]));
	CHECK(a[1] >= 0, "second accept: %s", strerror(e[1]));
	CHECK(a[2] == -1 && e[2] == EAGAIN, "third accept: %s, want EAGAIN", a[2] >= 0 ? "a connection" : strerror(e[2]));
	for (i = 0; i < 2; i++) {
		const char *want = i == 0 ? "A" : "B";
		int cl = 11 + i;

		if (a[i] < 0)
			continue;
		memset(buf, 0, sizeof(buf));
		n = recv(a[i], buf, sizeof(buf), MSG_DONTWAIT);
		CHECK(n == 1 && buf[0] == *want, "accepted connection #%d: read %zd \"%.*s\", want \"%s\" (client %s at fd %d "
		      "connected %s)", i + 1, n, n > 0 ? (int)n : 0, buf, want, want, cl, i == 0 ? "first" : "second");
		l = sizeof(got);
		memset(&got, 0, sizeof(got));
		CHECK(getsockname(a[i], (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, sa.sun_path) == 0,
		      "accepted connection #%d: name \"%s\", want \"%s\"", i + 1, got.sun_path, sa.sun_path);
		check_data(cl, a[i], "ping", want);
		check_data(a[i], cl, "pong", want);
	}
	zdtm_finish();
}
