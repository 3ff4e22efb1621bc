/*
 * fd_unlinked_sparse: an unlinked sparse file (fd 28, 8 MiB): data at
 * [0,4K), [1M,1M+64K) — whose second 4K block was written with zeros,
 * which is data, not a hole — and [5M,5M+8K); holes elsewhere, up to
 * the size set with ftruncate. After restore SEEK_DATA/SEEK_HOLE find
 * the same data ranges, the file allocates no more blocks than before,
 * and the content is the same.
 */
#include "zdtm.h"

#define FD 28
#define SIZE (8 << 20)
#define MAXR 32

struct range { off_t start, end; };

static int ranges(int fd, struct range *r)
{
	off_t off = 0;
	int n = 0;

	while (n < MAXR) {
		off_t d = lseek(fd, off, SEEK_DATA), h;
		if (d < 0)
			break;
		h = lseek(fd, d, SEEK_HOLE);
		if (h < 0)
			break;
		r[n].start = d;
		r[n].end = h;
		n++;
		off = h;
	}
	return n;
}

static void put(off_t off, size_t len, uint64_t seed)
{
	static char buf[65536];
	zdtm_fill(buf, len, seed);
	if (pwrite(FD, buf, len, off) != (ssize_t)len)
		zdtm_die("pwrite at %lld", (long long)off);
}

int main(void)
{
	static char zero[4096], buf[SIZE];
	struct range r0[MAXR], r1[MAXR];
	struct stat st0, st1;
	uint64_t h0;
	int n0, n1, i, fd;

	zdtm_init();
	fd = open("sparse.bin", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || dup2(fd, FD) != FD || unlink("sparse.bin"))
		zdtm_die("create sparse.bin");
	close(fd);
	put(0, 4096, 1);
	put(1 << 20, 65536, 2);
	if (pwrite(FD, zero, sizeof(zero), (1 << 20) + 4096) != sizeof(zero))
		zdtm_die("pwrite zeros");
	put(5 << 20, 8192, 3);
	if (ftruncate(FD, SIZE) || fsync(FD))
		zdtm_die("ftruncate/fsync");
	n0 = ranges(FD, r0);
	if (fstat(FD, &st0) || pread(FD, buf, SIZE, 0) != SIZE)
		zdtm_die("fstat/pread");
	h0 = zdtm_hash(buf, SIZE);

	zdtm_ready();
	zdtm_wait_go();

	n1 = ranges(FD, r1);
	CHECK(n1 == n0, "%d data ranges, want %d", n1, n0);
	for (i = 0; i < n0 && i < n1; i++)
		CHECK(r0[i].start == r1[i].start && r0[i].end == r1[i].end,
		      "data range %d is [%lld,%lld), want [%lld,%lld)", i, (long long)r1[i].start, (long long)r1[i].end,
		      (long long)r0[i].start, (long long)r0[i].end);
	if (fstat(FD, &st1))
		fail("fstat: %s", strerror(errno));
	else {
		CHECK(st1.st_size == SIZE, "size %lld, want %d", (long long)st1.st_size, SIZE);
		CHECK(st1.st_blocks <= st0.st_blocks, "%lld blocks allocated, was %lld (holes filled)",
		      (long long)st1.st_blocks, (long long)st0.st_blocks);
		CHECK(st1.st_nlink == 0, "%lu links", (unsigned long)st1.st_nlink);
	}
	CHECK(pread(FD, buf, SIZE, 0) == SIZE && zdtm_hash(buf, SIZE) == h0, "content differs");
	zdtm_finish();
}
