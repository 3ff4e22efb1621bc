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
#include "zdtm.h"
#include <signal.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/unix_diag.h>

/* shut_bits returns the socket's sk_shutdown (1 RCV, 2 SEND) from sock_diag, or -1. */
static int shut_bits(int fd)
{
	struct {
		struct nlmsghdr nlh;
		struct unix_diag_req req;
	} msg;
	union {
		char buf[8192];
		struct nlmsghdr align;
	} u;
	struct stat st;
	struct nlmsghdr *h;
	int nl, r = -1;
	ssize_t n;

	if (fstat(fd, &st))
		return -1;
	nl = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (nl < 0)
		return -1;
	memset(&msg, 0, sizeof(msg));
	msg.nlh.nlmsg_len = sizeof(msg);
	msg.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	msg.nlh.nlmsg_flags = NLM_F_REQUEST;
	msg.req.sdiag_family = AF_UNIX;
	msg.req.udiag_states = -1;
	msg.req.udiag_ino = st.st_ino;
	msg.req.udiag_cookie[0] = msg.req.udiag_cookie[1] = ~0U;
	if (send(nl, &msg, sizeof(msg), 0) != sizeof(msg) || (n = recv(nl, u.buf, sizeof(u.buf), 0)) <= 0) {
		close(nl);
		return -1;
	}
	for (h = &u.align; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
		struct unix_diag_msg *m = NLMSG_DATA(h);
		struct rtattr *a;
		int len;

		if (h->nlmsg_type != SOCK_DIAG_BY_FAMILY)
			break;
		len = h->nlmsg_len - NLMSG_LENGTH(sizeof(*m));
		for (a = (struct rtattr *)(m + 1); RTA_OK(a, len); a = RTA_NEXT(a, len))
			if (a->rta_type == UNIX_DIAG_SHUTDOWN)
				r = *(unsigned char *)RTA_DATA(a);
		break;
	}
	close(nl);
	return r;
}

static void put(int s, int fd)
{
	if (s < 0 || dup2(s, fd) != fd)
		zdtm_die("socket at fd %d", fd);
	close(s);
}

static void setup(int type, const char *cwd, const char *name, int l, int c, int a)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int s;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", cwd, name);
	/* as zdtm binds: the length does not count the terminating NUL */
	len = offsetof(struct sockaddr_un, sun_path) + strlen(sa.sun_path);
	unlink(sa.sun_path);
	s = socket(AF_UNIX, type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, len) || listen(s, 16))
		zdtm_die("listen on %s", sa.sun_path);
	put(s, l);
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
