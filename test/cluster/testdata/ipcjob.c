/* ipcjob KEY MODE: a job's System V view. Every few milliseconds it
 * prints "tick N pid P" and checks that the semaphore set of key KEY,
 * which the test made in the node's IPC namespace, is not visible here
 * (the job has an IPC namespace of its own). MODE:
 *   threads: a second thread sleeps all along (its threads share a list
 *            of semaphore adjustments, made with the thread);
 *   undo:    a set of its own at 5; a child adds 2 with SEM_UNDO and
 *            waits. The value must stay 7 across moves. On SIGUSR1 the
 *            child is released; when it exits, the kernel applies its
 *            adjustment (the child's list must have come back with it)
 *            and the value must be 5 again: "undo ok".
 * Any mismatch is printed as "BROKEN ...". */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t released;
static void on_usr1(int s) { (void)s; released = 1; }
static void *sleeper(void *a) { (void)a; for (;;) pause(); return NULL; }

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: ipcjob KEY threads|undo\n");
		return 2;
	}
	key_t host = (key_t)strtol(argv[1], NULL, 0);
	int undo = strcmp(argv[2], "undo") == 0;
	pid_t pid = getpid(), child = -1;
	int set = -1, rel[2];
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGUSR1, on_usr1);
	if (!undo) {
		pthread_t t;
		if (pthread_create(&t, NULL, sleeper, NULL)) {
			printf("BROKEN pthread_create\n");
			return 1;
		}
	} else {
		set = semget(IPC_PRIVATE, 1, 0600 | IPC_CREAT);
		if (set < 0 || semctl(set, 0, SETVAL, 5) < 0 || pipe(rel) < 0) {
			printf("BROKEN semget: %s\n", strerror(errno));
			return 1;
		}
		child = fork();
		if (child == 0) {
			struct sembuf b = { .sem_num = 0, .sem_op = 2, .sem_flg = SEM_UNDO };
			char c;
			close(rel[1]);
			if (semop(set, &b, 1) < 0)
				_exit(3);
			while (read(rel[0], &c, 1) < 0 && errno == EINTR)
				;
			_exit(0);
		}
		close(rel[0]);
		while (semctl(set, 0, GETVAL) != 7)
			usleep(1000);
	}
	int done = 0;
	for (long tick = 1;; tick++) {
		int seen = semget(host, 0, 0);
		if (seen >= 0 || errno != ENOENT)
			printf("BROKEN the node's set of key %#x is visible in the job (%d, %s)\n", host, seen, strerror(errno));
		if (getpid() != pid)
			printf("BROKEN pid %d is now %d\n", pid, getpid());
		if (undo && !done) {
			int v = semctl(set, 0, GETVAL);
			if (v != 7)
				printf("BROKEN value %d while the child holds +2, want 7\n", v);
			if (released) {
				int st;
				close(rel[1]);
				if (waitpid(child, &st, 0) != child || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
					printf("BROKEN child status %#x\n", st);
				v = semctl(set, 0, GETVAL);
				if (v == 5)
					printf("undo ok\n");
				else
					printf("BROKEN value %d after the child's exit, want 5\n", v);
				done = 1;
			}
		}
		printf("tick %ld pid %d\n", tick, pid);
		usleep(10000);
	}
}
