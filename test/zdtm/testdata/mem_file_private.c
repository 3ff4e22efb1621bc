/*
 * mem_file_private: MAP_PRIVATE file mappings where only some pages were
 * written. Written (copied-on-write) pages keep their new content, the file
 * on disk is untouched, and unwritten pages are still the file's page cache:
 * a pwrite to the file after restore shows through them (Linux semantics),
 * which an image that turned the whole mapping into anonymous memory fails.
 * A second mapping at a non-zero file offset checks the offset in maps.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096UL
#define NPAGES 32
#define OFF_PAGES 8 /* second mapping: file pages 8..11 */

static const int written[] = { 3, 4, 10, 31 };

static int is_written(int pg)
{
	for (unsigned i = 0; i < sizeof(written) / sizeof(written[0]); i++)
		if (written[i] == pg)
			return 1;
	return 0;
}

/* maps_line finds the /proc/self/maps line of the VMA starting at addr. */
static int maps_line(void *addr, char *out, size_t size)
{
	static char buf[1 << 20];
	char key[32], *p;

	if (zdtm_read_file("/proc/self/maps", buf, sizeof(buf)) < 0)
		return -1;
	snprintf(key, sizeof(key), "%lx-", (unsigned long)addr);
	for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, strlen(key)) == 0) {
			snprintf(out, size, "%.*s", (int)strcspn(p, "\n"), p);
			return 0;
		}
	return -1;
}

int main(void)
{
	static unsigned char file[NPAGES * PG], page[PG];
	char line0[512], line1[512], oline0[512], oline1[512];
	unsigned char *m, *m2;
	volatile unsigned char sink;
	long off;
	int fd, i;

	zdtm_init();
	zdtm_fill(file, sizeof(file), 7);
	fd = open("private.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_die("open private.bin");
	zdtm_write_all(fd, file, sizeof(file));

	m = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	m2 = mmap(NULL, 4 * PG, PROT_READ, MAP_PRIVATE, fd, OFF_PAGES * PG);
	if (m == MAP_FAILED || m2 == MAP_FAILED)
		zdtm_die("mmap private.bin");
	close(fd); /* the mappings alone keep the file */

	for (i = 0; i < NPAGES; i++)
		if (is_written(i))
			zdtm_fill(m + i * PG, PG, 100 + i);
		else if (i % 2)
			sink = m[i * PG]; /* populate some clean pages too */
	sink = m2[0];
	(void)sink;
	if (maps_line(m, line0, sizeof(line0)) || maps_line(m2, oline0, sizeof(oline0)))
		zdtm_die("mappings not in /proc/self/maps");

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NPAGES; i++) {
		if (is_written(i))
			off = zdtm_check(m + i * PG, PG, 100 + i);
		else
			off = memcmp(m + i * PG, file + i * PG, PG) ? 0 : -1;
		if (off >= 0)
			fail("page %d (%s) differs", i, is_written(i) ? "written" : "clean");
	}
	if (memcmp(m2, file + OFF_PAGES * PG, 4 * PG))
		fail("offset mapping content differs from file pages %d..%d", OFF_PAGES, OFF_PAGES + 3);
	if (maps_line(m, line1, sizeof(line1)))
		fail("mapping at %p gone from maps", (void *)m);
	else
		CHECK(strcmp(line0, line1) == 0, "maps line \"%s\", want \"%s\"", line1, line0);
	if (maps_line(m2, oline1, sizeof(oline1)))
		fail("offset mapping at %p gone from maps", (void *)m2);
	else
		CHECK(strcmp(oline0, oline1) == 0, "maps line \"%s\", want \"%s\"", oline1, oline0);

	/* The file itself must not have seen the private writes. */
	fd = open("private.bin", O_RDWR);
	if (fd < 0) {
		fail("reopen private.bin: %s", strerror(errno));
		zdtm_finish();
	}
	for (i = 0; i < NPAGES; i++) {
		if (pread(fd, page, PG, i * PG) != (ssize_t)PG || memcmp(page, file + i * PG, PG)) {
			fail("file page %d changed on disk", i);
			break;
		}
	}
	/* Clean pages still share the page cache; written ones do not. */
	zdtm_fill(page, PG, 999);
	if (pwrite(fd, page, PG, 0) != (ssize_t)PG || pwrite(fd, page, PG, 3 * PG) != (ssize_t)PG)
		fail("pwrite: %s", strerror(errno));
	CHECK(memcmp(m, page, PG) == 0, "clean private page 0 does not show a later file write (not file-backed any more)");
	CHECK(zdtm_check(m + 3 * PG, PG, 103) < 0, "written private page 3 changed by a file write");
	close(fd);
	zdtm_finish();
}
