/*
 * zt_sigchld_pending (process tree): a blocked SIGCHLD pending with the
 * kernel's siginfo of a child that exited, and SA_NOCLDSTOP. SIGCHLD has a
 * SA_SIGINFO|SA_NOCLDSTOP handler and is blocked; child Z exits with 9
 * before ready and stays an unreaped zombie, so SIGCHLD is pending with
 * CLD_EXITED, si_pid Z, si_status 9; child S is alive.
 * After restore: SIGCHLD is pending (sigpending, ShdPnd), and exactly
 * once: sigtimedwait gives CLD_EXITED, si_pid Z, si_uid 0, si_status 9,
 * then nothing more; Z is still a zombie and is reaped with status 9.
 * Then S stops itself (SIGSTOP): no SIGCHLD comes (SA_NOCLDSTOP), but
 * waitpid(WUNTRACED) sees the stop; after SIGCONT S exits with 4 and one
 * SIGCHLD with CLD_EXITED, S's pid and status 4 arrives.
 * Modelled on zdtm's sigpending and zombie00 (a SIGCHLD left pending).
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/wait.h>

static void h(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; }

int main(void)
{
	struct sigaction sa;
	struct timespec ts = { 0, 200000000 };
	siginfo_t si;
	sigset_t set, pend;
	pid_t z, s;
	int st, sig;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = h;
	sa.sa_flags = SA_SIGINFO | SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	s = fork();
	if (s == 0) {
		zdtm_child_forget_ready();
		zdtm_wait_go();
		zdtm_sleep_ms(100);
		raise(SIGSTOP);
		_exit(4);
	}
	z = fork();
	if (z == 0) {
		zdtm_child_forget_ready();
		_exit(9);
	}
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT))
		zdtm_die("waitid WNOWAIT");
	sigpending(&pend);
	if (!sigismember(&pend, SIGCHLD))
		zdtm_die("SIGCHLD not pending before ready");
	zdtm_log("Z %d (zombie), S %d", z, s);

	zdtm_ready();
	zdtm_wait_go();

	sigpending(&pend);
	CHECK(sigismember(&pend, SIGCHLD), "SIGCHLD is not pending after restore");
	memset(&si, 0, sizeof(si));
	sig = sigtimedwait(&set, &si, &ts);
	CHECK(sig == SIGCHLD, "sigtimedwait: %d (%s)", sig, strerror(errno));
	CHECK(si.si_code == CLD_EXITED && si.si_pid == z && si.si_status == 9 && si.si_uid == 0,
	      "pending SIGCHLD code %d pid %d status %d uid %d, want CLD_EXITED %d 9 0", si.si_code, si.si_pid,
	      si.si_status, si.si_uid, z);
	memset(&si, 0, sizeof(si));
	sig = sigtimedwait(&set, &si, &ts);
	CHECK(sig < 0, "a second SIGCHLD: code %d pid %d status %d", si.si_code, si.si_pid, si.si_status);
	CHECK(waitpid(z, &st, WNOHANG) == z && WIFEXITED(st) && WEXITSTATUS(st) == 9, "reap Z: status %#x", st);

	st = 0;
	CHECK(waitpid(s, &st, WUNTRACED) == s && WIFSTOPPED(st), "S did not stop: %#x", st);
	memset(&si, 0, sizeof(si));
	sig = sigtimedwait(&set, &si, &ts);
	CHECK(sig < 0, "SIGCHLD for S's stop despite SA_NOCLDSTOP: code %d", si.si_code);
	kill(s, SIGCONT);
	ts.tv_sec = 5;
	memset(&si, 0, sizeof(si));
	sig = sigtimedwait(&set, &si, &ts);
	while (sig == SIGCHLD && si.si_code == CLD_CONTINUED) {
		/* SA_NOCLDSTOP also hides CLD_CONTINUED; tolerate none. */
		fail("SIGCHLD CLD_CONTINUED despite SA_NOCLDSTOP");
		sig = sigtimedwait(&set, &si, &ts);
	}
	CHECK(sig == SIGCHLD && si.si_code == CLD_EXITED && si.si_pid == s && si.si_status == 4,
	      "S's exit: sig %d code %d pid %d status %d", sig, si.si_code, si.si_pid, si.si_status);
	CHECK(waitpid(s, &st, 0) == s && WIFEXITED(st) && WEXITSTATUS(st) == 4, "reap S: %#x", st);
	zdtm_finish();
}
