/*
 * mem_aio: a Linux AIO context (io_setup), its ring mapped in the address
 * space. Before the checkpoint the program reads its own file through the
 * context once and reaps the completion, then submits two more reads and
 * leaves their completions in the ring, not reaped. After restore the
 * context id is the same (it is the ring's address: the ring is there,
 * with its magic and size), io_getevents gives exactly the two completed
 * reads (tags, results, the bytes in the buffers), a new read submitted on
 * it completes with the right bytes, and io_destroy succeeds.
 */
#include "zdtm.h"
#include <linux/aio_abi.h>

#define AIO_RING_MAGIC 0xa10a10a1

struct ring {
	unsigned id, nr, head, tail, magic, compat, incompat, header_length;
};

static long io_setup_(unsigned n, aio_context_t *ctx) { return syscall(SYS_io_setup, n, ctx); }
static long io_submit_(aio_context_t ctx, long n, struct iocb **v) { return syscall(SYS_io_submit, ctx, n, v); }
static long io_getevents_(aio_context_t ctx, long min, long max, struct io_event *ev)
{
	return syscall(SYS_io_getevents, ctx, min, max, ev, NULL);
}

static int submit(aio_context_t ctx, struct iocb *cb, int fd, char *buf, size_t len, off_t off, uint64_t tag)
{
	struct iocb *cbs[1] = { cb };

	memset(cb, 0, sizeof(*cb));
	cb->aio_data = tag;
	cb->aio_lio_opcode = IOCB_CMD_PREAD;
	cb->aio_fildes = fd;
	cb->aio_buf = (uint64_t)(uintptr_t)buf;
	cb->aio_nbytes = len;
	cb->aio_offset = off;
	return io_submit_(ctx, 1, cbs) == 1 ? 0 : -1;
}

static int read_once(aio_context_t ctx, int fd, char *buf, size_t len, off_t off, uint64_t tag)
{
	struct iocb cb, *cbs[1] = { &cb };
	struct io_event ev;

	memset(&cb, 0, sizeof(cb));
	cb.aio_data = tag;
	cb.aio_lio_opcode = IOCB_CMD_PREAD;
	cb.aio_fildes = fd;
	cb.aio_buf = (uint64_t)(uintptr_t)buf;
	cb.aio_nbytes = len;
	cb.aio_offset = off;
	if (io_submit_(ctx, 1, cbs) != 1)
		return -1;
	if (io_getevents_(ctx, 1, 1, &ev) != 1)
		return -2;
	if (ev.data != tag || ev.res != (int64_t)len)
		return -3;
	return 0;
}

int main(void)
{
	aio_context_t ctx = 0;
	char data[4096], buf[4096], b1[100], b2[200];
	struct iocb c1, c2;
	struct io_event ev[4];
	struct ring *r;
	unsigned nr0;
	int fd, e, n;
	int64_t t0;

	zdtm_init();
	zdtm_fill(data, sizeof(data), 77);
	fd = open("aio.data", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write(fd, data, sizeof(data)) != sizeof(data))
		zdtm_die("data file");
	if (io_setup_(64, &ctx))
		zdtm_die("io_setup");
	if ((e = read_once(ctx, fd, buf, 1024, 0, 1)) || memcmp(buf, data, 1024))
		zdtm_die("first aio read: %d", e);
	r = (struct ring *)(uintptr_t)ctx;
	if (r->magic != AIO_RING_MAGIC)
		zdtm_die("ring magic %#x", r->magic);
	nr0 = r->nr;
	if (submit(ctx, &c1, fd, b1, sizeof(b1), 100, 11) || submit(ctx, &c2, fd, b2, sizeof(b2), 300, 12))
		zdtm_die("io_submit");
	for (t0 = zdtm_mono_ns(); (r->tail + r->nr - r->head) % r->nr < 2; zdtm_sleep_ms(1))
		if (zdtm_mono_ns() - t0 > 5000000000LL)
			zdtm_die("reads did not complete");

	zdtm_ready();
	zdtm_wait_go();

	CHECK(r->magic == AIO_RING_MAGIC, "ring at %#llx: magic %#x", (unsigned long long)ctx, r->magic);
	CHECK(r->nr == nr0, "ring holds %u events, want %u", r->nr, nr0);
	CHECK((r->tail + r->nr - r->head) % r->nr == 2, "ring head %u tail %u: want 2 unreaped events", r->head, r->tail);
	n = io_getevents_(ctx, 0, 4, ev);
	CHECK(n == 2, "io_getevents: %d events, want 2 (%s)", n, strerror(errno));
	if (n == 2) {
		CHECK(ev[0].data == 11 && ev[0].obj == (uint64_t)(uintptr_t)&c1 && ev[0].res == sizeof(b1),
		      "first event: data %llu res %lld", (unsigned long long)ev[0].data, (long long)ev[0].res);
		CHECK(ev[1].data == 12 && ev[1].obj == (uint64_t)(uintptr_t)&c2 && ev[1].res == sizeof(b2),
		      "second event: data %llu res %lld", (unsigned long long)ev[1].data, (long long)ev[1].res);
	}
	CHECK(memcmp(b1, data + 100, sizeof(b1)) == 0 && memcmp(b2, data + 300, sizeof(b2)) == 0,
	      "bytes the completed reads left in their buffers differ");
	CHECK(r->head == r->tail, "ring head %u tail %u after reaping", r->head, r->tail);
	memset(buf, 0, sizeof(buf));
	e = read_once(ctx, fd, buf, 2048, 1024, 2);
	CHECK(e == 0, "aio read after restore: %d (%s)", e, strerror(errno));
	CHECK(e != 0 || memcmp(buf, data + 1024, 2048) == 0, "aio read after restore: wrong bytes");
	CHECK(syscall(SYS_io_destroy, ctx) == 0, "io_destroy: %s", strerror(errno));
	zdtm_finish();
}
