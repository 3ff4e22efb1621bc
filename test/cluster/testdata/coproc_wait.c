/* coproc_wait MODE: a parent and a child for the moves of one process
 * apart (ferry migrate JOB --pid CHILD). The parent prints "child PID".
 *   wait  the child sleeps; the parent waits for it at once and prints
 *         each change waitid reports ("exited N", "killed S core C",
 *         "stopped S", "continued"), and ends when the child is gone
 *   term  as wait, but the parent first waits for SIGUSR1, then sends
 *         the child SIGTERM
 *   nest  the child forks a grandchild and waits for it (waitpid); the
 *         parent sleeps
 *   shm   parent and child share an anonymous MAP_SHARED page; both sleep
 *   grand the main process forks a middle one (as make runs a shell),
 *         whose child, in the main process's session and group, prints
 *         "ids PID PPID PGRP SID" at each SIGUSR1; the middle one
 *         reports its child's statuses as in wait; only the child
 *         takes a SIGTERM sent to the group
 *   family the child forks a grandchild and waits for it; a SIGUSR1 to
 *         the group (only the child takes it) makes the child tell the
 *         grandchild (SIGUSR1), which exits 7; the child exits with its
 *         grandchild's code + 10; the parent reports as in wait
 *   msg   the child connects to the job's message endpoint and sleeps
 *   blast the child writes 8 MiB into a pipe to the parent, which reads
 *         it only after SIGUSR1, checks every byte and the child's exit
 *         (0), and prints "blast ok" */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void on_usr1(int s) { (void)s; go = 1; }
static pid_t grandchild;
static void tell_grandchild(int s) { (void)s; kill(grandchild, SIGUSR1); }
static void say_ids(int s) {
	(void)s;
	char b[96];
	int n = snprintf(b, sizeof b, "ids %d %d %d %d\n", getpid(), getppid(), getpgrp(), getsid(0));
	write(1, b, n);
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *mode = argc > 1 ? argv[1] : "wait";
	signal(SIGUSR1, on_usr1);
	volatile char *shared = NULL;
	if (!strcmp(mode, "shm")) {
		shared = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		shared[0] = 1;
	}
	if (!strcmp(mode, "grand")) {
		pid_t m = fork();
		if (m > 0) {
			signal(SIGTERM, SIG_IGN);
			for (;;)
				pause();
		}
		signal(SIGUSR1, SIG_IGN);
	}
	int bp[2];
	if (!strcmp(mode, "blast") && pipe(bp) < 0)
		return 1;
	pid_t c = fork();
	if (c == 0) {
		if (!strcmp(mode, "blast")) {
			signal(SIGUSR1, SIG_IGN);
			close(bp[0]);
			static unsigned char b[1 << 16];
			for (int k = 0; k < 128; k++) {
				for (int i = 0; i < (int)sizeof b; i++)
					b[i] = (unsigned char)(k * 31 + i * 7);
				for (size_t put = 0; put < sizeof b;) {
					ssize_t r = write(bp[1], b + put, sizeof b - put);
					if (r <= 0)
						return 3;
					put += r;
				}
			}
			return 0;
		}
		if (!strcmp(mode, "grand")) {
			signal(SIGUSR1, say_ids);
			for (;;)
				pause();
		}
		if (!strcmp(mode, "msg")) {
			int s = socket(AF_UNIX, SOCK_SEQPACKET, 0);
			struct sockaddr_un a = {.sun_family = AF_UNIX};
			strcpy(a.sun_path, "/run/ferry/msg.sock");
			if (connect(s, (struct sockaddr *)&a, sizeof a) < 0)
				perror("connect");
			for (;;)
				pause();
		}
		if (!strcmp(mode, "family")) {
			pid_t g = fork();
			if (g == 0) {
				signal(SIGUSR1, on_usr1);
				while (!go)
					pause();
				_exit(7);
			}
			grandchild = g;
			signal(SIGUSR1, tell_grandchild);
			int st;
			while (waitpid(g, &st, 0) < 0)
				;
			return WIFEXITED(st) ? WEXITSTATUS(st) + 10 : 99;
		}
		if (!strcmp(mode, "nest")) {
			pid_t g = fork();
			if (g == 0)
				for (;;)
					pause();
			waitpid(g, NULL, 0);
			return 0;
		}
		for (;;)
			pause();
	}
	printf("child %d\n", c);
	if (!strcmp(mode, "blast")) {
		close(bp[1]);
		while (!go)
			pause();
		static unsigned char b[1 << 16];
		for (int k = 0; k < 128; k++) {
			for (size_t got = 0; got < sizeof b;) {
				ssize_t r = read(bp[0], b + got, sizeof b - got);
				if (r <= 0) {
					printf("FAIL: short at block %d\n", k);
					return 1;
				}
				got += r;
			}
			for (int i = 0; i < (int)sizeof b; i++)
				if (b[i] != (unsigned char)(k * 31 + i * 7)) {
					printf("FAIL: block %d byte %d\n", k, i);
					return 1;
				}
		}
		int st;
		if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
			printf("FAIL: child status %#x\n", st);
			return 1;
		}
		printf("blast ok\n");
		return 0;
	}
	if (!strcmp(mode, "family"))
		signal(SIGUSR1, SIG_IGN); /* a SIGUSR1 to the group is for the child */
	if (!strcmp(mode, "grand"))
		signal(SIGTERM, SIG_IGN); /* a SIGTERM to the group is for the child */
	if (!strcmp(mode, "nest") || !strcmp(mode, "shm") || !strcmp(mode, "msg"))
		for (;;)
			pause();
	if (!strcmp(mode, "term")) {
		while (!go)
			pause();
		kill(c, SIGTERM);
	}
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
