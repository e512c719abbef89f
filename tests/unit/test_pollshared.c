/*
 * test_pollshared: the rules both pollers share. Where tcpoll and serpoll document
 * different refusals, each rule set is checked on the cases where they part, so a
 * shared helper that drifts towards one poller fails here before it fails there.
 */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "mberr.h"
#include "mbpdu.h"
#include "pollshared.h"

static const struct pollshared_wrules tcp_rules = { .readonly_errno = EPERM,
						    .value_first = true };
static const struct pollshared_wrules ser_rules = { .readonly_errno = EINVAL,
						    .coil_any_type = true };

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
	p.writable = true;
	return p;
}

static int refused(const struct point_def *p, double v, const struct pollshared_wrules *r)
{
	struct pollshared_wreq q;

	errno = 0;
	if (pollshared_write_prepare(p, v, r, &q) == 0)
		return 0;
	return errno;
}

static void test_write_refusals(void **state)
{
	(void)state;
	struct point_def ro = P(MB_HOLDING, 1, PT_UINT16);
	struct point_def in = P(MB_INPUT, 2, PT_UINT16);
	struct point_def str = P(MB_HOLDING, 3, PT_STRING);
	struct point_def flag = P(MB_INPUT, 4, PT_BOOL);
	struct point_def u16 = P(MB_HOLDING, 5, PT_UINT16);

	ro.writable = false;
	str.length = 4;
	/* alike */
	assert_int_equal(refused(&ro, 1, &tcp_rules), EPERM);
	assert_int_equal(refused(&ro, 1, &ser_rules), EPERM);
	assert_int_equal(refused(&str, 1, &tcp_rules), EINVAL);
	assert_int_equal(refused(&str, 1, &ser_rules), EINVAL);
	assert_int_equal(refused(&u16, 65536, &tcp_rules), ERANGE);
	assert_int_equal(refused(&u16, 65536, &ser_rules), ERANGE);
	assert_int_equal(refused(&u16, NAN, &tcp_rules), ERANGE);
	assert_int_equal(refused(&u16, NAN, &ser_rules), ERANGE);
	/* where the pollers part: a read-only table, and which refusal comes first */
	assert_int_equal(refused(&in, 1, &tcp_rules), EPERM);
	assert_int_equal(refused(&in, 1, &ser_rules), EINVAL);
	assert_int_equal(refused(&str, NAN, &tcp_rules), ERANGE);
	assert_int_equal(refused(&str, NAN, &ser_rules), EINVAL);
	assert_int_equal(refused(&flag, 2, &tcp_rules), ERANGE);
	assert_int_equal(refused(&flag, 2, &ser_rules), EINVAL);
}

static void test_write_encoding(void **state)
{
	(void)state;
	struct point_def coil = P(MB_COIL, 7, PT_BOOL);
	struct point_def bit = P(MB_HOLDING, 8, PT_BOOL);
	struct point_def whole = P(MB_HOLDING, 9, PT_BOOL);
	struct point_def f32 = P(MB_HOLDING, 10, PT_FLOAT32);
	struct point_def sc = P(MB_HOLDING, 12, PT_UINT16);
	struct point_def odd = P(MB_COIL, 13, PT_UINT16); /* config never makes one */
	struct pollshared_wreq q;

	bit.bit = 3;
	sc.scale = 0.1;
	assert_int_equal(pollshared_write_prepare(&coil, 1, &tcp_rules, &q), 0);
	assert_int_equal(q.fc, MB_FC_WRITE_COIL);
	assert_int_equal(q.addr, 7);
	assert_true(q.on);
	assert_false(q.rmw);
	assert_int_equal(pollshared_write_prepare(&bit, 1, &ser_rules, &q), 0);
	assert_true(q.rmw);
	assert_true(q.on);
	assert_int_equal(q.fc, MB_FC_WRITE_REGISTER);
	assert_int_equal(pollshared_write_prepare(&whole, 1, &tcp_rules, &q), 0);
	assert_false(q.rmw);
	assert_int_equal(q.n, 1);
	assert_int_equal(q.regs[0], 1);
	assert_int_equal(pollshared_write_prepare(&f32, 2.5, &ser_rules, &q), 0);
	assert_int_equal(q.fc, MB_FC_WRITE_REGISTERS);
	assert_int_equal(q.n, 2);
	assert_int_equal(q.regs[0], 0x4020);
	assert_int_equal(q.regs[1], 0x0000);
	assert_int_equal(pollshared_write_prepare(&sc, 12.3, &tcp_rules, &q), 0);
	assert_int_equal(q.fc, MB_FC_WRITE_REGISTER);
	assert_int_equal(q.regs[0], 123);
	assert_int_equal(refused(&odd, 1, &tcp_rules), EINVAL);
	assert_int_equal(pollshared_write_prepare(&odd, 1, &ser_rules, &q), 0);
	assert_int_equal(q.fc, MB_FC_WRITE_COIL);
}

static void test_is_answer(void **state)
{
	(void)state;
	assert_true(pollshared_is_answer(0));
	assert_true(pollshared_is_answer(MBE_EXC_BASE + 2));
	assert_true(pollshared_is_answer(MBE_EXC_BASE + 6));
	assert_false(pollshared_is_answer(MBE_EXC_BASE + 0x0A));
	assert_false(pollshared_is_answer(MBE_EXC_BASE + 0x0B));
	assert_false(pollshared_is_answer(MBE_TIMEOUT));
	assert_false(pollshared_is_answer(MBE_PROTO));
	assert_false(pollshared_is_answer(MBE_CONNECT));
}

/* Marks from the start of the outage, a late check skipping the marks it passed. */
static void test_logpace_marks(void **state)
{
	(void)state;
	static const int64_t marks[] = { 60, 600, 3600 };
	const struct pollshared_logsched s = { .marks = marks, .nmarks = 3, .every = 21600 };
	struct pollshared_logpace lp;

	pollshared_logpace_start(&lp, &s, 1000);
	assert_false(pollshared_logpace_due(&lp, &s, 1000, 1059));
	assert_true(pollshared_logpace_due(&lp, &s, 1000, 1060));
	assert_false(pollshared_logpace_due(&lp, &s, 1000, 1599));
	assert_true(pollshared_logpace_due(&lp, &s, 1000, 5000)); /* past 600 and 3600 */
	assert_int_equal(lp.next, 1000 + 3600 + 21600);
	assert_false(pollshared_logpace_due(&lp, &s, 1000, 26199));
	assert_true(pollshared_logpace_due(&lp, &s, 1000, 26200));
	assert_int_equal(lp.next, 1000 + 3600 + 2 * 21600);
}

/* Gaps from each line logged, doubling to the cap. */
static void test_logpace_doubling(void **state)
{
	(void)state;
	const struct pollshared_logsched s = { .first = 60, .max = 200 };
	struct pollshared_logpace lp;

	pollshared_logpace_start(&lp, &s, 0);
	assert_false(pollshared_logpace_due(&lp, &s, 0, 59));
	assert_true(pollshared_logpace_due(&lp, &s, 0, 70));
	assert_int_equal(lp.next, 70 + 120);
	assert_true(pollshared_logpace_due(&lp, &s, 0, 190));
	assert_int_equal(lp.next, 190 + 200);
	assert_true(pollshared_logpace_due(&lp, &s, 0, 400));
	assert_int_equal(lp.next, 400 + 200);
}

static void test_fmt_span(void **state)
{
	(void)state;
	char b[32];

	pollshared_fmt_span(b, sizeof b, 119999, POLLSHARED_SPAN_COARSE);
	assert_string_equal(b, "119s");
	pollshared_fmt_span(b, sizeof b, 754000, POLLSHARED_SPAN_COARSE);
	assert_string_equal(b, "12min");
	pollshared_fmt_span(b, sizeof b, 3 * 3600000 + 5, POLLSHARED_SPAN_COARSE);
	assert_string_equal(b, "3h");
	pollshared_fmt_span(b, sizeof b, 42000, POLLSHARED_SPAN_FINE);
	assert_string_equal(b, "42s");
	pollshared_fmt_span(b, sizeof b, 312000, POLLSHARED_SPAN_FINE);
	assert_string_equal(b, "5m12s");
	pollshared_fmt_span(b, sizeof b, (3 * 3600 + 2 * 60) * 1000, POLLSHARED_SPAN_FINE);
	assert_string_equal(b, "3h02m");
	pollshared_fmt_span(b, sizeof b, (2 * 86400 + 4 * 3600) * 1000LL, POLLSHARED_SPAN_FINE);
	assert_string_equal(b, "2d04h");
}

static void test_phase_spread(void **state)
{
	(void)state;
	for (uint32_t i = 0; i < 1000; i++) {
		int64_t ph = pollshared_phase(i, 1000);
		assert_true(ph >= 0 && ph < 1000);
	}
	assert_int_equal(pollshared_phase(0, 1000), 0);
	assert_int_not_equal(pollshared_phase(1, 1000), pollshared_phase(2, 1000));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_refusals),
		cmocka_unit_test(test_write_encoding),
		cmocka_unit_test(test_is_answer),
		cmocka_unit_test(test_logpace_marks),
		cmocka_unit_test(test_logpace_doubling),
		cmocka_unit_test(test_fmt_span),
		cmocka_unit_test(test_phase_spread),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
