/* coproc: a parent and its child, joined by a pipe each way, that check
 * themselves while the child runs on another node (ferry migrate JOB
 * --pid CHILD). The parent prints "child PID" and waits for SIGUSR1 (the
 * test sends it once the child moved); then, each step checked by the
 * parent and the result printed:
 *   ids      the child reports getpid/getppid/getpgrp/getsid: unchanged
 *   pingpong 200 one-byte round trips, each byte incremented by the child
 *   bulk     4 MiB each way at once, checksummed at the other end
 *   socket   the same over a socketpair (1 MiB each way), then the
 *            parent closes its end: the child reads end of file
 *   signals  parent → child SIGUSR2 (the child answers on the pipe),
 *            child → parent SIGUSR2 (counted by the parent's handler);
 *            then a SIGUSR2 to the whole process group (kill(0, ...))
 *            reaches the child (it answers) and the parent
 *   stdout   the child writes a line to its stdout, the job's
 *   fork     the child forks; its grandchild's PID is told and is not
 *            one the parent's side uses (the parent forks one to compare)
 *   stop     the child stops itself (SIGSTOP): waitpid WUNTRACED says
 *            stopped by SIGSTOP; SIGCONT → WCONTINUED says continued,
 *            and the child, running again, says so on the pipe
 *   eof      the parent closes its write end: the child reads EOF,
 *            writes "bye" and exits 42; the parent reads "bye" then EOF,
 *            and waitpid says exited 42
 * and prints "ok" (exit 0) or the first failure (exit 1). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BULK (4 << 20)

static volatile sig_atomic_t go, usr2;
static void on_usr1(int s) { (void)s; go = 1; }
static void on_usr2(int s) { (void)s; usr2++; }

static int readn(int fd, void *b, size_t n) {
	size_t got = 0;
	while (got < n) {
		ssize_t r = read(fd, (char *)b + got, n - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		got += r;
	}
	return 0;
}

static int writen(int fd, const void *b, size_t n) {
	size_t put = 0;
	while (put < n) {
		ssize_t r = write(fd, (const char *)b + put, n - put);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		put += r;
	}
	return 0;
}

static uint32_t sum(const unsigned char *b, size_t n) {
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++)
		h = (h ^ b[i]) * 16777619u;
	return h;
}

static unsigned char pat(size_t i, int seed) { return (unsigned char)((i * 131 + seed * 7 + (i >> 12)) & 0xff); }

#define FAIL(...) do { printf("FAIL: " __VA_ARGS__); printf("\n"); return 1; } while (0)

#define SBULK (1 << 20)

/* bulkx sends SBULK of pattern seed to fd from a child process while it
 * reads SBULK from fd, and returns the checksum of what it read. */
static int bulkx(int fd, int seed, uint32_t *h) {
	pid_t w = fork();
	if (w == 0) {
		unsigned char *o = malloc(SBULK);
		for (size_t i = 0; i < SBULK; i++)
			o[i] = pat(i, seed);
		_exit(writen(fd, o, SBULK) < 0);
	}
	unsigned char *b = malloc(SBULK);
	int r = readn(fd, b, SBULK);
	int st;
	waitpid(w, &st, 0);
	*h = sum(b, SBULK);
	free(b);
	return r < 0 || !WIFEXITED(st) || WEXITSTATUS(st) ? -1 : 0;
}

static int sock = -1;

static int child(int in, int out) {
	signal(SIGUSR2, on_usr2);
	char cmd;
	for (;;) {
		if (readn(in, &cmd, 1) < 0) {
			writen(out, "bye", 3);
			return 42;
		}
		switch (cmd) {
		case 'i': {
			int32_t v[4] = {getpid(), getppid(), getpgrp(), getsid(0)};
			writen(out, v, sizeof v);
			break;
		}
		case 'p':
			for (int i = 0; i < 200; i++) {
				unsigned char b;
				if (readn(in, &b, 1) < 0)
					return 2;
				b++;
				writen(out, &b, 1);
			}
			break;
		case 'b': {
			/* Read BULK from the parent while writing BULK to it: a
			 * second process writes, so neither pipe fills up for good. */
			pid_t w = fork();
			if (w == 0) {
				unsigned char *o = malloc(BULK);
				for (size_t i = 0; i < BULK; i++)
					o[i] = pat(i, 2);
				_exit(writen(out, o, BULK) < 0);
			}
			unsigned char *b = malloc(BULK);
			if (readn(in, b, BULK) < 0)
				return 3;
			int st;
			waitpid(w, &st, 0);
			uint32_t h = sum(b, BULK);
			writen(out, &h, sizeof h);
			free(b);
			break;
		}
		case 's': {
			while (!usr2)
				usleep(1000);
			usr2 = 0;
			writen(out, "S", 1);
			kill(getppid(), SIGUSR2);
			break;
		}
		case 'g': /* as 's', without signalling the parent back */
			while (!usr2)
				usleep(1000);
			usr2 = 0;
			writen(out, "S", 1);
			break;
		case 'k': {
			uint32_t h;
			if (bulkx(sock, 4, &h) < 0)
				return 5;
			writen(out, &h, sizeof h);
			break;
		}
		case 'e': {
			char c;
			ssize_t r = read(sock, &c, 1);
			writen(out, r == 0 ? "E" : "?", 1);
			close(sock);
			break;
		}
		case 'o':
			printf("child %d writes to the job's output from afar\n", getpid());
			fflush(stdout);
			writen(out, "O", 1);
			break;
		case 'z':
			raise(SIGSTOP);
			writen(out, "C", 1);
			break;
		case 'f': {
			int p[2];
			pipe(p);
			pid_t g = fork();
			if (g == 0) {
				int32_t me = getpid();
				write(p[1], &me, sizeof me);
				_exit(0);
			}
			close(p[1]);
			int32_t v;
			readn(p[0], &v, sizeof v);
			close(p[0]);
			waitpid(g, NULL, 0);
			int32_t r[2] = {g, v};
			writen(out, r, sizeof r);
			break;
		}
		}
	}
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	int down[2], up[2], sv[2];
	if (pipe(down) < 0 || pipe(up) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 1;
	pid_t c = fork();
	if (c == 0) {
		close(down[1]);
		close(up[0]);
		close(sv[0]);
		sock = sv[1];
		return child(down[0], up[1]);
	}
	close(down[0]);
	close(up[1]);
	close(sv[1]);
	printf("child %d\n", c);
	while (!go)
		pause();

	char ch;
	int32_t v[4];
	ch = 'i';
	writen(down[1], &ch, 1);
	if (readn(up[0], v, sizeof v) < 0)
		FAIL("ids: no answer");
	if (v[0] != c || v[1] != getpid() || v[2] != getpgrp() || v[3] != getsid(0))
		FAIL("ids: child sees pid %d ppid %d pgrp %d sid %d, want %d %d %d %d", v[0], v[1], v[2], v[3], c, getpid(), getpgrp(), getsid(0));
	printf("ids ok\n");

	ch = 'p';
	writen(down[1], &ch, 1);
	for (int i = 0; i < 200; i++) {
		unsigned char b = (unsigned char)i, r;
		writen(down[1], &b, 1);
		if (readn(up[0], &r, 1) < 0 || r != (unsigned char)(i + 1))
			FAIL("pingpong: round %d", i);
	}
	printf("pingpong ok\n");

	ch = 'b';
	writen(down[1], &ch, 1);
	pid_t w = fork();
	if (w == 0) {
		unsigned char *o = malloc(BULK);
		for (size_t i = 0; i < BULK; i++)
			o[i] = pat(i, 1);
		_exit(writen(down[1], o, BULK) < 0);
	}
	unsigned char *b = malloc(BULK), *want = malloc(BULK);
	if (readn(up[0], b, BULK) < 0)
		FAIL("bulk: short read from the child");
	for (size_t i = 0; i < BULK; i++)
		want[i] = pat(i, 1);
	uint32_t h;
	if (readn(up[0], &h, sizeof h) < 0)
		FAIL("bulk: no checksum");
	if (h != sum(want, BULK))
		FAIL("bulk: the child got other bytes (sum %08x, want %08x)", h, sum(want, BULK));
	for (size_t i = 0; i < BULK; i++)
		if (b[i] != pat(i, 2))
			FAIL("bulk: byte %zu from the child is %d, want %d", i, b[i], pat(i, 2));
	int st;
	waitpid(w, &st, 0);
	printf("bulk ok\n");

	ch = 'k';
	writen(down[1], &ch, 1);
	uint32_t hs, hc;
	if (bulkx(sv[0], 3, &hs) < 0)
		FAIL("socket: short transfer");
	if (readn(up[0], &hc, sizeof hc) < 0)
		FAIL("socket: no checksum");
	unsigned char *sw = malloc(SBULK);
	for (size_t i = 0; i < SBULK; i++)
		sw[i] = pat(i, 4);
	if (hs != sum(sw, SBULK))
		FAIL("socket: the parent got other bytes");
	for (size_t i = 0; i < SBULK; i++)
		sw[i] = pat(i, 3);
	if (hc != sum(sw, SBULK))
		FAIL("socket: the child got other bytes");
	close(sv[0]);
	ch = 'e';
	writen(down[1], &ch, 1);
	if (readn(up[0], &ch, 1) < 0 || ch != 'E')
		FAIL("socket: the child did not read end of file");
	printf("socket ok\n");

	ch = 's';
	writen(down[1], &ch, 1);
	kill(c, SIGUSR2);
	if (readn(up[0], &ch, 1) < 0 || ch != 'S')
		FAIL("signals: the child did not see SIGUSR2");
	for (int i = 0; i < 10000 && !usr2; i++)
		usleep(1000);
	if (!usr2)
		FAIL("signals: no SIGUSR2 from the child");
	/* The whole group, the parent included (its handler counts). */
	usr2 = 0;
	ch = 'g';
	writen(down[1], &ch, 1);
	kill(0, SIGUSR2);
	if (readn(up[0], &ch, 1) < 0 || ch != 'S')
		FAIL("signals: the child did not see SIGUSR2 sent to its group");
	if (usr2 < 1)
		FAIL("signals: the parent did not get its own group's SIGUSR2");
	printf("signals ok\n");

	ch = 'o';
	writen(down[1], &ch, 1);
	if (readn(up[0], &ch, 1) < 0 || ch != 'O')
		FAIL("stdout: no answer");
	printf("stdout ok\n");

	ch = 'f';
	writen(down[1], &ch, 1);
	int32_t r[2];
	if (readn(up[0], r, sizeof r) < 0)
		FAIL("fork: no answer");
	pid_t mine = fork();
	if (mine == 0)
		_exit(0);
	waitpid(mine, NULL, 0);
	if (r[0] != r[1] || r[0] == c || r[0] == getpid() || r[0] == mine || r[0] == w)
		FAIL("fork: grandchild %d (it says %d), home has %d %d %d %d", r[0], r[1], getpid(), c, w, mine);
	printf("fork ok %d\n", r[0]);

	ch = 'z';
	writen(down[1], &ch, 1);
	if (waitpid(c, &st, WUNTRACED) != c || !WIFSTOPPED(st) || WSTOPSIG(st) != SIGSTOP)
		FAIL("stop: waitpid status %#x", st);
	kill(c, SIGCONT);
	if (waitpid(c, &st, WCONTINUED) != c || !WIFCONTINUED(st))
		FAIL("continue: waitpid status %#x", st);
	if (readn(up[0], &ch, 1) < 0 || ch != 'C')
		FAIL("continue: the child did not run again");
	printf("stop ok\n");

	close(down[1]);
	char bye[4] = {0};
	if (readn(up[0], bye, 3) < 0 || strcmp(bye, "bye"))
		FAIL("eof: no bye");
	if (read(up[0], &ch, 1) != 0)
		FAIL("eof: more after bye");
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 42)
		FAIL("exit: waitpid status %#x", st);
	printf("exit ok\n");
	printf("ok\n");
	return 0;
}
