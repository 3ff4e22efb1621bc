/*
 * zs_stopped_tree (process tree): children that are stopped when
 * checkpointed while their parent runs. Child A stopped itself with
 * SIGSTOP, child B with SIGTSTP (default action: stop), child G (B's
 * sibling) is stopped by the parent with SIGSTOP while it holds a blocked
 * SIGUSR1 pending. The parent collected each stop with
 * waitpid(WUNTRACED) before ready. After restore each is still stopped
 * ('T' in /proc/PID/stat); waitpid(WUNTRACED|WNOHANG) reports no new stop
 * (nothing happened to them); after SIGCONT each runs on: it checks its memory pattern, G that SIGUSR1 is still pending,
 * and they exit 0.
 * Modelled on zdtm's stopped01, stopped02 and stopped12.
 */
#include "zdtm.h"
#include <signal.h>
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

static char mem[64 * 1024];

static pid_t child(int how, uint64_t seed)
{
	pid_t c = fork();

	if (c)
		return c;
	zdtm_child_forget_ready();
	zdtm_fill(mem, sizeof(mem), seed);
	raise(how);
	/* continued */
	zdtm_wait_go();
	if (zdtm_check(mem, sizeof(mem), seed) != -1)
		_exit(2);
	_exit(0);
}

int main(void)
{
	pid_t pids[3];
	const char *names[3] = { "A (SIGSTOP)", "B (SIGTSTP)", "G (stopped by parent)" };
	int i, st;
	sigset_t s;

	zdtm_init();
	pids[0] = child(SIGSTOP, 10);
	pids[1] = child(SIGTSTP, 11);
	pids[2] = fork();
	if (pids[2] == 0) {
		zdtm_child_forget_ready();
		zdtm_fill(mem, sizeof(mem), 12);
		sigemptyset(&s);
		sigaddset(&s, SIGUSR1);
		sigprocmask(SIG_BLOCK, &s, NULL);
		raise(SIGUSR1);
		while (!zdtm_go())
			zdtm_sleep_ms(5);
		sigpending(&s);
		if (!sigismember(&s, SIGUSR1))
			_exit(3);
		_exit(zdtm_check(mem, sizeof(mem), 12) == -1 ? 0 : 2);
	}
	if (pids[0] < 0 || pids[1] < 0 || pids[2] < 0)
		zdtm_die("fork");
	zdtm_sleep_ms(50);
	kill(pids[2], SIGSTOP);
	for (i = 0; i < 3; i++) {
		if (waitpid(pids[i], &st, WUNTRACED) != pids[i] || !WIFSTOPPED(st))
			zdtm_die("child %s did not stop (status %#x)", names[i], st);
	}

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 3; i++) {
		char c = proc_state(pids[i]);
		CHECK(c == 'T', "child %s is in state '%c', want 'T'", names[i], c);
	}
	for (i = 0; i < 3; i++) {
		pid_t r = waitpid(pids[i], &st, WUNTRACED | WNOHANG);
		CHECK(r == 0, "child %s: waitpid(WUNTRACED|WNOHANG) = %d status %#x, want no new report",
		      names[i], r, st);
	}
	for (i = 0; i < 3; i++)
		kill(pids[i], SIGCONT);
	for (i = 0; i < 3; i++) {
		if (waitpid(pids[i], &st, 0) != pids[i])
			fail("reap %s: %s", names[i], strerror(errno));
		else
			CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "child %s status %#x, want exit 0 (2: memory, 3: SIGUSR1 lost)", names[i], st);
	}
	zdtm_finish();
}
