/*
 * fd_mqueue: a POSIX message queue (fd 10) with a message in it. ferry
 * does not carry message queues yet: it must refuse the dump naming the fd
 * (not reopen "/name" as a file) and leave the process untouched: the
 * message is still there afterwards.
 */
#include "zdtm.h"
#include <mqueue.h>

int main(void)
{
	char name[64], buf[8192];
	mqd_t q;

	zdtm_init();
	snprintf(name, sizeof(name), "/zdtm-%d", getpid());
	q = mq_open(name, O_CREAT | O_RDWR, 0600, NULL);
	if (q < 0 || dup2(q, 10) != 10)
		zdtm_die("mq_open: %s", strerror(errno));
	close(q);
	mq_unlink(name);
	if (mq_send(10, "hello", 5, 1))
		zdtm_die("mq_send");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(mq_receive(10, buf, sizeof(buf), NULL) == 5 && memcmp(buf, "hello", 5) == 0, "message gone");
	zdtm_finish();
}
