/*
 * mem_heap: the brk heap and malloc state. Many malloc'd blocks of varied
 * sizes (small ones on the brk heap, big ones mmap'd by malloc), a region
 * grown by hand with sbrk. After restore the blocks keep their content,
 * the program break is where it was, malloc/free keep working, and the
 * break can still grow and shrink.
 */
#include "zdtm.h"

#define NBLK 2000
#define NBIG 6

static unsigned char *blk[NBLK];
static size_t blen[NBLK];
static unsigned char *big[NBIG];

int main(void)
{
	unsigned char *raw, *brk0, *brk1, *p;
	int i;

	zdtm_init();
	for (i = 0; i < NBLK; i++) {
		blen[i] = 16 + zdtm_mix(i) % 4000;
		blk[i] = malloc(blen[i]);
		if (!blk[i])
			zdtm_die("malloc");
		zdtm_fill(blk[i], blen[i], 5000 + i);
	}
	for (i = 0; i < NBLK; i += 4) { /* leave holes in the heap */
		free(blk[i]);
		blk[i] = NULL;
	}
	for (i = 0; i < NBIG; i++) {
		big[i] = malloc((1 + i) << 20);
		if (!big[i])
			zdtm_die("malloc big");
		zdtm_fill(big[i], (1 + i) << 20, 6000 + i);
	}
	raw = sbrk(64 * 1024);
	if (raw == (void *)-1)
		zdtm_die("sbrk");
	zdtm_fill(raw, 64 * 1024, 7000);
	brk0 = sbrk(0);

	zdtm_ready();
	zdtm_wait_go();

	brk1 = sbrk(0);
	CHECK(brk1 == brk0, "program break %p, want %p", (void *)brk1, (void *)brk0);
	CHECK(zdtm_check(raw, 64 * 1024, 7000) < 0, "sbrk region differs");
	for (i = 0; i < NBLK; i++)
		if (blk[i] && zdtm_check(blk[i], blen[i], 5000 + i) >= 0) {
			fail("malloc block %d (%zu bytes at %p) differs", i, blen[i], (void *)blk[i]);
			break;
		}
	for (i = 0; i < NBIG; i++)
		if (zdtm_check(big[i], (1 + i) << 20, 6000 + i) >= 0)
			fail("big block %d differs", i);

	/* The allocator and the break keep working. */
	for (i = 1; i < NBLK; i += 2) {
		free(blk[i]);
		blk[i] = NULL;
	}
	for (i = 0; i < NBIG; i++)
		free(big[i]);
	for (i = 0; i < 500; i++) {
		p = malloc(100 + i * 7);
		if (!p) {
			fail("malloc after restore failed");
			break;
		}
		memset(p, i, 100 + i * 7);
	}
	brk0 = sbrk(0);
	p = sbrk(1 << 20);
	if (p == (void *)-1)
		fail("sbrk(+1MiB) after restore: %s", strerror(errno));
	else {
		CHECK(p == brk0, "sbrk returned %p, want old break %p", (void *)p, (void *)brk0);
		memset(p, 0xab, 1 << 20);
		CHECK(sbrk(-(1 << 20)) != (void *)-1, "sbrk(-1MiB): %s", strerror(errno));
		CHECK(sbrk(0) == brk0, "break not back after shrinking");
	}
	zdtm_finish();
}
