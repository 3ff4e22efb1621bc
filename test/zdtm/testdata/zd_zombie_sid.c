/*
 * zd_zombie_sid (process tree): a session whose leader is a zombie while
 * the session still has a live member. The test process T is a child
 * subreaper; its child S calls setsid(), forks C and exits: S stays an
 * unreaped zombie of T (waitid WNOWAIT), C is reparented to T. After
 * restore S is still a zombie of T with S's pid as its own session and
 * group; C's parent is T, its session and group are S's pid (getsid,
 * getpgid and /proc/C/stat), and both are reaped with their statuses
 * (S 5, C 0 when its own checks passed).
 * Modelled on zdtm's zombie_leader.
 */
#include "zdtm.h"
#include <sys/prctl.h>
#include <sys/wait.h>

static int stat_fields(pid_t pid, char *state, int *pgid, int *sid, int *ppid)
{
	char path[64], buf[1024], *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%c %d %d %d", state, ppid, pgid, sid) != 4)
		return -1;
	return 0;
}

int main(void)
{
	int p[2], st, pg, sid, pp;
	pid_t s, c = 0;
	siginfo_t si;
	char state;

	zdtm_init();
	if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) || pipe(p))
		zdtm_die("subreaper/pipe");
	s = fork();
	if (s < 0)
		zdtm_die("fork");
	if (s == 0) {
		zdtm_child_forget_ready();
		close(p[0]);
		if (setsid() != getpid())
			_exit(1);
		c = fork();
		if (c < 0)
			_exit(2);
		if (c == 0) {
			int bad = 0;
			close(p[1]);
			zdtm_wait_go();
			if (getppid() != zdtm_pid0)
				bad |= 1;
			if (getsid(0) != getpgid(0) || getpgid(0) == zdtm_pid0)
				bad |= 2;
			_exit(bad);
		}
		if (write(p[1], &c, sizeof(c)) != sizeof(c))
			_exit(3);
		_exit(5);
	}
	close(p[1]);
	if (read(p[0], &c, sizeof(c)) != sizeof(c))
		zdtm_die("read C's pid");
	close(p[0]);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, s, &si, WEXITED | WNOWAIT))
		zdtm_die("waitid WNOWAIT");
	while (getpgid(c) >= 0 && stat_fields(c, &state, &pg, &sid, &pp) == 0 && pp != zdtm_pid0)
		zdtm_sleep_ms(1);
	if (stat_fields(c, &state, &pg, &sid, &pp) || pp != zdtm_pid0 || sid != s || pg != s)
		zdtm_die("C: ppid %d sid %d pgid %d", pp, sid, pg);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(stat_fields(s, &state, &pg, &sid, &pp) == 0 && state == 'Z', "S %d: state '%c', want a zombie", s, state);
	CHECK(pg == s && sid == s && pp == zdtm_pid0, "S %d: pgid %d sid %d ppid %d, want %d %d %d", s, pg, sid, pp, s,
	      s, zdtm_pid0);
	CHECK(getsid(c) == s && getpgid(c) == s, "C %d: getsid %d getpgid %d, want %d", c, getsid(c), getpgid(c), s);
	CHECK(stat_fields(c, &state, &pg, &sid, &pp) == 0 && pg == s && sid == s && pp == zdtm_pid0,
	      "C %d: /proc stat pgid %d sid %d ppid %d, want %d %d %d", c, pg, sid, pp, s, s, zdtm_pid0);
	CHECK(waitpid(s, &st, 0) == s && WIFEXITED(st) && WEXITSTATUS(st) == 5, "S: reaped status %#x, want exit 5", st);
	st = -1;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "C: status %#x (1: wrong parent, 2: wrong session/group)", st);
	zdtm_finish();
}
