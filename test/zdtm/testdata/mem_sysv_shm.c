/*
 * mem_sysv_shm: System V shared memory segments attached (shmat). A
 * removed one (IPC_RMID while attached: it goes with its last detach),
 * 8 KiB, attached read-write with "sysv" at its start and its second page
 * made read-only (mprotect); a kept one with a key, 3 pages, attached
 * twice: read-write with a pattern in it, and read-only elsewhere. After
 * restore: shmctl still knows both, with their sizes, modes and
 * attachment counts (one per VMA); the removed one is still removed (SHM_DEST) and its
 * bytes are there; a new attach of each sees the same memory (a write
 * through one shows through the other); the read-only attachment is
 * still read-only and the mprotect'ed page still read-only (a write
 * faults: checked in a child); the key finds the kept segment. The kept
 * segment is removed at the end.
 */
#include "zdtm.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

/* faults tells whether writing a byte at p kills a child with SIGSEGV. */
static int faults(volatile char *p)
{
	int st;
	pid_t c = fork();

	if (c == 0) {
		*p = 'x';
		_exit(0);
	}
	if (c < 0 || waitpid(c, &st, 0) != c)
		return -1;
	return WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV;
}

int main(void)
{
	struct shmid_ds ds;
	unsigned long natt, knatt;
	char *p, *q, *k1, *k2, *k3;
	key_t key;
	long ps = sysconf(_SC_PAGESIZE);
	int id, kid, i;

	zdtm_init();
	id = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
	if (id < 0)
		zdtm_die("shmget");
	p = shmat(id, NULL, 0);
	if (p == (void *)-1)
		zdtm_die("shmat");
	shmctl(id, IPC_RMID, NULL); /* gone once detached, whatever happens */
	strcpy(p, "sysv");
	if (mprotect(p + ps, ps, PROT_READ))
		zdtm_die("mprotect");

	key = 0x7a000000 | (getpid() & 0xffffff);
	kid = shmget(key, 3 * ps, IPC_CREAT | IPC_EXCL | 0640);
	if (kid < 0)
		zdtm_die("shmget key %#x: %s", key, strerror(errno));
	k1 = shmat(kid, NULL, 0);
	k2 = shmat(kid, NULL, SHM_RDONLY);
	if (k1 == (void *)-1 || k2 == (void *)-1)
		zdtm_die("shmat kept");
	for (i = 0; i < 3 * ps; i++)
		k1[i] = (char)(i * 7 + 3);
	/* The kernel counts an attachment per VMA: the mprotect split one. */
	if (shmctl(id, IPC_STAT, &ds) || shmctl(kid, IPC_STAT, &ds))
		zdtm_die("shmctl");
	shmctl(id, IPC_STAT, &ds);
	natt = ds.shm_nattch;
	shmctl(kid, IPC_STAT, &ds);
	knatt = ds.shm_nattch;

	zdtm_ready();
	zdtm_wait_go();

	CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_nattch == natt && ds.shm_segsz == 8192 && (ds.shm_perm.mode & 0777) == 0600 &&
		      (ds.shm_perm.mode & SHM_DEST),
	      "removed segment: shmctl %s, %lu attached, %zu bytes, mode %o", strerror(errno), (unsigned long)ds.shm_nattch,
	      (size_t)ds.shm_segsz, ds.shm_perm.mode);
	q = shmat(id, NULL, 0);
	CHECK(q != (void *)-1 && strcmp(q, "sysv") == 0 && (q[0] = 'S', p[0] == 'S'), "second attach is not the same memory");
	CHECK(faults(p + ps) == 1, "the mprotect'ed page of the removed segment is writable");
	CHECK(faults(p) == 0, "the first page of the removed segment is not writable");

	CHECK(shmctl(kid, IPC_STAT, &ds) == 0 && ds.shm_nattch == knatt && ds.shm_segsz == (size_t)(3 * ps) &&
		      (ds.shm_perm.mode & 0777) == 0640 && !(ds.shm_perm.mode & SHM_DEST) && ds.shm_perm.__key == key,
	      "kept segment: shmctl %s, %lu attached, %zu bytes, mode %o", strerror(errno), (unsigned long)ds.shm_nattch,
	      (size_t)ds.shm_segsz, ds.shm_perm.mode);
	CHECK(shmget(key, 0, 0) == kid, "the key finds %d, want %d", shmget(key, 0, 0), kid);
	for (i = 0; i < 3 * ps; i++)
		if (k1[i] != (char)(i * 7 + 3) || k2[i] != k1[i]) {
			fail("kept segment: byte %d is %d/%d", i, k1[i], k2[i]);
			break;
		}
	k3 = shmat(kid, NULL, 0);
	CHECK(k3 != (void *)-1 && (k3[5] = 'K', k1[5] == 'K' && k2[5] == 'K'), "a new attach of the kept segment is not the same memory");
	CHECK(faults(k2) == 1, "the read-only attachment is writable");
	shmctl(kid, IPC_RMID, NULL);
	zdtm_finish();
}
