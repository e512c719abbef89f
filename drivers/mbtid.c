/*
 * mbtid: random Modbus TCP transaction ids (drivers/mbtid.h). Owns nothing but the
 * generator's state in its caller's struct; it never blocks (getrandom with
 * GRND_NONBLOCK: a box that has just booted must not wait for entropy to poll).
 */
#include "mbtid.h"

#include <stddef.h>
#include <sys/random.h>
#include <time.h>

/* splitmix64: a full-period generator whose every output is well mixed */
static uint64_t mbtid_mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9E3779B97F4A7C15ull);

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

void mbtid_init(struct mbtid *t)
{
	uint64_t seed = 0;

	if (getrandom(&seed, sizeof seed, GRND_NONBLOCK) != (ssize_t)sizeof seed) {
		struct timespec a = { 0 }, b = { 0 };
		(void)clock_gettime(CLOCK_MONOTONIC, &a);
		(void)clock_gettime(CLOCK_REALTIME, &b);
		seed = (uint64_t)a.tv_nsec ^ (uint64_t)b.tv_sec << 20 ^ (uint64_t)b.tv_nsec << 32 ^
		       (uint64_t)(uintptr_t)t;
	}
	t->state = seed;
	t->last = (uint16_t)mbtid_mix(&t->state);
}

uint16_t mbtid_next(struct mbtid *t)
{
	uint16_t id;

	do
		id = (uint16_t)(mbtid_mix(&t->state) >> 48);
	while (id == t->last || id == (uint16_t)(t->last + 1));
	t->last = id;
	return id;
}
