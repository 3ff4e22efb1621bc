/*
 * sig_trap: SIGTRAP belongs to the program, not to the tool. The process
 * has a SIGTRAP handler and, at checkpoint time, a blocked SIGTRAP pending
 * (sent by kill, so it carries our pid as sender). After restore, unblocking
 * delivers exactly that one (si_code SI_USER, our pid); then a kill() and an
 * int3 breakpoint each run the handler once more (the int3 one with
 * si_code SI_KERNEL), and the program goes on after each.
 */
#include "zdtm.h"
#include <signal.h>

static volatile int ntraps;
static volatile int codes[8];
static volatile pid_t senders[8];

static void on_trap(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (ntraps < 8) {
		codes[ntraps] = si->si_code;
		senders[ntraps] = si->si_pid;
	}
	ntraps++;
}

int main(void)
{
	struct sigaction sa;
	sigset_t set;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_trap;
	sa.sa_flags = SA_SIGINFO;
	if (sigaction(SIGTRAP, &sa, NULL))
		zdtm_die("sigaction");
	sigemptyset(&set);
	sigaddset(&set, SIGTRAP);
	sigprocmask(SIG_BLOCK, &set, NULL);
	kill(getpid(), SIGTRAP);
	if (ntraps != 0)
		zdtm_die("blocked SIGTRAP delivered");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(ntraps == 0, "%d SIGTRAPs delivered while blocked", ntraps);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	CHECK(ntraps == 1, "%d SIGTRAPs after unblocking, want the 1 pending", ntraps);
	CHECK(codes[0] == SI_USER && senders[0] == zdtm_pid0, "pending SIGTRAP: code %d pid %d, want SI_USER from %d",
	      codes[0], senders[0], zdtm_pid0);
	kill(getpid(), SIGTRAP);
	CHECK(ntraps == 2, "%d SIGTRAPs after kill, want 2", ntraps);
	__asm__ volatile("int3");
	CHECK(ntraps == 3, "%d SIGTRAPs after int3, want 3", ntraps);
	CHECK(codes[2] == SI_KERNEL, "int3 SIGTRAP: code %d, want SI_KERNEL", codes[2]);
	zdtm_finish();
}
