/*
 * fd_pidfd_foreign: a pidfd (fd 10) of a process outside the tree (the
 * parent, the harness). No restore can make it refer to that process
 * elsewhere: ferry must refuse naming the fd, and the process keeps
 * running untouched — afterwards its pidfd still refers to its parent.
 */
#include "zdtm.h"

int main(void)
{
	char path[64], val[64];
	pid_t pp = getppid();
	int fd;

	zdtm_init();
	fd = syscall(SYS_pidfd_open, pp, 0);
	if (fd < 0 || dup2(fd, 10) != 10)
		zdtm_die("pidfd_open: %s", strerror(errno));
	close(fd);

	zdtm_ready();
	zdtm_wait_go();

	snprintf(path, sizeof(path), "/proc/self/fdinfo/10");
	CHECK(zdtm_status_field(path, "Pid", val, sizeof(val)) == 0 && atoi(val) == pp, "pidfd now refers to %s, want %d", val, pp);
	zdtm_finish();
}
