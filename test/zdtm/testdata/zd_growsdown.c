/*
 * zd_growsdown: MAP_GROWSDOWN regions that are not the main stack.
 *   G1: 4 pages mapped MAP_GROWSDOWN at the top of a 2048-page hole (more
 *       than the stack guard gap), written, then grown by one page by a
 *       write just below its start: 5 pages, each with its own pattern;
 *   G2: 3 pages MAP_GROWSDOWN split in three VMAs by making the middle
 *       page read-only (each page has a letter).
 * After restore: G1 starts where it had grown to, has the "gd" VmFlag,
 * keeps its data, and still grows: writes 1 and 8 pages below its start
 * work (no SIGSEGV) and the region's start moves down; G2 keeps its three
 * letters, the middle page is still read-only, and its lowest VMA is
 * still grow-down.
 * Modelled on zdtm's grow_map, grow_map02 and grow_map03.
 */
#include "zdtm.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#define PG 4096UL

static sigjmp_buf jb;
static volatile int segv;

static void on_segv(int sig)
{
	(void)sig;
	segv++;
	siglongjmp(jb, 1);
}

static int vmflags(unsigned long addr, char *out, size_t size)
{
	static char buf[1 << 20];
	char key[32], *p;

	if (zdtm_read_file("/proc/self/smaps", buf, sizeof(buf)) < 0)
		return -1;
	snprintf(key, sizeof(key), "%lx-", addr);
	for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, strlen(key)) != 0)
			continue;
		p = strstr(p, "VmFlags:");
		if (!p)
			return -1;
		snprintf(out, size, "%.*s", (int)strcspn(p + 8, "\n"), p + 8);
		return 0;
	}
	return -1;
}

/* vma_start returns the start of the mapping containing addr, or 0. */
static unsigned long vma_start(unsigned long addr)
{
	static char buf[1 << 20];
	unsigned long s, e;
	char *p;

	if (zdtm_read_file("/proc/self/maps", buf, sizeof(buf)) < 0)
		return 0;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		if (sscanf(p, "%lx-%lx", &s, &e) == 2 && addr >= s && addr < e)
			return s;
	return 0;
}

static int try_write(volatile char *p, char v)
{
	if (sigsetjmp(jb, 1))
		return -1;
	*p = v;
	return *p == v ? 0 : -1;
}

int main(void)
{
	char *hole, *g1, *g2, fl[256];
	unsigned long g1start;
	struct sigaction sa;
	int i, prot_ok;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);

	hole = mmap(NULL, 2100 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (hole == MAP_FAILED)
		zdtm_die("mmap hole");
	munmap(hole, 2100 * PG);
	g1 = mmap(hole + 2096 * PG, 4 * PG, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_GROWSDOWN, -1, 0);
	if (g1 == MAP_FAILED)
		zdtm_die("mmap G1");
	for (i = 0; i < 4; i++)
		zdtm_fill(g1 + i * PG, PG, 100 + i);
	if (try_write(g1 - PG + 100, 1))
		zdtm_die("G1 does not grow before the dump");
	zdtm_fill(g1 - PG, PG, 99);
	g1start = vma_start((unsigned long)g1);
	if (g1start != (unsigned long)(g1 - PG))
		zdtm_die("G1 starts at %lx, want %lx", g1start, (unsigned long)(g1 - PG));

	g2 = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
	if (g2 == MAP_FAILED)
		zdtm_die("mmap G2");
	g2[0] = 'x';
	g2[PG] = 'y';
	g2[2 * PG] = 'z';
	if (mprotect(g2 + PG, PG, PROT_READ))
		zdtm_die("mprotect G2");
	if (vmflags((unsigned long)g2, fl, sizeof(fl)) || !strstr(fl, " gd"))
		zdtm_die("G2 is not gd before the dump: %s", fl);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(vma_start((unsigned long)g1) == g1start, "G1 starts at %lx, want %lx", vma_start((unsigned long)g1),
	      g1start);
	CHECK(vmflags(g1start, fl, sizeof(fl)) == 0 && strstr(fl, " gd"), "G1 VmFlags \"%s\": no gd", fl);
	CHECK(zdtm_check(g1 - PG, PG, 99) < 0, "G1: the page it grew by lost its data");
	for (i = 0; i < 4; i++)
		CHECK(zdtm_check(g1 + i * PG, PG, 100 + i) < 0, "G1 page %d: data differs", i);
	CHECK(try_write(g1 - 2 * PG + 8, 2) == 0, "G1 does not grow by one more page (SIGSEGV)");
	CHECK(try_write(g1 - 9 * PG + 8, 3) == 0, "G1 does not grow 8 pages further (SIGSEGV)");
	CHECK(vma_start((unsigned long)g1) <= (unsigned long)(g1 - 9 * PG), "G1 start %lx did not move down",
	      vma_start((unsigned long)g1));

	CHECK(g2[0] == 'x' && g2[PG] == 'y' && g2[2 * PG] == 'z', "G2 holds %c %c %c, want x y z", g2[0], g2[PG],
	      g2[2 * PG]);
	segv = 0;
	prot_ok = try_write(g2 + PG, 'w') != 0;
	CHECK(prot_ok && g2[PG] == 'y', "G2's middle page is writable");
	CHECK(try_write(g2 + 2 * PG + 1, 'q') == 0 && try_write(g2 + 1, 'q') == 0, "G2 outer pages not writable");
	CHECK(vmflags((unsigned long)g2, fl, sizeof(fl)) == 0 && strstr(fl, " gd"), "G2 VmFlags \"%s\": no gd", fl);
	zdtm_finish();
}
