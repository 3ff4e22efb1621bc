/*
 * mem_file_shared: a MAP_SHARED file mapping. Writes made through it before
 * the checkpoint are in the file, and after restore the mapping still shares
 * the page cache both ways (mapping -> pread, pwrite -> mapping).
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096UL
#define NPAGES 16

int main(void)
{
	static unsigned char ref[NPAGES * PG], page[PG];
	unsigned char *m;
	int fd, i;

	zdtm_init();
	zdtm_fill(ref, sizeof(ref), 11);
	fd = open("shared.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_die("open shared.bin");
	zdtm_write_all(fd, ref, sizeof(ref));
	m = mmap(NULL, NPAGES * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		zdtm_die("mmap");
	/* keep the fd open too: mapping and fd must point at the same file */
	if (dup2(fd, 30) != 30)
		zdtm_die("dup2");
	close(fd);
	fd = 30;
	for (i = 0; i < NPAGES; i += 4) {
		zdtm_fill(m + i * PG, PG, 200 + i);
		zdtm_fill(ref + i * PG, PG, 200 + i);
	}

	zdtm_ready();
	zdtm_wait_go();

	CHECK(memcmp(m, ref, sizeof(ref)) == 0, "mapping content differs");
	for (i = 0; i < NPAGES; i++)
		if (pread(fd, page, PG, i * PG) != (ssize_t)PG || memcmp(page, ref + i * PG, PG)) {
			fail("file page %d differs from the mapping", i);
			break;
		}
	zdtm_fill(m + PG, PG, 777);
	if (pread(fd, page, PG, PG) != (ssize_t)PG || zdtm_check(page, PG, 777) >= 0)
		fail("write through the mapping after restore not seen by pread");
	zdtm_fill(page, PG, 888);
	if (pwrite(fd, page, PG, 2 * PG) != (ssize_t)PG)
		fail("pwrite: %s", strerror(errno));
	CHECK(zdtm_check(m + 2 * PG, PG, 888) < 0, "pwrite after restore not seen through the mapping");
	CHECK(msync(m, NPAGES * PG, MS_SYNC) == 0, "msync: %s", strerror(errno));
	zdtm_finish();
}
