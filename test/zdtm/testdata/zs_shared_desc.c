/*
 * zs_shared_desc (process tree): open file descriptions shared by a
 * parent P and its child C through fork.
 *   fd 30: "sd.file" O_RDWR at offset 100, one description in P and C;
 *   fd 33: in C only, a second open of "sd.file" at offset 5;
 *   pipe (capacity raised to 128 KiB with F_SETPIPE_SZ): P keeps the write
 *        end (fd 31), C the read end (fd 32); 70000 bytes queued;
 *   FIFO "sd.fifo": P keeps the read end (fd 34), C the write end (fd 35),
 *        "fifo!" queued.
 * After restore C checks fd 30 is at 100 and fd 33 at 5, moves fd 30 to
 * 777, reads the 70000 bytes, writes "more" to the FIFO and exits; then P
 * finds fd 30 at 777 (one description), the pipe's capacity 128 KiB and
 * empty, and reads "fifo!more" from the FIFO.
 * Modelled on zdtm's file_shared, pipe00, pipe01 and fifo-rowo-pair.
 */
#include "zdtm.h"
#include <sys/ioctl.h>
#include <sys/wait.h>

#define NQ 70000

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

static char buf[NQ];

int main(void)
{
	int p[2], sync[2], st, nq;
	pid_t c;
	off_t off;
	char tmp[32];
	ssize_t n, got;

	zdtm_init();
	place(open("sd.file", O_RDWR | O_CREAT | O_TRUNC, 0644), 30);
	zdtm_fill(buf, 4096, 5);
	zdtm_write_all(30, buf, 4096);
	if (lseek(30, 100, SEEK_SET) != 100)
		zdtm_die("lseek");
	if (pipe(p))
		zdtm_die("pipe");
	place(p[1], 31);
	place(p[0], 32);
	if (fcntl(31, F_SETPIPE_SZ, 128 * 1024) < 128 * 1024)
		zdtm_die("F_SETPIPE_SZ");
	zdtm_fill(buf, NQ, 77);
	zdtm_write_all(31, buf, NQ);
	if (mkfifo("sd.fifo", 0600))
		zdtm_die("mkfifo");
	place(open("sd.fifo", O_RDONLY | O_NONBLOCK), 34);
	place(open("sd.fifo", O_WRONLY), 35);
	zdtm_write_all(35, "fifo!", 5);
	if (pipe(sync))
		zdtm_die("pipe");
	c = fork();
	if (c == 0) {
		zdtm_child_forget_ready();
		close(sync[0]);
		close(31);
		close(34);
		place(open("sd.file", O_RDONLY), 33);
		if (lseek(33, 5, SEEK_SET) != 5)
			_exit(5);
		if (write(sync[1], "c", 1) != 1)
			_exit(5);
		close(sync[1]);
		zdtm_wait_go();
		off = lseek(30, 0, SEEK_CUR);
		if (off != 100) {
			zdtm_log("child: fd 30 at %lld, want 100", (long long)off);
			_exit(1);
		}
		off = lseek(33, 0, SEEK_CUR);
		if (off != 5) {
			zdtm_log("child: fd 33 at %lld, want 5", (long long)off);
			_exit(1);
		}
		lseek(30, 777, SEEK_SET);
		for (got = 0; got < NQ; got += n) {
			n = read(32, buf + got, NQ - got);
			if (n <= 0) {
				zdtm_log("child: pipe read gave %zd after %zd bytes", n, got);
				_exit(1);
			}
		}
		if (zdtm_check(buf, NQ, 77) != -1) {
			zdtm_log("child: pipe data differ");
			_exit(1);
		}
		if (write(35, "more", 4) != 4)
			_exit(1);
		_exit(0);
	}
	if (c < 0)
		zdtm_die("fork");
	close(sync[1]);
	if (read(sync[0], tmp, 1) != 1)
		zdtm_die("child set-up");
	close(sync[0]);
	close(32);
	close(35);

	zdtm_ready();
	zdtm_wait_go();

	if (waitpid(c, &st, 0) != c)
		fail("waitpid: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x, want 0 (see its log)", st);
	off = lseek(30, 0, SEEK_CUR);
	CHECK(off == 777, "fd 30 at %lld after the child moved it to 777: not one description", (long long)off);
	n = fcntl(31, F_GETPIPE_SZ);
	CHECK(n == 128 * 1024, "pipe capacity %zd, want %d", n, 128 * 1024);
	nq = -1;
	ioctl(31, FIONREAD, &nq);
	CHECK(nq == 0, "pipe holds %d bytes after the child read all", nq);
	memset(tmp, 0, sizeof(tmp));
	n = read(34, tmp, sizeof(tmp) - 1);
	CHECK(n == 9 && memcmp(tmp, "fifo!more", 9) == 0, "FIFO read %zd \"%s\", want \"fifo!more\"", n, tmp);
	zdtm_finish();
}
