/*
 * fd_unix_zd_unconn: bound unix sockets that neither listen nor connect,
 * and unbound ones. fd 10 is a stream socket bound to the abstract name
 * "\0X/zdtm-unconn-PID" (a length that ends at the last character, no
 * NUL counted), fd 12 a seqpacket socket bound to "\0X/zdtm-unconq-PID",
 * fd 13 a stream socket bound to u.sock in the work dir; fds 11 (stream)
 * and 14 (seqpacket) are unbound and unconnected. None listens. After
 * restore: getsockname of 10, 12 and 13 gives the recorded bytes and
 * length, of 11 and 14 an unnamed address; SO_ACCEPTCONN is 0 on all;
 * u.sock is a socket; then listen() on 10, 12, 13 works, 11 connects to
 * 10's name, 14 to 12's, a new socket to u.sock, each connection is
 * accepted and carries data both ways.
 * Modelled on zdtm's sk-unix-unconn (and sk-unix-unconn-seqpacket).
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static struct sockaddr_un names[5];
static socklen_t lens[5];

static void put(int s, int fd)
{
	if (s < 0 || dup2(s, fd) != fd)
		zdtm_die("socket at fd %d", fd);
	close(s);
}

static socklen_t abstract(struct sockaddr_un *a, const char *tag)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	snprintf(a->sun_path, sizeof(a->sun_path), "X/zdtm-%s-%d", tag, getpid());
	a->sun_path[0] = 0;
	return offsetof(struct sockaddr_un, sun_path) + 1 + strlen(a->sun_path + 1);
}

static void record(int i)
{
	lens[i] = sizeof(names[i]);
	memset(&names[i], 0, sizeof(names[i]));
	if (getsockname(10 + i, (struct sockaddr *)&names[i], &lens[i]))
		zdtm_die("getsockname %d", 10 + i);
}

static void pass_data(int c, int a)
{
	char buf[16] = { 0 };

	fcntl(c, F_SETFL, O_NONBLOCK);
	fcntl(a, F_SETFL, O_NONBLOCK);
	CHECK(write(c, "ping", 4) == 4 && read(a, buf, sizeof(buf)) == 4 && memcmp(buf, "ping", 4) == 0,
	      "fd %d -> fd %d: got \"%s\"", c, a, buf);
	CHECK(write(a, "pong", 4) == 4 && read(c, buf, sizeof(buf)) == 4 && memcmp(buf, "pong", 4) == 0,
	      "fd %d -> fd %d: got \"%s\"", a, c, buf);
}

/* serve makes l listen, connects c to addr (len al) and accepts. */
static void serve(int l, int c, const struct sockaddr_un *addr, socklen_t al)
{
	int a;

	CHECK(listen(l, 1) == 0, "fd %d: listen: %s", l, strerror(errno));
	if (connect(c, (const struct sockaddr *)addr, al)) {
		fail("fd %d: connect to fd %d's name: %s", c, l, strerror(errno));
		return;
	}
	fcntl(l, F_SETFL, O_NONBLOCK);
	a = accept(l, NULL, NULL);
	CHECK(a >= 0, "fd %d: accept: %s", l, strerror(errno));
	if (a >= 0)
		pass_data(c, a);
}

int main(void)
{
	struct sockaddr_un a10, a12, a13 = { .sun_family = AF_UNIX };
	socklen_t l10, l12, l13;
	char cwd[256];
	struct stat st;
	int i, s, v;
	socklen_t vl;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	l10 = abstract(&a10, "unconn");
	l12 = abstract(&a12, "unconq");
	snprintf(a13.sun_path, sizeof(a13.sun_path), "%.100s/u.sock", cwd);
	l13 = sizeof(a13);
	unlink(a13.sun_path);

	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a10, l10))
		zdtm_die("bind abstract stream");
	put(s, 10);
	put(socket(AF_UNIX, SOCK_STREAM, 0), 11);
	s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a12, l12))
		zdtm_die("bind abstract seqpacket");
	put(s, 12);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&a13, l13))
		zdtm_die("bind u.sock");
	put(s, 13);
	put(socket(AF_UNIX, SOCK_SEQPACKET, 0), 14);
	for (i = 0; i < 5; i++)
		record(i);

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 5; i++) {
		struct sockaddr_un got;
		socklen_t l = sizeof(got);

		memset(&got, 0, sizeof(got));
		CHECK(getsockname(10 + i, (struct sockaddr *)&got, &l) == 0 && l == lens[i] && memcmp(&got, &names[i], l) == 0,
		      "fd %d: name \"%s%s\" (length %u), want \"%s%s\" (length %u)", 10 + i, got.sun_path[0] ? "" : "@",
		      got.sun_path[0] ? got.sun_path : got.sun_path + 1, l, names[i].sun_path[0] ? "" : "@",
		      names[i].sun_path[0] ? names[i].sun_path : names[i].sun_path + 1, lens[i]);
		v = -1;
		vl = sizeof(v);
		CHECK(getsockopt(10 + i, SOL_SOCKET, SO_ACCEPTCONN, &v, &vl) == 0 && v == 0, "fd %d: SO_ACCEPTCONN %d, want 0",
		      10 + i, v);
	}
	CHECK(stat(a13.sun_path, &st) == 0 && S_ISSOCK(st.st_mode), "%s is not a socket", a13.sun_path);
	serve(10, 11, &a10, l10);
	serve(12, 14, &a12, l12);
	serve(13, socket(AF_UNIX, SOCK_STREAM, 0), &a13, l13);
	zdtm_finish();
}
