/*
 * attr_pdeathsig: the parent-death signal. The test process T is a child
 * subreaper; its child M forks C, and C sets PR_SET_PDEATHSIG(SIGUSR2).
 * After restore C reads PR_GET_PDEATHSIG back, M exits, and C must get
 * SIGUSR2 (it waits for it with sigtimedwait) and is reparented to T.
 * C's exit status tells T what it saw.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

int main(void)
{
	int p[2], st, sig;
	pid_t m, c = 0;
	sigset_t set;
	char ok;

	zdtm_init();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
		zdtm_die("PR_SET_CHILD_SUBREAPER");
	if (pipe(p))
		zdtm_die("pipe");
	m = fork();
	if (m < 0)
		zdtm_die("fork");
	if (m == 0) {
		zdtm_child_forget_ready();
		c = fork();
		if (c == 0) {
			struct timespec ts = { 20, 0 };

			sigemptyset(&set);
			sigaddset(&set, SIGUSR2);
			sigprocmask(SIG_BLOCK, &set, NULL);
			if (prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0))
				_exit(10);
			if (write(p[1], &c, sizeof(c)) != sizeof(c))
				_exit(11);
			close(p[0]);
			close(p[1]);
			zdtm_wait_go();
			if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) || sig != SIGUSR2)
				_exit(12);
			/* tell M to exit now */
			kill(getppid(), SIGTERM);
			sig = sigtimedwait(&set, NULL, &ts);
			if (sig != SIGUSR2)
				_exit(13);
			_exit(getppid() == zdtm_pid0 ? 0 : 14);
		}
		close(p[0]);
		close(p[1]);
		for (;;)
			pause(); /* killed by C's SIGTERM after go */
	}
	close(p[1]);
	if (read(p[0], &c, sizeof(c)) != sizeof(c))
		zdtm_die("grandchild did not start");
	close(p[0]);
	(void)ok;

	zdtm_ready();
	zdtm_wait_go();

	if (waitpid(m, &st, 0) != m)
		fail("waitpid middle: %s", strerror(errno));
	else
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGTERM, "middle status %#x, want killed by SIGTERM", st);
	for (;;) {
		pid_t w = waitpid(-1, &st, 0);
		if (w < 0) {
			fail("grandchild was not reparented to us: %s", strerror(errno));
			break;
		}
		if (w != m) {
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "grandchild status %#x (12: pdeathsig lost, 13: SIGUSR2 not delivered, 14: wrong parent)", st);
			break;
		}
	}
	zdtm_finish();
}
