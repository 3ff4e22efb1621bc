/*
 * fd_locks_tree: file locks as a real tree holds them. The parent P takes
 * flock(LOCK_SH) on a.file through two separate descriptions, and
 * LOCK_EX on b.file through a description it then shares with its child C
 * by fork; C takes POSIX read and write locks on ranges of c.file and an
 * OFD lock on d.file of its own. After restore /proc/locks lists for these
 * files exactly the locks it listed before — kind, mode, type, owner pid
 * and range, line for line — and a fresh process sees the same conflicts.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>

static ino_t inos[4];

static int mk(const char *name, int i)
{
	struct stat st;
	int fd = open(name, O_RDWR | O_CREAT, 0644);
	if (fd < 0 || ftruncate(fd, 4096) || fstat(fd, &st))
		zdtm_die("create %s", name);
	inos[i] = st.st_ino;
	return fd;
}

/* our lines of /proc/locks without the leading lock number, sorted */
static int ours(char *out, size_t size)
{
	char buf[65536], *lines[256], *p, *save = NULL;
	int n = 0;
	size_t used = 0;

	if (zdtm_read_file("/proc/locks", buf, sizeof(buf)) < 0)
		return -1;
	for (p = strtok_r(buf, "\n", &save); p && n < 256; p = strtok_r(NULL, "\n", &save)) {
		char *q = strchr(p, ':');
		unsigned long long ino;
		int keep = 0;
		char *f;
		if (!q || strstr(p, "->"))
			continue;
		q++;
		while (*q == ' ')
			q++;
		/* fields: KIND MODE TYPE PID MAJ:MIN:INO START END */
		f = q;
		for (int k = 0; k < 4 && f; k++) {
			f = strchr(f, ' ');
			while (f && *f == ' ')
				f++;
		}
		if (f && sscanf(f, "%*x:%*x:%llu", &ino) == 1)
			for (int i = 0; i < 4; i++)
				keep |= ino == inos[i];
		if (keep)
			lines[n++] = q;
	}
	for (int i = 0; i < n; i++)
		for (int j = i + 1; j < n; j++)
			if (strcmp(lines[j], lines[i]) < 0) {
				char *t = lines[i];
				lines[i] = lines[j];
				lines[j] = t;
			}
	out[0] = 0;
	for (int i = 0; i < n; i++)
		used += snprintf(out + used, size - used, "%s|", lines[i]);
	return n;
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	return fcntl(fd, cmd, &fl);
}

/* a fresh process probes the conflicts: returns a bit set */
static int probe(void)
{
	int p[2], r = 0;
	pid_t k;

	if (pipe(p))
		return -1;
	k = fork();
	if (k == 0) {
		int a = open("a.file", O_RDWR), b = open("b.file", O_RDWR), c = open("c.file", O_RDWR),
		    d = open("d.file", O_RDWR);
		int v = 0;
		v |= (flock(a, LOCK_SH | LOCK_NB) == 0) << 0;  /* shared: allowed */
		v |= (flock(a, LOCK_EX | LOCK_NB) == 0) << 1;  /* refused */
		v |= (flock(b, LOCK_SH | LOCK_NB) == 0) << 2;  /* refused */
		v |= (setlk(c, F_SETLK, F_RDLCK, 0, 10) == 0) << 3;   /* read over read: allowed */
		v |= (setlk(c, F_SETLK, F_WRLCK, 0, 10) == 0) << 4;   /* refused */
		v |= (setlk(c, F_SETLK, F_RDLCK, 100, 10) == 0) << 5; /* over write: refused */
		v |= (setlk(c, F_SETLK, F_WRLCK, 50, 10) == 0) << 6;  /* gap: allowed */
		v |= (setlk(d, F_OFD_SETLK, F_RDLCK, 0, 1) == 0) << 7; /* over OFD write: refused */
		if (write(p[1], &v, sizeof(v)) != sizeof(v))
			_exit(1);
		_exit(0);
	}
	close(p[1]);
	if (read(p[0], &r, sizeof(r)) != sizeof(r))
		r = -1;
	close(p[0]);
	waitpid(k, NULL, 0);
	return r;
}

int main(void)
{
	char before[8192], after[8192];
	int a1, a2, b, st, q[2], r0, r1;
	pid_t c;
	char x;

	zdtm_init();
	a1 = mk("a.file", 0);
	a2 = open("a.file", O_RDWR);
	b = mk("b.file", 1);
	close(mk("c.file", 2));
	close(mk("d.file", 3));
	if (flock(a1, LOCK_SH) || flock(a2, LOCK_SH) || flock(b, LOCK_EX))
		zdtm_die("flock");
	if (pipe(q))
		zdtm_die("pipe");
	c = fork();
	if (c == 0) {
		int cf, df;
		zdtm_child_forget_ready();
		close(q[1]);
		cf = open("c.file", O_RDWR);
		df = open("d.file", O_RDWR);
		if (setlk(cf, F_SETLK, F_RDLCK, 0, 20) || setlk(cf, F_SETLK, F_WRLCK, 100, 50) ||
		    setlk(df, F_OFD_SETLK, F_WRLCK, 0, 0))
			_exit(2);
		/* keep b (shared with P) and the locks until P has checked */
		_exit(read(q[0], &x, 1) == 0 ? 0 : 3);
	}
	close(q[0]);
	for (int i = 0; i < 5000 && ours(before, sizeof(before)) < 6; i++)
		zdtm_sleep_ms(1);
	if (ours(before, sizeof(before)) != 6)
		zdtm_die("set-up: %d lock lines: %s", ours(before, sizeof(before)), before);
	r0 = probe();
	if (r0 != (1 << 0 | 1 << 3 | 1 << 6))
		zdtm_die("set-up: conflicts %#x", r0);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(ours(after, sizeof(after)) == 6 && strcmp(before, after) == 0, "/proc/locks now: %s; was: %s", after, before);
	r1 = probe();
	CHECK(r1 == r0, "conflicts %#x, want %#x", r1, r0);
	close(q[1]);
	if (waitpid(c, &st, 0) != c)
		fail("waitpid: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	zdtm_finish();
}
