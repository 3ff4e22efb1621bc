/*
 * sig_altstack: alternate signal stacks. The main thread has a 64 KiB
 * sigaltstack; a second thread has its own, with SS_AUTODISARM. After
 * restore each thread's sigaltstack() reads back the same, and an
 * SA_ONSTACK handler raised in each thread runs on that thread's stack
 * (the address of a local is inside it, and SS_ONSTACK is reported).
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

#define STK (64 * 1024)
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)
#endif

static char stk_main[STK] __attribute__((aligned(16)));
static char stk_thr[STK] __attribute__((aligned(16)));
static stack_t ss_main, ss_thr;
static volatile uintptr_t local_addr;
static volatile int onstack_flag, handled;
static int nready;

static void on_usr1(int sig)
{
	volatile char here;
	stack_t cur;

	(void)sig;
	local_addr = (uintptr_t)&here;
	onstack_flag = sigaltstack(NULL, &cur) == 0 ? cur.ss_flags : -1;
	handled++;
}

static void check(const char *who, const stack_t *want, const char *base, int autodisarm)
{
	stack_t cur;

	if (sigaltstack(NULL, &cur)) {
		fail("%s: sigaltstack: %s", who, strerror(errno));
		return;
	}
	CHECK(cur.ss_sp == want->ss_sp && cur.ss_size == want->ss_size && cur.ss_flags == want->ss_flags,
	      "%s: sigaltstack %p/%zu/%#x, want %p/%zu/%#x", who, cur.ss_sp, cur.ss_size, cur.ss_flags, want->ss_sp,
	      want->ss_size, want->ss_flags);
	handled = 0;
	syscall(SYS_tgkill, getpid(), zdtm_gettid(), SIGUSR1);
	CHECK(handled == 1, "%s: handler ran %d times", who, handled);
	CHECK(local_addr >= (uintptr_t)base && local_addr < (uintptr_t)base + STK,
	      "%s: handler ran at %#lx, not on the alternate stack %p..+%d", who, (unsigned long)local_addr,
	      (void *)base, STK);
	/* with SS_AUTODISARM the stack is disarmed while on it */
	if (autodisarm)
		CHECK(onstack_flag == SS_DISABLE, "%s: ss_flags in handler %#x, want SS_DISABLE (autodisarm)", who,
		      onstack_flag);
	else
		CHECK(onstack_flag == SS_ONSTACK, "%s: ss_flags in handler %#x, want SS_ONSTACK", who, onstack_flag);
}

static void *thread_main(void *arg)
{
	stack_t ss = { .ss_sp = stk_thr, .ss_size = STK, .ss_flags = SS_AUTODISARM };

	(void)arg;
	if (sigaltstack(&ss, NULL))
		zdtm_die("sigaltstack (thread)");
	sigaltstack(NULL, &ss_thr);
	__atomic_store_n(&nready, 1, __ATOMIC_RELEASE);
	zdtm_wait_go();
	check("thread", &ss_thr, stk_thr, 1);
	return NULL;
}

int main(void)
{
	stack_t ss = { .ss_sp = stk_main, .ss_size = STK, .ss_flags = 0 };
	struct sigaction sa;
	pthread_t th;

	zdtm_init();
	if (sigaltstack(&ss, NULL))
		zdtm_die("sigaltstack");
	sigaltstack(NULL, &ss_main);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sa.sa_flags = SA_ONSTACK;
	sigaction(SIGUSR1, &sa, NULL);
	if (pthread_create(&th, NULL, thread_main, NULL))
		zdtm_die("pthread_create");
	while (!__atomic_load_n(&nready, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(1);

	zdtm_ready();
	zdtm_wait_go();

	pthread_join(th, NULL); /* one handler at a time: they share the globals */
	check("main", &ss_main, stk_main, 0);
	zdtm_finish();
}
