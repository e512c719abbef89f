/*
 * test_codec: register images computed by hand, for every type in every byte and word
 * order, checked in both directions; plus mb_strerror and the reading allocation.
 * The expected arrays are written out literally so that a symmetric bug in decode and
 * encode cannot hide behind a round trip.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "codec.h"
#include "mberr.h"
#include "reading.h"

#define BIG ORDER_BIG
#define LIT ORDER_LITTLE

static struct point_def pt(enum mb_table t, enum pt_type type, int bo, int wo)
{
	struct point_def p;

	memset(&p, 0, sizeof p);
	strcpy(p.name, "p");
	p.table = t;
	p.address = 10;
	p.type = type;
	p.bit = -1;
	p.byte_order = (uint8_t)bo;
	p.word_order = (uint8_t)wo;
	p.scale = 1.0;
	p.offset = 0.0;
	return p;
}

/* --- exact integers and floats: one row per (type, byte order, word order) ------ */

struct image {
	enum pt_type type;
	int bo, wo;
	uint16_t regs[4];
	int kind;     /* VAL_INT, VAL_UINT, VAL_DOUBLE */
	int64_t i;
	uint64_t u;
	double d;
};

static const struct image images[] = {
	/* int16 -1 = 0xFFFF: the same in every order */
	{ PT_INT16, BIG, BIG, { 0xFFFF }, VAL_INT, -1, 0, 0 },
	{ PT_INT16, LIT, BIG, { 0xFFFF }, VAL_INT, -1, 0, 0 },
	/* int16 -2 = 0xFFFE */
	{ PT_INT16, BIG, BIG, { 0xFFFE }, VAL_INT, -2, 0, 0 },
	{ PT_INT16, BIG, LIT, { 0xFFFE }, VAL_INT, -2, 0, 0 },
	{ PT_INT16, LIT, BIG, { 0xFEFF }, VAL_INT, -2, 0, 0 },
	{ PT_INT16, LIT, LIT, { 0xFEFF }, VAL_INT, -2, 0, 0 },
	/* int16 extremes */
	{ PT_INT16, BIG, BIG, { 0x8000 }, VAL_INT, -32768, 0, 0 },
	{ PT_INT16, BIG, BIG, { 0x7FFF }, VAL_INT, 32767, 0, 0 },
	/* uint16 0xABCD = 43981 */
	{ PT_UINT16, BIG, BIG, { 0xABCD }, VAL_UINT, 0, 43981, 0 },
	{ PT_UINT16, BIG, LIT, { 0xABCD }, VAL_UINT, 0, 43981, 0 },
	{ PT_UINT16, LIT, BIG, { 0xCDAB }, VAL_UINT, 0, 43981, 0 },
	{ PT_UINT16, LIT, LIT, { 0xCDAB }, VAL_UINT, 0, 43981, 0 },
	/* int32 -2 = 0xFFFFFFFE */
	{ PT_INT32, BIG, BIG, { 0xFFFF, 0xFFFE }, VAL_INT, -2, 0, 0 },
	{ PT_INT32, BIG, LIT, { 0xFFFE, 0xFFFF }, VAL_INT, -2, 0, 0 },
	{ PT_INT32, LIT, BIG, { 0xFFFF, 0xFEFF }, VAL_INT, -2, 0, 0 },
	{ PT_INT32, LIT, LIT, { 0xFEFF, 0xFFFF }, VAL_INT, -2, 0, 0 },
	/* int32 0x01020304 = 16909060 */
	{ PT_INT32, BIG, BIG, { 0x0102, 0x0304 }, VAL_INT, 16909060, 0, 0 },
	{ PT_INT32, BIG, LIT, { 0x0304, 0x0102 }, VAL_INT, 16909060, 0, 0 },
	{ PT_INT32, LIT, BIG, { 0x0201, 0x0403 }, VAL_INT, 16909060, 0, 0 },
	{ PT_INT32, LIT, LIT, { 0x0403, 0x0201 }, VAL_INT, 16909060, 0, 0 },
	/* int32 minimum 0x80000000 */
	{ PT_INT32, BIG, BIG, { 0x8000, 0x0000 }, VAL_INT, INT32_MIN, 0, 0 },
	/* uint32 0xFFFFFFFE = 4294967294 (must not sign-extend) */
	{ PT_UINT32, BIG, BIG, { 0xFFFF, 0xFFFE }, VAL_UINT, 0, 4294967294u, 0 },
	{ PT_UINT32, BIG, LIT, { 0xFFFE, 0xFFFF }, VAL_UINT, 0, 4294967294u, 0 },
	{ PT_UINT32, LIT, BIG, { 0xFFFF, 0xFEFF }, VAL_UINT, 0, 4294967294u, 0 },
	{ PT_UINT32, LIT, LIT, { 0xFEFF, 0xFFFF }, VAL_UINT, 0, 4294967294u, 0 },
	/* uint32 0x01020304 */
	{ PT_UINT32, BIG, BIG, { 0x0102, 0x0304 }, VAL_UINT, 0, 16909060, 0 },
	{ PT_UINT32, BIG, LIT, { 0x0304, 0x0102 }, VAL_UINT, 0, 16909060, 0 },
	{ PT_UINT32, LIT, BIG, { 0x0201, 0x0403 }, VAL_UINT, 0, 16909060, 0 },
	{ PT_UINT32, LIT, LIT, { 0x0403, 0x0201 }, VAL_UINT, 0, 16909060, 0 },
	/* int64 -2 = 0xFFFFFFFFFFFFFFFE */
	{ PT_INT64, BIG, BIG, { 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE }, VAL_INT, -2, 0, 0 },
	{ PT_INT64, BIG, LIT, { 0xFFFE, 0xFFFF, 0xFFFF, 0xFFFF }, VAL_INT, -2, 0, 0 },
	{ PT_INT64, LIT, BIG, { 0xFFFF, 0xFFFF, 0xFFFF, 0xFEFF }, VAL_INT, -2, 0, 0 },
	{ PT_INT64, LIT, LIT, { 0xFEFF, 0xFFFF, 0xFFFF, 0xFFFF }, VAL_INT, -2, 0, 0 },
	/* int64 -0x0102030405060708 = 0xFEFDFCFBFAF9F8F8, beyond 2^53 */
	{ PT_INT64, BIG, BIG, { 0xFEFD, 0xFCFB, 0xFAF9, 0xF8F8 }, VAL_INT,
	  -72623859790382856, 0, 0 },
	{ PT_INT64, BIG, LIT, { 0xF8F8, 0xFAF9, 0xFCFB, 0xFEFD }, VAL_INT,
	  -72623859790382856, 0, 0 },
	{ PT_INT64, LIT, BIG, { 0xFDFE, 0xFBFC, 0xF9FA, 0xF8F8 }, VAL_INT,
	  -72623859790382856, 0, 0 },
	{ PT_INT64, LIT, LIT, { 0xF8F8, 0xF9FA, 0xFBFC, 0xFDFE }, VAL_INT,
	  -72623859790382856, 0, 0 },
	/* int64 extremes */
	{ PT_INT64, BIG, BIG, { 0x8000, 0x0000, 0x0000, 0x0000 }, VAL_INT, INT64_MIN, 0, 0 },
	{ PT_INT64, BIG, BIG, { 0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF }, VAL_INT, INT64_MAX, 0, 0 },
	/* uint64 0x0102030405060708 = 72623859790382856 */
	{ PT_UINT64, BIG, BIG, { 0x0102, 0x0304, 0x0506, 0x0708 }, VAL_UINT, 0,
	  72623859790382856u, 0 },
	{ PT_UINT64, BIG, LIT, { 0x0708, 0x0506, 0x0304, 0x0102 }, VAL_UINT, 0,
	  72623859790382856u, 0 },
	{ PT_UINT64, LIT, BIG, { 0x0201, 0x0403, 0x0605, 0x0807 }, VAL_UINT, 0,
	  72623859790382856u, 0 },
	{ PT_UINT64, LIT, LIT, { 0x0807, 0x0605, 0x0403, 0x0201 }, VAL_UINT, 0,
	  72623859790382856u, 0 },
	/* uint64 2^53 + 1 = 0x0020000000000001: a double would round it to 2^53 */
	{ PT_UINT64, BIG, BIG, { 0x0020, 0x0000, 0x0000, 0x0001 }, VAL_UINT, 0,
	  9007199254740993u, 0 },
	/* uint64 maximum */
	{ PT_UINT64, BIG, BIG, { 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF }, VAL_UINT, 0, UINT64_MAX, 0 },
	/* float32 1.0 = 0x3F800000 */
	{ PT_FLOAT32, BIG, BIG, { 0x3F80, 0x0000 }, VAL_DOUBLE, 0, 0, 1.0 },
	{ PT_FLOAT32, BIG, LIT, { 0x0000, 0x3F80 }, VAL_DOUBLE, 0, 0, 1.0 },
	{ PT_FLOAT32, LIT, BIG, { 0x803F, 0x0000 }, VAL_DOUBLE, 0, 0, 1.0 },
	{ PT_FLOAT32, LIT, LIT, { 0x0000, 0x803F }, VAL_DOUBLE, 0, 0, 1.0 },
	/* float32 -1234.5 = 0xC49A5000 */
	{ PT_FLOAT32, BIG, BIG, { 0xC49A, 0x5000 }, VAL_DOUBLE, 0, 0, -1234.5 },
	{ PT_FLOAT32, BIG, LIT, { 0x5000, 0xC49A }, VAL_DOUBLE, 0, 0, -1234.5 },
	{ PT_FLOAT32, LIT, BIG, { 0x9AC4, 0x0050 }, VAL_DOUBLE, 0, 0, -1234.5 },
	{ PT_FLOAT32, LIT, LIT, { 0x0050, 0x9AC4 }, VAL_DOUBLE, 0, 0, -1234.5 },
	/* float64 -1234.5 = 0xC0934A0000000000 */
	{ PT_FLOAT64, BIG, BIG, { 0xC093, 0x4A00, 0x0000, 0x0000 }, VAL_DOUBLE, 0, 0, -1234.5 },
	{ PT_FLOAT64, BIG, LIT, { 0x0000, 0x0000, 0x4A00, 0xC093 }, VAL_DOUBLE, 0, 0, -1234.5 },
	{ PT_FLOAT64, LIT, BIG, { 0x93C0, 0x004A, 0x0000, 0x0000 }, VAL_DOUBLE, 0, 0, -1234.5 },
	{ PT_FLOAT64, LIT, LIT, { 0x0000, 0x0000, 0x004A, 0x93C0 }, VAL_DOUBLE, 0, 0, -1234.5 },
	/* float64 0.1 = 0x3FB999999999999A: every bit of the mantissa matters */
	{ PT_FLOAT64, BIG, BIG, { 0x3FB9, 0x9999, 0x9999, 0x999A }, VAL_DOUBLE, 0, 0, 0.1 },
	{ PT_FLOAT64, LIT, LIT, { 0x9A99, 0x9999, 0x9999, 0xB93F }, VAL_DOUBLE, 0, 0, 0.1 },
};

static void test_images_decode(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof images / sizeof images[0]; k++) {
		const struct image *im = &images[k];
		struct point_def p = pt(MB_HOLDING, im->type, im->bo, im->wo);
		struct value v;

		bool same;

		if (codec_decode_regs(&p, im->regs, &v, NULL, 0) != 0 || v.kind != im->kind)
			fail_msg("row %zu: decode failed or kind %d", k, v.kind);
		if (im->kind == VAL_INT)
			same = v.v.i == im->i;
		else if (im->kind == VAL_UINT)
			same = v.v.u == im->u;
		else /* exact: these values are representable in both float widths */
			same = v.v.d == im->d;
		if (!same)
			fail_msg("row %zu: decoded to i=%lld u=%llu d=%.17g", k, (long long)v.v.i,
				 (unsigned long long)v.v.u, v.v.d);
	}
}

static void test_images_encode(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof images / sizeof images[0]; k++) {
		const struct image *im = &images[k];
		struct point_def p = pt(MB_HOLDING, im->type, im->bo, im->wo);
		uint16_t regs[4] = { 0x5555, 0x5555, 0x5555, 0x5555 };
		int n = codec_type_regs(im->type);
		int rc;

		if (im->kind == VAL_INT)
			rc = codec_encode_int(&p, im->i, regs);
		else if (im->kind == VAL_UINT)
			rc = codec_encode_uint(&p, im->u, regs);
		else
			rc = codec_encode_regs(&p, im->d, regs);
		if (rc != n || memcmp(regs, im->regs, (size_t)n * sizeof regs[0]) != 0)
			fail_msg("row %zu: rc %d, regs %04x %04x %04x %04x", k, rc, regs[0], regs[1],
				 regs[2], regs[3]);
		for (int i = n; i < 4; i++)
			assert_int_equal(regs[i], 0x5555); /* nothing written past the point */

		/* through a double, wherever the double holds the value exactly */
		if (im->kind == VAL_INT && im->i > -(INT64_C(1) << 53) && im->i < (INT64_C(1) << 53)) {
			memset(regs, 0, sizeof regs);
			assert_int_equal(codec_encode_regs(&p, (double)im->i, regs), n);
			assert_memory_equal(regs, im->regs, (size_t)n * sizeof regs[0]);
		}
		if (im->kind == VAL_UINT && im->u < (UINT64_C(1) << 53)) {
			memset(regs, 0, sizeof regs);
			assert_int_equal(codec_encode_regs(&p, (double)im->u, regs), n);
			assert_memory_equal(regs, im->regs, (size_t)n * sizeof regs[0]);
		}
	}
}

/* A value that a double cannot hold must not pass through one on the way out. */
static void test_exact_beyond_2_53(void **state)
{
	struct point_def p = pt(MB_INPUT, PT_UINT64, BIG, BIG);
	const uint16_t r1[4] = { 0x0020, 0x0000, 0x0000, 0x0001 };
	const uint16_t r2[4] = { 0x0020, 0x0000, 0x0000, 0x0002 };
	struct value a, b;

	(void)state;
	assert_true(codec_is_exact(&p));
	assert_int_equal(codec_decode_regs(&p, r1, &a, NULL, 0), 0);
	assert_int_equal(codec_decode_regs(&p, r2, &b, NULL, 0), 0);
	assert_int_equal(a.kind, VAL_UINT);
	assert_true(b.v.u - a.v.u == 1);

	struct point_def q = pt(MB_INPUT, PT_INT64, BIG, BIG);
	const uint16_t r3[4] = { 0xFFDF, 0xFFFF, 0xFFFF, 0xFFFF }; /* -(2^53) - 1 */
	assert_int_equal(codec_decode_regs(&q, r3, &a, NULL, 0), 0);
	assert_int_equal(a.kind, VAL_INT);
	assert_true(a.v.i == -9007199254740993);
}

/* --- bool ------------------------------------------------------------------------ */

static void test_bool_from_bit_table(void **state)
{
	struct point_def c = pt(MB_COIL, PT_BOOL, BIG, BIG);
	struct point_def d = pt(MB_DISCRETE, PT_BOOL, BIG, BIG);
	struct value v;
	uint16_t r = 1;

	(void)state;
	codec_decode_bit(&c, 1, &v);
	assert_int_equal(v.kind, VAL_BOOL);
	assert_true(v.v.b);
	codec_decode_bit(&c, 0, &v);
	assert_int_equal(v.kind, VAL_BOOL);
	assert_false(v.v.b);
	codec_decode_bit(&d, 1, &v);
	assert_true(v.v.b);
	/* bits are not registers */
	assert_int_equal(codec_decode_regs(&c, &r, &v, NULL, 0), -1);
	assert_int_equal(v.kind, VAL_NONE);
	assert_int_equal(v.err, MBE_UNSUPPORTED);
	errno = 0;
	assert_int_equal(codec_encode_regs(&c, 1, &r), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(codec_width(&c), 1);
}

static void test_bool_each_bit(void **state)
{
	(void)state;
	for (int bit = 0; bit < 16; bit++) {
		for (int other = 0; other < 16; other++) {
			struct point_def p = pt(MB_HOLDING, PT_BOOL, BIG, BIG);
			uint16_t only = (uint16_t)(1u << bit);
			uint16_t allbut = (uint16_t)~only;
			struct value v;

			p.bit = (int8_t)other;
			assert_int_equal(codec_decode_regs(&p, &only, &v, NULL, 0), 0);
			assert_int_equal(v.kind, VAL_BOOL);
			assert_int_equal(v.v.b, other == bit);
			assert_int_equal(codec_decode_regs(&p, &allbut, &v, NULL, 0), 0);
			assert_int_equal(v.v.b, other != bit);
		}
	}
}

static void test_bool_bits_hand(void **state)
{
	struct point_def p = pt(MB_HOLDING, PT_BOOL, BIG, BIG);
	const uint16_t reg = 0x8001; /* bits 15 and 0 */
	struct value v;

	(void)state;
	p.bit = 0;
	codec_decode_regs(&p, &reg, &v, NULL, 0);
	assert_true(v.v.b);
	p.bit = 1;
	codec_decode_regs(&p, &reg, &v, NULL, 0);
	assert_false(v.v.b);
	p.bit = 15;
	codec_decode_regs(&p, &reg, &v, NULL, 0);
	assert_true(v.v.b);
	p.bit = 8;
	codec_decode_regs(&p, &reg, &v, NULL, 0);
	assert_false(v.v.b);

	/* byte_order little: the register's value is 0x0180, so bits 8 and 7 */
	p.byte_order = LIT;
	p.bit = 8;
	codec_decode_regs(&p, &reg, &v, NULL, 0);
	assert_true(v.v.b);
	p.bit = 7;
	codec_decode_regs(&p, &reg, &v, NULL, 0);
	assert_true(v.v.b);
	p.bit = 0;
	codec_decode_regs(&p, &reg, &v, NULL, 0);
	assert_false(v.v.b);
}

static void test_bool_whole_register(void **state)
{
	struct point_def p = pt(MB_INPUT, PT_BOOL, BIG, BIG);
	const uint16_t zero = 0, some = 0x0100;
	uint16_t r;
	struct value v;

	(void)state;
	codec_decode_regs(&p, &zero, &v, NULL, 0);
	assert_int_equal(v.kind, VAL_BOOL);
	assert_false(v.v.b);
	codec_decode_regs(&p, &some, &v, NULL, 0);
	assert_true(v.v.b);
	assert_true(codec_is_exact(&p));

	assert_int_equal(codec_encode_regs(&p, 1.0, &r), 1);
	assert_int_equal(r, 0x0001);
	assert_int_equal(codec_encode_regs(&p, 0.0, &r), 1);
	assert_int_equal(r, 0x0000);
	errno = 0;
	assert_int_equal(codec_encode_regs(&p, NAN, &r), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(codec_encode_int(&p, 2, &r), -1);
	assert_int_equal(errno, ERANGE);
}

static void test_set_bit(void **state)
{
	struct point_def p = pt(MB_HOLDING, PT_BOOL, BIG, BIG);
	uint16_t reg = 0x00F0;

	(void)state;
	p.bit = 0;
	codec_set_bit(&p, true, &reg);
	assert_int_equal(reg, 0x00F1);
	p.bit = 4;
	codec_set_bit(&p, false, &reg);
	assert_int_equal(reg, 0x00E1);
	p.bit = 15;
	codec_set_bit(&p, true, &reg);
	assert_int_equal(reg, 0x80E1);
	codec_set_bit(&p, true, &reg); /* idempotent */
	assert_int_equal(reg, 0x80E1);

	/* little byte order: logical bit 0 is the low bit of the wire's second byte */
	p.byte_order = LIT;
	p.bit = 0;
	reg = 0x0000;
	codec_set_bit(&p, true, &reg);
	assert_int_equal(reg, 0x0100);

	/* a bool with a bit cannot be written without reading its register first */
	p.byte_order = BIG;
	errno = 0;
	assert_int_equal(codec_encode_regs(&p, 1, &reg), -1);
	assert_int_equal(errno, EINVAL);
}

/* --- strings ----------------------------------------------------------------------- */

static void test_string_big(void **state)
{
	struct point_def p = pt(MB_HOLDING, PT_STRING, BIG, BIG);
	const uint16_t regs[3] = { 0x4865, 0x6C6C, 0x6F00 }; /* "Hello" + NUL */
	char buf[32];
	struct value v;

	(void)state;
	p.length = 3;
	assert_int_equal(codec_width(&p), 3);
	assert_int_equal(codec_decode_regs(&p, regs, &v, buf, sizeof buf), 0);
	assert_int_equal(v.kind, VAL_STRING);
	assert_ptr_equal(v.s, buf);
	assert_string_equal(v.s, "Hello");
}

static void test_string_odd_and_swapped(void **state)
{
	struct point_def p = pt(MB_HOLDING, PT_STRING, LIT, BIG);
	/* "ABC" with byte_order little: each pair swapped on the wire */
	const uint16_t regs[2] = { 0x4241, 0x0043 };
	char buf[32];
	struct value v;

	(void)state;
	p.length = 2;
	assert_int_equal(codec_decode_regs(&p, regs, &v, buf, sizeof buf), 0);
	assert_string_equal(v.s, "ABC");

	/* the same text, big order */
	const uint16_t big[2] = { 0x4142, 0x4300 };
	p.byte_order = BIG;
	assert_int_equal(codec_decode_regs(&p, big, &v, buf, sizeof buf), 0);
	assert_string_equal(v.s, "ABC");

	/* word order does not apply to strings */
	p.word_order = LIT;
	assert_int_equal(codec_decode_regs(&p, big, &v, buf, sizeof buf), 0);
	assert_string_equal(v.s, "ABC");
}

static void test_string_trim(void **state)
{
	struct point_def p = pt(MB_INPUT, PT_STRING, BIG, BIG);
	/* "AB C" then spaces and NULs */
	const uint16_t regs[5] = { 0x4142, 0x2043, 0x2020, 0x2000, 0x0000 };
	const uint16_t blank[2] = { 0x2020, 0x0000 };
	const uint16_t full[2] = { 0x5758, 0x595A };
	char buf[32];
	struct value v;

	(void)state;
	p.length = 5;
	assert_int_equal(codec_decode_regs(&p, regs, &v, buf, sizeof buf), 0);
	assert_string_equal(v.s, "AB C");
	p.length = 2;
	assert_int_equal(codec_decode_regs(&p, blank, &v, buf, sizeof buf), 0);
	assert_string_equal(v.s, "");
	assert_int_equal(codec_decode_regs(&p, full, &v, buf, sizeof buf), 0);
	assert_string_equal(v.s, "WXYZ");
}

static void test_string_cap_and_utf8(void **state)
{
	struct point_def p = pt(MB_HOLDING, PT_STRING, BIG, BIG);
	/* "水位" in UTF-8: E6 B0 B4 E4 BD 8D, bytes passed through as they are */
	const uint16_t regs[3] = { 0xE6B0, 0xB4E4, 0xBD8D };
	const uint16_t abcd[2] = { 0x4142, 0x4344 };
	char buf[32];
	struct value v;

	(void)state;
	p.length = 3;
	assert_int_equal(codec_decode_regs(&p, regs, &v, buf, sizeof buf), 0);
	assert_string_equal(v.s, "\xe6\xb0\xb4\xe4\xbd\x8d");

	/* strcap 3: two bytes and the NUL, never more */
	memset(buf, 'x', sizeof buf);
	p.length = 2;
	assert_int_equal(codec_decode_regs(&p, abcd, &v, buf, 3), 0);
	assert_string_equal(v.s, "AB");
	assert_int_equal(buf[3], 'x');
	memset(buf, 'x', sizeof buf);
	assert_int_equal(codec_decode_regs(&p, abcd, &v, buf, 4), 0);
	assert_string_equal(v.s, "ABC");
	assert_int_equal(buf[4], 'x');
	assert_int_equal(codec_decode_regs(&p, abcd, &v, buf, 1), 0);
	assert_string_equal(v.s, "");

	/* nowhere to put it */
	assert_int_equal(codec_decode_regs(&p, abcd, &v, NULL, 0), -1);
	assert_int_equal(v.kind, VAL_NONE);

	/* strings are read-only */
	uint16_t out[2];
	errno = 0;
	assert_int_equal(codec_encode_regs(&p, 1, out), -1);
	assert_int_equal(errno, EINVAL);
}

/* --- scale and offset ---------------------------------------------------------------- */

static void test_scale_offset(void **state)
{
	struct point_def p = pt(MB_INPUT, PT_UINT16, BIG, BIG);
	const uint16_t r1234 = 0x04D2;
	const uint16_t rm2 = 0xFFFE;
	struct value v;
	uint16_t r;

	(void)state;
	p.scale = 0.1;
	p.offset = -10.0;
	assert_false(codec_is_exact(&p));
	assert_int_equal(codec_decode_regs(&p, &r1234, &v, NULL, 0), 0);
	assert_int_equal(v.kind, VAL_DOUBLE);
	assert_true(fabs(v.v.d - 113.4) < 1e-9);
	assert_int_equal(codec_encode_regs(&p, 113.4, &r), 1);
	assert_int_equal(r, 0x04D2);

	/* integer-valued scale still makes a double: the VAL_INT promise is "raw" */
	struct point_def q = pt(MB_HOLDING, PT_INT16, BIG, BIG);
	q.scale = 2.0;
	assert_false(codec_is_exact(&q));
	assert_int_equal(codec_decode_regs(&q, &rm2, &v, NULL, 0), 0);
	assert_int_equal(v.kind, VAL_DOUBLE);
	assert_true(v.v.d == -4.0);
	assert_int_equal(codec_encode_regs(&q, -4.0, &r), 1);
	assert_int_equal(r, 0xFFFE);

	/* offset alone */
	q.scale = 1.0;
	q.offset = 0.5;
	assert_int_equal(codec_decode_regs(&q, &rm2, &v, NULL, 0), 0);
	assert_int_equal(v.kind, VAL_DOUBLE);
	assert_true(v.v.d == -1.5);

	/* floats keep their scale too */
	struct point_def f = pt(MB_HOLDING, PT_FLOAT32, BIG, BIG);
	const uint16_t one[2] = { 0x3F80, 0x0000 };
	f.scale = 1000.0;
	f.offset = 1.0;
	assert_int_equal(codec_decode_regs(&f, one, &v, NULL, 0), 0);
	assert_true(v.v.d == 1001.0);
	uint16_t out[2];
	assert_int_equal(codec_encode_regs(&f, 1001.0, out), 2);
	assert_memory_equal(out, one, sizeof one);

	/* 32-bit with a scale, word little: 0x000186A0 = 100000, * 0.01 = 1000 */
	struct point_def w = pt(MB_HOLDING, PT_UINT32, BIG, LIT);
	const uint16_t img[2] = { 0x86A0, 0x0001 };
	w.scale = 0.01;
	assert_int_equal(codec_decode_regs(&w, img, &v, NULL, 0), 0);
	assert_int_equal(v.kind, VAL_DOUBLE);
	assert_true(fabs(v.v.d - 1000.0) < 1e-9);
	assert_int_equal(codec_encode_regs(&w, 1000.0, out), 2);
	assert_memory_equal(out, img, sizeof img);
}

/* --- round trips and range ------------------------------------------------------------- */

static void test_round_trips(void **state)
{
	static const enum pt_type types[] = { PT_INT16, PT_UINT16, PT_INT32, PT_UINT32, PT_INT64,
					      PT_UINT64, PT_FLOAT32, PT_FLOAT64 };
	static const double values[] = { 0, 1, 2, 100, 1234, 32767, 65535 };

	(void)state;
	for (size_t t = 0; t < sizeof types / sizeof types[0]; t++)
		for (int bo = 0; bo < 2; bo++)
			for (int wo = 0; wo < 2; wo++)
				for (size_t k = 0; k < sizeof values / sizeof values[0]; k++) {
					struct point_def p = pt(MB_HOLDING, types[t], bo, wo);
					double x = values[k];
					uint16_t regs[4];
					struct value v;

					if (types[t] == PT_INT16 && x > 32767)
						continue;
					/* scaled: 0.5 steps survive every type exactly */
					p.scale = 0.5;
					p.offset = 3.0;
					x = x * 0.5 + 3.0;
					assert_int_equal(codec_encode_regs(&p, x, regs),
							 codec_type_regs(types[t]));
					assert_int_equal(codec_decode_regs(&p, regs, &v, NULL, 0), 0);
					assert_int_equal(v.kind, VAL_DOUBLE);
					assert_true(v.v.d == x);
				}
}

static void test_rounding(void **state)
{
	struct point_def p = pt(MB_HOLDING, PT_INT16, BIG, BIG);
	uint16_t r;

	(void)state;
	assert_int_equal(codec_encode_regs(&p, 2.4, &r), 1);
	assert_int_equal(r, 2);
	assert_int_equal(codec_encode_regs(&p, 2.6, &r), 1);
	assert_int_equal(r, 3);
	assert_int_equal(codec_encode_regs(&p, -2.6, &r), 1);
	assert_int_equal(r, 0xFFFD);
	p.scale = 0.01;
	assert_int_equal(codec_encode_regs(&p, 12.34, &r), 1); /* 1233.9999... -> 1234 */
	assert_int_equal(r, 1234);
	/* rounds into range */
	assert_int_equal(codec_encode_regs(&p, 327.674, &r), 1);
	assert_int_equal(r, 32767);
}

static void expect_range(const struct point_def *p, double x)
{
	uint16_t regs[4] = { 0x5555, 0x5555, 0x5555, 0x5555 };

	errno = 0;
	assert_int_equal(codec_encode_regs(p, x, regs), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(regs[0], 0x5555);
}

static void test_range_errors(void **state)
{
	struct point_def p;
	uint16_t regs[4];

	(void)state;
	p = pt(MB_HOLDING, PT_INT16, BIG, BIG);
	expect_range(&p, 32768);
	expect_range(&p, 32767.5); /* rounds to 32768 */
	expect_range(&p, -32769);
	expect_range(&p, NAN);
	expect_range(&p, INFINITY);
	expect_range(&p, -INFINITY);
	p = pt(MB_HOLDING, PT_UINT16, BIG, BIG);
	expect_range(&p, -1);
	expect_range(&p, 65536);
	assert_int_equal(codec_encode_regs(&p, -0.4, regs), 1); /* rounds to 0 */
	assert_int_equal(regs[0], 0);
	p = pt(MB_HOLDING, PT_INT32, BIG, BIG);
	expect_range(&p, 2147483648.0);
	expect_range(&p, -2147483649.0);
	p = pt(MB_HOLDING, PT_UINT32, BIG, BIG);
	expect_range(&p, 4294967296.0);
	expect_range(&p, -1);
	p = pt(MB_HOLDING, PT_INT64, BIG, BIG);
	expect_range(&p, 9223372036854775808.0); /* 2^63 */
	expect_range(&p, -9223372036854777856.0); /* the double after -2^63 */
	assert_int_equal(codec_encode_regs(&p, -9223372036854775808.0, regs), 4);
	assert_int_equal(regs[0], 0x8000);
	p = pt(MB_HOLDING, PT_UINT64, BIG, BIG);
	expect_range(&p, 18446744073709551616.0); /* 2^64 */
	expect_range(&p, -1);
	assert_int_equal(codec_encode_regs(&p, 18446744073709549568.0, regs), 4); /* 2^64-2048 */
	assert_int_equal(regs[0], 0xFFFF);
	assert_int_equal(regs[3], 0xF800);
	/* a zero scale makes every value unreachable */
	p = pt(MB_HOLDING, PT_UINT16, BIG, BIG);
	p.scale = 0;
	expect_range(&p, 5);
	/* float32 cannot hold 1e39 and must not turn it into infinity */
	p = pt(MB_HOLDING, PT_FLOAT32, BIG, BIG);
	expect_range(&p, 1e39);

	/* exact encoders check their ranges too */
	p = pt(MB_HOLDING, PT_INT16, BIG, BIG);
	errno = 0;
	assert_int_equal(codec_encode_int(&p, 32768, regs), -1);
	assert_int_equal(errno, ERANGE);
	p = pt(MB_HOLDING, PT_UINT64, BIG, BIG);
	assert_int_equal(codec_encode_int(&p, -1, regs), -1);
	p = pt(MB_HOLDING, PT_UINT32, BIG, BIG);
	assert_int_equal(codec_encode_uint(&p, UINT64_MAX, regs), -1);
	assert_int_equal(errno, ERANGE);
	assert_int_equal(codec_encode_int(&p, 4294967295, regs), 2);
	assert_int_equal(regs[0], 0xFFFF);
	assert_int_equal(regs[1], 0xFFFF);
}

static void test_nonfinite_floats(void **state)
{
	struct point_def f = pt(MB_HOLDING, PT_FLOAT32, BIG, BIG);
	struct point_def d = pt(MB_HOLDING, PT_FLOAT64, BIG, BIG);
	const uint16_t nan32[2] = { 0x7FC0, 0x0000 };
	const uint16_t inf32[2] = { 0x7F80, 0x0000 };
	const uint16_t ninf64[4] = { 0xFFF0, 0x0000, 0x0000, 0x0000 };
	const uint16_t nan64[4] = { 0x7FF8, 0x0000, 0x0000, 0x0001 };
	uint16_t regs[4];
	struct value v;

	(void)state;
	assert_int_equal(codec_decode_regs(&f, nan32, &v, NULL, 0), 0);
	assert_int_equal(v.kind, VAL_DOUBLE);
	assert_true(isnan(v.v.d));
	assert_int_equal(codec_decode_regs(&f, inf32, &v, NULL, 0), 0);
	assert_true(isinf(v.v.d) && v.v.d > 0);
	assert_int_equal(codec_decode_regs(&d, ninf64, &v, NULL, 0), 0);
	assert_true(isinf(v.v.d) && v.v.d < 0);
	assert_int_equal(codec_decode_regs(&d, nan64, &v, NULL, 0), 0);
	assert_true(isnan(v.v.d));

	/* a scaled float keeps NaN as NaN */
	f.scale = 10;
	f.offset = 1;
	assert_int_equal(codec_decode_regs(&f, nan32, &v, NULL, 0), 0);
	assert_true(isnan(v.v.d));
	f.scale = 1;
	f.offset = 0;

	/* and they encode (a simulator serves them) */
	assert_int_equal(codec_encode_regs(&f, INFINITY, regs), 2);
	assert_memory_equal(regs, inf32, sizeof inf32);
	assert_int_equal(codec_encode_regs(&d, -INFINITY, regs), 4);
	assert_memory_equal(regs, ninf64, sizeof ninf64);
	assert_int_equal(codec_encode_regs(&f, NAN, regs), 2);
	assert_int_equal(codec_decode_regs(&f, regs, &v, NULL, 0), 0);
	assert_true(isnan(v.v.d));
}

/* --- widths, names --------------------------------------------------------------------- */

static void test_widths_and_exact(void **state)
{
	struct point_def p;

	(void)state;
	assert_int_equal(codec_type_regs(PT_BOOL), 1);
	assert_int_equal(codec_type_regs(PT_INT16), 1);
	assert_int_equal(codec_type_regs(PT_UINT16), 1);
	assert_int_equal(codec_type_regs(PT_INT32), 2);
	assert_int_equal(codec_type_regs(PT_UINT32), 2);
	assert_int_equal(codec_type_regs(PT_FLOAT32), 2);
	assert_int_equal(codec_type_regs(PT_INT64), 4);
	assert_int_equal(codec_type_regs(PT_UINT64), 4);
	assert_int_equal(codec_type_regs(PT_FLOAT64), 4);
	p = pt(MB_HOLDING, PT_STRING, BIG, BIG);
	p.length = 7;
	assert_int_equal(codec_width(&p), 7);
	p = pt(MB_INPUT, PT_FLOAT64, BIG, BIG);
	assert_int_equal(codec_width(&p), 4);
	assert_false(codec_is_exact(&p));
	p = pt(MB_INPUT, PT_INT32, BIG, BIG);
	assert_true(codec_is_exact(&p));
	p = pt(MB_DISCRETE, PT_BOOL, BIG, BIG);
	assert_int_equal(codec_width(&p), 1);
	assert_true(codec_is_exact(&p));
}

static void test_names(void **state)
{
	static const char *const types[] = { "bool", "int16", "uint16", "int32", "uint32",
					     "int64", "uint64", "float32", "float64", "string" };
	static const char *const tables[] = { "coil", "discrete", "input", "holding" };

	(void)state;
	for (int i = 0; i < 10; i++) {
		assert_string_equal(codec_type_name((enum pt_type)i), types[i]);
		assert_int_equal(codec_type_from_name(types[i]), i);
	}
	for (int i = 0; i < 4; i++) {
		assert_string_equal(codec_table_name((enum mb_table)i), tables[i]);
		assert_int_equal(codec_table_from_name(tables[i]), i);
	}
	assert_int_equal(codec_type_from_name("float"), -1);
	assert_int_equal(codec_type_from_name("Int16"), -1);
	assert_int_equal(codec_type_from_name(""), -1);
	assert_int_equal(codec_type_from_name(NULL), -1);
	assert_int_equal(codec_table_from_name("coils"), -1);
	assert_null(codec_type_name((enum pt_type)10));
	assert_null(codec_table_name((enum mb_table)4));
}

/* --- mberr ------------------------------------------------------------------------------- */

static void test_strerror(void **state)
{
	(void)state;
	assert_string_equal(mb_strerror(MBE_TIMEOUT), "timeout");
	assert_string_equal(mb_strerror(MBE_CONNECT), "connection failed");
	assert_string_equal(mb_strerror(MBE_CLOSED), "connection closed");
	assert_string_equal(mb_strerror(MBE_PROTO), "malformed reply");
	assert_string_equal(mb_strerror(MBE_BAD_CRC), "CRC error");
	assert_string_equal(mb_strerror(MBE_WRONG_UNIT), "reply from another unit");
	assert_string_equal(mb_strerror(MBE_IO), "i/o error");
	assert_string_equal(mb_strerror(MBE_UNSUPPORTED), "unsupported");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 1), "illegal function");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 2), "illegal data address");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 3), "illegal data value");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 4), "server device failure");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 5), "acknowledge");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 6), "server device busy");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 8), "memory parity error");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 0x0A), "gateway path unavailable");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 0x0B), "gateway target failed to respond");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 7), "exception 7");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 0x0C), "exception 12");
	assert_string_equal(mb_strerror(MBE_EXC_BASE + 255), "exception 255");
	assert_non_null(mb_strerror(-1));
	assert_non_null(mb_strerror(99));
}

/* --- reading ---------------------------------------------------------------------------- */

static void test_reading(void **state)
{
	struct reading *r = reading_new(7, 3, 10);
	char *a, *b;

	(void)state;
	assert_non_null(r);
	assert_int_equal(r->device, 7);
	assert_int_equal(r->nvalues, 3);
	assert_int_equal(r->strcap, 10);
	assert_int_equal(r->strused, 0);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(r->values[i].kind, VAL_NONE);
		assert_int_equal(r->values[i].err, MBE_TIMEOUT);
	}
	/* strings live inside the block, after the values */
	assert_true(r->strings >= (char *)&r->values[3]);
	a = reading_strbuf(r, 6);
	assert_non_null(a);
	b = reading_strbuf(r, 4);
	assert_ptr_equal(b, a + 6);
	assert_null(reading_strbuf(r, 1));
	assert_null(reading_strbuf(r, 0));
	memset(a, 'x', 6);
	memset(b, 'y', 4);

	/* a string decoded straight into the reading */
	struct point_def p = pt(MB_HOLDING, PT_STRING, BIG, BIG);
	const uint16_t regs[2] = { 0x4F4B, 0x2121 };
	p.length = 2;
	assert_int_equal(codec_decode_regs(&p, regs, &r->values[0], b, 4), 0);
	assert_string_equal(r->values[0].s, "OK!");
	reading_free(r);

	r = reading_new(0, 0, 0);
	assert_non_null(r);
	assert_null(reading_strbuf(r, 1));
	reading_free(r);
	reading_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_images_decode),
		cmocka_unit_test(test_images_encode),
		cmocka_unit_test(test_exact_beyond_2_53),
		cmocka_unit_test(test_bool_from_bit_table),
		cmocka_unit_test(test_bool_each_bit),
		cmocka_unit_test(test_bool_bits_hand),
		cmocka_unit_test(test_bool_whole_register),
		cmocka_unit_test(test_set_bit),
		cmocka_unit_test(test_string_big),
		cmocka_unit_test(test_string_odd_and_swapped),
		cmocka_unit_test(test_string_trim),
		cmocka_unit_test(test_string_cap_and_utf8),
		cmocka_unit_test(test_scale_offset),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_rounding),
		cmocka_unit_test(test_range_errors),
		cmocka_unit_test(test_nonfinite_floats),
		cmocka_unit_test(test_widths_and_exact),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_strerror),
		cmocka_unit_test(test_reading),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
