/*
 * sig_trap_ign: an ignored SIGTRAP stays ignored. The program sets SIGTRAP
 * to SIG_IGN; after restore sigaction still says SIG_IGN and raise(SIGTRAP)
 * leaves the program running (a trap forced by the tool on a thread that
 * ignores SIGTRAP would have reset it to SIG_DFL: the raise would kill).
 */
#include "zdtm.h"
#include <signal.h>

int main(void)
{
	struct sigaction sa, old;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGTRAP, &sa, NULL))
		zdtm_die("sigaction");

	zdtm_ready();
	zdtm_wait_go();

	if (sigaction(SIGTRAP, NULL, &old))
		fail("sigaction: %s", strerror(errno));
	else
		CHECK(old.sa_handler == SIG_IGN, "SIGTRAP handler %p, want SIG_IGN", (void *)old.sa_handler);
	raise(SIGTRAP);
	zdtm_finish();
}
