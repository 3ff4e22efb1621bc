/* mod12.c: some work for the compiler (unrolled, inlined, vectorised
 * loops), and a value the program checks. */
#include "mods.h"

static inline uint64_t mix12(uint64_t x) {
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL + 12;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static uint64_t table12[256];

static void fill12(uint64_t seed) {
	for (int k = 0; k < 256; k++)
		table12[k] = mix12(seed + k * 12);
}

#define STEP(n) acc = mix12(acc + table12[(acc + n) & 255]) ^ (acc << 6);

uint64_t mod12(uint64_t seed) {
	fill12(seed);
	uint64_t acc = seed;
	for (int r = 0; r < 112; r++) {
		STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8)
		STEP(9) STEP(10) STEP(11) STEP(12) STEP(13) STEP(14) STEP(15) STEP(16)
	}
	double v[64];
	for (int k = 0; k < 64; k++)
		v[k] = (double)(table12[k] & 0xffff) / 12.0;
	double s = 0;
	for (int k = 0; k < 64; k++)
		s += v[k] * v[63 - k];
	return acc ^ (uint64_t)s;
}
