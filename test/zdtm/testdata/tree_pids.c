/*
 * tree_pids (process tree): sessions, groups and parentage.
 *   root  calls setsid(): its own session and group;
 *   A     child of root, own process group (setpgid);
 *   A1    child of A, in A's group;
 *   B     child of root, in root's group.
 * After go every process checks its pid, ppid, pgid and sid; root also
 * checks getpgid/getsid of its children; children exit with 0 or 1 and
 * every parent reaps its children with the expected status.
 */
#include "zdtm.h"
#include <sys/wait.h>

static int sync_fd[2];

struct ids {
	pid_t pid, ppid, pgid, sid;
};

static struct ids mine(void)
{
	return (struct ids){ getpid(), getppid(), getpgid(0), getsid(0) };
}

static int verify(const char *who, struct ids want)
{
	struct ids got = mine();

	if (memcmp(&got, &want, sizeof(got)) == 0)
		return 0;
	zdtm_log("%s: pid/ppid/pgid/sid %d/%d/%d/%d, want %d/%d/%d/%d", who, got.pid, got.ppid, got.pgid, got.sid,
		 want.pid, want.ppid, want.pgid, want.sid);
	return 1;
}

static void synced(void)
{
	if (write(sync_fd[1], "s", 1) != 1)
		_exit(3);
	close(sync_fd[1]);
}

static int reap(pid_t c, const char *who)
{
	int st;

	if (waitpid(c, &st, 0) != c) {
		zdtm_log("%s: waitpid(%d): %s", who, c, strerror(errno));
		return 1;
	}
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		zdtm_log("%s: child %d ended with status %#x", who, c, st);
		return 1;
	}
	return 0;
}

static void child_a1(void)
{
	struct ids want = mine();

	synced();
	zdtm_wait_go();
	_exit(verify("A1", want));
}

static void child_a(void)
{
	struct ids want;
	pid_t a1;
	int bad;

	if (setpgid(0, 0))
		_exit(2);
	a1 = fork();
	if (a1 < 0)
		_exit(2);
	if (a1 == 0)
		child_a1();
	want = mine();
	synced();
	zdtm_wait_go();
	bad = verify("A", want);
	if (getpgid(a1) != getpid()) {
		zdtm_log("A: A1's group %d, want %d", getpgid(a1), getpid());
		bad = 1;
	}
	bad |= reap(a1, "A");
	_exit(bad);
}

static void child_b(void)
{
	struct ids want = mine();

	synced();
	zdtm_wait_go();
	_exit(verify("B", want));
}

int main(void)
{
	struct ids want;
	pid_t a, b;
	char buf[3];
	int n = 0, r;

	zdtm_init();
	if (setsid() < 0)
		zdtm_die("setsid");
	if (pipe(sync_fd))
		zdtm_die("pipe");
	a = fork();
	if (a == 0) {
		zdtm_child_forget_ready();
		close(sync_fd[0]);
		child_a();
	}
	b = fork();
	if (b == 0) {
		zdtm_child_forget_ready();
		close(sync_fd[0]);
		child_b();
	}
	if (a < 0 || b < 0)
		zdtm_die("fork");
	close(sync_fd[1]);
	while (n < 3 && (r = read(sync_fd[0], buf, sizeof(buf))) > 0)
		n += r;
	if (n != 3)
		zdtm_die("children did not start");
	close(sync_fd[0]);
	want = mine();
	CHECK(want.pgid == getpid() && want.sid == getpid(), "setsid did not make us the leader");

	zdtm_ready();
	zdtm_wait_go();

	if (verify("root", want))
		fail("root ids changed (see above)");
	CHECK(getpgid(a) == a && getsid(a) == getpid(), "A: group %d session %d, want %d %d", getpgid(a), getsid(a), a,
	      getpid());
	CHECK(getpgid(b) == getpid() && getsid(b) == getpid(), "B: group %d session %d, want %d %d", getpgid(b),
	      getsid(b), getpid(), getpid());
	CHECK(reap(a, "root") == 0, "child A (or A1) failed");
	CHECK(reap(b, "root") == 0, "child B failed");
	zdtm_finish();
}
