/*
 * fd_unix_ghost: unix sockets whose files were removed while they stayed
 * bound. fd 10 listens on g.sock in the work dir, with fd 11's connection
 * waiting in its backlog (made before the file was removed); fd 12 is a
 * datagram socket bound to h.sock holding "y" from fd 13, a datagram
 * socket bound to k.sock and connected to h.sock (before h.sock was
 * removed). g.sock and h.sock are then removed; k.sock stays. After
 * restore: g.sock and h.sock still do not exist and k.sock does;
 * getsockname of 10 and 12 still gives their paths; accept on 10 gives
 * 11's connection (data flows both ways); 12 receives "y" from k.sock and
 * a new datagram sent on 13 (connected, so it needs no path) reaches 12.
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

static socklen_t at(struct sockaddr_un *sa, const char *dir, const char *name)
{
	memset(sa, 0, sizeof(*sa));
	sa->sun_family = AF_UNIX;
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%.90s/%s", dir, name);
	return offsetof(struct sockaddr_un, sun_path) + strlen(sa->sun_path) + 1;
}

static void put(int s, int fd)
{
	if (s < 0 || dup2(s, fd) != fd)
		zdtm_die("socket at fd %d: %s", fd, strerror(errno));
	close(s);
}

static void check_name(int fd, const struct sockaddr_un *want)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);

	memset(&got, 0, sizeof(got));
	CHECK(getsockname(fd, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, want->sun_path) == 0,
	      "fd %d is bound to \"%s\", want \"%s\"", fd, got.sun_path, want->sun_path);
}

static void check_from(const char *want, const struct sockaddr_un *from)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);
	char buf[8] = { 0 };
	ssize_t n;

	memset(&got, 0, sizeof(got));
	n = recvfrom(12, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *)&got, &l);
	CHECK(n == (ssize_t)strlen(want) && memcmp(buf, want, n) == 0, "fd 12: got %zd bytes, want \"%s\"", n, want);
	CHECK(l > offsetof(struct sockaddr_un, sun_path) && strcmp(got.sun_path, from->sun_path) == 0,
	      "\"%s\" came from \"%s\" (length %u), want \"%s\"", want, got.sun_path, (unsigned)l, from->sun_path);
}

int main(void)
{
	struct sockaddr_un ga, ha, ka;
	socklen_t gl, hl, kl;
	char cwd[256], buf[8];
	struct stat st;
	int s, a;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 90)
		zdtm_die("work dir path too long for sun_path");
	gl = at(&ga, cwd, "g.sock");
	hl = at(&ha, cwd, "h.sock");
	kl = at(&ka, cwd, "k.sock");
	unlink(ga.sun_path);
	unlink(ha.sun_path);
	unlink(ka.sun_path);

	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&ga, gl) || listen(s, 4))
		zdtm_die("listen on g.sock: %s", strerror(errno));
	put(s, 10);
	s = socket(AF_UNIX, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&ga, gl))
		zdtm_die("connect to g.sock: %s", strerror(errno));
	put(s, 11);

	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&ha, hl))
		zdtm_die("bind h.sock: %s", strerror(errno));
	put(s, 12);
	s = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&ka, kl) || connect(s, (struct sockaddr *)&ha, hl))
		zdtm_die("k.sock connected to h.sock: %s", strerror(errno));
	put(s, 13);
	if (send(13, "y", 1, 0) != 1)
		zdtm_die("send y");
	if (unlink(ga.sun_path) || unlink(ha.sun_path))
		zdtm_die("unlink: %s", strerror(errno));

	zdtm_ready();
	zdtm_wait_go();

	CHECK(lstat(ga.sun_path, &st) < 0 && errno == ENOENT, "%s exists again", ga.sun_path);
	CHECK(lstat(ha.sun_path, &st) < 0 && errno == ENOENT, "%s exists again", ha.sun_path);
	CHECK(lstat(ka.sun_path, &st) == 0 && S_ISSOCK(st.st_mode), "%s is gone", ka.sun_path);
	check_name(10, &ga);
	check_name(12, &ha);
	fcntl(10, F_SETFL, O_NONBLOCK);
	a = accept(10, NULL, NULL);
	CHECK(a >= 0, "accept on fd 10: %s", strerror(errno));
	if (a >= 0) {
		fcntl(a, F_SETFL, O_NONBLOCK);
		fcntl(11, F_SETFL, O_NONBLOCK);
		CHECK(write(11, "ping", 4) == 4 && read(a, buf, sizeof(buf)) == 4 && memcmp(buf, "ping", 4) == 0,
		      "client -> server");
		CHECK(write(a, "pong", 4) == 4 && read(11, buf, sizeof(buf)) == 4 && memcmp(buf, "pong", 4) == 0,
		      "server -> client");
		CHECK(accept(10, NULL, NULL) < 0 && errno == EAGAIN, "a second connection was pending");
	}
	check_from("y", &ka);
	CHECK(send(13, "z", 1, 0) == 1, "send z on fd 13: %s", strerror(errno));
	check_from("z", &ka);
	zdtm_finish();
}
