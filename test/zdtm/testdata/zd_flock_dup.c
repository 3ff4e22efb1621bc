/*
 * zd_flock_dup (process tree): flock()s reached through descriptors other
 * than the one that took them.
 *   a.lock: fd 60 took LOCK_SH, fd 61 is dup(60) and fd 62 a second open
 *           of the file (no lock) in the test process;
 *   b.lock: the test process took LOCK_EX on fd 63, forked child C (which
 *           inherits the description) and closed its fd 63: only C holds
 *           the lock now.
 * After restore: LOCK_EX|LOCK_NB on fd 62 fails (the shared lock is held),
 * upgrading through fd 61 to LOCK_EX|LOCK_NB succeeds (60 and 61 are one
 * description, so it is the same lock), closing 60 keeps it (61 still has
 * the description), LOCK_UN through 61 releases it and then fd 62 gets it.
 * For b.lock a fresh open in the test process cannot take LOCK_EX|LOCK_NB
 * while C lives; /proc/locks shows one FLOCK WRITE lock on the file; C
 * exits after go, and then the lock is free.
 * Modelled on zdtm's file_locks03 (inherited flock) and flock on dup'd fds.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	if (fd != want)
		close(fd);
}

static int count_locks(ino_t ino)
{
	char buf[16384], *p, kind[16], mode[16], rw[16];
	unsigned long i;
	int n = 0, pid;

	if (zdtm_read_file("/proc/locks", buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strstr(p, "->") && strstr(p, "->") < strchr(p, '\n'))
			continue;
		if (sscanf(p, "%*d: %15s %15s %15s %d %*x:%*x:%lu", kind, mode, rw, &pid, &i) == 5 && i == ino &&
		    strcmp(kind, "FLOCK") == 0 && strcmp(rw, "WRITE") == 0)
			n++;
	}
	return n;
}

int main(void)
{
	int p[2], fd, st;
	struct stat sb;
	pid_t c;
	char ch;

	zdtm_init();
	place(open("a.lock", O_RDWR | O_CREAT, 0644), 60);
	if (flock(60, LOCK_SH))
		zdtm_die("flock a");
	place(dup(60), 61);
	place(open("a.lock", O_RDWR), 62);
	place(open("b.lock", O_RDWR | O_CREAT, 0644), 63);
	if (flock(63, LOCK_EX) || fstat(63, &sb) || pipe(p))
		zdtm_die("flock b");
	c = fork();
	if (c < 0)
		zdtm_die("fork");
	if (c == 0) {
		zdtm_child_forget_ready();
		close(60);
		close(61);
		close(62);
		close(p[1]);
		zdtm_wait_go();
		if (read(p[0], &ch, 1) < 0) /* the parent says when to go */
			_exit(3);
		_exit(flock(63, LOCK_EX | LOCK_NB) == 0 ? 0 : 4);
	}
	close(p[0]);
	close(63);

	zdtm_ready();
	zdtm_wait_go();

	errno = 0;
	CHECK(flock(62, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK,
	      "a.lock: fd 62 got LOCK_EX (%s): the shared lock is gone", strerror(errno));
	CHECK(flock(61, LOCK_EX | LOCK_NB) == 0, "a.lock: upgrade through dup'd fd 61 failed (%s): 60 and 61 are "
						 "not one description",
	      strerror(errno));
	close(60);
	errno = 0;
	CHECK(flock(62, LOCK_SH | LOCK_NB) == -1 && errno == EWOULDBLOCK,
	      "a.lock: lock gone after closing fd 60 (%s)", strerror(errno));
	CHECK(flock(61, LOCK_UN) == 0, "a.lock: LOCK_UN on 61: %s", strerror(errno));
	CHECK(flock(62, LOCK_EX | LOCK_NB) == 0, "a.lock: fd 62 cannot lock after LOCK_UN: %s", strerror(errno));

	CHECK(count_locks(sb.st_ino) == 1, "b.lock: %d FLOCK WRITE locks in /proc/locks, want 1",
	      count_locks(sb.st_ino));
	fd = open("b.lock", O_RDWR);
	errno = 0;
	CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK,
	      "b.lock: a fresh open got LOCK_EX while the child holds it (%s)", strerror(errno));
	if (write(p[1], "x", 1) != 1)
		fail("write pipe");
	close(p[1]);
	st = -1;
	CHECK(waitpid(c, &st, 0) == c && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "child: status %#x (4: it could not re-take its own lock)", st);
	CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0, "b.lock: still locked after the child exited (%s)",
	      strerror(errno));
	zdtm_finish();
}
