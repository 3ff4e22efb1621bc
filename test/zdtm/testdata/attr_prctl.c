/*
 * attr_prctl: per-process and per-thread knobs set with prctl() and
 * personality(): timer slack, THP disable, child subreaper, machine-check
 * kill policy, and the personality (ADDR_NO_RANDOMIZE | UNAME26, which
 * makes uname() report a 2.6 release). After restore all read back the
 * same and UNAME26 is in effect.
 */
#include "zdtm.h"
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/utsname.h>

#define SLACK 123456

int main(void)
{
	int pers0, pers, mce0;
	struct utsname u;
	int v = 0;

	zdtm_init();
	if (prctl(PR_SET_TIMERSLACK, SLACK, 0, 0, 0) || prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) ||
	    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) || prctl(PR_MCE_KILL, PR_MCE_KILL_SET, PR_MCE_KILL_EARLY, 0, 0))
		zdtm_die("prctl");
	mce0 = prctl(PR_MCE_KILL_GET, 0, 0, 0, 0);
	if (personality(PER_LINUX | ADDR_NO_RANDOMIZE | UNAME26) == -1)
		zdtm_die("personality");
	pers0 = personality(0xffffffff);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0) == SLACK, "timer slack %d, want %d",
	      prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0), SLACK);
	CHECK(prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) == 1, "THP disable lost");
	CHECK(prctl(PR_GET_CHILD_SUBREAPER, &v, 0, 0, 0) == 0 && v == 1, "child subreaper %d, want 1", v);
	CHECK(prctl(PR_MCE_KILL_GET, 0, 0, 0, 0) == mce0, "MCE kill policy %d, want %d",
	      prctl(PR_MCE_KILL_GET, 0, 0, 0, 0), mce0);
	pers = personality(0xffffffff);
	CHECK(pers == pers0, "personality %#x, want %#x", pers, pers0);
	CHECK(uname(&u) == 0 && strncmp(u.release, "2.6.", 4) == 0, "UNAME26 not in effect: release %s", u.release);
	zdtm_finish();
}
