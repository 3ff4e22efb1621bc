/*
 * fd_unlinked_owner: unlinked files keep their owner and mode.
 *   fd 26: own.bin, O_RDWR, owner 2345:3456, mode 0640, unlinked;
 *   fd 27: ro.bin, O_RDONLY, owner 7:8, mode 0404, unlinked.
 * After restore fstat reports the same owner, group and mode, no links,
 * and the content is kept.
 */
#include "zdtm.h"

static void mk(const char *name, int flags, int want, uid_t uid, gid_t gid, mode_t mode, uint64_t seed)
{
	char buf[5000];
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		zdtm_die("create %s", name);
	zdtm_fill(buf, sizeof(buf), seed);
	zdtm_write_all(fd, buf, sizeof(buf));
	if (fchown(fd, uid, gid) || fchmod(fd, mode))
		zdtm_die("fchown/fchmod %s", name);
	close(fd);
	fd = open(name, flags);
	if (fd < 0 || dup2(fd, want) != want || unlink(name))
		zdtm_die("open/unlink %s", name);
	close(fd);
}

static void check(int fd, uid_t uid, gid_t gid, mode_t mode, uint64_t seed)
{
	char buf[5000];
	struct stat st;

	if (fstat(fd, &st)) {
		fail("fstat %d: %s", fd, strerror(errno));
		return;
	}
	CHECK(st.st_uid == uid && st.st_gid == gid, "fd %d: owner %u:%u, want %u:%u", fd, st.st_uid, st.st_gid, uid, gid);
	CHECK((st.st_mode & 07777) == mode, "fd %d: mode %o, want %o", fd, st.st_mode & 07777, mode);
	CHECK(st.st_nlink == 0, "fd %d: %lu links", fd, (unsigned long)st.st_nlink);
	CHECK(pread(fd, buf, sizeof(buf), 0) == sizeof(buf) && zdtm_check(buf, sizeof(buf), seed) < 0,
	      "fd %d: content differs", fd);
}

int main(void)
{
	zdtm_init();
	mk("own.bin", O_RDWR, 26, 2345, 3456, 0640, 1);
	mk("ro.bin", O_RDONLY, 27, 7, 8, 0404, 2);

	zdtm_ready();
	zdtm_wait_go();

	check(26, 2345, 3456, 0640, 1);
	check(27, 7, 8, 0404, 2);
	zdtm_finish();
}
