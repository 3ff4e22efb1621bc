/*
 * zt_threads_many: 150 threads, each blocked in its own way when
 * checkpointed (by index mod 5: pthread_cond_wait on a shared condition;
 * read on its own pipe; a futex wait on its own word; a nanosleep poll of
 * a flag; sigwaitinfo for a SIGUSR1 sent to it), each with its name ("zm%03d"), a __thread value
 * and a 2 KiB stack pattern of its own. After go the main thread wakes
 * each in its way (pthread_kill for the sigwait ones); each thread checks
 * its tid, name, TLS and stack and exits with its verdict; all are joined
 * within 10 s and all report success.
 * Modelled on zdtm's pthread00 and thread-bomb (many threads at once).
 */
#include "zdtm.h"
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>

#define N 150

struct th {
	pthread_t pt;
	pid_t tid;
	int pipe[2];
	int futex;
	volatile int up;
	int ok;
	char why[128];
};

static struct th t[N];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int released;
static volatile int flag;
static __thread long tls_val;

static void *body(void *arg)
{
	struct th *me = arg;
	int i = me - t, kind = i % 5;
	unsigned char stackpat[2048];
	char name[16], got[16];
	sigset_t set;
	siginfo_t si;

	me->tid = zdtm_gettid();
	tls_val = 0x7000 + i;
	zdtm_fill(stackpat, sizeof(stackpat), 500 + i);
	snprintf(name, sizeof(name), "zm%03d", i);
	prctl(PR_SET_NAME, name);
	me->up = 1;
	switch (kind) {
	case 0:
		pthread_mutex_lock(&mu);
		while (!released)
			pthread_cond_wait(&cv, &mu);
		pthread_mutex_unlock(&mu);
		break;
	case 1: {
		char c;
		while (read(me->pipe[0], &c, 1) < 0 && errno == EINTR)
			;
		break;
	}
	case 2:
		while (!__atomic_load_n(&me->futex, __ATOMIC_ACQUIRE))
			syscall(SYS_futex, &me->futex, FUTEX_WAIT_PRIVATE, 0, NULL, NULL, 0);
		break;
	case 3:
		while (!flag)
			zdtm_sleep_ms(3);
		break;
	case 4:
		sigemptyset(&set);
		sigaddset(&set, SIGUSR1);
		while (sigwaitinfo(&set, &si) != SIGUSR1)
			;
		break;
	}
	me->ok = 1;
	if (zdtm_gettid() != me->tid) {
		me->ok = 0;
		snprintf(me->why, sizeof(me->why), "tid %d, want %d", zdtm_gettid(), me->tid);
	}
	prctl(PR_GET_NAME, got);
	if (strcmp(got, name)) {
		me->ok = 0;
		snprintf(me->why, sizeof(me->why), "name %s, want %s", got, name);
	}
	if (tls_val != 0x7000 + i) {
		me->ok = 0;
		snprintf(me->why, sizeof(me->why), "tls %lx", tls_val);
	}
	if (zdtm_check(stackpat, sizeof(stackpat), 500 + i) >= 0) {
		me->ok = 0;
		snprintf(me->why, sizeof(me->why), "stack pattern");
	}
	return NULL;
}

int main(void)
{
	pthread_attr_t at;
	sigset_t set;
	int i, up;
	int64_t t0;

	zdtm_init();
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	pthread_attr_init(&at);
	pthread_attr_setstacksize(&at, 64 * 1024);
	for (i = 0; i < N; i++) {
		if (i % 5 == 1 && pipe(t[i].pipe))
			zdtm_die("pipe");
		if (pthread_create(&t[i].pt, &at, body, &t[i]))
			zdtm_die("pthread_create %d", i);
	}
	t0 = zdtm_mono_ns();
	do {
		for (up = 0, i = 0; i < N; i++)
			up += t[i].up;
		zdtm_sleep_ms(5);
	} while (up < N && zdtm_mono_ns() - t0 < 10000000000LL);
	if (up < N)
		zdtm_die("only %d threads up", up);
	zdtm_sleep_ms(100);

	zdtm_ready();
	zdtm_wait_go();

	pthread_mutex_lock(&mu);
	released = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	flag = 1;
	for (i = 0; i < N; i++) {
		if (i % 5 == 1 && write(t[i].pipe[1], "g", 1) != 1)
			fail("write pipe %d", i);
		if (i % 5 == 2) {
			__atomic_store_n(&t[i].futex, 1, __ATOMIC_RELEASE);
			syscall(SYS_futex, &t[i].futex, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
		}
		if (i % 5 == 4)
			pthread_kill(t[i].pt, SIGUSR1);
	}
	for (i = 0; i < N; i++) {
		struct timespec dl;
		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 10;
		if (pthread_timedjoin_np(t[i].pt, NULL, &dl)) {
			fail("thread %d (tid %d, kind %d) did not finish", i, t[i].tid, i % 5);
			continue;
		}
		CHECK(t[i].ok, "thread %d: %s", i, t[i].why);
	}
	zdtm_finish();
}
