/* mod11.c: some work for the compiler (unrolled, inlined, vectorised
 * loops), and a value the program checks. */
#include "mods.h"

static inline uint64_t mix11(uint64_t x) {
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL + 11;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static uint64_t table11[256];

static void fill11(uint64_t seed) {
	for (int k = 0; k < 256; k++)
		table11[k] = mix11(seed + k * 11);
}

#define STEP(n) acc = mix11(acc + table11[(acc + n) & 255]) ^ (acc << 5);

uint64_t mod11(uint64_t seed) {
	fill11(seed);
	uint64_t acc = seed;
	for (int r = 0; r < 111; r++) {
		STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8)
		STEP(9) STEP(10) STEP(11) STEP(12) STEP(13) STEP(14) STEP(15) STEP(16)
	}
	double v[64];
	for (int k = 0; k < 64; k++)
		v[k] = (double)(table11[k] & 0xffff) / 11.0;
	double s = 0;
	for (int k = 0; k < 64; k++)
		s += v[k] * v[63 - k];
	return acc ^ (uint64_t)s;
}
