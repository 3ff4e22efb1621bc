/*
 * churn: a program that changes its own memory layout while postcopy
 * brings its memory in. Built statically by the postcopy tests.
 *
 * Set-up (before the checkpoint): regions filled with patterns that depend
 * on the offset, one half written, one written and zeroed again, and a
 * PROT_NONE reservation to move a region onto. It prints "ready" and polls
 * for the file $CHURN_DIR/go.
 *
 * After "go" (on the destination, memory still on the source) it at once
 *   - MADV_DONTNEEDs a part of A (must read zeros, then what it writes),
 *   - munmaps another part of A,
 *   - mremaps B onto the reservation (the pages move with it),
 *   - shrinks C with mremap (the tail is unmapped),
 *   - forks a child that checks what it inherited and exits,
 * checks everything, prints "early ok" (or FAIL), then polls for
 * $CHURN_DIR/verify, checks everything again and prints PASS or FAIL.
 *
 * With CHURN_TREE=1 it forks a child before "ready" (so the checkpoint
 * holds a tree): the child fills a region of its own, checks it and what
 * it inherited after "go" and after "verify", and the parent's PASS
 * includes the child's exit status.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MB (1UL << 20)
#define PG 4096UL

static unsigned char *A, *B, *C, *D, *Z, *R, *E;
static const size_t ASZ = 24 * MB, BSZ = 16 * MB, CSZ = 16 * MB, DSZ = 8 * MB, ZSZ = 4 * MB;
static char failure[512];

static void say(const char *s)
{
	ssize_t n = write(1, s, strlen(s));
	(void)n;
}

static uint64_t mix(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x | 1; /* never a zero word */
}

static void fill(unsigned char *p, size_t len, uint64_t seed)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed + i);
		memcpy(p + i, &v, 8);
	}
}

static int check(const unsigned char *p, size_t len, uint64_t seed, const char *what)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = mix(seed + i);
		if (memcmp(p + i, &v, 8)) {
			snprintf(failure, sizeof(failure), "%s: pattern differs at offset %zu", what, i);
			return -1;
		}
	}
	return 0;
}

static int zero(const unsigned char *p, size_t len, const char *what)
{
	for (size_t i = 0; i < len; i++)
		if (p[i]) {
			snprintf(failure, sizeof(failure), "%s: byte %zu is not zero", what, i);
			return -1;
		}
	return 0;
}

static void wait_file(const char *name)
{
	char path[512];
	struct stat st;
	struct timespec ms = {0, 1000000};
	snprintf(path, sizeof(path), "%s/%s", getenv("CHURN_DIR"), name);
	for (long i = 0; stat(path, &st) != 0; i++) {
		if (i > 300000) {
			say("FAIL: no file\n");
			_exit(2);
		}
		nanosleep(&ms, NULL);
	}
}

static int churned;
static const size_t ESZ = 8 * MB;

/* tree_child runs the child of CHURN_TREE=1 and never returns. */
static void tree_child(void)
{
	E = mmap(NULL, ESZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (E == MAP_FAILED)
		_exit(3);
	fill(E, ESZ, 5);
	wait_file("go");
	if (check(E, ESZ, 5, "child E") || check(A, ASZ, 1, "child A") || check(B, BSZ, 2, "child B"))
		_exit(1);
	wait_file("verify");
	if (check(E, ESZ, 5, "child E") || check(C, CSZ, 3, "child C"))
		_exit(1);
	_exit(0);
}

/* check_all checks every region as it should be now. */
static int check_all(void)
{
	if (check(A, 4 * MB, 1, "A head"))
		return -1;
	if (churned) {
		if (check(A + 4 * MB, PG, 9, "A rewritten page") || zero(A + 4 * MB + PG, 4 * MB - PG, "A discarded"))
			return -1;
	} else if (check(A + 4 * MB, 4 * MB, 1 + 4 * MB, "A middle")) {
		return -1;
	}
	if (check(A + 8 * MB, 4 * MB, 1 + 8 * MB, "A before hole"))
		return -1;
	if (!churned && check(A + 12 * MB, 4 * MB, 1 + 12 * MB, "A hole"))
		return -1;
	if (check(A + 16 * MB, 8 * MB, 1 + 16 * MB, "A tail"))
		return -1;
	if (check(churned ? R : B, BSZ, 2, churned ? "B moved" : "B"))
		return -1;
	if (check(C, churned ? CSZ / 2 : CSZ, 3, "C"))
		return -1;
	for (size_t off = 0; off < DSZ; off += PG) {
		if ((off / PG) % 2 == 0 ? check(D + off, PG, 4 + off, "D written") : zero(D + off, PG, "D gap"))
			return -1;
	}
	return zero(Z, ZSZ, "Z");
}

int main(void)
{
	A = mmap(NULL, ASZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	B = mmap(NULL, BSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	C = mmap(NULL, CSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	D = mmap(NULL, DSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	Z = mmap(NULL, ZSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	R = mmap(NULL, BSZ, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (A == MAP_FAILED || B == MAP_FAILED || C == MAP_FAILED || D == MAP_FAILED || Z == MAP_FAILED || R == MAP_FAILED) {
		say("FAIL: mmap\n");
		return 1;
	}
	fill(A, ASZ, 1);
	fill(B, BSZ, 2);
	fill(C, CSZ, 3);
	for (size_t off = 0; off < DSZ; off += 2 * PG)
		fill(D + off, PG, 4 + off);
	memset(Z, 0x5a, ZSZ);
	memset(Z, 0, ZSZ); /* present, but zero */
	pid_t tree = 0;
	if (getenv("CHURN_TREE")) {
		tree = fork();
		if (tree == 0)
			tree_child();
		if (tree < 0) {
			say("FAIL: fork\n");
			return 1;
		}
	}
	say("ready\n");

	wait_file("go");
	if (madvise(A + 4 * MB, 4 * MB, MADV_DONTNEED) || munmap(A + 12 * MB, 4 * MB) ||
	    mremap(B, BSZ, BSZ, MREMAP_MAYMOVE | MREMAP_FIXED, R) != R ||
	    mremap(C, CSZ, CSZ / 2, 0) != C) {
		snprintf(failure, sizeof(failure), "churn: %s", strerror(errno));
		goto out;
	}
	fill(A + 4 * MB, PG, 9);
	churned = 1;
	pid_t child = fork();
	if (child == 0)
		_exit(check_all() ? 1 : 0);
	int status;
	if (child < 0 || waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status)) {
		snprintf(failure, sizeof(failure), "forked child: status %#x", status);
		goto out;
	}
	if (check_all())
		goto out;
	say("early ok\n");
	wait_file("verify");
	if (check_all())
		goto out;
	/* Any child: the restore gave the tree child a new PID. */
	if (tree && (waitpid(-1, &status, 0) <= 0 || !WIFEXITED(status) || WEXITSTATUS(status))) {
		snprintf(failure, sizeof(failure), "tree child: status %#x", status);
		goto out;
	}
	say("PASS\n");
	return 0;
out:
	{
		char line[600];
		snprintf(line, sizeof(line), "FAIL: %s\n", failure);
		say(line);
	}
	return 1;
}
