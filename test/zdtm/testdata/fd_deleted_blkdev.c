/*
 * fd_deleted_blkdev: a block device node (7:0, loop0's numbers) opened
 * O_RDONLY and removed (fd 44). ferry refuses to checkpoint it (a stand-in
 * node would hand the restored process a disk by device number alone):
 * the dump must fail naming the pid, fd 44 and "deleted block device",
 * and leave the program running, which then passes.
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

	CHECK(fstat(44, &st) == 0 && S_ISBLK(st.st_mode) && st.st_nlink == 0, "fd 44 is not the removed block device");
	zdtm_finish();
}
