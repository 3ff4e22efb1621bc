/*
 * fd_unix_zd_repl: two listening unix sockets bound to one path, the file
 * of the second replaced by that of the first. In w/ in the work dir: fd
 * 10 listens on w/sock; w/sock is renamed to w/temp; fd 11 listens on
 * w/sock (a new file); w/temp is renamed back over w/sock, so the path
 * leads to fd 10 again and fd 11's file is gone. The same for seqpacket
 * with fds 20, 21 and w/qsock. After restore: all four still listen
 * (SO_ACCEPTCONN) and getsockname gives their paths; w/sock and w/qsock
 * exist, w/temp does not; a client connecting to w/sock is accepted on
 * fd 10 (fd 11 has nothing), one to w/qsock on fd 20 (fd 21 has nothing).
 * Modelled on zdtm's del_standalone_un (and del_standalone_un_seqpacket).
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

static char cwd[256];

static void setup(int type, const char *name, int fa, int fb)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char tmp[400];
	int s;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.98s/w/%s", cwd, name);
	snprintf(tmp, sizeof(tmp), "%s/w/temp", cwd);
	unlink(sa.sun_path);
	s = socket(AF_UNIX, type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 1) || dup2(s, fa) != fa)
		zdtm_die("listen on %s", sa.sun_path);
	close(s);
	if (rename(sa.sun_path, tmp))
		zdtm_die("rename to %s", tmp);
	s = socket(AF_UNIX, type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || listen(s, 1) || dup2(s, fb) != fb)
		zdtm_die("listen on %s again", sa.sun_path);
	close(s);
	if (rename(tmp, sa.sun_path))
		zdtm_die("rename back to %s", sa.sun_path);
}

static void check(int type, const char *name, int fa, int fb)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, got;
	int fds[2] = { fa, fb }, i, v, c, a;
	struct stat st;
	socklen_t l;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.98s/w/%s", cwd, name);
	for (i = 0; i < 2; i++) {
		v = 0;
		l = sizeof(v);
		CHECK(getsockopt(fds[i], SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1, "fd %d is not listening (%s)",
		      fds[i], strerror(errno));
		l = sizeof(got);
		memset(&got, 0, sizeof(got));
		CHECK(getsockname(fds[i], (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, sa.sun_path) == 0,
		      "fd %d: name \"%s\", want \"%s\"", fds[i], got.sun_path, sa.sun_path);
		fcntl(fds[i], F_SETFL, O_NONBLOCK);
	}
	CHECK(stat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode), "%s does not exist after restore", sa.sun_path);
	c = socket(AF_UNIX, type, 0);
	if (connect(c, (struct sockaddr *)&sa, sizeof(sa))) {
		fail("connect to %s: %s", sa.sun_path, strerror(errno));
		return;
	}
	a = accept(fa, NULL, NULL);
	CHECK(a >= 0, "the connection to %s did not reach fd %d, the socket whose file it is", sa.sun_path, fa);
	a = accept(fb, NULL, NULL);
	CHECK(a < 0 && errno == EAGAIN, "the connection to %s reached fd %d, whose file was replaced", sa.sun_path, fb);
	close(c);
}

int main(void)
{
	char p[400];
	struct stat st;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 98)
		zdtm_die("work dir path too long for sun_path");
	snprintf(p, sizeof(p), "%s/w", cwd);
	if (mkdir(p, 0755) && errno != EEXIST)
		zdtm_die("mkdir %s", p);
	setup(SOCK_STREAM, "sock", 10, 11);
	setup(SOCK_SEQPACKET, "qsock", 20, 21);

	zdtm_ready();
	zdtm_wait_go();

	check(SOCK_STREAM, "sock", 10, 11);
	check(SOCK_SEQPACKET, "qsock", 20, 21);
	snprintf(p, sizeof(p), "%s/w/temp", cwd);
	CHECK(lstat(p, &st) < 0 && errno == ENOENT, "%s exists", p);
	zdtm_finish();
}
