/*
 * tree_session_order: a child that starts a session after it forked. C
 * forks D (D stays in our session), then calls setsid() and forks E (E is
 * in C's session). After restore D is still in the test process's session
 * (not C's, as cloning D from a restored C that already called setsid would
 * make it), E and C in C's, each as getsid says; pgids too. And a group
 * that is not inherited: F makes its own group and forks G, which goes
 * back into our group (led from outside the tree, the harness's): after
 * restore G is in our group again, F in its own.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/wait.h>

int main(void)
{
	int p[2], q[2], pf[2], st;
	pid_t c, f, g = 0, kids[2], ourpg;
	char x;

	zdtm_init();
	/* D and E live until we close q (EOF): we check them first */
	if (pipe(p) || pipe(q))
		zdtm_die("pipe");
	c = fork();
	if (c == 0) {
		pid_t d, e;

		zdtm_child_forget_ready();
		close(q[1]);
		d = fork();
		if (d == 0) {
			_exit(read(q[0], &x, 1) == 0 ? 0 : 1);
		}
		if (setsid() < 0)
			_exit(30);
		e = fork();
		if (e == 0) {
			_exit(read(q[0], &x, 1) == 0 ? 0 : 1);
		}
		kids[0] = d;
		kids[1] = e;
		if (write(p[1], kids, sizeof(kids)) != sizeof(kids))
			_exit(31);
		if (waitpid(d, &st, 0) != d || st != 0 || waitpid(e, &st, 0) != e || st != 0)
			_exit(32);
		_exit(0);
	}
	ourpg = getpgid(0);
	if (pipe(pf))
		zdtm_die("pipe");
	f = fork();
	if (f == 0) {
		zdtm_child_forget_ready();
		close(q[1]);
		setpgid(0, 0);
		g = fork();
		if (g == 0) {
			if (setpgid(0, ourpg))
				_exit(40);
			_exit(read(q[0], &x, 1) == 0 ? 0 : 1);
		}
		if (write(pf[1], &g, sizeof(g)) != sizeof(g))
			_exit(41);
		_exit(waitpid(g, &st, 0) == g && st == 0 ? 0 : 42);
	}
	close(p[1]);
	close(q[0]);
	close(pf[1]);
	if (f < 0 || read(pf[0], &g, sizeof(g)) != sizeof(g))
		zdtm_die("F did not start");
	for (int i = 0; i < 5000 && getpgid(g) != ourpg; i++)
		zdtm_sleep_ms(1);
	if (getpgid(f) != f || getpgid(g) != ourpg)
		zdtm_die("set-up: groups not as planned");
	if (c < 0 || read(p[0], kids, sizeof(kids)) != sizeof(kids))
		zdtm_die("children did not start");
	if (getsid(kids[0]) != getsid(0) || getsid(kids[1]) != c || getsid(c) != c)
		zdtm_die("set-up: sessions not as planned");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(getsid(kids[0]) == getsid(0), "D %d: session %d, want ours %d", kids[0], getsid(kids[0]), getsid(0));
	CHECK(getpgid(kids[0]) == getpgid(0), "D %d: group %d, want ours %d", kids[0], getpgid(kids[0]), getpgid(0));
	CHECK(getsid(c) == c && getpgid(c) == c, "C %d: session %d group %d, want its own", c, getsid(c), getpgid(c));
	CHECK(getsid(kids[1]) == c && getpgid(kids[1]) == c, "E %d: session %d group %d, want C's %d", kids[1],
	      getsid(kids[1]), getpgid(kids[1]), c);
	CHECK(getpgid(f) == f, "F %d: group %d, want its own", f, getpgid(f));
	CHECK(getpgid(g) == ourpg, "G %d: group %d, want ours %d", g, getpgid(g), ourpg);
	close(q[1]);
	if (waitpid(f, &st, 0) != f)
		fail("waitpid F: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "F status %#x", st);
	if (waitpid(c, &st, 0) != c)
		fail("waitpid C: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "C status %#x", st);
	zdtm_finish();
}
