/*
 * zs_mremap_file: file mappings moved and resized with mremap, so that
 * their addresses no longer say which file offset they map. "mr.file" has
 * 8 pages, page i filled with pattern seed 100+i; its fd is closed.
 *   S: MAP_SHARED of pages 0..3, then mremap'd (MAYMOVE|FIXED) to a new
 *      address and grown to 6 pages: maps file pages 0..5;
 *   P: MAP_PRIVATE of pages 2..5, page 2 written (copied), then shrunk to
 *      pages 2..3 and moved: maps file pages 2..3, the first one private;
 *   A: anonymous 3 pages with a pattern, grown in place to 5 pages.
 * After restore the maps offsets are the same; S shows every file page and
 * stays shared both ways with the file (pwrite at page 5 is seen, a write
 * through S at page 4 is read by pread); P's first page keeps the private
 * write, its second page still shows the page cache (a pwrite to file page
 * 3 is seen through it); A keeps its pattern and zero tail.
 * Modelled on zdtm's mremap, maps04 and file mappings after mremap.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096

static unsigned long maps_off(void *addr)
{
	static char buf[65536];
	char *p;
	unsigned long a = (unsigned long)addr;

	if (zdtm_read_file("/proc/self/maps", buf, sizeof(buf)) < 0)
		return ~0UL;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		unsigned long lo, hi, off;
		char perm[8];
		if (sscanf(p, "%lx-%lx %7s %lx", &lo, &hi, perm, &off) == 4 && a >= lo && a < hi)
			return off + (a - lo);
	}
	return ~0UL;
}

int main(void)
{
	char *s, *p, *a, *hole, page[PG];
	unsigned long so, po;
	int fd, i;

	zdtm_init();
	fd = open("mr.file", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_die("open");
	for (i = 0; i < 8; i++) {
		zdtm_fill(page, PG, 100 + i);
		zdtm_write_all(fd, page, PG);
	}
	hole = mmap(NULL, 64 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	s = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	p = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 2 * PG);
	if (hole == MAP_FAILED || s == MAP_FAILED || p == MAP_FAILED)
		zdtm_die("mmap");
	s = mremap(s, 4 * PG, 6 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, hole + 8 * PG);
	if (s == MAP_FAILED)
		zdtm_die("mremap S");
	memcpy(p + 10, "private!", 8);
	p = mremap(p, 4 * PG, 2 * PG, MREMAP_MAYMOVE | MREMAP_FIXED, hole + 30 * PG);
	if (p == MAP_FAILED)
		zdtm_die("mremap P");
	munmap(hole, 8 * PG);
	a = hole + 48 * PG;
	if (mmap(a, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != a)
		zdtm_die("mmap A");
	zdtm_fill(a, 3 * PG, 7);
	munmap(a + 3 * PG, 2 * PG);
	if (mremap(a, 3 * PG, 5 * PG, 0) != a)
		zdtm_die("mremap A in place");
	close(fd);
	so = maps_off(s + 5 * PG);
	po = maps_off(p + PG);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(maps_off(s + 5 * PG) == so, "S's last page maps offset %#lx, want %#lx", maps_off(s + 5 * PG), so);
	CHECK(maps_off(p + PG) == po, "P's last page maps offset %#lx, want %#lx", maps_off(p + PG), po);
	for (i = 0; i < 6; i++)
		CHECK(zdtm_check(s + i * PG, PG, 100 + i) == -1, "S page %d is not file page %d", i, i);
	CHECK(memcmp(p + 10, "private!", 8) == 0, "P lost its private write");
	CHECK(zdtm_check(p + PG, PG, 103) == -1, "P's second page is not file page 3");
	fd = open("mr.file", O_RDWR);
	if (fd < 0)
		fail("reopen: %s", strerror(errno));
	else {
		char b[8];
		if (pwrite(fd, "PWRITE5!", 8, 5 * PG + 8) != 8 || pwrite(fd, "PWRITE3!", 8, 3 * PG + 8) != 8)
			fail("pwrite: %s", strerror(errno));
		CHECK(memcmp(s + 5 * PG + 8, "PWRITE5!", 8) == 0, "pwrite to file page 5 not seen through S");
		CHECK(memcmp(p + PG + 8, "PWRITE3!", 8) == 0, "pwrite to file page 3 not seen through P's clean page");
		memcpy(s + 4 * PG + 16, "THROUGHS", 8);
		CHECK(pread(fd, b, 8, 4 * PG + 16) == 8 && memcmp(b, "THROUGHS", 8) == 0,
		      "a write through S at page 4 is not in the file");
		close(fd);
	}
	CHECK(zdtm_check(a, 3 * PG, 7) == -1, "A lost its pattern");
	CHECK(zdtm_is_zero(a + 3 * PG, 2 * PG) == -1, "A's grown tail is not zero");
	zdtm_finish();
}
