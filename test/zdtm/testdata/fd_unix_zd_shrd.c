/*
 * fd_unix_zd_shrd: a unix stream connection whose shutdown states do not
 * mirror each other. fd 10 listens on s.sock in the work dir; fd 11 was
 * shut down for reading before it connected (so the kernel did not shut
 * its peer for writing) and its connection was accepted as fd 12. The
 * same with seqpacket: fd 20 listens on q.sock, fd 21 shut down for
 * reading before connecting, accepted as fd 22. After restore: the
 * shutdown bits (sock_diag) of 11, 12, 21, 22 are those recorded before
 * the dump (1 on the client, 0 on the accepted socket); the client can
 * still write (the accepted socket reads "packet") and the accepted
 * socket's write fails with EPIPE, both for stream and seqpacket.
 * Modelled on zdtm's sockets03 (and its seqpacket variant).
 */
#include "zdtm_unix.h"
#include <signal.h>

static void put(int s, int fd)
{
	if (s < 0 || dup2(s, fd) != fd)
		zdtm_die("socket at fd %d", fd);
	close(s);
}

static void setup(int type, const char *cwd, const char *name, int l, int c, int a)
{
	struct sockaddr_un sa;
	char path[sizeof(sa.sun_path)];
	socklen_t len;
	int s;

	snprintf(path, sizeof(path), "%s/%s", cwd, name);
	len = listen_on(type, path, l, &sa);
	s = socket(AF_UNIX, type, 0);
	if (s < 0 || shutdown(s, SHUT_RD) || connect(s, (struct sockaddr *)&sa, len))
		zdtm_die("shut down, then connect to %s", sa.sun_path);
	put(s, c);
	put(accept(l, NULL, NULL), a);
}

static void check(int c, int a)
{
	char buf[16] = { 0 };
	ssize_t n;

	n = send(c, "packet", 6, MSG_DONTWAIT);
	CHECK(n == 6, "fd %d (shut down for reading) -> fd %d: send gave %zd (%s)", c, a, n, n < 0 ? strerror(errno) : "short");
	n = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 6 && memcmp(buf, "packet", 6) == 0, "fd %d: read %zd \"%s\", want \"packet\"", a, n, buf);
	n = send(a, "packet", 6, MSG_DONTWAIT);
	CHECK(n == -1 && errno == EPIPE, "fd %d -> fd %d (shut down for reading): send gave %zd (%s), want EPIPE", a, c,
	      n, n < 0 ? strerror(errno) : "sent");
}

int main(void)
{
	const int fds[4] = { 11, 12, 21, 22 };
	int before[4], i, b;
	char cwd[256];

	zdtm_init();
	signal(SIGPIPE, SIG_IGN);
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	setup(SOCK_STREAM, cwd, "s.sock", 10, 11, 12);
	setup(SOCK_SEQPACKET, cwd, "q.sock", 20, 21, 22);
	for (i = 0; i < 4; i++)
		if ((before[i] = shut_bits(fds[i])) < 0)
			zdtm_die("sock_diag of fd %d", fds[i]);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 4; i++) {
		b = shut_bits(fds[i]);
		CHECK(b == before[i], "fd %d: shutdown bits %d, want %d (1 read, 2 write)", fds[i], b, before[i]);
	}
	check(11, 12);
	check(21, 22);
	zdtm_finish();
}
