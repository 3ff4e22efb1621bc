/*
 * zd_fifo_wronly: FIFOs open at one end only.
 *   fd 51: "fw" open O_WRONLY; its reader (opened first, O_NONBLOCK) wrote
 *          nothing and was closed after "abc" was written: no reader now,
 *          3 bytes still in the FIFO;
 *   fd 52: "fr" open O_RDONLY|O_NONBLOCK, never a writer;
 *   fd 53: "fu" open O_WRONLY, reader closed, the name removed.
 * After restore (SIGPIPE ignored): writing 51 and 53 fails with EPIPE (no
 * reader was made up), a reader opened now on "fw" reads "abc"; reading
 * 52 gives EOF (0), and after a writer opens "fr" a byte written comes
 * out of 52; 53 is a FIFO with no links. F_GETFL of each is unchanged.
 * Modelled on zdtm's fifo_wronly and unlink_fifo_wronly.
 */
#include "zdtm.h"
#include <signal.h>

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

int main(void)
{
	int r, w, fl[4], i;
	struct stat st;
	char buf[16];

	zdtm_init();
	signal(SIGPIPE, SIG_IGN);
	if (mkfifo("fw", 0600) || mkfifo("fr", 0600) || mkfifo("fu", 0600))
		zdtm_die("mkfifo");
	r = open("fw", O_RDONLY | O_NONBLOCK);
	place(open("fw", O_WRONLY), 51);
	zdtm_write_all(51, "abc", 3);
	close(r);
	place(open("fr", O_RDONLY | O_NONBLOCK), 52);
	r = open("fu", O_RDONLY | O_NONBLOCK);
	place(open("fu", O_WRONLY), 53);
	close(r);
	if (unlink("fu"))
		zdtm_die("unlink fu");
	for (i = 1; i < 4; i++)
		fl[i] = fcntl(50 + i, F_GETFL);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 1; i < 4; i++)
		CHECK(fcntl(50 + i, F_GETFL) == fl[i], "fd %d: flags %#x, want %#x", 50 + i, fcntl(50 + i, F_GETFL),
		      fl[i]);
	errno = 0;
	CHECK(write(51, "q", 1) == -1 && errno == EPIPE, "write fd 51 (no reader): %s, want EPIPE", strerror(errno));
	errno = 0;
	CHECK(write(53, "q", 1) == -1 && errno == EPIPE, "write fd 53 (no reader): %s, want EPIPE", strerror(errno));
	r = open("fw", O_RDONLY | O_NONBLOCK);
	memset(buf, 0, sizeof(buf));
	CHECK(r >= 0 && read(r, buf, sizeof(buf)) == 3 && memcmp(buf, "abc", 3) == 0,
	      "fw: a new reader reads \"%s\", want \"abc\" (%s)", buf, strerror(errno));
	if (r >= 0)
		close(r);
	errno = 0;
	CHECK(read(52, buf, sizeof(buf)) == 0, "read fd 52 (no writer): %s, want EOF", strerror(errno));
	w = open("fr", O_WRONLY | O_NONBLOCK);
	CHECK(w >= 0, "open fr for writing: %s (fd 52 is no reader of it?)", strerror(errno));
	if (w >= 0) {
		CHECK(write(w, "z", 1) == 1 && read(52, buf, sizeof(buf)) == 1 && buf[0] == 'z',
		      "fr: byte written is not read from fd 52");
		close(w);
	}
	CHECK(fstat(53, &st) == 0 && S_ISFIFO(st.st_mode) && st.st_nlink == 0, "fd 53: mode %o nlink %lu",
	      st.st_mode, (unsigned long)st.st_nlink);
	CHECK(access("fu", F_OK), "fu came back");
	zdtm_finish();
}
