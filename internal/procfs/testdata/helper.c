// helper is the target process for the procfs tests: it sets up mappings,
// file descriptors, timers, threads and children with known properties,
// reports them as one line of key=value pairs on fd 3 (the readiness pipe),
// closes it (EOF tells the test that set-up is over) and then waits to be
// killed.
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096

static pthread_barrier_t barrier;
static pid_t tids[2];
static pid_t thread_kid;

static void die(const char *what) {
	perror(what);
	exit(1);
}

static pid_t spawn_kid(void) {
	pid_t k = fork();
	if (k < 0)
		die("fork");
	if (k == 0) {
		close(3); // the test reads the readiness pipe to EOF
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		for (;;)
			pause();
	}
	return k;
}

static void *thread_main(void *arg) {
	int i = (int)(intptr_t)arg;
	static const char *names[2] = {"wo) (rk", "a\\b\nc"};
	if (prctl(PR_SET_NAME, names[i]) != 0)
		die("PR_SET_NAME");
	tids[i] = (pid_t)syscall(SYS_gettid);
	if (i == 0)
		thread_kid = spawn_kid(); // a child of this thread, not of the leader
	pthread_barrier_wait(&barrier);
	for (;;)
		pause();
	return NULL;
}

static void on_usr2(int sig) { (void)sig; }

int main(int argc, char **argv) {
	if (argc != 2) {
		fprintf(stderr, "usage: helper DIR\n");
		return 2;
	}
	const char *dir = argv[1];

	umask(027);
	if (personality(ADDR_NO_RANDOMIZE) < 0)
		die("personality");
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("getrlimit");
	rl.rlim_cur = 123;
	if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
		die("setrlimit");
	signal(SIGPIPE, SIG_IGN);
	struct sigaction sa = {0};
	sa.sa_handler = on_usr2;
	if (sigaction(SIGUSR2, &sa, NULL) != 0)
		die("sigaction");
	sigset_t blk;
	sigemptyset(&blk);
	sigaddset(&blk, SIGUSR1);
	sigaddset(&blk, SIGRTMIN + 2);
	if (sigprocmask(SIG_BLOCK, &blk, NULL) != 0)
		die("sigprocmask");

	// A shared mapping of an unlinked file whose name has spaces and ") (".
	char path[4096];
	snprintf(path, sizeof path, "%s/a file) (x", dir);
	int f = open(path, O_RDWR | O_CREAT, 0600);
	if (f < 0 || ftruncate(f, 3 * PAGE) != 0)
		die("file");
	char *fm = mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, f, 0);
	if (fm == MAP_FAILED)
		die("mmap file");
	fm[PAGE] = 1;
	unlink(path);
	close(f);

	// Private anonymous memory: pages 0 and 2 touched, 1 and 3 not.
	char *am = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (am == MAP_FAILED)
		die("mmap anon");
	am[0] = 1;
	am[2 * PAGE] = 1;

	char *sm = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sm == MAP_FAILED)
		die("mmap shared anon");
	sm[0] = 1;

	// Read+exec, not dumped, not inherited: VmFlags "dd" and "dc".
	char *xm = mmap(NULL, 2 * PAGE, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (xm == MAP_FAILED || madvise(xm, 2 * PAGE, MADV_DONTDUMP) != 0 || madvise(xm, 2 * PAGE, MADV_DONTFORK) != 0)
		die("mmap/madvise");

	int efd = eventfd(42, EFD_SEMAPHORE | EFD_NONBLOCK);
	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	struct itimerspec its = {{3, 500}, {100, 7}};
	if (efd < 0 || tfd < 0 || timerfd_settime(tfd, 0, &its, NULL) != 0)
		die("eventfd/timerfd");
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGUSR1);
	sigaddset(&ss, SIGRTMIN + 2);
	int sfd = signalfd(-1, &ss, SFD_NONBLOCK);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (sfd < 0 || ep < 0)
		die("signalfd/epoll");
	struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = 0x1122334455667788ULL};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, efd, &ev) != 0)
		die("epoll_ctl");
	ev.events = EPOLLOUT;
	ev.data.u64 = 7;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &ev) != 0)
		die("epoll_ctl");
	int in = inotify_init1(IN_NONBLOCK);
	int wd = inotify_add_watch(in, dir, IN_CREATE | IN_DELETE);
	if (in < 0 || wd < 0)
		die("inotify");
	int p[2];
	if (pipe2(p, O_NONBLOCK) != 0)
		die("pipe2");

	pthread_barrier_init(&barrier, NULL, 3);
	pthread_t th[2];
	for (int i = 0; i < 2; i++)
		if (pthread_create(&th[i], NULL, thread_main, (void *)(intptr_t)i) != 0)
			die("pthread_create");
	pthread_barrier_wait(&barrier);
	pid_t kid = spawn_kid();

	// POSIX timers, made with the raw syscall so the ids are the kernel's.
	int t[3];
	struct sigevent sev = {0};
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGUSR2;
	sev.sigev_value.sival_ptr = (void *)0xdeadbeef;
	if (syscall(SYS_timer_create, CLOCK_REALTIME, &sev, &t[0]) != 0)
		die("timer_create");
	sev.sigev_notify = SIGEV_THREAD_ID;
	sev._sigev_un._tid = tids[1];
	sev.sigev_signo = SIGRTMIN + 1;
	sev.sigev_value.sival_ptr = (void *)7;
	if (syscall(SYS_timer_create, CLOCK_MONOTONIC, &sev, &t[1]) != 0)
		die("timer_create");
	sev.sigev_notify = SIGEV_NONE;
	if (syscall(SYS_timer_create, CLOCK_BOOTTIME, &sev, &t[2]) != 0)
		die("timer_create");

	if (prctl(PR_SET_NAME, "m) (a:n") != 0)
		die("PR_SET_NAME");

	dprintf(3,
		"file=%lx anon=%lx shanon=%lx xm=%lx efd=%d tfd=%d sfd=%d ep=%d in=%d wd=%d pr=%d pw=%d "
		"t0=%d t1=%d t2=%d tid0=%d tid1=%d kid=%d threadkid=%d\n",
		(unsigned long)fm, (unsigned long)am, (unsigned long)sm, (unsigned long)xm, efd, tfd, sfd, ep,
		in, wd, p[0], p[1], t[0], t[1], t[2], tids[0], tids[1], kid, thread_kid);
	close(3);
	for (;;)
		pause();
}
