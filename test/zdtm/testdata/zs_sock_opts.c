/*
 * zs_sock_opts: generic socket options of unix sockets that the program set
 * with setsockopt. Stream socketpair 10<->11:
 *   fd 10: SO_RCVTIMEO 1.5 s, SO_PRIORITY 5, SO_RCVLOWAT 3, SO_KEEPALIVE 1,
 *          SO_MARK 0x77, SO_PEEK_OFF 2, and "abcdef" queued for it;
 *   fd 11: SO_SNDTIMEO 2.24 s, SO_PRIORITY 2.
 * (Values are whole jiffies at HZ 100, 250 and 1000: the kernel rounds.)
 * Datagram socketpair 12<->13: fd 12 SO_RCVTIMEO 0.26 s, SO_PASSSEC 1.
 * After restore getsockopt reads every value back, a MSG_PEEK read on fd
 * 10 starts at the peek offset ("cdef") and moves it on, and a read on the
 * empty fd 12 times out after about 0.26 s (EAGAIN), not never.
 * Modelled on zdtm's sock_opts00 and sock_peek_off.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/socket.h>

#ifndef SO_PEEK_OFF
#define SO_PEEK_OFF 42
#endif

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

static void seti(int fd, int opt, int v, const char *name)
{
	if (setsockopt(fd, SOL_SOCKET, opt, &v, sizeof(v)))
		zdtm_die("setsockopt fd %d %s", fd, name);
}

static void sett(int fd, int opt, long s, long us, const char *name)
{
	struct timeval tv = { s, us };
	if (setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof(tv)))
		zdtm_die("setsockopt fd %d %s", fd, name);
}

static void checki(int fd, int opt, int want, const char *name)
{
	int v = -12345;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, opt, &v, &l))
		fail("getsockopt fd %d %s: %s", fd, name, strerror(errno));
	else
		CHECK(v == want, "fd %d %s = %d, want %d", fd, name, v, want);
}

static void checkt(int fd, int opt, long s, long us, const char *name)
{
	struct timeval tv = { -1, -1 };
	socklen_t l = sizeof(tv);
	if (getsockopt(fd, SOL_SOCKET, opt, &tv, &l))
		fail("getsockopt fd %d %s: %s", fd, name, strerror(errno));
	else
		CHECK(tv.tv_sec == s && tv.tv_usec == us, "fd %d %s = %ld.%06ld, want %ld.%06ld",
		      fd, name, (long)tv.tv_sec, (long)tv.tv_usec, s, us);
}

static void on_alarm(int sig) { (void)sig; }

int main(void)
{
	struct sigaction sa;
	int sv[2], dv[2];
	char buf[16];
	ssize_t n;
	int64_t t0, dt;

	zdtm_init();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dv))
		zdtm_die("socketpair");
	place(sv[0], 10);
	place(sv[1], 11);
	place(dv[0], 12);
	place(dv[1], 13);
	sett(10, SO_RCVTIMEO, 1, 500000, "SO_RCVTIMEO");
	seti(10, SO_PRIORITY, 5, "SO_PRIORITY");
	seti(10, SO_RCVLOWAT, 3, "SO_RCVLOWAT");
	seti(10, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	seti(10, SO_MARK, 0x77, "SO_MARK");
	seti(10, SO_PEEK_OFF, 2, "SO_PEEK_OFF");
	sett(11, SO_SNDTIMEO, 2, 240000, "SO_SNDTIMEO");
	seti(11, SO_PRIORITY, 2, "SO_PRIORITY");
	sett(12, SO_RCVTIMEO, 0, 260000, "SO_RCVTIMEO");
	seti(12, SO_PASSSEC, 1, "SO_PASSSEC");
	zdtm_write_all(11, "abcdef", 6);

	zdtm_ready();
	zdtm_wait_go();

	checkt(10, SO_RCVTIMEO, 1, 500000, "SO_RCVTIMEO");
	checki(10, SO_PRIORITY, 5, "SO_PRIORITY");
	checki(10, SO_RCVLOWAT, 3, "SO_RCVLOWAT");
	checki(10, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	checki(10, SO_MARK, 0x77, "SO_MARK");
	checki(10, SO_PEEK_OFF, 2, "SO_PEEK_OFF");
	checkt(11, SO_SNDTIMEO, 2, 240000, "SO_SNDTIMEO");
	checki(11, SO_PRIORITY, 2, "SO_PRIORITY");
	checkt(12, SO_RCVTIMEO, 0, 260000, "SO_RCVTIMEO");
	checki(12, SO_PASSSEC, 1, "SO_PASSSEC");

	memset(buf, 0, sizeof(buf));
	n = recv(10, buf, 2, MSG_PEEK | MSG_DONTWAIT);
	CHECK(n == 2 && memcmp(buf, "cd", 2) == 0, "MSG_PEEK at the peek offset gave %zd \"%.*s\", want \"cd\"",
	      n, n > 0 ? (int)n : 0, buf);
	checki(10, SO_PEEK_OFF, 4, "SO_PEEK_OFF after a 2-byte peek");
	n = recv(10, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 6 && memcmp(buf, "abcdef", 6) == 0, "read gave %zd bytes, want \"abcdef\"", n);

	/* a lost SO_RCVTIMEO would block forever: SIGALRM (no SA_RESTART) ends it */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_alarm;
	sigaction(SIGALRM, &sa, NULL);
	alarm(4);
	t0 = zdtm_mono_ns();
	n = recv(12, buf, sizeof(buf), 0);
	dt = zdtm_mono_ns() - t0;
	CHECK(n == -1 && (errno == EAGAIN || errno == EWOULDBLOCK), "recv on empty fd 12 = %zd (%s), want EAGAIN",
	      n, n < 0 ? strerror(errno) : "data");
	CHECK(dt >= 200000000LL && dt < 2000000000LL, "recv timeout on fd 12 took %lld ms, want ~260",
	      (long long)(dt / 1000000));
	zdtm_finish();
}
