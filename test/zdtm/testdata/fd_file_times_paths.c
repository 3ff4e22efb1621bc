/*
 * fd_file_times_paths: ferry must not touch the files it reopens. Four files
 * get fixed access and modification times (nanoseconds, atime after
 * mtime and long ago, so that even relatime would update atime on a
 * read): r.txt open O_RDONLY (fd 50), w.txt O_WRONLY (fd 51), rw.txt
 * O_RDWR at offset 7 (fd 52), and m.bin mapped MAP_PRIVATE read-only
 * (its fd closed). After restore st_atim, st_mtim and st_ctim of each are
 * exactly what they were, and the contents are unchanged.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define NFILES 4
static const char *names[NFILES] = { "r.txt", "w.txt", "rw.txt", "m.bin" };

static int mk(const char *name, int flags, int want)
{
	char buf[8192];
	int fd = open(name, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		zdtm_die("create %s", name);
	zdtm_fill(buf, sizeof(buf), (uint64_t)want);
	zdtm_write_all(fd, buf, sizeof(buf));
	close(fd);
	if (want < 0)
		return -1;
	fd = open(name, flags);
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("open %s", name);
	close(fd);
	return want;
}

int main(void)
{
	struct timespec times[2] = { { 1600000000, 123456789 }, { 1500000000, 987654321 } };
	struct stat before[NFILES], after;
	char buf[8192];
	void *m;
	int i, fd;

	zdtm_init();
	mk("r.txt", O_RDONLY, 50);
	mk("w.txt", O_WRONLY, 51);
	mk("rw.txt", O_RDWR, 52);
	mk("m.bin", O_RDONLY, -1);
	fd = open("m.bin", O_RDONLY);
	m = mmap(NULL, 8192, PROT_READ, MAP_PRIVATE, fd, 0);
	if (fd < 0 || m == MAP_FAILED)
		zdtm_die("map m.bin");
	close(fd);
	if (lseek(52, 7, SEEK_SET) != 7)
		zdtm_die("lseek");
	for (i = 0; i < NFILES; i++)
		if (utimensat(AT_FDCWD, names[i], times, 0) || stat(names[i], &before[i]))
			zdtm_die("utimensat %s", names[i]);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < NFILES; i++) {
		if (stat(names[i], &after)) {
			fail("stat %s: %s", names[i], strerror(errno));
			continue;
		}
		CHECK(after.st_atim.tv_sec == before[i].st_atim.tv_sec && after.st_atim.tv_nsec == before[i].st_atim.tv_nsec,
		      "%s: atime %lld.%09ld, want %lld.%09ld", names[i], (long long)after.st_atim.tv_sec,
		      after.st_atim.tv_nsec, (long long)before[i].st_atim.tv_sec, before[i].st_atim.tv_nsec);
		CHECK(after.st_mtim.tv_sec == before[i].st_mtim.tv_sec && after.st_mtim.tv_nsec == before[i].st_mtim.tv_nsec,
		      "%s: mtime %lld.%09ld, want %lld.%09ld", names[i], (long long)after.st_mtim.tv_sec,
		      after.st_mtim.tv_nsec, (long long)before[i].st_mtim.tv_sec, before[i].st_mtim.tv_nsec);
		CHECK(after.st_ctim.tv_sec == before[i].st_ctim.tv_sec && after.st_ctim.tv_nsec == before[i].st_ctim.tv_nsec,
		      "%s: ctime changed (ferry changed the inode)", names[i]);
		CHECK(after.st_size == 8192, "%s: size %lld, want 8192", names[i], (long long)after.st_size);
	}
	CHECK(lseek(52, 0, SEEK_CUR) == 7, "fd 52: offset %lld, want 7", (long long)lseek(52, 0, SEEK_CUR));
	zdtm_fill(buf, sizeof(buf), (uint64_t)-1);
	CHECK(memcmp(m, buf, sizeof(buf)) == 0, "m.bin mapping content differs");
	zdtm_finish();
}
