/*
 * fd_inotify_queued: an inotify fd (number 10) with an event queued, not
 * yet read. No new instance can be given that event: ferry must refuse the
 * dump naming the fd and leave the process untouched — afterwards the
 * event is still there to read.
 */
#include "zdtm.h"
#include <sys/inotify.h>

int main(void)
{
	char buf[4096];
	struct inotify_event *e = (struct inotify_event *)buf;
	int fd, f;
	ssize_t n;

	zdtm_init();
	f = open("watched.file", O_RDWR | O_CREAT | O_TRUNC, 0644);
	fd = inotify_init1(IN_NONBLOCK);
	if (f < 0 || fd < 0 || dup2(fd, 10) != 10)
		zdtm_die("setup");
	close(fd);
	if (inotify_add_watch(10, "watched.file", IN_MODIFY) != 1 || write(f, "x", 1) != 1)
		zdtm_die("watch");

	zdtm_ready();
	zdtm_wait_go();

	n = read(10, buf, sizeof(buf));
	CHECK(n >= (ssize_t)sizeof(*e) && e->wd == 1 && e->mask == IN_MODIFY, "queued event gone (read %zd)", n);
	zdtm_finish();
}
