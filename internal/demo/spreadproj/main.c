/* main.c: the spread build's test program: it prints a value made by
 * every module, the same for every build of the same source. */
#include <inttypes.h>
#include <stdio.h>
#include "mods.h"

int main(void) {
	uint64_t h = 1469598103934665603ULL;
	h = h * 31 + mod01(h + 1);
	h = h * 31 + mod02(h + 2);
	h = h * 31 + mod03(h + 3);
	h = h * 31 + mod04(h + 4);
	h = h * 31 + mod05(h + 5);
	h = h * 31 + mod06(h + 6);
	h = h * 31 + mod07(h + 7);
	h = h * 31 + mod08(h + 8);
	h = h * 31 + mod09(h + 9);
	h = h * 31 + mod10(h + 10);
	h = h * 31 + mod11(h + 11);
	h = h * 31 + mod12(h + 12);
	printf("%016" PRIx64 "\n", h);
	return 0;
}
