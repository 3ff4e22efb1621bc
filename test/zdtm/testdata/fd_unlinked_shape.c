/*
 * fd_unlinked_shape: open-but-unlinked files keep what fstat and lseek tell
 * of them, not only their bytes. One is chowned to 1234:5678 with mode 0640
 * and times set in the past; one is sparse: 8 MiB with data only at 0,
 * 3 MiB and the last 4 KiB, and a range of written zeros (allocated, not a
 * hole); a memfd is sparse too. After restore: owner, group, mode and times
 * are the same; SEEK_DATA/SEEK_HOLE find the same data ranges (the holes are
 * holes again: st_blocks stays small) and the contents are right.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define MB (1024 * 1024)

static char page[4096];

static int extents(int fd, off_t size, off_t *out, int max)
{
	int n = 0;
	for (off_t off = 0; off < size && n + 2 <= max;) {
		off_t a = lseek(fd, off, SEEK_DATA), b;
		if (a < 0)
			break;
		b = lseek(fd, a, SEEK_HOLE);
		out[n++] = a;
		out[n++] = b;
		off = b;
	}
	return n;
}

static void put(int fd, off_t off, uint64_t seed)
{
	zdtm_fill(page, sizeof(page), seed);
	if (pwrite(fd, page, sizeof(page), off) != sizeof(page))
		zdtm_die("pwrite");
}

static int check_at(int fd, off_t off, uint64_t seed)
{
	if (pread(fd, page, sizeof(page), off) != sizeof(page))
		return -1;
	return zdtm_check(page, sizeof(page), seed) == -1 ? 0 : -1;
}

static void make_sparse(int fd)
{
	char zeros[8192] = { 0 };
	if (ftruncate(fd, 8 * MB))
		zdtm_die("ftruncate");
	put(fd, 0, 1);
	put(fd, 3 * MB, 2);
	put(fd, 8 * MB - 4096, 3);
	if (pwrite(fd, zeros, sizeof(zeros), 5 * MB) != sizeof(zeros))
		zdtm_die("pwrite zeros");
}

int main(void)
{
	struct timespec ts[2] = { { 1200000000, 111111111 }, { 1300000000, 222222222 } };
	off_t e0[32], e1[32], m0[32], m1[32];
	int owned, sparse, mfd, n0, n1, k0, k1;
	struct stat so, ss, sm, now;

	zdtm_init();
	owned = open("owned.file", O_RDWR | O_CREAT | O_TRUNC, 0600);
	sparse = open("sparse.file", O_RDWR | O_CREAT | O_TRUNC, 0644);
	mfd = memfd_create("sparse-memfd", 0);
	if (owned < 0 || sparse < 0 || mfd < 0)
		zdtm_die("open");
	put(owned, 0, 9);
	if (fchown(owned, 1234, 5678) || fchmod(owned, 0640) || futimens(owned, ts))
		zdtm_die("owner/mode/times");
	make_sparse(sparse);
	make_sparse(mfd);
	if (unlink("owned.file") || unlink("sparse.file"))
		zdtm_die("unlink");
	fstat(owned, &so);
	fstat(sparse, &ss);
	fstat(mfd, &sm);
	n0 = extents(sparse, 8 * MB, e0, 32);
	k0 = extents(mfd, 8 * MB, m0, 32);
	if (n0 < 6)
		zdtm_die("this filesystem keeps no holes (%d extents)", n0 / 2);

	zdtm_ready();
	zdtm_wait_go();

	fstat(owned, &now);
	CHECK(now.st_uid == 1234 && now.st_gid == 5678, "owner %d:%d, want 1234:5678", now.st_uid, now.st_gid);
	CHECK((now.st_mode & 07777) == 0640, "mode %o, want 640", now.st_mode & 07777);
	CHECK(now.st_mtim.tv_sec == so.st_mtim.tv_sec && now.st_mtim.tv_nsec == so.st_mtim.tv_nsec, "mtime %ld.%09ld, want %ld.%09ld",
	      (long)now.st_mtim.tv_sec, now.st_mtim.tv_nsec, (long)so.st_mtim.tv_sec, so.st_mtim.tv_nsec);
	CHECK(now.st_atim.tv_sec == so.st_atim.tv_sec && now.st_atim.tv_nsec == so.st_atim.tv_nsec, "atime changed");
	CHECK(check_at(owned, 0, 9) == 0, "owned file content");

	fstat(sparse, &now);
	n1 = extents(sparse, 8 * MB, e1, 32);
	CHECK(now.st_size == ss.st_size, "sparse size %ld, want %ld", (long)now.st_size, (long)ss.st_size);
	CHECK(n1 == n0 && memcmp(e0, e1, n0 * sizeof(off_t)) == 0, "sparse file: %d data ranges, want %d (first %ld-%ld)",
	      n1 / 2, n0 / 2, (long)e1[0], (long)e1[1]);
	CHECK(now.st_blocks <= ss.st_blocks + 16, "sparse file: %ld blocks, was %ld (holes filled)", (long)now.st_blocks,
	      (long)ss.st_blocks);
	CHECK(check_at(sparse, 0, 1) == 0 && check_at(sparse, 3 * MB, 2) == 0 && check_at(sparse, 8 * MB - 4096, 3) == 0,
	      "sparse file content");
	fstat(mfd, &now);
	k1 = extents(mfd, 8 * MB, m1, 32);
	CHECK(k1 == k0 && memcmp(m0, m1, k0 * sizeof(off_t)) == 0, "memfd: %d data ranges, want %d", k1 / 2, k0 / 2);
	CHECK(now.st_blocks <= sm.st_blocks + 16, "memfd: %ld blocks, was %ld", (long)now.st_blocks, (long)sm.st_blocks);
	CHECK(check_at(mfd, 3 * MB, 2) == 0, "memfd content");
	zdtm_finish();
}
