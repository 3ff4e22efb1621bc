/*
 * zd_chroot: a process that chrooted into a directory of its work dir.
 * Before the chroot it keeps an O_PATH descriptor of its work dir (fd 21,
 * used to poll for the go file, which is outside the new root); in the
 * new root it opens "/inside" (fd 20, O_RDWR, offset 4) and chdirs to
 * "/sub". After restore: "/" is the same directory (inode of
 * "jail" seen through fd 21), "/.." is "/" (the jail holds), "/inside"
 * reads the file, getcwd is "/sub", fd 20 is "/inside" with offset 4,
 * and a file created at "/made" appears in jail/.
 * Modelled on zdtm's chroot and chroot-file.
 */
#include "zdtm.h"

int main(void)
{
	struct stat jail, root, up, in, f20;
	char buf[64], cwd[256];
	const char *go;
	int fd;

	zdtm_init();
	go = strrchr(getenv("ZDTM_GO"), '/');
	go = go ? go + 1 : getenv("ZDTM_GO");
	if (mkdir("jail", 0755) || mkdir("jail/sub", 0755))
		zdtm_die("mkdir");
	fd = open("jail/inside", O_RDWR | O_CREAT, 0644);
	if (fd < 0 || write(fd, "in-the-jail", 11) != 11)
		zdtm_die("jail/inside");
	close(fd);
	fd = open(".", O_PATH | O_DIRECTORY);
	if (fd < 0 || dup2(fd, 21) != 21)
		zdtm_die("open .");
	close(fd);
	if (chroot("jail") || chdir("/sub"))
		zdtm_die("chroot");
	fd = open("/inside", O_RDWR);
	if (fd < 0 || dup2(fd, 20) != 20 || lseek(20, 4, SEEK_SET) != 4)
		zdtm_die("open /inside");
	close(fd);
	if (fstat(20, &in))
		zdtm_die("fstat");

	zdtm_ready();
	while (fstatat(21, go, &root, 0))
		zdtm_sleep_ms(5);

	CHECK(fstatat(21, "jail", &jail, 0) == 0, "jail: %s", strerror(errno));
	CHECK(stat("/", &root) == 0 && root.st_ino == jail.st_ino && root.st_dev == jail.st_dev,
	      "/ is inode %lu, the jail is %lu: the root was not restored", (unsigned long)root.st_ino,
	      (unsigned long)jail.st_ino);
	CHECK(stat("/..", &up) == 0 && up.st_ino == root.st_ino, "/.. is not /: the jail does not hold");
	memset(cwd, 0, sizeof(cwd));
	CHECK(getcwd(cwd, sizeof(cwd)) && strcmp(cwd, "/sub") == 0, "getcwd \"%s\", want /sub", cwd);
	fd = open("/inside", O_RDONLY);
	memset(buf, 0, sizeof(buf));
	CHECK(fd >= 0 && read(fd, buf, sizeof(buf)) == 11 && memcmp(buf, "in-the-jail", 11) == 0,
	      "/inside reads \"%s\" (%s)", buf, strerror(errno));
	if (fd >= 0)
		close(fd);
	CHECK(fstat(20, &f20) == 0 && f20.st_ino == in.st_ino, "fd 20 is not /inside");
	CHECK(lseek(20, 0, SEEK_CUR) == 4, "fd 20 offset %lld, want 4", (long long)lseek(20, 0, SEEK_CUR));
	memset(buf, 0, sizeof(buf));
	CHECK(read(20, buf, 3) == 3 && memcmp(buf, "he-", 3) == 0, "fd 20 reads \"%s\" at 4", buf);
	fd = open("/made", O_RDWR | O_CREAT, 0644);
	CHECK(fd >= 0 && faccessat(21, "jail/made", F_OK, 0) == 0, "/made is not in jail/ (%s)", strerror(errno));
	if (fd >= 0)
		close(fd);
	CHECK(access("../inside", F_OK) == 0, "relative path from /sub does not reach /inside");
	zdtm_finish();
}
