/*
 * thread_sigpending: signals pending on one thread only. Thread T blocks
 * SIGUSR1 and SIGRTMIN+3; it gets SIGUSR1 by tgkill and two queued
 * SIGRTMIN+3 with different values by rt_tgsigqueueinfo. Thread U blocks
 * the same signals and has nothing pending. After restore: T's pending set
 * and SigPnd are the same, U sees none of it, and when T unblocks, the
 * handlers run in T with the queued values in order and the original
 * si_code/si_pid; U unblocking afterwards gets nothing.
 */
#include "zdtm.h"
#include <pthread.h>
#include <signal.h>

#define RT (SIGRTMIN + 3)

static pid_t tid_t, tid_u;
static volatile int usr1_count, rt_count, rt_vals[4], rt_codes[4], rt_pids[4];
static volatile pid_t usr1_tid, rt_tid;
static volatile int u_handled;
static char sigpnd_t[32];
static int stage; /* 1: both set up, 2: T done */

static void on_usr1(int sig)
{
	(void)sig;
	if (zdtm_gettid() == tid_u)
		u_handled++;
	usr1_tid = zdtm_gettid();
	usr1_count++;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (zdtm_gettid() == tid_u)
		u_handled++;
	if (rt_count < 4) {
		rt_vals[rt_count] = si->si_value.sival_int;
		rt_codes[rt_count] = si->si_code;
		rt_pids[rt_count] = si->si_pid;
	}
	rt_tid = zdtm_gettid();
	rt_count++;
}

static void block_both(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, RT);
	pthread_sigmask(SIG_BLOCK, &s, NULL);
}

static void unblock_both(void)
{
	sigset_t s;

	sigemptyset(&s);
	sigaddset(&s, SIGUSR1);
	sigaddset(&s, RT);
	pthread_sigmask(SIG_UNBLOCK, &s, NULL);
}

static void wait_stage(int n)
{
	while (__atomic_load_n(&stage, __ATOMIC_ACQUIRE) < n)
		zdtm_sleep_ms(1);
}

static void *thread_t(void *arg)
{
	char path[64], pnd[32];
	sigset_t p;

	(void)arg;
	block_both();
	tid_t = zdtm_gettid();
	wait_stage(1);
	zdtm_wait_go();
	sigpending(&p);
	CHECK(sigismember(&p, SIGUSR1) && sigismember(&p, RT), "T: pending SIGUSR1 %d, SIGRTMIN+3 %d, want both",
	      sigismember(&p, SIGUSR1), sigismember(&p, RT));
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid_t);
	if (zdtm_status_field(path, "SigPnd", pnd, sizeof(pnd)) == 0)
		CHECK(strcmp(pnd, sigpnd_t) == 0, "T: SigPnd %s, want %s", pnd, sigpnd_t);
	else
		fail("T: no SigPnd in %s", path);
	unblock_both(); /* handlers run here, in T */
	CHECK(usr1_count == 1 && usr1_tid == tid_t, "SIGUSR1: %d deliveries, last in tid %d, want 1 in %d",
	      usr1_count, usr1_tid, tid_t);
	CHECK(rt_count == 2 && rt_tid == tid_t, "SIGRTMIN+3: %d deliveries, last in tid %d, want 2 in %d", rt_count,
	      rt_tid, tid_t);
	if (rt_count == 2) {
		CHECK(rt_vals[0] == 0xa1 && rt_vals[1] == 0xa2, "queued values %#x %#x, want 0xa1 0xa2", rt_vals[0],
		      rt_vals[1]);
		CHECK(rt_codes[0] == SI_QUEUE && rt_codes[1] == SI_QUEUE, "si_code %d %d, want SI_QUEUE", rt_codes[0],
		      rt_codes[1]);
		CHECK(rt_pids[0] == getpid(), "si_pid %d, want %d", rt_pids[0], getpid());
	}
	__atomic_store_n(&stage, 2, __ATOMIC_RELEASE);
	return NULL;
}

static void *thread_u(void *arg)
{
	sigset_t p;

	(void)arg;
	block_both();
	tid_u = zdtm_gettid();
	wait_stage(1);
	zdtm_wait_go();
	sigpending(&p);
	CHECK(!sigismember(&p, SIGUSR1) && !sigismember(&p, RT), "U: sees T's signals pending (SIGUSR1 %d, RT %d)",
	      sigismember(&p, SIGUSR1), sigismember(&p, RT));
	wait_stage(2);
	unblock_both();
	zdtm_sleep_ms(10);
	CHECK(u_handled == 0, "U handled %d signals meant for T", u_handled);
	return NULL;
}

static int queue_rt(pid_t tid, int val)
{
	siginfo_t si;

	memset(&si, 0, sizeof(si));
	si.si_signo = RT;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_uid = getuid();
	si.si_value.sival_int = val;
	return syscall(SYS_rt_tgsigqueueinfo, getpid(), tid, RT, &si);
}

int main(void)
{
	pthread_t th_t, th_u;
	struct sigaction sa;
	char path[64], shd[32];

	zdtm_init();
	block_both(); /* main never takes them either */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO;
	sigaction(RT, &sa, NULL);
	if (pthread_create(&th_t, NULL, thread_t, NULL) || pthread_create(&th_u, NULL, thread_u, NULL))
		zdtm_die("pthread_create");
	while (!__atomic_load_n(&tid_t, __ATOMIC_ACQUIRE) || !__atomic_load_n(&tid_u, __ATOMIC_ACQUIRE))
		zdtm_sleep_ms(1);
	if (syscall(SYS_tgkill, getpid(), tid_t, SIGUSR1) || queue_rt(tid_t, 0xa1) || queue_rt(tid_t, 0xa2))
		zdtm_die("send to T");
	snprintf(path, sizeof(path), "/proc/self/task/%d/status", tid_t);
	if (zdtm_status_field(path, "SigPnd", sigpnd_t, sizeof(sigpnd_t)))
		zdtm_die("no SigPnd");
	__atomic_store_n(&stage, 1, __ATOMIC_RELEASE);

	zdtm_ready();
	zdtm_wait_go();

	if (zdtm_status_field("/proc/self/status", "ShdPnd", shd, sizeof(shd)) == 0)
		CHECK(strcmp(shd, "0000000000000000") == 0, "process-wide pending %s, want none", shd);
	pthread_join(th_t, NULL);
	pthread_join(th_u, NULL);
	zdtm_finish();
}
