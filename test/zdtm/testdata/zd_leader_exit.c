/*
 * zd_leader_exit: the thread-group leader has exited (pthread_exit) while
 * another thread goes on: the leader is a zombie thread ('Z' in
 * /proc/self/task/PID/stat) and the process lives on in thread W. A third
 * thread X sleeps in a pipe read.
 * After restore (checked by W): getpid() is the same, W and X keep their
 * tids, the leader is still a zombie task of the process, Threads in
 * /proc/self/status is the same, X still runs (answers through a pipe),
 * and the process exits normally from W.
 * Modelled on zdtm's pthread tests (a process whose main thread exited
 * first, as in thread-bomb's exiting threads).
 */
#include "zdtm.h"
#include <pthread.h>

static int ping[2], pong[2];
static pid_t wtid, xtid;
static char threads0[32];

static char task_state(pid_t tid)
{
	char path[96], buf[512], *p;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return '?';
	p = strrchr(buf, ')');
	return p && p[1] == ' ' ? p[2] : '?';
}

static void *xthread(void *arg)
{
	char c;

	(void)arg;
	xtid = zdtm_gettid();
	while (read(ping[0], &c, 1) == 1) {
		c++;
		if (write(pong[1], &c, 1) != 1)
			break;
	}
	return NULL;
}

static void *wthread(void *arg)
{
	char threads1[32], c = 'a';
	int i;

	(void)arg;
	wtid = zdtm_gettid();
	for (i = 0; i < 5000 && task_state(zdtm_pid0) != 'Z'; i++)
		zdtm_sleep_ms(1);
	if (task_state(zdtm_pid0) != 'Z')
		zdtm_die("the leader is not a zombie: '%c'", task_state(zdtm_pid0));
	if (zdtm_status_field("/proc/self/status", "Threads", threads0, sizeof(threads0)))
		zdtm_die("Threads");
	zdtm_log("leader zombie, Threads: %s", threads0);
	zdtm_ready();
	zdtm_wait_go();

	zdtm_tid0 = 0; /* zdtm_finish runs here, not in the leader */
	CHECK(zdtm_gettid() == wtid, "W's tid %d, want %d", zdtm_gettid(), wtid);
	CHECK(task_state(zdtm_pid0) == 'Z', "leader %d: state '%c', want a zombie thread", zdtm_pid0,
	      task_state(zdtm_pid0));
	CHECK(task_state(xtid) == 'S' || task_state(xtid) == 'R', "thread X %d: state '%c'", xtid, task_state(xtid));
	threads1[0] = 0;
	zdtm_status_field("/proc/self/status", "Threads", threads1, sizeof(threads1));
	CHECK(strcmp(threads0, threads1) == 0, "Threads: %s, was %s", threads1, threads0);
	CHECK(write(ping[1], &c, 1) == 1 && read(pong[0], &c, 1) == 1 && c == 'b', "thread X does not answer");
	zdtm_finish();
}

int main(void)
{
	pthread_t w, x;

	zdtm_init();
	if (pipe(ping) || pipe(pong))
		zdtm_die("pipe");
	if (pthread_create(&x, NULL, xthread, NULL) || pthread_create(&w, NULL, wthread, NULL))
		zdtm_die("pthread_create");
	pthread_exit(NULL);
}
