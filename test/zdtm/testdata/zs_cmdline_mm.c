/*
 * zs_cmdline_mm: the command line and environment moved with
 * prctl(PR_SET_MM_MAP) (which, unlike the single-field PR_SET_MM calls,
 * needs no CAP_SYS_RESOURCE): arg_start/arg_end and env_start/env_end point to
 * buffers in the program's data ("zs-moved\0--arg=1\0" and
 * "ZS_A=1\0ZS_B=two\0"), as process-title setters do. After restore
 * /proc/self/cmdline and /proc/self/environ read exactly those bytes, and
 * the arg/env start and end fields of /proc/self/stat are the same
 * addresses; changing a byte of the buffer shows in /proc/self/cmdline
 * (the kernel reads our memory there, not a copy).
 * Modelled on zdtm's cmdlinenv00 (and env00).
 */
#include "zdtm.h"
#include <linux/prctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>

static const char args0[] = "zs-moved\0--arg=1"; /* sizeof includes the final NUL */
static const char envs0[] = "ZS_A=1\0ZS_B=two";
static char *args, *envs;

/* stat_field_list reads n fields of /proc/self/stat from field "first" on */
static int stat_field_list(int first, int n, unsigned long *v)
{
	char buf[4096], *p;
	int i;
	if (zdtm_read_file("/proc/self/stat", buf, sizeof(buf)) < 0)
		return -1;
	p = strrchr(buf, ')');
	if (!p)
		return -1;
	p += 2; /* field 3 */
	for (i = 3; i < first; i++) {
		p = strchr(p, ' ');
		if (!p)
			return -1;
		p++;
	}
	for (i = 0; i < n; i++) {
		char *e;
		v[i] = strtoul(p, &e, 10);
		if (e == p)
			return -1;
		p = e + 1;
	}
	return 0;
}

static int stat_fields(unsigned long v[4]) { return stat_field_list(48, 4, v); }

static void move_args(void)
{
	struct prctl_mm_map m;
	unsigned long f[7];

	memset(&m, 0, sizeof(m));
	if (stat_field_list(26, 3, f)) /* start_code end_code start_stack */
		zdtm_die("stat 26..28");
	m.start_code = f[0];
	m.end_code = f[1];
	m.start_stack = f[2];
	if (stat_field_list(45, 3, f)) /* start_data end_data start_brk */
		zdtm_die("stat 45..47");
	m.start_data = f[0];
	m.end_data = f[1];
	m.start_brk = f[2];
	m.brk = (unsigned long)sbrk(0);
	m.arg_start = (unsigned long)args;
	m.arg_end = (unsigned long)args + sizeof(args0);
	m.env_start = (unsigned long)envs;
	m.env_end = (unsigned long)envs + sizeof(envs0);
	m.exe_fd = -1;
	if (prctl(PR_SET_MM, PR_SET_MM_MAP, (unsigned long)&m, sizeof(m), 0))
		zdtm_die("PR_SET_MM_MAP");
}

int main(void)
{
	unsigned long before[4], after[4];
	char buf[256];
	ssize_t n;

	zdtm_init();
	args = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (args == MAP_FAILED)
		zdtm_die("mmap");
	envs = args + 2048;
	memcpy(args, args0, sizeof(args0));
	memcpy(envs, envs0, sizeof(envs0));
	move_args();
	n = zdtm_read_file("/proc/self/cmdline", buf, sizeof(buf));
	if (n != (ssize_t)sizeof(args0) || memcmp(buf, args, sizeof(args0)))
		zdtm_die("cmdline not moved (%zd bytes)", n);
	if (stat_fields(before))
		zdtm_die("stat");

	zdtm_ready();
	zdtm_wait_go();

	n = zdtm_read_file("/proc/self/cmdline", buf, sizeof(buf));
	CHECK(n == (ssize_t)sizeof(args0) && memcmp(buf, args, sizeof(args0)) == 0,
	      "/proc/self/cmdline is %zd bytes \"%s\", want \"zs-moved\\0--arg=1\\0\"", n, buf);
	n = zdtm_read_file("/proc/self/environ", buf, sizeof(buf));
	CHECK(n == (ssize_t)sizeof(envs0) && memcmp(buf, envs, sizeof(envs0)) == 0,
	      "/proc/self/environ is %zd bytes \"%s\", want \"ZS_A=1\\0ZS_B=two\\0\"", n, buf);
	if (stat_fields(after))
		fail("read /proc/self/stat");
	else
		CHECK(memcmp(before, after, sizeof(before)) == 0,
		      "arg/env start/end %#lx %#lx %#lx %#lx, want %#lx %#lx %#lx %#lx", after[0], after[1],
		      after[2], after[3], before[0], before[1], before[2], before[3]);
	args[1] = 'S';
	n = zdtm_read_file("/proc/self/cmdline", buf, sizeof(buf));
	CHECK(n > 2 && buf[1] == 'S', "cmdline does not follow our buffer");
	zdtm_finish();
}
