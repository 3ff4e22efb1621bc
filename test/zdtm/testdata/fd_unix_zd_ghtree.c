/*
 * fd_unix_zd_ghtree: a bound datagram socket whose file was removed, with
 * clients in other processes. The parent's fd 10 (SOCK_NONBLOCK) is bound
 * to g/sk in the work dir; three children each connect a datagram socket
 * of their own to it; then g/sk is removed (the directory g stays). After
 * "go" every child sends "hello-N" on its socket and exits 0. The parent
 * checks: fd 10 is still O_NONBLOCK and named g/sk, g/sk does not exist,
 * g does; every child exited 0 (a send failure is a non-zero exit); fd 10
 * then holds exactly the three datagrams, one from each child.
 * Modelled on zdtm's sk-unix-dgram-ghost.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#define NCHILD 3

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, got;
	char cwd[256], dir[300], buf[32];
	pid_t kids[NCHILD];
	int s, p[2], i, seen = 0, st;
	struct stat sb;
	socklen_t l;
	char x;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	snprintf(dir, sizeof(dir), "%s/g", cwd);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/g/sk", cwd);
	if (mkdir(dir, 0755) && errno != EEXIST)
		zdtm_die("mkdir %s", dir);
	unlink(sa.sun_path);
	s = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || dup2(s, 10) != 10)
		zdtm_die("bind %s", sa.sun_path);
	close(s);
	if (pipe(p))
		zdtm_die("pipe");
	for (i = 0; i < NCHILD; i++) {
		kids[i] = fork();
		if (kids[i] < 0)
			zdtm_die("fork");
		if (kids[i] == 0) {
			char msg[16];
			int c;

			zdtm_child_forget_ready();
			close(10);
			close(p[0]);
			c = socket(AF_UNIX, SOCK_DGRAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)))
				_exit(10);
			if (write(p[1], "c", 1) != 1)
				_exit(11);
			close(p[1]);
			zdtm_wait_go();
			snprintf(msg, sizeof(msg), "hello-%d", i);
			if (send(c, msg, strlen(msg), 0) != (ssize_t)strlen(msg))
				_exit(12);
			_exit(0);
		}
	}
	close(p[1]);
	for (i = 0; i < NCHILD; i++)
		if (read(p[0], &x, 1) != 1)
			zdtm_die("child %d did not connect", i);
	close(p[0]);
	if (unlink(sa.sun_path))
		zdtm_die("unlink %s", sa.sun_path);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 lost O_NONBLOCK: flags %#o", fcntl(10, F_GETFL));
	l = sizeof(got);
	memset(&got, 0, sizeof(got));
	CHECK(getsockname(10, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, sa.sun_path) == 0,
	      "fd 10 is bound to \"%s\", want \"%s\"", got.sun_path, sa.sun_path);
	CHECK(lstat(sa.sun_path, &sb) < 0 && errno == ENOENT, "%s exists again", sa.sun_path);
	CHECK(stat(dir, &sb) == 0 && S_ISDIR(sb.st_mode), "%s is gone", dir);
	for (i = 0; i < NCHILD; i++) {
		st = -1;
		CHECK(waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0,
		      "child %d (pid %d): status %#x (10 connect, 12 send failed)", i, kids[i], st);
	}
	for (i = 0; i < NCHILD + 1; i++) {
		int k;
		ssize_t n;

		memset(buf, 0, sizeof(buf));
		n = recv(10, buf, sizeof(buf), MSG_DONTWAIT);
		if (i == NCHILD) {
			CHECK(n < 0 && errno == EAGAIN, "fd 10: an extra datagram \"%s\"", buf);
			break;
		}
		if (n < 0) {
			fail("fd 10: %d datagrams, want %d (%s)", i, NCHILD, strerror(errno));
			break;
		}
		if (n == 7 && sscanf(buf, "hello-%d", &k) == 1 && k >= 0 && k < NCHILD && !(seen & 1 << k))
			seen |= 1 << k;
		else
			fail("fd 10: unexpected datagram \"%s\"", buf);
	}
	zdtm_finish();
}
