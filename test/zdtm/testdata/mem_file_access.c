/*
 * mem_file_access: file mappings keep the access rights of the descriptor
 * they were mapped from (the descriptors are closed). A MAP_SHARED
 * PROT_READ mapping of a file opened O_RDWR may be made writable by
 * mprotect after restore (EACCES if ferry maps it from a read-only
 * descriptor) and its writes reach the file; one of a file opened O_RDONLY
 * may not (EACCES); a MAP_PRIVATE PROT_READ mapping of an O_RDONLY file
 * may (copy-on-write) without touching the file.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define PG 4096UL
#define NP 4

int main(void)
{
	static unsigned char file[NP * PG];
	unsigned char *priv, *shr, *rw;
	int fd;

	zdtm_init();
	zdtm_fill(file, sizeof(file), 81);
	fd = open("rdonly.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_die("create rdonly.bin");
	zdtm_write_all(fd, file, sizeof(file));
	close(fd);
	fd = open("rdwr.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_die("create rdwr.bin");
	zdtm_write_all(fd, file, sizeof(file));
	rw = mmap(NULL, NP * PG, PROT_READ, MAP_SHARED, fd, 0);
	if (rw == MAP_FAILED)
		zdtm_die("mmap rdwr.bin");
	close(fd);
	fd = open("rdonly.bin", O_RDONLY);
	if (fd < 0)
		zdtm_die("open rdonly.bin");
	priv = mmap(NULL, NP * PG, PROT_READ, MAP_PRIVATE, fd, 0);
	shr = mmap(NULL, NP * PG, PROT_READ, MAP_SHARED, fd, 0);
	if (priv == MAP_FAILED || shr == MAP_FAILED)
		zdtm_die("mmap");
	close(fd);
	if (mprotect(shr, PG, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
		zdtm_die("shared mapping of an O_RDONLY file could be made writable");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(memcmp(priv, file, sizeof(file)) == 0, "private mapping content differs");
	CHECK(memcmp(shr, file, sizeof(file)) == 0, "shared mapping content differs");
	if (mprotect(priv, NP * PG, PROT_READ | PROT_WRITE)) {
		fail("mprotect(PROT_WRITE) of the private mapping: %s", strerror(errno));
	} else {
		zdtm_fill(priv + PG, PG, 82);
		CHECK(zdtm_check(priv + PG, PG, 82) < 0, "private write lost");
	}
	errno = 0;
	CHECK(mprotect(shr, PG, PROT_READ | PROT_WRITE) == -1 && errno == EACCES,
	      "shared read-only mapping could be made writable (errno %d): mapped from a writable descriptor", errno);
	if (mprotect(rw, NP * PG, PROT_READ | PROT_WRITE)) {
		fail("mprotect(PROT_WRITE) of the shared mapping of an O_RDWR file: %s", strerror(errno));
	} else {
		static unsigned char page[PG];
		zdtm_fill(rw + 2 * PG, PG, 83);
		fd = open("rdwr.bin", O_RDONLY);
		CHECK(fd >= 0 && pread(fd, page, PG, 2 * PG) == (ssize_t)PG && zdtm_check(page, PG, 83) < 0,
		      "write through the shared mapping did not reach the file");
		if (fd >= 0)
			close(fd);
	}
	fd = open("rdonly.bin", O_RDONLY);
	if (fd >= 0) {
		static unsigned char now[NP * PG];
		if (read(fd, now, sizeof(now)) != (ssize_t)sizeof(now) || memcmp(now, file, sizeof(now)))
			fail("file changed on disk");
		close(fd);
	}
	zdtm_finish();
}
