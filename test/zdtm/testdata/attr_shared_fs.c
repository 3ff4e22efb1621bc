/*
 * attr_shared_fs: processes sharing cwd and umask (clone(CLONE_FS) without
 * CLONE_VM). P and its child C share them; D (plain fork) has its own.
 * After restore C changes directory and umask, and P sees both; D keeps
 * its own cwd and umask.
 */
#include "zdtm.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static char stack[65536] __attribute__((aligned(16)));
static int q[2];

static int child_main(void *arg)
{
	char x;
	(void)arg;
	zdtm_child_forget_ready();
	/* wait for P's word after restore, then move */
	if (read(q[0], &x, 1) != 1)
		_exit(2);
	if (chdir("sub"))
		_exit(3);
	umask(077);
	_exit(0);
}

int main(void)
{
	char before[4096], now[4096], dcwd[4096];
	int st, dp[2];
	pid_t c, d;
	char x = 'g';

	zdtm_init();
	if (mkdir("sub", 0755) && errno != EEXIST)
		zdtm_die("mkdir");
	umask(022);
	if (pipe(q) || pipe(dp) || !getcwd(before, sizeof(before)))
		zdtm_die("setup");
	c = clone(child_main, stack + sizeof(stack), CLONE_FS | SIGCHLD, NULL);
	if (c < 0)
		zdtm_die("clone(CLONE_FS)");
	d = fork();
	if (d == 0) {
		zdtm_child_forget_ready();
		zdtm_wait_go();
		zdtm_sleep_ms(300); /* after C moved */
		if (!getcwd(dcwd, sizeof(dcwd)) || strcmp(dcwd, before))
			_exit(1);
		_exit(umask(0) == 022 ? 0 : 4);
	}

	zdtm_ready();
	zdtm_wait_go();

	if (write(q[1], &x, 1) != 1)
		fail("write");
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail("C status %#x", st);
	CHECK(getcwd(now, sizeof(now)) && strlen(now) == strlen(before) + 4 && !strncmp(now, before, strlen(before)),
	      "cwd %s: C's chdir to sub did not reach us (was %s)", now, before);
	CHECK(umask(0) == 077, "C's umask did not reach us");
	if (waitpid(d, &st, 0) != d)
		fail("waitpid D");
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "D's own cwd/umask changed (status %#x)", st);
	zdtm_finish();
}
