/*
 * test_mbpdu: request bytes as the Modbus spec lays them out, replies good and
 * malformed in every way a device or a fuzzer can manage, MBAP framing, and the
 * server side that sluice-sim answers with.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mberr.h"
#include "mbpdu.h"

/* --- requests ------------------------------------------------------------------------ */

static void test_read_requests(void **state)
{
	uint8_t buf[8];

	(void)state;
	assert_int_equal(mbpdu_read_fc(MB_COIL), 1);
	assert_int_equal(mbpdu_read_fc(MB_DISCRETE), 2);
	assert_int_equal(mbpdu_read_fc(MB_HOLDING), 3);
	assert_int_equal(mbpdu_read_fc(MB_INPUT), 4);

	assert_int_equal(mbpdu_read_req(buf, MB_HOLDING, 0x006B, 3), 5);
	assert_memory_equal(buf, ((uint8_t[]){ 0x03, 0x00, 0x6B, 0x00, 0x03 }), 5);
	assert_int_equal(mbpdu_read_req(buf, MB_INPUT, 0x0008, 1), 5);
	assert_memory_equal(buf, ((uint8_t[]){ 0x04, 0x00, 0x08, 0x00, 0x01 }), 5);
	assert_int_equal(mbpdu_read_req(buf, MB_COIL, 0x0013, 0x13), 5);
	assert_memory_equal(buf, ((uint8_t[]){ 0x01, 0x00, 0x13, 0x00, 0x13 }), 5);
	assert_int_equal(mbpdu_read_req(buf, MB_DISCRETE, 0xABCD, 2000), 5);
	assert_memory_equal(buf, ((uint8_t[]){ 0x02, 0xAB, 0xCD, 0x07, 0xD0 }), 5);
	assert_int_equal(mbpdu_read_req(buf, MB_HOLDING, 0, 125), 5);
	assert_memory_equal(buf, ((uint8_t[]){ 0x03, 0x00, 0x00, 0x00, 0x7D }), 5);
	assert_int_equal(mbpdu_read_req(buf, MB_HOLDING, 0xFFFF, 1), 5);

	/* quantities the protocol forbids */
	assert_int_equal(mbpdu_read_req(buf, MB_HOLDING, 0, 0), 0);
	assert_int_equal(mbpdu_read_req(buf, MB_HOLDING, 0, 126), 0);
	assert_int_equal(mbpdu_read_req(buf, MB_INPUT, 0, 126), 0);
	assert_int_equal(mbpdu_read_req(buf, MB_COIL, 0, 0), 0);
	assert_int_equal(mbpdu_read_req(buf, MB_COIL, 0, 2001), 0);
	/* past the end of the address space */
	assert_int_equal(mbpdu_read_req(buf, MB_HOLDING, 0xFFFF, 2), 0);
}

static void test_write_requests(void **state)
{
	uint8_t buf[MB_PDU_MAX];

	(void)state;
	assert_int_equal(mbpdu_write_coil_req(buf, 0x00AC, 1), 5);
	assert_memory_equal(buf, ((uint8_t[]){ 0x05, 0x00, 0xAC, 0xFF, 0x00 }), 5);
	assert_int_equal(mbpdu_write_coil_req(buf, 0x00AC, 0), 5);
	assert_memory_equal(buf, ((uint8_t[]){ 0x05, 0x00, 0xAC, 0x00, 0x00 }), 5);
	assert_int_equal(mbpdu_write_reg_req(buf, 0x0001, 0x0003), 5);
	assert_memory_equal(buf, ((uint8_t[]){ 0x06, 0x00, 0x01, 0x00, 0x03 }), 5);

	/* the spec's example: 10 coils from 20, CD 01 */
	const uint8_t bits[10] = { 1, 0, 1, 1, 0, 0, 1, 1, 1, 0 };
	assert_int_equal(mbpdu_write_coils_req(buf, 0x0013, bits, 10), 8);
	assert_memory_equal(buf, ((uint8_t[]){ 0x0F, 0x00, 0x13, 0x00, 0x0A, 0x02, 0xCD, 0x01 }), 8);
	/* any non-zero byte is an "on" */
	const uint8_t one[1] = { 7 };
	assert_int_equal(mbpdu_write_coils_req(buf, 0, one, 1), 7);
	assert_memory_equal(buf, ((uint8_t[]){ 0x0F, 0x00, 0x00, 0x00, 0x01, 0x01, 0x01 }), 7);

	const uint16_t regs[2] = { 0x000A, 0x0102 };
	assert_int_equal(mbpdu_write_regs_req(buf, 0x0001, regs, 2), 10);
	assert_memory_equal(buf,
			    ((uint8_t[]){ 0x10, 0x00, 0x01, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02 }),
			    10);

	uint16_t many[MB_MAX_WRITE_REGS + 1];
	uint8_t manyb[MB_MAX_WRITE_BITS + 1];
	memset(many, 0, sizeof many);
	memset(manyb, 0, sizeof manyb);
	assert_int_equal(mbpdu_write_regs_req(buf, 0, many, MB_MAX_WRITE_REGS), 6 + 246);
	assert_int_equal(buf[5], 246);
	assert_int_equal(mbpdu_write_regs_req(buf, 0, many, MB_MAX_WRITE_REGS + 1), 0);
	assert_int_equal(mbpdu_write_regs_req(buf, 0, many, 0), 0);
	assert_int_equal(mbpdu_write_regs_req(buf, 0xFFFF, many, 2), 0);
	assert_int_equal(mbpdu_write_coils_req(buf, 0, manyb, MB_MAX_WRITE_BITS), 6 + 246);
	assert_int_equal(mbpdu_write_coils_req(buf, 0, manyb, MB_MAX_WRITE_BITS + 1), 0);
	assert_int_equal(mbpdu_write_coils_req(buf, 0, manyb, 0), 0);
}

/* --- read replies -------------------------------------------------------------------- */

static void test_read_resp_regs(void **state)
{
	const uint8_t good[] = { 0x03, 0x06, 0x02, 0x2B, 0x00, 0x00, 0x00, 0x64 };
	uint16_t regs[3] = { 0 };

	(void)state;
	assert_int_equal(mbpdu_read_resp(good, sizeof good, MB_HOLDING, 3, regs, NULL), 0);
	assert_int_equal(regs[0], 0x022B);
	assert_int_equal(regs[1], 0x0000);
	assert_int_equal(regs[2], 0x0064);

	const uint8_t input[] = { 0x04, 0x02, 0x00, 0x0A };
	assert_int_equal(mbpdu_read_resp(input, sizeof input, MB_INPUT, 1, regs, NULL), 0);
	assert_int_equal(regs[0], 0x000A);
	/* an input reply is not a holding reply */
	assert_int_equal(mbpdu_read_resp(input, sizeof input, MB_HOLDING, 1, regs, NULL), MBE_PROTO);
}

static void test_read_resp_bits(void **state)
{
	/* the spec's example: 19 coils from 20, CD 6B 05 */
	const uint8_t good[] = { 0x01, 0x03, 0xCD, 0x6B, 0x05 };
	const uint8_t want[19] = { 1, 0, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 1, 0, 1, 0, 1 };
	uint8_t bits[19];

	(void)state;
	memset(bits, 9, sizeof bits);
	assert_int_equal(mbpdu_read_resp(good, sizeof good, MB_COIL, 19, NULL, bits), 0);
	assert_memory_equal(bits, want, sizeof want);

	const uint8_t disc[] = { 0x02, 0x01, 0x02 };
	assert_int_equal(mbpdu_read_resp(disc, sizeof disc, MB_DISCRETE, 2, NULL, bits), 0);
	assert_int_equal(bits[0], 0);
	assert_int_equal(bits[1], 1);
	/* 8 bits need one byte, 9 need two */
	const uint8_t eight[] = { 0x02, 0x01, 0x80 };
	assert_int_equal(mbpdu_read_resp(eight, sizeof eight, MB_DISCRETE, 8, NULL, bits), 0);
	assert_int_equal(bits[7], 1);
	assert_int_equal(mbpdu_read_resp(eight, sizeof eight, MB_DISCRETE, 9, NULL, bits), MBE_PROTO);
}

static void test_read_resp_malformed(void **state)
{
	const uint8_t good[] = { 0x03, 0x04, 0x00, 0x01, 0x00, 0x02 };
	uint8_t buf[16];
	uint16_t regs[8];

	(void)state;
	/* every truncation of a good reply, down to nothing */
	for (size_t len = 0; len < sizeof good; len++)
		assert_int_equal(mbpdu_read_resp(good, len, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	/* a trailing byte */
	memcpy(buf, good, sizeof good);
	buf[sizeof good] = 0;
	assert_int_equal(mbpdu_read_resp(buf, sizeof good + 1, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	/* wrong function code */
	memcpy(buf, good, sizeof good);
	buf[0] = 0x04;
	assert_int_equal(mbpdu_read_resp(buf, sizeof good, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	buf[0] = 0x83 ^ 0x80 ^ 0x10;
	assert_int_equal(mbpdu_read_resp(buf, sizeof good, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	/* byte count that disagrees with what was asked, with a consistent length */
	assert_int_equal(mbpdu_read_resp(good, sizeof good, MB_HOLDING, 1, regs, NULL), MBE_PROTO);
	assert_int_equal(mbpdu_read_resp(good, sizeof good, MB_HOLDING, 3, regs, NULL), MBE_PROTO);
	/* byte count that disagrees with the length */
	memcpy(buf, good, sizeof good);
	buf[1] = 0x06;
	assert_int_equal(mbpdu_read_resp(buf, sizeof good, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	buf[1] = 0xFF;
	assert_int_equal(mbpdu_read_resp(buf, sizeof good, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	/* an odd byte count for registers */
	const uint8_t odd[] = { 0x03, 0x03, 0x00, 0x01, 0x00 };
	assert_int_equal(mbpdu_read_resp(odd, sizeof odd, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	/* a count the request could not have had */
	assert_int_equal(mbpdu_read_resp(good, sizeof good, MB_HOLDING, 0, regs, NULL), MBE_PROTO);
	assert_int_equal(mbpdu_read_resp(good, sizeof good, MB_HOLDING, 126, regs, NULL), MBE_PROTO);
}

static void test_read_resp_exception(void **state)
{
	uint16_t regs[2];
	uint8_t bits[2];

	(void)state;
	const uint8_t exc2[] = { 0x83, 0x02 };
	assert_int_equal(mbpdu_read_resp(exc2, 2, MB_HOLDING, 2, regs, NULL), MBE_EXC_BASE + 2);
	const uint8_t exc11[] = { 0x84, 0x0B };
	assert_int_equal(mbpdu_read_resp(exc11, 2, MB_INPUT, 1, regs, NULL), MBE_EXC_BASE + 0x0B);
	const uint8_t exc1[] = { 0x81, 0x01 };
	assert_int_equal(mbpdu_read_resp(exc1, 2, MB_COIL, 1, NULL, bits), MBE_EXC_BASE + 1);
	/* an exception for another function */
	assert_int_equal(mbpdu_read_resp(exc2, 2, MB_INPUT, 2, regs, NULL), MBE_PROTO);
	/* an exception without its code, with extra bytes, or with code 0 */
	assert_int_equal(mbpdu_read_resp(exc2, 1, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	const uint8_t long_exc[] = { 0x83, 0x02, 0x00 };
	assert_int_equal(mbpdu_read_resp(long_exc, 3, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
	const uint8_t exc0[] = { 0x83, 0x00 };
	assert_int_equal(mbpdu_read_resp(exc0, 2, MB_HOLDING, 2, regs, NULL), MBE_PROTO);
}

/* Every length of every byte pattern that a short fuzz can reach: never reads past len. */
static void test_read_resp_never_overreads(void **state)
{
	uint16_t regs[MB_MAX_READ_REGS];
	uint8_t bits[MB_MAX_READ_BITS];

	(void)state;
	for (unsigned fc = 0; fc < 256; fc++)
		for (unsigned bc = 0; bc < 256; bc += 3)
			for (size_t len = 0; len <= 3; len++) {
				/* an exact-size heap copy lets ASan see any overread */
				uint8_t *pdu = test_malloc(len ? len : 1);
				if (len > 0)
					pdu[0] = (uint8_t)fc;
				if (len > 1)
					pdu[1] = (uint8_t)bc;
				if (len > 2)
					pdu[2] = 0xAA;
				for (int t = 0; t < 4; t++) {
					int rc = mbpdu_read_resp(pdu, len, (enum mb_table)t, 1, regs, bits);
					assert_true(rc != 0 || len >= 3);
				}
				test_free(pdu);
			}
}

/* --- write replies ------------------------------------------------------------------- */

static void test_write_resp(void **state)
{
	uint8_t req[MB_PDU_MAX], resp[8];
	size_t n;

	(void)state;
	n = mbpdu_write_coil_req(req, 0x00AC, 1);
	assert_int_equal(mbpdu_write_resp(req, n, req, n), 0); /* a pure echo */
	memcpy(resp, req, 5);
	resp[3] = 0x00;
	assert_int_equal(mbpdu_write_resp(req, n, resp, 5), MBE_PROTO); /* other value */
	resp[3] = 0xFF;
	resp[2] = 0xAD;
	assert_int_equal(mbpdu_write_resp(req, n, resp, 5), MBE_PROTO); /* other address */
	assert_int_equal(mbpdu_write_resp(req, n, req, 4), MBE_PROTO); /* short */
	assert_int_equal(mbpdu_write_resp(req, n, req, 0), MBE_PROTO);
	const uint8_t exc[] = { 0x85, 0x04 };
	assert_int_equal(mbpdu_write_resp(req, n, exc, 2), MBE_EXC_BASE + 4);
	const uint8_t wrongexc[] = { 0x86, 0x04 };
	assert_int_equal(mbpdu_write_resp(req, n, wrongexc, 2), MBE_PROTO);

	n = mbpdu_write_reg_req(req, 0x0001, 0x0003);
	assert_int_equal(mbpdu_write_resp(req, n, req, n), 0);
	memcpy(resp, req, 5);
	resp[4] = 0x04;
	assert_int_equal(mbpdu_write_resp(req, n, resp, 5), MBE_PROTO);
	resp[4] = 0x03;
	resp[0] = 0x05;
	assert_int_equal(mbpdu_write_resp(req, n, resp, 5), MBE_PROTO); /* wrong fc */

	const uint16_t regs[2] = { 0x000A, 0x0102 };
	n = mbpdu_write_regs_req(req, 0x0001, regs, 2);
	const uint8_t ok16[] = { 0x10, 0x00, 0x01, 0x00, 0x02 };
	assert_int_equal(mbpdu_write_resp(req, n, ok16, 5), 0);
	const uint8_t bad16[] = { 0x10, 0x00, 0x01, 0x00, 0x01 };
	assert_int_equal(mbpdu_write_resp(req, n, bad16, 5), MBE_PROTO); /* other quantity */
	const uint8_t long16[] = { 0x10, 0x00, 0x01, 0x00, 0x02, 0x00 };
	assert_int_equal(mbpdu_write_resp(req, n, long16, 6), MBE_PROTO);
	const uint8_t exc16[] = { 0x90, 0x02 };
	assert_int_equal(mbpdu_write_resp(req, n, exc16, 2), MBE_EXC_BASE + 2);

	const uint8_t bits[10] = { 1, 0, 1, 1, 0, 0, 1, 1, 1, 0 };
	n = mbpdu_write_coils_req(req, 0x0013, bits, 10);
	const uint8_t ok15[] = { 0x0F, 0x00, 0x13, 0x00, 0x0A };
	assert_int_equal(mbpdu_write_resp(req, n, ok15, 5), 0);
	const uint8_t bad15[] = { 0x0F, 0x00, 0x14, 0x00, 0x0A };
	assert_int_equal(mbpdu_write_resp(req, n, bad15, 5), MBE_PROTO);

	/* a request that is not a write has no write reply */
	uint8_t rd[5];
	mbpdu_read_req(rd, MB_HOLDING, 0, 1);
	assert_int_equal(mbpdu_write_resp(rd, 5, rd, 5), MBE_PROTO);
}

/* --- MBAP ------------------------------------------------------------------------------ */

static void test_mbap(void **state)
{
	uint8_t adu[MBTCP_ADU_MAX], pdu[MB_PDU_MAX];
	uint16_t tid = 0;
	uint8_t unit = 0;
	size_t n;

	(void)state;
	n = mbpdu_read_req(pdu, MB_HOLDING, 0x006B, 3);
	assert_int_equal(mbtcp_frame(adu, 0x1234, 0x11, pdu, n), 12);
	assert_memory_equal(adu,
			    ((uint8_t[]){ 0x12, 0x34, 0x00, 0x00, 0x00, 0x06, 0x11, 0x03, 0x00, 0x6B,
					  0x00, 0x03 }),
			    12);
	assert_int_equal(mbtcp_header(adu, &tid, &unit), 5);
	assert_int_equal(tid, 0x1234);
	assert_int_equal(unit, 0x11);

	/* the largest PDU fits, one more does not */
	memset(pdu, 0x42, sizeof pdu);
	assert_int_equal(mbtcp_frame(adu, 1, 1, pdu, MB_PDU_MAX), MBTCP_ADU_MAX);
	assert_int_equal(adu[4], 0x00);
	assert_int_equal(adu[5], 254);
	assert_int_equal(mbtcp_header(adu, NULL, NULL), MB_PDU_MAX);
	assert_int_equal(mbtcp_frame(adu, 1, 1, pdu, MB_PDU_MAX + 1), 0);
	assert_int_equal(mbtcp_frame(adu, 1, 1, pdu, 0), 0);

	/* headers that are not Modbus TCP */
	const uint8_t proto1[7] = { 0, 1, 0, 1, 0, 6, 1 };
	assert_int_equal(mbtcp_header(proto1, &tid, &unit), -1);
	const uint8_t len0[7] = { 0, 1, 0, 0, 0, 0, 1 };
	assert_int_equal(mbtcp_header(len0, &tid, &unit), -1);
	const uint8_t len1[7] = { 0, 1, 0, 0, 0, 1, 1 }; /* a unit id and no PDU */
	assert_int_equal(mbtcp_header(len1, &tid, &unit), -1);
	const uint8_t len2[7] = { 0, 1, 0, 0, 0, 2, 1 };
	assert_int_equal(mbtcp_header(len2, &tid, &unit), 1);
	const uint8_t len255[7] = { 0, 1, 0, 0, 0, 255, 1 };
	assert_int_equal(mbtcp_header(len255, &tid, &unit), -1);
	const uint8_t huge[7] = { 0, 1, 0, 0, 0xFF, 0xFF, 1 };
	assert_int_equal(mbtcp_header(huge, &tid, &unit), -1);
}

/* --- server ------------------------------------------------------------------------------ */

struct fake {
	uint16_t holding[16], input[16];
	uint8_t coils[16], discrete[16];
	int calls;
	int fail; /* exception code the callbacks return, 0 for none */
};

static int fake_read_regs(void *ctx, enum mb_table t, uint16_t start, uint16_t count, uint16_t *out)
{
	struct fake *f = ctx;
	f->calls++;
	if (f->fail)
		return f->fail;
	if ((unsigned)start + count > 16)
		return 2;
	memcpy(out, (t == MB_HOLDING ? f->holding : f->input) + start, count * sizeof *out);
	return 0;
}

static int fake_read_bits(void *ctx, enum mb_table t, uint16_t start, uint16_t count, uint8_t *out)
{
	struct fake *f = ctx;
	f->calls++;
	if (f->fail)
		return f->fail;
	if ((unsigned)start + count > 16)
		return 2;
	memcpy(out, (t == MB_COIL ? f->coils : f->discrete) + start, count);
	return 0;
}

static int fake_write_regs(void *ctx, uint16_t start, uint16_t count, const uint16_t *in)
{
	struct fake *f = ctx;
	f->calls++;
	if (f->fail)
		return f->fail;
	if ((unsigned)start + count > 16)
		return 2;
	memcpy(f->holding + start, in, count * sizeof *in);
	return 0;
}

static int fake_write_bits(void *ctx, uint16_t start, uint16_t count, const uint8_t *in)
{
	struct fake *f = ctx;
	f->calls++;
	if (f->fail)
		return f->fail;
	if ((unsigned)start + count > 16)
		return 2;
	memcpy(f->coils + start, in, count);
	return 0;
}

static struct fake fk;
static const struct mbpdu_server srv = { &fk, fake_read_regs, fake_read_bits, fake_write_regs,
					 fake_write_bits };

static int setup_fake(void **state)
{
	(void)state;
	memset(&fk, 0, sizeof fk);
	for (int i = 0; i < 16; i++) {
		fk.holding[i] = (uint16_t)(0x1000 + i);
		fk.input[i] = (uint16_t)(0x2000 + i);
	}
	fk.coils[0] = 1;
	fk.coils[2] = 1;
	fk.coils[9] = 1;
	fk.discrete[1] = 1;
	return 0;
}

static size_t serve(const uint8_t *req, size_t len, uint8_t *resp)
{
	/* an exact-size copy: an overread of the request shows under ASan */
	uint8_t *copy = test_malloc(len ? len : 1);
	size_t n;

	memcpy(copy, req, len);
	n = mbpdu_serve(&srv, copy, len, resp);
	test_free(copy);
	assert_true(n <= MB_PDU_MAX);
	return n;
}

#define REQ(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

static void expect_exc(const uint8_t *req, size_t len, uint8_t fc, uint8_t code)
{
	uint8_t resp[MB_PDU_MAX];

	assert_int_equal(serve(req, len, resp), 2);
	assert_int_equal(resp[0], fc | 0x80);
	assert_int_equal(resp[1], code);
}

static void test_serve_read_regs(void **state)
{
	uint8_t resp[MB_PDU_MAX];
	uint16_t regs[3];

	(void)state;
	assert_int_equal(serve(REQ(0x03, 0x00, 0x02, 0x00, 0x03), resp), 8);
	assert_memory_equal(resp, ((uint8_t[]){ 0x03, 0x06, 0x10, 0x02, 0x10, 0x03, 0x10, 0x04 }), 8);
	/* our own client accepts what our server says */
	assert_int_equal(mbpdu_read_resp(resp, 8, MB_HOLDING, 3, regs, NULL), 0);
	assert_int_equal(regs[2], 0x1004);

	assert_int_equal(serve(REQ(0x04, 0x00, 0x0F, 0x00, 0x01), resp), 4);
	assert_memory_equal(resp, ((uint8_t[]){ 0x04, 0x02, 0x20, 0x0F }), 4);

	/* quantity out of the protocol's range: illegal data value, callback not called */
	fk.calls = 0;
	expect_exc(REQ(0x03, 0x00, 0x00, 0x00, 0x00), 0x03, 3);
	expect_exc(REQ(0x03, 0x00, 0x00, 0x00, 0x7E), 0x03, 3);
	expect_exc(REQ(0x04, 0x00, 0x00, 0x07, 0xD0), 0x04, 3);
	/* wrong PDU length */
	expect_exc(REQ(0x03, 0x00, 0x00, 0x00), 0x03, 3);
	expect_exc(REQ(0x03, 0x00, 0x00, 0x00, 0x01, 0x00), 0x03, 3);
	expect_exc(REQ(0x03), 0x03, 3);
	/* beyond 65535 */
	expect_exc(REQ(0x03, 0xFF, 0xFF, 0x00, 0x02), 0x03, 2);
	assert_int_equal(fk.calls, 0);
	/* the callback's verdict */
	expect_exc(REQ(0x03, 0x00, 0x0F, 0x00, 0x02), 0x03, 2);
	fk.fail = 6;
	expect_exc(REQ(0x04, 0x00, 0x00, 0x00, 0x01), 0x04, 6);
	fk.fail = -1; /* a callback's nonsense is a device failure */
	expect_exc(REQ(0x04, 0x00, 0x00, 0x00, 0x01), 0x04, 4);
}

static void test_serve_read_bits(void **state)
{
	uint8_t resp[MB_PDU_MAX];

	(void)state;
	/* coils 0..9: 1 0 1 0 0 0 0 0 | 0 1 -> 0x05 0x02 */
	assert_int_equal(serve(REQ(0x01, 0x00, 0x00, 0x00, 0x0A), resp), 4);
	assert_memory_equal(resp, ((uint8_t[]){ 0x01, 0x02, 0x05, 0x02 }), 4);
	assert_int_equal(serve(REQ(0x02, 0x00, 0x01, 0x00, 0x01), resp), 3);
	assert_memory_equal(resp, ((uint8_t[]){ 0x02, 0x01, 0x01 }), 3);

	expect_exc(REQ(0x01, 0x00, 0x00, 0x00, 0x00), 0x01, 3);
	expect_exc(REQ(0x02, 0x00, 0x00, 0x07, 0xD1), 0x02, 3);
	expect_exc(REQ(0x02, 0x00, 0x00, 0x00), 0x02, 3);
	expect_exc(REQ(0x01, 0xFF, 0xF0, 0x00, 0x20), 0x01, 2);
	expect_exc(REQ(0x01, 0x00, 0x10, 0x00, 0x01), 0x01, 2); /* from the callback */
}

static void test_serve_write_single(void **state)
{
	uint8_t resp[MB_PDU_MAX];

	(void)state;
	assert_int_equal(serve(REQ(0x05, 0x00, 0x03, 0xFF, 0x00), resp), 5);
	assert_memory_equal(resp, ((uint8_t[]){ 0x05, 0x00, 0x03, 0xFF, 0x00 }), 5);
	assert_int_equal(fk.coils[3], 1);
	assert_int_equal(serve(REQ(0x05, 0x00, 0x03, 0x00, 0x00), resp), 5);
	assert_int_equal(fk.coils[3], 0);
	/* only FF00 and 0000 are coil values */
	expect_exc(REQ(0x05, 0x00, 0x03, 0x00, 0x01), 0x05, 3);
	expect_exc(REQ(0x05, 0x00, 0x03, 0xFF, 0xFF), 0x05, 3);
	expect_exc(REQ(0x05, 0x00, 0x03, 0xFF), 0x05, 3);
	expect_exc(REQ(0x05, 0x00, 0x10, 0xFF, 0x00), 0x05, 2);

	assert_int_equal(serve(REQ(0x06, 0x00, 0x01, 0xBE, 0xEF), resp), 5);
	assert_memory_equal(resp, ((uint8_t[]){ 0x06, 0x00, 0x01, 0xBE, 0xEF }), 5);
	assert_int_equal(fk.holding[1], 0xBEEF);
	expect_exc(REQ(0x06, 0x00, 0x01, 0xBE), 0x06, 3);
	expect_exc(REQ(0x06, 0x00, 0x01, 0xBE, 0xEF, 0x00), 0x06, 3);
	expect_exc(REQ(0x06, 0x00, 0x20, 0x00, 0x00), 0x06, 2);
}

static void test_serve_write_multiple(void **state)
{
	uint8_t resp[MB_PDU_MAX];

	(void)state;
	assert_int_equal(serve(REQ(0x10, 0x00, 0x04, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02), resp), 5);
	assert_memory_equal(resp, ((uint8_t[]){ 0x10, 0x00, 0x04, 0x00, 0x02 }), 5);
	assert_int_equal(fk.holding[4], 0x000A);
	assert_int_equal(fk.holding[5], 0x0102);
	assert_int_equal(fk.holding[6], 0x1006);

	fk.calls = 0;
	/* byte count disagreeing with quantity, or with the length */
	expect_exc(REQ(0x10, 0x00, 0x04, 0x00, 0x02, 0x03, 0x00, 0x0A, 0x01), 0x10, 3);
	expect_exc(REQ(0x10, 0x00, 0x04, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01), 0x10, 3);
	expect_exc(REQ(0x10, 0x00, 0x04, 0x00, 0x02, 0x04, 0x00, 0x0A, 0x01, 0x02, 0x03), 0x10, 3);
	expect_exc(REQ(0x10, 0x00, 0x04, 0x00, 0x00, 0x00), 0x10, 3);
	expect_exc(REQ(0x10, 0x00, 0x04, 0x00, 0x7C, 0xF8), 0x10, 3); /* 124 > 123 */
	expect_exc(REQ(0x10, 0x00, 0x04, 0x00), 0x10, 3);
	/* a byte count of 255 that the length does not back */
	expect_exc(REQ(0x10, 0x00, 0x00, 0x00, 0x01, 0xFF, 0x00, 0x00), 0x10, 3);
	expect_exc(REQ(0x10, 0xFF, 0xFF, 0x00, 0x02, 0x04, 0, 0, 0, 0), 0x10, 2);
	assert_int_equal(fk.calls, 0);

	/* 10 coils from 2: CD 01 */
	memset(fk.coils, 0, sizeof fk.coils);
	assert_int_equal(serve(REQ(0x0F, 0x00, 0x02, 0x00, 0x0A, 0x02, 0xCD, 0x01), resp), 5);
	assert_memory_equal(resp, ((uint8_t[]){ 0x0F, 0x00, 0x02, 0x00, 0x0A }), 5);
	const uint8_t want[16] = { 0, 0, 1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0 };
	assert_memory_equal(fk.coils, want, 16);
	expect_exc(REQ(0x0F, 0x00, 0x02, 0x00, 0x0A, 0x01, 0xCD), 0x0F, 3);
	expect_exc(REQ(0x0F, 0x00, 0x02, 0x00, 0x0A, 0x02, 0xCD), 0x0F, 3);
	expect_exc(REQ(0x0F, 0x00, 0x02, 0x00, 0x00, 0x00), 0x0F, 3);
	expect_exc(REQ(0x0F, 0x00, 0x02, 0x07, 0xB1, 0xF7), 0x0F, 3); /* 1969 > 1968 */
	expect_exc(REQ(0x0F, 0x00, 0x0F, 0x00, 0x02, 0x01, 0x03), 0x0F, 2); /* callback */
}

static void test_serve_unknown(void **state)
{
	uint8_t resp[MB_PDU_MAX];
	struct mbpdu_server ro = srv;

	(void)state;
	expect_exc(REQ(0x07), 0x07, 1);
	expect_exc(REQ(0x2B, 0x0E, 0x01, 0x00), 0x2B, 1);
	expect_exc(REQ(0x00), 0x00, 1);
	expect_exc(REQ(0x83, 0x00), 0x83, 1);
	assert_int_equal(mbpdu_serve(&srv, (const uint8_t *)"", 0, resp), 0);

	/* a server without write callbacks does not offer writes */
	ro.write_regs = NULL;
	ro.write_bits = NULL;
	assert_int_equal(mbpdu_serve(&ro, REQ(0x06, 0x00, 0x01, 0x00, 0x01), resp), 2);
	assert_memory_equal(resp, ((uint8_t[]){ 0x86, 0x01 }), 2);
	assert_int_equal(mbpdu_serve(&ro, REQ(0x0F, 0x00, 0x01, 0x00, 0x01, 0x01, 0x01), resp), 2);
	assert_memory_equal(resp, ((uint8_t[]){ 0x8F, 0x01 }), 2);
}

/* Short and odd requests of every function code: the server must answer without
 * reading past the request (ASan checks the exact-size copies). */
static void test_serve_fuzzish(void **state)
{
	uint8_t req[12], resp[MB_PDU_MAX];

	(void)state;
	for (unsigned fc = 0; fc < 256; fc++)
		for (size_t len = 1; len <= sizeof req; len++)
			for (unsigned fill = 0; fill < 256; fill += 51) {
				memset(req, (int)fill, sizeof req);
				req[0] = (uint8_t)fc;
				size_t n = serve(req, len, resp);
				assert_true(n >= 2);
				assert_true(resp[0] == fc || resp[0] == (fc | 0x80));
			}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_read_requests),
		cmocka_unit_test(test_write_requests),
		cmocka_unit_test(test_read_resp_regs),
		cmocka_unit_test(test_read_resp_bits),
		cmocka_unit_test(test_read_resp_malformed),
		cmocka_unit_test(test_read_resp_exception),
		cmocka_unit_test(test_read_resp_never_overreads),
		cmocka_unit_test(test_write_resp),
		cmocka_unit_test(test_mbap),
		cmocka_unit_test_setup(test_serve_read_regs, setup_fake),
		cmocka_unit_test_setup(test_serve_read_bits, setup_fake),
		cmocka_unit_test_setup(test_serve_write_single, setup_fake),
		cmocka_unit_test_setup(test_serve_write_multiple, setup_fake),
		cmocka_unit_test_setup(test_serve_unknown, setup_fake),
		cmocka_unit_test_setup(test_serve_fuzzish, setup_fake),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
