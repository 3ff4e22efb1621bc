/*
 * sys_seccomp: seccomp filters, stacked and per thread. The process
 * installs two filters (getpriority fails with EPERM; getppid fails with
 * EACCES, logged: SECCOMP_FILTER_FLAG_LOG), then starts a thread, which
 * inherits both and adds a third of its own (getpgid fails with ENOTTY),
 * and forks a child, which inherits the process's two. After restore:
 * the main thread has 2 filters (Seccomp_filters in /proc) and gets EPERM
 * and EACCES, getpgid works; the thread has 3 and gets all three errors;
 * the child has 2 and reports the same to its parent through a pipe;
 * Seccomp is 2 (filter mode) for each.
 */
#include "zdtm.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

static int deny(int nr, int err, unsigned flags)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

	return syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog);
}

/* status reads "Seccomp:" (which 0) or "Seccomp_filters:" (which 1) of a task. */
static int status(pid_t pid, pid_t tid, int which)
{
	char path[64], line[256];
	const char *key = which ? "Seccomp_filters:" : "Seccomp:";
	int v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/task/%d/status", pid, tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, key, strlen(key)) == 0)
			v = atoi(line + strlen(key));
	fclose(f);
	return v;
}

/* probe returns a bit mask: 1 getpriority EPERM, 2 getppid EACCES, 4 getpgid ENOTTY. */
static int probe(void)
{
	int m = 0;

	errno = 0;
	if (getpriority(PRIO_PROCESS, 0) == -1 && errno == EPERM)
		m |= 1;
	errno = 0;
	if (syscall(SYS_getppid) == -1 && errno == EACCES)
		m |= 2;
	errno = 0;
	if (getpgid(0) == -1 && errno == ENOTTY)
		m |= 4;
	return m;
}

static pid_t thread_tid;
static int thread_pipe[2], thread_done[2];

static void *thread_main(void *arg)
{
	char c;
	int m;

	(void)arg;
	thread_tid = zdtm_gettid();
	if (deny(SYS_getpgid, ENOTTY, 0))
		zdtm_die("thread filter: %s", strerror(errno));
	if (write(thread_done[1], "r", 1) != 1)
		zdtm_die("thread ready");
	/* Wait for the main thread's question, answer with what it sees. */
	if (read(thread_pipe[0], &c, 1) != 1)
		return NULL;
	m = probe();
	c = (char)m;
	if (write(thread_done[1], &c, 1) != 1)
		return NULL;
	return NULL;
}

int main(void)
{
	int child_pipe[2], go_pipe[2], m;
	pthread_t th;
	pid_t child;
	char c;

	zdtm_init();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		zdtm_die("PR_SET_NO_NEW_PRIVS");
	if (deny(SYS_getpriority, EPERM, 0) || deny(SYS_getppid, EACCES, SECCOMP_FILTER_FLAG_LOG))
		zdtm_die("seccomp: %s", strerror(errno));
	if (probe() != 3)
		zdtm_die("the filters do not work (probe %d)", probe());
	if (pipe(thread_pipe) || pipe(thread_done) || pipe(child_pipe) || pipe(go_pipe))
		zdtm_die("pipe");
	if (pthread_create(&th, NULL, thread_main, NULL))
		zdtm_die("pthread_create");
	if (read(thread_done[0], &c, 1) != 1)
		zdtm_die("thread start");
	child = fork();
	if (child < 0)
		zdtm_die("fork");
	if (child == 0) {
		zdtm_child_forget_ready();
		if (read(go_pipe[0], &c, 1) != 1)
			_exit(1);
		c = (char)(probe() | (status(getpid(), getpid(), 1) << 4));
		_exit(write(child_pipe[1], &c, 1) == 1 ? 0 : 1);
	}

	zdtm_ready();
	zdtm_wait_go();

	m = probe();
	CHECK(m == 3, "main thread: probe %d, want 3 (getpriority EPERM, getppid EACCES, getpgid allowed)", m);
	CHECK(status(getpid(), zdtm_gettid(), 0) == 2, "main thread: Seccomp %d, want 2", status(getpid(), zdtm_gettid(), 0));
	CHECK(status(getpid(), zdtm_gettid(), 1) == 2, "main thread: %d filters, want 2", status(getpid(), zdtm_gettid(), 1));
	CHECK(status(getpid(), thread_tid, 1) == 3, "thread: %d filters, want 3", status(getpid(), thread_tid, 1));
	if (write(thread_pipe[1], "?", 1) != 1 || read(thread_done[0], &c, 1) != 1)
		fail("thread did not answer");
	else
		CHECK(c == 7, "thread: probe %d, want 7", c);
	pthread_join(th, NULL);
	if (write(go_pipe[1], "g", 1) != 1 || read(child_pipe[0], &c, 1) != 1)
		fail("child did not answer");
	else
		CHECK(c == (3 | 2 << 4), "child: probe %d with %d filters, want 3 with 2", c & 15, c >> 4);
	waitpid(child, NULL, 0);
	zdtm_finish();
}
