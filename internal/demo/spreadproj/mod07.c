/* mod07.c: some work for the compiler (unrolled, inlined, vectorised
 * loops), and a value the program checks. */
#include "mods.h"

static inline uint64_t mix7(uint64_t x) {
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL + 7;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	return x ^ (x >> 33);
}

static uint64_t table7[256];

static void fill7(uint64_t seed) {
	for (int k = 0; k < 256; k++)
		table7[k] = mix7(seed + k * 7);
}

#define STEP(n) acc = mix7(acc + table7[(acc + n) & 255]) ^ (acc << 1);

uint64_t mod07(uint64_t seed) {
	fill7(seed);
	uint64_t acc = seed;
	for (int r = 0; r < 107; r++) {
		STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7) STEP(8)
		STEP(9) STEP(10) STEP(11) STEP(12) STEP(13) STEP(14) STEP(15) STEP(16)
	}
	double v[64];
	for (int k = 0; k < 64; k++)
		v[k] = (double)(table7[k] & 0xffff) / 7.0;
	double s = 0;
	for (int k = 0; k < 64; k++)
		s += v[k] * v[63 - k];
	return acc ^ (uint64_t)s;
}
