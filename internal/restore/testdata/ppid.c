/* ppid FILE: forks a child and prints "child PID", then waits forever.
 * The child writes "pid P ppid Q sid S pgrp G" to FILE (whole, by a
 * rename) every few milliseconds: who it is and who its parent is, as it
 * sees them itself. */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 2)
		return 2;
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid_t c = fork();
	if (c < 0)
		return 1;
	if (c > 0) {
		printf("child %d\n", c);
		for (;;)
			pause();
	}
	/* Nothing of the test's: its stdout pipe leads outside the tree. */
	freopen("/dev/null", "w", stdout);
	char tmp[4096];
	snprintf(tmp, sizeof tmp, "%s.tmp", argv[1]);
	for (;;) {
		FILE *f = fopen(tmp, "w");
		if (f) {
			fprintf(f, "pid %d ppid %d sid %d pgrp %d\n", getpid(), getppid(), getsid(0), getpgrp());
			fclose(f);
			rename(tmp, argv[1]);
		}
		usleep(5000);
	}
}
