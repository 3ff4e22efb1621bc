/*
 * mem_memfd: a memfd that is both mapped (MAP_SHARED) and kept open as an
 * fd at a fixed number. After restore: content, size, name, seals and
 * offset are kept, and the mapping and the fd still refer to the same
 * object (writes through one are seen through the other).
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096UL
#define SIZE (64 * PG)
#define MFD 40

int main(void)
{
	static unsigned char page[PG];
	char link0[256], link1[256];
	unsigned char *m;
	struct stat st;
	int fd, seals;
	ssize_t n;

	zdtm_init();
	fd = memfd_create("zdtm-memfd", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (fd < 0)
		zdtm_die("memfd_create");
	if (dup2(fd, MFD) != MFD)
		zdtm_die("dup2");
	close(fd);
	fd = MFD;
	if (fcntl(fd, F_SETFD, FD_CLOEXEC))
		zdtm_die("F_SETFD");
	if (ftruncate(fd, SIZE))
		zdtm_die("ftruncate");
	m = mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(m, SIZE / 2, 41); /* second half stays a hole */
	zdtm_fill(page, PG, 42);
	if (pwrite(fd, page, PG, SIZE - PG) != (ssize_t)PG)
		zdtm_die("pwrite");
	if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW))
		zdtm_die("F_ADD_SEALS");
	if (lseek(fd, 3 * PG + 5, SEEK_SET) < 0)
		zdtm_die("lseek");
	n = readlink("/proc/self/fd/40", link0, sizeof(link0) - 1);
	if (n < 0)
		zdtm_die("readlink");
	link0[n] = 0;

	zdtm_ready();
	zdtm_wait_go();

	CHECK(zdtm_check(m, SIZE / 2, 41) < 0, "first half differs");
	CHECK(zdtm_is_zero(m + SIZE / 2, SIZE / 2 - PG) < 0, "hole not zero");
	CHECK(zdtm_check(m + SIZE - PG, PG, 42) < 0, "last page (written with pwrite) differs");
	if (fstat(fd, &st))
		fail("fstat memfd: %s", strerror(errno));
	else
		CHECK(st.st_size == (off_t)SIZE, "size %lld, want %lu", (long long)st.st_size, SIZE);
	seals = fcntl(fd, F_GET_SEALS);
	CHECK(seals == (F_SEAL_SHRINK | F_SEAL_GROW), "seals 0x%x, want 0x%x", seals, F_SEAL_SHRINK | F_SEAL_GROW);
	CHECK(fcntl(fd, F_GETFD) == FD_CLOEXEC, "FD_CLOEXEC lost");
	CHECK(lseek(fd, 0, SEEK_CUR) == (off_t)(3 * PG + 5), "offset %lld", (long long)lseek(fd, 0, SEEK_CUR));
	n = readlink("/proc/self/fd/40", link1, sizeof(link1) - 1);
	if (n < 0)
		fail("readlink fd 40: %s", strerror(errno));
	else {
		link1[n] = 0;
		CHECK(strcmp(link0, link1) == 0, "fd 40 is \"%s\", want \"%s\"", link1, link0);
	}
	CHECK(ftruncate(fd, PG) == -1 && errno == EPERM, "shrinking a F_SEAL_SHRINK memfd did not fail with EPERM");
	m[7] ^= 0x5a;
	CHECK(pread(fd, page, 16, 0) == 16 && page[7] == m[7], "mapping write not seen through the fd");
	zdtm_fill(page, PG, 43);
	CHECK(pwrite(fd, page, PG, 5 * PG) == (ssize_t)PG, "pwrite: %s", strerror(errno));
	CHECK(zdtm_check(m + 5 * PG, PG, 43) < 0, "fd write not seen through the mapping");
	zdtm_finish();
}
