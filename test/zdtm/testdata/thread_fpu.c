/*
 * thread_fpu: FPU/SSE/AVX/AVX-512 register state held across the
 * checkpoint by two threads.
 *   - the main thread loads every vector register (zmm0-31 and k0-7 with
 *     AVX-512, else ymm0-15, else xmm0-15), the x87 stack (8 values), a
 *     non-default MXCSR and x87 control word, then polls for the go file
 *     with raw stat/nanosleep syscalls without touching those registers;
 *   - a second thread loads other values and spins in user space.
 * Both store the registers back after go and compare with what they
 * loaded. The routines are in top-level asm, so the compiler cannot spill
 * anything in between.
 */
#include "zdtm.h"
#include <pthread.h>

/* Layout of the in/out buffers shared with the asm below. */
#define OFF_VEC 0      /* 32 x 64 bytes */
#define OFF_K 2048     /* 8 x 8 bytes */
#define OFF_X87 2112   /* 8 x 16 bytes (80-bit values) */
#define OFF_MXCSR 2240 /* 4 bytes */
#define OFF_FCW 2244   /* 2 bytes */
#define BUFSZ 4096     /* out also holds the caller's MXCSR/FCW (2248) and a stat buffer (2304) */

#define IRP8 "0,1,2,3,4,5,6,7"
#define IRP16 IRP8 ",8,9,10,11,12,13,14,15"
#define IRP32 IRP16 ",16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31"

#define LOAD_SSE ".irp i," IRP16 "\n movdqu \\i*64(%rbx), %xmm\\i\n .endr\n"
#define STORE_SSE ".irp i," IRP16 "\n movdqu %xmm\\i, \\i*64(%r12)\n .endr\n"
#define LOAD_AVX ".irp i," IRP16 "\n vmovdqu \\i*64(%rbx), %ymm\\i\n .endr\n"
#define STORE_AVX ".irp i," IRP16 "\n vmovdqu %ymm\\i, \\i*64(%r12)\n .endr\n vzeroupper\n"
#define LOAD_512 ".irp i," IRP32 "\n vmovdqu64 \\i*64(%rbx), %zmm\\i\n .endr\n" \
		 ".irp i," IRP8 "\n kmovq 2048+\\i*8(%rbx), %k\\i\n .endr\n"
#define STORE_512 ".irp i," IRP32 "\n vmovdqu64 %zmm\\i, \\i*64(%r12)\n .endr\n" \
		  ".irp i," IRP8 "\n kmovq %k\\i, 2048+\\i*8(%r12)\n .endr\n vzeroupper\n"

/* spin: r13 = volatile int *go, r14 = int *loaded */
#define WAIT_SPIN " movl $1, (%r14)\n" \
		  "1: pause\n cmpl $0, (%r13)\n je 1b\n"
/* sys: r13 = go file path, r14 = struct timespec *; only rax/rcx/r11 and
 * the argument registers change. */
#define WAIT_SYS "1: mov $262, %eax\n mov $-100, %rdi\n mov %r13, %rsi\n lea 2304(%r12), %rdx\n" \
		 " xor %r10d, %r10d\n syscall\n test %rax, %rax\n jz 2f\n" \
		 " mov $35, %eax\n mov %r14, %rdi\n xor %esi, %esi\n syscall\n jmp 1b\n2:\n"

#define HOLD_FN(name, load, wait, store) \
	".globl " #name "\n.type " #name ",@function\n" #name ":\n" \
	" push %rbx\n push %r12\n push %r13\n push %r14\n" \
	" mov %rdi, %rbx\n mov %rsi, %r12\n mov %rdx, %r13\n mov %rcx, %r14\n" \
	" stmxcsr 2248(%r12)\n fnstcw 2252(%r12)\n ldmxcsr 2240(%rbx)\n fldcw 2244(%rbx)\n" \
	load \
	".irp i,7,6,5,4,3,2,1,0\n fldt 2112+\\i*16(%rbx)\n .endr\n" \
	wait \
	store \
	".irp i," IRP8 "\n fstpt 2112+\\i*16(%r12)\n .endr\n" \
	" stmxcsr 2240(%r12)\n fnstcw 2244(%r12)\n ldmxcsr 2248(%r12)\n fldcw 2252(%r12)\n" \
	" pop %r14\n pop %r13\n pop %r12\n pop %rbx\n ret\n.size " #name ", .-" #name "\n"

__asm__(".text\n"
	HOLD_FN(hold_sse_spin, LOAD_SSE, WAIT_SPIN, STORE_SSE)
	HOLD_FN(hold_sse_sys, LOAD_SSE, WAIT_SYS, STORE_SSE)
	HOLD_FN(hold_avx_spin, LOAD_AVX, WAIT_SPIN, STORE_AVX)
	HOLD_FN(hold_avx_sys, LOAD_AVX, WAIT_SYS, STORE_AVX)
	HOLD_FN(hold_512_spin, LOAD_512, WAIT_SPIN, STORE_512)
	HOLD_FN(hold_512_sys, LOAD_512, WAIT_SYS, STORE_512));

typedef void hold_fn(const void *in, void *out, const void *a, const void *b);
hold_fn hold_sse_spin, hold_sse_sys, hold_avx_spin, hold_avx_sys, hold_512_spin, hold_512_sys;

enum { SSE, AVX, AVX512 };
static const char *level_name[] = { "sse", "avx", "avx512" };
static int level;
static volatile int go_flag;
static int loaded;

static unsigned char in_main[BUFSZ] __attribute__((aligned(64)));
static unsigned char out_main[BUFSZ] __attribute__((aligned(64)));
static unsigned char in_thr[BUFSZ] __attribute__((aligned(64)));
static unsigned char out_thr[BUFSZ] __attribute__((aligned(64)));

static void prepare(unsigned char *in, uint64_t seed, uint32_t mxcsr, uint16_t fcw)
{
	int i;

	zdtm_fill(in, OFF_X87, seed);
	for (i = 0; i < 8; i++) {
		long double v = (i + 1) * 1.1L + (long double)seed / 3.0L;
		v *= (i % 2) ? 1e300L : -1e-300L; /* wide exponents */
		memset(in + OFF_X87 + i * 16, 0, 16);
		memcpy(in + OFF_X87 + i * 16, &v, 10);
	}
	memcpy(in + OFF_MXCSR, &mxcsr, 4);
	memcpy(in + OFF_FCW, &fcw, 2);
}

static void compare(const char *who, const unsigned char *in, const unsigned char *out)
{
	int nvec = level == AVX512 ? 32 : 16;
	int width = level == SSE ? 16 : level == AVX ? 32 : 64;
	int i;

	for (i = 0; i < nvec; i++)
		CHECK(memcmp(in + OFF_VEC + i * 64, out + OFF_VEC + i * 64, width) == 0,
		      "%s: vector register %d differs (%s)", who, i, level_name[level]);
	if (level == AVX512)
		for (i = 0; i < 8; i++)
			CHECK(memcmp(in + OFF_K + i * 8, out + OFF_K + i * 8, 8) == 0, "%s: k%d differs", who, i);
	for (i = 0; i < 8; i++)
		CHECK(memcmp(in + OFF_X87 + i * 16, out + OFF_X87 + i * 16, 10) == 0, "%s: st(%d) differs", who, i);
	CHECK(memcmp(in + OFF_MXCSR, out + OFF_MXCSR, 4) == 0, "%s: MXCSR %#x, want %#x", who,
	      *(uint32_t *)(out + OFF_MXCSR), *(uint32_t *)(in + OFF_MXCSR));
	CHECK(memcmp(in + OFF_FCW, out + OFF_FCW, 2) == 0, "%s: x87 control word %#x, want %#x", who,
	      *(uint16_t *)(out + OFF_FCW), *(uint16_t *)(in + OFF_FCW));
}

static void *spinner(void *arg)
{
	hold_fn *fn = level == AVX512 ? hold_512_spin : level == AVX ? hold_avx_spin : hold_sse_spin;

	(void)arg;
	fn(in_thr, out_thr, (const void *)&go_flag, &loaded);
	return NULL;
}

int main(void)
{
	struct timespec ts = { 0, 5000000 };
	volatile double x = 1.0;
	pthread_t th;
	hold_fn *fn;

	zdtm_init();
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw"))
		level = AVX512;
	else if (__builtin_cpu_supports("avx"))
		level = AVX;
	zdtm_log("vector level: %s", level_name[level]);
	fn = level == AVX512 ? hold_512_sys : level == AVX ? hold_avx_sys : hold_sse_sys;

	prepare(in_main, 0x1111, 0xffc0, 0x067f);
	prepare(in_thr, 0x2222, 0x3f80, 0x0e7f);
	if (pthread_create(&th, NULL, spinner, NULL))
		zdtm_die("pthread_create");
	while (!__atomic_load_n(&loaded, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(1);

	zdtm_ready();
	fn(in_main, out_main, getenv("ZDTM_GO"), &ts); /* returns at go */

	go_flag = 1;
	pthread_join(th, NULL);
	compare("main", in_main, out_main);
	compare("thread", in_thr, out_thr);
	x = x / 3.0;
	CHECK(x > 0.333 && x < 0.334, "double math broken: %f", x);
	zdtm_finish();
}
