/*
 * fd_unix_zd_perm: listening unix sockets whose files were given another
 * mode and owner, each with one connection accepted and one waiting.
 * fd 10 listens (backlog 16) on s.sock in the work dir, bound with a
 * length that does not count the NUL, chmod 0640, chown 18943:58467;
 * client 12 was accepted as 13, then client 11 connected and waits in
 * the backlog. The same with seqpacket: fd 20 on q.sock, chmod 0604,
 * chown 1234:5678, client 22 accepted as 23, client 21 waiting.
 * After restore: both files are sockets with the recorded mode, uid and
 * gid; getsockname of 10 and 20 is what it was (bytes and length);
 * accept on 10 and 20 gives 11's and 21's connections (data both ways),
 * then EAGAIN; 12<->13 and 22<->23 still carry data both ways.
 * Modelled on zdtm's sockets00 (and sockets00-seqpacket).
 */
#include "zdtm.h"
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

struct lsn {
	int type, l, wait, c, a;
	const char *name;
	mode_t mode;
	uid_t uid;
	gid_t gid;
	char path[200];
	struct stat st;
	struct sockaddr_un sn;
	socklen_t snl;
};

static void put(int s, int fd)
{
	if (s < 0 || dup2(s, fd) != fd)
		zdtm_die("socket at fd %d", fd);
	close(s);
}

static void setup(struct lsn *x, const char *cwd)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	socklen_t len;
	int s;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s/%s", cwd, x->name);
	snprintf(x->path, sizeof(x->path), "%s", sa.sun_path);
	len = offsetof(struct sockaddr_un, sun_path) + strlen(sa.sun_path);
	unlink(x->path);
	s = socket(AF_UNIX, x->type, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&sa, len))
		zdtm_die("bind %s", x->path);
	if (chmod(x->path, x->mode) || chown(x->path, x->uid, x->gid))
		zdtm_die("chmod/chown %s", x->path);
	if (listen(s, 16))
		zdtm_die("listen");
	put(s, x->l);
	s = socket(AF_UNIX, x->type, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, len))
		zdtm_die("connect to %s", x->path);
	put(s, x->c);
	put(accept(x->l, NULL, NULL), x->a);
	s = socket(AF_UNIX, x->type, 0);
	if (s < 0 || connect(s, (struct sockaddr *)&sa, len))
		zdtm_die("connect to %s", x->path);
	put(s, x->wait);
	if (stat(x->path, &x->st))
		zdtm_die("stat %s", x->path);
	x->snl = sizeof(x->sn);
	memset(&x->sn, 0, sizeof(x->sn));
	if (getsockname(x->l, (struct sockaddr *)&x->sn, &x->snl))
		zdtm_die("getsockname");
}

static void flows(int from, int to)
{
	char buf[16] = { 0 };

	CHECK(send(from, "packet", 6, MSG_DONTWAIT) == 6 && recv(to, buf, sizeof(buf), MSG_DONTWAIT) == 6 &&
	      memcmp(buf, "packet", 6) == 0, "fd %d -> fd %d: got \"%s\", want \"packet\"", from, to, buf);
}

static void check(struct lsn *x)
{
	struct sockaddr_un sn;
	socklen_t snl = sizeof(sn);
	struct stat st;
	int a;

	CHECK(stat(x->path, &st) == 0 && S_ISSOCK(st.st_mode), "%s: not a socket any more (%s)", x->path, strerror(errno));
	CHECK(st.st_mode == x->st.st_mode, "%s: mode %o, want %o", x->path, st.st_mode, x->st.st_mode);
	CHECK(st.st_uid == x->uid && st.st_gid == x->gid, "%s: owner %d:%d, want %d:%d", x->path, st.st_uid, st.st_gid,
	      x->uid, x->gid);
	memset(&sn, 0, sizeof(sn));
	CHECK(getsockname(x->l, (struct sockaddr *)&sn, &snl) == 0 && snl == x->snl && memcmp(&sn, &x->sn, snl) == 0,
	      "fd %d: name \"%s\" (length %u), want \"%s\" (length %u)", x->l, sn.sun_path, snl, x->sn.sun_path, x->snl);
	fcntl(x->l, F_SETFL, O_NONBLOCK);
	a = accept(x->l, NULL, NULL);
	CHECK(a >= 0, "fd %d: accept: %s", x->l, strerror(errno));
	if (a >= 0) {
		flows(x->wait, a);
		flows(a, x->wait);
		close(a);
	}
	a = accept(x->l, NULL, NULL);
	CHECK(a < 0 && errno == EAGAIN, "fd %d: a second connection was waiting", x->l);
	flows(x->c, x->a);
	flows(x->a, x->c);
}

int main(void)
{
	static struct lsn st = { .type = SOCK_STREAM, .l = 10, .wait = 11, .c = 12, .a = 13, .name = "s.sock",
				 .mode = 0640, .uid = 18943, .gid = 58467 };
	static struct lsn sq = { .type = SOCK_SEQPACKET, .l = 20, .wait = 21, .c = 22, .a = 23, .name = "q.sock",
				 .mode = 0604, .uid = 1234, .gid = 5678 };
	char cwd[256];

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 100)
		zdtm_die("work dir path too long for sun_path");
	setup(&st, cwd);
	setup(&sq, cwd);

	zdtm_ready();
	zdtm_wait_go();

	check(&st);
	check(&sq);
	zdtm_finish();
}
