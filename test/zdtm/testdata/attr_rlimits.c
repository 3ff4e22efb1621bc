/*
 * attr_rlimits: resource limits. Soft limits lowered for several
 * resources and hard limits lowered for two (root may lower, never raise
 * past them without CAP_SYS_RESOURCE). After restore every limit, soft
 * and hard, is the same as before, and RLIMIT_NOFILE is enforced.
 */
#include "zdtm.h"
#include <sys/resource.h>

static const struct {
	int res;
	const char *name;
	rlim_t soft; /* RLIM_INFINITY: leave */
	rlim_t hard; /* RLIM_INFINITY: leave */
} lims[] = {
	{ RLIMIT_NOFILE, "NOFILE", 200, RLIM_INFINITY },
	{ RLIMIT_CORE, "CORE", 0, 1 << 20 },
	{ RLIMIT_CPU, "CPU", 3600, RLIM_INFINITY },
	{ RLIMIT_FSIZE, "FSIZE", 1ULL << 30, RLIM_INFINITY },
	{ RLIMIT_DATA, "DATA", 4ULL << 30, RLIM_INFINITY },
	{ RLIMIT_STACK, "STACK", RLIM_INFINITY, RLIM_INFINITY },
	{ RLIMIT_NPROC, "NPROC", 5000, RLIM_INFINITY },
	{ RLIMIT_MEMLOCK, "MEMLOCK", 64 << 10, RLIM_INFINITY },
	{ RLIMIT_MSGQUEUE, "MSGQUEUE", 4096, RLIM_INFINITY },
	{ RLIMIT_SIGPENDING, "SIGPENDING", 1000, RLIM_INFINITY },
	{ RLIMIT_NICE, "NICE", 0, RLIM_INFINITY },
	{ RLIMIT_RTPRIO, "RTPRIO", 0, 0 },
	{ RLIMIT_RTTIME, "RTTIME", 1000000, RLIM_INFINITY },
	{ RLIMIT_LOCKS, "LOCKS", 100, RLIM_INFINITY },
	{ RLIMIT_AS, "AS", RLIM_INFINITY, RLIM_INFINITY },
};
#define NLIM (sizeof(lims) / sizeof(lims[0]))

int main(void)
{
	struct rlimit before[NLIM], cur;
	unsigned i;
	int fds[256], n = 0, fd;

	zdtm_init();
	for (i = 0; i < NLIM; i++) {
		if (getrlimit(lims[i].res, &cur))
			zdtm_die("getrlimit %s", lims[i].name);
		if (lims[i].hard != RLIM_INFINITY && (cur.rlim_max == RLIM_INFINITY || lims[i].hard < cur.rlim_max))
			cur.rlim_max = lims[i].hard;
		if (lims[i].soft != RLIM_INFINITY && (cur.rlim_cur == RLIM_INFINITY || lims[i].soft < cur.rlim_cur))
			cur.rlim_cur = lims[i].soft;
		if (cur.rlim_cur != RLIM_INFINITY && cur.rlim_max != RLIM_INFINITY && cur.rlim_cur > cur.rlim_max)
			cur.rlim_cur = cur.rlim_max;
		if (setrlimit(lims[i].res, &cur))
			zdtm_die("setrlimit %s", lims[i].name);
		getrlimit(lims[i].res, &before[i]);
	}

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NLIM; i++) {
		if (getrlimit(lims[i].res, &cur)) {
			fail("getrlimit %s: %s", lims[i].name, strerror(errno));
			continue;
		}
		CHECK(cur.rlim_cur == before[i].rlim_cur && cur.rlim_max == before[i].rlim_max,
		      "RLIMIT_%s = %llu/%llu, want %llu/%llu", lims[i].name, (unsigned long long)cur.rlim_cur,
		      (unsigned long long)cur.rlim_max, (unsigned long long)before[i].rlim_cur,
		      (unsigned long long)before[i].rlim_max);
	}
	/* NOFILE 200 is enforced: opening stops at fd 199 */
	while (n < 256 && (fd = open("/dev/null", O_RDONLY)) >= 0)
		fds[n++] = fd;
	CHECK(n < 256 && errno == EMFILE && fds[n - 1] == 199, "RLIMIT_NOFILE not enforced: last fd %d after %d opens",
	      n ? fds[n - 1] : -1, n);
	while (n > 0)
		close(fds[--n]);
	zdtm_finish();
}
