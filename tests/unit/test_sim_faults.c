/* sim_faults: which requests a fault's share hits (its share of them, the same ones
 * again under the same seed, and no draw where no fault is given); which requests an
 * --exception range catches; how a reply goes out; and the noise and cuts of Modbus
 * TCP replies, which a master must never take for the reply (checked with the parsers
 * sluiced itself uses). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "mberr.h"
#include "mbpdu.h"
#include "sim_faults.h"

#define NREGS 11 /* a read of holding 0..10, as sluiced reads flowmeter-generic */
#define TID 100
#define UNIT 1

static struct sim_faults faults(uint64_t seed)
{
	struct sim_faults f;
	memset(&f, 0, sizeof f);
	sim_faults_seed(&f, seed);
	return f;
}

static struct sim_fault_spec spec(int kind, unsigned value)
{
	struct sim_fault_spec s;
	memset(&s, 0, sizeof s);
	s.kind = kind;
	s.value = value;
	return s;
}

static struct sim_fault_spec exc(enum mb_table t, uint16_t lo, uint16_t hi, unsigned pct)
{
	struct sim_fault_spec s = spec(SIM_FAULT_EXCEPTION, 0);
	s.range.table = t;
	s.range.lo = lo;
	s.range.hi = hi;
	s.range.pct = pct;
	return s;
}

static void test_add_and_free(void **state)
{
	(void)state;
	struct sim_faults f = faults(1);
	struct sim_fault_spec s;

	s = spec(SIM_FAULT_SLOW, 800);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	s = spec(SIM_FAULT_BAD_CRC, 20);
	assert_int_equal(sim_faults_add(&f, &s, false), 1); /* Modbus TCP has no CRC */
	assert_int_equal(f.bad_crc_pct, 0);
	assert_int_equal(sim_faults_add(&f, &s, true), 0);
	s = spec(SIM_FAULT_WRONG_UNIT, 30);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	s = spec(SIM_FAULT_GARBAGE, 40);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	s = spec(SIM_FAULT_SHORT, 50);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	s = spec(SIM_FAULT_SILENT, 60);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	s = exc(MB_HOLDING, 8, 9, 100);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	s = exc(MB_COIL, 0, 0, 25);
	assert_int_equal(sim_faults_add(&f, &s, true), 0);

	assert_int_equal(f.slow_ms, 800);
	assert_int_equal(f.bad_crc_pct, 20);
	assert_int_equal(f.wrong_unit_pct, 30);
	assert_int_equal(f.garbage_pct, 40);
	assert_int_equal(f.short_pct, 50);
	assert_int_equal(f.silent_pct, 60);
	assert_int_equal(f.nexc, 2);
	assert_int_equal(f.exc[0].table, MB_HOLDING);
	assert_int_equal(f.exc[0].hi, 9);
	assert_int_equal(f.exc[1].pct, 25);
	/* a later option of the same kind replaces the share, a range adds to the others */
	s = spec(SIM_FAULT_SILENT, 100);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	assert_int_equal(f.silent_pct, 100);
	assert_int_equal(f.rng, 1);     /* giving faults draws nothing */
	sim_faults_free(&f);
	assert_null(f.exc);
	assert_int_equal(f.nexc, 0);
}

static void test_shares_follow_the_seed(void **state)
{
	(void)state;
	struct sim_faults f = faults(7), g = faults(7), h = faults(8);
	unsigned hits = 0, same = 0, differ = 0;

	/* no fault: no draw, never silent */
	for (int i = 0; i < 100; i++)
		assert_false(sim_faults_silent(&f));
	assert_int_equal(f.rng, 7);

	f.silent_pct = g.silent_pct = h.silent_pct = 50;
	for (int i = 0; i < 1000; i++) {
		bool a = sim_faults_silent(&f), b = sim_faults_silent(&g), c = sim_faults_silent(&h);
		hits += a;
		same += a == b;
		differ += a != c;
	}
	assert_in_range(hits, 440, 560);
	assert_int_equal(same, 1000);   /* the same seed hits the same requests */
	assert_true(differ > 300);      /* another seed, others */

	f.silent_pct = 100;
	for (int i = 0; i < 100; i++)
		assert_true(sim_faults_silent(&f));
	f.silent_pct = 3;
	hits = 0;
	for (int i = 0; i < 10000; i++)
		hits += sim_faults_silent(&f);
	assert_in_range(hits, 200, 400);
}

/* A request PDU: function code, address, count or value. */
static size_t req(uint8_t *pdu, uint8_t fc, uint16_t addr, uint16_t n)
{
	pdu[0] = fc;
	pdu[1] = (uint8_t)(addr >> 8);
	pdu[2] = (uint8_t)addr;
	pdu[3] = (uint8_t)(n >> 8);
	pdu[4] = (uint8_t)n;
	return 5;
}

static void test_exception_ranges(void **state)
{
	(void)state;
	struct sim_faults f = faults(3);
	struct sim_fault_spec s = exc(MB_HOLDING, 8, 9, 100);
	uint8_t p[8];

	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_READ_HOLDING, 8, 1)));
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_READ_HOLDING, 8, 1)));
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_READ_HOLDING, 9, 1)));
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_READ_HOLDING, 6, 3)));  /* its end */
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_READ_HOLDING, 0, 11))); /* across */
	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_READ_HOLDING, 4, 4))); /* 4..7 */
	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_READ_HOLDING, 10, 1)));
	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_READ_INPUT, 8, 2)));   /* table */
	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_READ_COILS, 8, 2)));
	/* writes: one register (its value in the count's place), several */
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_WRITE_REGISTER, 9, 0)));
	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_WRITE_REGISTER, 7, 9)));
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_WRITE_REGISTERS, 7, 2)));
	/* what mbpdu answers itself: a quantity of 0, a function it does not have, too short */
	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_READ_HOLDING, 8, 0)));
	assert_false(sim_faults_exception(&f, p, req(p, 0x2B, 8, 1)));
	assert_false(sim_faults_exception(&f, p, 4));
	assert_int_equal(f.rng, 3);     /* a range without a share draws nothing */

	/* coils: read and written by their own codes */
	s = exc(MB_COIL, 0, 0, 100);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_READ_COILS, 0, 8)));
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_WRITE_COIL, 0, 0xFF00)));
	assert_true(sim_faults_exception(&f, p, req(p, MB_FC_WRITE_COILS, 0, 1)));
	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_READ_DISCRETE, 0, 8)));
	sim_faults_free(&f);

	/* a share: that share of the requests touching the range, and a draw only for them */
	f = faults(3);
	s = exc(MB_INPUT, 100, 199, 40);
	assert_int_equal(sim_faults_add(&f, &s, false), 0);
	unsigned hits = 0;
	for (int i = 0; i < 1000; i++)
		hits += sim_faults_exception(&f, p, req(p, MB_FC_READ_INPUT, 150, 2));
	assert_in_range(hits, 340, 460);
	uint64_t rng = f.rng;
	assert_false(sim_faults_exception(&f, p, req(p, MB_FC_READ_INPUT, 200, 2)));
	assert_int_equal(f.rng, rng);
	sim_faults_free(&f);

	assert_int_equal(sim_faults_fc_table(MB_FC_READ_DISCRETE), MB_DISCRETE);
	assert_int_equal(sim_faults_fc_table(MB_FC_READ_INPUT), MB_INPUT);
	assert_int_equal(sim_faults_fc_table(MB_FC_WRITE_COILS), MB_COIL);
	assert_int_equal(sim_faults_fc_table(MB_FC_WRITE_REGISTERS), MB_HOLDING);
}

static struct sim_rtu_fault intact(uint8_t unit)
{
	struct sim_rtu_fault o;
	memset(&o, 0, sizeof o);
	o.unit = unit;
	return o;
}

static void test_reply(void **state)
{
	(void)state;
	struct sim_faults f = faults(5);
	struct sim_rtu_fault o = intact(4);

	assert_false(sim_faults_reply(&f, 4, true, &o));
	assert_int_equal(o.unit, 4);
	assert_int_equal(o.mangle, SIM_RTU_INTACT);
	assert_false(o.bad_crc || o.delay_ms);

	f.slow_ms = 1500;
	assert_true(sim_faults_reply(&f, 4, true, &o));
	assert_int_equal(o.delay_ms, 1500);
	assert_int_equal(f.rng, 5);     /* a delay is no draw */
	f.slow_ms = 0;

	/* a corrupt CRC only where there is one */
	f.bad_crc_pct = 100;
	o = intact(4);
	assert_false(sim_faults_reply(&f, 4, false, &o));
	assert_false(o.bad_crc);
	assert_true(sim_faults_reply(&f, 4, true, &o));
	assert_true(o.bad_crc);
	f.bad_crc_pct = 0;

	f.wrong_unit_pct = 100;
	o = intact(4);
	assert_true(sim_faults_reply(&f, 4, false, &o));
	assert_int_equal(o.unit, 5);
	f.wrong_unit_pct = 0;
	static const uint8_t other[][2] = { { 0, 1 }, { 1, 2 }, { 246, 247 }, { 247, 1 },
					    { 248, 2 }, { 255, 9 } };
	for (size_t i = 0; i < sizeof other / sizeof other[0]; i++)
		assert_int_equal(sim_faults_other_unit(other[i][0]), other[i][1]);

	/* noise wins over a cut; the noise follows the seed */
	struct sim_faults g = faults(f.rng);
	struct sim_rtu_fault og = intact(4);
	f.garbage_pct = f.short_pct = g.garbage_pct = g.short_pct = 100;
	o = intact(4);
	assert_true(sim_faults_reply(&f, 4, false, &o));
	assert_int_equal(o.mangle, SIM_RTU_GARBAGE);
	assert_true(sim_faults_reply(&g, 4, false, &og));
	assert_true(og.noise == o.noise && og.mangle == o.mangle);
	f.garbage_pct = 0;
	o = intact(4);
	assert_true(sim_faults_reply(&f, 4, false, &o));
	assert_int_equal(o.mangle, SIM_RTU_SHORT);
	assert_true(o.noise != og.noise);
}

/* The reply to a read of NREGS holding registers from 0, framed for Modbus TCP. */
static size_t read_reply(uint8_t *adu, uint8_t *reqpdu)
{
	uint8_t pdu[2 + 2 * NREGS];
	req(reqpdu, MB_FC_READ_HOLDING, 0, NREGS);
	pdu[0] = MB_FC_READ_HOLDING;
	pdu[1] = 2 * NREGS;
	for (int i = 0; i < 2 * NREGS; i++)
		pdu[2 + i] = (uint8_t)(i * 37);
	return mbtcp_frame(adu, TID, UNIT, pdu, sizeof pdu);
}

/* Would a master that sent req to UNIT as TID take adu[0..len) for its answer? */
static bool taken(const uint8_t *req, size_t reqlen, const uint8_t *adu, size_t len)
{
	uint16_t tid, regs[MB_MAX_READ_REGS];
	uint8_t unit, bits[MB_MAX_READ_BITS];
	int plen = mbtcp_header(adu, &tid, &unit);
	int rc;

	if (len < MBTCP_HDR || plen < 0 || tid != TID || unit != UNIT ||
	    (size_t)plen > len - MBTCP_HDR)
		return false;
	if (req[0] == MB_FC_READ_HOLDING)
		rc = mbpdu_read_resp(adu + MBTCP_HDR, (size_t)plen, MB_HOLDING,
				     (uint16_t)(req[3] << 8 | req[4]), regs, bits);
	else
		rc = mbpdu_write_resp(req, reqlen, adu + MBTCP_HDR, (size_t)plen);
	return rc == 0 || rc > MBE_EXC_BASE;
}

static void test_tcp_garbage_is_never_a_reply(void **state)
{
	(void)state;
	uint8_t reply[MBTCP_ADU_MAX], adu[MBTCP_ADU_MAX], rq[8], again[MBTCP_ADU_MAX];
	size_t alen = read_reply(reply, rq), rlen = alen - MBTCP_HDR;
	unsigned header = 0, own_fc = 0, other = 0;

	assert_true(taken(rq, 5, reply, alen));  /* the check itself can say yes */
	for (uint64_t seed = 0; seed < 2000; seed++) {
		memcpy(adu, reply, alen);
		size_t n = sim_faults_tcp_garbage(adu, alen, TID, UNIT, rq, 5, seed * 7919);
		if (taken(rq, 5, adu, n))
			fail_msg("seed %llu: noise a master takes for the reply",
				 (unsigned long long)seed);
		/* half to one and a half times the reply's PDU */
		assert_in_range(n - MBTCP_HDR, rlen / 2, rlen + rlen / 2);
		uint16_t tid;
		uint8_t unit;
		int plen = mbtcp_header(adu, &tid, &unit);
		if (plen < 0 || tid != TID || unit != UNIT)
			header++;
		else if (adu[MBTCP_HDR] == MB_FC_READ_HOLDING)
			own_fc++;
		else
			other++;
		/* the same noise seed, the same bytes */
		memcpy(again, reply, alen);
		assert_int_equal(sim_faults_tcp_garbage(again, alen, TID, UNIT, rq, 5, seed * 7919),
				 n);
		assert_memory_equal(again, adu, n);
	}
	/* the three kinds the help promises, each about a third of the time */
	assert_in_range(header, 500, 830);
	assert_in_range(own_fc, 500, 830);
	assert_in_range(other, 500, 830);

	/* the reply to a read of one register: short enough for noise to pass for it now and
	 * then (the right function code, byte count and length), were it not changed */
	uint8_t one[5], pdu1[4] = { MB_FC_READ_HOLDING, 2, 0x12, 0x34 };
	req(one, MB_FC_READ_HOLDING, 7, 1);
	size_t len1 = mbtcp_frame(again, TID, UNIT, pdu1, sizeof pdu1);
	assert_true(taken(one, 5, again, len1));
	for (uint64_t seed = 0; seed < 20000; seed++) {
		memcpy(adu, again, len1);
		size_t n = sim_faults_tcp_garbage(adu, len1, TID, UNIT, one, 5, seed);
		if (taken(one, 5, adu, n))
			fail_msg("seed %llu: noise a master takes for the reply to a read of one "
				 "register", (unsigned long long)seed);
	}

	/* a write's echo, and an exception reply: no noise passes for them either */
	uint8_t wreq[5], wpdu[5];
	req(wreq, MB_FC_WRITE_REGISTER, 3, 0x1234);
	memcpy(wpdu, wreq, 5);
	size_t wlen = mbtcp_frame(reply, TID, UNIT, wpdu, 5);
	assert_true(taken(wreq, 5, reply, wlen));
	uint8_t epdu[2] = { MB_FC_READ_HOLDING | 0x80, 2 };
	size_t elen = mbtcp_frame(again, TID, UNIT, epdu, 2);
	for (uint64_t seed = 0; seed < 2000; seed++) {
		memcpy(adu, reply, wlen);
		size_t n = sim_faults_tcp_garbage(adu, wlen, TID, UNIT, wreq, 5, seed);
		assert_false(taken(wreq, 5, adu, n));
		memcpy(adu, again, elen);
		n = sim_faults_tcp_garbage(adu, elen, TID, UNIT, rq, 5, seed);
		assert_false(taken(rq, 5, adu, n));
		assert_in_range(n - MBTCP_HDR, 1, 3);
	}
}

static void test_tcp_short(void **state)
{
	(void)state;
	uint8_t reply[MBTCP_ADU_MAX], adu[MBTCP_ADU_MAX], rq[8];
	size_t alen = read_reply(reply, rq), rlen = alen - MBTCP_HDR;
	unsigned promise = 0, honest = 0;

	for (uint64_t seed = 0; seed < 1000; seed++) {
		memcpy(adu, reply, alen);
		size_t n = sim_faults_tcp_short(adu, alen, seed);
		assert_true(n >= MBTCP_HDR && n < alen);
		/* a prefix of the reply but for the length: the master cannot take it */
		assert_memory_equal(adu, reply, 4);
		assert_memory_equal(adu + 6, reply + 6, n - 6);
		assert_false(taken(rq, 5, adu, n));
		if (memcmp(adu + 4, reply + 4, 2) == 0) {
			promise++;  /* the header promises all of it; less follows */
		} else {
			honest++;   /* an honest length around a PDU too short for its count */
			assert_int_equal(adu[4] << 8 | adu[5], n - MBTCP_HDR + 1);
			assert_in_range(n - MBTCP_HDR, 1, rlen - 1);
		}
	}
	assert_in_range(promise, 400, 600);
	assert_in_range(honest, 400, 600);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_and_free),
		cmocka_unit_test(test_shares_follow_the_seed),
		cmocka_unit_test(test_exception_ranges),
		cmocka_unit_test(test_reply),
		cmocka_unit_test(test_tcp_garbage_is_never_a_reply),
		cmocka_unit_test(test_tcp_short),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
