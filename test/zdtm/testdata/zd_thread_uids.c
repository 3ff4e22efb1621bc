/*
 * zd_thread_uids: credentials that differ between the threads of one
 * process (set with raw setres*id/setfs*id syscalls, which glibc would
 * otherwise apply to all threads).
 *   main thread: stays root, fsuid/fsgid 555/556;
 *   thread A:    uid/gid 1000/1001 (all of real, effective, saved);
 *   thread B:    euid 99 (real and saved stay 0), gid 0.
 * After restore each thread reads its own ids back with getresuid/
 * getresgid and /proc/self/task/TID/status (Uid/Gid lines, four fields),
 * and the kernel enforces them per thread: a file the main thread creates
 * is owned by 555:556; thread A cannot open a root-only 0600 file
 * (EACCES) while thread B can (as its saved uid is 0 it switches back to
 * root with setresuid, which A cannot).
 * Modelled on zdtm's thread_different_uid_gid.
 */
#include "zdtm.h"
#include <pthread.h>

static pid_t tids[3];
static char want_uid[3][64], want_gid[3][64];
static int stage, results[3];

static int ids_of(pid_t tid, char *uid, char *gid)
{
	char path[96];

	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid);
	return zdtm_status_field(path, "Uid", uid, 64) | zdtm_status_field(path, "Gid", gid, 64);
}

static void wait_stage(int want)
{
	while (__atomic_load_n(&stage, __ATOMIC_ACQUIRE) < want)
		zdtm_sleep_ms(1);
}

static void *thr(void *arg)
{
	long idx = (long)arg;
	uid_t r, e, s;
	gid_t gr, ge, gs;
	int fd, bad = 0;

	tids[idx] = zdtm_gettid();
	if (idx == 1) {
		if (syscall(SYS_setresgid, 1001, 1001, 1001) || syscall(SYS_setresuid, 1000, 1000, 1000))
			zdtm_die("thread A setres*id");
	} else {
		if (syscall(SYS_setresuid, -1, 99, -1))
			zdtm_die("thread B setresuid");
	}
	__atomic_add_fetch(&stage, 1, __ATOMIC_RELEASE);
	wait_stage(10);
	syscall(SYS_getresuid, &r, &e, &s);
	syscall(SYS_getresgid, &gr, &ge, &gs);
	if (idx == 1) {
		if (r != 1000 || e != 1000 || s != 1000 || gr != 1001 || ge != 1001 || gs != 1001)
			bad |= 1;
		fd = open("root-only", O_RDONLY);
		if (fd >= 0 || errno != EACCES)
			bad |= 2;
		if (fd >= 0)
			close(fd);
		if (syscall(SYS_setresuid, 0, 0, 0) == 0)
			bad |= 4;
	} else {
		if (r != 0 || e != 99 || s != 0 || gr != 0 || ge != 0)
			bad |= 1;
		if (syscall(SYS_setresuid, -1, 0, -1))
			bad |= 4;
		fd = open("root-only", O_RDONLY);
		if (fd < 0)
			bad |= 2;
		else
			close(fd);
	}
	results[idx] = bad;
	return NULL;
}

int main(void)
{
	pthread_t a, b;
	char uid[64], gid[64];
	struct stat st;
	int i, fd;

	zdtm_init();
	fd = open("root-only", O_RDWR | O_CREAT, 0600);
	if (fd < 0)
		zdtm_die("root-only");
	close(fd);
	if (mkdir("wdir", 0777) || chmod("wdir", 0777))
		zdtm_die("mkdir wdir");
	tids[0] = zdtm_gettid();
	if (pthread_create(&a, NULL, thr, (void *)1L) || pthread_create(&b, NULL, thr, (void *)2L))
		zdtm_die("pthread_create");
	wait_stage(2);
	if (syscall(SYS_setfsgid, 556) < 0 || syscall(SYS_setfsuid, 555) < 0)
		zdtm_die("setfs*id");
	for (i = 0; i < 3; i++) {
		if (ids_of(tids[i], want_uid[i], want_gid[i]))
			zdtm_die("status of %d", tids[i]);
		zdtm_log("thread %d: Uid %s Gid %s", i, want_uid[i], want_gid[i]);
	}

	zdtm_ready();
	zdtm_wait_go();

	for (i = 0; i < 3; i++) {
		CHECK(ids_of(tids[i], uid, gid) == 0 && strcmp(uid, want_uid[i]) == 0 && strcmp(gid, want_gid[i]) == 0,
		      "thread %d (%d): Uid \"%s\" Gid \"%s\", want \"%s\" \"%s\"", i, tids[i], uid, gid, want_uid[i],
		      want_gid[i]);
	}
	fd = open("wdir/by-main", O_RDWR | O_CREAT | O_EXCL, 0644);
	CHECK(fd >= 0 && fstat(fd, &st) == 0 && st.st_uid == 555 && st.st_gid == 556,
	      "file made by the main thread: owner %d:%d, want 555:556 (%s)", st.st_uid, st.st_gid, strerror(errno));
	if (fd >= 0)
		close(fd);
	__atomic_store_n(&stage, 10, __ATOMIC_RELEASE);
	pthread_join(a, NULL);
	pthread_join(b, NULL);
	CHECK(results[1] == 0, "thread A: %s%s%s", results[1] & 1 ? "ids wrong; " : "",
	      results[1] & 2 ? "could open the root-only file; " : "", results[1] & 4 ? "could become root" : "");
	CHECK(results[2] == 0, "thread B: %s%s%s", results[2] & 1 ? "ids wrong; " : "",
	      results[2] & 2 ? "could not open the root-only file; " : "",
	      results[2] & 4 ? "could not switch back to root" : "");
	zdtm_finish();
}
