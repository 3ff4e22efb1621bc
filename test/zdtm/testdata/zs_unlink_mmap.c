/*
 * zs_unlink_mmap: mappings of files whose names were removed.
 *   A "um.a" (3 pages): fd 30 kept open O_RDWR; page 0 mapped MAP_PRIVATE
 *     PROT_READ, page 1 MAP_PRIVATE PROT_READ|PROT_WRITE (never written:
 *     still the file's page cache), then the name removed;
 *   B "um.b" (2 pages): MAP_SHARED read-write, written "shared-b" through
 *     the mapping, fd closed, name removed: only the mapping holds it;
 *   C "um.c" (1 page): mapped MAP_SHARED twice at two addresses, fd
 *     closed, name removed.
 * After restore: pwrite through fd 30 to pages 0 and 1 shows through both
 * private mappings (one inode, as the maps inode of the mappings and
 * fstat of fd 30 agree), fd 30 has no links; B keeps its data; C's two
 * mappings still alias (a write through one is read through the other);
 * the three files are distinct inodes, maps names them "(deleted)", and no
 * name is back in the work dir.
 * Modelled on zdtm's unlink_mmap00, unlink_mmap01 and unlink_mmap02.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096

static int mkfile(const char *name, size_t len, uint64_t seed)
{
	char buf[3 * PG];
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_die("create %s", name);
	zdtm_fill(buf, len, seed);
	zdtm_write_all(fd, buf, len);
	return fd;
}

/* maps_ino returns the inode field and whether "(deleted)" is on the line of addr. */
static unsigned long maps_ino(void *addr, int *deleted)
{
	static char buf[65536];
	char *p;
	unsigned long a = (unsigned long)addr;

	*deleted = 0;
	if (zdtm_read_file("/proc/self/maps", buf, sizeof(buf)) < 0)
		return 0;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		unsigned long lo, hi, off, ino;
		char perm[8], dev[16];
		if (sscanf(p, "%lx-%lx %7s %lx %15s %lu", &lo, &hi, perm, &off, dev, &ino) != 6)
			continue;
		if (a >= lo && a < hi) {
			char *e = strchr(p, '\n');
			char save = 0;
			if (e) {
				save = *e;
				*e = 0;
			}
			*deleted = strstr(p, "(deleted)") != NULL;
			if (e)
				*e = save;
			return ino;
		}
	}
	return 0;
}

int main(void)
{
	char *a0, *a1, *b, *c1, *c2;
	struct stat st;
	unsigned long ia0, ia1, ib, ic1, ic2;
	int fd, del, i;
	const char *names[] = { "um.a", "um.b", "um.c" };

	zdtm_init();
	fd = mkfile("um.a", 3 * PG, 1);
	if (dup2(fd, 30) != 30)
		zdtm_die("fd 30");
	close(fd);
	a0 = mmap(NULL, PG, PROT_READ, MAP_PRIVATE, 30, 0);
	a1 = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, 30, PG);
	fd = mkfile("um.b", 2 * PG, 2);
	b = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	fd = mkfile("um.c", PG, 3);
	c1 = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	c2 = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	close(fd);
	if (a0 == MAP_FAILED || a1 == MAP_FAILED || b == MAP_FAILED || c1 == MAP_FAILED || c2 == MAP_FAILED)
		zdtm_die("mmap");
	memcpy(b + PG + 100, "shared-b", 8);
	for (i = 0; i < 3; i++)
		if (unlink(names[i]))
			zdtm_die("unlink %s", names[i]);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fstat(30, &st) == 0 && st.st_nlink == 0 && st.st_size == 3 * PG,
	      "fd 30: nlink %lu size %lld, want 0 and %d", (unsigned long)st.st_nlink, (long long)st.st_size, 3 * PG);
	CHECK(zdtm_check(a0, PG, 1) == -1, "A page 0 lost its file content");
	CHECK(zdtm_check(a1, PG, 1 + PG) == -1, "A page 1 lost its file content");
	ia0 = maps_ino(a0, &del);
	CHECK(del, "A page 0 mapping is not \"(deleted)\" in maps");
	ia1 = maps_ino(a1, &del);
	CHECK(ia0 == st.st_ino && ia1 == st.st_ino, "A mappings have inodes %lu %lu, fd 30 has %lu",
	      ia0, ia1, (unsigned long)st.st_ino);
	if (pwrite(30, "AAAA", 4, 8) != 4 || pwrite(30, "BBBB", 4, PG + 16) != 4)
		fail("pwrite fd 30: %s", strerror(errno));
	CHECK(memcmp(a0 + 8, "AAAA", 4) == 0, "pwrite to page 0 through fd 30 not seen in the private mapping");
	CHECK(memcmp(a1 + 16, "BBBB", 4) == 0, "pwrite to page 1 through fd 30 not seen in the private mapping");

	CHECK(zdtm_check(b, PG, 2) == -1, "B page 0 lost its content");
	CHECK(memcmp(b + PG + 100, "shared-b", 8) == 0, "B lost what was written through the mapping");
	ib = maps_ino(b, &del);
	CHECK(del, "B mapping is not \"(deleted)\" in maps");

	CHECK(zdtm_check(c1 + 64, PG - 64, 3 + 64) == -1, "C lost its content");
	memcpy(c1 + 10, "via-c1", 6);
	CHECK(memcmp(c2 + 10, "via-c1", 6) == 0, "C's two shared mappings no longer alias");
	ic1 = maps_ino(c1, &del);
	CHECK(del, "C mapping is not \"(deleted)\" in maps");
	ic2 = maps_ino(c2, &del);
	CHECK(ic1 == ic2, "C mappings have inodes %lu and %lu", ic1, ic2);
	CHECK(ib != ia0 && ib != ic1 && ia0 != ic1, "inodes A %lu B %lu C %lu not distinct", ia0, ib, ic1);
	for (i = 0; i < 3; i++)
		CHECK(access(names[i], F_OK) != 0, "%s is back in the work dir", names[i]);
	zdtm_finish();
}
