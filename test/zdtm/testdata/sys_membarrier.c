/*
 * sys_membarrier: membarrier registrations. The process registers
 * PRIVATE_EXPEDITED and PRIVATE_EXPEDITED_SYNC_CORE (not GLOBAL_EXPEDITED,
 * not RSEQ). After restore MEMBARRIER_CMD_GET_REGISTRATIONS reports the same
 * set and both expedited barriers succeed (EPERM means the registration
 * was lost), from the main thread and from a second thread.
 */
#include "zdtm.h"
#include <linux/membarrier.h>
#include <pthread.h>

#ifndef MEMBARRIER_CMD_GET_REGISTRATIONS
#define MEMBARRIER_CMD_GET_REGISTRATIONS (1 << 9)
#endif

static int mb(int cmd) { return syscall(SYS_membarrier, cmd, 0, 0); }

static int thr_res = -1;

static void *thread_main(void *arg)
{
	(void)arg;
	zdtm_wait_go();
	thr_res = mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0 && mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) == 0 ? 0 : errno;
	return NULL;
}

int main(void)
{
	int q, regs0, regs1;
	pthread_t th;

	zdtm_init();
	q = mb(MEMBARRIER_CMD_QUERY);
	if (q < 0 || !(q & MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE))
		zdtm_die("membarrier: sync-core not supported here");
	if (mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != -1 || errno != EPERM)
		zdtm_die("expedited barrier before registration did not fail with EPERM");
	if (mb(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) || mb(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE))
		zdtm_die("membarrier register");
	regs0 = mb(MEMBARRIER_CMD_GET_REGISTRATIONS);
	if (regs0 < 0)
		zdtm_die("MEMBARRIER_CMD_GET_REGISTRATIONS");
	if (pthread_create(&th, NULL, thread_main, NULL))
		zdtm_die("pthread_create");

	zdtm_ready();
	zdtm_wait_go();

	regs1 = mb(MEMBARRIER_CMD_GET_REGISTRATIONS);
	CHECK(regs1 == regs0, "registrations %#x, want %#x", regs1, regs0);
	CHECK(mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0, "private expedited barrier: %s", strerror(errno));
	CHECK(mb(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) == 0, "sync-core barrier: %s", strerror(errno));
	pthread_join(th, NULL);
	CHECK(thr_res == 0, "barriers from the second thread: %s", strerror(thr_res));
	zdtm_finish();
}
