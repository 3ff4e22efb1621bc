/*
 * mem_prot_none: PROT_NONE regions.
 *   - 8 pages written with a pattern, then made PROT_NONE: after restore
 *     they fault, and after mprotect back to read-write the data is there;
 *   - a 64 MiB PROT_NONE reservation never touched (---p in maps, faults);
 *   - a guard page between two read-write pages (as thread stacks have).
 */
#include "zdtm_fault.h"
#include <sys/mman.h>

#define PG 4096UL

int main(void)
{
	unsigned char *hidden, *reserve, *guard;
	char perms[5];
	int code;

	zdtm_init();
	hidden = mmap(NULL, 8 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	reserve = mmap(NULL, 64 << 20, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	guard = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (hidden == MAP_FAILED || reserve == MAP_FAILED || guard == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(hidden, 8 * PG, 51);
	zdtm_fill(guard, PG, 52);
	zdtm_fill(guard + 2 * PG, PG, 53);
	if (mprotect(hidden, 8 * PG, PROT_NONE) || mprotect(guard + PG, PG, PROT_NONE))
		zdtm_die("mprotect");
	if (zdtm_probe(zdtm_op_read, hidden) != SEGV_ACCERR)
		zdtm_die("PROT_NONE region readable before dump");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(zdtm_maps_perms(hidden, perms) == 0 && strcmp(perms, "---p") == 0, "hidden region perms %s", perms);
	CHECK(zdtm_maps_perms(reserve + (32 << 20), perms) == 0 && strcmp(perms, "---p") == 0,
	      "reservation perms %s", perms);
	CHECK(zdtm_maps_perms(guard + PG, perms) == 0 && strcmp(perms, "---p") == 0, "guard page perms %s", perms);
	CHECK(zdtm_maps_perms(guard, perms) == 0 && strcmp(perms, "rw-p") == 0, "page below the guard perms %s", perms);
	code = zdtm_probe(zdtm_op_read, hidden + 3 * PG);
	CHECK(code == SEGV_ACCERR, "reading PROT_NONE region: si_code %d, want SEGV_ACCERR", code);
	code = zdtm_probe(zdtm_op_read, reserve + 12345);
	CHECK(code == SEGV_ACCERR, "reading reservation: si_code %d, want SEGV_ACCERR", code);
	code = zdtm_probe(zdtm_op_write, guard + PG + 8);
	CHECK(code == SEGV_ACCERR, "writing the guard page: si_code %d, want SEGV_ACCERR", code);

	if (mprotect(hidden, 8 * PG, PROT_READ | PROT_WRITE))
		fail("mprotect hidden back: %s", strerror(errno));
	else
		CHECK(zdtm_check(hidden, 8 * PG, 51) < 0, "data under PROT_NONE lost");
	CHECK(zdtm_check(guard, PG, 52) < 0 && zdtm_check(guard + 2 * PG, PG, 53) < 0, "pages around the guard differ");
	if (mprotect(reserve, 64 << 20, PROT_READ | PROT_WRITE))
		fail("mprotect reservation: %s", strerror(errno));
	else
		CHECK(zdtm_is_zero(reserve + (17 << 20), PG) < 0, "reservation not zero");
	zdtm_finish();
}
