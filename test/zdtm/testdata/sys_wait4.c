/*
 * sys_wait4 (process tree): the parent is blocked in wait4() on its child
 * when checkpointed. After go the child checks its pid and parent and
 * exits with 42; the parent's wait4 returns that child with that status
 * and rusage. A second child exits after go too and is reaped with waitid.
 */
#include "zdtm.h"
#include <sys/resource.h>
#include <sys/wait.h>

static pid_t spawn(int code)
{
	pid_t parent = getpid(), c = fork(), me;

	if (c < 0)
		zdtm_die("fork");
	if (c)
		return c;
	zdtm_child_forget_ready();
	me = getpid();
	zdtm_wait_go();
	if (getpid() != me || getppid() != parent) {
		zdtm_log("child: pid %d ppid %d, want %d %d", getpid(), getppid(), me, parent);
		_exit(99);
	}
	zdtm_sleep_ms(20);
	_exit(code);
}

int main(void)
{
	struct rusage ru;
	siginfo_t si;
	pid_t c1, c2, r;
	int st = 0;

	zdtm_init();
	c1 = spawn(42);
	c2 = spawn(7);

	zdtm_ready();
	r = wait4(c1, &st, 0, &ru); /* in progress at checkpoint time */

	if (r != c1)
		fail("wait4 returned %d (%s), want %d", r, r < 0 ? strerror(errno) : "", c1);
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 42, "child status %#x, want exit 42", st);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, c2, &si, WEXITED))
		fail("waitid second child %d: %s", c2, strerror(errno));
	else
		CHECK(si.si_pid == c2 && si.si_code == CLD_EXITED && si.si_status == 7,
		      "second child: pid %d code %d status %d, want %d CLD_EXITED 7", si.si_pid, si.si_code,
		      si.si_status, c2);
	CHECK(wait(NULL) == -1 && errno == ECHILD, "unexpected extra child");
	zdtm_finish();
}
