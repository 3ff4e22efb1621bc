/*
 * sys_seccomp: a seccomp filter that makes getpriority fail with EPERM.
 * ferry does not carry filters yet and must refuse the dump before
 * touching the process (a restore without the filter would quietly lift
 * it): afterwards the filter is still in force.
 */
#include "zdtm.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/resource.h>

int main(void)
{
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getpriority, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { sizeof(code) / sizeof(code[0]), code };

	zdtm_init();
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		zdtm_die("seccomp: %s", strerror(errno));
	errno = 0;
	if (getpriority(PRIO_PROCESS, 0) != -1 || errno != EPERM)
		zdtm_die("the filter does not work");

	zdtm_ready();
	zdtm_wait_go();

	errno = 0;
	CHECK(getpriority(PRIO_PROCESS, 0) == -1 && errno == EPERM, "seccomp filter lifted");
	zdtm_finish();
}
