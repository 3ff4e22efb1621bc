/*
 * fd_shared_table: processes sharing one fd table (clone(CLONE_FILES)
 * without CLONE_VM). The test process P and its child C share a table; a
 * second child D (plain fork) has its own. Before the checkpoint C opened
 * a pipe and P a file: both see all. After restore C opens one more
 * descriptor and P must see it at the same number (the table is still
 * one), P closes one and C must see it closed, while D's table stays
 * its own.
 */
#include "zdtm.h"
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>

static int pipefd[2] = { -1, -1 };
static volatile int newfd = -1;
static volatile int step;
static char stack[65536] __attribute__((aligned(16)));

static int child_main(void *arg)
{
	(void)arg;
	if (pipe(pipefd))
		_exit(2);
	__atomic_store_n(&step, 1, __ATOMIC_RELEASE);
	zdtm_wait_go();
	/* C has its own memory: it tells P the number through the pipe */
	newfd = open("/dev/null", O_RDONLY);
	if (write(pipefd[1], (const void *)&newfd, sizeof(int)) != sizeof(int))
		_exit(3);
	/* P reads the number, then closes it: the close must reach C's table */
	for (int i = 0; i < 10000; i++) {
		if (fcntl(newfd, F_GETFD) == -1 && errno == EBADF)
			_exit(0);
		zdtm_sleep_ms(1);
	}
	_exit(4);
}

int main(void)
{
	int st, fd, got, pfds[2];
	pid_t c, d;
	struct stat s0, s1;

	zdtm_init();
	c = clone(child_main, stack + sizeof(stack), CLONE_FILES | SIGCHLD, NULL);
	if (c < 0)
		zdtm_die("clone(CLONE_FILES)");
	/* C's pipe() happened in C's memory; find it in the shared table by scanning */
	for (int i = 0; i < 5000; i++) {
		zdtm_sleep_ms(1);
		if (fcntl(4, F_GETFD) != -1 && fcntl(5, F_GETFD) != -1)
			break;
	}
	/* the ready pipe is fd 3; C's pipe took the lowest free numbers */
	pfds[0] = 4;
	pfds[1] = 5;
	if (fstat(pfds[0], &s0) || !S_ISFIFO(s0.st_mode))
		zdtm_die("child's pipe is not visible in the shared table");
	fd = open("/proc/self/exe", O_RDONLY);
	if (fd < 0)
		zdtm_die("open");
	d = fork();
	if (d == 0) {
		zdtm_child_forget_ready();
		close(fd); /* D's own table: P must keep fd */
		zdtm_wait_go();
		/* D's table is not P's: what C opens after go must not show here */
		zdtm_sleep_ms(200);
		_exit(fcntl(fd, F_GETFD) == -1 ? 0 : 1);
	}
	if (d < 0)
		zdtm_die("fork");

	zdtm_ready();
	zdtm_wait_go();

	/* a restored pipe is a new pipe (new inode): the same kind at the number */
	CHECK(fstat(pfds[0], &s1) == 0 && S_ISFIFO(s1.st_mode), "child's pipe lost from the shared table");
	CHECK(fcntl(fd, F_GETFD) != -1, "our file fd %d lost (closed by D in its own table?)", fd);
	if (read(pfds[0], &got, sizeof(got)) != sizeof(got))
		fail("read from child: %s", strerror(errno));
	else {
		CHECK(fcntl(got, F_GETFD) != -1, "fd %d the child opened after restore is not in our table", got);
		close(got);
	}
	if (waitpid(c, &st, 0) != c)
		fail("waitpid C: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "C status %#x (4: our close did not reach its table)", st);
	if (waitpid(d, &st, 0) != d)
		fail("waitpid D: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "D status %#x (its table is not its own)", st);
	zdtm_finish();
}
