/*
 * fd_locks_owners: file locks in a process tree, as /proc/locks shows them.
 *   f1 (fd 60): flock LOCK_EX taken by the parent before fork: one lock
 *               on a description parent and child share; its owner is
 *               the parent;
 *   f2 (fds 61, 62): two descriptions of one file, each with flock
 *               LOCK_SH (read): two read locks of the parent;
 *   f3: the child's POSIX write lock [0,10) and read lock [20,30) (fd 63),
 *       and the parent's POSIX read lock [40,50) (fd 65);
 *   f4 (fd 64, the child's): an OFD read lock on [0,100).
 * After restore /proc/locks lists exactly these locks with the same
 * owners (the flock ones by the PID of the process that took them), and
 * the conflicts are the same: another open of f1 cannot flock it, f2
 * accepts another shared flock but no exclusive one, F_GETLK names the
 * child as the POSIX owner, F_OFD_GETLK sees the read lock.
 */
#include "zdtm.h"
#include <sys/file.h>
#include <sys/wait.h>

struct want {
	const char *kind, *type;
	int file;		/* index into ino[] */
	pid_t pid;		/* 0: the parent, 1: the child, -1 */
	long start, end;	/* POSIX/OFD only; -2: any */
	int seen;
};

static ino_t ino[5];

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	return fcntl(fd, cmd, &fl);
}

static int mkfile(const char *name, int want)
{
	int fd = open(name, O_RDWR | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, 4096) || dup2(fd, want) != want)
		zdtm_die("create %s", name);
	close(fd);
	return want;
}

/* check_proc_locks matches every lock of our files in /proc/locks. */
static void check_proc_locks(struct want *w, int n, pid_t parent, pid_t child)
{
	static char buf[65536];
	char *line, *save;
	int i;

	if (zdtm_read_file("/proc/locks", buf, sizeof(buf)) < 0) {
		fail("read /proc/locks: %s", strerror(errno));
		return;
	}
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char kind[16], adv[16], type[16], end[32];
		unsigned maj, min;
		unsigned long long lino;
		long start;
		int pid, f, matched = 0;

		if (strstr(line, "->"))
			continue;
		if (sscanf(line, "%*d: %15s %15s %15s %d %x:%x:%llu %ld %31s", kind, adv, type, &pid, &maj, &min,
			   &lino, &start, end) != 9)
			continue;
		for (f = 1; f <= 4 && ino[f] != (ino_t)lino; f++)
			;
		if (f > 4)
			continue;
		for (i = 0; i < n; i++) {
			pid_t wp = w[i].pid == 0 ? parent : w[i].pid == 1 ? child : -1;
			long e = strcmp(end, "EOF") == 0 ? -1 : atol(end);
			if (w[i].seen || w[i].file != f || strcmp(w[i].kind, kind) || strcmp(w[i].type, type) || wp != pid)
				continue;
			if (w[i].start != -2 && (w[i].start != start || w[i].end != e))
				continue;
			w[i].seen = matched = 1;
			break;
		}
		CHECK(matched, "unexpected lock in /proc/locks: \"%s\" (parent %d, child %d)", line, parent, child);
	}
	for (i = 0; i < n; i++)
		CHECK(w[i].seen, "missing from /proc/locks: %s %s of %s on f%d", w[i].kind, w[i].type,
		      w[i].pid == 0 ? "the parent" : w[i].pid == 1 ? "the child" : "an OFD", w[i].file);
}

int main(void)
{
	struct want w[] = {
		{ "FLOCK", "WRITE", 1, 0, -2, -2 },
		{ "FLOCK", "READ", 2, 0, -2, -2 },
		{ "FLOCK", "READ", 2, 0, -2, -2 },
		{ "POSIX", "WRITE", 3, 1, 0, 9 },
		{ "POSIX", "READ", 3, 1, 20, 29 },
		{ "POSIX", "READ", 3, 0, 40, 49 },
		{ "OFDLCK", "READ", 4, -1, 0, 99 },
	};
	int ready[2], done[2], i, fd, st;
	struct flock fl;
	struct stat sb;
	pid_t child;
	char c;

	zdtm_init();
	mkfile("f1", 60);
	if (flock(60, LOCK_EX))
		zdtm_die("flock f1");
	mkfile("f2", 61);
	mkfile("f2", 62);
	if (flock(61, LOCK_SH) || flock(62, LOCK_SH))
		zdtm_die("flock f2");
	mkfile("f3", 65);
	mkfile("f4", 66);
	close(66);
	for (i = 1; i <= 4; i++) {
		char name[4] = { 'f', (char)('0' + i), 0 };
		if (stat(name, &sb))
			zdtm_die("stat %s", name);
		ino[i] = sb.st_ino;
	}
	if (pipe(ready) || pipe(done))
		zdtm_die("pipe");
	child = fork();
	if (child < 0)
		zdtm_die("fork");
	if (child == 0) {
		zdtm_child_forget_ready();
		close(ready[0]);
		close(done[1]);
		close(65);
		mkfile("f3", 63);
		mkfile("f4", 64);
		if (setlk(63, F_SETLK, F_WRLCK, 0, 10) || setlk(63, F_SETLK, F_RDLCK, 20, 10) ||
		    setlk(64, F_OFD_SETLK, F_RDLCK, 0, 100))
			zdtm_die("child locks");
		if (write(ready[1], "c", 1) != 1)
			zdtm_die("child ready");
		close(ready[1]);
		while (read(done[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(ready[1]);
	close(done[0]);
	if (read(ready[0], &c, 1) != 1)
		zdtm_die("child set-up");
	close(ready[0]);
	if (setlk(65, F_SETLK, F_RDLCK, 40, 10))
		zdtm_die("parent posix lock");

	zdtm_ready();
	zdtm_wait_go();

	check_proc_locks(w, sizeof(w) / sizeof(w[0]), getpid(), child);
	fd = open("f1", O_RDWR);
	CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK, "f1: flock of another open was not refused");
	close(fd);
	fd = open("f2", O_RDWR);
	CHECK(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == -1 && errno == EWOULDBLOCK, "f2: exclusive flock was not refused");
	CHECK(flock(fd, LOCK_SH | LOCK_NB) == 0, "f2: shared flock refused: %s", strerror(errno));
	close(fd);
	fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 1 };
	CHECK(fcntl(65, F_GETLK, &fl) == 0 && fl.l_type == F_WRLCK && fl.l_pid == child,
	      "f3 at 5: F_GETLK type %d pid %d, want the child's (%d) write lock", fl.l_type, fl.l_pid, child);
	fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 25, .l_len = 1 };
	CHECK(fcntl(65, F_GETLK, &fl) == 0 && fl.l_type == F_RDLCK && fl.l_pid == child,
	      "f3 at 25: F_GETLK type %d pid %d, want the child's (%d) read lock", fl.l_type, fl.l_pid, child);
	fd = open("f4", O_RDWR);
	fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 50, .l_len = 1 };
	CHECK(fd >= 0 && fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type == F_RDLCK && fl.l_pid == -1,
	      "f4 at 50: F_OFD_GETLK type %d pid %d, want an OFD read lock", fl.l_type, fl.l_pid);
	CHECK(setlk(fd, F_OFD_SETLK, F_RDLCK, 50, 1) == 0, "f4: a second OFD read lock was refused");
	close(fd);

	close(done[1]);
	CHECK(waitpid(child, &st, 0) == child && WIFEXITED(st) && WEXITSTATUS(st) == 0, "child ended with %#x", st);
	zdtm_finish();
}
