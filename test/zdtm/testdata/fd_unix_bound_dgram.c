/*
 * fd_unix_bound_dgram: an unconnected SOCK_DGRAM unix socket (fd 60) bound
 * to an absolute path in the work dir (mode 0640), with two datagrams (5
 * and 900 bytes) queued by a sender that has since been closed, and one
 * (fd 61) bound to an abstract name. After restore: getsockname gives the
 * same names, the path is still a socket of mode 0640, the datagrams are
 * there with their boundaries, and a new client can send to both names.
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static void sendto_name(const struct sockaddr_un *sa, socklen_t l, const void *b, size_t n)
{
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || sendto(s, b, n, 0, (const struct sockaddr *)sa, l) != (ssize_t)n)
		zdtm_die("sendto");
	close(s);
}

int main(void)
{
	static unsigned char buf[2048];
	struct sockaddr_un sa = { .sun_family = AF_UNIX }, ab = { .sun_family = AF_UNIX }, got;
	socklen_t l, abl;
	struct stat st;
	char cwd[256];
	int s;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%.100s/d.sock", cwd);
	unlink(sa.sun_path);
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) || dup2(s, 60) != 60)
		zdtm_die("bind %s", sa.sun_path);
	close(s);
	chmod(sa.sun_path, 0640);
	snprintf(ab.sun_path + 1, sizeof(ab.sun_path) - 1, "ferry-zdtm-%d", getpid());
	abl = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(ab.sun_path + 1);
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&ab, abl) || dup2(s, 61) != 61)
		zdtm_die("bind abstract");
	close(s);
	zdtm_fill(buf, 5, 201);
	sendto_name(&sa, sizeof(sa), buf, 5);
	zdtm_fill(buf, 900, 202);
	sendto_name(&sa, sizeof(sa), buf, 900);

	zdtm_ready();
	zdtm_wait_go();

	l = sizeof(got);
	memset(&got, 0, sizeof(got));
	CHECK(getsockname(60, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, sa.sun_path) == 0,
	      "fd 60 bound to \"%s\", want \"%s\"", got.sun_path, sa.sun_path);
	CHECK(lstat(sa.sun_path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 07777) == 0640,
	      "%s: mode %o, want a socket of mode 640", sa.sun_path, st.st_mode);
	l = sizeof(got);
	memset(&got, 0, sizeof(got));
	CHECK(getsockname(61, (struct sockaddr *)&got, &l) == 0 && l == abl && memcmp(got.sun_path, ab.sun_path, abl - 2) == 0,
	      "fd 61 bound to \"@%s\", want \"@%s\"", got.sun_path + 1, ab.sun_path + 1);
	fcntl(60, F_SETFL, O_NONBLOCK);
	fcntl(61, F_SETFL, O_NONBLOCK);
	CHECK(recv(60, buf, sizeof(buf), 0) == 5 && zdtm_check(buf, 5, 201) < 0, "fd 60: first datagram lost");
	CHECK(recv(60, buf, sizeof(buf), 0) == 900 && zdtm_check(buf, 900, 202) < 0, "fd 60: second datagram lost");
	CHECK(recv(60, buf, sizeof(buf), 0) == -1 && errno == EAGAIN, "fd 60: extra datagram");
	sendto_name(&sa, sizeof(sa), "new", 3);
	CHECK(recv(60, buf, sizeof(buf), 0) == 3 && memcmp(buf, "new", 3) == 0, "fd 60: a new client cannot send to %s",
	      sa.sun_path);
	sendto_name(&ab, abl, "abs", 3);
	CHECK(recv(61, buf, sizeof(buf), 0) == 3 && memcmp(buf, "abs", 3) == 0, "fd 61: a new client cannot send to it");
	zdtm_finish();
}
