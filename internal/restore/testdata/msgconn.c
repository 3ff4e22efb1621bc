/*
 * msgconn: a process holding a connection to a message endpoint served
 * outside its tree (TestMsgEndpoint plays the node).
 *
 *   msgconn SOCKET GOFILE K SIZE...
 *
 * It connects a SOCK_SEQPACKET socket (non-blocking, close-on-exec) to
 * SOCKET, sets SO_RCVBUF, dups the socket (the copy without FD_CLOEXEC),
 * registers it in an epoll set edge-triggered (as Go's netpoller does),
 * and reads the first K of the packets the node sends, packet i being
 * SIZE[i] bytes of pattern(i, j). It forks a child that holds the same
 * fds and sleeps, writes "R PID CHILD SOCKFD" to fd 3, closes it, and
 * polls for GOFILE, which the test creates once the process was
 * checkpointed, killed and restored. Then:
 *   - epoll_wait must report the socket readable (with its data), before
 *     any read: the restore registered it again and the node queued the
 *     unread packets; the item reads back as it was in fdinfo;
 *   - the other packets, K to the last, arrive whole, in order, byte for
 *     byte, and nothing after them;
 *   - the socket keeps O_NONBLOCK, FD_CLOEXEC (the dup has none), its
 *     SO_RCVBUF, its type, and both fds are the one socket;
 *   - it sends "reply PID" on the socket and "reply via dup" on the dup.
 * Exit 0 when all holds; 1 for a set-up error, 2 for a failed check,
 * with the reason on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x6d7367636f6e6e31ULL /* "msgconn1" */
#define MAXN 64
#define READY_FD 3

static unsigned char buf[256 * 1024];

__attribute__((format(printf, 2, 3), noreturn))
static void die(int code, const char *fmt, ...)
{
	char msg[600];
	va_list ap;
	int e = errno, n;

	va_start(ap, fmt);
	n = vsnprintf(msg, 500, fmt, ap);
	va_end(ap);
	if (n < 0 || n > 500)
		n = 500;
	n += snprintf(msg + n, sizeof(msg) - n, " (errno %d: %s)\n", e, strerror(e));
	if (write(2, msg, n) < 0) {
		/* nowhere to report it */
	}
	_exit(code);
}

static unsigned char pattern(int i, long j) { return (unsigned char)(i * 31 + j * 7 + 1); }

/* recv_packet reads one packet from s, waiting on ep when none is queued. */
static ssize_t recv_packet(int ep, int s)
{
	struct epoll_event ev;

	for (;;) {
		ssize_t n = recv(s, buf, sizeof(buf), MSG_TRUNC);
		if (n >= 0)
			return n;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN)
			die(2, "recv");
		int r = epoll_wait(ep, &ev, 1, 20000);
		if (r < 0 && errno == EINTR)
			continue;
		if (r != 1)
			die(2, "epoll_wait = %d: no packet within 20 s", r);
		if (ev.data.u64 != MAGIC)
			die(2, "epoll_wait reported data %#llx, want %#llx", (unsigned long long)ev.data.u64, MAGIC);
	}
}

static void check_packet(int i, ssize_t n, long want)
{
	if (n != want)
		die(2, "packet %d: %zd bytes, want %ld", i, n, want);
	for (long j = 0; j < n; j++)
		if (buf[j] != pattern(i, j))
			die(2, "packet %d: byte %ld is %#x, want %#x", i, j, buf[j], pattern(i, j));
}

/* epoll_item reads the events and data of ep's item for fd s from fdinfo. */
static void epoll_item(int ep, int s, unsigned *events, unsigned long long *data)
{
	char path[64], text[8192], *p;
	int fd, tfd;
	ssize_t n;

	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", ep);
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0)
		die(2, "open %s", path);
	n = read(fd, text, sizeof(text) - 1);
	close(fd);
	if (n < 0)
		die(2, "read %s", path);
	text[n] = 0;
	for (p = strstr(text, "tfd:"); p; p = strstr(p + 1, "tfd:"))
		if (sscanf(p, "tfd: %d events: %x data: %llx", &tfd, events, data) == 3 && tfd == s)
			return;
	die(2, "epoll fd %d has no item for fd %d:\n%s", ep, s, text);
}

int main(int argc, char **argv)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET, .data.u64 = MAGIC };
	long sizes[MAXN];
	int s, s2, ep, k, n, i, r, rcvbuf = 150000, rcvbuf0, rcvbuf1, typ, fl;
	unsigned ev0, ev1;
	unsigned long long data0, data1;
	socklen_t len = sizeof(int);
	struct stat st1, st2;
	char reply[64];
	pid_t child;

	if (argc < 5 || argc - 4 > MAXN)
		die(1, "usage: msgconn SOCKET GOFILE K SIZE...");
	k = atoi(argv[3]);
	n = argc - 4;
	for (i = 0; i < n; i++)
		sizes[i] = atol(argv[4 + i]);

	if ((s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)) < 0)
		die(1, "socket");
	strncpy(sa.sun_path, argv[1], sizeof(sa.sun_path) - 1);
	if (connect(s, (struct sockaddr *)&sa, sizeof(sa)))
		die(1, "connect %s", argv[1]);
	if (setsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) ||
	    getsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf0, &len))
		die(1, "SO_RCVBUF");
	if ((s2 = dup(s)) < 0)
		die(1, "dup");
	if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
		die(1, "epoll_create1");
	if (epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev))
		die(1, "epoll_ctl");
	epoll_item(ep, s, &ev0, &data0);

	for (i = 0; i < k; i++)
		check_packet(i, recv_packet(ep, s), sizes[i]);

	if ((child = fork()) < 0)
		die(1, "fork");
	if (child == 0) {
		close(READY_FD);
		for (;;)
			pause();
	}
	if (dprintf(READY_FD, "R %d %d %d\n", getpid(), child, s) < 0)
		die(1, "write ready fd");
	close(READY_FD);

	while (access(argv[2], F_OK) != 0) {
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}

	/* Restored: the item must report the packets queued for it. */
	do
		r = epoll_wait(ep, &ev, 1, 20000);
	while (r < 0 && errno == EINTR);
	if (r != 1)
		die(2, "after restore: epoll_wait = %d, want the socket readable (is it registered again?)", r);
	if (ev.data.u64 != MAGIC || !(ev.events & EPOLLIN))
		die(2, "after restore: epoll_wait events %#x data %#llx, want EPOLLIN and %#llx", ev.events,
		    (unsigned long long)ev.data.u64, MAGIC);
	epoll_item(ep, s, &ev1, &data1);
	if (ev1 != ev0 || data1 != data0)
		die(2, "after restore: epoll item events %#x data %#llx, was %#x %#llx", ev1, data1, ev0, data0);

	for (i = k; i < n; i++)
		check_packet(i, recv_packet(ep, s), sizes[i]);
	if (recv(s, buf, sizeof(buf), MSG_DONTWAIT) != -1 || errno != EAGAIN)
		die(2, "a packet after the %d sent, or end of file", n);

	if ((fl = fcntl(s, F_GETFL)) < 0 || !(fl & O_NONBLOCK))
		die(2, "socket flags %#x: O_NONBLOCK lost", fl);
	if (!(fcntl(s, F_GETFD) & FD_CLOEXEC) || (fcntl(s2, F_GETFD) & FD_CLOEXEC))
		die(2, "FD_CLOEXEC: socket %d, dup %d; want 1, 0", fcntl(s, F_GETFD), fcntl(s2, F_GETFD));
	if (fstat(s, &st1) || fstat(s2, &st2) || st1.st_ino != st2.st_ino || !S_ISSOCK(st1.st_mode))
		die(2, "fd %d and its dup %d are not one socket (inodes %lu, %lu)", s, s2,
		    (unsigned long)st1.st_ino, (unsigned long)st2.st_ino);
	len = sizeof(int);
	if (getsockopt(s, SOL_SOCKET, SO_RCVBUF, &rcvbuf1, &len) || rcvbuf1 != rcvbuf0)
		die(2, "SO_RCVBUF %d, was %d", rcvbuf1, rcvbuf0);
	len = sizeof(int);
	if (getsockopt(s, SOL_SOCKET, SO_TYPE, &typ, &len) || typ != SOCK_SEQPACKET)
		die(2, "socket type %d, want SOCK_SEQPACKET", typ);

	len = snprintf(reply, sizeof(reply), "reply %d", getpid());
	if (send(s, reply, len, 0) != (ssize_t)len)
		die(2, "send the reply");
	if (send(s2, "reply via dup", 13, 0) != 13)
		die(2, "send the reply through the dup");
	return 0;
}
