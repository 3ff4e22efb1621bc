/*
 * zs_memfd_seals: memfds with the newer seals and exec flags.
 *   fd 40: MFD_NOEXEC_SEAL (mode 0666, F_SEAL_EXEC set by the kernel),
 *          holding "noexec";
 *   fd 41: MFD_EXEC|MFD_ALLOW_SEALING, mode 0755 after fchmod, "exec";
 *   fd 42: MFD_ALLOW_SEALING, 2 pages with a pattern, F_SEAL_FUTURE_WRITE
 *          and F_SEAL_SHRINK, mapped MAP_SHARED read-only.
 * After restore F_GET_SEALS on each gives the same seals, the modes are
 * the same (no exec bits on fd 40), fchmod(40, 0755) fails with EPERM,
 * write(42) fails with EPERM, ftruncate(42, 1 page) fails with EPERM and
 * the mapping still shows the pattern and what pwrite could not change.
 * Modelled on zdtm's memfd00 .. memfd03.
 */
#include "zdtm.h"
#include <sys/mman.h>

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008U
#endif
#ifndef MFD_EXEC
#define MFD_EXEC 0x0010U
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif
#ifndef F_SEAL_EXEC
#define F_SEAL_EXEC 0x0020
#endif

static void place(int fd, int want)
{
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("place fd %d", want);
	close(fd);
}

int main(void)
{
	int seals[3], s, i;
	mode_t modes[3];
	struct stat st;
	char *m, buf[16];

	zdtm_init();
	place(memfd_create("zs-noexec", MFD_NOEXEC_SEAL), 40);
	place(memfd_create("zs-exec", MFD_EXEC | MFD_ALLOW_SEALING), 41);
	place(memfd_create("zs-fw", MFD_ALLOW_SEALING), 42);
	zdtm_write_all(40, "noexec", 6);
	zdtm_write_all(41, "exec", 4);
	if (fchmod(41, 0755))
		zdtm_die("fchmod 41");
	if (ftruncate(42, 8192))
		zdtm_die("ftruncate");
	m = mmap(NULL, 8192, PROT_READ, MAP_SHARED, 42, 0);
	if (m == MAP_FAILED)
		zdtm_die("mmap");
	{
		char pat[8192];
		zdtm_fill(pat, sizeof(pat), 42);
		if (pwrite(42, pat, sizeof(pat), 0) != (ssize_t)sizeof(pat))
			zdtm_die("pwrite");
	}
	if (fcntl(42, F_ADD_SEALS, F_SEAL_FUTURE_WRITE | F_SEAL_SHRINK))
		zdtm_die("F_ADD_SEALS");
	for (i = 0; i < 3; i++) {
		seals[i] = fcntl(40 + i, F_GET_SEALS);
		if (fstat(40 + i, &st))
			zdtm_die("fstat");
		modes[i] = st.st_mode;
	}
	if (!(seals[0] & F_SEAL_EXEC))
		zdtm_die("MFD_NOEXEC_SEAL gave seals %#x", seals[0]);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 3; i++) {
		s = fcntl(40 + i, F_GET_SEALS);
		CHECK(s == seals[i], "fd %d seals %#x, want %#x", 40 + i, s, seals[i]);
		if (fstat(40 + i, &st))
			fail("fstat %d: %s", 40 + i, strerror(errno));
		else
			CHECK(st.st_mode == modes[i], "fd %d mode %o, want %o", 40 + i, st.st_mode, modes[i]);
	}
	errno = 0;
	CHECK(fchmod(40, 0755) == -1 && errno == EPERM, "fchmod(40, 0755): %s, want EPERM (F_SEAL_EXEC)",
	      strerror(errno));
	memset(buf, 0, sizeof(buf));
	CHECK(pread(40, buf, 6, 0) == 6 && memcmp(buf, "noexec", 6) == 0, "fd 40 lost its content");
	CHECK(pread(41, buf, 4, 0) == 4 && memcmp(buf, "exec", 4) == 0, "fd 41 lost its content");
	errno = 0;
	CHECK(pwrite(42, "x", 1, 0) == -1 && errno == EPERM, "pwrite(42): %s, want EPERM (F_SEAL_FUTURE_WRITE)",
	      strerror(errno));
	errno = 0;
	CHECK(ftruncate(42, 4096) == -1 && errno == EPERM, "ftruncate(42): %s, want EPERM (F_SEAL_SHRINK)",
	      strerror(errno));
	CHECK(zdtm_check(m, 8192, 42) == -1, "fd 42's mapping lost its pattern");
	zdtm_finish();
}
