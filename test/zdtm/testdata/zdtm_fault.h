/*
 * zdtm_fault.h - probe whether an access faults, with sigsetjmp.
 * Used by the memory-protection tests; one probe at a time, main thread.
 */
#ifndef ZDTM_FAULT_H
#define ZDTM_FAULT_H
#include "zdtm.h"
#include <setjmp.h>
#include <signal.h>

static sigjmp_buf zdtm_fault_jb;
static volatile int zdtm_fault_code;

static void zdtm_fault_handler(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	zdtm_fault_code = si->si_code;
	siglongjmp(zdtm_fault_jb, 1);
}

/* zdtm_probe returns 0 if op(p) ran, or the SIGSEGV si_code if it faulted. */
static inline int zdtm_probe(void (*op)(volatile unsigned char *), volatile unsigned char *p)
{
	struct sigaction sa, old;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = zdtm_fault_handler;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER;
	sigaction(SIGSEGV, &sa, &old);
	zdtm_fault_code = 0;
	if (sigsetjmp(zdtm_fault_jb, 1) == 0)
		op(p);
	sigaction(SIGSEGV, &old, NULL);
	return zdtm_fault_code;
}

static inline void zdtm_op_read(volatile unsigned char *p) { (void)*p; }
static inline void zdtm_op_write(volatile unsigned char *p) { *p = *p; }

/* zdtm_maps_perms copies the "rwxp" field of the VMA containing addr. */
static inline int zdtm_maps_perms(const void *addr, char out[5])
{
	static char buf[1 << 20];
	unsigned long a = (unsigned long)addr, lo, hi;
	char *p;

	if (zdtm_read_file("/proc/self/maps", buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		char perms[5];
		if (sscanf(p, "%lx-%lx %4s", &lo, &hi, perms) == 3 && a >= lo && a < hi) {
			memcpy(out, perms, 5);
			return 0;
		}
	}
	return -1;
}
#endif
