/* counter: prints "tick N pid P" every few milliseconds and echoes its
 * input as "in: ...". It checks its own identity: getpid() must stay what
 * it was at start (a migrated copy keeps its PID), and the tick counter
 * lives in memory that is checked against a checksum of a 4 MiB buffer
 * filled from it. Any mismatch is printed as "BROKEN ...". */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BUF (4 << 20)

static uint64_t sum(const uint64_t *b, size_t n) {
	uint64_t s = 0;
	for (size_t i = 0; i < n; i++)
		s += b[i] ^ (i * 0x9e3779b97f4a7c15ull);
	return s;
}

int main(int argc, char **argv) {
	int delay = argc > 1 ? atoi(argv[1]) : 20000;
	pid_t pid = getpid();
	setvbuf(stdout, NULL, _IOLBF, 0);
	fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
	uint64_t *mem = malloc(BUF);
	size_t n = BUF / sizeof(uint64_t);
	for (size_t i = 0; i < n; i++)
		mem[i] = i * 2654435761u;
	uint64_t want = sum(mem, n);
	int eof = 0;
	/* COUNTER_LOG: also append every tick to this file (kept open).
	 * COUNTER_KEEP: keep this file open, read-only. */
	FILE *logf = NULL;
	if (getenv("COUNTER_LOG")) {
		logf = fopen(getenv("COUNTER_LOG"), "a");
		if (!logf) {
			printf("BROKEN cannot open %s\n", getenv("COUNTER_LOG"));
			return 1;
		}
		setvbuf(logf, NULL, _IOLBF, 0);
	}
	if (getenv("COUNTER_KEEP") && open(getenv("COUNTER_KEEP"), O_RDONLY) < 0) {
		printf("BROKEN cannot open %s\n", getenv("COUNTER_KEEP"));
		return 1;
	}
	for (long tick = 1;; tick++) {
		if (getpid() != pid)
			printf("BROKEN pid %d is now %d\n", pid, getpid());
		/* dirty one page per tick, keeping the checksum known */
		size_t at = (tick * 512) % n;
		uint64_t x = (uint64_t)at * 0x9e3779b97f4a7c15ull;
		want -= mem[at] ^ x;
		mem[at] += tick;
		want += mem[at] ^ x;
		if (tick % 16 == 0 && sum(mem, n) != want)
			printf("BROKEN memory checksum\n");
		printf("tick %ld pid %d\n", tick, pid);
		if (logf)
			fprintf(logf, "tick %ld pid %d\n", tick, pid);
		if (!eof) {
			char buf[512];
			ssize_t r = read(0, buf, sizeof buf);
			if (r > 0)
				printf("in: %.*s", (int)r, buf);
			else if (r == 0) {
				printf("eof\n");
				eof = 1;
			}
		}
		usleep(delay);
	}
}
