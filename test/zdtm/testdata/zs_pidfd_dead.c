/*
 * zs_pidfd_dead (process tree): pidfds of children that are gone or going,
 * and a descriptor taken with pidfd_getfd.
 *   fd 20: pidfd of child D, which exited (status 6) and was reaped;
 *   fd 21: pidfd of child Z, which exited (status 7) and is an unreaped
 *          zombie;
 *   fd 22: pidfd_getfd of live child L's fd 55, the read end of a pipe
 *          holding "via-getfd" (our own copies of the pipe are closed).
 * After restore: fdinfo Pid of fd 20 is -1 (a dead process), poll on it
 * reports POLLIN, pidfd_send_signal through it fails with ESRCH and no
 * process was made up for it; fd 21's Pid is Z's pid, poll gives POLLIN and
 * waitid(P_PIDFD, 21) reaps Z with status 7; fd 22 reads "via-getfd"; L is
 * killed through its own pidfd (fd 23) and reaped.
 * With the argument "zombie" (case zs_pidfd_zombie) fd 20 is left out:
 * ferry refuses the pidfd of a reaped process, and the rest is checked.
 * Modelled on zdtm's pidfd_dead, pidfd_zombie and fd_from_pidfd.
 */
#include "zdtm.h"
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static int pidfd_getfd(int pfd, int fd) { return (int)syscall(SYS_pidfd_getfd, pfd, fd, 0); }
static int pidfd_send(int pfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pfd, sig, NULL, 0); }

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

static int fdinfo_pid(int fd)
{
	char v[32];
	if (zdtm_fdinfo_field(fd, "Pid", v, sizeof(v)))
		return -1000;
	return atoi(v);
}

static int pollin(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

int main(int argc, char **argv)
{
	int dead = !(argc > 1 && strcmp(argv[1], "zombie") == 0);
	pid_t d = 0, z, l;
	int p[2], st;
	siginfo_t si;
	char buf[32];
	ssize_t n;

	zdtm_init();
	if (dead) {
		d = fork();
		if (d == 0) {
			zdtm_child_forget_ready();
			zdtm_sleep_ms(20);
			_exit(6);
		}
		if (d < 0)
			zdtm_die("fork");
		place(pidfd_open(d), 20);
		if (waitpid(d, &st, 0) != d || !WIFEXITED(st) || WEXITSTATUS(st) != 6)
			zdtm_die("reap D");
	}
	z = fork();
	if (z == 0) {
		zdtm_child_forget_ready();
		_exit(7);
	}
	if (z < 0)
		zdtm_die("fork");
	place(pidfd_open(z), 21);
	memset(&si, 0, sizeof(si));
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT))
		zdtm_die("waitid Z");
	if (pipe(p))
		zdtm_die("pipe");
	zdtm_write_all(p[1], "via-getfd", 9);
	l = fork();
	if (l == 0) {
		zdtm_child_forget_ready();
		if (dup2(p[0], 55) != 55)
			_exit(1);
		close(p[0]);
		close(p[1]);
		zdtm_wait_go();
		zdtm_sleep_ms(10000); /* killed by the parent long before */
		_exit(0);
	}
	if (l < 0)
		zdtm_die("fork");
	place(pidfd_open(l), 23);
	close(p[0]);
	close(p[1]);
	/* wait until L has its fd 55 */
	for (n = 0; n < 400; n++) {
		int fd = pidfd_getfd(23, 55);
		if (fd >= 0) {
			place(fd, 22);
			break;
		}
		zdtm_sleep_ms(5);
	}
	if (fcntl(22, F_GETFD) == -1)
		zdtm_die("pidfd_getfd");

	zdtm_ready();
	zdtm_wait_go();

	if (dead) {
		CHECK(fdinfo_pid(20) == -1, "fd 20 (reaped child's pidfd) fdinfo Pid %d, want -1", fdinfo_pid(20));
		CHECK(pollin(20), "fd 20 does not poll readable (the process exited)");
		errno = 0;
		CHECK(pidfd_send(20, 0) == -1 && errno == ESRCH, "pidfd_send_signal(fd 20): %s, want ESRCH", strerror(errno));
		CHECK(kill(d, 0) == -1 && errno == ESRCH, "a process %d exists again", d);
	}

	CHECK(fdinfo_pid(21) == z, "fd 21 (zombie's pidfd) fdinfo Pid %d, want %d", fdinfo_pid(21), z);
	CHECK(pollin(21), "fd 21 does not poll readable (the zombie exited)");
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, 21, &si, WEXITED))
		fail("waitid(P_PIDFD, 21): %s", strerror(errno));
	else
		CHECK(si.si_pid == z && si.si_code == CLD_EXITED && si.si_status == 7,
		      "waitid(P_PIDFD, 21) gave pid %d code %d status %d, want %d exited 7", si.si_pid, si.si_code,
		      si.si_status, z);

	memset(buf, 0, sizeof(buf));
	n = read(22, buf, sizeof(buf) - 1);
	CHECK(n == 9 && strcmp(buf, "via-getfd") == 0, "fd 22 read %zd \"%s\", want \"via-getfd\"", n, buf);
	if (pidfd_send(23, SIGKILL))
		fail("pidfd_send_signal(fd 23, SIGKILL): %s", strerror(errno));
	if (waitpid(l, &st, 0) != l)
		fail("reap L: %s", strerror(errno));
	else
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "L status %#x, want SIGKILL", st);
	zdtm_finish();
}
