/*
 * test_plan: which requests a device's points turn into. Each case states the
 * requests and every point's (request, offset) in full, so a plan that reads the
 * right registers under the wrong slot fails too.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mbpdu.h"
#include "plan.h"

static struct point_def P(enum mb_table t, uint16_t addr, enum pt_type type)
{
	struct point_def p;

	memset(&p, 0, sizeof p);
	snprintf(p.name, sizeof p.name, "p%u", addr);
	p.table = t;
	p.address = addr;
	p.type = type;
	p.bit = -1;
	p.scale = 1.0;
	return p;
}

static struct point_def S(enum mb_table t, uint16_t addr, uint16_t len)
{
	struct point_def p = P(t, addr, PT_STRING);
	p.length = len;
	return p;
}

static struct point_def B(uint16_t addr, int bit)
{
	struct point_def p = P(MB_HOLDING, addr, PT_BOOL);
	p.bit = (int8_t)bit;
	return p;
}

static void expect_req(const struct read_plan *pl, size_t i, enum mb_table t, uint16_t start,
		       uint16_t count)
{
	assert_true(i < pl->nreqs);
	assert_int_equal(pl->reqs[i].table, t);
	assert_int_equal(pl->reqs[i].start, start);
	assert_int_equal(pl->reqs[i].count, count);
}

static void expect_slot(const struct read_plan *pl, size_t i, uint16_t req, uint16_t offset)
{
	assert_true(i < pl->npoints);
	assert_int_equal(pl->slots[i].req, req);
	assert_int_equal(pl->slots[i].offset, offset);
}

/* Whatever the plan, every point must lie inside its request, and no request may
 * exceed the protocol's limits. */
static void check_invariants(const struct point_def *pts, size_t n, const struct read_plan *pl)
{
	assert_int_equal(pl->npoints, n);
	for (size_t i = 0; i < pl->nreqs; i++) {
		const struct plan_req *r = &pl->reqs[i];
		unsigned max = (r->table == MB_COIL || r->table == MB_DISCRETE) ? MB_MAX_READ_BITS
										: MB_MAX_READ_REGS;
		assert_true(r->count >= 1 && r->count <= max);
		assert_true((unsigned)r->start + r->count <= 0x10000);
	}
	for (size_t i = 0; i < n; i++) {
		const struct plan_slot *s = &pl->slots[i];
		assert_true(s->req < pl->nreqs);
		const struct plan_req *r = &pl->reqs[s->req];
		assert_int_equal(r->table, pts[i].table);
		assert_int_equal(r->start + s->offset, pts[i].address);
		assert_true((unsigned)s->offset + codec_width(&pts[i]) <= r->count);
	}
}

static void build(const struct point_def *pts, size_t n, unsigned max_regs, unsigned max_gap,
		  struct read_plan *pl)
{
	assert_int_equal(plan_build(pts, n, max_regs, max_gap, pl), 0);
	check_invariants(pts, n, pl);
}

static void test_empty(void **state)
{
	struct read_plan pl;

	(void)state;
	assert_int_equal(plan_build(NULL, 0, 125, 0, &pl), 0);
	assert_int_equal(pl.nreqs, 0);
	assert_int_equal(pl.npoints, 0);
	plan_free(&pl);
	plan_free(&pl); /* twice is harmless */
}

static void test_merge_adjacent(void **state)
{
	/* 0: uint16, 1-2: float32, 3-6: float64, 7: int16 -> one read of 8 */
	const struct point_def pts[] = {
		P(MB_HOLDING, 0, PT_UINT16),
		P(MB_HOLDING, 1, PT_FLOAT32),
		P(MB_HOLDING, 3, PT_FLOAT64),
		P(MB_HOLDING, 7, PT_INT16),
	};
	struct read_plan pl;

	(void)state;
	build(pts, 4, 125, 0, &pl);
	assert_int_equal(pl.nreqs, 1);
	expect_req(&pl, 0, MB_HOLDING, 0, 8);
	expect_slot(&pl, 0, 0, 0);
	expect_slot(&pl, 1, 0, 1);
	expect_slot(&pl, 2, 0, 3);
	expect_slot(&pl, 3, 0, 7);
	plan_free(&pl);
}

static void test_gap(void **state)
{
	/* 10-11, then a hole of 3 (12..14), then 15 */
	const struct point_def pts[] = {
		P(MB_INPUT, 10, PT_UINT32),
		P(MB_INPUT, 15, PT_UINT16),
	};
	struct read_plan pl;

	(void)state;
	build(pts, 2, 125, 0, &pl);
	assert_int_equal(pl.nreqs, 2);
	expect_req(&pl, 0, MB_INPUT, 10, 2);
	expect_req(&pl, 1, MB_INPUT, 15, 1);
	plan_free(&pl);

	build(pts, 2, 125, 2, &pl); /* hole of 3 > 2 */
	assert_int_equal(pl.nreqs, 2);
	plan_free(&pl);

	build(pts, 2, 125, 3, &pl); /* hole of 3 is read through */
	assert_int_equal(pl.nreqs, 1);
	expect_req(&pl, 0, MB_INPUT, 10, 6);
	expect_slot(&pl, 0, 0, 0);
	expect_slot(&pl, 1, 0, 5);
	plan_free(&pl);
}

static void test_overlap(void **state)
{
	/* overlapping ranges (which config rejects for real devices) still plan sanely */
	const struct point_def pts[] = {
		P(MB_HOLDING, 0, PT_FLOAT64),
		P(MB_HOLDING, 2, PT_UINT16),
	};
	struct read_plan pl;

	(void)state;
	build(pts, 2, 125, 0, &pl);
	assert_int_equal(pl.nreqs, 1);
	expect_req(&pl, 0, MB_HOLDING, 0, 4);
	expect_slot(&pl, 1, 0, 2);
	plan_free(&pl);
}

static void test_limit_125(void **state)
{
	/* 200 consecutive uint16: 125 + 75 */
	struct point_def pts[200];
	struct read_plan pl;

	(void)state;
	for (int i = 0; i < 200; i++)
		pts[i] = P(MB_HOLDING, (uint16_t)(1000 + i), PT_UINT16);
	build(pts, 200, 125, 0, &pl);
	assert_int_equal(pl.nreqs, 2);
	expect_req(&pl, 0, MB_HOLDING, 1000, 125);
	expect_req(&pl, 1, MB_HOLDING, 1125, 75);
	expect_slot(&pl, 124, 0, 124);
	expect_slot(&pl, 125, 1, 0);
	expect_slot(&pl, 199, 1, 74);
	plan_free(&pl);

	/* max_regs above 125 is clamped to it */
	build(pts, 200, 1000, 0, &pl);
	assert_int_equal(pl.nreqs, 2);
	expect_req(&pl, 0, MB_HOLDING, 1000, 125);
	plan_free(&pl);

	/* a 2-register value never straddles the limit: 62 float32 = 124, the 63rd starts anew */
	struct point_def f[63];
	for (int i = 0; i < 63; i++)
		f[i] = P(MB_INPUT, (uint16_t)(2 * i), PT_FLOAT32);
	f[62] = P(MB_INPUT, 124, PT_FLOAT32); /* would end at 126 */
	build(f, 63, 125, 0, &pl);
	assert_int_equal(pl.nreqs, 2);
	expect_req(&pl, 0, MB_INPUT, 0, 124);
	expect_req(&pl, 1, MB_INPUT, 124, 2);
	plan_free(&pl);
}

static void test_max_regs(void **state)
{
	const struct point_def pts[] = {
		P(MB_HOLDING, 0, PT_UINT16), P(MB_HOLDING, 1, PT_UINT16), P(MB_HOLDING, 2, PT_UINT16),
		P(MB_HOLDING, 3, PT_UINT16), P(MB_HOLDING, 4, PT_UINT32),
	};
	struct read_plan pl;

	(void)state;
	build(pts, 5, 4, 0, &pl);
	assert_int_equal(pl.nreqs, 2);
	expect_req(&pl, 0, MB_HOLDING, 0, 4);
	expect_req(&pl, 1, MB_HOLDING, 4, 2);
	plan_free(&pl);

	/* max_regs 1: one register per read, except wider points read at their width */
	build(pts, 5, 1, 0, &pl);
	assert_int_equal(pl.nreqs, 5);
	expect_req(&pl, 4, MB_HOLDING, 4, 2);
	plan_free(&pl);

	/* 0 is clamped to 1 */
	build(pts, 5, 0, 0, &pl);
	assert_int_equal(pl.nreqs, 5);
	plan_free(&pl);

	/* a gap never carries a read past max_regs */
	const struct point_def g[] = { P(MB_HOLDING, 0, PT_UINT16), P(MB_HOLDING, 5, PT_UINT16) };
	build(g, 2, 5, 10, &pl);
	assert_int_equal(pl.nreqs, 2);
	plan_free(&pl);
	build(g, 2, 6, 10, &pl);
	assert_int_equal(pl.nreqs, 1);
	expect_req(&pl, 0, MB_HOLDING, 0, 6);
	plan_free(&pl);
}

static void test_wide_point(void **state)
{
	/* a 20-register string on a device that reads at most 8 */
	const struct point_def pts[] = {
		P(MB_HOLDING, 0, PT_UINT16),
		S(MB_HOLDING, 1, 20),
		P(MB_HOLDING, 21, PT_UINT16),
		P(MB_HOLDING, 22, PT_UINT16),
	};
	struct read_plan pl;

	(void)state;
	build(pts, 4, 8, 0, &pl);
	assert_int_equal(pl.nreqs, 3);
	expect_req(&pl, 0, MB_HOLDING, 0, 1);
	expect_req(&pl, 1, MB_HOLDING, 1, 20);
	expect_req(&pl, 2, MB_HOLDING, 21, 2);
	expect_slot(&pl, 1, 1, 0);
	expect_slot(&pl, 3, 2, 1);
	plan_free(&pl);

	/* wider than the protocol allows: no plan */
	const struct point_def huge[] = { S(MB_HOLDING, 0, 126) };
	assert_int_equal(plan_build(huge, 1, 125, 0, &pl), -1);
	assert_null(pl.reqs);
	assert_null(pl.slots);
	/* 125 itself is fine */
	const struct point_def max[] = { S(MB_HOLDING, 0, 125) };
	build(max, 1, 10, 0, &pl);
	expect_req(&pl, 0, MB_HOLDING, 0, 125);
	plan_free(&pl);
	/* a zero-length string has nothing to read */
	const struct point_def empty[] = { S(MB_HOLDING, 0, 0) };
	assert_int_equal(plan_build(empty, 1, 125, 0, &pl), -1);
}

static void test_end_of_address_space(void **state)
{
	const struct point_def last[] = { P(MB_HOLDING, 65535, PT_UINT16) };
	const struct point_def past[] = { P(MB_HOLDING, 65535, PT_UINT32) };
	const struct point_def past64[] = { P(MB_INPUT, 65533, PT_FLOAT64) };
	struct read_plan pl;

	(void)state;
	build(last, 1, 125, 0, &pl);
	expect_req(&pl, 0, MB_HOLDING, 65535, 1);
	plan_free(&pl);
	assert_int_equal(plan_build(past, 1, 125, 0, &pl), -1);
	assert_int_equal(plan_build(past64, 1, 125, 0, &pl), -1);
}

static void test_bits(void **state)
{
	/* coils are counted in bits and ignore max_regs; the limit is 2000 */
	static struct point_def pts[2100];
	struct read_plan pl;

	(void)state;
	for (int i = 0; i < 2100; i++)
		pts[i] = P(MB_COIL, (uint16_t)i, PT_BOOL);
	build(pts, 2100, 10, 0, &pl);
	assert_int_equal(pl.nreqs, 2);
	expect_req(&pl, 0, MB_COIL, 0, 2000);
	expect_req(&pl, 1, MB_COIL, 2000, 100);
	expect_slot(&pl, 1999, 0, 1999);
	expect_slot(&pl, 2000, 1, 0);
	plan_free(&pl);

	/* max_gap counts bits here */
	const struct point_def d[] = { P(MB_DISCRETE, 0, PT_BOOL), P(MB_DISCRETE, 9, PT_BOOL) };
	build(d, 2, 125, 7, &pl);
	assert_int_equal(pl.nreqs, 2);
	plan_free(&pl);
	build(d, 2, 125, 8, &pl);
	assert_int_equal(pl.nreqs, 1);
	expect_req(&pl, 0, MB_DISCRETE, 0, 10);
	expect_slot(&pl, 1, 0, 9);
	plan_free(&pl);
}

static void test_bits_of_one_register(void **state)
{
	const struct point_def pts[] = {
		B(40, 3), B(40, 0), B(40, 15), P(MB_HOLDING, 41, PT_UINT16), B(42, 1),
	};
	struct read_plan pl;

	(void)state;
	build(pts, 5, 125, 0, &pl);
	assert_int_equal(pl.nreqs, 1);
	expect_req(&pl, 0, MB_HOLDING, 40, 3);
	expect_slot(&pl, 0, 0, 0);
	expect_slot(&pl, 1, 0, 0);
	expect_slot(&pl, 2, 0, 0);
	expect_slot(&pl, 3, 0, 1);
	expect_slot(&pl, 4, 0, 2);
	plan_free(&pl);

	/* with max_regs 1 the bools of one register still share one read */
	build(pts, 5, 1, 0, &pl);
	assert_int_equal(pl.nreqs, 3);
	expect_req(&pl, 0, MB_HOLDING, 40, 1);
	expect_slot(&pl, 0, 0, 0);
	expect_slot(&pl, 2, 0, 0);
	expect_slot(&pl, 4, 2, 0);
	plan_free(&pl);
}

static void test_caller_order(void **state)
{
	/* points given out of order: slots follow the caller's order, the array is untouched */
	struct point_def pts[] = {
		P(MB_HOLDING, 30, PT_UINT16),
		P(MB_HOLDING, 10, PT_UINT16),
		P(MB_HOLDING, 20, PT_UINT16),
		P(MB_HOLDING, 11, PT_INT32),
	};
	struct point_def copy[4];
	struct read_plan pl;

	(void)state;
	memcpy(copy, pts, sizeof pts);
	build(pts, 4, 125, 0, &pl);
	assert_memory_equal(pts, copy, sizeof pts);
	assert_int_equal(pl.nreqs, 3);
	expect_req(&pl, 0, MB_HOLDING, 10, 3);
	expect_req(&pl, 1, MB_HOLDING, 20, 1);
	expect_req(&pl, 2, MB_HOLDING, 30, 1);
	expect_slot(&pl, 0, 2, 0);
	expect_slot(&pl, 1, 0, 0);
	expect_slot(&pl, 2, 1, 0);
	expect_slot(&pl, 3, 0, 1);
	plan_free(&pl);
}

static void test_separate_tables(void **state)
{
	/* the same addresses in four tables: four reads, never merged across tables */
	const struct point_def pts[] = {
		P(MB_INPUT, 0, PT_UINT16),   P(MB_HOLDING, 0, PT_UINT16), P(MB_COIL, 0, PT_BOOL),
		P(MB_DISCRETE, 0, PT_BOOL),  P(MB_INPUT, 1, PT_UINT16),   P(MB_HOLDING, 1, PT_UINT16),
		P(MB_COIL, 1, PT_BOOL),      P(MB_DISCRETE, 1, PT_BOOL),
	};
	struct read_plan pl;

	(void)state;
	build(pts, 8, 125, 100, &pl);
	assert_int_equal(pl.nreqs, 4);
	/* sorted by table: coil, discrete, input, holding */
	expect_req(&pl, 0, MB_COIL, 0, 2);
	expect_req(&pl, 1, MB_DISCRETE, 0, 2);
	expect_req(&pl, 2, MB_INPUT, 0, 2);
	expect_req(&pl, 3, MB_HOLDING, 0, 2);
	expect_slot(&pl, 0, 2, 0);
	expect_slot(&pl, 1, 3, 0);
	expect_slot(&pl, 2, 0, 0);
	expect_slot(&pl, 3, 1, 0);
	expect_slot(&pl, 4, 2, 1);
	expect_slot(&pl, 7, 1, 1);
	plan_free(&pl);
}

/* Halves by point count, in address order; the slots of later requests follow. */
static void test_split_halves(void **state)
{
	(void)state;
	struct point_def pts[] = {
		P(MB_HOLDING, 4, PT_FLOAT32), /* 0: caller order is not address order */
		P(MB_HOLDING, 0, PT_FLOAT32), /* 1 */
		P(MB_HOLDING, 3, PT_UINT16),  /* 2 */
		P(MB_HOLDING, 6, PT_UINT16),  /* 3 */
		P(MB_INPUT, 0, PT_UINT16),    /* 4: request 1, moves to 2 */
	};
	struct read_plan pl;

	assert_int_equal(plan_build(pts, 5, 125, 8, &pl), 0);
	assert_int_equal(pl.nreqs, 2);
	expect_req(&pl, 0, MB_INPUT, 0, 1);
	expect_req(&pl, 1, MB_HOLDING, 0, 7);
	assert_int_equal(plan_req_points(&pl, 1), 4);

	assert_int_equal(plan_split(&pl, pts, 1), 1);
	assert_int_equal(pl.nreqs, 3);
	expect_req(&pl, 0, MB_INPUT, 0, 1);
	expect_req(&pl, 1, MB_HOLDING, 0, 4);
	expect_req(&pl, 2, MB_HOLDING, 4, 3);
	expect_slot(&pl, 0, 2, 0);
	expect_slot(&pl, 1, 1, 0);
	expect_slot(&pl, 2, 1, 3);
	expect_slot(&pl, 3, 2, 2);
	expect_slot(&pl, 4, 0, 0);

	/* again, down to single points, which cannot be split */
	assert_int_equal(plan_split(&pl, pts, 1), 1);
	expect_req(&pl, 1, MB_HOLDING, 0, 2);
	expect_req(&pl, 2, MB_HOLDING, 3, 1);
	expect_req(&pl, 3, MB_HOLDING, 4, 3);
	expect_slot(&pl, 0, 3, 0);
	expect_slot(&pl, 2, 2, 0);
	expect_slot(&pl, 3, 3, 2);
	assert_int_equal(plan_split(&pl, pts, 1), 0);
	assert_int_equal(plan_split(&pl, pts, 0), 0);
	assert_int_equal(plan_split(&pl, pts, 9), 0);
	assert_int_equal(pl.nreqs, 4);

	/* move the point at 3 last: the others keep their order */
	plan_move_last(&pl, 2);
	expect_req(&pl, 0, MB_INPUT, 0, 1);
	expect_req(&pl, 1, MB_HOLDING, 0, 2);
	expect_req(&pl, 2, MB_HOLDING, 4, 3);
	expect_req(&pl, 3, MB_HOLDING, 3, 1);
	expect_slot(&pl, 0, 2, 0);
	expect_slot(&pl, 1, 1, 0);
	expect_slot(&pl, 2, 3, 0);
	expect_slot(&pl, 3, 2, 2);
	expect_slot(&pl, 4, 0, 0);
	plan_move_last(&pl, 3); /* already last */
	expect_req(&pl, 3, MB_HOLDING, 3, 1);
	plan_free(&pl);
}

/* Points that share registers (bits of one register, overlapping ranges) stay together. */
static void test_split_keeps_overlaps(void **state)
{
	(void)state;
	struct point_def pts[] = {
		B(10, 0), B(10, 1), B(10, 2), P(MB_HOLDING, 9, PT_UINT32),
	};
	struct read_plan pl;

	assert_int_equal(plan_build(pts, 4, 125, 0, &pl), 0);
	assert_int_equal(pl.nreqs, 1);
	expect_req(&pl, 0, MB_HOLDING, 9, 2);
	assert_int_equal(plan_split(&pl, pts, 0), 0);
	assert_int_equal(pl.nreqs, 1);
	plan_free(&pl);

	/* bits of 10 together, 12 alone */
	struct point_def pts2[] = { B(10, 0), B(10, 1), P(MB_HOLDING, 12, PT_UINT16) };
	assert_int_equal(plan_build(pts2, 3, 125, 1, &pl), 0);
	assert_int_equal(plan_split(&pl, pts2, 0), 1);
	expect_req(&pl, 0, MB_HOLDING, 10, 1);
	expect_req(&pl, 1, MB_HOLDING, 12, 1);
	expect_slot(&pl, 0, 0, 0);
	expect_slot(&pl, 1, 0, 0);
	expect_slot(&pl, 2, 1, 0);
	plan_free(&pl);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_empty),
		cmocka_unit_test(test_merge_adjacent),
		cmocka_unit_test(test_gap),
		cmocka_unit_test(test_overlap),
		cmocka_unit_test(test_limit_125),
		cmocka_unit_test(test_max_regs),
		cmocka_unit_test(test_wide_point),
		cmocka_unit_test(test_end_of_address_space),
		cmocka_unit_test(test_bits),
		cmocka_unit_test(test_bits_of_one_register),
		cmocka_unit_test(test_caller_order),
		cmocka_unit_test(test_separate_tables),
		cmocka_unit_test(test_split_halves),
		cmocka_unit_test(test_split_keeps_overlaps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
