/*
 * sys_seccomp_strict: a thread in seccomp strict mode (it may only read,
 * write, exit and sigreturn), blocked in read(2) on a pipe. After restore
 * its /proc status still says Seccomp 1; asked through the pipe it
 * answers through another, so it runs; and the rest of the process runs
 * unrestricted (getpid, open work on the main thread).
 */
#include "zdtm.h"
#include <linux/seccomp.h>
#include <pthread.h>
#include <sys/prctl.h>

static int ask[2], answer[2];
static volatile pid_t strict_tid;

static void *strict_main(void *arg)
{
	char c;

	(void)arg;
	strict_tid = zdtm_gettid();
	if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT))
		zdtm_die("strict mode");
	/* From here on: read, write, exit only. */
	if (syscall(SYS_write, answer[1], "r", 1) != 1)
		syscall(SYS_exit, 1);
	if (syscall(SYS_read, ask[0], &c, 1) == 1) {
		c = (char)(c + 1);
		syscall(SYS_write, answer[1], &c, 1);
	}
	syscall(SYS_exit, 0);
	return NULL;
}

static int seccomp_mode(pid_t tid)
{
	char path[64], line[256];
	int v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	f = fopen(path, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (strncmp(line, "Seccomp:", 8) == 0)
			v = atoi(line + 8);
	fclose(f);
	return v;
}

int main(void)
{
	pthread_t th;
	char c;

	zdtm_init();
	if (pipe(ask) || pipe(answer))
		zdtm_die("pipe");
	if (pthread_create(&th, NULL, strict_main, NULL))
		zdtm_die("pthread_create");
	if (read(answer[0], &c, 1) != 1 || c != 'r')
		zdtm_die("strict thread did not start");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(seccomp_mode(strict_tid) == 1, "strict thread: Seccomp %d, want 1", seccomp_mode(strict_tid));
	CHECK(seccomp_mode(zdtm_gettid()) == 0, "main thread: Seccomp %d, want 0", seccomp_mode(zdtm_gettid()));
	CHECK(getpid() == zdtm_pid0, "getpid on the main thread");
	if (write(ask[1], "a", 1) != 1 || read(answer[0], &c, 1) != 1)
		fail("the strict thread did not answer");
	else
		CHECK(c == 'b', "strict thread answered %c, want b", c);
	pthread_join(th, NULL);
	zdtm_finish();
}
