/*
 * mem_layout: the mm-wide layout the kernel keeps for a process.
 *   - auxv (/proc/self/auxv bytes and getauxval), the AT_RANDOM bytes and
 *     the AT_EXECFN string;
 *   - /proc/self/exe;
 *   - argv and environ: the same pointers and strings, and the same
 *     /proc/self/cmdline and /proc/self/environ (arg/env bounds of the mm);
 *   - the code/data/brk/stack/arg/env bounds in /proc/self/stat;
 *   - the vDSO is where AT_SYSINFO_EHDR says and its clocks still work.
 * The harness passes a few arguments, including one with spaces.
 */
#include "zdtm.h"
#include <sys/auxv.h>
#include <sys/time.h>

extern char **environ;

#define MAXSTR 64

static int stat_fields(unsigned long long *out)
{
	/* fields 26,27,28 and 45..51 (1-based) of /proc/self/stat */
	static const int want[] = { 26, 27, 28, 45, 46, 47, 48, 49, 50, 51 };
	char buf[4096], *p, *tok, *save;
	int field = 3, k = 0;

	if (zdtm_read_file("/proc/self/stat", buf, sizeof(buf)) < 0)
		return -1;
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	for (tok = strtok_r(p + 2, " \n", &save); tok && k < 10; tok = strtok_r(NULL, " \n", &save), field++)
		if (field == want[k])
			out[k++] = strtoull(tok, NULL, 10);
	return k == 10 ? 0 : -1;
}

static unsigned long vdso_start(void)
{
	static char buf[1 << 20];
	char *p;

	if (zdtm_read_file("/proc/self/maps", buf, sizeof(buf)) < 0)
		return 0;
	p = strstr(buf, "[vdso]");
	if (!p)
		return 0;
	while (p > buf && p[-1] != '\n')
		p--;
	return strtoul(p, NULL, 16);
}

static const unsigned long auxkeys[] = {
	AT_PHDR, AT_PHENT, AT_PHNUM, AT_PAGESZ, AT_BASE, AT_FLAGS, AT_ENTRY, AT_UID, AT_EUID,
	AT_GID, AT_EGID, AT_HWCAP, AT_HWCAP2, AT_CLKTCK, AT_SECURE, AT_RANDOM, AT_EXECFN,
	AT_SYSINFO_EHDR, AT_PLATFORM, AT_MINSIGSTKSZ,
};
#define NAUX (sizeof(auxkeys) / sizeof(auxkeys[0]))

int main(int argc, char **argv)
{
	static char auxv0[4096], auxv1[4096], cmd0[4096], cmd1[4096], env0[65536], env1[65536];
	static char *argp[MAXSTR], *envp[MAXSTR], argcopy[MAXSTR][256], envcopy[MAXSTR][512];
	char exe0[512], exe1[512], execfn[512];
	unsigned long aux0[NAUX], vdso, ehdr;
	unsigned long long st0[10], st1[10];
	unsigned char rnd[16];
	ssize_t na0, na1, nc0, nc1, ne0, ne1, n;
	struct timespec ts0, ts1;
	struct timeval tv;
	int nenv, i;

	zdtm_init();
	if (argc < 2 || argc > MAXSTR)
		zdtm_die("want 1..%d arguments, got %d", MAXSTR - 1, argc - 1);
	for (i = 0; i < argc; i++) {
		argp[i] = argv[i];
		snprintf(argcopy[i], sizeof(argcopy[i]), "%s", argv[i]);
	}
	for (nenv = 0; environ[nenv] && nenv < MAXSTR; nenv++) {
		envp[nenv] = environ[nenv];
		snprintf(envcopy[nenv], sizeof(envcopy[nenv]), "%s", environ[nenv]);
	}
	for (i = 0; i < (int)NAUX; i++)
		aux0[i] = getauxval(auxkeys[i]);
	memcpy(rnd, (void *)getauxval(AT_RANDOM), 16);
	snprintf(execfn, sizeof(execfn), "%s", (char *)getauxval(AT_EXECFN));
	na0 = zdtm_read_file("/proc/self/auxv", auxv0, sizeof(auxv0));
	nc0 = zdtm_read_file("/proc/self/cmdline", cmd0, sizeof(cmd0));
	ne0 = zdtm_read_file("/proc/self/environ", env0, sizeof(env0));
	n = readlink("/proc/self/exe", exe0, sizeof(exe0) - 1);
	if (na0 <= 0 || nc0 <= 0 || ne0 < 0 || n <= 0 || stat_fields(st0))
		zdtm_die("reading /proc/self");
	exe0[n] = 0;
	ehdr = getauxval(AT_SYSINFO_EHDR);
	vdso = vdso_start();
	if (!vdso || vdso != ehdr)
		zdtm_die("[vdso] at %#lx, AT_SYSINFO_EHDR %#lx", vdso, ehdr);
	clock_gettime(CLOCK_MONOTONIC, &ts0);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < (int)NAUX; i++)
		CHECK(getauxval(auxkeys[i]) == aux0[i], "getauxval(%lu) = %#lx, want %#lx",
		      auxkeys[i], getauxval(auxkeys[i]), aux0[i]);
	CHECK(memcmp(rnd, (void *)getauxval(AT_RANDOM), 16) == 0, "AT_RANDOM bytes changed");
	CHECK(strcmp(execfn, (char *)getauxval(AT_EXECFN)) == 0, "AT_EXECFN \"%s\", want \"%s\"",
	      (char *)getauxval(AT_EXECFN), execfn);
	na1 = zdtm_read_file("/proc/self/auxv", auxv1, sizeof(auxv1));
	CHECK(na1 == na0 && memcmp(auxv0, auxv1, na0) == 0, "/proc/self/auxv differs (%zd vs %zd bytes)", na1, na0);
	nc1 = zdtm_read_file("/proc/self/cmdline", cmd1, sizeof(cmd1));
	CHECK(nc1 == nc0 && memcmp(cmd0, cmd1, nc0) == 0, "/proc/self/cmdline differs");
	ne1 = zdtm_read_file("/proc/self/environ", env1, sizeof(env1));
	CHECK(ne1 == ne0 && memcmp(env0, env1, ne0) == 0, "/proc/self/environ differs");
	n = readlink("/proc/self/exe", exe1, sizeof(exe1) - 1);
	if (n < 0)
		fail("readlink /proc/self/exe: %s", strerror(errno));
	else {
		exe1[n] = 0;
		CHECK(strcmp(exe0, exe1) == 0, "/proc/self/exe \"%s\", want \"%s\"", exe1, exe0);
	}
	for (i = 0; i < argc; i++)
		CHECK(argv[i] == argp[i] && strcmp(argv[i], argcopy[i]) == 0, "argv[%d] \"%s\" at %p, want \"%s\" at %p",
		      i, argv[i], (void *)argv[i], argcopy[i], (void *)argp[i]);
	CHECK(argv[argc] == NULL, "argv not NULL-terminated");
	for (i = 0; i < nenv; i++)
		CHECK(environ[i] == envp[i] && strcmp(environ[i], envcopy[i]) == 0, "environ[%d] changed", i);
	if (stat_fields(st1))
		fail("parse /proc/self/stat");
	else
		for (i = 0; i < 10; i++)
			CHECK(st0[i] == st1[i], "/proc/self/stat bound #%d = %#llx, want %#llx", i, st1[i], st0[i]);
	vdso = vdso_start();
	CHECK(vdso == ehdr, "[vdso] at %#lx, want %#lx", vdso, ehdr);
	clock_gettime(CLOCK_MONOTONIC, &ts1);
	CHECK(ts1.tv_sec > ts0.tv_sec || (ts1.tv_sec == ts0.tv_sec && ts1.tv_nsec >= ts0.tv_nsec),
	      "CLOCK_MONOTONIC went back");
	CHECK(gettimeofday(&tv, NULL) == 0 && tv.tv_sec > 1600000000, "gettimeofday via vDSO broken");
	CHECK(getenv("ZDTM_GO") != NULL, "getenv broken");
	zdtm_finish();
}
