/*
 * mem_anon: private anonymous memory in several shapes.
 *   - a fully written region with a pattern;
 *   - a region where only every third page was written (the rest must read
 *     as zeros);
 *   - a 512 MiB MAP_NORESERVE region with 16 pages written: the written
 *     pages keep their content and the untouched pages stay untouched
 *     (mincore residency does not balloon), then read as zeros;
 *   - a region partly dropped with MADV_DONTNEED (zeros there);
 *   - a region marked MADV_DONTDUMP and MADV_WIPEONFORK (VmFlags kept).
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096UL
#define FULL_PAGES 64
#define PART_PAGES 256
#define SPARSE_SIZE (512UL << 20)
#define SPARSE_TOUCHED 16
#define DROP_PAGES 32

static size_t resident(void *p, size_t len)
{
	static unsigned char vec[SPARSE_SIZE / PG];
	size_t i, n = 0;

	if (mincore(p, len, vec) != 0)
		return (size_t)-1;
	for (i = 0; i < len / PG; i++)
		n += vec[i] & 1;
	return n;
}

/* vmflags finds the VmFlags line of the VMA starting at addr in smaps. */
static int vmflags(void *addr, char *out, size_t size)
{
	static char buf[4 << 20];
	char key[64], *p, *f;

	if (zdtm_read_file("/proc/self/smaps", buf, sizeof(buf)) < 0)
		return -1;
	snprintf(key, sizeof(key), "%lx-", (unsigned long)addr);
	for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, strlen(key)) == 0)
			break;
	if (!p)
		return -1;
	f = strstr(p, "VmFlags:");
	if (!f)
		return -1;
	f += 8;
	while (*f == ' ')
		f++;
	snprintf(out, size, "%.*s", (int)strcspn(f, "\n"), f);
	return 0;
}

static size_t sparse_page(int i)
{
	return (size_t)(zdtm_mix(i + 1000) % (SPARSE_SIZE / PG));
}

int main(void)
{
	unsigned char *full, *part, *sparse, *drop, *flag;
	size_t res0, res1;
	char flags0[256], flags1[256];
	long off;
	int i;

	zdtm_init();

	full = mmap(NULL, FULL_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	part = mmap(NULL, PART_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sparse = mmap(NULL, SPARSE_SIZE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	drop = mmap(NULL, DROP_PAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	flag = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (full == MAP_FAILED || part == MAP_FAILED || sparse == MAP_FAILED ||
	    drop == MAP_FAILED || flag == MAP_FAILED)
		zdtm_die("mmap");

	zdtm_fill(full, FULL_PAGES * PG, 1);
	for (i = 0; i < PART_PAGES; i += 3)
		zdtm_fill(part + i * PG, PG, 2000 + i);
	for (i = 0; i < SPARSE_TOUCHED; i++)
		zdtm_fill(sparse + sparse_page(i) * PG, PG, 3000 + i);
	zdtm_fill(drop, DROP_PAGES * PG, 4);
	if (madvise(drop + 8 * PG, 8 * PG, MADV_DONTNEED))
		zdtm_die("madvise DONTNEED");
	zdtm_fill(flag, 4 * PG, 5);
	if (madvise(flag, 4 * PG, MADV_DONTDUMP) || madvise(flag, 4 * PG, MADV_WIPEONFORK))
		zdtm_die("madvise DONTDUMP/WIPEONFORK");
	if (vmflags(flag, flags0, sizeof(flags0)))
		zdtm_die("no VmFlags for %p", (void *)flag);
	res0 = resident(sparse, SPARSE_SIZE);

	zdtm_ready();
	zdtm_wait_go();

	/* Residency first: reading the zero pages below would populate them. */
	res1 = resident(sparse, SPARSE_SIZE);
	CHECK(res1 != (size_t)-1, "mincore on sparse region: %s", strerror(errno));
	CHECK(res1 <= res0 + 64, "sparse region: %zu pages resident, %zu before", res1, res0);

	if ((off = zdtm_check(full, FULL_PAGES * PG, 1)) >= 0)
		fail("full region differs at offset %ld", off);
	for (i = 0; i < PART_PAGES; i++) {
		if (i % 3 == 0)
			off = zdtm_check(part + i * PG, PG, 2000 + i);
		else
			off = zdtm_is_zero(part + i * PG, PG);
		if (off >= 0) {
			fail("partial region page %d differs at %ld (%s)", i, off,
			     i % 3 ? "want zeros" : "want pattern");
			break;
		}
	}
	for (i = 0; i < SPARSE_TOUCHED; i++)
		if ((off = zdtm_check(sparse + sparse_page(i) * PG, PG, 3000 + i)) >= 0)
			fail("sparse page %zu differs at %ld", sparse_page(i), off);
	for (size_t pg = 0; pg < SPARSE_SIZE / PG; pg += 97) {
		int touched = 0;
		for (i = 0; i < SPARSE_TOUCHED; i++)
			touched |= sparse_page(i) == pg;
		if (!touched && zdtm_is_zero(sparse + pg * PG, PG) >= 0) {
			fail("untouched sparse page %zu is not zero", pg);
			break;
		}
	}
	if ((off = zdtm_check(drop, 8 * PG, 4)) >= 0)
		fail("drop region head differs at %ld", off);
	if ((off = zdtm_is_zero(drop + 8 * PG, 8 * PG)) >= 0)
		fail("MADV_DONTNEED'd pages not zero at %ld", off);
	/* The pattern depends on the offset: compare the tail with a copy. */
	{
		unsigned char *tmp = malloc(DROP_PAGES * PG);
		zdtm_fill(tmp, DROP_PAGES * PG, 4);
		if (memcmp(tmp + 16 * PG, drop + 16 * PG, 16 * PG))
			fail("drop region tail differs");
		free(tmp);
	}
	if ((off = zdtm_check(flag, 4 * PG, 5)) >= 0)
		fail("DONTDUMP region differs at %ld", off);
	if (vmflags(flag, flags1, sizeof(flags1)))
		fail("no VmFlags for %p after restore", (void *)flag);
	else
		CHECK(strcmp(flags0, flags1) == 0, "VmFlags \"%s\", want \"%s\"", flags1, flags0);
	zdtm_finish();
}
