/*
 * sig_pending: process-wide pending signals. With SIGUSR1, SIGUSR2,
 * SIGWINCH and SIGRTMIN+1 blocked the process sends itself SIGUSR1 twice
 * (coalesced to one), SIGUSR2 and SIGWINCH with kill(), and SIGRTMIN+1
 * three times with sigqueue() and different values. After restore
 * sigpending() and ShdPnd are the same, and unblocking delivers SIGUSR1
 * and SIGUSR2 once each (SI_USER, our pid) and SIGRTMIN+1 three times
 * with the values in order (SI_QUEUE).
 */
#include "zdtm.h"
#include <signal.h>

#define RT (SIGRTMIN + 1)

static volatile int n_usr1, n_usr2, n_rt, usr_code[2], usr_pid[2], rt_val[8], rt_code[8];

static void handler(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	if (sig == SIGUSR1) {
		n_usr1++;
		usr_code[0] = si->si_code;
		usr_pid[0] = si->si_pid;
	} else if (sig == SIGUSR2) {
		n_usr2++;
		usr_code[1] = si->si_code;
		usr_pid[1] = si->si_pid;
	} else if (sig == RT && n_rt < 8) {
		rt_val[n_rt] = si->si_value.sival_int;
		rt_code[n_rt] = si->si_code;
		n_rt++;
	}
}

int main(void)
{
	char shd0[32], shd1[32];
	struct sigaction sa;
	sigset_t blk, pend;
	union sigval v;
	int i;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGUSR1, &sa, NULL);
	sigaction(SIGUSR2, &sa, NULL);
	sigaction(RT, &sa, NULL);
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	sigaddset(&blk, SIGUSR2);
	sigaddset(&blk, SIGWINCH);
	sigaddset(&blk, RT);
	sigprocmask(SIG_BLOCK, &blk, NULL);
	kill(getpid(), SIGUSR1);
	kill(getpid(), SIGUSR1);
	kill(getpid(), SIGUSR2);
	kill(getpid(), SIGWINCH);
	for (i = 1; i <= 3; i++) {
		v.sival_int = i * 10;
		if (sigqueue(getpid(), RT, v))
			zdtm_die("sigqueue");
	}
	if (zdtm_status_field("/proc/self/status", "ShdPnd", shd0, sizeof(shd0)))
		zdtm_die("no ShdPnd");

	zdtm_ready();
	zdtm_wait_go();

	sigpending(&pend);
	CHECK(sigismember(&pend, SIGUSR1) && sigismember(&pend, SIGUSR2) && sigismember(&pend, SIGWINCH) &&
		      sigismember(&pend, RT),
	      "pending: USR1 %d USR2 %d WINCH %d RTMIN+1 %d, want all", sigismember(&pend, SIGUSR1),
	      sigismember(&pend, SIGUSR2), sigismember(&pend, SIGWINCH), sigismember(&pend, RT));
	if (zdtm_status_field("/proc/self/status", "ShdPnd", shd1, sizeof(shd1)))
		fail("no ShdPnd");
	else
		CHECK(strcmp(shd0, shd1) == 0, "ShdPnd %s, want %s", shd1, shd0);
	CHECK(n_usr1 + n_usr2 + n_rt == 0, "handlers ran while blocked");

	sigprocmask(SIG_UNBLOCK, &blk, NULL);
	CHECK(n_usr1 == 1, "SIGUSR1 delivered %d times, want 1", n_usr1);
	CHECK(n_usr2 == 1, "SIGUSR2 delivered %d times, want 1", n_usr2);
	for (i = 0; i < 2; i++)
		CHECK(usr_code[i] == SI_USER && usr_pid[i] == getpid(), "SIGUSR%d si_code %d si_pid %d, want SI_USER %d",
		      i + 1, usr_code[i], usr_pid[i], getpid());
	CHECK(n_rt == 3, "SIGRTMIN+1 delivered %d times, want 3", n_rt);
	for (i = 0; i < n_rt && i < 3; i++)
		CHECK(rt_val[i] == (i + 1) * 10 && rt_code[i] == SI_QUEUE, "SIGRTMIN+1 #%d: value %d code %d, want %d SI_QUEUE",
		      i, rt_val[i], rt_code[i], (i + 1) * 10);
	sigpending(&pend);
	CHECK(sigisemptyset(&pend), "signals still pending after unblocking");
	zdtm_finish();
}
