/*
 * fd_devnull: character devices: /dev/null O_RDWR (fd 28), /dev/zero
 * O_RDONLY (fd 29), /dev/urandom (fd 31), plus a MAP_SHARED mapping of
 * /dev/zero. After restore the fds are the same devices with the same
 * flags and behave as such.
 */
#include "zdtm.h"
#include <sys/mman.h>
#include <sys/sysmacros.h>

static void place(const char *path, int flags, int want)
{
	int fd = open(path, flags);
	if (fd < 0 || dup2(fd, want) != want)
		zdtm_die("open %s", path);
	close(fd);
}

static void check_dev(int fd, unsigned maj, unsigned min, int flags)
{
	struct stat st;

	if (fstat(fd, &st)) {
		fail("fstat %d: %s", fd, strerror(errno));
		return;
	}
	CHECK(S_ISCHR(st.st_mode) && major(st.st_rdev) == maj && minor(st.st_rdev) == min,
	      "fd %d is device %u:%u, want %u:%u", fd, major(st.st_rdev), minor(st.st_rdev), maj, min);
	CHECK((fcntl(fd, F_GETFL) & O_ACCMODE) == flags, "fd %d: access mode %d, want %d", fd, fcntl(fd, F_GETFL) & O_ACCMODE,
	      flags);
}

int main(void)
{
	unsigned char buf[4096], *shz;
	int fd;

	zdtm_init();
	place("/dev/null", O_RDWR, 28);
	place("/dev/zero", O_RDONLY, 29);
	place("/dev/urandom", O_RDONLY, 31);
	fd = open("/dev/zero", O_RDWR);
	shz = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (fd < 0 || shz == MAP_FAILED)
		zdtm_die("mmap /dev/zero");
	close(fd);
	zdtm_fill(shz, 8192, 111);

	zdtm_ready();
	zdtm_wait_go();

	check_dev(28, 1, 3, O_RDWR);
	check_dev(29, 1, 5, O_RDONLY);
	check_dev(31, 1, 9, O_RDONLY);
	CHECK(write(28, "x", 1) == 1 && read(28, buf, 10) == 0, "/dev/null misbehaves");
	memset(buf, 0xff, sizeof(buf));
	CHECK(read(29, buf, sizeof(buf)) == (ssize_t)sizeof(buf) && zdtm_is_zero(buf, sizeof(buf)) < 0, "/dev/zero misbehaves");
	CHECK(read(31, buf, 64) == 64, "/dev/urandom read failed");
	CHECK(zdtm_check(shz, 8192, 111) < 0, "shared /dev/zero mapping differs");
	zdtm_finish();
}
