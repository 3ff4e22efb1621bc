/*
 * mem_memfd_private2: one memfd mapped MAP_PRIVATE twice (at file offsets
 * 0 and 2 pages), both partly written; and a MAP_SHARED|MAP_ANONYMOUS
 * region split in two VMAs by an mprotect in the middle, whose second part
 * must still map the right offset of the shared object. Content must come
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
	unsigned char *a, *b, *sh, *c, *d;
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
