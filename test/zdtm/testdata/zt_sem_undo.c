/*
 * zt_sem_undo (process tree): System V semaphore adjustments (SEM_UNDO)
 * held by processes. A private set of 3 semaphores starts at {10, 5, 0}.
 * Child A takes 2 from sem 0 with SEM_UNDO; child B adds 4 to sem 1 with
 * SEM_UNDO and 1 to sem 2 without; the parent adds 3 to sem 2 with
 * SEM_UNDO. Values before the dump: {8, 9, 4}. After restore: the values
 * are still {8, 9, 4} and GETPID of sem 1 is B's pid; when A exits sem 0
 * goes back to 10, when B exits sem 1 goes back to 5 and sem 2 stays 4
 * (the kernel applies each process's undo list at its exit, so the lists
 * must have come back with the processes); a child forked after restore
 * inherits no undo list, so its exit leaves sem 2 at 4.
 * Modelled on zdtm's sem (semaphores across migration) with SEM_UNDO.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/ipc.h>
#include <sys/sem.h>
#include <sys/wait.h>

static int semid;
static int rel[2][2]; /* the parent releases child i through rel[i] */

static void op(int num, int delta, int flg)
{
	struct sembuf b = { .sem_num = num, .sem_op = delta, .sem_flg = flg };
	if (semop(semid, &b, 1))
		zdtm_die("semop(%d, %d)", num, delta);
}

static pid_t child(int idx, int num, int delta, int extra, int p[2])
{
	pid_t pid = fork();
	char ch;
	if (pid < 0)
		zdtm_die("fork");
	if (pid == 0) {
		zdtm_child_forget_ready();
		close(p[0]);
		op(num, delta, SEM_UNDO);
		if (extra)
			op(2, extra, 0);
		if (write(p[1], "x", 1) != 1)
			_exit(3);
		close(p[1]);
		close(rel[idx][1]);
		close(rel[!idx][0]);
		close(rel[!idx][1]);
		zdtm_wait_go();
		/* Exit only when released (or when the parent is gone). */
		if (read(rel[idx][0], &ch, 1) < 0)
			_exit(4);
		_exit(0);
	}
	return pid;
}

static int val(int n) { return semctl(semid, n, GETVAL); }

static int reap(pid_t pid)
{
	int st = -1;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

int main(void)
{
	unsigned short init[3] = { 10, 5, 0 };
	int p[2], i, st;
	pid_t a, b, c;
	char ch;

	zdtm_init();
	semid = semget(IPC_PRIVATE, 3, 0600 | IPC_CREAT);
	if (semid < 0)
		zdtm_die("semget");
	if (semctl(semid, 0, SETALL, init))
		zdtm_die("SETALL");
	if (pipe(p) || pipe(rel[0]) || pipe(rel[1]))
		zdtm_die("pipe");
	a = child(0, 0, -2, 0, p);
	b = child(1, 1, 4, 1, p);
	close(p[1]);
	for (i = 0; i < 2; i++)
		if (read(p[0], &ch, 1) != 1)
			zdtm_die("child set-up");
	close(p[0]);
	close(rel[0][0]);
	close(rel[1][0]);
	op(2, 3, SEM_UNDO);
	zdtm_log("semid %d: %d %d %d, A %d B %d", semid, val(0), val(1), val(2), a, b);

	zdtm_ready();
	zdtm_wait_go();

	CHECK(val(0) == 8 && val(1) == 9 && val(2) == 4, "values after restore %d %d %d, want 8 9 4 (%s)",
	      val(0), val(1), val(2), strerror(errno));
	CHECK(semctl(semid, 1, GETPID) == b, "GETPID of sem 1 = %d, want B %d", semctl(semid, 1, GETPID), b);
	if (write(rel[0][1], "a", 1) != 1)
		fail("release A");
	st = reap(a);
	CHECK(st == 0, "A exited %d", st);
	CHECK(val(0) == 10, "after A exited sem 0 = %d, want 10 (A's SEM_UNDO -2 undone)", val(0));
	if (write(rel[1][1], "b", 1) != 1)
		fail("release B");
	st = reap(b);
	CHECK(st == 0, "B exited %d", st);
	CHECK(val(1) == 5, "after B exited sem 1 = %d, want 5 (B's SEM_UNDO +4 undone)", val(1));
	CHECK(val(2) == 4, "after B exited sem 2 = %d, want 4 (no undo for B's plain +1)", val(2));
	c = fork();
	if (c == 0)
		_exit(0);
	reap(c);
	CHECK(val(2) == 4, "after C exited sem 2 = %d, want 4", val(2));
	/* The parent's own +3: taking 4 back without undo must work now. */
	CHECK(semctl(semid, 0, IPC_RMID) == 0, "IPC_RMID: %s", strerror(errno));
	zdtm_finish();
}
