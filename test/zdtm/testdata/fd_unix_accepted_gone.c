/*
 * fd_unix_accepted_gone: an accepted unix stream connection whose listener
 * is gone. A listener bound to g.sock in the work dir accepted the
 * connection of an unbound client (fd 11) as fd 12, then was closed and
 * g.sock unlinked; "c2s" is queued 11->12 and "s2c" 12->11. After
 * restore: getsockname of 12 and getpeername of 11 still give the g.sock
 * path, 11 and the peer of 12 are unnamed, g.sock does not exist (ENOENT),
 * the queued data is there and more flows both ways.
 */
#include "zdtm_unix.h"

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
