/*
 * zt_cwd_long: a working directory and an open file whose paths are longer
 * than PATH_MAX. The program makes 24 nested directories of 200-character
 * names under its start directory (about 4900 characters in all), chdirs
 * into the deepest one step by step, and opens "deep.file" there O_RDWR at
 * offset 7 (fd 20) and the directory itself (fd 21, O_DIRECTORY).
 * After restore "." is the same inode (st_dev and st_ino), walking ".." 24
 * times reaches the start directory, relative opens find "deep.file", and
 * fds 20 and 21 are the same inodes, fd 20 at offset 7, reading "le".
 * Modelled on zdtm's cwd00 (with the path of cwd02's deep directories
 * made longer than PATH_MAX).
 */
#include "zdtm.h"
#include <limits.h>

#define DEPTH 24
#define NLEN 200

int main(void)
{
	struct stat top, deep, fst, st;
	char name[NLEN + 1];
	int i, fd;
	long total = 0;
	char buf[16];

	zdtm_init();
	if (stat(".", &top))
		zdtm_die("stat .");
	for (i = 0; i < DEPTH; i++) {
		memset(name, 'a' + i % 26, NLEN);
		name[NLEN] = 0;
		name[0] = '0' + i % 10;
		if (mkdir(name, 0755) || chdir(name))
			zdtm_die("mkdir/chdir level %d", i);
		total += NLEN + 1;
	}
	fd = open("deep.file", O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		zdtm_die("open deep.file");
	zdtm_write_all(fd, "deep.file", 9);
	lseek(fd, 7, SEEK_SET);
	if (dup2(fd, 20) != 20)
		zdtm_die("dup2");
	close(fd);
	fd = open(".", O_RDONLY | O_DIRECTORY);
	if (fd < 0 || dup2(fd, 21) != 21)
		zdtm_die("open .");
	close(fd);
	if (stat(".", &deep) || fstat(20, &fst))
		zdtm_die("stat");
	zdtm_log("cwd depth %d, path length > %ld (PATH_MAX %d)", DEPTH, total, PATH_MAX);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(stat(".", &st) == 0 && st.st_dev == deep.st_dev && st.st_ino == deep.st_ino,
	      "cwd is inode %lu, want %lu (%s)", (unsigned long)st.st_ino, (unsigned long)deep.st_ino, strerror(errno));
	CHECK(fstat(21, &st) == 0 && st.st_ino == deep.st_ino, "fd 21 is inode %lu, want %lu", (unsigned long)st.st_ino,
	      (unsigned long)deep.st_ino);
	CHECK(fstat(20, &st) == 0 && st.st_ino == fst.st_ino, "fd 20 is inode %lu, want %lu", (unsigned long)st.st_ino,
	      (unsigned long)fst.st_ino);
	CHECK(lseek(20, 0, SEEK_CUR) == 7, "fd 20 offset %ld, want 7", (long)lseek(20, 0, SEEK_CUR));
	memset(buf, 0, sizeof(buf));
	CHECK(read(20, buf, 8) == 2 && memcmp(buf, "le", 2) == 0, "fd 20 reads '%s'", buf);
	fd = open("deep.file", O_RDONLY);
	CHECK(fd >= 0, "relative open of deep.file: %s", strerror(errno));
	if (fd >= 0) {
		CHECK(fstat(fd, &st) == 0 && st.st_ino == fst.st_ino, "deep.file is another inode");
		close(fd);
	}
	for (i = 0; i < DEPTH; i++)
		if (chdir("..")) {
			fail("chdir .. level %d: %s", i, strerror(errno));
			break;
		}
	CHECK(stat(".", &st) == 0 && st.st_ino == top.st_ino && st.st_dev == top.st_dev,
	      "%d levels up is inode %lu, want the start directory %lu", DEPTH, (unsigned long)st.st_ino,
	      (unsigned long)top.st_ino);
	zdtm_finish();
}
