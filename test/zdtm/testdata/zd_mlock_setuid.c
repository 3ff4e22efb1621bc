/*
 * zd_mlock_setuid: memory locked by root, kept locked by a process that
 * then gave up root. The process mlocks 16 pages (written with a
 * pattern), lowers RLIMIT_MEMLOCK to 1 page (soft and hard), and switches
 * to uid/gid 1000 (all ids): it could not lock the region now. After
 * restore the region is still locked ("lo" in VmFlags, VmLck 64 kB),
 * keeps its data, the ids are 1000 and RLIMIT_MEMLOCK is still 4096; a
 * new mlock of 2 pages fails (the limit is enforced).
 * Modelled on zdtm's mlock_setuid.
 */
#include "zdtm.h"
#include <sys/mman.h>
#include <sys/resource.h>

#define PG 4096UL
#define NP 16

static int vmflags(unsigned long addr, char *out, size_t size)
{
	static char buf[1 << 20];
	char key[32], *p;

	if (zdtm_read_file("/proc/self/smaps", buf, sizeof(buf)) < 0)
		return -1;
	snprintf(key, sizeof(key), "%lx-", addr);
	for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, strlen(key)) != 0)
			continue;
		p = strstr(p, "VmFlags:");
		if (!p)
			return -1;
		snprintf(out, size, "%.*s", (int)strcspn(p + 8, "\n"), p + 8);
		return 0;
	}
	return -1;
}

int main(void)
{
	char lck0[64], lck1[64], fl[256];
	struct rlimit rl = { PG, PG };
	uid_t r, e, s;
	char *m, *m2;

	zdtm_init();
	m = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	m2 = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || m2 == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(m, NP * PG, 77);
	if (mlock(m, NP * PG))
		zdtm_die("mlock");
	if (setrlimit(RLIMIT_MEMLOCK, &rl))
		zdtm_die("setrlimit");
	if (setresgid(1000, 1000, 1000) || setresuid(1000, 1000, 1000))
		zdtm_die("drop root");
	if (zdtm_status_field("/proc/self/status", "VmLck", lck0, sizeof(lck0)))
		zdtm_die("VmLck");
	if (mlock(m2, 2 * PG) == 0)
		zdtm_die("mlock of 2 pages worked as uid 1000");
	zdtm_log("VmLck %s", lck0);

	zdtm_ready();
	zdtm_wait_go();

	lck1[0] = 0;
	zdtm_status_field("/proc/self/status", "VmLck", lck1, sizeof(lck1));
	CHECK(strcmp(lck0, lck1) == 0, "VmLck %s, want %s", lck1, lck0);
	CHECK(vmflags((unsigned long)m, fl, sizeof(fl)) == 0 && strstr(fl, " lo"), "region VmFlags \"%s\": no lo", fl);
	CHECK(zdtm_check(m, NP * PG, 77) < 0, "locked region: data differs");
	CHECK(getresuid(&r, &e, &s) == 0 && r == 1000 && e == 1000 && s == 1000, "uids %d %d %d", r, e, s);
	CHECK(getrlimit(RLIMIT_MEMLOCK, &rl) == 0 && rl.rlim_cur == PG && rl.rlim_max == PG,
	      "RLIMIT_MEMLOCK %lu/%lu, want 4096/4096", (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max);
	errno = 0;
	CHECK(mlock(m2, 2 * PG) == -1, "mlock of 2 more pages worked: limit or creds not enforced");
	zdtm_finish();
}
