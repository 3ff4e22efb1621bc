/*
 * mem_shared_anon: MAP_SHARED|MAP_ANONYMOUS memory in one process, plus a
 * second mapping of the same shmem object made with mremap(old_size = 0).
 * After restore the content is kept, the mappings are still shared ("s" in
 * maps) and still aliases of each other.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096UL
#define NPAGES 16

static char maps_perms(void *addr)
{
	static char buf[1 << 20];
	char key[32], *p;

	if (zdtm_read_file("/proc/self/maps", buf, sizeof(buf)) < 0)
		return 0;
	snprintf(key, sizeof(key), "%lx-", (unsigned long)addr);
	for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (strncmp(p, key, strlen(key)) == 0) {
			p = strchr(p, ' ');
			return p ? p[4] : 0;
		}
	return 0;
}

int main(void)
{
	unsigned char *a, *b, *small;
	long off;

	zdtm_init();
	a = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	small = mmap(NULL, PG, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (a == MAP_FAILED || small == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(a, NPAGES * PG, 21);
	b = mremap(a, 0, NPAGES * PG, MREMAP_MAYMOVE);
	if (b == MAP_FAILED)
		zdtm_die("mremap alias");
	if (b[5 * PG] != a[5 * PG])
		zdtm_die("alias does not alias");
	zdtm_fill(b + 8 * PG, PG, 22); /* through the alias */

	zdtm_ready();
	zdtm_wait_go();

	if ((off = zdtm_check(a, 8 * PG, 21)) >= 0)
		fail("shared region differs at %ld", off);
	if ((off = zdtm_check(a + 8 * PG, PG, 22)) >= 0)
		fail("page written through the alias differs at %ld", off);
	CHECK(memcmp(a, b, NPAGES * PG) == 0, "alias content differs");
	CHECK(zdtm_is_zero(small, PG) < 0, "untouched shared page not zero");
	CHECK(maps_perms(a) == 's', "region not shared in maps (flag '%c')", maps_perms(a));
	CHECK(maps_perms(b) == 's', "alias not shared in maps (flag '%c')", maps_perms(b));
	a[3 * PG + 17] ^= 0xff;
	CHECK(b[3 * PG + 17] == a[3 * PG + 17], "write after restore not seen through the alias");
	zdtm_fill(b + 12 * PG, PG, 23);
	CHECK(zdtm_check(a + 12 * PG, PG, 23) < 0, "alias write after restore not seen in the region");
	zdtm_finish();
}
