/*
 * fd_deleted_dir: descriptors of directories that were removed.
 *   fd 30: "dd1" (mode 0710, owner 1111:2222), removed;
 *   fd 31: a second open of the same removed "dd1" (same inode as fd 30);
 *   fd 32: "outer/dd2", removed together with "outer";
 *   fd 33: "dd3", removed, and a new directory "dd3" made in its place.
 * After restore each is a directory with no links whose /proc link is
 * "<path> (deleted)", fds 30 and 31 are one inode, mode and owner are
 * kept, nothing can be created in them, the removed names stay absent,
 * and the new "dd3" is untouched. (fd 33's stand-in cannot take the name
 * "dd3", which is in use: its link may read "dd3<suffix> (deleted)".)
 */
#include "zdtm.h"

static void opendir_at(const char *path, int want)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("open %s", path);
	close(fd);
}

static void check_deleted(int fd, const char *top, const char *name, int exact)
{
	char path[64], link[4200], want[4200];
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	snprintf(want, sizeof(want), "%s/%s (deleted)", top, name);
	if (exact)
		CHECK(strcmp(link, want) == 0, "fd %d links to \"%s\", want \"%s\"", fd, link, want);
	else
		CHECK(strncmp(link, want, strlen(want) - 10) == 0 && strstr(link, " (deleted)"),
		      "fd %d links to \"%s\", want \"%s\" or a name beside it", fd, link, want);
	CHECK(fstat(fd, &st) == 0 && S_ISDIR(st.st_mode) && st.st_nlink == 0,
	      "fd %d: mode %o nlink %lu, want a directory without links", fd, st.st_mode, (unsigned long)st.st_nlink);
	CHECK(openat(fd, "x", O_WRONLY | O_CREAT, 0644) == -1 && errno == ENOENT,
	      "fd %d: creating a file in the deleted directory did not fail with ENOENT", fd);
}

int main(void)
{
	char top[4096];
	struct stat a, b, st, st3;

	zdtm_init();
	if (!getcwd(top, sizeof(top)))
		zdtm_die("getcwd");
	if (mkdir("dd1", 0755) || chmod("dd1", 0710) || chown("dd1", 1111, 2222))
		zdtm_die("mkdir dd1");
	opendir_at("dd1", 30);
	opendir_at("dd1", 31);
	if (mkdir("outer", 0755) || mkdir("outer/dd2", 0700))
		zdtm_die("mkdir outer/dd2");
	opendir_at("outer/dd2", 32);
	if (mkdir("dd3", 0700))
		zdtm_die("mkdir dd3");
	opendir_at("dd3", 33);
	if (rmdir("dd1") || rmdir("outer/dd2") || rmdir("outer") || rmdir("dd3") || mkdir("dd3", 0755))
		zdtm_die("rmdir");
	if (stat("dd3", &st3))
		zdtm_die("stat dd3");

	zdtm_ready();
	zdtm_wait_go();

	check_deleted(30, top, "dd1", 1);
	check_deleted(31, top, "dd1", 1);
	check_deleted(32, top, "outer/dd2", 1);
	check_deleted(33, top, "dd3", 0);
	CHECK(fstat(30, &a) == 0 && fstat(31, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev,
	      "fds 30 and 31 are no longer the same directory");
	CHECK((a.st_mode & 07777) == 0710 && a.st_uid == 1111 && a.st_gid == 2222,
	      "fd 30: mode %o owner %u:%u, want 0710 1111:2222", a.st_mode & 07777, a.st_uid, a.st_gid);
	CHECK(access("dd1", F_OK) == -1 && access("outer", F_OK) == -1, "a removed name came back");
	CHECK(stat("dd3", &st) == 0 && st.st_ino == st3.st_ino && (st.st_mode & 07777) == 0755,
	      "the new dd3 was replaced or changed");
	CHECK(fstat(33, &a) == 0 && a.st_ino != st.st_ino, "fd 33 is the new dd3");
	zdtm_finish();
}
