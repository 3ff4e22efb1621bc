/*
 * fd_locks: file locks held at checkpoint time.
 *   fd 60: flock(LOCK_EX) on locks.bin;
 *   fd 61: POSIX write lock on bytes [100,200) and read lock on [300,400)
 *          of posix.bin;
 *   fd 62: OFD write lock on bytes [0,10) of ofd.bin.
 * After go a freshly forked child (not part of the checkpoint) probes
 * them: flock is refused, F_GETLK reports our pid's write and read locks
 * and nothing in between, F_OFD_GETLK reports the OFD lock.
 */
#include "zdtm.h"
#include <sys/file.h>
#include <sys/wait.h>

static int mkfile(const char *name, int want)
{
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || ftruncate(fd, 4096) || dup2(fd, want) != want)
		zdtm_die("create %s", name);
	close(fd);
	return want;
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len)
{
	struct flock fl = { .l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len };
	return fcntl(fd, cmd, &fl);
}

static int getlk(int fd, int cmd, off_t start, struct flock *fl)
{
	*fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = start, .l_len = 1 };
	return fcntl(fd, cmd, fl);
}

static int probe(pid_t owner)
{
	struct flock fl;
	int bad = 0, fd;

	fd = open("locks.bin", O_RDWR);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) == 0 || errno != EWOULDBLOCK) {
		zdtm_log("child: flock on locks.bin was not refused");
		bad |= 1;
	}
	close(fd);
	fd = open("posix.bin", O_RDWR);
	if (getlk(fd, F_GETLK, 150, &fl) || fl.l_type != F_WRLCK || fl.l_pid != owner || fl.l_start != 100 || fl.l_len != 100) {
		zdtm_log("child: posix lock at 150: type %d pid %d range %lld+%lld, want write lock of %d on 100+100",
			 fl.l_type, fl.l_pid, (long long)fl.l_start, (long long)fl.l_len, owner);
		bad |= 2;
	}
	if (getlk(fd, F_GETLK, 350, &fl) || fl.l_type != F_RDLCK || fl.l_pid != owner) {
		zdtm_log("child: posix lock at 350: type %d pid %d, want read lock of %d", fl.l_type, fl.l_pid, owner);
		bad |= 4;
	}
	if (getlk(fd, F_GETLK, 250, &fl) || fl.l_type != F_UNLCK) {
		zdtm_log("child: unexpected lock at 250 (type %d)", fl.l_type);
		bad |= 8;
	}
	close(fd);
	fd = open("ofd.bin", O_RDWR);
	fl = (struct flock){ .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 5, .l_len = 1 };
	if (fcntl(fd, F_OFD_GETLK, &fl) || fl.l_type != F_WRLCK || fl.l_pid != -1) {
		zdtm_log("child: OFD lock at 5: type %d pid %d, want write lock pid -1", fl.l_type, fl.l_pid);
		bad |= 16;
	}
	close(fd);
	return bad;
}

int main(void)
{
	pid_t c;
	int st;

	zdtm_init();
	mkfile("locks.bin", 60);
	mkfile("posix.bin", 61);
	mkfile("ofd.bin", 62);
	if (flock(60, LOCK_EX))
		zdtm_die("flock");
	if (setlk(61, F_SETLK, F_WRLCK, 100, 100) || setlk(61, F_SETLK, F_RDLCK, 300, 100))
		zdtm_die("F_SETLK");
	if (setlk(62, F_OFD_SETLK, F_WRLCK, 0, 10))
		zdtm_die("F_OFD_SETLK");

	zdtm_ready();
	zdtm_wait_go();

	c = fork();
	if (c == 0)
		_exit(probe(getppid()));
	if (c < 0 || waitpid(c, &st, 0) != c)
		fail("fork/wait probe child: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "lock probe failed (mask %#x)", WEXITSTATUS(st));
	CHECK(flock(60, LOCK_UN) == 0, "flock unlock: %s", strerror(errno));
	zdtm_finish();
}
