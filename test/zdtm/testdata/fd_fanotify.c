/*
 * fd_fanotify: a fanotify group (FAN_CLASS_NOTIF, FAN_NONBLOCK, events
 * opened O_RDONLY) with an inode mark on a file (FAN_MODIFY|FAN_CLOSE_WRITE)
 * and an ignored mask (FAN_CLOSE_WRITE) on another file, and a mount mark
 * on /dev/shm (FAN_OPEN_EXEC: nothing is executed from there). A mount
 * mark that saw the tool's own work (ferry opens and writes its image) would
 * have events queued at the dump, which ferry must refuse. After restore the group's flags and marks in
 * fdinfo are the same, nothing is queued, and writing the marked file
 * brings a FAN_MODIFY event whose fd refers to that file.
 */
#include "zdtm.h"
#include <sys/fanotify.h>
#include <sys/ioctl.h>

static int marks(int fd, char *out, size_t size)
{
	char path[64], buf[4096], *p, *o = out;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	*o = 0;
	for (p = buf; (p = strstr(p, "fanotify ")); p++) {
		char *end = strchr(p, '\n'), *h = strstr(p, " fhandle-bytes");
		char *ino = strstr(p, "ino:");
		if (!end)
			return -1;
		if (h && h < end)
			end = h; /* the handle may change */
		if (ino && ino < end) {
			/* inode numbers change with a copy of the file: drop them */
			char *sp = strchr(ino, ' ');
			o += snprintf(o, size - (o - out), "%.*s", (int)(ino - p), p);
			p = sp;
		}
		o += snprintf(o, size - (o - out), "%.*s|", (int)(end - p), p);
	}
	return 0;
}

int main(void)
{
	char before[4096], after[4096], buf[4096], link[256], want[256], path[64];
	struct fanotify_event_metadata *m = (struct fanotify_event_metadata *)buf;
	int fd, f, q;
	ssize_t n;
	int64_t t0;

	zdtm_init();
	f = open("marked.file", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (f < 0 || close(open("ignored.file", O_RDWR | O_CREAT | O_TRUNC, 0644)))
		zdtm_die("files");
	fd = fanotify_init(FAN_CLASS_NOTIF | FAN_NONBLOCK | FAN_CLOEXEC, O_RDONLY | O_LARGEFILE);
	if (fd < 0)
		zdtm_die("fanotify_init: %s", strerror(errno));
	if (fanotify_mark(fd, FAN_MARK_ADD, FAN_MODIFY | FAN_CLOSE_WRITE, AT_FDCWD, "marked.file") ||
	    fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY, FAN_CLOSE_WRITE,
			  AT_FDCWD, "ignored.file") ||
	    fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC, AT_FDCWD, "/dev/shm"))
		zdtm_die("fanotify_mark: %s", strerror(errno));
	/* read away what setting up caused */
	zdtm_sleep_ms(50);
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (struct fanotify_event_metadata *e = m; FAN_EVENT_OK(e, n); e = FAN_EVENT_NEXT(e, n))
			if (e->fd >= 0)
				close(e->fd);
	if (marks(fd, before, sizeof(before)))
		zdtm_die("fdinfo");
	if (!realpath("marked.file", want))
		zdtm_die("realpath");

	zdtm_ready();
	zdtm_wait_go();

	/* the harness itself opens files on this mount: read those away */
	while ((n = read(fd, buf, sizeof(buf))) > 0)
		for (struct fanotify_event_metadata *e = m; FAN_EVENT_OK(e, n); e = FAN_EVENT_NEXT(e, n))
			if (e->fd >= 0)
				close(e->fd);
	CHECK(marks(fd, after, sizeof(after)) == 0 && strcmp(before, after) == 0, "marks %s, want %s", after, before);
	CHECK(ioctl(fd, FIONREAD, &q) == 0 && q == 0, "%d bytes queued", q);
	if (write(f, "x", 1) != 1)
		fail("write: %s", strerror(errno));
	for (t0 = zdtm_mono_ns(); (n = read(fd, buf, sizeof(buf))) < 0 && errno == EAGAIN && zdtm_mono_ns() - t0 < 2000000000LL;)
		zdtm_sleep_ms(5);
	CHECK(n >= (ssize_t)sizeof(*m) && (m->mask & FAN_MODIFY), "write gave no FAN_MODIFY (read %zd)", n);
	if (n >= (ssize_t)sizeof(*m) && m->fd >= 0) {
		snprintf(path, sizeof(path), "/proc/self/fd/%d", m->fd);
		link[0] = 0;
		n = readlink(path, link, sizeof(link) - 1);
		link[n > 0 ? n : 0] = 0;
		CHECK(strcmp(link, want) == 0, "event fd is %s, want %s", link, want);
	}
	zdtm_finish();
}
