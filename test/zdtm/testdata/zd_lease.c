/*
 * zd_lease: file leases. fd 10 holds a read lease (F_RDLCK) on r.file
 * (opened O_RDONLY); fd 11 a write lease (F_WRLCK) on w.file (opened
 * O_RDWR, no other open). A SIGIO handler counts lease-break signals.
 * ferry has no lease support: the dump must either refuse naming fd 10/11
 * and the lease, leaving the process untouched, or restore the leases.
 * Either way, after go: no lease was broken (no SIGIO: the tool did not
 * open the files in a conflicting way), F_GETLEASE on fd 10 and 11 still
 * gives F_RDLCK and F_WRLCK, and a child opening w.file for reading
 * triggers a lease break signal here.
 * Modelled on zdtm's file_lease00 and file_lease01.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/wait.h>

static volatile int nsigio;

static void on_sigio(int sig)
{
	(void)sig;
	nsigio++;
}

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

int main(void)
{
	struct sigaction sa;
	int fd, l10, l11, i;
	pid_t c;

	zdtm_init();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigio;
	sigaction(SIGIO, &sa, NULL);
	fd = open("r.file", O_RDWR | O_CREAT, 0644);
	if (fd < 0 || write(fd, "r", 1) != 1)
		zdtm_die("r.file");
	close(fd);
	fd = open("w.file", O_RDWR | O_CREAT, 0644);
	if (fd < 0 || write(fd, "w", 1) != 1)
		zdtm_die("w.file");
	close(fd);
	place(open("r.file", O_RDONLY), 10);
	place(open("w.file", O_RDWR), 11);
	if (fcntl(10, F_SETLEASE, F_RDLCK) || fcntl(11, F_SETLEASE, F_WRLCK))
		zdtm_die("F_SETLEASE");

	zdtm_ready();
	zdtm_wait_go();

	l10 = fcntl(10, F_GETLEASE);
	l11 = fcntl(11, F_GETLEASE);
	CHECK(nsigio == 0, "%d lease-break signals came during the checkpoint", nsigio);
	CHECK(l10 == F_RDLCK, "fd 10: F_GETLEASE %d, want F_RDLCK (%d)", l10, F_RDLCK);
	CHECK(l11 == F_WRLCK, "fd 11: F_GETLEASE %d, want F_WRLCK (%d)", l11, F_WRLCK);
	if (l11 == F_WRLCK) {
		c = fork();
		if (c == 0) {
			fd = open("w.file", O_RDONLY | O_NONBLOCK);
			_exit(fd < 0 && errno == EWOULDBLOCK ? 0 : 1);
		}
		for (i = 0; i < 1000 && nsigio == 0; i++)
			zdtm_sleep_ms(1);
		CHECK(nsigio >= 1, "no lease-break signal when another process opened w.file");
		fcntl(11, F_SETLEASE, F_UNLCK);
		if (c > 0)
			waitpid(c, NULL, 0);
	}
	zdtm_finish();
}
