/*
 * fuzz_mbpdu: Modbus PDUs and MBAP headers (drivers/mbpdu.c) as they arrive from the
 * network. The first byte picks the parser, the next ones its parameters (the request
 * the reply answers); the rest is the bytes under test, in an exact-size buffer so a
 * read past them is caught. Accepted input is checked against what the parser claims.
 */
#include <string.h>

#include "fuzz.h"
#include "mberr.h"
#include "mbpdu.h"

static int rd_regs(void *ctx, enum mb_table t, uint16_t start, uint16_t count, uint16_t *out)
{
	(void)ctx;
	fuzz_check(count >= 1 && count <= MB_MAX_READ_REGS && t >= MB_INPUT);
	fuzz_check((uint32_t)start + count <= 0x10000);
	for (uint16_t i = 0; i < count; i++)
		out[i] = (uint16_t)(start + i);
	return start == 0xFFFF ? 2 : 0;
}

static int rd_bits(void *ctx, enum mb_table t, uint16_t start, uint16_t count, uint8_t *out)
{
	(void)ctx;
	fuzz_check(count >= 1 && count <= MB_MAX_READ_BITS && t <= MB_DISCRETE);
	fuzz_check((uint32_t)start + count <= 0x10000);
	for (uint16_t i = 0; i < count; i++)
		out[i] = (start + i) & 1;
	return 0;
}

static int wr_regs(void *ctx, uint16_t start, uint16_t count, const uint16_t *in)
{
	(void)ctx;
	fuzz_check(count >= 1 && count <= MB_MAX_WRITE_REGS);
	fuzz_check((uint32_t)start + count <= 0x10000);
	return in[count - 1] == 0xDEAD ? 4 : 0;
}

static int wr_bits(void *ctx, uint16_t start, uint16_t count, const uint8_t *in)
{
	(void)ctx;
	fuzz_check(count >= 1 && count <= MB_MAX_WRITE_BITS);
	fuzz_check((uint32_t)start + count <= 0x10000);
	for (uint16_t i = 0; i < count; i++)
		fuzz_check(in[i] <= 1);
	return 0;
}

/* A heap copy of exactly n bytes (NULL for none), so ASan sees any read past them. */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
	uint8_t *c = malloc(n ? n : 1);

	if (!c)
		abort();
	if (n)
		memcpy(c, p, n);
	return c;
}

static void read_reply(struct fuzz_in *in)
{
	enum mb_table t = (enum mb_table)(fuzz_u8(in) & 3);
	uint16_t count = fuzz_u16(in);
	uint8_t *pdu = dup_exact(in->p, in->n);
	uint16_t regs[MB_MAX_READ_REGS + 1];
	uint8_t bits[MB_MAX_READ_BITS + 1];
	int rc;

	/* counts near the limits are the interesting ones: fold into 0..max+1 */
	count %= (t <= MB_DISCRETE ? MB_MAX_READ_BITS : MB_MAX_READ_REGS) + 2;
	rc = mbpdu_read_resp(pdu, in->n, t, count, regs, bits);
	if (rc == 0) {
		size_t want = t <= MB_DISCRETE ? ((size_t)count + 7) / 8 : 2 * (size_t)count;
		fuzz_check(in->n == 2 + want && pdu[0] == mbpdu_read_fc(t));
	} else {
		fuzz_check(rc == MBE_PROTO || (rc > MBE_EXC_BASE && rc <= MBE_EXC_BASE + 255));
	}
	free(pdu);
}

static void write_reply(struct fuzz_in *in)
{
	size_t reqlen = fuzz_u8(in) % 16;
	uint8_t *req, *pdu;
	int rc;

	if (reqlen > in->n)
		reqlen = in->n;
	req = dup_exact(in->p, reqlen);
	pdu = dup_exact(in->p + reqlen, in->n - reqlen);
	rc = mbpdu_write_resp(req, reqlen, pdu, in->n - reqlen);
	if (rc == 0)
		fuzz_check(in->n - reqlen == 5 && memcmp(req, pdu, 5) == 0);
	free(req);
	free(pdu);
}

static void tcp_header(struct fuzz_in *in)
{
	uint8_t *hdr = dup_exact(in->p, in->n);
	uint16_t tid;
	uint8_t unit;
	int n;

	if (in->n >= MBTCP_HDR) {
		n = mbtcp_header(hdr, &tid, &unit);
		fuzz_check(n == -1 || (n >= 1 && n <= MB_PDU_MAX));
		fuzz_check(tid == (hdr[0] << 8 | hdr[1]) && unit == hdr[6]);
		if (n > 0 && in->n >= MBTCP_HDR + (size_t)n) {
			uint8_t adu[MBTCP_ADU_MAX];
			size_t len = mbtcp_frame(adu, tid, unit, hdr + MBTCP_HDR, (size_t)n);
			fuzz_check(len == MBTCP_HDR + (size_t)n && memcmp(adu, hdr, len) == 0);
		}
	}
	free(hdr);
}

static void serve(struct fuzz_in *in)
{
	uint8_t which = fuzz_u8(in);
	struct mbpdu_server srv = {
		.read_regs = which & 1 ? rd_regs : NULL,
		.read_bits = which & 2 ? rd_bits : NULL,
		.write_regs = which & 4 ? wr_regs : NULL,
		.write_bits = which & 8 ? wr_bits : NULL,
	};
	uint8_t *req = dup_exact(in->p, in->n);
	uint8_t *resp = malloc(MB_PDU_MAX);
	size_t n;

	if (!resp)
		abort();
	n = mbpdu_serve(&srv, req, in->n, resp);
	fuzz_check(n <= MB_PDU_MAX);
	fuzz_check(in->n == 0 || n >= 2);
	if (n >= 2 && in->n >= 5 && req[0] >= 1 && req[0] <= 4 && resp[0] == req[0]) {
		/* a normal read reply must parse as the reply to this very request */
		enum mb_table t = req[0] == 1 ? MB_COIL : req[0] == 2 ? MB_DISCRETE
			       : req[0] == 3 ? MB_HOLDING : MB_INPUT;
		uint16_t count = (uint16_t)(req[3] << 8 | req[4]);
		uint16_t regs[MB_MAX_READ_REGS];
		uint8_t bits[MB_MAX_READ_BITS];
		fuzz_check(mbpdu_read_resp(resp, n, t, count, regs, bits) == 0);
	}
	if (n == 5 && in->n >= 5 && resp[0] == req[0] && (req[0] == 5 || req[0] == 6 ||
	    req[0] == 15 || req[0] == 16))
		fuzz_check(mbpdu_write_resp(req, in->n, resp, n) == 0);
	free(req);
	free(resp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };

	switch (fuzz_u8(&in) & 3) {
	case 0:
		read_reply(&in);
		break;
	case 1:
		write_reply(&in);
		break;
	case 2:
		tcp_header(&in);
		break;
	default:
		serve(&in);
		break;
	}
	return 0;
}
