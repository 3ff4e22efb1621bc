/*
 * zt_file_flags: open flags and offsets that other cases do not use.
 *   fd 20: "d.bin" O_RDWR|O_DIRECT, 3 blocks of 4 KiB, at offset 4096;
 *   fd 21: "s.bin" O_WRONLY|O_SYNC, fd 22 "s.bin" O_RDWR|O_DSYNC;
 *   fd 23: "e.bin" (100 bytes) O_RDWR at offset 1 MiB + 100, past its end;
 *   fd 24: an O_TMPFILE in the work dir, O_RDWR, holding "tmpfile-data",
 *          offset 3 (never linked, but linkable);
 *   fd 25: an O_TMPFILE|O_EXCL (never linkable: a difference no interface
 *          shows from outside, so only its flags and content are checked).
 * After restore F_GETFL of each is the same; fd 20 still does direct I/O
 * (an aligned pread works, one into a misaligned buffer fails with
 * EINVAL); fd 23 is at 1 MiB + 100, reads EOF, and a write there makes a
 * hole; fd 24 has no links, its content and offset, and linkat through
 * /proc/self/fd/24 gives it a name (a file with "tmpfile-data").
 * Modelled on zdtm's write_read01, file_append and unlink_fstat00
 * (files with unusual flags and offsets), and an O_TMPFILE.
 */
#include "zdtm.h"
#include <sys/uio.h>

static int at(int fd, int to)
{
	if (fd < 0 || dup2(fd, to) != to)
		zdtm_die("open for fd %d", to);
	close(fd);
	return to;
}

int main(void)
{
	static const int fds[] = { 20, 21, 22, 23, 24, 25 };
	int flags[6], i, fd;
	char *buf, cwd[1024], tmp[64];
	struct stat st;
	int64_t n;

	zdtm_init();
	if (posix_memalign((void **)&buf, 4096, 3 * 4096 + 4096))
		zdtm_die("memalign");
	if (!getcwd(cwd, sizeof(cwd)))
		zdtm_die("getcwd");
	fd = open("d.bin", O_RDWR | O_CREAT, 0644);
	zdtm_fill(buf, 3 * 4096, 9);
	zdtm_write_all(fd, buf, 3 * 4096);
	close(fd);
	at(open("d.bin", O_RDWR | O_DIRECT), 20);
	lseek(20, 4096, SEEK_SET);
	at(open("s.bin", O_WRONLY | O_CREAT | O_SYNC, 0644), 21);
	at(open("s.bin", O_RDWR | O_DSYNC), 22);
	at(open("e.bin", O_RDWR | O_CREAT, 0644), 23);
	memset(buf, 'e', 100);
	zdtm_write_all(23, buf, 100);
	lseek(23, (1 << 20) + 100, SEEK_SET);
	at(open(".", O_TMPFILE | O_RDWR, 0640), 24);
	zdtm_write_all(24, "tmpfile-data", 12);
	lseek(24, 3, SEEK_SET);
	at(open(".", O_TMPFILE | O_RDWR | O_EXCL, 0600), 25);
	zdtm_write_all(25, "excl", 4);
	for (i = 0; i < 6; i++)
		flags[i] = fcntl(fds[i], F_GETFL);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 6; i++)
		CHECK(fcntl(fds[i], F_GETFL) == flags[i], "fd %d F_GETFL %#o, want %#o", fds[i], fcntl(fds[i], F_GETFL),
		      flags[i]);
	CHECK(lseek(20, 0, SEEK_CUR) == 4096, "fd 20 offset %ld", (long)lseek(20, 0, SEEK_CUR));
	n = pread(20, buf, 4096, 8192);
	CHECK(n == 4096 && zdtm_check(buf, 4096, 9 + 8192) < 0, "aligned O_DIRECT pread: %ld %s", (long)n,
	      strerror(errno));
	errno = 0;
	n = pread(20, buf + 1, 4096, 0);
	CHECK(n == -1 && errno == EINVAL, "misaligned pread on fd 20 gave %ld (%s): not O_DIRECT any more", (long)n,
	      strerror(errno));
	CHECK(lseek(23, 0, SEEK_CUR) == (1 << 20) + 100, "fd 23 offset %ld", (long)lseek(23, 0, SEEK_CUR));
	CHECK(read(23, buf, 10) == 0, "read past EOF on fd 23 did not give EOF");
	CHECK(fstat(23, &st) == 0 && st.st_size == 100, "e.bin size %ld, want 100", (long)st.st_size);
	CHECK(write(23, "x", 1) == 1 && fstat(23, &st) == 0 && st.st_size == (1 << 20) + 101,
	      "write past EOF: size %ld", (long)st.st_size);
	CHECK(fstat(24, &st) == 0 && st.st_nlink == 0, "tmpfile nlink %lu", (unsigned long)st.st_nlink);
	CHECK((st.st_mode & 0777) == 0640, "tmpfile mode %o", st.st_mode & 0777);
	CHECK(lseek(24, 0, SEEK_CUR) == 3, "tmpfile offset %ld", (long)lseek(24, 0, SEEK_CUR));
	memset(buf, 0, 32);
	CHECK(pread(24, buf, 32, 0) == 12 && memcmp(buf, "tmpfile-data", 12) == 0, "tmpfile reads '%.12s'", buf);
	snprintf(tmp, sizeof(tmp), "/proc/self/fd/24");
	CHECK(linkat(AT_FDCWD, tmp, AT_FDCWD, "linked", AT_SYMLINK_FOLLOW) == 0,
	      "linkat of the O_TMPFILE: %s (not linkable any more)", strerror(errno));
	fd = open("linked", O_RDONLY);
	if (fd >= 0) {
		struct stat a, b;
		fstat(fd, &a);
		fstat(24, &b);
		CHECK(a.st_ino == b.st_ino, "linked name is another inode");
		memset(buf, 0, 32);
		CHECK(read(fd, buf, 32) == 12 && memcmp(buf, "tmpfile-data", 12) == 0, "linked file reads '%.12s'", buf);
		close(fd);
	}
	{
		char buf[8] = "";
		CHECK(pread(25, buf, 4, 0) == 4 && memcmp(buf, "excl", 4) == 0, "fd 25 reads '%.4s'", buf);
	}
	zdtm_finish();
}
