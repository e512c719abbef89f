/*
 * fuzz: what every target in tests/fuzz shares. Each fuzz_NAME.c defines
 * LLVMFuzzerTestOneInput over one parser of outside input; it is linked either with
 * libFuzzer (tests/fuzz/run --fuzz) or with replay_main.c (run --replay, make check).
 * A target must never exit or keep state between inputs beyond what it sets up once;
 * a broken invariant is reported with fuzz_fail, which aborts so the input is kept.
 */
#ifndef SLUICE_FUZZ_H
#define SLUICE_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define fuzz_fail(...) \
	do { \
		fprintf(stderr, "fuzz invariant broken at %s:%d: ", __FILE__, __LINE__); \
		fprintf(stderr, __VA_ARGS__); \
		fputc('\n', stderr); \
		abort(); \
	} while (0)

#define fuzz_check(cond) \
	do { \
		if (!(cond)) \
			fuzz_fail("%s", #cond); \
	} while (0)

/* Take bytes off the front of the input; zeros once it is used up. */
struct fuzz_in {
	const uint8_t *p;
	size_t n;
};

static inline uint8_t fuzz_u8(struct fuzz_in *in)
{
	uint8_t b = 0;

	if (in->n) {
		b = *in->p++;
		in->n--;
	}
	return b;
}

static inline uint16_t fuzz_u16(struct fuzz_in *in)
{
	uint16_t hi = fuzz_u8(in);

	return (uint16_t)(hi << 8 | fuzz_u8(in));
}

#endif
