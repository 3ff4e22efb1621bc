/*
 * fd_deleted_blkdev: a block device node (7:0, loop0's numbers) opened
 * O_RDONLY and removed (fd 44). After restore (on the machine and boot of
 * the dump: elsewhere a device number may name another disk, and ferry
 * refuses to make the node there) fd 44 is still that block device,
 * read-only, its node removed, and "blk" is not back in the work dir.
 */
#include "zdtm.h"
#include <sys/sysmacros.h>

int main(void)
{
	struct stat st;
	int fd;

	zdtm_init();
	if (mknod("blk", S_IFBLK | 0600, makedev(7, 0)))
		zdtm_die("mknod blk 7:0");
	fd = open("blk", O_RDONLY);
	if (fd < 0 || dup2(fd, 44) != 44 || unlink("blk"))
		zdtm_die("open/unlink blk (is the loop driver there?)");
	close(fd);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fstat(44, &st) == 0 && S_ISBLK(st.st_mode) && st.st_nlink == 0 && st.st_rdev == makedev(7, 0),
	      "fd 44 is not the removed block device 7:0");
	CHECK((fcntl(44, F_GETFL) & O_ACCMODE) == O_RDONLY, "fd 44 is not read-only");
	CHECK(access("blk", F_OK) != 0, "the removed node blk is back");
	zdtm_finish();
}
