/*
 * zd_vfork (process tree): a process suspended in vfork(). The test
 * process forks P; P vforks V, and V (sharing P's memory while P waits)
 * tells the test process it runs and polls for go, then _exits with 7.
 * Then P's vfork returns; P checks its child's status and exits 0.
 * zdtm's vfork00 says a pending (not yet exec'd) vfork blocks migration:
 * either ferry refuses the dump, naming the shared memory/vfork, and the
 * tree runs on untouched, or the restored tree behaves the same: V exits
 * with 7 and P with 0 (P's vfork returned V's pid, V's status was 7).
 * Modelled on zdtm's vfork00.
 */
#include "zdtm.h"
#include <sys/wait.h>

int main(void)
{
	int p[2], st;
	pid_t pp, v;
	char c;

	zdtm_init();
	if (pipe(p))
		zdtm_die("pipe");
	pp = fork();
	if (pp < 0)
		zdtm_die("fork");
	if (pp == 0) {
		zdtm_child_forget_ready();
		close(p[0]);
		v = vfork();
		if (v == 0) {
			if (write(p[1], "v", 1) != 1)
				_exit(3);
			zdtm_wait_go();
			_exit(7);
		}
		if (v < 0)
			_exit(10);
		if (waitpid(v, &st, 0) != v)
			_exit(11);
		_exit(WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : 12);
	}
	close(p[1]);
	if (read(p[0], &c, 1) != 1)
		zdtm_die("V did not start");
	close(p[0]);

	zdtm_ready();
	zdtm_wait_go();

	st = -1;
	CHECK(waitpid(pp, &st, 0) == pp && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "P: status %#x, want exit 0 (11: wait failed, 12: V's status was wrong)", st);
	zdtm_finish();
}
