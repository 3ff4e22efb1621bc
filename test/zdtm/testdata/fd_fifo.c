/*
 * fd_fifo: a named pipe (mkfifo in the work dir) with a read end
 * (O_NONBLOCK, fd 32) and a write end (fd 33) open and 777 bytes queued.
 * After restore both fds are the FIFO at that path, the bytes are there,
 * and the ends still connect, also through a new open of the path.
 */
#include "zdtm.h"
#include <sys/ioctl.h>

#define RD 32
#define WR 33

int main(void)
{
	unsigned char buf[2048];
	struct stat st0, st;
	int fd, n = -1, fl_rd, fl_wr;

	zdtm_init();
	unlink("the fifo");
	if (mkfifo("the fifo", 0600))
		zdtm_die("mkfifo");
	fd = open("the fifo", O_RDONLY | O_NONBLOCK);
	if (fd < 0 || dup2(fd, RD) != RD)
		zdtm_die("open read end");
	close(fd);
	fd = open("the fifo", O_WRONLY);
	if (fd < 0 || dup2(fd, WR) != WR)
		zdtm_die("open write end");
	close(fd);
	zdtm_fill(buf, 777, 131);
	zdtm_write_all(WR, buf, 777);
	stat("the fifo", &st0);
	fl_rd = fcntl(RD, F_GETFL);
	fl_wr = fcntl(WR, F_GETFL);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fstat(RD, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_ino == st0.st_ino, "fd %d is not the fifo", RD);
	CHECK(fstat(WR, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_ino == st0.st_ino, "fd %d is not the fifo", WR);
	CHECK(fcntl(RD, F_GETFL) == fl_rd, "fd %d flags %#o, want %#o", RD, fcntl(RD, F_GETFL), fl_rd);
	CHECK(fcntl(WR, F_GETFL) == fl_wr, "fd %d flags %#o, want %#o", WR, fcntl(WR, F_GETFL), fl_wr);
	CHECK(ioctl(RD, FIONREAD, &n) == 0 && n == 777, "%d bytes queued, want 777", n);
	CHECK(read(RD, buf, sizeof(buf)) == 777 && zdtm_check(buf, 777, 131) < 0, "queued data differs");
	CHECK(read(RD, buf, 1) == -1 && errno == EAGAIN, "empty fifo read did not give EAGAIN");
	fd = open("the fifo", O_WRONLY | O_NONBLOCK); /* needs a reader: ours */
	CHECK(fd >= 0 && write(fd, "via path", 8) == 8, "write through a new open of the path: %s", strerror(errno));
	close(fd);
	CHECK(write(WR, "!", 1) == 1 && read(RD, buf, 9) == 9 && memcmp(buf, "via path!", 9) == 0, "fifo ends not connected");
	zdtm_finish();
}
