/*
 * mem_file_offset: a file opened read-write, its descriptor kept open at
 * one file position, and a MAP_PRIVATE mapping of another part of the file
 * (a non-zero offset), some of its pages written (copied-on-write), some
 * only read. After restore the mapping shows file pages OFF.. (the clean
 * ones) and the written content (the dirty ones); the descriptor's
 * position and the file on disk are unchanged. A second mapping runs past
 * the end of the file (whose size is not page-aligned): its partial page
 * reads zeros past EOF (and keeps a private write there), the page wholly
 * past EOF still raises SIGBUS.
 */
#include "zdtm.h"
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>

#define TAIL 100 /* bytes of the file past its last full page */

static sigjmp_buf bus_jmp;

static void on_bus(int sig)
{
	(void)sig;
	siglongjmp(bus_jmp, 1);
}

/* faults reports whether reading p raises SIGBUS. */
static int faults(volatile unsigned char *p)
{
	struct sigaction sa = { .sa_handler = on_bus }, old;
	int hit = 0;

	sigaction(SIGBUS, &sa, &old);
	if (sigsetjmp(bus_jmp, 1) == 0)
		(void)*p;
	else
		hit = 1;
	sigaction(SIGBUS, &old, NULL);
	return hit;
}

#define PG 4096UL
#define FPAGES 16
#define OFF 5   /* first file page of the mapping */
#define MPAGES 6

int main(void)
{
	static unsigned char file[FPAGES * PG + TAIL], page[PG];
	unsigned char *m, *t;
	volatile unsigned char sink;
	int fd, i;
	off_t pos;

	zdtm_init();
	zdtm_fill(file, sizeof(file), 71);
	fd = open("offset.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_die("open offset.bin");
	zdtm_write_all(fd, file, sizeof(file));
	if (lseek(fd, 2 * PG + 123, SEEK_SET) < 0)
		zdtm_die("lseek");
	m = mmap(NULL, MPAGES * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, OFF * PG);
	/* t: file pages FPAGES-1 (full), FPAGES (TAIL bytes), FPAGES+1 (past EOF). */
	t = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, (FPAGES - 1) * PG);
	if (m == MAP_FAILED || t == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(t + PG + 200, 50, 505); /* private write past EOF in the partial page */
	if (!faults(t + 2 * PG))
		zdtm_die("no SIGBUS past EOF before the dump");
	zdtm_fill(m + 1 * PG, PG, 501); /* dirty */
	zdtm_fill(m + 4 * PG + 100, 200, 504); /* partly dirty */
	sink = m[2 * PG]; /* clean, populated */
	(void)sink;

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < MPAGES; i++) {
		if (i == 1) {
			CHECK(zdtm_check(m + PG, PG, 501) < 0, "dirty page 1 differs");
		} else if (i == 4) {
			memcpy(page, file + (OFF + 4) * PG, PG);
			zdtm_fill(page + 100, 200, 504);
			CHECK(memcmp(m + 4 * PG, page, PG) == 0, "partly dirty page 4 differs");
		} else {
			CHECK(memcmp(m + i * PG, file + (OFF + i) * PG, PG) == 0,
			      "clean page %d differs from file page %d", i, OFF + i);
		}
	}
	CHECK(memcmp(t, file + (FPAGES - 1) * PG, PG) == 0, "tail mapping: last full page differs");
	memset(page, 0, PG);
	memcpy(page, file + FPAGES * PG, TAIL);
	zdtm_fill(page + 200, 50, 505);
	CHECK(memcmp(t + PG, page, PG) == 0, "tail mapping: partial page differs (file tail, zeros, private write)");
	CHECK(faults(t + 2 * PG), "tail mapping: no SIGBUS past EOF after restore");
	pos = lseek(fd, 0, SEEK_CUR);
	CHECK(pos == (off_t)(2 * PG + 123), "fd position %lld, want %lu", (long long)pos, 2 * PG + 123);
	for (i = 0; i < FPAGES; i++)
		if (pread(fd, page, PG, i * PG) != (ssize_t)PG || memcmp(page, file + i * PG, PG)) {
			fail("file page %d changed", i);
			break;
		}
	CHECK(lseek(fd, 0, SEEK_END) == (off_t)sizeof(file), "file size changed");
	CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == O_RDWR, "fd not O_RDWR");
	zdtm_finish();
}
