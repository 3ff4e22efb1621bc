/*
 * mem_memfd_private2: one memfd mapped MAP_PRIVATE twice (at file offsets
 * 0 and 2 pages), both partly written; and a MAP_SHARED|MAP_ANONYMOUS
 * region split in two VMAs by an mprotect in the middle, whose second part
 * must still map the right offset of the shared object; another whose
 * second half was moved away by mremap, and a mapping of it at an offset
 * opened through /proc/self/map_files. Content must come
 * back exactly, memfd pages not written stay the memfd's, and a write to
 * the memfd after restore shows through clean private pages.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096UL
#define NP 8

int main(void)
{
	static unsigned char file[NP * PG], page[PG];
	unsigned char *a, *b, *sh, *c, *d, *sh2, *moved, *via;
	char path[128];
	int fd, fd2, i;

	zdtm_init();
	fd = memfd_create("private2", 0);
	if (fd < 0)
		zdtm_die("memfd_create");
	zdtm_fill(file, sizeof(file), 91);
	zdtm_write_all(fd, file, sizeof(file));
	a = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	b = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 2 * PG);
	if (a == MAP_FAILED || b == MAP_FAILED)
		zdtm_die("mmap memfd");
	zdtm_fill(a + 1 * PG, PG, 92);
	zdtm_fill(b + 1 * PG, PG, 93);
	(void)*(volatile unsigned char *)(b + 2 * PG);

	/* A second memfd, its descriptor closed: mapped twice at offset 0,
	 * the first page of the second mapping written. */
	fd2 = memfd_create("private2b", 0);
	if (fd2 < 0)
		zdtm_die("memfd_create");
	zdtm_write_all(fd2, file, sizeof(file));
	c = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd2, 0);
	d = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd2, 0);
	if (c == MAP_FAILED || d == MAP_FAILED)
		zdtm_die("mmap memfd 2");
	close(fd2);
	(void)*(volatile unsigned char *)c;
	zdtm_fill(d, PG, 97);
	(void)*(volatile unsigned char *)(d + PG);

	sh = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		zdtm_die("mmap shared");
	zdtm_fill(sh, NP * PG, 94);
	if (mprotect(sh + 3 * PG, PG, PROT_READ))
		zdtm_die("mprotect");

	/* sh2: 8 pages; pages 4..7 moved elsewhere; pages 2..3 mapped again
	 * through map_files at offset 2 pages. */
	sh2 = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh2 == MAP_FAILED)
		zdtm_die("mmap shared 2");
	zdtm_fill(sh2, NP * PG, 98);
	snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)sh2,
		 (unsigned long)(sh2 + NP * PG));
	fd2 = open(path, O_RDWR);
	if (fd2 < 0)
		zdtm_die("open %s", path);
	via = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd2, 2 * PG);
	if (via == MAP_FAILED)
		zdtm_die("mmap map_files");
	close(fd2);
	moved = mmap(NULL, 16 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (moved == MAP_FAILED)
		zdtm_die("mmap reserve");
	moved = mremap(sh2 + 4 * PG, 4 * PG, 4 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, moved + 8 * PG);
	if (moved == MAP_FAILED)
		zdtm_die("mremap");

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NP; i++) {
		if (i == 1)
			CHECK(zdtm_check(a + PG, PG, 92) < 0, "first mapping: written page 1 differs");
		else
			CHECK(memcmp(a + i * PG, file + i * PG, PG) == 0, "first mapping: page %d differs", i);
	}
	for (i = 0; i < 4; i++) {
		if (i == 1)
			CHECK(zdtm_check(b + PG, PG, 93) < 0, "second mapping: written page 1 differs");
		else
			CHECK(memcmp(b + i * PG, file + (2 + i) * PG, PG) == 0,
			      "second mapping: page %d differs from memfd page %d", i, 2 + i);
	}
	CHECK(memcmp(c, file, 4 * PG) == 0, "closed memfd, first mapping differs");
	CHECK(zdtm_check(d, PG, 97) < 0, "closed memfd, second mapping: written page 0 differs");
	CHECK(memcmp(d + PG, file + PG, 3 * PG) == 0, "closed memfd, second mapping: pages 1-3 differ");
	CHECK(zdtm_check(sh, NP * PG, 94) < 0, "split shared anonymous region differs at %ld",
	      zdtm_check(sh, NP * PG, 94));
	CHECK(zdtm_check(sh2, 4 * PG, 98) < 0, "shared region 2 (first half) differs");
	{
		static unsigned char full[NP * PG];
		zdtm_fill(full, sizeof(full), 98);
		CHECK(memcmp(moved, full + 4 * PG, 4 * PG) == 0, "moved half of shared region 2 differs");
		CHECK(memcmp(via, full + 2 * PG, 2 * PG) == 0, "map_files mapping at offset 2 pages differs");
	}
	zdtm_fill(via, PG, 99);
	CHECK(zdtm_check(sh2 + 2 * PG, PG, 99) < 0, "map_files mapping no longer the same object as the region");
	zdtm_fill(sh2 + 3 * PG, PG, 100);
	CHECK(zdtm_check(via + PG, PG, 100) < 0, "region write not seen through the map_files mapping");
	/* The split parts are still one object: a write through one part is seen by the whole. */
	zdtm_fill(sh + 5 * PG, PG, 95);
	CHECK(zdtm_check(sh + 5 * PG, PG, 95) < 0, "write to the shared region lost");
	CHECK(pread(fd, page, PG, 1 * PG) == (ssize_t)PG && memcmp(page, file + PG, PG) == 0,
	      "memfd page 1 changed by a private write");
	zdtm_fill(page, PG, 96);
	if (pwrite(fd, page, PG, 0) != (ssize_t)PG || pwrite(fd, page, PG, 2 * PG) != (ssize_t)PG)
		fail("pwrite memfd: %s", strerror(errno));
	CHECK(memcmp(a, page, PG) == 0, "clean private page 0 does not show a later memfd write");
	CHECK(memcmp(b, page, PG) == 0, "clean page 0 of the second mapping does not show a later memfd write");
	zdtm_finish();
}
