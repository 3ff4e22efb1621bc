/*
 * fd_unix_peercred: SO_PEERCRED of unix sockets made under other
 * effective ids (root switching its effective uid and gid around the
 * calls, as servers that drop privileges do). A socketpair (fds 20, 21)
 * made as 1000:2000; a listener (fd 10, l.sock, mode 0777) that listened
 * as 1000:2000; a client (fd 11) that connected as 1001:2001 and its
 * accepted connection (fd 12). After restore: 20 and 21 report this
 * process and 1000:2000; 10 and 11 report 1000:2000 (the listener's
 * credentials, which the client got at connect); 12 reports 1001:2001 (the
 * client's). (The PID of a restored listener or connection names ferry;
 * only the socketpair's is checked.)
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static void as(uid_t uid, gid_t gid)
{
	if (seteuid(0) || setegid(gid) || seteuid(uid))
		zdtm_die("effective ids %u:%u: %s", uid, gid, strerror(errno));
}

static void put(int s, int fd)
{
	if (s < 0 || dup2(s, fd) != fd)
		zdtm_die("socket at fd %d: %s", fd, strerror(errno));
	close(s);
}

static void check_cred(int fd, int want_pid, uid_t uid, gid_t gid)
{
	struct ucred c;
	socklen_t l = sizeof(c);

	memset(&c, 0, sizeof(c));
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &l)) {
		fail("fd %d: SO_PEERCRED: %s", fd, strerror(errno));
		return;
	}
	CHECK(c.uid == uid && c.gid == gid, "fd %d: SO_PEERCRED ids %u:%u, want %u:%u", fd, c.uid, c.gid, uid, gid);
	if (want_pid)
		CHECK(c.pid == getpid(), "fd %d: SO_PEERCRED pid %d, want %d", fd, c.pid, getpid());
}

int main(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	char cwd[256];
	int sv[2], s, c;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/l.sock", cwd);
	unlink(sa.sun_path);

	as(1000, 2000);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		zdtm_die("socketpair");
	put(sv[0], 20);
	put(sv[1], 21);
	as(0, 0);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || chmod(sa.sun_path, 0777))
		zdtm_die("bind %s", sa.sun_path);
	as(1000, 2000);
	if (listen(s, 4))
		zdtm_die("listen");
	put(s, 10);
	as(1001, 2001);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, sizeof(sa)))
		zdtm_die("connect as 1001: %s", strerror(errno));
	put(c, 11);
	as(0, 0);
	put(accept(10, NULL, NULL), 12);

	check_cred(20, 1, 1000, 2000);
	check_cred(12, 0, 1001, 2001);
	zdtm_ready();
	zdtm_wait_go();

	check_cred(20, 1, 1000, 2000);
	check_cred(21, 1, 1000, 2000);
	check_cred(10, 0, 1000, 2000);
	check_cred(11, 0, 1000, 2000);
	check_cred(12, 0, 1001, 2001);
	zdtm_finish();
}
