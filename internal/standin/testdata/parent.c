/* parent [threads]: forks a child that waits for signals forever (with
 * three more threads if asked), prints
 * "child PID", then reports every change of the child that waitid
 * tells (exits, killing signals, stops, continues), one line each, and
 * ends when the child is gone. */
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

static void *sleeper(void *a) { (void)a; for (;;) pause(); return NULL; }

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	pid_t c = fork();
	if (c < 0)
		return 1;
	if (c == 0) {
		for (int i = 0; argc > 1 && strcmp(argv[1], "threads") == 0 && i < 3; i++) {
			pthread_t t;
			pthread_create(&t, NULL, sleeper, NULL);
		}
		for (;;)
			pause();
	}
	printf("child %d\n", c);
	for (;;) {
		siginfo_t si = {0};
		if (waitid(P_PID, c, &si, WEXITED | WSTOPPED | WCONTINUED) < 0) {
			perror("waitid");
			return 1;
		}
		switch (si.si_code) {
		case CLD_EXITED:
			printf("exited %d\n", si.si_status);
			return 0;
		case CLD_KILLED:
			printf("killed %d core 0\n", si.si_status);
			return 0;
		case CLD_DUMPED:
			printf("killed %d core 1\n", si.si_status);
			return 0;
		case CLD_STOPPED:
			printf("stopped %d\n", si.si_status);
			break;
		case CLD_CONTINUED:
			printf("continued\n");
			break;
		}
	}
}
