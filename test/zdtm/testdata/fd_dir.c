/*
 * fd_dir: a directory fd (fd 25, O_DIRECTORY|O_PATH-less, CLOEXEC) on a
 * directory that is not the cwd. After restore it is the same directory:
 * openat() relative to it finds the file made there, fstat matches,
 * fchdir() to it works, and getdents sees the entries.
 */
#include "zdtm.h"
#include <dirent.h>

#define DFD 25

int main(void)
{
	struct stat st0, st;
	char buf[16], cwd[4096];
	DIR *d;
	struct dirent *e;
	int fd, seen = 0;

	zdtm_init();
	if (mkdir("the dir", 0755) && errno != EEXIST)
		zdtm_die("mkdir");
	fd = open("the dir/file", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, "in-dir", 6) != 6)
		zdtm_die("file");
	close(fd);
	fd = open("the dir", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || dup3(fd, DFD, O_CLOEXEC) != DFD)
		zdtm_die("open dir");
	close(fd);
	fstat(DFD, &st0);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fstat(DFD, &st) == 0 && S_ISDIR(st.st_mode) && st.st_ino == st0.st_ino, "fd %d is not the directory", DFD);
	CHECK(fcntl(DFD, F_GETFD) == FD_CLOEXEC, "fd %d lost FD_CLOEXEC", DFD);
	fd = openat(DFD, "file", O_RDONLY);
	if (fd < 0)
		fail("openat(%d, \"file\"): %s", DFD, strerror(errno));
	else {
		memset(buf, 0, sizeof(buf));
		CHECK(read(fd, buf, sizeof(buf)) == 6 && strcmp(buf, "in-dir") == 0, "file content \"%s\"", buf);
		close(fd);
	}
	CHECK(mkdirat(DFD, "sub", 0755) == 0 && faccessat(AT_FDCWD, "the dir/sub", F_OK, 0) == 0,
	      "mkdirat via fd %d went elsewhere", DFD);
	fd = dup(DFD);
	d = fdopendir(fd);
	if (!d)
		fail("fdopendir: %s", strerror(errno));
	else {
		while ((e = readdir(d)))
			seen += strcmp(e->d_name, "file") == 0 || strcmp(e->d_name, "sub") == 0;
		closedir(d);
		CHECK(seen == 2, "readdir saw %d of file, sub", seen);
	}
	CHECK(fchdir(DFD) == 0 && getcwd(cwd, sizeof(cwd)) && strstr(cwd, "/the dir"), "fchdir(%d) -> cwd \"%s\"", DFD,
	      cwd);
	zdtm_finish();
}
