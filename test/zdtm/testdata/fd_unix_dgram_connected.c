/*
 * fd_unix_dgram_connected: connected unix datagram sockets. A "server"
 * (fd 10) bound to s.sock in the work dir; an unbound socket (fd 11)
 * connected to it; a socket (fd 12) bound to b.sock and connected to it.
 * Queued at the server, unread: "a1" from 11, "b1" from 12, "a2" from 11;
 * queued at 12, unread: "to-12" sent by the server to b.sock. After
 * restore: the server receives "a1" (from an unnamed sender), "b1" (from
 * b.sock), "a2" in that order and nothing more; 12 receives "to-12"; 11 and
 * 12 are still connected to s.sock (getpeername) and named as before (11
 * unnamed, 12 b.sock); new datagrams sent on 11 and on 12 reach the server.
 */
#include "zdtm_unix.h"

/*
 * check_from receives one datagram on fd 10 and checks its payload and
 * its sender's address (unnamed: the kernel gives a length of at most
 * sizeof(sa_family_t)).
 */
static void check_from(const char *want, const struct sockaddr_un *from, socklen_t fl, const char *what)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	char buf[16], b1[256], b2[256];
	size_t wn = strlen(want);
	ssize_t n;

	memset(&got, 0, sizeof(got));
	memset(buf, 0, sizeof(buf));
	n = recvfrom(10, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&got, &l);
	if (n < 0) {
		fail("%s: recvfrom on fd 10: %s", what, strerror(errno));
		return;
	}
	CHECK(n == (ssize_t)wn && memcmp(buf, want, wn) == 0, "%s: %zd bytes \"%.*s\", want \"%s\"", what, n, (int)n, buf,
	      want);
	if (fl == UNNAMED)
		CHECK(l <= UNNAMED, "%s: sender is %s, want unnamed", what, show(&got, l, b1, sizeof(b1)));
	else
		CHECK(l == fl && memcmp(&got, from, fl) == 0, "%s: sender is %s, want %s", what, show(&got, l, b1, sizeof(b1)),
		      show(from, fl, b2, sizeof(b2)));
}

static int dgram(void)
{
	int s = socket(AF_UNIX, SOCK_DGRAM, 0);

	if (s < 0)
		zdtm_die("socket");
	return s;
}

static void put(int s, int fd)
{
	if (dup2(s, fd) != fd)
		zdtm_die("dup2 %d", fd);
	close(s);
}

static void send_dgram(int fd, const char *msg)
{
	if (send(fd, msg, strlen(msg), 0) != (ssize_t)strlen(msg))
		zdtm_die("send \"%s\" on fd %d", msg, fd);
}

int main(void)
{
	struct sockaddr_un sa, ba, un = { .sun_family = AF_UNIX };
	char cwd[256], buf[16];
	socklen_t sl, bl;
	ssize_t n;
	int s;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	sl = path_addr(&sa, cwd, "s.sock");
	bl = path_addr(&ba, cwd, "b.sock");
	unlink(sa.sun_path);
	unlink(ba.sun_path);
	s = dgram();
	if (bind(s, (struct sockaddr *)&sa, sizeof(sa)))
		zdtm_die("bind %s", sa.sun_path);
	put(s, 10);
	s = dgram();
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		zdtm_die("connect to %s", sa.sun_path);
	put(s, 11);
	s = dgram();
	if (bind(s, (struct sockaddr *)&ba, sizeof(ba)) || connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		zdtm_die("bind %s, connect to %s", ba.sun_path, sa.sun_path);
	put(s, 12);
	send_dgram(11, "a1");
	send_dgram(12, "b1");
	send_dgram(11, "a2");
	if (sendto(10, "to-12", 5, 0, (struct sockaddr *)&ba, sizeof(ba)) != 5)
		zdtm_die("sendto %s", ba.sun_path);

	zdtm_ready();
	zdtm_wait_go();

	check_addr(10, 0, &sa, sl);
	check_addr(11, 1, &sa, sl);
	check_addr(12, 1, &sa, sl);
	check_addr(11, 0, &un, UNNAMED);
	check_addr(12, 0, &ba, bl);
	check_from("a1", &un, UNNAMED, "server datagram #1");
	check_from("b1", &ba, bl, "server datagram #2");
	check_from("a2", &un, UNNAMED, "server datagram #3");
	CHECK(recv(10, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 10: extra datagram");
	memset(buf, 0, sizeof(buf));
	n = recv(12, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 5 && memcmp(buf, "to-12", 5) == 0, "fd 12: queued %zd \"%.*s\", want \"to-12\"", n, n > 0 ? (int)n : 0,
	      buf);
	CHECK(recv(12, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 12: extra datagram");
	CHECK(recv(11, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 11: a datagram queued, want none");

	CHECK(send(11, "a3", 2, MSG_DONTWAIT) == 2, "fd 11: send: %s", strerror(errno));
	check_from("a3", &un, UNNAMED, "new datagram from fd 11");
	CHECK(send(12, "b2", 2, MSG_DONTWAIT) == 2, "fd 12: send: %s", strerror(errno));
	check_from("b2", &ba, bl, "new datagram from fd 12");
	zdtm_finish();
}
