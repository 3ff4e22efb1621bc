/*
 * fd_unix_zd_lseq: a listening unix SOCK_SEQPACKET socket (fd 10, backlog
 * 16) bound to the relative name "q.sock" (length without the NUL), with
 * the connection of client fd 11 waiting in its backlog, nothing sent.
 * After restore: fd 10 is a listening seqpacket socket; accept gives 11's
 * connection, also seqpacket; records flow both ways with their
 * boundaries ("r1" and "record-2" from 11 read as two records, "back" the
 * other way); a second accept gives EAGAIN.
 * Modelled on zdtm's sk-unix-listen01 built for seqpacket
 * (ZDTM_UNIX_SEQPACKET).
 */
#include "zdtm_unix.h"

static int sotype(int fd)
{
	int v = -1;
	socklen_t l = sizeof(v);
	getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l);
	return v;
}

int main(void)
{
	struct sockaddr_un sa;
	socklen_t len, l;
	char buf[16];
	int c, a, v = 0;
	ssize_t n;

	zdtm_init();
	len = listen_on(SOCK_SEQPACKET, "q.sock", 10, &sa);
	c = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, len) || dup2(c, 11) != 11)
		zdtm_die("connect");
	close(c);

	zdtm_ready();
	zdtm_wait_go();

	l = sizeof(v);
	CHECK(getsockopt(10, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v == 1, "fd 10 is not listening");
	CHECK(sotype(10) == SOCK_SEQPACKET && sotype(11) == SOCK_SEQPACKET, "SO_TYPE %d, %d, want %d", sotype(10), sotype(11),
	      SOCK_SEQPACKET);
	fcntl(10, F_SETFL, O_NONBLOCK);
	a = accept(10, NULL, NULL);
	CHECK(a >= 0, "accept: %s", strerror(errno));
	if (a >= 0) {
		CHECK(sotype(a) == SOCK_SEQPACKET, "accepted SO_TYPE %d", sotype(a));
		CHECK(send(11, "r1", 2, MSG_DONTWAIT) == 2 && send(11, "record-2", 8, MSG_DONTWAIT) == 8, "fd 11: send: %s",
		      strerror(errno));
		memset(buf, 0, sizeof(buf));
		n = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
		CHECK(n == 2 && memcmp(buf, "r1", 2) == 0, "first record: %zd \"%s\"", n, buf);
		memset(buf, 0, sizeof(buf));
		n = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
		CHECK(n == 8 && memcmp(buf, "record-2", 8) == 0, "second record: %zd \"%s\"", n, buf);
		memset(buf, 0, sizeof(buf));
		CHECK(send(a, "back", 4, MSG_DONTWAIT) == 4 && recv(11, buf, sizeof(buf), MSG_DONTWAIT) == 4 &&
		      memcmp(buf, "back", 4) == 0, "accepted -> fd 11: \"%s\"", buf);
	}
	a = accept(10, NULL, NULL);
	CHECK(a < 0 && errno == EAGAIN, "a second connection was waiting");
	zdtm_finish();
}
