/*
 * fd_unlinked: an open file that has been unlinked (fd 26, O_RDWR, offset
 * 3000), and a second unlinked file whose name was reused by a new file.
 * After restore the content and offset are kept, the link count is 0, the
 * fd's path ends in " (deleted)", and the new file at the old name is
 * untouched (a different inode).
 */
#include "zdtm.h"

#define UFD 26
#define UFD2 27

int main(void)
{
	static unsigned char data[12345], buf[12345];
	struct stat st, st_new;
	char link[4096];
	ssize_t n;
	int fd;

	zdtm_init();
	zdtm_fill(data, sizeof(data), 101);
	fd = open("gone.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, UFD) != UFD)
		zdtm_die("open gone.bin");
	close(fd);
	zdtm_write_all(UFD, data, sizeof(data));
	if (lseek(UFD, 3000, SEEK_SET) != 3000 || unlink("gone.bin"))
		zdtm_die("lseek/unlink");
	fd = open("reused.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, UFD2) != UFD2)
		zdtm_die("open reused.bin");
	close(fd);
	zdtm_write_all(UFD2, "old", 3);
	unlink("reused.bin");
	fd = open("reused.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || write(fd, "new file", 8) != 8)
		zdtm_die("recreate reused.bin");
	close(fd);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fstat(UFD, &st) == 0 && st.st_nlink == 0 && st.st_size == (off_t)sizeof(data),
	      "fd %d: nlink %lu size %lld, want 0 %zu", UFD, (unsigned long)st.st_nlink, (long long)st.st_size,
	      sizeof(data));
	CHECK(lseek(UFD, 0, SEEK_CUR) == 3000, "fd %d: offset %lld, want 3000", UFD, (long long)lseek(UFD, 0, SEEK_CUR));
	CHECK(pread(UFD, buf, sizeof(buf), 0) == (ssize_t)sizeof(data) && memcmp(buf, data, sizeof(data)) == 0,
	      "fd %d: content differs", UFD);
	n = readlink("/proc/self/fd/26", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	CHECK(n > 10 && strstr(link, "gone.bin (deleted)"), "fd %d links to \"%s\"", UFD, link);
	CHECK(access("gone.bin", F_OK) == -1, "gone.bin came back to the file system");
	CHECK(write(UFD, "more", 4) == 4 && pread(UFD, buf, 4, 3000) == 4 && memcmp(buf, "more", 4) == 0,
	      "fd %d: write at offset 3000 lost", UFD);
	CHECK(fstat(UFD2, &st) == 0 && st.st_nlink == 0 && pread(UFD2, buf, 3, 0) == 3 && memcmp(buf, "old", 3) == 0,
	      "fd %d (unlinked, name reused): not the old file", UFD2);
	CHECK(stat("reused.bin", &st_new) == 0 && st_new.st_ino != st.st_ino && st_new.st_size == 8,
	      "the new reused.bin was replaced or changed");
	zdtm_finish();
}
