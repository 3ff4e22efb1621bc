/*
 * mem_stack: deep recursion. 1500 frames, each holding a 512-byte pattern
 * and a link to its caller's frame, wait for go at the bottom. After
 * restore the recursion goes 4 MiB deeper (the main stack must still grow
 * down), then every frame is verified while unwinding.
 */
#include "zdtm.h"
#include <sys/resource.h>

#define DEPTH 1500
#define EXTRA_DEPTH 4000 /* ~4 MiB with 1 KiB frames */

struct frame {
	unsigned char data[512];
	struct frame *up;
	int depth;
};

static int bad_frames;

static void check_frame(struct frame *f, int depth, struct frame *up)
{
	if (f->depth != depth || f->up != up || zdtm_check(f->data, sizeof(f->data), 9000 + depth) >= 0)
		if (bad_frames++ == 0)
			fail("frame at depth %d (%p) differs", depth, (void *)f);
}

static int extra(int depth, struct frame *up)
{
	volatile unsigned char pad[512];
	struct frame f;
	int r = 0;

	f.depth = depth;
	f.up = up;
	zdtm_fill(f.data, sizeof(f.data), 9000 + depth);
	pad[depth % 512] = (unsigned char)depth;
	if (depth < DEPTH + EXTRA_DEPTH)
		r = extra(depth + 1, &f);
	check_frame(&f, depth, up);
	return r + pad[depth % 512];
}

static int recurse(int depth, struct frame *up)
{
	struct frame f;
	int r;

	f.depth = depth;
	f.up = up;
	zdtm_fill(f.data, sizeof(f.data), 9000 + depth);
	if (depth < DEPTH) {
		r = recurse(depth + 1, &f);
	} else {
		zdtm_ready();
		zdtm_wait_go();
		r = extra(depth + 1, &f);
	}
	check_frame(&f, depth, up);
	return r + 1;
}

int main(void)
{
	struct rlimit rl;

	zdtm_init();
	if (getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (8 << 20))
		zdtm_die("stack rlimit %llu too small for this test", (unsigned long long)rl.rlim_cur);
	recurse(0, NULL);
	zdtm_finish();
}
