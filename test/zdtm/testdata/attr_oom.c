/*
 * attr_oom: oom_score_adj of a process and of its child. The parent sets
 * 345, the child 600 (raising needs no privilege; lowering below the minimum would need CAP_SYS_RESOURCE, which this machine lacks). After restore both read
 * /proc/self/oom_score_adj back.
 */
#include "zdtm.h"
#include <sys/wait.h>

static int set_adj(int v)
{
	char buf[32];
	int fd = open("/proc/self/oom_score_adj", O_WRONLY), n, r;

	if (fd < 0)
		return -1;
	n = snprintf(buf, sizeof(buf), "%d", v);
	r = write(fd, buf, n) == n ? 0 : -1;
	close(fd);
	return r;
}

static int get_adj(void)
{
	char buf[32];

	if (zdtm_read_file("/proc/self/oom_score_adj", buf, sizeof(buf)) < 0)
		return -10000;
	return atoi(buf);
}

int main(void)
{
	pid_t c;
	int st;

	zdtm_init();
	if (set_adj(345))
		zdtm_die("set oom_score_adj");
	c = fork();
	if (c < 0)
		zdtm_die("fork");
	if (c == 0) {
		zdtm_child_forget_ready();
		if (set_adj(600))
			_exit(2);
		zdtm_wait_go();
		_exit(get_adj() == 600 ? 0 : 1);
	}
	zdtm_ready();
	zdtm_wait_go();
	CHECK(get_adj() == 345, "oom_score_adj %d, want 345", get_adj());
	if (waitpid(c, &st, 0) != c)
		fail("waitpid: %s", strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child: oom_score_adj not 600 after restore (status %#x)", st);
	zdtm_finish();
}
