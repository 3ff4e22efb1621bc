/*
 * mem_shared_anon_fork (process tree): a MAP_SHARED|MAP_ANONYMOUS region
 * shared between a parent and its forked child, and a MAP_PRIVATE region
 * inherited copy-on-write. After restore the shared region still connects
 * the two processes (a ping-pong through it), and private writes of one
 * process stay invisible to the other.
 */
#include "zdtm.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PG 4096UL

struct shared {
	volatile int ping, pong;
	unsigned char pad[PG - 8];
	unsigned char data[4 * PG];
};

static int wait_flag(volatile int *f, int want)
{
	int64_t start = zdtm_mono_ns();

	while (__atomic_load_n(f, __ATOMIC_ACQUIRE) < want)
		if (zdtm_mono_ns() - start > 10000000000LL)
			return -1;
		else
			zdtm_sleep_ms(1);
	return 0;
}

int main(void)
{
	struct shared *sh;
	unsigned char *priv;
	pid_t child, parent;
	int st;

	zdtm_init();
	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	priv = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED || priv == MAP_FAILED)
		zdtm_die("mmap");
	zdtm_fill(sh->data, sizeof(sh->data), 31);
	zdtm_fill(priv, 4 * PG, 32);
	parent = getpid();

	child = fork();
	if (child < 0)
		zdtm_die("fork");
	if (child == 0) {
		pid_t me = getpid();
		int bad = 0;

		zdtm_child_forget_ready();
		zdtm_fill(priv + PG, PG, 34); /* child's private copy */
		__atomic_store_n(&sh->ping, 1, __ATOMIC_RELEASE);
		zdtm_wait_go();
		if (getpid() != me || getppid() != parent) {
			zdtm_log("child: pid %d ppid %d, want %d %d", getpid(), getppid(), me, parent);
			bad = 1;
		}
		if (zdtm_check(sh->data, sizeof(sh->data), 31) >= 0) {
			zdtm_log("child: shared data differs");
			bad = 1;
		}
		if (zdtm_check(priv, PG, 32) >= 0 || zdtm_check(priv + PG, PG, 34) >= 0) {
			zdtm_log("child: private data differs");
			bad = 1;
		}
		zdtm_fill(sh->data + 2 * PG, PG, 35);
		__atomic_store_n(&sh->ping, 2, __ATOMIC_RELEASE);
		if (wait_flag(&sh->pong, 2)) {
			zdtm_log("child: no pong from parent through shared memory");
			bad = 1;
		} else if (zdtm_check(sh->data + 3 * PG, PG, 36) >= 0) {
			zdtm_log("child: parent's write to shared page differs");
			bad = 1;
		}
		_exit(bad ? 1 : 0);
	}

	zdtm_fill(priv + 2 * PG, PG, 33); /* parent's private copy */
	if (wait_flag(&sh->ping, 1))
		zdtm_die("child did not start");
	zdtm_ready();
	zdtm_wait_go();

	if (wait_flag(&sh->ping, 2)) {
		fail("no ping from child through shared memory");
	} else {
		CHECK(zdtm_check(sh->data + 2 * PG, PG, 35) < 0, "child's write to shared page differs");
		CHECK(zdtm_check(sh->data, 2 * PG, 31) < 0, "shared data differs");
	}
	CHECK(zdtm_check(priv, PG, 32) < 0, "private page 0 differs");
	{
		static unsigned char full[4 * PG];
		zdtm_fill(full, sizeof(full), 32);
		CHECK(memcmp(priv + PG, full + PG, PG) == 0, "child's private write leaked into the parent");
	}
	CHECK(zdtm_check(priv + 2 * PG, PG, 33) < 0, "parent's private page differs");
	zdtm_fill(sh->data + 3 * PG, PG, 36);
	__atomic_store_n(&sh->pong, 2, __ATOMIC_RELEASE);

	if (waitpid(child, &st, 0) != child)
		fail("waitpid child %d: %s", child, strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x", st);
	zdtm_finish();
}
