/*
 * fd_file_times: the tool must not touch the files a process has open.
 * Files opened read-write, read-only and write-only|append, with access and
 * modification times set in the past (nanoseconds), and a mapped one. After
 * restore every time — atime, mtime, ctime — is as it was, to the
 * nanosecond, and the contents are intact.
 */
#include "zdtm.h"
#include <sys/mman.h>

#define N 4

static const char *names[N] = { "rw.file", "ro.file", "append.file", "mapped.file" };
static const int modes[N] = { O_RDWR, O_RDONLY, O_WRONLY | O_APPEND, O_RDONLY };

static int same(struct timespec a, struct timespec b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

int main(void)
{
	struct stat before[N], after;
	int fds[N];
	char *map;

	zdtm_init();
	for (int i = 0; i < N; i++) {
		struct timespec ts[2] = { { 1000000000 + i, 123456789 }, { 1100000000 + i, 987654321 } };
		int fd = open(names[i], O_RDWR | O_CREAT | O_TRUNC, 0644);

		if (fd < 0 || write(fd, names[i], strlen(names[i])) != (ssize_t)strlen(names[i]) || close(fd))
			zdtm_die("create %s", names[i]);
		if (utimensat(AT_FDCWD, names[i], ts, 0))
			zdtm_die("utimensat");
		fds[i] = open(names[i], modes[i]);
		if (fds[i] < 0)
			zdtm_die("open %s", names[i]);
	}
	map = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, fds[3], 0);
	if (map == MAP_FAILED)
		zdtm_die("mmap");
	/* reading through the mapping and the fd may set atime once (relatime): do it now */
	if (map[0] != 'm')
		zdtm_die("mapped content");
	for (int i = 0; i < N; i++)
		if (stat(names[i], &before[i]))
			zdtm_die("stat");

	zdtm_ready();
	zdtm_wait_go();

	for (int i = 0; i < N; i++) {
		if (fstat(fds[i], &after)) {
			fail("fstat %s: %s", names[i], strerror(errno));
			continue;
		}
		CHECK(same(after.st_mtim, before[i].st_mtim), "%s: mtime %ld.%09ld, was %ld.%09ld", names[i],
		      (long)after.st_mtim.tv_sec, after.st_mtim.tv_nsec, (long)before[i].st_mtim.tv_sec, before[i].st_mtim.tv_nsec);
		CHECK(same(after.st_atim, before[i].st_atim), "%s: atime %ld.%09ld, was %ld.%09ld", names[i],
		      (long)after.st_atim.tv_sec, after.st_atim.tv_nsec, (long)before[i].st_atim.tv_sec, before[i].st_atim.tv_nsec);
		CHECK(same(after.st_ctim, before[i].st_ctim), "%s: ctime changed (the file was touched)", names[i]);
		CHECK(after.st_size == (off_t)strlen(names[i]), "%s: size %ld", names[i], (long)after.st_size);
	}
	CHECK(map[0] == 'm', "mapped content");
	zdtm_finish();
}
