/*
 * mem_madvise: the flags madvise and mlock set on a region, as the VmFlags
 * line of /proc/self/smaps shows them, come back after restore: dc
 * (MADV_DONTFORK), dd (MADV_DONTDUMP), hg/nh (MADV_HUGEPAGE/NOHUGEPAGE),
 * rr/sr (MADV_RANDOM/SEQUENTIAL), wf (MADV_WIPEONFORK), lo (mlock) and
 * lo+lf (mlock2 MLOCK_ONFAULT), mg (MADV_MERGEABLE, where KSM is built in), and
 * the mmap flags MAP_LOCKED (lo) and MAP_NORESERVE (nr), and a region sealed
 * by mseal (sl; checked to still refuse mprotect after restore). Each region is separated from the next by a
 * PROT_NONE guard so that no two merge, and its content must survive too.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096UL
#define RPAGES 4

#ifndef MLOCK_ONFAULT
#define MLOCK_ONFAULT 0x01
#endif

struct region {
	const char *name;
	int advice;   /* madvise advice, or -1 */
	int lock;     /* 0 none, 1 mlock, 2 mlock2(MLOCK_ONFAULT), 3 mseal */
	int mflags;   /* extra mmap flags */
	const char *flags[3]; /* VmFlags that must be present */
	unsigned char *p;
	char vmflags[256];
};

static struct region regions[] = {
	{ "dontfork", MADV_DONTFORK, 0, 0, { "dc" } },
	{ "dontdump", MADV_DONTDUMP, 0, 0, { "dd" } },
	{ "hugepage", MADV_HUGEPAGE, 0, 0, { "hg" } },
	{ "nohugepage", MADV_NOHUGEPAGE, 0, 0, { "nh" } },
	{ "random", MADV_RANDOM, 0, 0, { "rr" } },
	{ "sequential", MADV_SEQUENTIAL, 0, 0, { "sr" } },
	{ "wipeonfork", MADV_WIPEONFORK, 0, 0, { "wf" } },
	{ "mlock", -1, 1, 0, { "lo" } },
	{ "mlock_onfault", -1, 2, 0, { "lo", "lf" } },
	{ "mergeable", MADV_MERGEABLE, 0, 0, { "mg" } },
	{ "map_locked_sequential", MADV_SEQUENTIAL, 0, MAP_LOCKED, { "lo", "sr" } },
	{ "map_noreserve_dontdump", MADV_DONTDUMP, 0, MAP_NORESERVE, { "nr", "dd" } },
	{ "mseal", -1, 3, 0, { "sl" } },
};
#define NREG (sizeof(regions) / sizeof(regions[0]))

/* vmflags copies the VmFlags of the smaps entry starting at addr. */
static int vmflags(void *addr, char *out, size_t size)
{
	static char buf[1 << 21];
	char key[32], *p;

	if (zdtm_read_file("/proc/self/smaps", buf, sizeof(buf)) < 0)
		return -1;
	snprintf(key, sizeof(key), "%lx-", (unsigned long)addr);
	for (p = buf; p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, key, strlen(key)) != 0)
			continue;
		p = strstr(p, "VmFlags:");
		if (!p)
			return -1;
		p += 8;
		while (*p == ' ')
			p++;
		snprintf(out, size, "%.*s", (int)strcspn(p, "\n"), p);
		return 0;
	}
	return -1;
}

static int has_flag(const char *flags, const char *f)
{
	size_t n = strlen(f);
	for (const char *p = flags; *p; p++)
		if ((p == flags || p[-1] == ' ') && strncmp(p, f, n) == 0 && (p[n] == ' ' || !p[n]))
			return 1;
	return 0;
}

int main(void)
{
	unsigned char *base;
	unsigned i;
	int j;

	zdtm_init();
	/* One reservation: region i at pages (RPAGES+1)*i .., guard after it. */
	base = mmap(NULL, NREG * (RPAGES + 1) * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (base == MAP_FAILED)
		zdtm_die("mmap");
	for (i = 0; i < NREG; i++) {
		struct region *r = &regions[i];
		r->p = base + i * (RPAGES + 1) * PG;
		if (mmap(r->p, RPAGES * PG, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | r->mflags, -1, 0) != r->p)
			zdtm_die("mmap %s", r->name);
		if (r->advice >= 0 && madvise(r->p, RPAGES * PG, r->advice)) {
			if (r->advice == MADV_MERGEABLE && errno == EINVAL) {
				r->flags[0] = NULL; /* no KSM in this kernel */
			} else {
				zdtm_die("madvise %s", r->name);
			}
		}
		if (r->lock == 1 && mlock(r->p, RPAGES * PG))
			zdtm_die("mlock");
		if (r->lock == 2 && syscall(SYS_mlock2, r->p, RPAGES * PG, MLOCK_ONFAULT))
			zdtm_die("mlock2");
		zdtm_fill(r->p, RPAGES * PG, 1000 + i);
		if (r->lock == 3 && syscall(462 /* mseal */, r->p, RPAGES * PG, 0)) {
			if (errno != ENOSYS)
				zdtm_die("mseal");
			r->flags[0] = NULL; /* no mseal in this kernel */
			r->lock = 0;
		}
		if (vmflags(r->p, r->vmflags, sizeof(r->vmflags)))
			zdtm_die("no smaps entry for %s", r->name);
		for (j = 0; j < 3 && r->flags[j]; j++)
			if (!has_flag(r->vmflags, r->flags[j]))
				zdtm_die("%s: VmFlags \"%s\" lack %s before the dump", r->name, r->vmflags, r->flags[j]);
	}

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NREG; i++) {
		struct region *r = &regions[i];
		char now[256];

		if (zdtm_check(r->p, RPAGES * PG, 1000 + i) >= 0)
			fail("%s: content differs", r->name);
		if (vmflags(r->p, now, sizeof(now))) {
			fail("%s: no smaps entry at %p", r->name, (void *)r->p);
			continue;
		}
		CHECK(strcmp(now, r->vmflags) == 0, "%s: VmFlags \"%s\", want \"%s\"", r->name, now, r->vmflags);
		if (r->lock == 3)
			CHECK(mprotect(r->p, PG, PROT_READ) == -1 && errno == EPERM,
			      "%s: mprotect of a sealed region did not fail with EPERM", r->name);
	}
	zdtm_finish();
}
