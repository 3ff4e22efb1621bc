/*
 * thread_robust: robust futex lists. Every thread's set_robust_list head
 * is kept (get_robust_list), and the lists still work: two threads hold a
 * robust mutex each (one plain, one priority-inheriting) and exit after go
 * without unlocking; the kernel walks their robust lists at exit, so the
 * main thread's lock returns EOWNERDEAD. Without the lists the lock would
 * never come (a timed lock turns that into a failure).
 */
#include "zdtm.h"
#include <pthread.h>

#define NTHREADS 2

struct robust_state {
	int idx;
	pthread_mutex_t *mu;
	void *head;
	size_t len;
	pid_t tid;
};

static pthread_mutex_t mu_plain, mu_pi;
static struct robust_state rs[NTHREADS + 1];
static int nready;

static void get_robust(void **head, size_t *len)
{
	if (syscall(SYS_get_robust_list, 0, head, len))
		zdtm_die("get_robust_list");
}

static void check_robust(struct robust_state *s)
{
	void *head;
	size_t len;

	if (syscall(SYS_get_robust_list, 0, &head, &len)) {
		fail("thread %d: get_robust_list: %s", s->idx, strerror(errno));
		return;
	}
	CHECK(head == s->head && len == s->len, "thread %d: robust list %p/%zu, want %p/%zu", s->idx, head, len,
	      s->head, s->len);
	/* and the other way round: another thread's list, by tid */
	if (syscall(SYS_get_robust_list, s->tid, &head, &len) == 0)
		CHECK(head == s->head, "thread %d: get_robust_list(tid) %p, want %p", s->idx, head, s->head);
}

static void *holder(void *arg)
{
	struct robust_state *s = arg;

	s->tid = zdtm_gettid();
	get_robust(&s->head, &s->len);
	if (pthread_mutex_lock(s->mu))
		zdtm_die("lock robust mutex");
	__atomic_add_fetch(&nready, 1, __ATOMIC_RELEASE);
	zdtm_wait_go();
	check_robust(s);
	return NULL; /* exits holding the mutex */
}

static void init_mutex(pthread_mutex_t *mu, int pi)
{
	pthread_mutexattr_t a;

	pthread_mutexattr_init(&a);
	pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
	if (pi)
		pthread_mutexattr_setprotocol(&a, PTHREAD_PRIO_INHERIT);
	if (pthread_mutex_init(mu, &a))
		zdtm_die("pthread_mutex_init");
}

static void take_dead(const char *name, pthread_mutex_t *mu)
{
	struct timespec dl;
	int r;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += 5;
	r = pthread_mutex_timedlock(mu, &dl);
	if (r == EOWNERDEAD) {
		pthread_mutex_consistent(mu);
		pthread_mutex_unlock(mu);
		return;
	}
	fail("%s robust mutex of an exited owner: lock returned %d (%s), want EOWNERDEAD", name, r, strerror(r));
	if (r == 0)
		pthread_mutex_unlock(mu);
}

int main(void)
{
	pthread_t th[NTHREADS];
	int i;

	zdtm_init();
	init_mutex(&mu_plain, 0);
	init_mutex(&mu_pi, 1);
	rs[0].mu = &mu_plain;
	rs[1].mu = &mu_pi;
	for (i = 0; i < NTHREADS; i++) {
		rs[i].idx = i;
		if (pthread_create(&th[i], NULL, holder, &rs[i]))
			zdtm_die("pthread_create");
	}
	rs[NTHREADS].idx = NTHREADS;
	rs[NTHREADS].tid = zdtm_gettid();
	get_robust(&rs[NTHREADS].head, &rs[NTHREADS].len);
	while (__atomic_load_n(&nready, __ATOMIC_ACQUIRE) < NTHREADS)
		zdtm_sleep_ms(1);

	zdtm_ready();
	zdtm_wait_go();

	check_robust(&rs[NTHREADS]);
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	take_dead("plain", &mu_plain);
	take_dead("priority-inheriting", &mu_pi);
	zdtm_finish();
}
