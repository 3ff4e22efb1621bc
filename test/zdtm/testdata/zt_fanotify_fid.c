/*
 * zt_fanotify_fid: a fanotify group that reports file handles and names
 * instead of descriptors: fanotify_init(FAN_CLASS_NOTIF|FAN_REPORT_DFID_NAME
 * |FAN_NONBLOCK) (fd 30) with an inode mark on directory "fd.dir" for
 * FAN_CREATE|FAN_DELETE|FAN_ONDIR, and FAN_MODIFY on the children of a
 * second directory "fm.dir" (FAN_EVENT_ON_CHILD). Nothing is queued.
 * After restore fdinfo's "fanotify flags" line and the marks' masks are
 * the same; creating "new.file" in fd.dir gives one FAN_CREATE event with
 * metadata fd FAN_NOFD and a DFID_NAME info record naming "new.file"
 * whose file handle is fd.dir's (name_to_handle_at); writing a file in
 * fm.dir gives FAN_MODIFY with that file's name.
 * Modelled on zdtm's fanotify00 (with the FID reporting modes).
 */
#include "zdtm.h"
#include <sys/fanotify.h>

struct ev {
	unsigned long long mask;
	int fd;
	char name[64];
	unsigned char handle[128];
	unsigned hlen;
};

static int read_ev(int fd, struct ev *e)
{
	char buf[4096] __attribute__((aligned(8)));
	struct fanotify_event_metadata *m = (void *)buf;
	int64_t t0 = zdtm_mono_ns();
	ssize_t n;

	do {
		n = read(fd, buf, sizeof(buf));
		if (n > 0)
			break;
		zdtm_sleep_ms(5);
	} while (zdtm_mono_ns() - t0 < 2000000000LL);
	if (n <= 0)
		return -1;
	memset(e, 0, sizeof(*e));
	e->mask = m->mask;
	e->fd = m->fd;
	if (m->event_len > m->metadata_len) {
		struct fanotify_event_info_fid *fid = (void *)(buf + m->metadata_len);
		struct file_handle *fh = (void *)fid->handle;
		if (fid->hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME) {
			e->hlen = fh->handle_bytes;
			if (e->hlen <= sizeof(e->handle))
				memcpy(e->handle, fh->f_handle, e->hlen);
			snprintf(e->name, sizeof(e->name), "%s", (char *)fh->f_handle + fh->handle_bytes);
		}
	}
	return n > (ssize_t)m->event_len ? 2 : 1;
}

static void fdinfo_lines(int fd, char *out, size_t sz)
{
	char p[64], b[4096], *l, *save;
	size_t o = 0;
	snprintf(p, sizeof(p), "/proc/self/fdinfo/%d", fd);
	out[0] = 0;
	if (zdtm_read_file(p, b, sizeof(b)) < 0)
		return;
	for (l = strtok_r(b, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		if (!strncmp(l, "fanotify flags", 14) || !strncmp(l, "fanotify ino", 12)) {
			/* keep flags and masks, not the fhandle bytes */
			char *fh = strstr(l, " fhandle-bytes");
			if (fh)
				*fh = 0;
			o += snprintf(out + o, sz - o, "%s;", l);
		}
}

int main(void)
{
	struct {
		struct file_handle fh;
		unsigned char b[128];
	} dh;
	char info0[2048], info1[2048];
	struct ev e;
	int fd, mnt, r;

	zdtm_init();
	if (mkdir("fd.dir", 0755) || mkdir("fm.dir", 0755))
		zdtm_die("mkdir");
	fd = open("fm.dir/w.file", O_RDWR | O_CREAT, 0644);
	if (fd < 0)
		zdtm_die("create w.file");
	close(fd);
	fd = fanotify_init(FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME | FAN_NONBLOCK, O_RDONLY);
	if (fd < 0)
		zdtm_die("fanotify_init");
	if (dup2(fd, 30) != 30)
		zdtm_die("dup2");
	close(fd);
	if (fanotify_mark(30, FAN_MARK_ADD, FAN_CREATE | FAN_DELETE | FAN_ONDIR, AT_FDCWD, "fd.dir") ||
	    fanotify_mark(30, FAN_MARK_ADD, FAN_MODIFY | FAN_EVENT_ON_CHILD, AT_FDCWD, "fm.dir"))
		zdtm_die("fanotify_mark");
	dh.fh.handle_bytes = sizeof(dh.b);
	if (name_to_handle_at(AT_FDCWD, "fd.dir", &dh.fh, &mnt, 0))
		zdtm_die("name_to_handle_at");
	fdinfo_lines(30, info0, sizeof(info0));
	zdtm_log("fdinfo: %s", info0);

	zdtm_ready();
	zdtm_wait_go();

	fdinfo_lines(30, info1, sizeof(info1));
	CHECK(strcmp(info0, info1) == 0, "fdinfo after restore: %s, want %s", info1, info0);
	{
		char b[4096] __attribute__((aligned(8)));
		ssize_t n = read(30, b, sizeof(b));
		CHECK(n < 0 && errno == EAGAIN, "an event was queued after restore (read gave %ld)", (long)n);
	}
	fd = open("fd.dir/new.file", O_RDWR | O_CREAT, 0644);
	if (fd >= 0)
		close(fd);
	r = read_ev(30, &e);
	CHECK(r == 1, "FAN_CREATE: read gave %d", r);
	if (r > 0) {
		CHECK(e.mask == FAN_CREATE, "mask %#llx, want FAN_CREATE", e.mask);
		CHECK(e.fd == FAN_NOFD, "metadata fd %d, want FAN_NOFD", e.fd);
		CHECK(strcmp(e.name, "new.file") == 0, "name '%s', want new.file", e.name);
		CHECK(e.hlen == dh.fh.handle_bytes && memcmp(e.handle, dh.fh.f_handle, e.hlen) == 0,
		      "directory handle is not fd.dir's");
	}
	fd = open("fm.dir/w.file", O_WRONLY);
	if (fd < 0 || write(fd, "x", 1) != 1)
		fail("write w.file");
	if (fd >= 0)
		close(fd);
	r = read_ev(30, &e);
	CHECK(r == 1, "FAN_MODIFY: read gave %d", r);
	if (r > 0)
		CHECK(e.mask == FAN_MODIFY && strcmp(e.name, "w.file") == 0, "mask %#llx name '%s', want FAN_MODIFY w.file",
		      e.mask, e.name);
	zdtm_finish();
}
