/*
 * zd_sigsuspend: the main thread is in sigsuspend() when checkpointed.
 * Its normal mask blocks SIGUSR1 and SIGUSR2; sigsuspend's temporary mask
 * blocks SIGUSR2 and SIGWINCH but lets SIGUSR1 in. A helper thread (all
 * signals blocked) sends the main thread, after go, SIGUSR2 (blocked in
 * both masks) and SIGWINCH (blocked by the temporary mask only): neither
 * may end the wait,
 * waits 100 ms, then SIGUSR1. Checks: sigsuspend returns EINTR only after
 * SIGUSR1 (not early, not restarted forever), the SIGUSR1 handler ran once
 * with the temporary mask (plus SIGUSR1) in force, and afterwards the
 * blocked mask is the normal one again (SIGUSR1|SIGUSR2, not the temporary
 * one): SIGWINCH, unblocked again, runs then, once; SIGUSR2 stays
 * pending.
 * Modelled on zdtm's sleeping00/sigpending family (sigsuspend case).
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

static volatile int n_usr1, n_other, n_winch, winch_early, bad_mask, sent_usr1;
static pid_t main_tid;

static void handler(int sig)
{
	sigset_t cur;

	if (sig == SIGWINCH) {
		n_winch++;
		if (!n_usr1)
			winch_early++;
		return;
	}
	if (sig != SIGUSR1) {
		n_other++;
		return;
	}
	n_usr1++;
	sigprocmask(SIG_SETMASK, NULL, &cur);
	if (!sigismember(&cur, SIGUSR2) || !sigismember(&cur, SIGWINCH) || !sigismember(&cur, SIGUSR1) ||
	    sigismember(&cur, SIGTERM))
		bad_mask++;
}

static void *helper(void *arg)
{
	(void)arg;
	zdtm_wait_go();
	syscall(SYS_tgkill, zdtm_pid0, main_tid, SIGUSR2);
	syscall(SYS_tgkill, zdtm_pid0, main_tid, SIGWINCH);
	zdtm_sleep_ms(100);
	__atomic_store_n(&sent_usr1, 1, __ATOMIC_SEQ_CST);
	syscall(SYS_tgkill, zdtm_pid0, main_tid, SIGUSR1);
	return NULL;
}

int main(void)
{
	sigset_t normal, tmp, all, cur, pend;
	struct sigaction sa;
	pthread_t th;
	int r, e;

	zdtm_init();
	main_tid = zdtm_gettid();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(SIGWINCH, &sa, NULL);
	sigemptyset(&normal);
	sigaddset(&normal, SIGUSR1);
	sigaddset(&normal, SIGUSR2);
	sigemptyset(&tmp);
	sigaddset(&tmp, SIGUSR2);
	sigaddset(&tmp, SIGWINCH);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, NULL);
	if (pthread_create(&th, NULL, helper, NULL))
		zdtm_die("pthread_create");
	pthread_sigmask(SIG_SETMASK, &normal, NULL);

	zdtm_ready();
	r = sigsuspend(&tmp);
	e = errno;

	CHECK(r == -1 && e == EINTR, "sigsuspend returned %d (%s), want EINTR", r, strerror(e));
	CHECK(__atomic_load_n(&sent_usr1, __ATOMIC_SEQ_CST), "sigsuspend returned before SIGUSR1 was sent");
	CHECK(n_usr1 == 1, "SIGUSR1 handler ran %d times, want 1", n_usr1);
	CHECK(!bad_mask, "the SIGUSR1 handler ran without sigsuspend's temporary mask");
	CHECK(n_other == 0, "SIGUSR2 handler ran %d times (it is blocked)", n_other);
	CHECK(!winch_early, "SIGWINCH ran before SIGUSR1 (the temporary mask was lost)");
	CHECK(n_winch == 1, "SIGWINCH ran %d times, want once, when the normal mask came back", n_winch);
	pthread_sigmask(SIG_SETMASK, NULL, &cur);
	CHECK(sigismember(&cur, SIGUSR1) && sigismember(&cur, SIGUSR2) && !sigismember(&cur, SIGWINCH),
	      "mask after sigsuspend: USR1 %d USR2 %d WINCH %d, want 1 1 0 (the normal mask)", sigismember(&cur, SIGUSR1),
	      sigismember(&cur, SIGUSR2), sigismember(&cur, SIGWINCH));
	pthread_join(th, NULL);
	sigpending(&pend);
	CHECK(sigismember(&pend, SIGUSR2), "SIGUSR2 is not pending any more");
	zdtm_finish();
}
