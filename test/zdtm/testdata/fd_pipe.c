/*
 * fd_pipe: pipes with both ends in the process and data buffered.
 *   A: 3000 bytes queued; write end O_NONBLOCK, read end FD_CLOEXEC;
 *   B: capacity raised to 256 KiB (F_SETPIPE_SZ) with 200 KiB queued;
 *   C: packet mode (O_DIRECT) with three packets of 10, 500 and 1 bytes;
 *   D: empty, read end O_NONBLOCK.
 * After restore: FIONREAD, capacities, flags, and the queued data (and
 * for C the packet boundaries) are the same; the pipes still connect.
 */
#include "zdtm.h"
#include <sys/ioctl.h>

static int a[2], b[2], c[2], d[2];

int main(void)
{
	static unsigned char big[200 << 10], buf[200 << 10];
	int fl[8], fdf[8], *all[4] = { a, b, c, d }, i, n;
	unsigned char pk[500];

	zdtm_init();
	if (pipe2(a, 0) || pipe2(b, 0) || pipe2(c, O_DIRECT) || pipe2(d, 0))
		zdtm_die("pipe2");
	fcntl(a[1], F_SETFL, O_NONBLOCK);
	fcntl(a[0], F_SETFD, FD_CLOEXEC);
	fcntl(d[0], F_SETFL, O_NONBLOCK);
	zdtm_fill(buf, 3000, 121);
	zdtm_write_all(a[1], buf, 3000);
	if (fcntl(b[1], F_SETPIPE_SZ, 256 << 10) < (256 << 10))
		zdtm_die("F_SETPIPE_SZ");
	zdtm_fill(big, sizeof(big), 122);
	zdtm_write_all(b[1], big, sizeof(big));
	zdtm_fill(pk, sizeof(pk), 123);
	if (write(c[1], pk, 10) != 10 || write(c[1], pk, 500) != 500 || write(c[1], pk, 1) != 1)
		zdtm_die("packet writes");
	for (i = 0; i < 8; i++) {
		fl[i] = fcntl(all[i / 2][i % 2], F_GETFL);
		fdf[i] = fcntl(all[i / 2][i % 2], F_GETFD);
	}

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 8; i++) {
		int fd = all[i / 2][i % 2];
		CHECK(fcntl(fd, F_GETFL) == fl[i], "pipe %c end %d (fd %d): flags %#o, want %#o", 'A' + i / 2, i % 2, fd,
		      fcntl(fd, F_GETFL), fl[i]);
		CHECK(fcntl(fd, F_GETFD) == fdf[i], "pipe %c end %d: fd flags %#x, want %#x", 'A' + i / 2, i % 2,
		      fcntl(fd, F_GETFD), fdf[i]);
	}
	/* from here on nothing may block: a lost pipe must fail, not hang */
	for (i = 0; i < 4; i++)
		fcntl(all[i][0], F_SETFL, fcntl(all[i][0], F_GETFL) | O_NONBLOCK);
	CHECK(ioctl(a[0], FIONREAD, &n) == 0 && n == 3000, "pipe A: %d bytes queued, want 3000", n);
	CHECK(ioctl(b[0], FIONREAD, &n) == 0 && n == (int)sizeof(big), "pipe B: %d bytes queued, want %zu", n, sizeof(big));
	CHECK(fcntl(b[0], F_GETPIPE_SZ) == (256 << 10), "pipe B: capacity %d, want %d", fcntl(b[0], F_GETPIPE_SZ), 256 << 10);
	CHECK(ioctl(d[0], FIONREAD, &n) == 0 && n == 0, "pipe D: %d bytes queued, want 0", n);

	CHECK(read(a[0], buf, sizeof(buf)) == 3000 && zdtm_check(buf, 3000, 121) < 0, "pipe A: data differs");
	n = 0;
	while (n < (int)sizeof(big)) {
		ssize_t r = read(b[0], buf + n, sizeof(buf) - n);
		if (r <= 0)
			break;
		n += r;
	}
	CHECK(n == (int)sizeof(big) && memcmp(buf, big, sizeof(big)) == 0, "pipe B: got %d bytes, content %s", n,
	      memcmp(buf, big, sizeof(big)) ? "differs" : "ok");
	/* packet mode: each read returns one packet even with a big buffer */
	CHECK(read(c[0], buf, sizeof(buf)) == 10 && memcmp(buf, pk, 10) == 0, "pipe C: first packet");
	CHECK(read(c[0], buf, sizeof(buf)) == 500 && memcmp(buf, pk, 500) == 0, "pipe C: second packet");
	CHECK(read(c[0], buf, sizeof(buf)) == 1 && buf[0] == pk[0], "pipe C: third packet");
	CHECK(read(d[0], buf, 1) == -1 && errno == EAGAIN, "pipe D: non-blocking empty read did not give EAGAIN");
	CHECK(write(d[1], "ping", 4) == 4 && read(d[0], buf, 4) == 4 && memcmp(buf, "ping", 4) == 0,
	      "pipe D: ends not connected");
	CHECK(write(a[1], "pong", 4) == 4 && read(a[0], buf, 4) == 4 && memcmp(buf, "pong", 4) == 0,
	      "pipe A: ends not connected");
	zdtm_finish();
}
