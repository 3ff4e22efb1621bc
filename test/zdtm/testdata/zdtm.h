/*
 * zdtm.h - shared helpers for the ferry end-to-end test programs.
 *
 * Protocol (the harness in zdtm_test.go relies on every step):
 *   1. the program sets up the state it tests;
 *   2. zdtm_ready() writes "R" to fd 3 and closes it, so that at dump time
 *      the program holds nothing of the harness except its output file;
 *   3. it waits for "go": zdtm_wait_go() polls for the file named by $ZDTM_GO
 *      (some programs block in a syscall instead and are woken by one of
 *      their own threads or children that polls for the file);
 *   4. it checks its whole state and zdtm_finish() prints "PASS" or
 *      "FAIL: reason" as the last line and exits 0 or 1.
 *
 * stdout and stderr are the same O_APPEND regular file; everything is written
 * with write(2) so nothing sits in a stdio buffer across a checkpoint.
 * Failures during set-up (before ready) use zdtm_die(): the harness sees the
 * ready pipe close without "R" and reports the output.
 */
#ifndef ZDTM_H
#define ZDTM_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ZDTM_READY_FD 3
/* A program that never sees "go" gives up after this long (orphan guard). */
#define ZDTM_GO_TIMEOUT_NS (300LL * 1000000000LL)

static int zdtm_ready_fd = ZDTM_READY_FD;
static pid_t zdtm_pid0;
static pid_t zdtm_tid0;
static int zdtm_nfail;
static char zdtm_first_fail[1024];
static int zdtm_fail_lock;

static inline pid_t zdtm_gettid(void) { return (pid_t)syscall(SYS_gettid); }

static inline int64_t zdtm_now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t zdtm_mono_ns(void) { return zdtm_now_ns(CLOCK_MONOTONIC); }

/* zdtm_sleep_ns sleeps at least ns, resuming after signal handlers. */
static inline void zdtm_sleep_ns(int64_t ns)
{
	struct timespec ts = { ns / 1000000000LL, ns % 1000000000LL };
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static inline void zdtm_sleep_ms(int64_t ms) { zdtm_sleep_ns(ms * 1000000LL); }

/* zdtm_log writes one line to stdout (which is also stderr). */
__attribute__((format(printf, 1, 2)))
static inline void zdtm_log(const char *fmt, ...)
{
	char buf[1200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(buf) - 2)
		n = sizeof(buf) - 2;
	buf[n++] = '\n';
	if (write(1, buf, n) < 0) {
		/* nowhere left to report it */
	}
}

/*
 * fail records a failed check; the first reason becomes the FAIL line.
 * Safe to call from several threads, not from signal handlers.
 */
__attribute__((format(printf, 1, 2)))
static inline void fail(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	while (__atomic_exchange_n(&zdtm_fail_lock, 1, __ATOMIC_ACQUIRE))
		;
	if (zdtm_nfail++ == 0)
		snprintf(zdtm_first_fail, sizeof(zdtm_first_fail), "%s", buf);
	__atomic_store_n(&zdtm_fail_lock, 0, __ATOMIC_RELEASE);
	zdtm_log("check failed: %s", buf);
}

#define CHECK(cond, ...)                \
	do {                            \
		if (!(cond))            \
			fail(__VA_ARGS__); \
	} while (0)

/* zdtm_die reports a set-up error (or an impossible state) and exits 1. */
__attribute__((format(printf, 1, 2), noreturn))
static inline void zdtm_die(const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int e = errno;

	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	zdtm_log("FAIL: %s (errno %d: %s)", buf, e, strerror(e));
	_exit(1);
}

/* zdtm_init records the ids that must survive; call it first in main. */
static inline void zdtm_init(void)
{
	zdtm_pid0 = getpid();
	zdtm_tid0 = zdtm_gettid();
	if (!getenv("ZDTM_GO"))
		zdtm_die("ZDTM_GO is not set");
	if (fcntl(ZDTM_READY_FD, F_GETFD) == -1)
		zdtm_die("fd %d (ready pipe) is not open", ZDTM_READY_FD);
}

/* zdtm_ready tells the harness the state is set up and lets go of fd 3. */
static inline void zdtm_ready(void)
{
	if (zdtm_ready_fd < 0)
		return;
	if (write(zdtm_ready_fd, "R", 1) != 1)
		zdtm_die("write ready fd");
	close(zdtm_ready_fd);
	zdtm_ready_fd = -1;
}

/*
 * zdtm_child_forget_ready must be called in a child forked before ready:
 * the harness waits for EOF on the pipe, so every copy has to go.
 */
static inline void zdtm_child_forget_ready(void)
{
	if (zdtm_ready_fd >= 0)
		close(zdtm_ready_fd);
	zdtm_ready_fd = -1;
}

static inline int zdtm_go(void)
{
	struct stat st;
	return stat(getenv("ZDTM_GO"), &st) == 0;
}

/* zdtm_wait_go polls for the go file every 5 ms. */
static inline void zdtm_wait_go(void)
{
	int64_t start = zdtm_mono_ns();

	while (!zdtm_go()) {
		if (zdtm_mono_ns() - start > ZDTM_GO_TIMEOUT_NS) {
			zdtm_log("FAIL: no go file after %llds",
				 ZDTM_GO_TIMEOUT_NS / 1000000000LL);
			_exit(2);
		}
		zdtm_sleep_ms(5);
	}
}

/* zdtm_finish checks the pid, prints the verdict as the last line, exits. */
__attribute__((noreturn))
static inline void zdtm_finish(void)
{
	if (getpid() != zdtm_pid0)
		fail("getpid() = %d, want %d", getpid(), zdtm_pid0);
	if (zdtm_tid0 && zdtm_gettid() != zdtm_tid0)
		fail("main gettid() = %d, want %d", zdtm_gettid(), zdtm_tid0);
	if (zdtm_nfail == 0) {
		zdtm_log("PASS");
		exit(0);
	}
	if (zdtm_nfail > 1)
		zdtm_log("FAIL: %s (and %d more)", zdtm_first_fail, zdtm_nfail - 1);
	else
		zdtm_log("FAIL: %s", zdtm_first_fail);
	exit(1);
}

/* --- data helpers --- */

static inline uint64_t zdtm_mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* zdtm_fill writes a pattern that depends on seed and on the offset. */
static inline void zdtm_fill(void *p, size_t len, uint64_t seed)
{
	unsigned char *b = p;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t v = zdtm_mix(seed + i);
		memcpy(b + i, &v, 8);
	}
	for (; i < len; i++)
		b[i] = (unsigned char)zdtm_mix(seed + i);
}

/* zdtm_check returns the offset of the first mismatch, or -1. */
static inline long zdtm_check(const void *p, size_t len, uint64_t seed)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i + 8 <= len; i += 8) {
		uint64_t v = zdtm_mix(seed + i);
		if (memcmp(b + i, &v, 8) != 0)
			return (long)i;
	}
	for (; i < len; i++)
		if (b[i] != (unsigned char)zdtm_mix(seed + i))
			return (long)i;
	return -1;
}

/* zdtm_is_zero returns the offset of the first non-zero byte, or -1. */
static inline long zdtm_is_zero(const void *p, size_t len)
{
	const unsigned char *b = p;
	size_t i;

	for (i = 0; i < len; i++)
		if (b[i])
			return (long)i;
	return -1;
}

static inline uint64_t zdtm_hash(const void *p, size_t len)
{
	const unsigned char *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* zdtm_read_file reads a (small, e.g. /proc) file into buf, NUL-terminated. */
static inline ssize_t zdtm_read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n, total = 0;

	if (fd < 0)
		return -1;
	while ((size_t)total < size - 1) {
		n = read(fd, buf + total, size - 1 - total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	close(fd);
	buf[total] = 0;
	return total;
}

/* zdtm_status_field copies the value of "Name:" of a /proc status file. */
static inline int zdtm_status_field(const char *path, const char *name, char *out, size_t size)
{
	char buf[16384];
	size_t nl = strlen(name);
	char *p;

	if (zdtm_read_file(path, buf, sizeof(buf)) < 0)
		return -1;
	for (p = buf; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, nl) == 0 && p[nl] == ':') {
			char *v = p + nl + 1, *e;
			while (*v == ' ' || *v == '\t')
				v++;
			e = strchr(v, '\n');
			if (!e)
				e = v + strlen(v);
			snprintf(out, size, "%.*s", (int)(e - v), v);
			return 0;
		}
	}
	return -1;
}

/* zdtm_fdinfo_field is zdtm_status_field for /proc/self/fdinfo/FD. */
static inline int zdtm_fdinfo_field(int fd, const char *name, char *out, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
	return zdtm_status_field(path, name, out, size);
}

/* zdtm_write_all writes the whole buffer or dies (set-up only). */
static inline void zdtm_write_all(int fd, const void *p, size_t len)
{
	const char *b = p;
	while (len > 0) {
		ssize_t n = write(fd, b, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			zdtm_die("write fd %d", fd);
		b += n;
		len -= n;
	}
}

#endif /* ZDTM_H */
