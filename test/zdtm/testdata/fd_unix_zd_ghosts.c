/*
 * fd_unix_zd_ghosts: unix sockets bound several times to one name whose
 * files were removed, and (with the argument "dirs", case fd_unix_zd_dirs)
 * in directories that were removed. In the work dir, under u/:
 *   u/dg/sk-dt: datagram A0 bound, A1 connected to it, file removed; A2
 *     bound to the same name, A3 connected, file removed again;
 *   u/dg/sk-dtp: both ends P0, P1 of a datagram socketpair bound to it in
 *     turn, the file removed after each; then ("dirs") u/dg is removed;
 *   u/st/sk-st: stream listener S0 with two accepted connections S1->S2,
 *     S3->S4; u/st/sk-sq: seqpacket listener Q0 with Q1 accepted as Q2;
 *     both files removed, then ("dirs") u/st is removed.
 * After restore: A1->A0, A3->A2, P1->P0 deliver (and nothing crosses
 * over: each receiver then has nothing more); S2->S1, S4->S3, Q2->Q1
 * deliver; getsockname of A0, A2, P0, P1, S0 and Q0 is their path; u/dg
 * and u/st are empty directories, or ("dirs") still do not exist while u
 * does.
 * Modelled on zdtm's sk-unix01 (and sk-unix01-seqpacket), without its
 * u/sole sockets (see fd_unix_zd_reuse); without "dirs" the directories
 * are left in place.
 */
#include "zdtm.h"
#include <sys/socket.h>
#include <sys/un.h>

static char cwd[256];

static void at(struct sockaddr_un *a, const char *name)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	snprintf(a->sun_path, sizeof(a->sun_path), "%.94s/%s", cwd, name);
}

static int bound(int type, const struct sockaddr_un *a)
{
	int s = socket(AF_UNIX, type, 0);

	if (s < 0 || bind(s, (const struct sockaddr *)a, sizeof(*a)))
		zdtm_die("bind %s", a->sun_path);
	return s;
}

static int conn(int type, const struct sockaddr_un *a)
{
	int s = socket(AF_UNIX, type, 0);

	if (s < 0 || connect(s, (const struct sockaddr *)a, sizeof(*a)))
		zdtm_die("connect to %s", a->sun_path);
	return s;
}

static void deliver(int from, int to, int v, const char *what)
{
	int got = 0;
	char x;

	CHECK(send(from, &v, sizeof(v), MSG_DONTWAIT) == sizeof(v), "%s: send on fd %d: %s", what, from, strerror(errno));
	CHECK(recv(to, &got, sizeof(got), MSG_DONTWAIT) == sizeof(got) && got == v, "%s: fd %d received %d, want %d", what,
	      to, got, v);
	CHECK(recv(to, &x, 1, MSG_DONTWAIT) < 0 && errno == EAGAIN, "%s: fd %d received more than was sent to it", what, to);
}

static void named(int fd, const struct sockaddr_un *want)
{
	struct sockaddr_un got;
	socklen_t l = sizeof(got);

	memset(&got, 0, sizeof(got));
	CHECK(getsockname(fd, (struct sockaddr *)&got, &l) == 0 && strcmp(got.sun_path, want->sun_path) == 0,
	      "fd %d: name \"%s\", want \"%s\"", fd, got.sun_path, want->sun_path);
}

static void gone(const char *name)
{
	char p[400];
	struct stat st;

	snprintf(p, sizeof(p), "%.94s/%s", cwd, name);
	CHECK(lstat(p, &st) < 0 && errno == ENOENT, "%s exists again", p);
}

int main(int argc, char **argv)
{
	struct sockaddr_un dt, dtp, sst, ssq;
	int A[4], P[2], S[5], Q[3];
	char p[400];
	struct stat st;
	int dirs = argc > 1 && strcmp(argv[1], "dirs") == 0;

	zdtm_init();
	if (!getcwd(cwd, sizeof(cwd)) || strlen(cwd) > 94)
		zdtm_die("work dir path too long for sun_path");
	snprintf(p, sizeof(p), "%s/u", cwd);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/u/dg", cwd);
	mkdir(p, 0755);
	snprintf(p, sizeof(p), "%s/u/st", cwd);
	mkdir(p, 0755);
	at(&dt, "u/dg/sk-dt");
	at(&dtp, "u/dg/sk-dtp");
	at(&sst, "u/st/sk-st");
	at(&ssq, "u/st/sk-sq");

	A[0] = bound(SOCK_DGRAM, &dt);
	A[1] = conn(SOCK_DGRAM, &dt);
	unlink(dt.sun_path);
	A[2] = bound(SOCK_DGRAM, &dt);
	A[3] = conn(SOCK_DGRAM, &dt);
	unlink(dt.sun_path);

	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, P))
		zdtm_die("socketpair");
	if (bind(P[0], (struct sockaddr *)&dtp, sizeof(dtp)))
		zdtm_die("bind P0");
	unlink(dtp.sun_path);
	if (bind(P[1], (struct sockaddr *)&dtp, sizeof(dtp)))
		zdtm_die("bind P1");
	unlink(dtp.sun_path);
	snprintf(p, sizeof(p), "%s/u/dg", cwd);
	if (dirs && rmdir(p))
		zdtm_die("rmdir %s", p);

	S[0] = bound(SOCK_STREAM, &sst);
	if (listen(S[0], 16))
		zdtm_die("listen");
	S[1] = conn(SOCK_STREAM, &sst);
	S[2] = accept(S[0], NULL, NULL);
	S[3] = conn(SOCK_STREAM, &sst);
	S[4] = accept(S[0], NULL, NULL);
	Q[0] = bound(SOCK_SEQPACKET, &ssq);
	if (listen(Q[0], 16))
		zdtm_die("listen");
	Q[1] = conn(SOCK_SEQPACKET, &ssq);
	Q[2] = accept(Q[0], NULL, NULL);
	if (S[2] < 0 || S[4] < 0 || Q[2] < 0)
		zdtm_die("accept");
	unlink(sst.sun_path);
	unlink(ssq.sun_path);
	snprintf(p, sizeof(p), "%s/u/st", cwd);
	if (dirs && rmdir(p))
		zdtm_die("rmdir %s", p);

	zdtm_ready();
	zdtm_wait_go();

	deliver(A[1], A[0], 1, "u/dg/sk-dt, first");
	deliver(A[3], A[2], 3, "u/dg/sk-dt, second");
	deliver(P[1], P[0], 9, "socketpair bound to u/dg/sk-dtp");
	deliver(S[2], S[1], 5, "stream u/st/sk-st, first");
	deliver(S[4], S[3], 7, "stream u/st/sk-st, second");
	deliver(Q[2], Q[1], 11, "seqpacket u/st/sk-sq");
	named(A[0], &dt);
	named(A[2], &dt);
	named(P[0], &dtp);
	named(P[1], &dtp);
	named(S[0], &sst);
	named(Q[0], &ssq);
	if (dirs) {
		gone("u/dg");
		gone("u/st");
		snprintf(p, sizeof(p), "%s/u", cwd);
		CHECK(stat(p, &st) == 0 && S_ISDIR(st.st_mode), "%s is gone", p);
	} else {
		gone("u/dg/sk-dt");
		gone("u/dg/sk-dtp");
		gone("u/st/sk-st");
		gone("u/st/sk-sq");
		snprintf(p, sizeof(p), "%s/u/dg", cwd);
		CHECK(rmdir(p) == 0, "%s is not an empty directory: %s", p, strerror(errno));
		snprintf(p, sizeof(p), "%s/u/st", cwd);
		CHECK(rmdir(p) == 0, "%s is not an empty directory: %s", p, strerror(errno));
	}
	zdtm_finish();
}
