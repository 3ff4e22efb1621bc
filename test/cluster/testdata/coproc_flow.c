/* coproc_flow: a parent and its child in a ping-pong that never stops
 * while the child moves around the cluster: the parent sends a sequence
 * number, the child answers it + 1 and 1 KiB made of it; the parent
 * checks both. It prints "child PID", then "rounds N" now and then; on
 * SIGUSR1 it prints "flow ok N" (or the first failure, "FAIL: ...") and
 * exits, and the child sees end of file and exits too. */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_usr1(int s) { (void)s; stop = 1; }

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

static void fill(unsigned char *b, uint32_t seq) {
	for (int i = 0; i < 1024; i++)
		b[i] = (unsigned char)(seq * 7 + i * 13);
}

int main(void) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	int down[2], up[2];
	if (pipe(down) < 0 || pipe(up) < 0)
		return 1;
	pid_t c = fork();
	if (c == 0) {
		signal(SIGUSR1, SIG_IGN);
		close(down[1]);
		close(up[0]);
		uint32_t seq;
		unsigned char b[1024];
		while (readn(down[0], &seq, 4) == 0) {
			uint32_t r = seq + 1;
			fill(b, seq);
			if (writen(up[1], &r, 4) < 0 || writen(up[1], b, sizeof b) < 0)
				return 2;
		}
		return 0;
	}
	close(down[0]);
	close(up[1]);
	signal(SIGUSR1, on_usr1);
	printf("child %d\n", c);
	uint32_t seq = 0;
	unsigned char b[1024], want[1024];
	while (!stop) {
		uint32_t r;
		if (writen(down[1], &seq, 4) < 0 || readn(up[0], &r, 4) < 0 || readn(up[0], b, sizeof b) < 0) {
			printf("FAIL: round %u: the pipes broke\n", seq);
			return 1;
		}
		fill(want, seq);
		if (r != seq + 1 || memcmp(b, want, sizeof b)) {
			printf("FAIL: round %u: answer %u, data %s\n", seq, r, memcmp(b, want, sizeof b) ? "wrong" : "right");
			return 1;
		}
		seq++;
		if (seq % 2000 == 0)
			printf("rounds %u\n", seq);
	}
	printf("flow ok %u\n", seq);
	return 0;
}
