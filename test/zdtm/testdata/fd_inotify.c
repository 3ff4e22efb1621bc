/*
 * fd_inotify: an inotify instance with watches. Watch 1 is on a file
 * (IN_MODIFY), watch 2 was added and removed again (a gap), watch 3 is on
 * a directory (IN_CREATE|IN_DELETE|IN_EXCL_UNLINK), watch 4 on a second
 * file is IN_ONESHOT. After restore: fdinfo lists the same watch
 * descriptors and masks, nothing is queued, writing the file gives one
 * IN_MODIFY on wd 1, creating and removing an entry in the directory
 * IN_CREATE and IN_DELETE (with the name) on wd 3, and a new watch gets
 * wd 5.
 */
#include "zdtm.h"
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <poll.h>

static int read_events(int fd, struct inotify_event **evs, char *buf, size_t size, int want)
{
	int n = 0;
	int64_t t0 = zdtm_mono_ns();
	size_t have = 0;

	while (n < want && zdtm_mono_ns() - t0 < 2000000000LL) {
		ssize_t r = read(fd, buf + have, size - have);
		if (r < 0 && errno == EAGAIN) {
			zdtm_sleep_ms(5);
			continue;
		}
		if (r <= 0)
			break;
		for (char *p = buf + have; p < buf + have + r;) {
			struct inotify_event *e = (struct inotify_event *)p;
			evs[n++] = e;
			p += sizeof(*e) + e->len;
		}
		have += r;
	}
	return n;
}

static char fdinfo_before[4096];

static int fdinfo(int fd, char *out, size_t size)
{
	char path[64], buf[4096], *p, *o = out;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	n = zdtm_read_file(path, buf, sizeof(buf));
	if (n < 0)
		return -1;
	/* keep only "wd:… mask:…" of each watch: inode numbers may change */
	*o = 0;
	for (p = buf; (p = strstr(p, "inotify wd:")); p++) {
		unsigned wd, mask;
		char *m = strstr(p, "mask:");
		if (!m || sscanf(p, "inotify wd:%x", &wd) != 1 || sscanf(m, "mask:%x", &mask) != 1)
			return -1;
		o += snprintf(o, size - (o - out), "%x:%x ", wd, mask);
	}
	return 0;
}

int main(void)
{
	struct inotify_event *evs[16];
	char buf[8192], now[4096];
	int fd, wd1, wd2, wd3, wd4, wd5, n, q, f;

	zdtm_init();
	if (mkdir("watched", 0755) && errno != EEXIST)
		zdtm_die("mkdir");
	f = open("watched.file", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || close(open("other.file", O_RDWR | O_CREAT | O_TRUNC, 0644)) < 0)
		zdtm_die("files");
	fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0)
		zdtm_die("inotify_init1");
	wd1 = inotify_add_watch(fd, "watched.file", IN_MODIFY);
	wd2 = inotify_add_watch(fd, ".", IN_ATTRIB);
	if (wd1 != 1 || wd2 != 2 || inotify_rm_watch(fd, wd2))
		zdtm_die("watches 1, 2: %d %d", wd1, wd2);
	if (read_events(fd, evs, buf, sizeof(buf), 1) != 1 || !(evs[0]->mask & IN_IGNORED))
		zdtm_die("IN_IGNORED of the removed watch");
	wd3 = inotify_add_watch(fd, "watched", IN_CREATE | IN_DELETE | IN_EXCL_UNLINK);
	wd4 = inotify_add_watch(fd, "other.file", IN_CLOSE_WRITE | IN_ONESHOT);
	if (wd3 != 3 || wd4 != 4)
		zdtm_die("watches 3, 4: %d %d", wd3, wd4);
	if (fdinfo(fd, fdinfo_before, sizeof(fdinfo_before)))
		zdtm_die("fdinfo");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(fdinfo(fd, now, sizeof(now)) == 0 && strcmp(now, fdinfo_before) == 0, "watches %s, want %s", now,
	      fdinfo_before);
	CHECK(ioctl(fd, FIONREAD, &q) == 0 && q == 0, "%d bytes of events queued after restore", q);
	if (write(f, "x", 1) != 1)
		fail("write: %s", strerror(errno));
	n = read_events(fd, evs, buf, sizeof(buf), 1);
	CHECK(n == 1 && evs[0]->wd == 1 && evs[0]->mask == IN_MODIFY, "write gave %d events (first wd %d mask %#x)", n,
	      n ? evs[0]->wd : -1, n ? evs[0]->mask : 0);
	close(open("watched/entry", O_CREAT | O_WRONLY, 0644));
	unlink("watched/entry");
	n = read_events(fd, evs, buf, sizeof(buf), 2);
	CHECK(n == 2 && evs[0]->wd == 3 && evs[0]->mask == IN_CREATE && !strcmp(evs[0]->name, "entry") &&
		      evs[1]->wd == 3 && evs[1]->mask == IN_DELETE,
	      "create+unlink in the directory gave %d events", n);
	wd5 = inotify_add_watch(fd, "watched.file", IN_ATTRIB | IN_MASK_ADD);
	CHECK(wd5 == 1, "IN_MASK_ADD on the watched file gave wd %d, want 1", wd5);
	wd5 = inotify_add_watch(fd, ".", IN_ATTRIB);
	CHECK(wd5 == 5, "a new watch got wd %d, want 5", wd5);
	zdtm_finish();
}
