/*
 * fd_unix_zd_peercred: SO_PEERCRED of a socketpair made by another
 * process that has since exited. A child started with clone(CLONE_FILES)
 * (sharing the fd table) changes its gid and uid to ours + 1, creates a
 * nonblocking datagram socketpair, puts its ends at fds 40 and 41 of the
 * shared table and exits; the parent reaps it. After restore: SO_PEERCRED
 * of both 40 and 41 has the child's uid + 1 and gid + 1, as before the
 * dump; both are still O_NONBLOCK and connected to each other.
 * (SO_PEERCRED's pid stays the child's only while no restore happened:
 * ferry cannot make a pair as a process that no longer exists, and names
 * itself; see the README. That is not checked here.)
 * Modelled on zdtm's sock_peercred.
 */
#include "zdtm.h"
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>

static char stack[256 * 1024] __attribute__((aligned(16)));
static uid_t uid0;
static gid_t gid0;

static int child(void *arg)
{
	int sv[2];

	(void)arg;
	if (setgid(gid0 + 1) || setuid(uid0 + 1))
		return 1;
	if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK, 0, sv))
		return 2;
	if (dup2(sv[0], 40) != 40 || dup2(sv[1], 41) != 41)
		return 3;
	close(sv[0]);
	close(sv[1]);
	return 0;
}

static void check_cred(int fd, pid_t pid, struct ucred *before)
{
	struct ucred cr = { 0 };
	socklen_t l = sizeof(cr);

	CHECK(getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &l) == 0, "fd %d: SO_PEERCRED: %s", fd, strerror(errno));
	CHECK(cr.uid == before->uid && cr.gid == before->gid,
	      "fd %d: SO_PEERCRED uid %d gid %d, want uid %d gid %d (the child that made the pair, pid %d)",
	      fd, cr.uid, cr.gid, before->uid, before->gid, pid);
	CHECK(cr.pid != 0, "fd %d: SO_PEERCRED names no process", fd);
}

int main(void)
{
	struct ucred b40, b41;
	socklen_t l;
	char buf[8] = { 0 };
	pid_t kid;
	int st;

	zdtm_init();
	uid0 = getuid();
	gid0 = getgid();
	kid = clone(child, stack + sizeof(stack), CLONE_FILES | SIGCHLD, NULL);
	if (kid < 0)
		zdtm_die("clone");
	if (waitpid(kid, &st, 0) != kid || !WIFEXITED(st) || WEXITSTATUS(st))
		zdtm_die("child status %#x", st);
	l = sizeof(b40);
	if (getsockopt(40, SOL_SOCKET, SO_PEERCRED, &b40, &l))
		zdtm_die("SO_PEERCRED 40");
	l = sizeof(b41);
	if (getsockopt(41, SOL_SOCKET, SO_PEERCRED, &b41, &l))
		zdtm_die("SO_PEERCRED 41");
	if (b40.pid != kid || b40.uid != uid0 + 1 || b40.gid != gid0 + 1)
		zdtm_die("set-up: SO_PEERCRED pid %d uid %d gid %d", b40.pid, b40.uid, b40.gid);

	zdtm_ready();
	zdtm_wait_go();

	check_cred(40, kid, &b40);
	check_cred(41, kid, &b41);
	CHECK((fcntl(40, F_GETFL) & O_NONBLOCK) && (fcntl(41, F_GETFL) & O_NONBLOCK), "fds 40, 41 lost O_NONBLOCK");
	CHECK(send(40, "ping", 4, 0) == 4 && recv(41, buf, sizeof(buf), 0) == 4 && memcmp(buf, "ping", 4) == 0,
	      "fd 40 -> fd 41: \"%s\"", buf);
	zdtm_finish();
}
