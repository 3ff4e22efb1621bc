/*
 * fd_unix_zd_reuse: unix datagram sockets whose name another socket holds
 * now. In the work dir: A at fd 110 is bound to r.sock and B connected to
 * it; r.sock is removed; C at fd 100 is bound to r.sock and D connected
 * to it; r.sock is removed again; E (fd 102) is bound to r.sock last and
 * its file stays. Nothing is queued. After restore: B->A and D->C deliver
 * (connected: no path needed) and nothing crosses over; getsockname of A,
 * C and E is r.sock; r.sock is a socket, and a datagram a new socket sends
 * to it reaches E, not A or C.
 * Modelled on zdtm's sk-unix01 (its "sole" sockets, with the fds moved to
 * 110 and 100 so that fd order is not bind order).
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

static struct sockaddr_un ra;

static int bound(int fd)
{
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);

	if (s < 0 || bind(s, (struct sockaddr *)&ra, sizeof(ra)) || dup2(s, fd) != fd)
		zdtm_die("bind %s at fd %d", ra.sun_path, fd);
	close(s);
	return fd;
}

static int conn(int fd)
{
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);

	if (s < 0 || connect(s, (struct sockaddr *)&ra, sizeof(ra)) || dup2(s, fd) != fd)
		zdtm_die("connect to %s", ra.sun_path);
	close(s);
	return fd;
}

static void nothing(int fd, const char *what)
{
	char x;

	CHECK(recv(fd, &x, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "%s (fd %d) received a datagram not meant for it", what,
	      fd);
}

static void deliver(int from, int to, const char *msg)
{
	char buf[16] = { 0 };

	CHECK(send(from, msg, strlen(msg), MSG_DONTWAIT) == (ssize_t)strlen(msg), "send on fd %d: %s", from, strerror(errno));
	CHECK(recv(to, buf, sizeof(buf), MSG_DONTWAIT) == (ssize_t)strlen(msg) && strcmp(buf, msg) == 0,
	      "fd %d -> fd %d: got \"%s\", want \"%s\"", from, to, buf, msg);
}

static void named(int fd)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);

	memset(&got, 0, sizeof(got));
	CHECK(getsockname(fd, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, ra.sun_path) == 0,
	      "fd %d: name \"%s\", want \"%s\"", fd, got.sun_path, ra.sun_path);
}

int main(void)
{
	const int A = 110, B = 111, C = 100, D = 101, E = 102;
	char cwd[256], buf[16] = { 0 };
	struct stat st;
	int n;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	ra.sun_family = AF_UNIX;
	snprintf(ra.sun_path, sizeof(ra.sun_path), "%.100s/r.sock", cwd);
	unlink(ra.sun_path);
	bound(A);
	conn(B);
	unlink(ra.sun_path);
	bound(C);
	conn(D);
	unlink(ra.sun_path);
	bound(E);

	zdtm_ready();
	zdtm_wait_go();

	deliver(B, A, "to-A");
	deliver(D, C, "to-C");
	nothing(A, "A");
	nothing(C, "C");
	nothing(E, "E");
	named(A);
	named(C);
	named(E);
	CHECK(lstat(ra.sun_path, &st) == 0 && S_ISSOCK(st.st_mode), "%s is not a socket", ra.sun_path);
	n = socket(AF_UNIX, SOCK_DGRAM, 0);
	CHECK(sendto(n, "to-E", 4, 0, (struct sockaddr *)&ra, sizeof(ra)) == 4, "send to %s: %s", ra.sun_path,
	      strerror(errno));
	CHECK(recv(E, buf, sizeof(buf), MSG_DONTWAIT) == 4 && memcmp(buf, "to-E", 4) == 0,
	      "the socket bound last to r.sock (fd %d) did not get what was sent to the name", E);
	nothing(A, "A");
	nothing(C, "C");
	zdtm_finish();
}
