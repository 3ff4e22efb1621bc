/*
 * sys_seccomp_notif: a seccomp filter that hands getpriority to a
 * supervisor (SECCOMP_RET_USER_NOTIF), whose listener fd the process
 * itself holds at fd 10. ferry refuses it (naming fd 10, the seccomp
 * notification listener): the process must be left untouched: after "go" a thread's
 * getpriority is still handed to the listener, which answers 5.
 */
#include "zdtm.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>

static long got = -1;

static void *caller(void *arg)
{
	(void)arg;
	got = syscall(SYS_getpriority, PRIO_PROCESS, 0);
	return NULL;
}

int main(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };
	struct seccomp_notif req;
	struct seccomp_notif_resp resp;
	pthread_t th;
	int l;

	zdtm_init();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		zdtm_die("PR_SET_NO_NEW_PRIVS");
	l = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
	if (l < 0 || dup2(l, 10) != 10)
		zdtm_die("seccomp listener: %s", strerror(errno));
	close(l);

	zdtm_ready();
	zdtm_wait_go();

	if (pthread_create(&th, NULL, caller, NULL))
		zdtm_die("pthread_create");
	memset(&req, 0, sizeof(req));
	CHECK(ioctl(10, SECCOMP_IOCTL_NOTIF_RECV, &req) == 0, "NOTIF_RECV: %s", strerror(errno));
	CHECK(req.data.nr == SYS_getpriority, "notified of system call %d, want getpriority", req.data.nr);
	memset(&resp, 0, sizeof(resp));
	resp.id = req.id;
	resp.val = 5;
	CHECK(ioctl(10, SECCOMP_IOCTL_NOTIF_SEND, &resp) == 0, "NOTIF_SEND: %s", strerror(errno));
	pthread_join(th, NULL);
	CHECK(got == 5, "getpriority returned %ld, want the supervisor's 5", got);
	zdtm_finish();
}
