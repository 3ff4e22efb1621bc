/*
 * mem_cow_fork (process tree): after fork, the private anonymous pages
 * neither process has written since are one physical page shared
 * copy-on-write. After restore they must be shared again, not duplicated
 * (a forking server's memory must not double): in both processes the
 * pagemap "exclusively mapped" bit (56) is clear for them and, where the
 * PFN is visible (root), parent and child see the same PFN. Pages written
 * by one side after the fork, a page the child discarded (MADV_DONTNEED)
 * and a page the child zeroed keep their own content in each process.
 * The same holds for the copy-on-write pages of a private file mapping,
 * and for a region whose VMA merged with a neighbour in the parent only.
 * The child forks a grandchild (sharing with both, one page written) and
 * a zombie it reaps after restore: processes below a child restored by
 * fork come back too.
 */
#include "zdtm.h"
#include <sys/mman.h>
#include <sys/wait.h>

#define PG 4096UL
#define NP 16
#define PM_PRESENT (1ULL << 63)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_PFN(e) ((e) & ((1ULL << 55) - 1))

/* What each page is after the fork. */
enum { SHARED, CHILD_WROTE, PARENT_WROTE, CHILD_DISCARDED, CHILD_ZEROED };
static const int kind[NP] = {
	SHARED, SHARED, CHILD_WROTE, CHILD_WROTE, SHARED, PARENT_WROTE, SHARED, CHILD_DISCARDED,
	CHILD_ZEROED, SHARED, SHARED, SHARED, SHARED, SHARED, SHARED, SHARED,
};

struct xchg {
	volatile int parent_posted;
	uint64_t parent_pfn[NP];
	uint64_t parent_fpfn[4], parent_rpfn[4];
};

static unsigned char *f; /* private file mapping, 4 pages; the child wrote page 1 */
static unsigned char *r; /* 4 anonymous pages; the parent's VMA merged after the fork */

static uint64_t pagemap(void *addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return 0;
	if (pread(fd, &e, 8, ((uintptr_t)addr / PG) * 8) != 8)
		e = 0;
	close(fd);
	return e;
}

#define GRAND_PAGE 10 /* the page the grandchild writes */

/*
 * check_pages checks one process's view; is_child: 0 parent, 1 child,
 * 2 grandchild (which also shares the child's written pages).
 */
static int check_pages(const char *who, unsigned char *m, int is_child, struct xchg *x)
{
	static unsigned char want[PG];
	int bad = 0, i;

	for (i = 0; i < NP; i++) {
		uint64_t e = pagemap(m + i * PG);
		int shared = kind[i] == SHARED || (is_child == 2 && kind[i] == CHILD_WROTE);
		if (is_child == 2 && i == GRAND_PAGE)
			shared = 0;
		if (!shared)
			continue;
		if (!(e & PM_PRESENT)) {
			zdtm_log("%s: shared page %d not present (pagemap %#llx)", who, i, (unsigned long long)e);
			bad = 1;
		} else if (e & PM_EXCLUSIVE) {
			zdtm_log("%s: page %d is exclusively mapped: copy-on-write sharing lost", who, i);
			bad = 1;
		} else if (is_child && kind[i] == SHARED && PM_PFN(e) && x->parent_pfn[i] &&
			   PM_PFN(e) != x->parent_pfn[i]) {
			zdtm_log("%s: page %d PFN %#llx, parent's %#llx", who, i,
				 (unsigned long long)PM_PFN(e), (unsigned long long)x->parent_pfn[i]);
			bad = 1;
		}
	}
	for (i = 0; i < NP; i++) {
		const unsigned char *p = m + i * PG;
		zdtm_fill(want, PG, 40 + i);
		switch (kind[i]) {
		case CHILD_WROTE:
			if (is_child)
				zdtm_fill(want, PG, 50 + i);
			break;
		case PARENT_WROTE:
			if (!is_child)
				zdtm_fill(want, PG, 60 + i);
			break;
		case CHILD_DISCARDED:
		case CHILD_ZEROED:
			if (is_child)
				memset(want, 0, PG);
			break;
		}
		if (is_child == 2 && i == GRAND_PAGE)
			zdtm_fill(want, PG, 70 + i);
		if (memcmp(p, want, PG)) {
			zdtm_log("%s: page %d content differs", who, i);
			bad = 1;
		}
	}
	return bad;
}

/* check_extra checks the file mapping and the merged region. */
static int check_extra(const char *who, int is_child, struct xchg *x)
{
	static unsigned char want[PG];
	int bad = 0, i;

	for (i = 0; i < 4; i++) {
		uint64_t fe = pagemap(f + i * PG), re = pagemap(r + i * PG);
		int fshared = i != 1 && i != 3; /* 3: a clean page of the file */

		if (fshared && (!(fe & PM_PRESENT) || (fe & PM_EXCLUSIVE))) {
			zdtm_log("%s: file mapping page %d not shared (pagemap %#llx)", who, i, (unsigned long long)fe);
			bad = 1;
		}
		if (fshared && is_child && PM_PFN(fe) && x->parent_fpfn[i] && PM_PFN(fe) != x->parent_fpfn[i]) {
			zdtm_log("%s: file mapping page %d PFN differs from the parent's", who, i);
			bad = 1;
		}
		if (!(re & PM_PRESENT) || (re & PM_EXCLUSIVE)) {
			zdtm_log("%s: merged region page %d not shared (pagemap %#llx)", who, i, (unsigned long long)re);
			bad = 1;
		} else if (is_child && PM_PFN(re) && x->parent_rpfn[i] && PM_PFN(re) != x->parent_rpfn[i]) {
			zdtm_log("%s: merged region page %d PFN differs from the parent's", who, i);
			bad = 1;
		}
		zdtm_fill(want, PG, i < 3 ? 200 + i : 300 + i);
		if (i == 1 && is_child)
			zdtm_fill(want, PG, 250);
		if (memcmp(f + i * PG, want, PG)) {
			zdtm_log("%s: file mapping page %d content differs", who, i);
			bad = 1;
		}
		zdtm_fill(want, PG, 400 + i);
		if (memcmp(r + i * PG, want, PG)) {
			zdtm_log("%s: merged region page %d content differs", who, i);
			bad = 1;
		}
	}
	if (!is_child && zdtm_check(r + 4 * PG, PG, 450) >= 0) {
		zdtm_log("%s: page after the merged region differs", who);
		bad = 1;
	}
	return bad;
}

int main(void)
{
	unsigned char *m;
	struct xchg *x;
	pid_t child;
	int st, i, p[2];
	char c;

	zdtm_init();
	m = mmap(NULL, NP * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	x = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED || x == MAP_FAILED)
		zdtm_die("mmap");
	for (i = 0; i < NP; i++)
		zdtm_fill(m + i * PG, PG, 40 + i);
	{
		static unsigned char file[4 * PG];
		int fd = open("cow.bin", O_RDWR | O_CREAT | O_TRUNC, 0644);

		for (i = 0; i < 4; i++)
			zdtm_fill(file + i * PG, PG, 300 + i);
		if (fd < 0)
			zdtm_die("open cow.bin");
		zdtm_write_all(fd, file, sizeof(file));
		f = mmap(NULL, 4 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
		close(fd);
		/* r, then a guard: only the parent maps the page after r later. */
		r = mmap(NULL, 6 * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (f == MAP_FAILED || r == MAP_FAILED || mprotect(r, 4 * PG, PROT_READ | PROT_WRITE))
			zdtm_die("mmap file / region");
		for (i = 0; i < 3; i++)
			zdtm_fill(f + i * PG, PG, 200 + i);
		(void)*(volatile unsigned char *)(f + 3 * PG);
		for (i = 0; i < 4; i++)
			zdtm_fill(r + i * PG, PG, 400 + i);
	}
	if (pipe(p))
		zdtm_die("pipe");

	child = fork();
	if (child < 0)
		zdtm_die("fork");
	if (child == 0) {
		int bad, gst, q[2];
		pid_t grand, zombie;

		zdtm_child_forget_ready();
		close(p[0]);
		for (i = 0; i < NP; i++)
			if (kind[i] == CHILD_WROTE)
				zdtm_fill(m + i * PG, PG, 50 + i);
			else if (kind[i] == CHILD_DISCARDED)
				madvise(m + i * PG, PG, MADV_DONTNEED);
			else if (kind[i] == CHILD_ZEROED)
				memset(m + i * PG, 0, PG);
		zdtm_fill(f + PG, PG, 250);
		zombie = fork();
		if (zombie < 0)
			_exit(3);
		if (zombie == 0)
			_exit(7);
		if (pipe(q))
			_exit(3);
		grand = fork();
		if (grand < 0)
			_exit(3);
		if (grand == 0) {
			close(q[0]);
			zdtm_fill(m + GRAND_PAGE * PG, PG, 70 + GRAND_PAGE);
			if (write(q[1], "g", 1) != 1)
				_exit(3);
			close(q[1]);
			zdtm_wait_go();
			while (!__atomic_load_n(&x->parent_posted, __ATOMIC_ACQUIRE))
				zdtm_sleep_ms(1);
			_exit(check_pages("grandchild", m, 2, x) ? 1 : 0);
		}
		close(q[1]);
		if (read(q[0], &c, 1) != 1)
			_exit(3);
		close(q[0]);
		/* The zombie is a zombie before the dump. */
		for (;;) {
			siginfo_t si = { 0 };
			if (waitid(P_PID, zombie, &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == zombie)
				break;
			zdtm_sleep_ms(1);
		}
		if (write(p[1], "c", 1) != 1)
			_exit(3);
		close(p[1]);
		zdtm_wait_go();
		while (!__atomic_load_n(&x->parent_posted, __ATOMIC_ACQUIRE))
			zdtm_sleep_ms(1);
		bad = check_pages("child", m, 1, x);
		bad |= check_extra("child", 1, x);
		if (waitpid(grand, &gst, 0) != grand || !WIFEXITED(gst) || WEXITSTATUS(gst) != 0) {
			zdtm_log("child: grandchild status 0x%x", gst);
			bad = 1;
		}
		if (waitpid(zombie, &gst, 0) != zombie || !WIFEXITED(gst) || WEXITSTATUS(gst) != 7) {
			zdtm_log("child: zombie %d status 0x%x, want exit 7", zombie, gst);
			bad = 1;
		}
		_exit(bad ? 1 : 0);
	}
	close(p[1]);
	for (i = 0; i < NP; i++)
		if (kind[i] == PARENT_WROTE)
			zdtm_fill(m + i * PG, PG, 60 + i);
	/* The parent's r VMA grows by one page: merged, unlike the child's. */
	if (mprotect(r + 4 * PG, PG, PROT_READ | PROT_WRITE))
		zdtm_die("mprotect after r");
	zdtm_fill(r + 4 * PG, PG, 450);
	if (read(p[0], &c, 1) != 1)
		zdtm_die("child did not start");
	close(p[0]);
	/* Before the dump the sharing must be there at all. */
	for (i = 0; i < NP; i++)
		if (kind[i] == SHARED && (pagemap(m + i * PG) & PM_EXCLUSIVE))
			zdtm_die("page %d not shared with the child before the dump", i);
	zdtm_ready();
	zdtm_wait_go();

	/* The parent checks first: the child, which shares the pages, waits
	 * for the PFNs before it checks and exits. */
	if (check_extra("parent", 0, x))
		fail("parent's file mapping or merged region differs or is not shared (see above)");
	if (check_pages("parent", m, 0, x))
		fail("parent's pages differ or are not shared (see above)");
	for (i = 0; i < NP; i++)
		x->parent_pfn[i] = PM_PFN(pagemap(m + i * PG));
	for (i = 0; i < 4; i++) {
		x->parent_fpfn[i] = PM_PFN(pagemap(f + i * PG));
		x->parent_rpfn[i] = PM_PFN(pagemap(r + i * PG));
	}
	__atomic_store_n(&x->parent_posted, 1, __ATOMIC_RELEASE);
	if (waitpid(child, &st, 0) != child)
		fail("waitpid child %d: %s", child, strerror(errno));
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status 0x%x (see its log above)", st);
	zdtm_finish();
}
