/*
 * test_mbwrite: a register write checked, encoded and framed as both pollers send it.
 * Where tcpoll and serpoll document different refusals, each rule set is checked on the
 * cases where they part, so a shared helper that drifts towards one poller fails here
 * before it fails there.
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
#include "mbwrite.h"

static const struct mbwrite_rules tcp_rules = { .readonly_errno = EPERM,
						    .value_first = true };
static const struct mbwrite_rules ser_rules = { .readonly_errno = EINVAL,
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

static int refused(const struct point_def *p, double v, const struct mbwrite_rules *r)
{
	struct mbwrite q;

	errno = 0;
	if (mbwrite_prepare(p, v, r, &q) == 0)
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
	struct mbwrite q;

	bit.bit = 3;
	sc.scale = 0.1;
	assert_int_equal(mbwrite_prepare(&coil, 1, &tcp_rules, &q), 0);
	assert_int_equal(q.fc, MB_FC_WRITE_COIL);
	assert_int_equal(q.addr, 7);
	assert_true(q.on);
	assert_false(q.rmw);
	assert_int_equal(mbwrite_prepare(&bit, 1, &ser_rules, &q), 0);
	assert_true(q.rmw);
	assert_true(q.on);
	assert_int_equal(q.fc, MB_FC_WRITE_REGISTER);
	assert_int_equal(mbwrite_prepare(&whole, 1, &tcp_rules, &q), 0);
	assert_false(q.rmw);
	assert_int_equal(q.n, 1);
	assert_int_equal(q.regs[0], 1);
	assert_int_equal(mbwrite_prepare(&f32, 2.5, &ser_rules, &q), 0);
	assert_int_equal(q.fc, MB_FC_WRITE_REGISTERS);
	assert_int_equal(q.n, 2);
	assert_int_equal(q.regs[0], 0x4020);
	assert_int_equal(q.regs[1], 0x0000);
	assert_int_equal(mbwrite_prepare(&sc, 12.3, &tcp_rules, &q), 0);
	assert_int_equal(q.fc, MB_FC_WRITE_REGISTER);
	assert_int_equal(q.regs[0], 123);
	assert_int_equal(refused(&odd, 1, &tcp_rules), EINVAL);
	assert_int_equal(mbwrite_prepare(&odd, 1, &ser_rules, &q), 0);
	assert_int_equal(q.fc, MB_FC_WRITE_COIL);
}

/* The PDUs a write sends: a read of its register first for a bit, then the write. */
static void test_write_pdus(void **state)
{
	(void)state;
	struct point_def coil = P(MB_COIL, 7, PT_BOOL);
	struct point_def bit = P(MB_HOLDING, 8, PT_BOOL);
	struct point_def f32 = P(MB_HOLDING, 10, PT_FLOAT32);
	struct mbwrite q;
	uint8_t pdu[MB_PDU_MAX];

	bit.bit = 3;
	assert_int_equal(mbwrite_prepare(&coil, 1, &tcp_rules, &q), 0);
	assert_int_equal(mbwrite_pdu(&q, pdu), 5);
	assert_memory_equal(pdu, ((uint8_t[]){ 5, 0, 7, 0xFF, 0 }), 5);

	assert_int_equal(mbwrite_prepare(&bit, 1, &ser_rules, &q), 0);
	assert_int_equal(mbwrite_pdu(&q, pdu), 5);
	assert_memory_equal(pdu, ((uint8_t[]){ 3, 0, 8, 0, 1 }), 5); /* read it first */
	mbwrite_set_bit(&q, &bit, 0x8001);
	assert_false(q.rmw);
	assert_int_equal(q.regs[0], 0x8009); /* bit 3 set, the others kept */
	assert_int_equal(mbwrite_pdu(&q, pdu), 5);
	assert_memory_equal(pdu, ((uint8_t[]){ 6, 0, 8, 0x80, 0x09 }), 5);
	assert_int_equal(mbwrite_prepare(&bit, 0, &ser_rules, &q), 0);
	mbwrite_set_bit(&q, &bit, 0xFFFF);
	assert_int_equal(q.regs[0], 0xFFF7);

	assert_int_equal(mbwrite_prepare(&f32, 2.5, &tcp_rules, &q), 0);
	assert_int_equal(mbwrite_pdu(&q, pdu), 10);
	assert_memory_equal(pdu, ((uint8_t[]){ 16, 0, 10, 0, 2, 4, 0x40, 0x20, 0, 0 }), 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write_refusals),
		cmocka_unit_test(test_write_encoding),
		cmocka_unit_test(test_write_pdus),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
