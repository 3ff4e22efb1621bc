/*
 * zt_rtsig_flood: long queues of real-time signals with payloads, process-
 * wide and per thread. SIGRTMIN+1..SIGRTMIN+4 are blocked everywhere. The
 * process queues 400 signals to itself with sigqueue, cycling through the
 * four signals, value i for the i-th; and 100 more with rt_tgsigqueueinfo
 * to thread T (SIGRTMIN+2 and SIGRTMIN+5 alternately, value 1000+i,
 * si_code SI_QUEUE). After restore the main thread's sigtimedwait drains the process queue in the
 * kernel's order (lowest signal first, each signal's queue in FIFO order)
 * with si_code SI_QUEUE, our pid and the values, and nothing of T's; T
 * then drains its own 100 the same way: every one exactly once, in order.
 * Modelled on zdtm's sigpending (queued rt signals, private and shared).
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

#define NPROC 400
#define NTHR 100

static pid_t ttid;
static volatile int tgo, tdone;
static int terrs;
static char terr[256];

static void drain(int base, int n, int *sigs, int nsig, int per, const char *who, char *err, size_t errsz, int *errs)
{
	struct timespec ts = { 0, 100000000 };
	sigset_t set;
	siginfo_t si;
	int k, j, got;

	sigemptyset(&set);
	for (k = 0; k < nsig; k++)
		sigaddset(&set, sigs[k]);
	for (k = 0; k < nsig; k++) {
		for (j = 0; j < per; j++) {
			int want = base + j * nsig + k;
			memset(&si, 0, sizeof(si));
			got = sigtimedwait(&set, &si, &ts);
			if (got != sigs[k] || si.si_code != SI_QUEUE || si.si_pid != zdtm_pid0 ||
			    si.si_value.sival_int != want) {
				if ((*errs)++ == 0)
					snprintf(err, errsz,
						 "%s: %d-th of signal %d: got sig %d code %d pid %d value %d, want value %d",
						 who, j, sigs[k], got, si.si_code, si.si_pid, si.si_value.sival_int, want);
				return;
			}
		}
	}
	(void)n;
	if (sigtimedwait(&set, &si, &ts) > 0 && (*errs)++ == 0)
		snprintf(err, errsz, "%s: extra signal %d value %d", who, si.si_signo, si.si_value.sival_int);
}

static void *thr(void *a)
{
	int sigs[2] = { SIGRTMIN + 2, SIGRTMIN + 5 };
	(void)a;
	ttid = zdtm_gettid();
	while (!tgo)
		zdtm_sleep_ms(2);
	drain(1000, NTHR, sigs, 2, NTHR / 2, "thread", terr, sizeof(terr), &terrs);
	tdone = 1;
	return NULL;
}

int main(void)
{
	int sigs[4] = { SIGRTMIN + 1, SIGRTMIN + 2, SIGRTMIN + 3, SIGRTMIN + 4 };
	char q[64], err[256] = "";
	int errs = 0, i;
	pthread_t th;
	sigset_t set;
	siginfo_t si;

	zdtm_init();
	sigemptyset(&set);
	for (i = 1; i <= 5; i++)
		sigaddset(&set, SIGRTMIN + i);
	sigprocmask(SIG_BLOCK, &set, NULL);
	if (pthread_create(&th, NULL, thr, NULL))
		zdtm_die("pthread_create");
	while (!ttid)
		zdtm_sleep_ms(1);
	for (i = 0; i < NPROC; i++) {
		union sigval v = { .sival_int = i };
		if (sigqueue(getpid(), sigs[i % 4], v))
			zdtm_die("sigqueue %d", i);
	}
	for (i = 0; i < NTHR; i++) {
		memset(&si, 0, sizeof(si));
		si.si_signo = i % 2 ? SIGRTMIN + 5 : SIGRTMIN + 2;
		si.si_code = SI_QUEUE;
		si.si_pid = getpid();
		si.si_uid = getuid();
		si.si_value.sival_int = 1000 + i;
		if (syscall(SYS_rt_tgsigqueueinfo, getpid(), ttid, si.si_signo, &si))
			zdtm_die("rt_tgsigqueueinfo %d", i);
	}
	zdtm_status_field("/proc/self/status", "SigQ", q, sizeof(q));
	zdtm_log("SigQ %s", q);

	zdtm_ready();
	zdtm_wait_go();

	/* SigQ counts the whole user's queued signals, not ours: only logged. */
	zdtm_status_field("/proc/self/status", "SigQ", q, sizeof(q));
	zdtm_log("SigQ %s after restore", q);
	drain(0, NPROC, sigs, 4, NPROC / 4, "process", err, sizeof(err), &errs);
	CHECK(errs == 0, "%s", err);
	tgo = 1;
	pthread_join(th, NULL);
	CHECK(terrs == 0, "%s", terr);
	zdtm_finish();
}
