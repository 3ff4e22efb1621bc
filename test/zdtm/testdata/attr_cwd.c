/*
 * attr_cwd: the working directory. The program chdirs into a directory it
 * made under its start directory (whose name has a space) and leaves a
 * marker file there. After restore getcwd() is the same path, "." is the
 * same inode, and relative opens resolve there.
 */
#include "zdtm.h"

int main(void)
{
	char cwd0[4096], cwd1[4096];
	struct stat st0, st1;
	char buf[16];
	int fd;

	zdtm_init();
	if ((mkdir("cwd dir", 0755) && errno != EEXIST) || (mkdir("cwd dir/inner", 0755) && errno != EEXIST))
		zdtm_die("mkdir");
	if (chdir("cwd dir/inner"))
		zdtm_die("chdir");
	fd = open("marker", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "cwd-ok", 6) != 6)
		zdtm_die("marker");
	close(fd);
	if (!getcwd(cwd0, sizeof(cwd0)) || stat(".", &st0))
		zdtm_die("getcwd");

	zdtm_ready();
	zdtm_wait_go();

	if (!getcwd(cwd1, sizeof(cwd1)))
		fail("getcwd: %s", strerror(errno));
	else
		CHECK(strcmp(cwd0, cwd1) == 0, "cwd \"%s\", want \"%s\"", cwd1, cwd0);
	if (stat(".", &st1))
		fail("stat .: %s", strerror(errno));
	else
		CHECK(st0.st_ino == st1.st_ino && st0.st_dev == st1.st_dev, "\".\" is another directory");
	fd = open("marker", O_RDONLY);
	if (fd < 0)
		fail("open marker relative to cwd: %s", strerror(errno));
	else {
		memset(buf, 0, sizeof(buf));
		CHECK(read(fd, buf, sizeof(buf)) == 6 && strcmp(buf, "cwd-ok") == 0, "marker content \"%s\"", buf);
		close(fd);
	}
	CHECK(chdir("..") == 0 && access("inner/marker", F_OK) == 0, "\"..\" of cwd is wrong");
	zdtm_finish();
}
