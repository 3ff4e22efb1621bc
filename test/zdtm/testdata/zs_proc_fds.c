/*
 * zs_proc_fds (process tree): descriptors of /proc files of the tree.
 *   fd 20: /proc/self/exe, offset 0 (never read);
 *   fd 21: /proc/self/exe, offset 4100;
 *   fd 22: /proc/self/status (opened through "self": the link names our pid);
 *   fd 23: /proc/self as a directory (O_DIRECTORY);
 *   fd 24: /proc/C/stat of child C, opened by the parent;
 *   child C's fd 25: /proc/P/comm of its parent P (named "zs-parent").
 * After restore: fds 20 and 21 keep their offsets (0 and 4100) and read the
 * ELF header / the executable's bytes at 4100; fd 22 reads our own Pid;
 * openat(23, "comm") reads our name; fd 24 reads the child's pid as the
 * first field of its stat; C's fd 25 reads "zs-parent".
 * Modelled on zdtm's fd_offset, proc-self and child_opened_proc.
 */
#include "zdtm.h"
#include <sys/prctl.h>
#include <sys/wait.h>

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

static ssize_t pread_all(int fd, char *buf, size_t len)
{
	ssize_t n = pread(fd, buf, len - 1, 0);
	buf[n > 0 ? n : 0] = 0;
	return n;
}

int main(void)
{
	char path[64], buf[4096], want[16];
	int sync[2], fd, st;
	pid_t c;
	off_t off;
	ssize_t n;

	zdtm_init();
	if (prctl(PR_SET_NAME, "zs-parent"))
		zdtm_die("PR_SET_NAME");
	if (pipe(sync))
		zdtm_die("pipe");
	c = fork();
	if (c == 0) {
		zdtm_child_forget_ready();
		close(sync[0]);
		snprintf(path, sizeof(path), "/proc/%d/comm", getppid());
		place(open(path, O_RDONLY), 25);
		if (write(sync[1], "c", 1) != 1)
			_exit(3);
		close(sync[1]);
		zdtm_wait_go();
		n = pread_all(25, buf, sizeof(buf));
		if (n != 10 || strcmp(buf, "zs-parent\n") != 0) {
			zdtm_log("child: fd 25 read %zd \"%s\", want \"zs-parent\\n\"", n, buf);
			_exit(1);
		}
		_exit(0);
	}
	if (c < 0)
		zdtm_die("fork");
	close(sync[1]);
	if (read(sync[0], buf, 1) != 1)
		zdtm_die("child set-up");
	close(sync[0]);

	place(open("/proc/self/exe", O_RDONLY), 20);
	place(open("/proc/self/exe", O_RDONLY), 21);
	if (lseek(21, 4100, SEEK_SET) != 4100)
		zdtm_die("lseek 21");
	place(open("/proc/self/status", O_RDONLY), 22);
	place(open("/proc/self", O_RDONLY | O_DIRECTORY), 23);
	snprintf(path, sizeof(path), "/proc/%d/stat", c);
	place(open(path, O_RDONLY), 24);

	zdtm_ready();
	zdtm_wait_go();

	off = lseek(20, 0, SEEK_CUR);
	CHECK(off == 0, "fd 20 (/proc/self/exe) offset %lld, want 0", (long long)off);
	n = read(20, buf, 4);
	CHECK(n == 4 && memcmp(buf, "\177ELF", 4) == 0, "fd 20 does not read an ELF header");
	off = lseek(21, 0, SEEK_CUR);
	CHECK(off == 4100, "fd 21 (/proc/self/exe) offset %lld, want 4100", (long long)off);
	fd = open("/proc/self/exe", O_RDONLY);
	if (fd >= 0) {
		char a[64], b[64];
		CHECK(pread(fd, a, 64, 4100) == 64 && read(21, b, 64) == 64 && memcmp(a, b, 64) == 0,
		      "fd 21 does not read the executable's bytes at 4100");
		close(fd);
	}
	n = pread_all(22, buf, sizeof(buf));
	snprintf(want, sizeof(want), "\nPid:\t%d\n", getpid());
	CHECK(n > 0 && strstr(buf, want), "fd 22 (/proc/self/status) does not read Pid %d", getpid());
	fd = openat(23, "comm", O_RDONLY);
	if (fd < 0)
		fail("openat(fd 23, comm): %s", strerror(errno));
	else {
		n = pread_all(fd, buf, sizeof(buf));
		CHECK(n == 10 && strcmp(buf, "zs-parent\n") == 0, "fd 23/comm reads \"%s\"", buf);
		close(fd);
	}
	n = pread_all(24, buf, sizeof(buf));
	CHECK(n > 0 && atoi(buf) == c, "fd 24 (/proc/%d/stat) reads pid %d", c, n > 0 ? atoi(buf) : -1);
	if (waitpid(c, &st, 0) != c)
		fail("waitpid child: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x, want 0 (see its log)", st);
	zdtm_finish();
}
