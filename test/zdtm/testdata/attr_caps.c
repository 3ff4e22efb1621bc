/*
 * attr_caps: capability sets of a root process that changed them. It drops
 * CAP_SYS_BOOT and CAP_MKNOD from the bounding set, keeps CAP_NET_RAW,
 * CAP_CHOWN and CAP_KILL inheritable, raises CAP_NET_RAW ambient, and
 * drops CAP_SYS_TIME and CAP_SETPCAP from the effective and CAP_SYS_TIME
 * from the permitted set (keeping them out of the way of the harness: it
 * stays root). After restore capget, PR_CAPBSET_READ and PR_CAP_AMBIENT
 * give the same sets, and the kernel enforces them: settimeofday fails
 * with EPERM (CAP_SYS_TIME is gone). Credentials are per thread: a second
 * thread drops CAP_NET_ADMIN from its own effective set only, and keeps
 * its sets after restore while the main thread keeps its own.
 */
#include "zdtm.h"
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/time.h>
#include <pthread.h>

#define BIT(c) (1ULL << (c))

static int capget2(uint64_t *eff, uint64_t *prm, uint64_t *inh)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return -1;
	*eff = d[0].effective | (uint64_t)d[1].effective << 32;
	*prm = d[0].permitted | (uint64_t)d[1].permitted << 32;
	*inh = d[0].inheritable | (uint64_t)d[1].inheritable << 32;
	return 0;
}

static int capset2(uint64_t eff, uint64_t prm, uint64_t inh)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2] = {
		{ (uint32_t)eff, (uint32_t)prm, (uint32_t)inh },
		{ (uint32_t)(eff >> 32), (uint32_t)(prm >> 32), (uint32_t)(inh >> 32) },
	};
	return syscall(SYS_capset, &h, d);
}

static uint64_t bounding(void)
{
	uint64_t b = 0;
	int c;

	for (c = 0; c < 64; c++)
		if (prctl(PR_CAPBSET_READ, c, 0, 0, 0) == 1)
			b |= BIT(c);
	return b;
}

static uint64_t ambient(void)
{
	uint64_t a = 0;
	int c;

	for (c = 0; c < 64; c++)
		if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, c, 0, 0) == 1)
			a |= BIT(c);
	return a;
}

static volatile int thread_ready, thread_go, thread_result = -1;
static uint64_t te0, tp0, ti0;

static void *thread_main(void *arg)
{
	uint64_t e, p, i;

	(void)arg;
	if (capget2(&e, &p, &i) || capset2(e & ~BIT(CAP_NET_ADMIN), p, i) || capget2(&te0, &tp0, &ti0)) {
		thread_result = 2;
		return NULL;
	}
	__atomic_store_n(&thread_ready, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&thread_go, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(1);
	if (capget2(&e, &p, &i))
		thread_result = 3;
	else
		thread_result = (e == te0 && p == tp0 && i == ti0) ? 0 : 1;
	return NULL;
}

int main(void)
{
	pthread_t th;
	uint64_t e0, p0, i0, b0, a0, e1, p1, i1, b1, a1;
	struct timeval tv;

	zdtm_init();
	if (capget2(&e0, &p0, &i0))
		zdtm_die("capget");
	if (!(e0 & BIT(CAP_SYS_TIME)))
		zdtm_die("not privileged enough for this test (no CAP_SYS_TIME)");
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0) || prctl(PR_CAPBSET_DROP, CAP_MKNOD, 0, 0, 0))
		zdtm_die("PR_CAPBSET_DROP");
	i0 = BIT(CAP_NET_RAW) | BIT(CAP_CHOWN) | BIT(CAP_KILL);
	if (capset2(e0, p0, i0))
		zdtm_die("capset inheritable");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_RAW, 0, 0))
		zdtm_die("PR_CAP_AMBIENT_RAISE");
	e0 &= ~(BIT(CAP_SYS_TIME) | BIT(CAP_SETPCAP));
	p0 &= ~BIT(CAP_SYS_TIME);
	if (capset2(e0, p0, i0))
		zdtm_die("capset");
	if (capget2(&e0, &p0, &i0))
		zdtm_die("capget");
	b0 = bounding();
	a0 = ambient();
	if (pthread_create(&th, NULL, thread_main, NULL))
		zdtm_die("pthread_create");
	while (!__atomic_load_n(&thread_ready, __ATOMIC_ACQUIRE) && thread_result < 0)
		zdtm_sleep_ms(1);
	if (thread_result >= 0)
		zdtm_die("thread capset");

	zdtm_ready();
	zdtm_wait_go();
	__atomic_store_n(&thread_go, 1, __ATOMIC_RELEASE);
	pthread_join(th, NULL);
	CHECK(thread_result == 0, "thread's own capability sets differ after restore (result %d; effective without CAP_NET_ADMIN %#llx)",
	      thread_result, (unsigned long long)te0);

	if (capget2(&e1, &p1, &i1))
		fail("capget: %s", strerror(errno));
	CHECK(e1 == e0, "effective %#llx, want %#llx", (unsigned long long)e1, (unsigned long long)e0);
	CHECK(p1 == p0, "permitted %#llx, want %#llx", (unsigned long long)p1, (unsigned long long)p0);
	CHECK(i1 == i0, "inheritable %#llx, want %#llx", (unsigned long long)i1, (unsigned long long)i0);
	b1 = bounding();
	a1 = ambient();
	CHECK(b1 == b0, "bounding %#llx, want %#llx", (unsigned long long)b1, (unsigned long long)b0);
	CHECK(a1 == a0, "ambient %#llx, want %#llx", (unsigned long long)a1, (unsigned long long)a0);
	gettimeofday(&tv, NULL);
	CHECK(settimeofday(&tv, NULL) == -1 && errno == EPERM, "settimeofday did not fail with EPERM: CAP_SYS_TIME came back");
	zdtm_finish();
}
