/* mods.h: the modules of the spread build's test program. */
#include <stdint.h>
uint64_t mod01(uint64_t seed);
uint64_t mod02(uint64_t seed);
uint64_t mod03(uint64_t seed);
uint64_t mod04(uint64_t seed);
uint64_t mod05(uint64_t seed);
uint64_t mod06(uint64_t seed);
uint64_t mod07(uint64_t seed);
uint64_t mod08(uint64_t seed);
uint64_t mod09(uint64_t seed);
uint64_t mod10(uint64_t seed);
uint64_t mod11(uint64_t seed);
uint64_t mod12(uint64_t seed);
