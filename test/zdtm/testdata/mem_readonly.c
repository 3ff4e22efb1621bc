/*
 * mem_readonly: regions whose protection was changed after they were
 * written. A read-only region keeps its data and still faults on write
 * (SEGV_ACCERR); a region holding a small function, made read+exec,
 * can still be called; and a read-write page inside a read-only run
 * (three VMAs from one mapping) keeps its own protection.
 */
#include "zdtm_fault.h"
#include <sys/mman.h>

#define PG 4096UL

/* mov $0x2a, %eax ; ret */
static const unsigned char code42[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3 };

int main(void)
{
	unsigned char *ro, *x, *mix;
	char perms[5];
	int code, r;

	zdtm_init();
	ro = mmap(NULL, 16 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	x = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	mix = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (ro == MAP_FAILED || x == MAP_FAILED || mix == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(ro, 16 * PG, 61);
	memcpy(x, code42, sizeof(code42));
	zdtm_fill(mix, 3 * PG, 62);
	if (mprotect(ro, 16 * PG, PROT_READ) || mprotect(x, PG, PROT_READ | PROT_EXEC) ||
	    mprotect(mix, PG, PROT_READ) || mprotect(mix + 2 * PG, PG, PROT_READ))
		zdtm_die("mprotect");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(zdtm_check(ro, 16 * PG, 61) < 0, "read-only region differs");
	CHECK(zdtm_maps_perms(ro, perms) == 0 && strcmp(perms, "r--p") == 0, "read-only region perms %s", perms);
	code = zdtm_probe(zdtm_op_write, ro + 5 * PG);
	CHECK(code == SEGV_ACCERR, "writing read-only region: si_code %d, want SEGV_ACCERR", code);
	CHECK(zdtm_maps_perms(x, perms) == 0 && strcmp(perms, "r-xp") == 0, "code page perms %s", perms);
	r = ((int (*)(void))(void *)x)();
	CHECK(r == 42, "code page returned %d", r);
	CHECK(zdtm_check(mix, 3 * PG, 62) < 0, "mixed region differs");
	CHECK(zdtm_maps_perms(mix + PG, perms) == 0 && strcmp(perms, "rw-p") == 0, "middle page perms %s", perms);
	CHECK(zdtm_maps_perms(mix + 2 * PG, perms) == 0 && strcmp(perms, "r--p") == 0, "last page perms %s", perms);
	code = zdtm_probe(zdtm_op_write, mix + PG + 1);
	CHECK(code == 0, "writing the read-write middle page faulted (si_code %d)", code);
	code = zdtm_probe(zdtm_op_write, mix + 2 * PG + 1);
	CHECK(code == SEGV_ACCERR, "writing the read-only last page: si_code %d", code);
	zdtm_finish();
}
