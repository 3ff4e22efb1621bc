/*
 * churn: a process that keeps writing its own memory and can check it.
 *
 *   churn MIB RATE_KIB HOT_PAGES [FILE]
 *
 * A writer thread rewrites pages of a MIB-sized anonymous region: page i
 * always holds pattern(i, gen[i]), gen[] being in memory too. With RATE_KIB
 * > 0 it rewrites random pages at that many KiB/s; with 0 it rewrites the
 * first HOT_PAGES pages over and over, as fast as it can. On SIGUSR1 the
 * writer checks every page (between two writes, so always consistently)
 * and prints "verify ok PAGES pid PID" or "verify bad ..." on stdout.
 *
 * With CHURN_FORK=1 in the environment it forks first: the child churns a
 * copy of the same memory the same way (and dies with its parent), so
 * the two make a process tree.
 *
 * With FILE (a path to create), it also sets up regions that the main
 * thread reshapes on command ("s N" on stdin, answered "ok N"): written,
 * discarded (MADV_DONTNEED), zeroed, replaced by a fresh mapping, moved
 * and grown (mremap), made read-only, unmapped, a private mapping of FILE
 * partly written and partly discarded again, and brk grown and shrunk.
 * Each page's expected content is recorded (tag: 0 for zeros) and checked
 * on SIGUSR1 as well. "q" exits.
 *
 * No stdio or malloc after start-up: the heap region belongs to the test.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define PG 4096UL
#define MAXR 24
#define MAXP 512

struct region {
	unsigned char *addr;
	size_t pages;
	int live, file;
	uint32_t tag[MAXP];
};

static struct region reg[MAXR];
static int nreg;
static unsigned char *mem;
static uint32_t *gen;
static size_t npages, hot;
static long rate; /* KiB/s */
static volatile sig_atomic_t want_verify;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *s)
{
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t w = write(1, s, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			_exit(3);
		s += w;
		n -= w;
	}
}

static void die(const char *what)
{
	char b[160];
	snprintf(b, sizeof(b), "error %s: %s\n", what, strerror(errno));
	say(b);
	_exit(2);
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

static void fill(unsigned char *p, uint64_t seed)
{
	uint64_t *w = (uint64_t *)p, v = mix(seed);
	size_t i;

	for (i = 0; i < PG / 8; i++)
		w[i] = v + i;
}

static int same(const unsigned char *p, uint64_t seed)
{
	const uint64_t *w = (const uint64_t *)p;
	uint64_t v = mix(seed);
	size_t i;

	for (i = 0; i < PG / 8; i++)
		if (w[i] != v + i)
			return 0;
	return 1;
}

static int zero(const unsigned char *p)
{
	const uint64_t *w = (const uint64_t *)p;
	size_t i;

	for (i = 0; i < PG / 8; i++)
		if (w[i])
			return 0;
	return 1;
}

static uint64_t mseed(size_t i, uint32_t g) { return ((uint64_t)i << 32) | g; }
static uint64_t rseed(int r, size_t p, uint32_t t) { return ((uint64_t)(r + 1) << 48) ^ ((uint64_t)p << 20) ^ t; }

static void write_page(size_t i)
{
	gen[i]++;
	fill(mem + i * PG, mseed(i, gen[i]));
}

static void verify(void)
{
	char b[200];
	size_t i, p, n = 0;
	int r;

	pthread_mutex_lock(&lock);
	for (i = 0; i < npages; i++, n++)
		if (!same(mem + i * PG, mseed(i, gen[i]))) {
			snprintf(b, sizeof(b), "verify bad main page %zu gen %u\n", i, gen[i]);
			goto bad;
		}
	for (r = 0; r < nreg; r++) {
		if (!reg[r].live)
			continue;
		for (p = 0; p < reg[r].pages; p++, n++) {
			unsigned char *a = reg[r].addr + p * PG;
			uint32_t t = reg[r].tag[p];
			if (t ? !same(a, rseed(r, p, t)) : !zero(a)) {
				snprintf(b, sizeof(b), "verify bad region %d page %zu tag %u\n", r, p, t);
				goto bad;
			}
		}
	}
	pthread_mutex_unlock(&lock);
	snprintf(b, sizeof(b), "verify ok %zu pid %d\n", n, (int)getpid());
	say(b);
	return;
bad:
	pthread_mutex_unlock(&lock);
	say(b);
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void *writer(void *arg)
{
	uint64_t k = 0;
	double t0 = now(), done = 0;
	struct timespec ms = {0, 1000000};

	(void)arg;
	for (;;) {
		if (want_verify) {
			want_verify = 0;
			verify();
		}
		if (rate == 0) {
			write_page(k++ % hot);
			continue;
		}
		double due = (now() - t0) * rate / 4.0; /* pages */
		if (due - done > rate / 4.0 / 10)   /* after a stop: no burst */
			done = due - 1;
		while (done < due) {
			write_page(mix(k++) % npages);
			done++;
		}
		nanosleep(&ms, NULL);
	}
	return NULL;
}

static void on_usr1(int sig)
{
	(void)sig;
	want_verify = 1;
}

/* Region operations; each records the expected content. */

static int anon_region(size_t pages)
{
	int r = nreg++;
	size_t p;

	reg[r].addr = mmap(NULL, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (reg[r].addr == MAP_FAILED)
		die("mmap");
	reg[r].pages = pages;
	reg[r].live = 1;
	for (p = 0; p < pages; p++) {
		fill(reg[r].addr + p * PG, rseed(r, p, 1));
		reg[r].tag[p] = 1;
	}
	return r;
}

static void wr(int r, size_t p0, size_t p1, uint32_t t)
{
	for (; p0 < p1; p0++) {
		fill(reg[r].addr + p0 * PG, rseed(r, p0, t));
		reg[r].tag[p0] = t;
	}
}

static void discard(int r, size_t p0, size_t p1)
{
	if (madvise(reg[r].addr + p0 * PG, (p1 - p0) * PG, MADV_DONTNEED))
		die("madvise");
	for (; p0 < p1; p0++)
		reg[r].tag[p0] = reg[r].file ? 1 : 0;
}

static void zeros(int r, size_t p0, size_t p1)
{
	memset(reg[r].addr + p0 * PG, 0, (p1 - p0) * PG);
	for (; p0 < p1; p0++)
		reg[r].tag[p0] = 0;
}

static void fresh_at(int r, unsigned char *addr, size_t pages)
{
	if (mmap(addr, pages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != addr)
		die("mmap fixed");
	reg[r].addr = addr;
	reg[r].pages = pages;
	reg[r].live = 1;
	memset(reg[r].tag, 0, sizeof(reg[r].tag));
}

/* move moves region r elsewhere, grown to pages, and maps a fresh empty
 * region where it was. */
static void move(int r, size_t pages)
{
	unsigned char *old = reg[r].addr, *to;
	size_t p;

	to = mmap(NULL, pages * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (to == MAP_FAILED)
		die("mmap reserve");
	if (mremap(old, reg[r].pages * PG, pages * PG, MREMAP_MAYMOVE | MREMAP_FIXED, to) != to)
		die("mremap");
	for (p = reg[r].pages; p < pages; p++)
		reg[r].tag[p] = 0;
	fresh_at(nreg++, old, reg[r].pages);
	reg[r].addr = to;
	reg[r].pages = pages;
}

static void readonly(int r)
{
	if (mprotect(reg[r].addr, reg[r].pages * PG, PROT_READ))
		die("mprotect");
}

static void unmap(int r)
{
	if (munmap(reg[r].addr, reg[r].pages * PG))
		die("munmap");
	reg[r].live = 0;
}

static void heap(int r, long pages)
{
	size_t p;

	if (sbrk(pages * (long)PG) == (void *)-1)
		die("sbrk");
	if (pages > 0)
		for (p = reg[r].pages; p < reg[r].pages + pages; p++)
			reg[r].tag[p] = 0;
	reg[r].pages += pages;
}

enum { B, C, C2, D, D2, E, E2, G, G2, F, H };

static void setup(const char *path)
{
	size_t p;
	int fd, r;
	uintptr_t cur;

	for (r = B; r <= G2; r++)
		anon_region(64);
	/* F: a private mapping of a file holding tag-1 content. */
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (fd < 0)
		die("open");
	for (p = 0; p < 32; p++) {
		unsigned char b[PG];
		fill(b, rseed(F, p, 1));
		if (write(fd, b, PG) != (ssize_t)PG)
			die("write file");
	}
	r = nreg++;
	reg[r].addr = mmap(NULL, 32 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	if (reg[r].addr == MAP_FAILED)
		die("mmap file");
	close(fd);
	reg[r].pages = 32;
	reg[r].live = reg[r].file = 1;
	for (p = 0; p < 32; p++)
		reg[r].tag[p] = 1;
	wr(F, 0, 16, 2);
	/* H: the top of the heap, page-aligned. */
	cur = (uintptr_t)sbrk(0);
	if (sbrk((PG - cur % PG) % PG) == (void *)-1)
		die("sbrk align");
	r = nreg++;
	reg[r].addr = sbrk(0);
	reg[r].live = 1;
	heap(H, 64);
	wr(H, 0, 64, 1);
}

static void step(int n)
{
	pthread_mutex_lock(&lock);
	switch (n) {
	case 1:
		wr(B, 0, 16, 2);
		wr(C, 0, 16, 2);
		wr(D, 0, 64, 2);
		wr(F, 16, 24, 3);
		wr(H, 0, 8, 2);
		break;
	case 2:
		discard(B, 16, 32);
		zeros(B, 32, 40);
		fresh_at(C, reg[C].addr, reg[C].pages);
		wr(C, 0, 4, 5);
		move(D, 96);
		wr(D, 64, 72, 5);
		wr(E, 0, 4, 4);
		readonly(E);
		discard(F, 0, 8);
		wr(F, 24, 28, 5);
		unmap(G);
		heap(H, 32);
		wr(H, 64, 96, 3);
		break;
	case 3:
		discard(B, 0, 8);
		zeros(B, 48, 56);
		wr(B, 16, 20, 6);
		fresh_at(C2, reg[C2].addr, reg[C2].pages);
		wr(C2, 8, 12, 7);
		move(D2, 80);
		wr(E2, 0, 2, 8);
		readonly(E2);
		discard(F, 8, 16);
		unmap(G2);
		heap(H, -16);
		heap(H, 16);
		wr(H, 0, 4, 9);
		break;
	}
	pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv)
{
	pthread_t th;
	size_t i;
	char line[64], out[32];
	int n = 0;

	if (argc < 4) {
		fprintf(stderr, "usage: churn MIB RATE_KIB HOT_PAGES [FILE]\n");
		return 2;
	}
	npages = strtoul(argv[1], NULL, 0) * 256;
	rate = strtol(argv[2], NULL, 0);
	hot = strtoul(argv[3], NULL, 0);
	if (hot == 0 || hot > npages)
		hot = npages;
	mem = mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gen = mmap(NULL, npages * sizeof(*gen), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || gen == MAP_FAILED)
		die("mmap");
	for (i = 0; i < npages; i++)
		write_page(i);
	if (argc > 4)
		setup(argv[4]);
	signal(SIGUSR1, on_usr1);
	if (getenv("CHURN_FORK")) {
		pid_t kid = fork();
		if (kid < 0)
			die("fork");
		if (kid == 0) {
			if (prctl(PR_SET_PDEATHSIG, SIGKILL) || getppid() == 1)
				_exit(1);
			if (pthread_create(&th, NULL, writer, NULL))
				die("pthread_create");
			say("child ready\n");
			for (;;)
				pause();
		}
	}
	if (pthread_create(&th, NULL, writer, NULL))
		die("pthread_create");
	say("ready\n");
	for (;;) {
		ssize_t r = read(0, line + n, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			die("read stdin");
		if (r == 0)
			_exit(0);
		if (line[n] != '\n' && n < (int)sizeof(line) - 2) {
			n++;
			continue;
		}
		line[n] = 0;
		n = 0;
		if (line[0] == 'q')
			_exit(0);
		if (line[0] == 's') {
			int k = atoi(line + 2);
			step(k);
			snprintf(out, sizeof(out), "ok %d\n", k);
			say(out);
		}
	}
}
