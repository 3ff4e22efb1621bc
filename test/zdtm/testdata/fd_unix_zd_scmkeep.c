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
#include "zdtm_unix.h"
#include <sys/syscall.h>
#include <linux/kcmp.h>

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
	unix_pair(SOCK_DGRAM, 20, 21);
	unix_pair(SOCK_DGRAM, 22, 23);
	unix_pair(SOCK_SEQPACKET, 24, 25);
	unix_pair(SOCK_DGRAM, 26, 27);

	if (pipe(p) || dup2(p[0], 30) != 30 || dup2(p[1], 31) != 31)
		zdtm_die("pipe A");
	close(p[0]);
	close(p[1]);
	fcntl(30, F_SETFL, O_NONBLOCK);
	fds[0] = 30;
	send_byte_fds(21, fds, 1, 0);

	for (i = 0; i < 2; i++) {
		if (pipe(p))
			zdtm_die("pipe");
		zdtm_write_all(p[1], "inq", 3);
		send_byte_fds(i == 0 ? 23 : 25, p, 2, 0);
		close(p[0]);
		close(p[1]);
	}
	if (pipe(p))
		zdtm_die("pipe D");
	zdtm_write_all(p[1], "inq", 3);
	send_byte_fds(27, p, 2, 1);
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
