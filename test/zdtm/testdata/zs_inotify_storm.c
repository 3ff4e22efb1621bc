/*
 * zs_inotify_storm: one inotify instance (fd 10, IN_NONBLOCK) with many
 * watches, and a watch on a file whose name is gone.
 *   wds 1..64: directories st/d.000 .. st/d.063 (IN_CREATE|IN_DELETE|
 *              IN_CLOSE_WRITE|IN_DELETE_SELF);
 *   wd 65:     file "in.ghost" (IN_MODIFY), opened O_RDWR as fd 11, then
 *              unlinked (no event: IN_ATTRIB is not watched).
 * Nothing is queued at the dump. After restore fdinfo lists 65 watches;
 * creating a file in st/d.040 gives IN_CREATE on wd 41 with its name; a
 * write through fd 11 gives IN_MODIFY on wd 65 (the watch is on the very
 * inode fd 11 has open, not on a copy); a new watch gets wd 66.
 * With the argument "noghost" (case zs_inotify_dirs) wd 65 is on a file
 * that keeps its name (ferry refuses a watch on an inode without a path).
 * Modelled on zdtm's inotify02 and inotify00 (watches on unlinked files).
 */
#include "zdtm.h"
#include <sys/inotify.h>

#define ND 64

static int count_watches(int fd)
{
	char path[64], buf[65536], *p;
	int n = 0;
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; (p = strstr(p, "\ninotify ")); p++)
		n++;
	return n;
}

/* next_event returns the next event's wd (waiting up to 2 s), or -1 */
static int next_event(int fd, uint32_t *mask, char *name, size_t nsize)
{
	static char buf[4096] __attribute__((aligned(8)));
	static ssize_t len, pos;
	int64_t t0 = zdtm_mono_ns();
	struct inotify_event *e;

	while (pos >= len) {
		len = read(fd, buf, sizeof(buf));
		pos = 0;
		if (len > 0)
			break;
		len = 0;
		if (zdtm_mono_ns() - t0 > 2000000000LL)
			return -1;
		zdtm_sleep_ms(5);
	}
	e = (struct inotify_event *)(buf + pos);
	pos += sizeof(*e) + e->len;
	*mask = e->mask;
	snprintf(name, nsize, "%.*s", (int)nsize - 1, e->len ? e->name : "");
	return e->wd;
}

int main(int argc, char **argv)
{
	int ghost = !(argc > 1 && strcmp(argv[1], "noghost") == 0);
	char path[64], name[64];
	uint32_t mask = 0;
	int fd, i, wd;

	zdtm_init();
	fd = inotify_init1(IN_NONBLOCK);
	if (fd < 0 || dup2(fd, 10) != 10)
		zdtm_die("inotify_init1");
	close(fd);
	if (mkdir("st", 0755))
		zdtm_die("mkdir");
	for (i = 0; i < ND; i++) {
		snprintf(path, sizeof(path), "st/d.%03d", i);
		if (mkdir(path, 0755))
			zdtm_die("mkdir %s", path);
		wd = inotify_add_watch(10, path, IN_CREATE | IN_DELETE | IN_CLOSE_WRITE | IN_DELETE_SELF);
		if (wd != i + 1)
			zdtm_die("watch %s got wd %d", path, wd);
	}
	fd = open("in.ghost", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || dup2(fd, 11) != 11)
		zdtm_die("in.ghost");
	close(fd);
	zdtm_write_all(11, "ghost", 5);
	if (inotify_add_watch(10, "in.ghost", IN_MODIFY) != ND + 1)
		zdtm_die("watch in.ghost");
	if (ghost && unlink("in.ghost"))
		zdtm_die("unlink");
	if (read(10, path, sizeof(path)) != -1 || errno != EAGAIN)
		zdtm_die("events queued before the dump");

	zdtm_ready();
	zdtm_wait_go();

	i = count_watches(10);
	CHECK(i == ND + 1, "fdinfo lists %d watches, want %d", i, ND + 1);
	fd = open("st/d.040/new", O_WRONLY | O_CREAT, 0644);
	if (fd < 0)
		fail("create st/d.040/new: %s", strerror(errno));
	wd = next_event(10, &mask, name, sizeof(name));
	CHECK(wd == 41 && (mask & IN_CREATE) && strcmp(name, "new") == 0,
	      "creating st/d.040/new gave wd %d mask %#x name \"%s\", want IN_CREATE on 41 \"new\"", wd, mask, name);
	if (fd >= 0)
		close(fd);
	/* the close gives IN_CLOSE_WRITE on 41 */
	wd = next_event(10, &mask, name, sizeof(name));
	CHECK(wd == 41 && (mask & IN_CLOSE_WRITE), "closing st/d.040/new gave wd %d mask %#x", wd, mask);
	if (pwrite(11, "more", 4, 5) != 4)
		fail("pwrite fd 11: %s", strerror(errno));
	wd = next_event(10, &mask, name, sizeof(name));
	CHECK(wd == ND + 1 && (mask & IN_MODIFY), "write through fd 11 gave wd %d mask %#x, want IN_MODIFY on %d",
	      wd, mask, ND + 1);
	if (mkdir("st/extra", 0755))
		fail("mkdir st/extra");
	wd = inotify_add_watch(10, "st/extra", IN_CREATE);
	CHECK(wd == ND + 2, "a new watch got wd %d, want %d", wd, ND + 2);
	zdtm_finish();
}
