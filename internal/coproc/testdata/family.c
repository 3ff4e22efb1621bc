/* family [shm] [grandchild] [wait]: a parent leading its own session
 * makes a pipe it writes to the child and one the child writes to it,
 * forks the child (which forks a grandchild and waits for it, if asked),
 * prints "child PID" and waits. With shm the two share an anonymous
 * MAP_SHARED page. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

static int has(int argc, char **argv, const char *w) {
	for (int i = 1; i < argc; i++)
		if (strcmp(argv[i], w) == 0)
			return 1;
	return 0;
}

int main(int argc, char **argv) {
	setsid();
	setvbuf(stdout, NULL, _IOLBF, 0);
	int down[2], up[2];
	if (pipe(down) || pipe(up))
		return 1;
	if (has(argc, argv, "shm") && mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0) == MAP_FAILED)
		return 1;
	pid_t c = fork();
	if (c == 0) {
		close(down[1]);
		close(up[0]);
		if (write(up[1], "r", 1) != 1) /* ready: its fds are as they stay */
			return 1;
		if (has(argc, argv, "grandchild")) {
			pid_t g = fork();
			if (g == 0)
				for (;;)
					pause();
			if (has(argc, argv, "wait"))
				waitpid(g, NULL, 0);
		}
		for (;;)
			pause();
	}
	close(down[0]);
	close(up[1]);
	char r;
	if (read(up[0], &r, 1) != 1)
		return 1;
	printf("child %d\n", c);
	for (;;)
		pause();
}
