/*
 * zd_link_hard: open files whose name was removed while another hard link
 * keeps (or kept) the inode.
 *   fds 30/31: "h1" opened O_RDWR, linked to "h1.lnk", "h1.lnk" opened
 *              O_RDONLY, then both names removed: one inode, no links,
 *              open twice;
 *   fd 32:     "h2" opened O_RDWR at offset 5, linked to "h2.other", "h2"
 *              removed: the inode still has one name, "h2.other".
 * After restore fds 30 and 31 are one inode (a write through 30 is read
 * through 31) with no links; fd 32 is the very inode "h2.other" names
 * (same st_ino, st_nlink 1: not a copy), a write through it shows in
 * "h2.other", its offset is 5, and no "h2" name came back.
 * Modelled on zdtm's link10 (and the link-remap case of unlink_fstat).
 */
#include "zdtm.h"

int main(void)
{
	struct stat a, b, c, o;
	char buf[64];
	int fd;

	zdtm_init();
	fd = open("h1", O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0 || dup2(fd, 30) != 30)
		zdtm_die("open h1");
	close(fd);
	zdtm_write_all(30, "first-inode", 11);
	if (link("h1", "h1.lnk"))
		zdtm_die("link h1");
	fd = open("h1.lnk", O_RDONLY);
	if (fd < 0 || dup2(fd, 31) != 31)
		zdtm_die("open h1.lnk");
	close(fd);
	if (unlink("h1.lnk") || unlink("h1"))
		zdtm_die("unlink h1*");

	fd = open("h2", O_RDWR | O_CREAT | O_EXCL, 0640);
	if (fd < 0 || dup2(fd, 32) != 32)
		zdtm_die("open h2");
	close(fd);
	zdtm_write_all(32, "second-inode", 12);
	if (lseek(32, 5, SEEK_SET) != 5 || link("h2", "h2.other") || unlink("h2"))
		zdtm_die("link/unlink h2");
	if (stat("h2.other", &o))
		zdtm_die("stat h2.other");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fstat(30, &a) == 0 && fstat(31, &b) == 0, "fstat 30/31: %s", strerror(errno));
	CHECK(a.st_ino == b.st_ino && a.st_dev == b.st_dev, "fds 30 and 31 are different inodes (%lu, %lu)",
	      (unsigned long)a.st_ino, (unsigned long)b.st_ino);
	CHECK(a.st_nlink == 0, "fd 30: nlink %lu, want 0", (unsigned long)a.st_nlink);
	CHECK(pwrite(30, "XY", 2, 0) == 2 && pread(31, buf, 11, 0) == 11 && memcmp(buf, "XYrst-inode", 11) == 0,
	      "a write through fd 30 is not seen through fd 31");
	CHECK(access("h1", F_OK) && access("h1.lnk", F_OK), "h1 or h1.lnk came back");

	CHECK(fstat(32, &c) == 0, "fstat 32: %s", strerror(errno));
	memset(&b, 0, sizeof(b));
	CHECK(stat("h2.other", &b) == 0, "stat h2.other: %s", strerror(errno));
	CHECK(b.st_ino == o.st_ino, "h2.other was replaced (inode %lu, was %lu)", (unsigned long)b.st_ino,
	      (unsigned long)o.st_ino);
	CHECK(c.st_ino == b.st_ino && c.st_dev == b.st_dev,
	      "fd 32 is inode %lu, but h2.other is %lu (restored as a copy?)", (unsigned long)c.st_ino,
	      (unsigned long)b.st_ino);
	CHECK(c.st_nlink == 1, "fd 32: nlink %lu, want 1", (unsigned long)c.st_nlink);
	CHECK(lseek(32, 0, SEEK_CUR) == 5, "fd 32: offset %lld, want 5", (long long)lseek(32, 0, SEEK_CUR));
	CHECK(write(32, "ZZ", 2) == 2, "write fd 32: %s", strerror(errno));
	fd = open("h2.other", O_RDONLY);
	memset(buf, 0, sizeof(buf));
	CHECK(fd >= 0 && read(fd, buf, 12) == 12 && memcmp(buf, "seconZZinode", 12) == 0,
	      "h2.other reads \"%.12s\", want \"seconZZinode\"", buf);
	if (fd >= 0)
		close(fd);
	CHECK(access("h2", F_OK), "h2 came back");
	zdtm_finish();
}
