/*
 * fd_unix_zd_semi: socket pairs whose other end was closed after writing.
 * fd 10 is a stream socket whose peer wrote one byte 'Q' and was closed;
 * fd 11 a seqpacket socket whose peer sent the record "rec" and was
 * closed; fd 12 a stream socket whose peer was closed with nothing sent.
 * The peers' fd numbers (13, 14, 15) are left closed. After restore: 10
 * reads 'Q' then EOF; 11 reads "rec" then EOF; 12 reads EOF; writing on
 * 10, 11 and 12 fails with EPIPE; fds 13-15 are still closed (EBADF).
 * Modelled on zdtm's sockets02 (and its seqpacket variant).
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/socket.h>

static void half(int type, int keep, int gone, const char *data, size_t len)
{
	int sv[2];

	if (socketpair(AF_UNIX, type, 0, sv) || dup2(sv[0], keep) != keep || dup2(sv[1], gone) != gone)
		zdtm_die("socketpair type %d", type);
	close(sv[0]);
	close(sv[1]);
	if (len && send(gone, data, len, 0) != (ssize_t)len)
		zdtm_die("send on fd %d", gone);
	close(gone);
}

static void reads(int fd, const char *want, size_t len)
{
	char buf[16] = { 0 };
	ssize_t n;

	if (len) {
		n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
		CHECK(n == (ssize_t)len && memcmp(buf, want, len) == 0, "fd %d: read %zd \"%s\", want \"%s\"", fd, n, buf,
		      want);
	}
	n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
	CHECK(n == 0, "fd %d: read %zd (%s) after the data, want EOF", fd, n, n < 0 ? strerror(errno) : "more data");
	n = send(fd, "x", 1, MSG_DONTWAIT);
	CHECK(n == -1 && errno == EPIPE, "fd %d: send to the closed peer gave %zd (%s), want EPIPE", fd, n,
	      n < 0 ? strerror(errno) : "sent");
}

int main(void)
{
	int i;

	zdtm_init();
	signal(SIGPIPE, SIG_IGN);
	half(SOCK_STREAM, 10, 13, "Q", 1);
	half(SOCK_SEQPACKET, 11, 14, "rec", 3);
	half(SOCK_STREAM, 12, 15, NULL, 0);

	zdtm_ready();
	zdtm_wait_go();

	reads(10, "Q", 1);
	reads(11, "rec", 3);
	reads(12, NULL, 0);
	for (i = 13; i <= 15; i++)
		CHECK(fcntl(i, F_GETFD) == -1 && errno == EBADF, "fd %d (the closed peer) is open", i);
	zdtm_finish();
}
