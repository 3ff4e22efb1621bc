/*
 * attr_dumpable: PR_SET_DUMPABLE 0. After restore PR_GET_DUMPABLE is
 * still 0, and a child that stayed dumpable (the default) still is 1.
 */
#include "zdtm.h"
#include <sys/prctl.h>
#include <sys/wait.h>

int main(void)
{
	int p[2], st;
	pid_t c;
	char x;

	zdtm_init();
	if (pipe(p))
		zdtm_die("pipe");
	c = fork();
	if (c == 0) {
		zdtm_child_forget_ready();
		close(p[1]);
		if (read(p[0], &x, 1) != 0)
			_exit(2);
		_exit(prctl(PR_GET_DUMPABLE) == 1 ? 0 : 1);
	}
	close(p[0]);
	if (prctl(PR_SET_DUMPABLE, 0) || prctl(PR_GET_DUMPABLE) != 0)
		zdtm_die("PR_SET_DUMPABLE");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(prctl(PR_GET_DUMPABLE) == 0, "PR_GET_DUMPABLE %d, want 0", prctl(PR_GET_DUMPABLE));
	close(p[1]);
	if (waitpid(c, &st, 0) != c)
		fail("waitpid: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: dumpable changed (status %#x)", st);
	zdtm_finish();
}
