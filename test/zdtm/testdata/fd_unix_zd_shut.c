/*
 * fd_unix_zd_shut: unix socket pairs shut down in every direction, one end
 * each, nothing queued except where said:
 *   stream    10<->11: 10 shut down for reading;
 *   stream    12<->13: 12 shut down both ways;
 *   dgram     14<->15: 14 shut down for reading;
 *   dgram     16<->17: 16 shut down both ways;
 *   dgram     18<->19: "msg" queued 18->19, then 18 shut down for writing;
 *   seqpacket 20<->21: 20 shut down for reading.
 * After restore: the shutdown bits of every socket (sock_diag
 * UNIX_DIAG_SHUTDOWN: a stream or seqpacket peer is shut the other way
 * too, a datagram peer is not) are those recorded before the dump; 10->11,
 * 14->15, 20->21 and 19->18 still carry data, and 11->10, 12->13, 13->12,
 * 15->14, 16->17, 17->16, 21->20, 18->19 fail with EPIPE; 19 reads "msg";
 * reading 10, 20 (and 12, 13) gives EOF.
 * Modelled on zdtm's sockets01 (and its seqpacket variant).
 */
#include "zdtm_unix.h"
#include <signal.h>

#define NFD 12 /* fds 10..21 */

static void flows(int from, int to)
{
	char buf[16] = { 0 };
	ssize_t n = send(from, "data", 4, MSG_DONTWAIT);

	CHECK(n == 4, "fd %d -> fd %d: send: %s", from, to, n < 0 ? strerror(errno) : "short");
	if (n == 4)
		CHECK(recv(to, buf, sizeof(buf), MSG_DONTWAIT) == 4 && memcmp(buf, "data", 4) == 0,
		      "fd %d -> fd %d: sent, not received (\"%s\")", from, to, buf);
}

static void blocked(int from, int to)
{
	ssize_t n = send(from, "data", 4, MSG_DONTWAIT);

	CHECK(n == -1 && errno == EPIPE, "fd %d -> fd %d: send gave %zd (%s), want EPIPE", from, to, n,
	      n < 0 ? strerror(errno) : "sent");
}

static void eof(int fd)
{
	char buf[8];
	ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

	CHECK(n == 0, "fd %d: recv gave %zd (%s), want EOF", fd, n, n < 0 ? strerror(errno) : "data");
}

int main(void)
{
	int before[NFD], i, b;
	char buf[16] = { 0 };

	zdtm_init();
	signal(SIGPIPE, SIG_IGN);
	unix_pair(SOCK_STREAM, 10, 11);
	unix_pair(SOCK_STREAM, 12, 13);
	unix_pair(SOCK_DGRAM, 14, 15);
	unix_pair(SOCK_DGRAM, 16, 17);
	unix_pair(SOCK_DGRAM, 18, 19);
	unix_pair(SOCK_SEQPACKET, 20, 21);
	if (send(18, "msg", 3, 0) != 3)
		zdtm_die("send msg");
	if (shutdown(10, SHUT_RD) || shutdown(12, SHUT_RDWR) || shutdown(14, SHUT_RD) || shutdown(16, SHUT_RDWR) ||
	    shutdown(18, SHUT_WR) || shutdown(20, SHUT_RD))
		zdtm_die("shutdown");
	for (i = 0; i < NFD; i++)
		if ((before[i] = shut_bits(10 + i)) < 0)
			zdtm_die("sock_diag of fd %d", 10 + i);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NFD; i++) {
		b = shut_bits(10 + i);
		CHECK(b == before[i], "fd %d: shutdown bits %d, want %d (1 read, 2 write)", 10 + i, b, before[i]);
	}
	CHECK(recv(19, buf, sizeof(buf), MSG_DONTWAIT) == 3 && memcmp(buf, "msg", 3) == 0,
	      "fd 19: queued \"%s\", want \"msg\"", buf);
	flows(10, 11);
	blocked(11, 10);
	eof(10);
	blocked(12, 13);
	blocked(13, 12);
	eof(12);
	eof(13);
	flows(14, 15);
	blocked(15, 14);
	blocked(16, 17);
	blocked(17, 16);
	blocked(18, 19);
	flows(19, 18);
	flows(20, 21);
	blocked(21, 20);
	eof(20);
	zdtm_finish();
}
