/*
 * fd_unix_scm_stream: file descriptors in flight on a SOCK_STREAM socket
 * pair (fds 20<->21). Through 21, in order: "abc" (no fds); "d" with
 * SCM_RIGHTS [the read end of a pipe holding "hello" whose write end is
 * closed, so its only reader is in flight]; "ef" with SCM_RIGHTS [a regular
 * file f.dat in the work dir, O_RDWR, content "0123456789", at offset 3,
 * also open at fd 30 (the same open file description); an eventfd with
 * count 7]; "tail" (no fds). The program keeps no fd of the pipe read end
 * or of the eventfd. After restore, recvmsg on 20 until EAGAIN gives
 * exactly "abcdeftail", the fds come with the data that ends with "d" (1
 * fd) and then with the data that ends with "ef" (2 fds), no other read
 * has fds and none is MSG_CTRUNC; the pipe reads "hello" then EOF; the
 * received file is f.dat and shares its offset with fd 30 (3, and 5 for
 * fd 30 after reading "34" from the received fd); the eventfd reads 7.
 */
#include "zdtm_unix.h"
#include <sys/eventfd.h>

int main(void)
{
	union {
		char buf[CMSG_SPACE(sizeof(int) * MAXFDS)];
		struct cmsghdr align;
	} u;
	char data[64], buf[16], fpath[300], cwd[256];
	int sv[2], p[2], f, e, fds[2], got[2][MAXFDS], ngot[2], end[2];
	int nmsg = 0, total = 0;
	struct stat st, st30;
	uint64_t x;
	ssize_t n;

	zdtm_init();
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) || dup2(sv[0], 20) != 20 || dup2(sv[1], 21) != 21)
		zdtm_die("socketpair");
	close(sv[0]);
	close(sv[1]);
	if (pipe(p))
		zdtm_die("pipe");
	zdtm_write_all(p[1], "hello", 5);
	close(p[1]);
	if (!getcwd(cwd, sizeof(cwd)))
		zdtm_die("getcwd");
	snprintf(fpath, sizeof(fpath), "%s/f.dat", cwd);
	f = open(fpath, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || dup2(f, 30) != 30)
		zdtm_die("open %s", fpath);
	close(f);
	zdtm_write_all(30, "0123456789", 10);
	if (lseek(30, 3, SEEK_SET) != 3)
		zdtm_die("lseek");
	e = eventfd(7, 0);
	if (e < 0)
		zdtm_die("eventfd");

	send_fds(21, "abc", 3, NULL, 0, 0);
	send_fds(21, "d", 1, &p[0], 1, 0);
	fds[0] = 30;
	fds[1] = e;
	send_fds(21, "ef", 2, fds, 2, 0);
	send_fds(21, "tail", 4, NULL, 0, 0);
	close(p[0]);
	close(e);

	zdtm_ready();
	zdtm_wait_go();

	for (;;) {
		struct iovec iov = { .iov_base = data + total, .iov_len = sizeof(data) - total };
		struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
				     .msg_controllen = sizeof(u.buf) };
		struct cmsghdr *cm;
		int nfds = 0, k;

		if (total >= (int)sizeof(data)) {
			fail("fd 20: more than %zu bytes queued", sizeof(data));
			break;
		}
		memset(&u, 0, sizeof(u));
		n = recvmsg(20, &mh, MSG_DONTWAIT);
		if (n < 0) {
			CHECK(errno == EAGAIN, "fd 20: recvmsg: %s", strerror(errno));
			break;
		}
		if (n == 0) {
			fail("fd 20: EOF after %d bytes", total);
			break;
		}
		total += n;
		CHECK(!(mh.msg_flags & MSG_CTRUNC), "fd 20: MSG_CTRUNC on the read ending at byte %d", total);
		for (cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
			int m = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);

			if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
				fail("fd 20: unexpected cmsg level %d type %d", cm->cmsg_level, cm->cmsg_type);
				continue;
			}
			for (k = 0; k < m; k++) {
				int fd;

				memcpy(&fd, CMSG_DATA(cm) + k * sizeof(int), sizeof(int));
				if (nmsg < 2 && nfds < MAXFDS)
					got[nmsg][nfds] = fd;
				nfds++;
			}
		}
		if (nfds == 0)
			continue;
		if (nmsg < 2) {
			ngot[nmsg] = nfds;
			end[nmsg] = total;
		}
		nmsg++;
	}
	CHECK(total == 10 && memcmp(data, "abcdeftail", 10) == 0, "fd 20: read \"%.*s\", want \"abcdeftail\"", total, data);
	CHECK(nmsg == 2, "fd 20: %d reads came with fds, want 2", nmsg);
	if (nmsg >= 1)
		CHECK(end[0] == 4 && ngot[0] == 1, "fd 20: first fds (%d of them) came with the read ending at byte %d, want 1 fd "
		      "with the read ending at byte 4 (\"d\")", ngot[0], end[0]);
	if (nmsg >= 2)
		CHECK(end[1] == 6 && ngot[1] == 2, "fd 20: second fds (%d of them) came with the read ending at byte %d, want 2 "
		      "fds with the read ending at byte 6 (\"ef\")", ngot[1], end[1]);

	if (nmsg >= 1 && ngot[0] >= 1) {
		int r = got[0][0];

		CHECK(fstat(r, &st) == 0 && S_ISFIFO(st.st_mode), "first fd (%d) is not a pipe", r);
		CHECK((fcntl(r, F_GETFL) & O_ACCMODE) == O_RDONLY, "pipe fd %d: flags %#o, want read-only", r, fcntl(r, F_GETFL));
		fcntl(r, F_SETFL, O_NONBLOCK);
		memset(buf, 0, sizeof(buf));
		n = read(r, buf, sizeof(buf));
		CHECK(n == 5 && memcmp(buf, "hello", 5) == 0, "pipe fd %d: read %zd \"%.*s\", want \"hello\"", r, n,
		      n > 0 ? (int)n : 0, buf);
		n = read(r, buf, sizeof(buf));
		CHECK(n == 0, "pipe fd %d: read %zd (%s) after \"hello\", want EOF", r, n, n < 0 ? strerror(errno) : "data");
	}
	if (nmsg >= 2 && ngot[1] >= 2) {
		int r = got[1][0];

		CHECK(fstat(r, &st) == 0 && S_ISREG(st.st_mode) && fstat(30, &st30) == 0 && st.st_dev == st30.st_dev &&
		      st.st_ino == st30.st_ino, "second fd (%d) is not the file of fd 30", r);
		check_link(r, fpath, "received file");
		CHECK((fcntl(r, F_GETFL) & O_ACCMODE) == O_RDWR, "file fd %d: flags %#o, want O_RDWR", r, fcntl(r, F_GETFL));
		CHECK(lseek(r, 0, SEEK_CUR) == 3, "file fd %d: offset %lld, want 3", r, (long long)lseek(r, 0, SEEK_CUR));
		memset(buf, 0, sizeof(buf));
		n = read(r, buf, 2);
		CHECK(n == 2 && memcmp(buf, "34", 2) == 0, "file fd %d: read \"%.2s\", want \"34\"", r, buf);
		CHECK(lseek(30, 0, SEEK_CUR) == 5, "fd 30: offset %lld after reading 2 bytes from fd %d, want 5 (a shared offset)",
		      (long long)lseek(30, 0, SEEK_CUR), r);
		CHECK(pread(30, buf, 10, 0) == 10 && memcmp(buf, "0123456789", 10) == 0, "fd 30: content \"%.10s\"", buf);

		r = got[1][1];
		check_link(r, "anon_inode:[eventfd]", "third fd");
		fcntl(r, F_SETFL, O_NONBLOCK);
		x = 0;
		n = read(r, &x, 8);
		CHECK(n == 8 && x == 7, "eventfd fd %d: read %zd, count %llu, want 7", r, n, (unsigned long long)x);
	}
	zdtm_finish();
}
