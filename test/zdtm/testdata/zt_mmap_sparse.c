/*
 * zt_mmap_sparse: mappings of a sparse file keep it sparse. "sp.file" is
 * 64 pages long with no data (ftruncate). It is mapped MAP_SHARED
 * read-write (pages 3 and 40 written through the mapping and msync'ed,
 * page 10 only read) and MAP_PRIVATE read-write (page 20 written: a
 * private copy); the fd is closed.
 * After restore SEEK_DATA/SEEK_HOLE on a new fd find data at pages 3 and
 * 40 only, st_blocks is what it was (the tool wrote nothing back into the
 * holes), the file size is the same; through the shared mapping pages 3
 * and 40 have their patterns and the rest is zero, through the private
 * one page 20 has its private pattern while the file's page 20 is still a
 * hole; a write through the shared mapping at page 50 reaches the file.
 * Modelled on zdtm's ghost_holes00 (holes kept) for a mapped, linked file.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096
#define NP 64

static void extents(int fd, char *out, size_t sz)
{
	off_t pos = 0, d, h;
	size_t l = 0;

	out[0] = 0;
	while ((d = lseek(fd, pos, SEEK_DATA)) >= 0) {
		h = lseek(fd, d, SEEK_HOLE);
		l += snprintf(out + l, sz - l, "[%ld,%ld)", (long)(d / PG), (long)(h / PG));
		if (h <= d || l >= sz - 1)
			break;
		pos = h;
	}
}

int main(void)
{
	unsigned char *sh, *pr;
	char ext0[256], ext1[256];
	struct stat st0, st1;
	int fd, i;
	long off;

	zdtm_init();
	fd = open("sp.file", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, NP * PG))
		zdtm_die("create sp.file");
	sh = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	pr = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (sh == MAP_FAILED || pr == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(sh + 3 * PG, PG, 3);
	zdtm_fill(sh + 40 * PG, PG, 40);
	if (sh[10 * PG] != 0)
		zdtm_die("hole not zero");
	zdtm_fill(pr + 20 * PG, PG, 20);
	if (msync(sh, NP * PG, MS_SYNC) || fsync(fd))
		zdtm_die("msync");
	extents(fd, ext0, sizeof(ext0));
	fstat(fd, &st0);
	close(fd);
	zdtm_log("extents %s, blocks %ld", ext0, (long)st0.st_blocks);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NP; i++) {
		if (i == 3 || i == 40)
			off = zdtm_check(sh + i * PG, PG, i);
		else
			off = zdtm_is_zero(sh + i * PG, PG);
		CHECK(off < 0, "shared mapping page %d differs at %ld", i, off);
		if (i == 20)
			off = zdtm_check(pr + i * PG, PG, 20);
		else if (i == 3 || i == 40)
			off = zdtm_check(pr + i * PG, PG, i);
		else
			off = zdtm_is_zero(pr + i * PG, PG);
		CHECK(off < 0, "private mapping page %d differs at %ld", i, off);
	}
	fd = open("sp.file", O_RDWR);
	CHECK(fd >= 0, "open sp.file: %s", strerror(errno));
	if (fd >= 0) {
		fsync(fd);
		extents(fd, ext1, sizeof(ext1));
		fstat(fd, &st1);
		CHECK(strcmp(ext0, ext1) == 0, "data extents (pages) %s after restore, want %s", ext1, ext0);
		CHECK(st1.st_blocks == st0.st_blocks, "st_blocks %ld after restore, want %ld", (long)st1.st_blocks,
		      (long)st0.st_blocks);
		CHECK(st1.st_size == NP * PG, "size %ld", (long)st1.st_size);
		zdtm_fill(sh + 50 * PG, PG, 50);
		msync(sh, NP * PG, MS_SYNC);
		{
			unsigned char b[PG];
			CHECK(pread(fd, b, PG, 50 * PG) == PG && zdtm_check(b, PG, 50) < 0,
			      "write through the shared mapping not in the file");
			CHECK(pread(fd, b, PG, 20 * PG) == PG && zdtm_is_zero(b, PG) < 0,
			      "file page 20 was changed (private page written back?)");
		}
		close(fd);
	}
	zdtm_finish();
}
