/*
 * fd_unix_zd_scmloop: unix sockets in flight through themselves. A
 * datagram socketpair 20<->21, 20 bound to @zdtm-loop0-PID and 21 to
 * @zdtm-loop1-PID; then 20 and 21 are each sent from 20 (queued at 21),
 * and 20 and 21 each sent from 21 (queued at 20), in that order, every
 * message one byte with one fd. The program keeps fds 20 and 21. After
 * restore, as zdtm walks it: receiving on 20 gives a socket named loop0,
 * receiving on that gives one named loop1, receiving on that gives one
 * named loop0; each received socket is the same open file as fd 20 or 21
 * (kcmp KCMP_FILE) according to its name; then 21 receives 21 itself and
 * both queues are empty.
 * Modelled on zdtm's scm06.
 */
#include "zdtm_unix.h"
#include <sys/syscall.h>
#include <linux/kcmp.h>

static socklen_t name(struct sockaddr_un *a, int i)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "zdtm-loop%d-%d", i, getpid());
	return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1);
}

/* which returns 0 or 1 for a socket bound to loop0 or loop1, else -1. */
static int which(int fd)
{
	struct sockaddr_un got, want;
	socklen_t l = sizeof(got), wl;
	int i;

	memset(&got, 0, sizeof(got));
	if (getsockname(fd, (struct sockaddr *)&got, &l))
		return -1;
	for (i = 0; i < 2; i++) {
		wl = name(&want, i);
		if (l == wl && memcmp(&got, &want, l) == 0)
			return i;
	}
	return -1;
}

int main(void)
{
	struct sockaddr_un a;
	int sv[2], fds[MAXFDS], i, w, skc, pid = getpid();
	const int want[3] = { 0, 1, 0 };
	char c;

	zdtm_init();
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) || dup2(sv[0], 20) != 20 || dup2(sv[1], 21) != 21)
		zdtm_die("socketpair");
	close(sv[0]);
	close(sv[1]);
	for (i = 0; i < 2; i++)
		if (bind(20 + i, (struct sockaddr *)&a, name(&a, i)))
			zdtm_die("bind %d", 20 + i);
	for (i = 0; i < 2; i++) {
		fds[0] = 20;
		send_byte_fds(20 + i, fds, 1, 0);
		fds[0] = 21;
		send_byte_fds(20 + i, fds, 1, 0);
	}

	zdtm_ready();
	zdtm_wait_go();

	skc = 20;
	for (i = 0; i < 3; i++) {
		if (recv_fds(skc, fds, 1) != 1)
			break;
		skc = fds[0];
		w = which(skc);
		CHECK(w == want[i], "receive #%d: a socket named loop%d, want loop%d", i + 1, w, want[i]);
		if (w >= 0)
			CHECK(syscall(SYS_kcmp, pid, pid, KCMP_FILE, 20 + w, skc) == 0,
			      "receive #%d: fd %d (named loop%d) is not the open file of fd %d", i + 1, skc, w, 20 + w);
	}
	if (recv_fds(21, fds, 1) == 1)
		CHECK(syscall(SYS_kcmp, pid, pid, KCMP_FILE, 21, fds[0]) == 0, "the last message at 21 is not 21 itself");
	CHECK(recv(20, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "fd 20: an extra message");
	CHECK(recv(21, &c, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "fd 21: an extra message");
	zdtm_finish();
}
