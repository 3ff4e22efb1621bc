/*
 * fd_unix_zd_scmkeep: pipes in flight in SCM_RIGHTS messages.
 *   dgram 20<->21: the read end of pipe A (fd 30, O_NONBLOCK; write end
 *     fd 31) sent from 21 in a one-byte message, and kept at fd 30;
 *   dgram 22<->23: both ends of pipe B in one SCM_RIGHTS (read, write), B
 *     holding "inq", then closed by the program;
 *   seqpacket 24<->25: the same with pipe C;
 *   dgram 26<->27: both ends of pipe D in two separate SCM_RIGHTS control
 *     messages of one sendmsg, then closed.
 * After restore: 20 receives one fd, not 30, the same open file as 30
 * (kcmp KCMP_FILE, O_NONBLOCK shared); what is written on 31 is read on it
 * and then on 30; 22 and 24 each receive two fds (read end, write end) of
 * one pipe that reads "inq" and then what is written on the write end;
 * 26 receives two fds in all (the kernel merges the control messages), no
 * MSG_CTRUNC, a working pipe; no socket has another message.
 * Modelled on zdtm's scm00, scm01 (KEEP_SENT_FD), scm03,
 * scm03-seqpacket and scm04 (SEPARATE).
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/syscall.h>
#include <linux/kcmp.h>

#define MAXFDS 8

static void pair(int type, int a, int b)
{
	int sv[2];

	if (socketpair(AF_UNIX, type, 0, sv) || dup2(sv[0], a) != a || dup2(sv[1], b) != b)
		zdtm_die("socketpair type %d", type);
	close(sv[0]);
	close(sv[1]);
}

/* send_fds sends one byte with fds, in one control message or (sep) one per fd. */
static void send_fds(int via, const int *fds, int n, int sep)
{
	union {
		char buf[MAXFDS * CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	char c = 0;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf };
	struct cmsghdr *cm;
	int i;

	memset(&u, 0, sizeof(u));
	mh.msg_controllen = sep ? n * CMSG_SPACE(sizeof(int)) : CMSG_SPACE(n * sizeof(int));
	cm = CMSG_FIRSTHDR(&mh);
	if (sep) {
		for (i = 0; i < n; i++, cm = CMSG_NXTHDR(&mh, cm)) {
			cm->cmsg_level = SOL_SOCKET;
			cm->cmsg_type = SCM_RIGHTS;
			cm->cmsg_len = CMSG_LEN(sizeof(int));
			memcpy(CMSG_DATA(cm), &fds[i], sizeof(int));
		}
	} else {
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	}
	if (sendmsg(via, &mh, 0) != 1)
		zdtm_die("sendmsg %d fds on fd %d", n, via);
}

/* recv_fds receives one message on fd, checks it has want fds, returns how many it got. */
static int recv_fds(int fd, int *fds, int want)
{
	union {
		char buf[CMSG_SPACE(MAXFDS * sizeof(int))];
		struct cmsghdr align;
	} u;
	char c;
	struct iovec iov = { .iov_base = &c, .iov_len = 1 };
	struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *cm;
	int n = 0, k, m;
	ssize_t r;

	memset(&u, 0, sizeof(u));
	r = recvmsg(fd, &mh, MSG_DONTWAIT);
	if (r != 1) {
		fail("fd %d: recvmsg gave %zd (%s), want the 1-byte message", fd, r, r < 0 ? strerror(errno) : "");
		return 0;
	}
	CHECK(!(mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)), "fd %d: msg_flags %#x", fd, mh.msg_flags);
	for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
			fail("fd %d: cmsg level %d type %d", fd, cm->cmsg_level, cm->cmsg_type);
			continue;
		}
		m = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (k = 0; k < m && n < MAXFDS; k++)
			memcpy(&fds[n++], CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
	}
	CHECK(n == want, "fd %d: %d fds in the message, want %d", fd, n, want);
	return n;
}

static void pipe_works(int r, int w, const char *pre, const char *what)
{
	char buf[16] = { 0 };
	ssize_t n;

	fcntl(r, F_SETFL, fcntl(r, F_GETFL) | O_NONBLOCK);
	if (pre) {
		n = read(r, buf, sizeof(buf));
		CHECK(n == (ssize_t)strlen(pre) && memcmp(buf, pre, n) == 0, "%s: read %zd \"%s\", want \"%s\"", what, n, buf,
		      pre);
	}
	memset(buf, 0, sizeof(buf));
	CHECK(write(w, "HELLO", 5) == 5 && read(r, buf, sizeof(buf)) == 5 && memcmp(buf, "HELLO", 5) == 0,
	      "%s: write fd %d, read fd %d: \"%s\"", what, w, r, buf);
}

static void check_pipe_ends(int *fds, const char *what)
{
	struct stat a, b;

	CHECK(fstat(fds[0], &a) == 0 && fstat(fds[1], &b) == 0 && S_ISFIFO(a.st_mode) && a.st_ino == b.st_ino,
	      "%s: the two fds are not one pipe", what);
	CHECK((fcntl(fds[0], F_GETFL) & O_ACCMODE) == O_RDONLY && (fcntl(fds[1], F_GETFL) & O_ACCMODE) == O_WRONLY,
	      "%s: flags %#o, %#o, want read end then write end", what, fcntl(fds[0], F_GETFL), fcntl(fds[1], F_GETFL));
	pipe_works(fds[0], fds[1], "inq", what);
}

int main(void)
{
	int p[2], fds[MAXFDS], i, pid = getpid();
	char c;

	zdtm_init();
	pair(SOCK_DGRAM, 20, 21);
	pair(SOCK_DGRAM, 22, 23);
	pair(SOCK_SEQPACKET, 24, 25);
	pair(SOCK_DGRAM, 26, 27);

	if (pipe(p) || dup2(p[0], 30) != 30 || dup2(p[1], 31) != 31)
		zdtm_die("pipe A");
	close(p[0]);
	close(p[1]);
	fcntl(30, F_SETFL, O_NONBLOCK);
	fds[0] = 30;
	send_fds(21, fds, 1, 0);

	for (i = 0; i < 2; i++) {
		if (pipe(p))
			zdtm_die("pipe");
		zdtm_write_all(p[1], "inq", 3);
		send_fds(i == 0 ? 23 : 25, p, 2, 0);
		close(p[0]);
		close(p[1]);
	}
	if (pipe(p))
		zdtm_die("pipe D");
	zdtm_write_all(p[1], "inq", 3);
	send_fds(27, p, 2, 1);
	close(p[0]);
	close(p[1]);

	zdtm_ready();
	zdtm_wait_go();

	if (recv_fds(20, fds, 1) == 1) {
		int r = fds[0];

		CHECK(r != 30, "the received fd is fd 30 itself");
		CHECK(syscall(SYS_kcmp, pid, pid, KCMP_FILE, 30, r) == 0, "fd %d (received) and fd 30 are not one open file", r);
		CHECK(fcntl(r, F_GETFL) & O_NONBLOCK, "fd %d (received) is not O_NONBLOCK as fd 30 is", r);
		pipe_works(r, 31, NULL, "pipe A, received end");
		pipe_works(30, 31, NULL, "pipe A, kept end");
	}
	if (recv_fds(22, fds, 2) == 2)
		check_pipe_ends(fds, "pipe B (dgram)");
	if (recv_fds(24, fds, 2) == 2)
		check_pipe_ends(fds, "pipe C (seqpacket)");
	if (recv_fds(26, fds, 2) == 2)
		check_pipe_ends(fds, "pipe D (two control messages)");
	for (i = 20; i <= 26; i += 2)
		CHECK(recv(i, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "fd %d: an extra message", i);
	zdtm_finish();
}
