/*
 * attr_creds: credentials of a process that dropped root after set-up:
 * supplementary groups {2000, 3000, 4000}, real/effective/saved gid 2000,
 * uid 1000, no_new_privs set. After restore getresuid/getresgid,
 * getgroups, the (now empty) capability sets, no_new_privs and the
 * dumpable flag (set to 1 again after dropping root) are the same, and the kernel enforces the ids: a file
 * created now is owned by 1000:2000, and setuid(0) fails.
 * The harness makes the go file reachable for uid 1000.
 */
#include "zdtm.h"
#include <grp.h>
#include <sys/fsuid.h>
#include <linux/capability.h>
#include <sys/prctl.h>

static int caps(struct __user_cap_data_struct d[2])
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	return syscall(SYS_capget, &h, d);
}

int main(void)
{
	const gid_t groups[] = { 2000, 3000, 4000 };
	struct __user_cap_data_struct c0[2], c1[2];
	uid_t r, e, s;
	gid_t rg, eg, sg, g[16];
	int n, dumpable0, fd;
	struct stat st;

	zdtm_init();
	if (setgroups(3, groups) || setresgid(2000, 2000, 2000) || setresuid(1000, 1000, 1000))
		zdtm_die("dropping privileges");
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))
		zdtm_die("PR_SET_NO_NEW_PRIVS");
	/* Dropping root made it non-dumpable; programs that want to be
	 * traced or dump core make it dumpable again. */
	if (prctl(PR_SET_DUMPABLE, 1))
		zdtm_die("PR_SET_DUMPABLE 1");
	dumpable0 = prctl(PR_GET_DUMPABLE);
	if (caps(c0))
		zdtm_die("capget");

	zdtm_ready();
	zdtm_wait_go();

	getresuid(&r, &e, &s);
	CHECK(r == 1000 && e == 1000 && s == 1000, "uids %u/%u/%u, want 1000", r, e, s);
	getresgid(&rg, &eg, &sg);
	CHECK(rg == 2000 && eg == 2000 && sg == 2000, "gids %u/%u/%u, want 2000", rg, eg, sg);
	CHECK(setfsuid(-1) == 1000 && setfsgid(-1) == 2000, "fsuid/fsgid %d/%d", setfsuid(-1), setfsgid(-1));
	n = getgroups(16, g);
	CHECK(n == 3 && g[0] == 2000 && g[1] == 3000 && g[2] == 4000, "getgroups: %d groups", n);
	if (caps(c1))
		fail("capget: %s", strerror(errno));
	else
		CHECK(memcmp(c0, c1, sizeof(c0)) == 0, "capabilities eff %#x prm %#x inh %#x, want %#x %#x %#x",
		      c1[0].effective, c1[0].permitted, c1[0].inheritable, c0[0].effective, c0[0].permitted,
		      c0[0].inheritable);
	CHECK(prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1, "no_new_privs lost");
	CHECK(prctl(PR_GET_DUMPABLE) == dumpable0, "dumpable %d, want %d", prctl(PR_GET_DUMPABLE), dumpable0);
	CHECK(setuid(0) == -1 && errno == EPERM, "setuid(0) did not fail with EPERM: privileges came back");
	fd = open("/tmp", O_TMPFILE | O_WRONLY, 0600);
	if (fd < 0)
		fail("O_TMPFILE in /tmp: %s", strerror(errno));
	else {
		CHECK(fstat(fd, &st) == 0 && st.st_uid == 1000 && st.st_gid == 2000, "new file owned by %u:%u, want 1000:2000",
		      st.st_uid, st.st_gid);
		close(fd);
	}
	zdtm_finish();
}
