/*
 * zd_opath: O_PATH descriptors.
 *   fd 40: O_PATH on a regular file "op.file";
 *   fd 41: O_PATH|O_DIRECTORY on a directory "op.dir";
 *   fd 42: O_PATH|O_NOFOLLOW on a symlink "op.sym" (the link itself);
 *   fd 43: with the argument "gone", O_PATH on a file then removed
 *          ("op.gone"); without it, a second O_PATH fd of "op.file".
 * After restore F_GETFL still has O_PATH (and nothing that makes I/O
 * possible: read gives EBADF), fstat gives the same inodes (fd 42 is the
 * symlink, S_IFLNK; the removed file of fd 43 comes back as a copy, a
 * new inode of the same mode), readlinkat(42, "") gives its target, openat(41,...)
 * resolves inside the directory, reopening 40 through /proc/self/fd works
 * and reads the file, and ("gone") fd 43 is the removed inode with no
 * links, which reopens through /proc/self/fd/43 and reads its data.
 * Modelled on zdtm's opath_file.
 */
#include "zdtm.h"

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

int main(int argc, char **argv)
{
	struct stat s0[4], s1;
	char buf[64], path[64];
	int fd, i, fl, gone = argc > 1 && strcmp(argv[1], "gone") == 0;

	zdtm_init();
	fd = open("op.file", O_RDWR | O_CREAT, 0644);
	if (fd < 0 || write(fd, "opath-data", 10) != 10)
		zdtm_die("op.file");
	close(fd);
	if (mkdir("op.dir", 0755))
		zdtm_die("mkdir");
	fd = open("op.dir/inner", O_RDWR | O_CREAT, 0644);
	if (fd < 0 || write(fd, "inner", 5) != 5)
		zdtm_die("inner");
	close(fd);
	if (symlink("target-of-sym", "op.sym"))
		zdtm_die("symlink");
	fd = open("op.gone", O_RDWR | O_CREAT, 0600);
	if (fd < 0 || write(fd, "gone", 4) != 4)
		zdtm_die("op.gone");
	close(fd);

	place(open("op.file", O_PATH), 40);
	place(open("op.dir", O_PATH | O_DIRECTORY), 41);
	place(open("op.sym", O_PATH | O_NOFOLLOW), 42);
	place(gone ? open("op.gone", O_PATH) : open("op.file", O_PATH), 43);
	for (i = 0; i < 4; i++)
		if (fstat(40 + i, &s0[i]))
			zdtm_die("fstat %d", 40 + i);
	if (gone && unlink("op.gone"))
		zdtm_die("unlink");

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 4; i++) {
		fl = fcntl(40 + i, F_GETFL);
		CHECK(fl != -1 && (fl & O_PATH), "fd %d: flags %#x, no O_PATH", 40 + i, fl);
		/* A removed file comes back as a copy: a new inode, same mode. */
		CHECK(fstat(40 + i, &s1) == 0 &&
			      ((gone && i == 3) || (s1.st_ino == s0[i].st_ino && s1.st_dev == s0[i].st_dev)) &&
			      s1.st_mode == s0[i].st_mode,
		      "fd %d: inode %lu mode %o, want %lu %o", 40 + i, (unsigned long)s1.st_ino, s1.st_mode,
		      (unsigned long)s0[i].st_ino, s0[i].st_mode);
		errno = 0;
		CHECK(read(40 + i, buf, 1) == -1 && errno == EBADF, "fd %d: read did not fail with EBADF (%s)", 40 + i,
		      strerror(errno));
	}
	CHECK(S_ISLNK(s0[2].st_mode), "fd 42 was not the symlink before the dump");
	memset(buf, 0, sizeof(buf));
	CHECK(readlinkat(42, "", buf, sizeof(buf) - 1) == 13 && strcmp(buf, "target-of-sym") == 0,
	      "readlinkat(42, \"\") = \"%s\"", buf);
	fd = openat(41, "inner", O_RDONLY);
	memset(buf, 0, sizeof(buf));
	CHECK(fd >= 0 && read(fd, buf, 5) == 5 && memcmp(buf, "inner", 5) == 0, "openat(41, inner): \"%s\" %s", buf,
	      strerror(errno));
	if (fd >= 0)
		close(fd);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", 40);
	fd = open(path, O_RDONLY);
	memset(buf, 0, sizeof(buf));
	CHECK(fd >= 0 && read(fd, buf, 10) == 10 && memcmp(buf, "opath-data", 10) == 0,
	      "reopen of fd 40: \"%s\" %s", buf, strerror(errno));
	if (fd >= 0)
		close(fd);
	if (gone) {
		CHECK(fstat(43, &s1) == 0 && s1.st_nlink == 0, "fd 43: nlink %lu, want 0", (unsigned long)s1.st_nlink);
		snprintf(path, sizeof(path), "/proc/self/fd/%d", 43);
		fd = open(path, O_RDONLY);
		memset(buf, 0, sizeof(buf));
		CHECK(fd >= 0 && read(fd, buf, 4) == 4 && memcmp(buf, "gone", 4) == 0, "reopen of fd 43: \"%s\" %s",
		      buf, strerror(errno));
		if (fd >= 0)
			close(fd);
		CHECK(access("op.gone", F_OK), "op.gone came back");
	}
	zdtm_finish();
}
