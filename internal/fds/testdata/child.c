// Test child for package fds: opens a set of fds at fixed numbers (100 and
// up, so that the test process can install restored files at the same
// numbers), reports readiness on fd 3 and blocks.
//
//   child full DIR    fd 3: readiness pipe, fd 4: read end of a pipe whose
//                     writer is the test (the "external" pipe). Forks a
//                     grandchild that shares everything; each writes
//                     "c PID\n" / "g PID\n" to fd 3.
//   child KIND DIR    one resource of an unsupported KIND at fd 100; writes
//                     "c PID\n".
//   child locks DIR   file locks of each kind (see locks below); writes
//                     "c PID\n".
//   child probe DIR   not a test subject: reports on stdout which locks
//                     another process holds on the files of "locks".
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

static void must(int ok, const char *what) {
	if (!ok) {
		fprintf(stderr, "child: %s: %s\n", what, strerror(errno));
		exit(2);
	}
}

// place moves fd to number num (close-on-exec if cloexec).
static void place(int fd, int num, int cloexec) {
	if (fd == num) {
		must(fcntl(num, F_SETFD, cloexec ? FD_CLOEXEC : 0) == 0, "F_SETFD");
		return;
	}
	must(dup3(fd, num, cloexec ? O_CLOEXEC : 0) == num, "dup3");
	close(fd);
}

static void writes(int fd, const char *s, size_t n) { must(write(fd, s, n) == (ssize_t)n, "write"); }

static void ready(char who) {
	char buf[64];
	int n = snprintf(buf, sizeof buf, "%c %d\n", who, getpid());
	writes(3, buf, n);
}

static char path[4096];
static const char *in(const char *dir, const char *name) {
	snprintf(path, sizeof path, "%s/%s", dir, name);
	return path;
}

static void full(const char *dir) {
	int fd, p[2], sv[2];

	// 100: O_APPEND file at offset 3; 101: read-only at 5 (cloexec); 102: dup of 101.
	fd = open(in(dir, "append.txt"), O_RDWR | O_APPEND | O_CREAT | O_TRUNC, 0644);
	must(fd >= 0, "open append");
	writes(fd, "0123456789", 10);
	lseek(fd, 3, SEEK_SET);
	place(fd, 100, 0);
	fd = open(in(dir, "ro.txt"), O_RDONLY);
	must(fd >= 0, "open ro");
	lseek(fd, 5, SEEK_SET);
	place(fd, 101, 1);
	must(dup2(101, 102) == 102, "dup2");
	// 103: directory; 104: /dev/null write-only.
	place(open(dir, O_RDONLY | O_DIRECTORY), 103, 0);
	place(open("/dev/null", O_WRONLY), 104, 0);
	// 105/106: pipe of 128 KiB holding "pipe-data".
	must(pipe(p) == 0, "pipe");
	must(fcntl(p[1], F_SETPIPE_SZ, 128 << 10) >= 0, "F_SETPIPE_SZ");
	writes(p[1], "pipe-", 5);
	writes(p[1], "data", 4);
	place(p[0], 105, 0);
	place(p[1], 106, 0);
	// 107: semaphore eventfd at 7.
	place(eventfd(7, EFD_SEMAPHORE | EFD_NONBLOCK), 107, 0);
	// 108: monotonic timerfd, 100 s then every 5 s.
	fd = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec its = {.it_interval = {5, 0}, .it_value = {100, 0}};
	must(timerfd_settime(fd, 0, &its, NULL) == 0, "timerfd_settime");
	place(fd, 108, 0);
	// 109: signalfd for SIGUSR1 and SIGUSR2.
	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigaddset(&m, SIGUSR2);
	sigprocmask(SIG_BLOCK, &m, NULL);
	place(signalfd(-1, &m, SFD_NONBLOCK), 109, 0);
	// 110: epoll watching 105 (data 0xabc) and 107 (edge-triggered, data 7).
	fd = epoll_create1(0);
	place(fd, 110, 1);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xabc};
	must(epoll_ctl(110, EPOLL_CTL_ADD, 105, &ev) == 0, "epoll_ctl");
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 7;
	must(epoll_ctl(110, EPOLL_CTL_ADD, 107, &ev) == 0, "epoll_ctl");
	// 111/112: stream pair; 111 has "to-a" queued, 112 "to-b-1to-b-2".
	must(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	place(sv[0], 111, 0);
	place(sv[1], 112, 0);
	writes(112, "to-a", 4);
	writes(111, "to-b-1", 6);
	writes(111, "to-b-2", 6);
	// ... with 111's SO_SNDBUF and 112's SO_RCVBUF set, SO_PASSCRED on 112.
	int opt = 50000;
	must(setsockopt(111, SOL_SOCKET, SO_SNDBUF, &opt, sizeof opt) == 0, "SO_SNDBUF");
	opt = 70000;
	must(setsockopt(112, SOL_SOCKET, SO_RCVBUF, &opt, sizeof opt) == 0, "SO_RCVBUF");
	opt = 1;
	must(setsockopt(112, SOL_SOCKET, SO_PASSCRED, &opt, sizeof opt) == 0, "SO_PASSCRED");
	// 113/114: datagram pair; 113 has "d1", "", "d333" queued.
	must(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0, "socketpair");
	place(sv[0], 113, 0);
	place(sv[1], 114, 0);
	writes(114, "d1", 2);
	must(send(114, "", 0, 0) == 0, "send");
	writes(114, "d333", 4);
	// 115: sealed memfd at offset 2.
	fd = memfd_create("ferrytest", MFD_ALLOW_SEALING);
	must(fd >= 0, "memfd_create");
	writes(fd, "memfd-content", 13);
	must(fcntl(fd, F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK) == 0, "F_ADD_SEALS");
	lseek(fd, 2, SEEK_SET);
	place(fd, 115, 0);
	// 116: unlinked file at offset 4.
	fd = open(in(dir, "gone.txt"), O_RDWR | O_CREAT | O_TRUNC, 0600);
	must(fd >= 0, "open gone");
	writes(fd, "unlinked-content", 16);
	must(unlink(path) == 0, "unlink");
	lseek(fd, 4, SEEK_SET);
	place(fd, 116, 0);
	// 117: the external pipe's read end.
	place(4, 117, 0);
	// 118/119: seqpacket pair; 118 has "s1", "s22" queued and shut its writing side.
	must(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == 0, "socketpair");
	place(sv[0], 118, 0);
	place(sv[1], 119, 0);
	writes(119, "s1", 2);
	writes(119, "s22", 3);
	must(shutdown(118, SHUT_WR) == 0, "shutdown");
	// 120: FIFO opened read-write holding "fifo-data".
	must(mkfifo(in(dir, "fifo"), 0600) == 0, "mkfifo");
	fd = open(path, O_RDWR | O_NONBLOCK);
	must(fd >= 0, "open fifo");
	writes(fd, "fifo-data", 9);
	place(fd, 120, 0);
	// 121: O_PATH.
	place(open(in(dir, "ro.txt"), O_PATH), 121, 0);
	// 122: realtime timerfd that expired once and is disarmed.
	fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
	struct itimerspec once = {.it_value = {0, 1}};
	must(timerfd_settime(fd, 0, &once, NULL) == 0, "timerfd_settime");
	struct pollfd pfd = {.fd = fd, .events = POLLIN};
	must(poll(&pfd, 1, -1) == 1, "poll");
	place(fd, 122, 0);
	// 123: read end of a pipe whose writer is closed, holding "orphan".
	must(pipe(p) == 0, "pipe");
	writes(p[1], "orphan", 6);
	close(p[1]);
	place(p[0], 123, 0);
	// 124: stream socket whose peer sent "bye" and closed.
	must(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0, "socketpair");
	writes(sv[1], "bye", 3);
	close(sv[1]);
	place(sv[0], 124, 0);

	// 125: O_TMPFILE file holding "tmpfile" at offset 1; 126: O_PATH of the FIFO.
	fd = open(dir, O_TMPFILE | O_RDWR, 0600);
	must(fd >= 0, "O_TMPFILE");
	writes(fd, "tmpfile", 7);
	lseek(fd, 1, SEEK_SET);
	place(fd, 125, 0);
	place(open(in(dir, "fifo"), O_PATH), 126, 0);
	// 127/128: packet-mode pipe holding packets "pk1", "packet-2", "3".
	must(pipe2(p, O_DIRECT) == 0, "pipe2 O_DIRECT");
	writes(p[1], "pk1", 3);
	writes(p[1], "packet-2", 8);
	writes(p[1], "3", 1);
	place(p[0], 127, 0);
	place(p[1], 128, 0);

	pid_t g = fork();
	must(g >= 0, "fork");
	if (g == 0) {
		place(open("/dev/zero", O_RDONLY), 130, 0);
		ready('g');
		for (;;)
			pause();
	}
	ready('c');
	for (;;)
		pause();
}

static int setlk(int fd, int cmd, short type, off_t start, off_t len) {
	struct flock fl = {.l_type = type, .l_whence = SEEK_SET, .l_start = start, .l_len = len};
	return fcntl(fd, cmd, &fl);
}

// locks: 100 flock(LOCK_EX) on flock.bin; 101 POSIX write lock on
// [100,200) and read lock from 300 to EOF of posix.bin; 102 dup of 101;
// 103 OFD read lock on [0,10) and write lock on [20,30) of ofd.bin; 104
// flock(LOCK_SH) on shared.bin.
static void locks(const char *dir) {
	int fd = open(in(dir, "flock.bin"), O_RDWR | O_CREAT, 0600);
	must(fd >= 0 && flock(fd, LOCK_EX) == 0, "flock");
	place(fd, 100, 0);
	// POSIX locks after place: closing any fd of the file drops them.
	fd = open(in(dir, "posix.bin"), O_RDWR | O_CREAT, 0600);
	must(fd >= 0, "open posix.bin");
	place(fd, 101, 0);
	must(dup2(101, 102) == 102, "dup2");
	must(setlk(101, F_SETLK, F_WRLCK, 100, 100) == 0 && setlk(101, F_SETLK, F_RDLCK, 300, 0) == 0, "F_SETLK");
	fd = open(in(dir, "ofd.bin"), O_RDWR | O_CREAT, 0600);
	must(fd >= 0 && setlk(fd, F_OFD_SETLK, F_RDLCK, 0, 10) == 0 && setlk(fd, F_OFD_SETLK, F_WRLCK, 20, 10) == 0, "F_OFD_SETLK");
	place(fd, 103, 0);
	fd = open(in(dir, "shared.bin"), O_RDWR | O_CREAT, 0600);
	must(fd >= 0 && flock(fd, LOCK_SH) == 0, "flock shared");
	place(fd, 104, 0);
	ready('c');
	for (;;)
		pause();
}

static void probe_flock(const char *dir, const char *name, int how, const char *what) {
	int fd = open(in(dir, name), O_RDONLY);
	must(fd >= 0, "open");
	printf("%s %s: %s\n", name, what, flock(fd, how | LOCK_NB) == 0 ? "free" : errno == EWOULDBLOCK ? "busy" : strerror(errno));
	close(fd);
}

static void probe_getlk(const char *dir, const char *name, int cmd, off_t at) {
	int fd = open(in(dir, name), O_RDWR);
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
	must(fd >= 0 && fcntl(fd, cmd, &fl) == 0, "F_GETLK");
	if (fl.l_type == F_UNLCK)
		printf("%s@%lld: none\n", name, (long long)at);
	else
		printf("%s@%lld: %s pid %d %lld+%lld\n", name, (long long)at, fl.l_type == F_WRLCK ? "write" : "read",
		       fl.l_pid, (long long)fl.l_start, (long long)fl.l_len);
	close(fd);
}

static void probe(const char *dir) {
	probe_flock(dir, "flock.bin", LOCK_SH, "shared");
	probe_flock(dir, "shared.bin", LOCK_EX, "exclusive");
	probe_flock(dir, "shared.bin", LOCK_SH, "shared");
	probe_getlk(dir, "posix.bin", F_GETLK, 150);
	probe_getlk(dir, "posix.bin", F_GETLK, 250);
	probe_getlk(dir, "posix.bin", F_GETLK, 1000);
	probe_getlk(dir, "ofd.bin", F_OFD_GETLK, 5);
	probe_getlk(dir, "ofd.bin", F_OFD_GETLK, 15);
	probe_getlk(dir, "ofd.bin", F_OFD_GETLK, 25);
	exit(0);
}

static void one(const char *kind, const char *dir) {
	int fd = -1;
	if (strcmp(kind, "tcp") == 0 || strcmp(kind, "udp") == 0) {
		fd = socket(AF_INET, strcmp(kind, "tcp") == 0 ? SOCK_STREAM : SOCK_DGRAM, 0);
		struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		must(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind");
		if (strcmp(kind, "tcp") == 0)
			must(listen(fd, 1) == 0, "listen");
	} else if (strcmp(kind, "unix-listen") == 0) {
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		snprintf(a.sun_path, sizeof a.sun_path, "%s/sock", dir);
		must(bind(fd, (struct sockaddr *)&a, sizeof a) == 0, "bind");
		must(listen(fd, 1) == 0, "listen");
	} else if (strcmp(kind, "netlink") == 0) {
		fd = socket(AF_NETLINK, SOCK_RAW, 0);
	} else if (strcmp(kind, "inotify") == 0) {
		fd = inotify_init1(0);
	} else if (strcmp(kind, "pidfd") == 0) {
		fd = syscall(SYS_pidfd_open, getpid(), 0);
	} else if (strcmp(kind, "ptmx") == 0) {
		fd = open("/dev/ptmx", O_RDWR | O_NOCTTY);
	} else if (strcmp(kind, "lease") == 0) {
		fd = open(in(dir, "leased"), O_RDONLY | O_CREAT, 0600);
		must(fd >= 0 && fcntl(fd, F_SETLEASE, F_RDLCK) == 0, "F_SETLEASE");
	} else {
		fprintf(stderr, "child: unknown kind %s\n", kind);
		exit(2);
	}
	must(fd >= 0, kind);
	place(fd, 100, 0);
	ready('c');
	for (;;)
		pause();
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: child KIND DIR\n");
		return 2;
	}
	if (strcmp(argv[1], "full") == 0)
		full(argv[2]);
	else if (strcmp(argv[1], "locks") == 0)
		locks(argv[2]);
	else if (strcmp(argv[1], "probe") == 0)
		probe(argv[2]);
	else
		one(argv[1], argv[2]);
	return 0;
}
