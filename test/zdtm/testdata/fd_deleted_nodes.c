/*
 * fd_deleted_nodes: a FIFO and a character device node held open after
 * their names were removed.
 *   fd 40: FIFO "ff" opened O_RDWR, holding "hello", removed;
 *   fds 41 (O_RDONLY|O_NONBLOCK) and 42 (O_WRONLY): FIFO "ff2", removed;
 *   fd 43: character device node "nulldev" (1:3, /dev/null's numbers,
 *          mode 0620) opened O_RDWR, removed.
 * After restore the FIFO still holds "hello", 41 and 42 are one pipe,
 * the node is the same device, all have no links, their /proc links are
 * "<path> (deleted)", and no name came back.
 */
#include "zdtm.h"
#include <sys/sysmacros.h>

static void open_at(const char *path, int flags, int want)
{
	int fd = open(path, flags);
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("open %s", path);
	close(fd);
}

static void check_link(int fd, const char *top, const char *name)
{
	char path[64], link[4200], want[4200];
	struct stat st;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	n = readlink(path, link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	snprintf(want, sizeof(want), "%s/%s (deleted)", top, name);
	CHECK(strcmp(link, want) == 0, "fd %d links to \"%s\", want \"%s\"", fd, link, want);
	CHECK(fstat(fd, &st) == 0 && st.st_nlink == 0, "fd %d has %lu links, want 0", fd, (unsigned long)st.st_nlink);
}

int main(void)
{
	char top[4096], buf[16];
	struct stat st;

	zdtm_init();
	if (!getcwd(top, sizeof(top)))
		zdtm_die("getcwd");
	if (mkfifo("ff", 0640) || mkfifo("ff2", 0600))
		zdtm_die("mkfifo");
	open_at("ff", O_RDWR, 40);
	zdtm_write_all(40, "hello", 5);
	open_at("ff2", O_RDONLY | O_NONBLOCK, 41);
	open_at("ff2", O_WRONLY, 42);
	if (mknod("nulldev", S_IFCHR | 0620, makedev(1, 3)) || chmod("nulldev", 0620))
		zdtm_die("mknod");
	open_at("nulldev", O_RDWR, 43);
	if (unlink("ff") || unlink("ff2") || unlink("nulldev"))
		zdtm_die("unlink");

	zdtm_ready();
	zdtm_wait_go();

	check_link(40, top, "ff");
	check_link(41, top, "ff2");
	check_link(42, top, "ff2");
	check_link(43, top, "nulldev");
	CHECK(fstat(40, &st) == 0 && S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0640,
	      "fd 40: mode %o, want FIFO 0640", st.st_mode);
	memset(buf, 0, sizeof(buf));
	fcntl(40, F_SETFL, O_NONBLOCK);
	CHECK(read(40, buf, sizeof(buf)) == 5 && memcmp(buf, "hello", 5) == 0, "fd 40: read \"%s\", want \"hello\"", buf);
	CHECK(write(42, "pair", 4) == 4, "fd 42: write: %s", strerror(errno));
	memset(buf, 0, sizeof(buf));
	CHECK(read(41, buf, sizeof(buf)) == 4 && memcmp(buf, "pair", 4) == 0,
	      "fd 41 did not read what fd 42 wrote (\"%s\")", buf);
	CHECK(fstat(43, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 3) && (st.st_mode & 07777) == 0620,
	      "fd 43: mode %o rdev %u:%u, want character device 1:3 0620", st.st_mode, major(st.st_rdev), minor(st.st_rdev));
	CHECK(write(43, "x", 1) == 1 && read(43, buf, 1) == 0, "fd 43 does not behave as /dev/null");
	CHECK(access("ff", F_OK) == -1 && access("ff2", F_OK) == -1 && access("nulldev", F_OK) == -1,
	      "a removed name came back");
	zdtm_finish();
}
