/*
 * fd_unix_scm_dgram: file descriptors in flight on message sockets.
 *   dgram pair 20<->21, sent from 21: "one" (no fds); "two" with a memfd
 *     holding "memfd-data"; a zero-length datagram with /dev/null (opened
 *     O_WRONLY) and a timerfd armed to expire in an hour;
 *   seqpacket pair 22<->23, sent from 23: "r1" with X, one end of a stream
 *     socket pair whose other end Y is fd 40; "to-x" is queued on X (sent
 *     from Y before X went in flight).
 * The program keeps no fd of the memfd, /dev/null, the timerfd or X.
 * After restore each message comes back in order with its payload, its
 * length (0 for the empty datagram) and its number of fds, none truncated;
 * the memfd reads "memfd-data" at offset 0, /dev/null is O_WRONLY, the
 * timerfd has more than 50 minutes left, X reads "to-x" and is still
 * connected to fd 40 both ways.
 */
#include "zdtm_unix.h"
#include <sys/mman.h>
#include <sys/sysmacros.h>
#include <sys/timerfd.h>

/*
 * recv_msg receives one message on fd (without blocking) and checks its
 * payload and number of fds; it returns the number of fds put in fds, or
 * -1 when there was no message.
 */
static int recv_msg(int fd, const char *want, size_t wlen, int wfds, int *fds, const char *what)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAXFDS)];
		struct cmsghdr align;
	} u;
	char data[64];
	struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int nfds = 0, k;
	ssize_t n;

	memset(&u, 0, sizeof(u));
	memset(data, 0, sizeof(data));
	n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0) {
		fail("%s: recvmsg on fd %d: %s", what, fd, strerror(errno));
		return -1;
	}
	CHECK(n == (ssize_t)wlen && memcmp(data, want, wlen) == 0, "%s: %zd bytes \"%.*s\", want %zu \"%s\"", what, n,
	      (int)n, data, wlen, want);
	CHECK(!(mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)), "%s: msg_flags %#x (truncated)", what, mh.msg_flags);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		int m = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			fail("%s: unexpected cmsg level %d type %d", what, cm->cmsg_level, cm->cmsg_type);
			continue;
		}
		for (k = 0; k < m && nfds < MAXFDS; k++)
			memcpy(&fds[nfds++], CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
	}
	CHECK(nfds == wfds, "%s: %d fds, want %d", what, nfds, wfds);
	return nfds;
}

int main(void)
{
	struct itimerspec its = { .it_value = { .tv_sec = 3600 } };
	int m, nul, t, fds[MAXFDS], sv[2], x, n;
	char buf[16];
	struct stat st;
	socklen_t l;

	zdtm_init();
	unix_pair(SOCK_DGRAM, 20, 21);
	unix_pair(SOCK_SEQPACKET, 22, 23);

	send_fds(21, "one", 3, NULL, 0, 0);
	m = memfd_create("ferry-scm", 0);
	if (m < 0)
		zdtm_die("memfd_create");
	zdtm_write_all(m, "memfd-data", 10);
	send_fds(21, "two", 3, &m, 1, 0);
	close(m);
	nul = open("/dev/null", O_WRONLY);
	t = timerfd_create(CLOCK_MONOTONIC, 0);
	if (nul < 0 || t < 0 || timerfd_settime(t, 0, &its, NULL))
		zdtm_die("/dev/null, timerfd");
	fds[0] = nul;
	fds[1] = t;
	send_fds(21, "", 0, fds, 2, 0);
	close(nul);
	close(t);

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || dup2(sv[1], 40) != 40)
		zdtm_die("socketpair X/Y");
	close(sv[1]);
	x = sv[0];
	zdtm_write_all(40, "to-x", 4);
	send_fds(23, "r1", 2, &x, 1, 0);
	close(x);

	zdtm_ready();
	zdtm_wait_go();

	recv_msg(20, "one", 3, 0, fds, "dgram #1");
	if (recv_msg(20, "two", 3, 1, fds, "dgram #2") == 1) {
		check_link(fds[0], "/memfd:ferry-scm", "memfd");
		memset(buf, 0, sizeof(buf));
		CHECK(pread(fds[0], buf, sizeof(buf), 0) == 10 && memcmp(buf, "memfd-data", 10) == 0,
		      "memfd (fd %d) holds \"%.10s\", want \"memfd-data\"", fds[0], buf);
	}
	if (recv_msg(20, "", 0, 2, fds, "dgram #3 (empty)") == 2) {
		struct itimerspec cur;

		CHECK(fstat(fds[0], &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3),
		      "first fd (%d) of the empty datagram is not /dev/null", fds[0]);
		CHECK((fcntl(fds[0], F_GETFL) & O_ACCMODE) == O_WRONLY, "/dev/null (fd %d): flags %#o, want O_WRONLY", fds[0],
		      fcntl(fds[0], F_GETFL));
		check_link(fds[1], "anon_inode:[timerfd]", "second fd of the empty datagram");
		memset(&cur, 0, sizeof(cur));
		CHECK(timerfd_gettime(fds[1], &cur) == 0 && cur.it_value.tv_sec > 50 * 60 && cur.it_value.tv_sec <= 3600,
		      "timerfd (fd %d): %llds left, want 50-60 minutes", fds[1], (long long)cur.it_value.tv_sec);
	}
	CHECK(recv(20, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 20: extra datagram");

	if (recv_msg(22, "r1", 2, 1, fds, "seqpacket #1") == 1) {
		x = fds[0];
		n = -1;
		l = sizeof(n);
		CHECK(getsockopt(x, SOL_SOCKET, SO_TYPE, &n, &l) == 0 && n == SOCK_STREAM, "X (fd %d): SO_TYPE %d, want %d", x,
		      n, SOCK_STREAM);
		memset(buf, 0, sizeof(buf));
		CHECK(recv(x, buf, sizeof(buf), MSG_DONTWAIT) == 4 && memcmp(buf, "to-x", 4) == 0,
		      "X (fd %d): queued \"%.4s\", want \"to-x\"", x, buf);
		memset(buf, 0, sizeof(buf));
		CHECK(send(x, "from-x", 6, MSG_DONTWAIT) == 6 && recv(40, buf, sizeof(buf), MSG_DONTWAIT) == 6 &&
		      memcmp(buf, "from-x", 6) == 0, "X -> fd 40: got \"%.6s\"", buf);
		memset(buf, 0, sizeof(buf));
		CHECK(send(40, "from-y", 6, MSG_DONTWAIT) == 6 && recv(x, buf, sizeof(buf), MSG_DONTWAIT) == 6 &&
		      memcmp(buf, "from-y", 6) == 0, "fd 40 -> X: got \"%.6s\"", buf);
	}
	CHECK(recv(22, buf, sizeof(buf), MSG_DONTWAIT) == -1 && errno == EAGAIN, "fd 22: extra record");
	zdtm_finish();
}
