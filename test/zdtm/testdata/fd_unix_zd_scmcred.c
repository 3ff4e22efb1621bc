/*
 * fd_unix_zd_scmcred: SCM_CREDENTIALS and SCM_RIGHTS on SO_PASSCRED
 * sockets. Datagram pair 20<->21; sent from 20, in order: "CREDS=1" with
 * explicit SCM_CREDENTIALS {our pid, uid 1234, gid 5678}; "FDSTORE=1" with
 * X, one end of a stream pair whose other end Y is fd 30; "FDSTORE=1" with
 * X again; X is then closed. Datagram pair 22<->23: "FDSTORE=1" from 22
 * with X2, then X2 and its peer are closed.
 * Without an argument SO_PASSCRED is set on both ends of each pair (20-23);
 * with the argument "rcred" (case fd_unix_zd_rcred) on the receiving ends
 * only (21 and 23), so that the unbound senders are not autobound and the
 * credentials queued with each message are what is tested.
 * After restore: SO_PASSCRED is still set on exactly those fds; 21
 * receives the three messages in order, each with SCM_CREDENTIALS naming
 * our pid (the first with uid 1234 and gid 5678, the others with our own
 * uid and gid), the first with no fd, the others with one fd each, the
 * same open file (kcmp); what fd 30 writes X reads, and the other way
 * round; 23 receives "FDSTORE=1" with creds and one fd, which reads EOF
 * (its peer is closed).
 * Modelled on zdtm's scm07 and its CLOSE_SENDER_FD and SEND_ANOTHER_FD
 * builds (scm08, scm09); "rcred" with SO_PASSCRED set on one end only.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/kcmp.h>

static int rcred; /* SO_PASSCRED on the receiving ends only */

static void pair(int type, int a, int b)
{
	int sv[2], on = 1;

	if (socketpair(AF_UNIX, type, 0, sv) || dup2(sv[0], a) != a || dup2(sv[1], b) != b)
		zdtm_die("socketpair type %d", type);
	close(sv[0]);
	close(sv[1]);
	if ((!rcred && setsockopt(a, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on))) ||
	    setsockopt(b, SOL_SOCKET, SO_PASSCRED, &on, sizeof(on)))
		zdtm_die("SO_PASSCRED");
}

/* sendm sends data with a creds control message (cr) or one fd (fd >= 0). */
static void sendm(int via, const char *data, const struct ucred *cr, int fd)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred))];
		struct cmsghdr align;
	} u;
	struct iovec iov = { .iov_base = (void *)data, .iov_len = strlen(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf };
	struct cmsghdr *cm;

	memset(&u, 0, sizeof(u));
	cm = (struct cmsghdr *)u.buf;
	cm->cmsg_level = SOL_SOCKET;
	if (cr) {
		cm->cmsg_type = SCM_CREDENTIALS;
		cm->cmsg_len = CMSG_LEN(sizeof(*cr));
		memcpy(CMSG_DATA(cm), cr, sizeof(*cr));
		mh.msg_controllen = CMSG_SPACE(sizeof(*cr));
	} else {
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
		mh.msg_controllen = CMSG_SPACE(sizeof(int));
	}
	if (sendmsg(via, &mh, 0) != (ssize_t)strlen(data))
		zdtm_die("sendmsg \"%s\" on fd %d", data, via);
}

/* recvm receives one message and checks its data and credentials; returns its fd or -1. */
static int recvm(int fd, const char *want, const struct ucred *wcr, int wfd, const char *what)
{
	union {
		char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(8 * sizeof(int))];
		struct cmsghdr align;
	} u;
	char data[32] = { 0 };
	struct iovec iov = { .iov_base = data, .iov_len = sizeof(data) };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int got = -1, nfds = 0, ncr = 0;
	struct ucred cr = { 0 };
	ssize_t n;

	memset(&u, 0, sizeof(u));
	n = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (n < 0) {
		fail("%s: recvmsg on fd %d: %s", what, fd, strerror(errno));
		return -1;
	}
	CHECK(n == (ssize_t)strlen(want) && memcmp(data, want, n) == 0, "%s: \"%s\", want \"%s\"", what, data, want);
	CHECK(!(mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)), "%s: msg_flags %#x", what, mh.msg_flags);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_CREDENTIALS) {
			memcpy(&cr, CMSG_DATA(cm), sizeof(cr));
			ncr++;
		} else if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
			nfds += (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			memcpy(&got, CMSG_DATA(cm), sizeof(int));
		} else {
			fail("%s: cmsg level %d type %d", what, cm->cmsg_level, cm->cmsg_type);
		}
	}
	CHECK(ncr == 1, "%s: %d SCM_CREDENTIALS, want 1", what, ncr);
	if (ncr == 1)
		CHECK(cr.pid == wcr->pid && cr.uid == wcr->uid && cr.gid == wcr->gid,
		      "%s: credentials pid %d uid %d gid %d, want pid %d uid %d gid %d", what, cr.pid, cr.uid, cr.gid, wcr->pid,
		      wcr->uid, wcr->gid);
	CHECK(nfds == wfd, "%s: %d fds, want %d", what, nfds, wfd);
	return nfds == 1 ? got : -1;
}

int main(int argc, char **argv)
{
	struct ucred explicit = { .pid = getpid(), .uid = 1234, .gid = 5678 };
	struct ucred own = { .pid = getpid(), .uid = getuid(), .gid = getgid() };
	int sv[2], i, x1, x2, v, want, pid = getpid();
	char buf[16];
	socklen_t l;
	ssize_t n;

	rcred = argc > 1 && strcmp(argv[1], "rcred") == 0;
	zdtm_init();
	pair(SOCK_DGRAM, 20, 21);
	pair(SOCK_DGRAM, 22, 23);
	sendm(20, "CREDS=1", &explicit, -1);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || dup2(sv[1], 30) != 30)
		zdtm_die("socketpair X/Y");
	close(sv[1]);
	sendm(20, "FDSTORE=1", NULL, sv[0]);
	sendm(20, "FDSTORE=1", NULL, sv[0]);
	close(sv[0]);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
		zdtm_die("socketpair X2");
	sendm(22, "FDSTORE=1", NULL, sv[0]);
	close(sv[0]);
	close(sv[1]);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 20; i <= 23; i++) {
		v = 0;
		l = sizeof(v);
		want = rcred ? (i & 1) : 1;
		CHECK(getsockopt(i, SOL_SOCKET, SO_PASSCRED, &v, &l) == 0 && v == want, "fd %d: SO_PASSCRED %d, want %d", i,
		      v, want);
	}
	recvm(21, "CREDS=1", &explicit, 0, "fd 21 message 1");
	x1 = recvm(21, "FDSTORE=1", &own, 1, "fd 21 message 2");
	x2 = recvm(21, "FDSTORE=1", &own, 1, "fd 21 message 3");
	if (x1 >= 0 && x2 >= 0)
		CHECK(syscall(SYS_kcmp, pid, pid, KCMP_FILE, x1, x2) == 0, "messages 2 and 3 carry different files");
	if (x1 >= 0) {
		memset(buf, 0, sizeof(buf));
		CHECK(send(30, "HELLO", 5, MSG_DONTWAIT) == 5 && recv(x1, buf, sizeof(buf), MSG_DONTWAIT) == 5 &&
		      memcmp(buf, "HELLO", 5) == 0, "fd 30 -> X: \"%s\"", buf);
		memset(buf, 0, sizeof(buf));
		CHECK(send(x1, "BACK", 4, MSG_DONTWAIT) == 4 && recv(30, buf, sizeof(buf), MSG_DONTWAIT) == 4 &&
		      memcmp(buf, "BACK", 4) == 0, "X -> fd 30: \"%s\"", buf);
	}
	x2 = recvm(23, "FDSTORE=1", &own, 1, "fd 23 message");
	if (x2 >= 0) {
		n = recv(x2, buf, sizeof(buf), MSG_DONTWAIT);
		CHECK(n == 0, "X2 (peer closed) reads %zd (%s), want EOF", n, n < 0 ? strerror(errno) : "data");
	}
	CHECK(recv(21, buf, sizeof(buf), MSG_DONTWAIT) < 0 && errno == EAGAIN, "fd 21: an extra message");
	zdtm_finish();
}
