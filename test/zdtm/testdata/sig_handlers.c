/*
 * sig_handlers: signal dispositions. Handlers with SA_SIGINFO, SA_RESTART,
 * SA_ONSTACK, SA_NODEFER|SA_RESETHAND and various masks, SIG_IGN and
 * SIG_DFL with flags. After restore the raw kernel sigaction of every
 * signal (handler, flags, restorer, mask) is identical, and raising the
 * signals runs the handlers with the right mask, once, with the reset and
 * ignore semantics intact.
 */
#include "zdtm.h"
#include <signal.h>

struct ksigaction {
	void *handler;
	unsigned long flags;
	void *restorer;
	uint64_t mask;
};

static struct ksigaction saved[65];

static volatile int got[65];
static volatile uint64_t mask_in[65];
static volatile int code_in[65];

static uint64_t cur_mask(void)
{
	uint64_t m;
	syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &m, 8);
	return m;
}

static void h_plain(int sig)
{
	got[sig]++;
	mask_in[sig] = cur_mask();
}

static void h_info(int sig, siginfo_t *si, void *uc)
{
	(void)uc;
	got[sig]++;
	mask_in[sig] = cur_mask();
	code_in[sig] = si->si_signo == sig ? si->si_code : -1000;
}

static uint64_t bit(int sig) { return 1ULL << (sig - 1); }

static void set(int sig, void *h, int flags, const int *mask)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	if (flags & SA_SIGINFO)
		sa.sa_sigaction = h;
	else
		sa.sa_handler = h;
	sa.sa_flags = flags;
	sigemptyset(&sa.sa_mask);
	for (; mask && *mask; mask++)
		sigaddset(&sa.sa_mask, *mask);
	if (sigaction(sig, &sa, NULL))
		zdtm_die("sigaction %d", sig);
}

static int kget(int sig, struct ksigaction *k)
{
	return syscall(SYS_rt_sigaction, sig, NULL, k, 8);
}

int main(void)
{
	const int m_usr1[] = { SIGUSR2, SIGTERM, 0 };
	const int m_rt[] = { SIGRTMIN + 6, 0 };
	struct ksigaction k;
	struct sigaction sa;
	int sig;

	zdtm_init();
	set(SIGUSR1, h_info, SA_SIGINFO | SA_RESTART, m_usr1);
	set(SIGUSR2, h_plain, SA_NODEFER | SA_RESETHAND, NULL);
	set(SIGHUP, SIG_IGN, 0, NULL);
	set(SIGPIPE, SIG_IGN, SA_RESTART, NULL);
	set(SIGTERM, h_plain, SA_ONSTACK, NULL);
	set(SIGRTMIN + 5, h_info, SA_SIGINFO, m_rt);
	set(SIGCHLD, SIG_DFL, SA_NOCLDSTOP, NULL);
	set(SIGWINCH, h_plain, SA_RESTART, NULL);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = h_plain;
	sigfillset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	for (sig = 1; sig < 65; sig++)
		if (kget(sig, &saved[sig]))
			zdtm_die("rt_sigaction get %d", sig);

	zdtm_ready();
	zdtm_wait_go();

	for (sig = 1; sig < 65; sig++) {
		if (kget(sig, &k)) {
			fail("rt_sigaction get %d: %s", sig, strerror(errno));
			continue;
		}
		CHECK(k.handler == saved[sig].handler, "signal %d: handler %p, want %p", sig, k.handler, saved[sig].handler);
		CHECK(k.flags == saved[sig].flags, "signal %d: flags %#lx, want %#lx", sig, k.flags, saved[sig].flags);
		CHECK(k.restorer == saved[sig].restorer, "signal %d: restorer %p, want %p", sig, k.restorer,
		      saved[sig].restorer);
		CHECK(k.mask == saved[sig].mask, "signal %d: mask %#lx, want %#lx", sig, (unsigned long)k.mask,
		      (unsigned long)saved[sig].mask);
	}

	raise(SIGUSR1);
	CHECK(got[SIGUSR1] == 1, "SIGUSR1 handled %d times", got[SIGUSR1]);
	CHECK(mask_in[SIGUSR1] == (bit(SIGUSR1) | bit(SIGUSR2) | bit(SIGTERM)), "mask in SIGUSR1 handler %#lx",
	      (unsigned long)mask_in[SIGUSR1]);
	CHECK(code_in[SIGUSR1] == SI_TKILL, "SIGUSR1 si_code %d, want SI_TKILL", code_in[SIGUSR1]);
	raise(SIGUSR2);
	CHECK(got[SIGUSR2] == 1 && mask_in[SIGUSR2] == 0, "SIGUSR2 (SA_NODEFER): handled %d, mask %#lx", got[SIGUSR2],
	      (unsigned long)mask_in[SIGUSR2]);
	CHECK(kget(SIGUSR2, &k) == 0 && k.handler == SIG_DFL, "SIGUSR2 not reset to SIG_DFL by SA_RESETHAND");
	raise(SIGHUP); /* ignored: we are still here */
	raise(SIGPIPE);
	raise(SIGRTMIN + 5);
	CHECK(got[SIGRTMIN + 5] == 1, "SIGRTMIN+5 handled %d times", got[SIGRTMIN + 5]);
	CHECK(mask_in[SIGRTMIN + 5] == (bit(SIGRTMIN + 5) | bit(SIGRTMIN + 6)), "mask in SIGRTMIN+5 handler %#lx",
	      (unsigned long)mask_in[SIGRTMIN + 5]);
	raise(SIGINT);
	CHECK(got[SIGINT] == 1, "SIGINT handled %d times", got[SIGINT]);
	CHECK((mask_in[SIGINT] & bit(SIGTERM)) && (mask_in[SIGINT] & bit(SIGRTMAX)), "SIGINT handler mask %#lx not full",
	      (unsigned long)mask_in[SIGINT]);
	raise(SIGTERM);
	CHECK(got[SIGTERM] == 1, "SIGTERM handled %d times", got[SIGTERM]);
	raise(SIGWINCH);
	CHECK(got[SIGWINCH] == 1, "SIGWINCH handled %d times", got[SIGWINCH]);
	CHECK(cur_mask() == 0, "mask after handlers %#lx", (unsigned long)cur_mask());
	zdtm_finish();
}
