/*
 * tree_zombie_pgid: process groups and sessions of a tree with zombies.
 * Child S starts a new session; in it S forks G (G makes its own process
 * group) and Z1 (stays in S's group), and both exit unreaped: zombies of
 * S. The test process also has a zombie Z2 in a group of its own and a
 * live child L in Z2's group. After restore each process's pgid and sid,
 * as getpgid/getsid and /proc/PID/stat say, are as before.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/wait.h>

struct ids {
	pid_t pid, pgid, sid;
};

static int stat_ids(pid_t pid, pid_t *pgid, pid_t *sid)
{
	char path[64], buf[1024], *p;
	int ppid;
	char state;

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	p = strrchr(buf, ')');
	if (!p || sscanf(p + 2, "%c %d %d %d", &state, &ppid, pgid, sid) != 4)
		return -1;
	return 0;
}

static void record(struct ids *w, pid_t pid)
{
	w->pid = pid;
	if (stat_ids(pid, &w->pgid, &w->sid))
		zdtm_die("stat %d", pid);
}

static void verify(const char *who, struct ids *w)
{
	pid_t pg, sid;

	if (stat_ids(w->pid, &pg, &sid)) {
		fail("%s %d: /proc stat unreadable", who, w->pid);
		return;
	}
	CHECK(pg == w->pgid && sid == w->sid, "%s %d: pgid %d sid %d, want %d %d", who, w->pid, pg, sid, w->pgid, w->sid);
	CHECK(getpgid(w->pid) == w->pgid, "%s %d: getpgid %d, want %d", who, w->pid, getpgid(w->pid), w->pgid);
	CHECK(getsid(w->pid) == w->sid, "%s %d: getsid %d, want %d", who, w->pid, getsid(w->pid), w->sid);
}

int main(void)
{
	struct ids ws, wg, wz1, wz2, wl, wself;
	int p[2], q[2], st;
	pid_t s, z2, l, kids[2];
	siginfo_t si;

	zdtm_init();
	if (pipe(p) || pipe(q))
		zdtm_die("pipe");
	s = fork();
	if (s == 0) {
		pid_t g, z1;

		zdtm_child_forget_ready();
		close(p[0]);
		setsid();
		g = fork();
		if (g == 0) {
			setpgid(0, 0);
			_exit(5);
		}
		z1 = fork();
		if (z1 == 0)
			_exit(6);
		memset(&si, 0, sizeof(si));
		waitid(P_PID, g, &si, WEXITED | WNOWAIT);
		waitid(P_PID, z1, &si, WEXITED | WNOWAIT);
		kids[0] = g;
		kids[1] = z1;
		if (write(p[1], kids, sizeof(kids)) != sizeof(kids))
			_exit(20);
		close(p[1]);
		close(q[1]);
		/* until the test process has checked our zombies (EOF on q) */
		if (read(q[0], &st, 1) != 0)
			_exit(23);
		/* reap both zombies with their statuses */
		if (waitpid(g, &st, 0) != g || !WIFEXITED(st) || WEXITSTATUS(st) != 5)
			_exit(21);
		if (waitpid(z1, &st, 0) != z1 || !WIFEXITED(st) || WEXITSTATUS(st) != 6)
			_exit(22);
		_exit(0);
	}
	close(p[1]);
	close(q[0]);
	if (s < 0 || read(p[0], kids, sizeof(kids)) != sizeof(kids))
		zdtm_die("session child did not start");
	close(p[0]);
	z2 = fork();
	if (z2 == 0) {
		setpgid(0, 0);
		_exit(7);
	}
	setpgid(z2, z2);
	l = fork();
	if (l == 0) {
		zdtm_child_forget_ready();
		zdtm_wait_go();
		_exit(0);
	}
	if (setpgid(l, z2))
		zdtm_die("setpgid live child into the zombie's group");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, z2, &si, WEXITED | WNOWAIT))
		zdtm_die("waitid");
	record(&ws, s);
	record(&wg, kids[0]);
	record(&wz1, kids[1]);
	record(&wz2, z2);
	record(&wl, l);
	record(&wself, getpid());
	if (ws.sid != s || wg.pgid != kids[0] || wg.sid != s || wz1.pgid != s || wz2.pgid != z2 || wl.pgid != z2)
		zdtm_die("set-up: ids not as planned");

	zdtm_ready();
	zdtm_wait_go();

	verify("self", &wself);
	verify("session leader", &ws);
	verify("zombie in own group", &wg);
	verify("zombie in leader's group", &wz1);
	verify("our zombie", &wz2);
	verify("live child in zombie's group", &wl);
	close(q[1]);
	if (waitpid(z2, &st, 0) != z2)
		fail("reap zombie: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 7, "zombie status %#x, want 7", st);
	if (waitpid(l, &st, 0) != l)
		fail("reap live child: %s", strerror(errno));
	if (waitpid(s, &st, 0) != s)
		fail("reap session leader: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "session leader status %#x (21/22: its zombies wrong, 23: read)", st);
	zdtm_finish();
}
