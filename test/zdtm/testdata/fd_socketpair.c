/*
 * fd_socketpair: unix socket pairs with data queued both ways.
 *   stream    50<->51: 13 bytes 50->51, 5000 bytes 51->50; fd 50 O_NONBLOCK
 *                      and SO_SNDBUF set;
 *   dgram     52<->53: messages of 1, 100, 2000 bytes 52->53, 7 bytes 53->52;
 *   seqpacket 54<->55: messages of 3 and 300 bytes 54->55;
 *   stream    56<->57: "bye" 56->57, then 56 shut down for writing.
 * After restore: types, flags, SO_SNDBUF, SO_PEERCRED, queued byte counts,
 * the data with its message boundaries, EOF after "bye" (and EPIPE the
 * other way round), and every pair still connected.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

static void pair(int type, int a, int b)
{
	int sv[2];

	if (socketpair(AF_UNIX, type, 0, sv) || dup2(sv[0], a) != a || dup2(sv[1], b) != b)
		zdtm_die("socketpair type %d", type);
	close(sv[0]);
	close(sv[1]);
}

static int sockopt(int fd, int opt)
{
	int v = -1;
	socklen_t l = sizeof(v);
	getsockopt(fd, SOL_SOCKET, opt, &v, &l);
	return v;
}

static void check_msg(int fd, size_t len, uint64_t seed, const char *what)
{
	unsigned char buf[4096];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	CHECK(n == (ssize_t)len && zdtm_check(buf, len, seed) < 0, "%s: got %zd bytes (%s), want %zu", what, n,
	      n < 0 ? strerror(errno) : "content", len);
}

static void check_connected(int a, int b, const char *what)
{
	char buf[8];
	CHECK(send(a, "ping", 4, 0) == 4 && recv(b, buf, sizeof(buf), MSG_DONTWAIT) == 4 && memcmp(buf, "ping", 4) == 0,
	      "%s: not connected any more", what);
}

int main(void)
{
	static unsigned char buf[8192];
	int fl50, sndbuf50, types[8], i, n;
	struct ucred cr;
	socklen_t l;

	zdtm_init();
	signal(SIGPIPE, SIG_IGN);
	pair(SOCK_STREAM, 50, 51);
	pair(SOCK_DGRAM, 52, 53);
	pair(SOCK_SEQPACKET, 54, 55);
	pair(SOCK_STREAM, 56, 57);
	fcntl(50, F_SETFL, O_NONBLOCK);
	n = 65536;
	setsockopt(50, SOL_SOCKET, SO_SNDBUF, &n, sizeof(n));
	zdtm_write_all(50, "hello from 50", 13);
	zdtm_fill(buf, 5000, 141);
	zdtm_write_all(51, buf, 5000);
	const size_t dg[] = { 1, 100, 2000 };
	for (i = 0; i < 3; i++) {
		zdtm_fill(buf, dg[i], 150 + i);
		if (send(52, buf, dg[i], 0) != (ssize_t)dg[i])
			zdtm_die("dgram send");
	}
	zdtm_fill(buf, 7, 160);
	if (send(53, buf, 7, 0) != 7)
		zdtm_die("dgram send back");
	zdtm_fill(buf, 3, 170);
	if (send(54, buf, 3, 0) != 3)
		zdtm_die("seqpacket send");
	zdtm_fill(buf, 300, 171);
	if (send(54, buf, 300, 0) != 300)
		zdtm_die("seqpacket send");
	zdtm_write_all(56, "bye", 3);
	if (shutdown(56, SHUT_WR))
		zdtm_die("shutdown");
	fl50 = fcntl(50, F_GETFL);
	sndbuf50 = sockopt(50, SO_SNDBUF);
	for (i = 0; i < 8; i++)
		types[i] = sockopt(50 + i, SO_TYPE);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 8; i++)
		CHECK(sockopt(50 + i, SO_TYPE) == types[i], "fd %d: SO_TYPE %d, want %d", 50 + i, sockopt(50 + i, SO_TYPE),
		      types[i]);
	CHECK(fcntl(50, F_GETFL) == fl50, "fd 50 flags %#o, want %#o", fcntl(50, F_GETFL), fl50);
	CHECK(sockopt(50, SO_SNDBUF) == sndbuf50, "fd 50 SO_SNDBUF %d, want %d", sockopt(50, SO_SNDBUF), sndbuf50);
	/* from here on nothing may block: lost data must fail, not hang */
	for (i = 0; i < 8; i++)
		fcntl(50 + i, F_SETFL, fcntl(50 + i, F_GETFL) | O_NONBLOCK);
	l = sizeof(cr);
	CHECK(getsockopt(51, SOL_SOCKET, SO_PEERCRED, &cr, &l) == 0 && cr.pid == getpid(), "fd 51 SO_PEERCRED pid %d, want %d",
	      cr.pid, getpid());
	CHECK(ioctl(51, FIONREAD, &n) == 0 && n == 13, "fd 51: %d bytes queued, want 13", n);
	CHECK(ioctl(50, FIONREAD, &n) == 0 && n == 5000, "fd 50: %d bytes queued, want 5000", n);
	memset(buf, 0, 32);
	CHECK(read(51, buf, sizeof(buf)) == 13 && memcmp(buf, "hello from 50", 13) == 0, "fd 51 data \"%.13s\"", buf);
	n = 0;
	while (n < 5000) {
		ssize_t r = read(50, buf + n, sizeof(buf) - n);
		if (r <= 0)
			break;
		n += r;
	}
	CHECK(n == 5000 && zdtm_check(buf, 5000, 141) < 0, "fd 50: %d bytes, content %s", n,
	      zdtm_check(buf, 5000, 141) < 0 ? "ok" : "differs");
	for (i = 0; i < 3; i++)
		check_msg(53, dg[i], 150 + i, "dgram 52->53");
	check_msg(52, 7, 160, "dgram 53->52");
	check_msg(55, 3, 170, "seqpacket #1");
	check_msg(55, 300, 171, "seqpacket #2");
	CHECK(recv(55, buf, 10, MSG_DONTWAIT) == -1 && errno == EAGAIN, "seqpacket: extra message");
	memset(buf, 0, 8);
	CHECK(read(57, buf, 8) == 3 && memcmp(buf, "bye", 3) == 0, "fd 57: \"%.3s\" before EOF", buf);
	CHECK(read(57, buf, 8) == 0, "fd 57: no EOF after its peer shut down writing");
	CHECK(send(56, "x", 1, 0) == -1 && errno == EPIPE, "fd 56: write after SHUT_WR did not give EPIPE");
	check_connected(50, 51, "stream 50->51");
	check_connected(51, 50, "stream 51->50");
	check_connected(52, 53, "dgram");
	check_connected(55, 54, "seqpacket back");
	check_connected(57, 56, "half-closed stream 57->56");
	zdtm_finish();
}
