/*
 * thread_tls: four threads, each with its own __thread data and with
 * values live in general-purpose registers while it spins in an asm loop.
 * The loop keeps fixed relations between seven registers and the
 * iteration count, so a thread frozen at any instruction and resumed with
 * any register wrong breaks a relation. After restore each thread checks
 * its registers, its TLS (values and addresses), gettid, pthread_self and
 * the FS base.
 */
#include "zdtm.h"
#include <asm/prctl.h>
#include <pthread.h>

#define NTHREADS 4

static __thread uint64_t tls_arr[64];
static __thread int tls_init = 1234;

static volatile int go_flag;
static int nready;

struct tstate {
	int idx;
	pid_t tid;
	pthread_t self;
	void *tls_addr;
	unsigned long fs;
};

static struct tstate ts[NTHREADS + 1];

static uint64_t pow3(uint64_t n)
{
	uint64_t r = 1, b = 3;
	for (; n; n >>= 1, b *= b)
		if (n & 1)
			r *= b;
	return r;
}

static uint64_t tri(uint64_t n) /* n(n+1)/2 mod 2^64 */
{
	return n % 2 ? n * ((n + 1) / 2) : (n / 2) * (n + 1);
}

static uint64_t rol64(uint64_t v, unsigned s)
{
	s %= 64;
	return s ? (v << s) | (v >> (64 - s)) : v;
}

static void spin_and_check(uint64_t seed)
{
	const uint64_t a0 = seed, b0 = seed * 3, c0 = seed ^ 0x5555, d0 = seed + 7, e0 = seed | 1, f0 = seed * 11;
	uint64_t n = 0, a = a0, b = b0, c = c0, d = d0, e = e0, f = f0;

	__asm__ volatile(
		"1:\n\t"
		"add $1, %[n]\n\t"
		"add $3, %[a]\n\t"
		"lea 7(%[b]), %[b]\n\t"
		"rol $1, %[c]\n\t"
		"add %[n], %[d]\n\t"
		"imul $3, %[e], %[e]\n\t"
		"sub %[a], %[f]\n\t"
		"pause\n\t"
		"cmpl $0, (%[flag])\n\t"
		"je 1b\n\t"
		: [n] "+r"(n), [a] "+r"(a), [b] "+r"(b), [c] "+r"(c), [d] "+r"(d), [e] "+r"(e), [f] "+r"(f)
		: [flag] "r"(&go_flag)
		: "cc", "memory");

	CHECK(n > 0, "spin loop never ran");
	CHECK(a == a0 + 3 * n, "seed %lu: a = %#lx, want %#lx (n=%lu)", seed, a, a0 + 3 * n, n);
	CHECK(b == b0 + 7 * n, "seed %lu: b = %#lx, want %#lx", seed, b, b0 + 7 * n);
	CHECK(c == rol64(c0, n % 64), "seed %lu: c = %#lx, want %#lx", seed, c, rol64(c0, n % 64));
	CHECK(d == d0 + tri(n), "seed %lu: d = %#lx, want %#lx", seed, d, d0 + tri(n));
	CHECK(e == e0 * pow3(n), "seed %lu: e = %#lx, want %#lx", seed, e, e0 * pow3(n));
	CHECK(f == f0 - n * a0 - 3 * tri(n), "seed %lu: f = %#lx, want %#lx", seed, f, f0 - n * a0 - 3 * tri(n));
}

static void setup_tls(struct tstate *s)
{
	zdtm_fill(tls_arr, sizeof(tls_arr), 10000 + s->idx);
	tls_init += s->idx;
	s->tid = zdtm_gettid();
	s->self = pthread_self();
	s->tls_addr = tls_arr;
	if (syscall(SYS_arch_prctl, ARCH_GET_FS, &s->fs))
		zdtm_die("ARCH_GET_FS");
}

static void check_tls(struct tstate *s)
{
	unsigned long fs = 0;

	CHECK(zdtm_check(tls_arr, sizeof(tls_arr), 10000 + s->idx) < 0, "thread %d: TLS array differs", s->idx);
	CHECK(tls_init == 1234 + s->idx, "thread %d: tls_init %d, want %d", s->idx, tls_init, 1234 + s->idx);
	CHECK((void *)tls_arr == s->tls_addr, "thread %d: TLS moved from %p to %p", s->idx, s->tls_addr, (void *)tls_arr);
	CHECK(zdtm_gettid() == s->tid, "thread %d: tid %d, want %d", s->idx, zdtm_gettid(), s->tid);
	CHECK(pthread_equal(pthread_self(), s->self), "thread %d: pthread_self changed", s->idx);
	CHECK(syscall(SYS_arch_prctl, ARCH_GET_FS, &fs) == 0 && fs == s->fs, "thread %d: FS base %#lx, want %#lx",
	      s->idx, fs, s->fs);
}

static void *thread_main(void *arg)
{
	struct tstate *s = arg;

	setup_tls(s);
	__atomic_add_fetch(&nready, 1, __ATOMIC_RELEASE);
	spin_and_check(0x1000 * (s->idx + 1) + 17);
	check_tls(s);
	return NULL;
}

int main(void)
{
	pthread_t th[NTHREADS];
	int i;

	zdtm_init();
	ts[NTHREADS].idx = NTHREADS;
	setup_tls(&ts[NTHREADS]);
	for (i = 0; i < NTHREADS; i++) {
		ts[i].idx = i;
		if (pthread_create(&th[i], NULL, thread_main, &ts[i]))
			zdtm_die("pthread_create");
	}
	while (__atomic_load_n(&nready, __ATOMIC_ACQUIRE) < NTHREADS)
		zdtm_sleep_ms(1);

	zdtm_ready();
	zdtm_wait_go();

	go_flag = 1;
	for (i = 0; i < NTHREADS; i++)
		pthread_join(th[i], NULL);
	check_tls(&ts[NTHREADS]);
	zdtm_finish();
}
