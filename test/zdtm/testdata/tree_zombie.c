/*
 * tree_zombie (process tree): a zombie child at checkpoint time. Child Z
 * exits with 17 before the checkpoint and is left unreaped; child L is
 * alive and exits with 3 after go. After restore Z is still a zombie of
 * ours ('Z' in /proc/Z/stat) and both are reaped with their statuses.
 */
#include "zdtm.h"
#include <sys/wait.h>

static char proc_state(pid_t pid)
{
	char path[64], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return '?';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

int main(void)
{
	siginfo_t si;
	pid_t z, l;
	int st;

	zdtm_init();
	z = fork();
	if (z == 0) {
		zdtm_child_forget_ready();
		_exit(17);
	}
	l = fork();
	if (l == 0) {
		zdtm_child_forget_ready();
		zdtm_wait_go();
		_exit(getppid() == zdtm_pid0 ? 3 : 4);
	}
	if (z < 0 || l < 0)
		zdtm_die("fork");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT)) /* wait for the exit, keep the zombie */
		zdtm_die("waitid WNOWAIT");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(proc_state(z) == 'Z', "child %d is in state '%c', want a zombie", z, proc_state(z));
	if (waitpid(z, &st, 0) != z)
		fail("reap zombie %d: %s", z, strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 17, "zombie status %#x, want exit 17", st);
	if (waitpid(l, &st, 0) != l)
		fail("reap live child %d: %s", l, strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "live child status %#x, want exit 3 (4: wrong parent)", st);
	zdtm_finish();
}
