/*
 * fd_unix_zd_deltree: an accepted unix stream connection whose client is
 * in a child process and whose listener and file are gone. The parent
 * listened on d.sock in the work dir; a child (which closed its copy of
 * the listener) connected; the parent accepted the connection as fd 12,
 * closed the listener and removed d.sock. After "go" the child writes 1000
 * bytes of a pattern on its socket and exits 0. The parent checks: the
 * child exited 0; fd 12 reads exactly the 1000 bytes, then EOF; its
 * getsockname is still d.sock; d.sock does not exist (unlink gives ENOENT).
 * Modelled on zdtm's deleted_unix_sock.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, got;
	static unsigned char buf[2000];
	char cwd[256];
	int s, a, st, total = 0;
	socklen_t l;
	pid_t kid;
	ssize_t n;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/d.sock", cwd);
	unlink(sa.sun_path);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, SUN_LEN(&sa)) || listen(s, 1))
		zdtm_die("listen on %s", sa.sun_path);
	kid = fork();
	if (kid < 0)
		zdtm_die("fork");
	if (kid == 0) {
		int c;

		zdtm_child_forget_ready();
		close(s);
		c = socket(AF_UNIX, SOCK_STREAM, 0);
		if (c < 0 || connect(c, (struct sockaddr *)&sa, SUN_LEN(&sa)))
			_exit(10);
		zdtm_wait_go();
		zdtm_fill(buf, 1000, 77);
		if (write(c, buf, 1000) != 1000)
			_exit(11);
		close(c);
		_exit(0);
	}
	a = accept(s, NULL, NULL);
	if (a < 0 || dup2(a, 12) != 12)
		zdtm_die("accept");
	close(a);
	close(s);
	if (unlink(sa.sun_path))
		zdtm_die("unlink %s", sa.sun_path);

	zdtm_ready();
	zdtm_wait_go();

	st = -1;
	CHECK(waitpid(kid, &st, 0) == kid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "child: status %#x (exit 11: its write failed)", st);
	fcntl(12, F_SETFL, O_NONBLOCK);
	while (total < (int)sizeof(buf)) {
		n = read(12, buf + total, sizeof(buf) - total);
		if (n <= 0)
			break;
		total += n;
	}
	CHECK(total == 1000 && zdtm_check(buf, 1000, 77) < 0, "fd 12: read %d bytes (%s), want the 1000 written", total,
	      total == 1000 ? "content differs" : "count");
	n = read(12, buf, sizeof(buf));
	CHECK(n == 0, "fd 12: read %zd (%s) after the data, want EOF", n, n < 0 ? strerror(errno) : "more");
	l = sizeof(got);
	memset(&got, 0, sizeof(got));
	CHECK(getsockname(12, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, sa.sun_path) == 0,
	      "fd 12: name \"%s\", want \"%s\"", got.sun_path, sa.sun_path);
	CHECK(unlink(sa.sun_path) < 0 && errno == ENOENT, "%s exists again", sa.sun_path);
	zdtm_finish();
}
