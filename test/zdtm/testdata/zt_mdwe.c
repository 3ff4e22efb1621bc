/*
 * zt_mdwe: memory-deny-write-execute (prctl PR_SET_MDWE
 * PR_MDWE_REFUSE_EXEC_GAIN), a per-mm flag that can never be cleared.
 * Before setting it the program maps a page with a small function and
 * makes it read+exec. After restore PR_GET_MDWE still says
 * REFUSE_EXEC_GAIN, and the kernel enforces it: mprotect of a read-write
 * page to read+exec fails with EACCES, an mmap PROT_WRITE|PROT_EXEC fails
 * with EACCES; the executable page made before still runs (returns 42).
 * Modelled on zdtm's prctl-based tests (thp_disable), for MDWE.
 */
#include "zdtm.h"
#include <sys/mman.h>
#include <sys/prctl.h>

#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_GET_MDWE 66
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif

/* mov $42, %eax; ret */
static const unsigned char code[] = { 0xb8, 0x2a, 0x00, 0x00, 0x00, 0xc3 };

int main(void)
{
	unsigned char *x, *rw, *wx;
	int (*fn)(void);
	int r;

	zdtm_init();
	x = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	rw = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (x == MAP_FAILED || rw == MAP_FAILED)
		zdtm_die("mmap");
	memcpy(x, code, sizeof(code));
	if (mprotect(x, 4096, PROT_READ | PROT_EXEC))
		zdtm_die("mprotect rx");
	rw[0] = 1;
	if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0))
		zdtm_die("PR_SET_MDWE");
	if (mprotect(rw, 4096, PROT_READ | PROT_EXEC) == 0 || errno != EACCES)
		zdtm_die("MDWE not in force before the dump");

	zdtm_ready();
	zdtm_wait_go();

	r = prctl(PR_GET_MDWE, 0, 0, 0, 0);
	CHECK(r >= 0 && (r & PR_MDWE_REFUSE_EXEC_GAIN), "PR_GET_MDWE = %d (%s), want REFUSE_EXEC_GAIN", r,
	      strerror(errno));
	errno = 0;
	CHECK(mprotect(rw, 4096, PROT_READ | PROT_EXEC) == -1 && errno == EACCES,
	      "mprotect rw->rx: %s, want EACCES (MDWE lost)", strerror(errno));
	wx = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(wx == MAP_FAILED && errno == EACCES, "mmap W+X: %s, want EACCES", wx == MAP_FAILED ? strerror(errno) : "succeeded");
	fn = (int (*)(void))x;
	CHECK(fn() == 42, "code page does not run");
	zdtm_finish();
}
