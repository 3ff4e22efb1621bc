/*
 * fd_signalfd: signalfds. S1 (fd 39, non-blocking) takes SIGUSR1 and
 * SIGRTMIN+7, S2 (fd 41) takes SIGUSR2; all three are blocked. SIGUSR1 and
 * a queued SIGRTMIN+7 (value 77) are pending at checkpoint time. After
 * restore each fd's sigmask (fdinfo) and flags are the same, S1 reads the
 * two pending signals with their siginfo and then EAGAIN, and S2 reads a
 * SIGUSR2 sent now.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/signalfd.h>

#define RT (SIGRTMIN + 7)

int main(void)
{
	struct signalfd_siginfo si;
	char m1[64], m2[64], v[64];
	sigset_t s1, s2, blk;
	union sigval val;
	int fd, fl1, got_usr1 = 0, got_rt = 0, i;

	zdtm_init();
	sigemptyset(&s1);
	sigaddset(&s1, SIGUSR1);
	sigaddset(&s1, RT);
	sigemptyset(&s2);
	sigaddset(&s2, SIGUSR2);
	blk = s1;
	sigaddset(&blk, SIGUSR2);
	sigprocmask(SIG_BLOCK, &blk, NULL);
	fd = signalfd(-1, &s1, SFD_NONBLOCK);
	if (fd < 0 || dup2(fd, 39) != 39)
		zdtm_die("signalfd 1");
	close(fd);
	fd = signalfd(-1, &s2, 0);
	if (fd < 0 || dup2(fd, 41) != 41)
		zdtm_die("signalfd 2");
	close(fd);
	kill(getpid(), SIGUSR1);
	val.sival_int = 77;
	sigqueue(getpid(), RT, val);
	fl1 = fcntl(39, F_GETFL);
	if (zdtm_fdinfo_field(39, "sigmask", m1, sizeof(m1)) || zdtm_fdinfo_field(41, "sigmask", m2, sizeof(m2)))
		zdtm_die("fdinfo sigmask");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(zdtm_fdinfo_field(39, "sigmask", v, sizeof(v)) == 0 && strcmp(v, m1) == 0, "fd 39 sigmask %s, want %s", v, m1);
	CHECK(zdtm_fdinfo_field(41, "sigmask", v, sizeof(v)) == 0 && strcmp(v, m2) == 0, "fd 41 sigmask %s, want %s", v, m2);
	CHECK(fcntl(39, F_GETFL) == fl1, "fd 39 flags %#o, want %#o", fcntl(39, F_GETFL), fl1);
	for (i = 0; i < 2; i++) {
		if (read(39, &si, sizeof(si)) != sizeof(si)) {
			fail("read #%d from fd 39: %s", i, strerror(errno));
			break;
		}
		if (si.ssi_signo == SIGUSR1) {
			got_usr1++;
			CHECK(si.ssi_code == SI_USER && (pid_t)si.ssi_pid == getpid(), "SIGUSR1 code %d pid %u",
			      si.ssi_code, si.ssi_pid);
		} else if ((int)si.ssi_signo == RT) {
			got_rt++;
			CHECK(si.ssi_code == SI_QUEUE && si.ssi_int == 77, "SIGRTMIN+7 code %d value %d, want SI_QUEUE 77",
			      si.ssi_code, si.ssi_int);
		} else
			fail("unexpected signal %u from fd 39", si.ssi_signo);
	}
	CHECK(got_usr1 == 1 && got_rt == 1, "got SIGUSR1 %d, SIGRTMIN+7 %d times, want 1 each", got_usr1, got_rt);
	CHECK(read(39, &si, sizeof(si)) == -1 && errno == EAGAIN, "fd 39 has more signals");
	fcntl(41, F_SETFL, fcntl(41, F_GETFL) | O_NONBLOCK); /* fail, not hang */
	kill(getpid(), SIGUSR2);
	CHECK(read(41, &si, sizeof(si)) == sizeof(si) && si.ssi_signo == SIGUSR2, "fd 41 did not deliver SIGUSR2");
	zdtm_finish();
}
