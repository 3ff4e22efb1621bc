/*
 * fd_file: regular files open at fixed fd numbers.
 *   20 read-only, offset 1234;     23 = dup(20): shares that offset;
 *   21 write-only O_APPEND;         24 read-only, same file as 20, offset 99;
 *   22 O_RDWR, offset 777, FD_CLOEXEC, O_NONBLOCK|O_NOATIME.
 * After restore: F_GETFL, F_GETFD, offsets and inodes are the same; reads
 * continue at the offsets; fd 20 and 23 still share one offset while 24
 * has its own; appends land at the end of the file.
 */
#include "zdtm.h"

#define RO 20
#define AP 21
#define RW 22
#define DUP 23
#define RO2 24

static const int fds[] = { RO, AP, RW, DUP, RO2 };
#define NFD 5

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("open/dup2 to %d", want);
	close(fd);
}

int main(void)
{
	static unsigned char ro_data[10000], rw_data[5000];
	unsigned char buf[200];
	int fl0[NFD], fd0[NFD], i;
	off_t off0[NFD];
	struct stat st0[NFD], st;
	char tail[64];

	zdtm_init();
	zdtm_fill(ro_data, sizeof(ro_data), 91);
	zdtm_fill(rw_data, sizeof(rw_data), 92);
	i = open("ro.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	zdtm_write_all(i, ro_data, sizeof(ro_data));
	close(i);
	i = open("rw.bin", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	zdtm_write_all(i, rw_data, sizeof(rw_data));
	close(i);
	i = open("append.log", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	zdtm_write_all(i, "first line\n", 11);
	close(i);

	place(open("ro.bin", O_RDONLY), RO);
	place(open("append.log", O_WRONLY | O_APPEND), AP);
	place(open("rw.bin", O_RDWR | O_NONBLOCK | O_NOATIME), RW);
	place(dup(RO), DUP);
	place(open("ro.bin", O_RDONLY), RO2);
	if (fcntl(RW, F_SETFD, FD_CLOEXEC))
		zdtm_die("F_SETFD");
	if (lseek(RO, 1234, SEEK_SET) != 1234 || lseek(RW, 777, SEEK_SET) != 777 || lseek(RO2, 99, SEEK_SET) != 99)
		zdtm_die("lseek");
	zdtm_write_all(AP, "second line\n", 12);
	for (i = 0; i < NFD; i++) {
		fl0[i] = fcntl(fds[i], F_GETFL);
		fd0[i] = fcntl(fds[i], F_GETFD);
		off0[i] = lseek(fds[i], 0, SEEK_CUR);
		fstat(fds[i], &st0[i]);
	}

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NFD; i++) {
		int fl = fcntl(fds[i], F_GETFL), fdf = fcntl(fds[i], F_GETFD);
		CHECK(fl == fl0[i], "fd %d: flags %#o, want %#o", fds[i], fl, fl0[i]);
		CHECK(fdf == fd0[i], "fd %d: fd flags %#x, want %#x", fds[i], fdf, fd0[i]);
		CHECK(lseek(fds[i], 0, SEEK_CUR) == off0[i], "fd %d: offset %lld, want %lld", fds[i],
		      (long long)lseek(fds[i], 0, SEEK_CUR), (long long)off0[i]);
		CHECK(fstat(fds[i], &st) == 0 && st.st_ino == st0[i].st_ino && st.st_dev == st0[i].st_dev,
		      "fd %d: another file", fds[i]);
	}
	CHECK(read(RO, buf, 100) == 100 && memcmp(buf, ro_data + 1234, 100) == 0, "fd %d: read at 1234 differs", RO);
	CHECK(lseek(DUP, 0, SEEK_CUR) == 1334, "fd %d (dup of %d) offset %lld, want 1334 (shared)", DUP, RO,
	      (long long)lseek(DUP, 0, SEEK_CUR));
	CHECK(read(DUP, buf, 100) == 100 && memcmp(buf, ro_data + 1334, 100) == 0, "fd %d: read at 1334 differs", DUP);
	CHECK(read(RO2, buf, 100) == 100 && memcmp(buf, ro_data + 99, 100) == 0, "fd %d: read at 99 differs", RO2);
	CHECK(lseek(RO, 0, SEEK_CUR) == 1434, "fd %d offset %lld after reads, want 1434", RO,
	      (long long)lseek(RO, 0, SEEK_CUR));
	CHECK(read(RW, buf, 50) == 50 && memcmp(buf, rw_data + 777, 50) == 0, "fd %d: read at 777 differs", RW);
	CHECK(write(RW, "XYZ", 3) == 3 && pread(RW, buf, 3, 827) == 3 && memcmp(buf, "XYZ", 3) == 0,
	      "fd %d: write at 827 lost", RW);
	/* someone else appends too: ours must still go to the end */
	i = open("append.log", O_WRONLY | O_APPEND);
	CHECK(i >= 0 && write(i, "other\n", 6) == 6, "append from another fd failed");
	close(i);
	CHECK(write(AP, "third line\n", 11) == 11, "fd %d: append failed", AP);
	i = open("append.log", O_RDONLY);
	memset(tail, 0, sizeof(tail));
	CHECK(i >= 0 && read(i, tail, sizeof(tail) - 1) == 40 &&
		      strcmp(tail, "first line\nsecond line\nother\nthird line\n") == 0,
	      "append.log is \"%s\"", tail);
	close(i);
	zdtm_finish();
}
