/*
 * zt_shm_unaligned: System V shared memory segments whose size is not a
 * multiple of the page size.
 *   R: 5000 bytes, attached read-write, filled, then removed (IPC_RMID);
 *   K: 3 pages + 100 bytes, attached twice (read-write, read-only), the
 *      first 3*4096+100 bytes filled, kept.
 * After restore shmctl(IPC_STAT) gives the same shm_segsz (5000 and
 * 12388, not rounded up), mode, SHM_DEST for R only and attach counts;
 * the data is there, the bytes past the size up to the page end read
 * zero; a write through K's read-write attachment shows through the
 * read-only one and a new attach.
 * Modelled on zdtm's shm-unaligned.
 */
#include "zdtm.h"
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>

#define RSZ 5000
#define KSZ (3 * 4096 + 100)

int main(void)
{
	struct shmid_ds ds;
	int r, k;
	unsigned char *rp, *kp, *kro, *k2;
	long off;

	zdtm_init();
	r = shmget(IPC_PRIVATE, RSZ, 0640 | IPC_CREAT);
	k = shmget(IPC_PRIVATE, KSZ, 0604 | IPC_CREAT);
	if (r < 0 || k < 0)
		zdtm_die("shmget");
	rp = shmat(r, NULL, 0);
	kp = shmat(k, NULL, 0);
	kro = shmat(k, NULL, SHM_RDONLY);
	if (rp == (void *)-1 || kp == (void *)-1 || kro == (void *)-1)
		zdtm_die("shmat");
	zdtm_fill(rp, RSZ, 71);
	zdtm_fill(kp, KSZ, 72);
	if (shmctl(r, IPC_RMID, NULL))
		zdtm_die("IPC_RMID");
	zdtm_log("R id %d at %p, K id %d at %p and %p", r, rp, k, kp, kro);

	zdtm_ready();
	zdtm_wait_go();

	memset(&ds, 0, sizeof(ds));
	CHECK(shmctl(r, IPC_STAT, &ds) == 0, "IPC_STAT R: %s", strerror(errno));
	CHECK(ds.shm_segsz == RSZ, "R shm_segsz %zu, want %d", (size_t)ds.shm_segsz, RSZ);
	CHECK((ds.shm_perm.mode & 0777) == 0640, "R mode %o", ds.shm_perm.mode & 0777);
	CHECK(ds.shm_perm.mode & SHM_DEST, "R lost SHM_DEST (mode %o)", ds.shm_perm.mode);
	CHECK(ds.shm_nattch == 1, "R nattch %lu, want 1", (unsigned long)ds.shm_nattch);
	memset(&ds, 0, sizeof(ds));
	CHECK(shmctl(k, IPC_STAT, &ds) == 0, "IPC_STAT K: %s", strerror(errno));
	CHECK(ds.shm_segsz == KSZ, "K shm_segsz %zu, want %d", (size_t)ds.shm_segsz, KSZ);
	CHECK((ds.shm_perm.mode & 0777) == 0604, "K mode %o", ds.shm_perm.mode & 0777);
	CHECK(!(ds.shm_perm.mode & SHM_DEST), "K marked SHM_DEST");
	CHECK(ds.shm_nattch == 2, "K nattch %lu, want 2", (unsigned long)ds.shm_nattch);

	off = zdtm_check(rp, RSZ, 71);
	CHECK(off < 0, "R data differs at %ld", off);
	off = zdtm_is_zero(rp + RSZ, 2 * 4096 - RSZ);
	CHECK(off < 0, "R tail past its size not zero at %ld", off + RSZ);
	off = zdtm_check(kp, KSZ, 72);
	CHECK(off < 0, "K data differs at %ld", off);
	off = zdtm_is_zero(kp + KSZ, 4 * 4096 - KSZ);
	CHECK(off < 0, "K tail past its size not zero at %ld", off + KSZ);
	kp[KSZ - 1] ^= 0xff;
	kp[5] ^= 0xff;
	CHECK(kro[KSZ - 1] == kp[KSZ - 1] && kro[5] == kp[5], "K read-only attachment does not share memory");
	k2 = shmat(k, NULL, SHM_RDONLY);
	CHECK(k2 != (void *)-1, "new shmat K: %s", strerror(errno));
	if (k2 != (void *)-1)
		CHECK(k2[KSZ - 1] == kp[KSZ - 1] && k2[100] == kp[100], "new K attachment differs");
	shmctl(k, IPC_RMID, NULL);
	zdtm_finish();
}
