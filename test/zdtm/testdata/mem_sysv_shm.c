/*
 * mem_sysv_shm: a System V shared memory segment attached (shmat). ferry
 * does not carry it yet and must refuse the dump before touching the
 * process (the segment must not come back as some other kind of memory):
 * afterwards the segment still holds its bytes, shmctl still knows it,
 * and a second attach sees the same memory. The segment is removed at the
 * end.
 */
#include "zdtm.h"
#include <sys/shm.h>

int main(void)
{
	struct shmid_ds ds;
	char *p, *q;
	int id;

	zdtm_init();
	id = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
	if (id < 0)
		zdtm_die("shmget");
	p = shmat(id, NULL, 0);
	if (p == (void *)-1)
		zdtm_die("shmat");
	shmctl(id, IPC_RMID, NULL); /* gone once detached, whatever happens */
	strcpy(p, "sysv");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(shmctl(id, IPC_STAT, &ds) == 0 && ds.shm_nattch == 1, "shmctl: %s, %lu attached", strerror(errno),
	      (unsigned long)ds.shm_nattch);
	q = shmat(id, NULL, 0);
	CHECK(q != (void *)-1 && strcmp(q, "sysv") == 0 && (q[0] = 'S', p[0] == 'S'), "second attach is not the same memory");
	zdtm_finish();
}
