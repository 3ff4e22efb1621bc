/*
 * zt_prctl_thread: prctl settings that belong to one thread, not to the
 * process, each set in one thread only:
 *   thread K: PR_SET_KEEPCAPS 1 (SECBIT_KEEP_CAPS in its securebits);
 *   thread F: securebits SECBIT_NO_SETUID_FIXUP|SECBIT_NO_CAP_AMBIENT_RAISE;
 *   thread N: PR_SET_NO_NEW_PRIVS 1;
 *   thread T: PR_SET_TSC PR_TSC_SIGSEGV (it waits in a pipe read and
 *             never calls into the vDSO; whether rdtsc really faults
 *             depends on the hypervisor, so only the setting is checked);
 *   thread S: timer slack 123456 ns; the main thread's is 777777 ns.
 * The main thread keeps keepcaps 0, securebits 0, no_new_privs 0, TSC
 * enabled. After restore every thread reads back its own value and the
 * main thread its own.
 * Modelled on zdtm's thread_different_uid_gid and different_creds (per-
 * thread credentials), for the per-thread prctl flags.
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <linux/securebits.h>

enum { K, F, N, T, S, NT };
static pthread_t th[NT];
static volatile int up[NT];
static int wake[2], done[2];
static char res[NT][160];
static volatile int ngo;
static void state(char *out, size_t sz)
{
	int tsc = -1;
	prctl(PR_GET_TSC, &tsc);
	snprintf(out, sz, "keepcaps %d securebits %#x nnp %d tsc %d slack %d",
		 prctl(PR_GET_KEEPCAPS), prctl(PR_GET_SECUREBITS), prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0), tsc,
		 prctl(PR_GET_TIMERSLACK));
}

static void *body(void *a)
{
	long i = (long)a;
	char c;
	int r = 0;

	switch (i) {
	case K: r = prctl(PR_SET_KEEPCAPS, 1); break;
	case F: r = prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP | SECBIT_NO_CAP_AMBIENT_RAISE); break;
	case N: r = prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); break;
	case T: r = prctl(PR_SET_TSC, PR_TSC_SIGSEGV); break;
	case S: r = prctl(PR_SET_TIMERSLACK, 123456); break;
	}
	if (r)
		zdtm_die("prctl in thread %ld", i);
	up[i] = 1;
	/* No vDSO from here on (T's rdtsc would fault): block in read. */
	while (syscall(SYS_read, wake[0], &c, 1) != 1)
		;
	state(res[i], sizeof(res[i]));
	if (i == T)
		prctl(PR_SET_TSC, PR_TSC_ENABLE);
	syscall(SYS_write, done[1], "d", 1);
	return NULL;
}

int main(void)
{
	static const char *want[NT] = {
		"keepcaps 1 securebits 0x10 nnp 0 tsc 1 slack 777777",
		"keepcaps 0 securebits 0x44 nnp 0 tsc 1 slack 777777",
		"keepcaps 0 securebits 0 nnp 1 tsc 1 slack 777777",
		"keepcaps 0 securebits 0 nnp 0 tsc 2 slack 777777",
		"keepcaps 0 securebits 0 nnp 0 tsc 1 slack 123456",
	};
	static const char *names = "KFNTS";
	char mine[160], c;
	long i;
	int all;

	zdtm_init();
	if (prctl(PR_SET_TIMERSLACK, 777777))
		zdtm_die("timerslack");
	if (pipe(wake) || pipe(done))
		zdtm_die("pipe");
	for (i = 0; i < NT; i++)
		if (pthread_create(&th[i], NULL, body, (void *)i))
			zdtm_die("pthread_create");
	do {
		for (all = 1, i = 0; i < NT; i++)
			all &= up[i];
		zdtm_sleep_ms(2);
	} while (!all);

	zdtm_ready();
	zdtm_wait_go();

	state(mine, sizeof(mine));
	CHECK(strcmp(mine, "keepcaps 0 securebits 0 nnp 0 tsc 1 slack 777777") == 0, "main thread: %s", mine);
	for (i = 0; i < NT; i++)
		if (write(wake[1], "g", 1) != 1)
			fail("write wake");
	for (i = 0; i < NT; i++)
		if (read(done[0], &c, 1) != 1)
			fail("read done");
	for (i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		CHECK(strcmp(res[i], want[i]) == 0, "thread %c: %s, want %s", names[i], res[i], want[i]);
	}
	zdtm_finish();
}
