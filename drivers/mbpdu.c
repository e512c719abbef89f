/*
 * mbpdu: Modbus PDUs and MBAP headers as bytes. Owns the wire layout of requests,
 * replies and exceptions, for the client (pollers, sluicectl probe) and the server
 * (sluice-sim). Pure: it must never do I/O, allocate or keep state, and it must never
 * read a byte of a reply or request before checking that the length covers it —
 * both come from the network and are fuzzed.
 */
#include "mbpdu.h"

#include <string.h>

#include "mberr.h"

enum {
	MB_EXC_ILLEGAL_FUNCTION = 1,
	MB_EXC_ILLEGAL_ADDRESS = 2,
	MB_EXC_ILLEGAL_VALUE = 3,
	MB_EXC_DEVICE_FAILURE = 4,
};

static uint16_t get16(const uint8_t *b)
{
	return (uint16_t)((b[0] << 8) | b[1]);
}

static void put16(uint8_t *b, uint16_t v)
{
	b[0] = (uint8_t)(v >> 8);
	b[1] = (uint8_t)v;
}

/* Address + quantity past the end of the 16-bit address space is not a request. */
static int mbpdu_range_ok(uint16_t start, uint16_t count)
{
	return (uint32_t)start + count <= 0x10000;
}

uint8_t mbpdu_read_fc(enum mb_table t)
{
	switch (t) {
	case MB_COIL:
		return MB_FC_READ_COILS;
	case MB_DISCRETE:
		return MB_FC_READ_DISCRETE;
	case MB_HOLDING:
		return MB_FC_READ_HOLDING;
	case MB_INPUT:
		return MB_FC_READ_INPUT;
	default:
		return 0;
	}
}

static int mbpdu_is_bits(enum mb_table t)
{
	return t == MB_COIL || t == MB_DISCRETE;
}

static int mbpdu_read_count_ok(enum mb_table t, uint16_t count)
{
	uint16_t max = mbpdu_is_bits(t) ? MB_MAX_READ_BITS : MB_MAX_READ_REGS;
	return count >= 1 && count <= max;
}

size_t mbpdu_read_req(uint8_t *buf, enum mb_table t, uint16_t start, uint16_t count)
{
	uint8_t fc = mbpdu_read_fc(t);

	if (fc == 0 || !mbpdu_read_count_ok(t, count) || !mbpdu_range_ok(start, count))
		return 0;
	buf[0] = fc;
	put16(buf + 1, start);
	put16(buf + 3, count);
	return 5;
}

/* An exception reply is exactly the function code with its high bit set and one code
 * byte; code 0 is not an exception code and so is a malformed reply. */
static int mbpdu_exception(const uint8_t *pdu, size_t len, uint8_t fc, int *err)
{
	if (len < 1 || pdu[0] != (fc | 0x80))
		return 0;
	if (len != 2 || pdu[1] == 0)
		*err = MBE_PROTO;
	else
		*err = MBE_EXC_BASE + pdu[1];
	return 1;
}

int mbpdu_read_resp(const uint8_t *pdu, size_t len, enum mb_table t, uint16_t count,
		    uint16_t *regs, uint8_t *bits)
{
	uint8_t fc = mbpdu_read_fc(t);
	size_t want;
	int err;

	if (pdu == NULL || fc == 0 || !mbpdu_read_count_ok(t, count))
		return MBE_PROTO;
	if (mbpdu_exception(pdu, len, fc, &err))
		return err;
	if (len < 2 || pdu[0] != fc)
		return MBE_PROTO;
	want = mbpdu_is_bits(t) ? ((size_t)count + 7) / 8 : (size_t)count * 2;
	if (pdu[1] != want || len != 2 + want)
		return MBE_PROTO;
	if (mbpdu_is_bits(t)) {
		if (bits == NULL)
			return MBE_PROTO;
		for (uint16_t i = 0; i < count; i++)
			bits[i] = (pdu[2 + i / 8] >> (i % 8)) & 1;
	} else {
		if (regs == NULL)
			return MBE_PROTO;
		for (uint16_t i = 0; i < count; i++)
			regs[i] = get16(pdu + 2 + 2 * i);
	}
	return 0;
}

size_t mbpdu_write_coil_req(uint8_t *buf, uint16_t addr, int on)
{
	buf[0] = MB_FC_WRITE_COIL;
	put16(buf + 1, addr);
	put16(buf + 3, on ? 0xFF00 : 0x0000);
	return 5;
}

size_t mbpdu_write_reg_req(uint8_t *buf, uint16_t addr, uint16_t value)
{
	buf[0] = MB_FC_WRITE_REGISTER;
	put16(buf + 1, addr);
	put16(buf + 3, value);
	return 5;
}

static void mbpdu_pack_bits(uint8_t *out, const uint8_t *bits, uint16_t n)
{
	memset(out, 0, ((size_t)n + 7) / 8);
	for (uint16_t i = 0; i < n; i++)
		if (bits[i])
			out[i / 8] |= (uint8_t)(1u << (i % 8));
}

size_t mbpdu_write_coils_req(uint8_t *buf, uint16_t addr, const uint8_t *bits, uint16_t n)
{
	size_t nbytes = ((size_t)n + 7) / 8;

	if (bits == NULL || n < 1 || n > MB_MAX_WRITE_BITS || !mbpdu_range_ok(addr, n))
		return 0;
	buf[0] = MB_FC_WRITE_COILS;
	put16(buf + 1, addr);
	put16(buf + 3, n);
	buf[5] = (uint8_t)nbytes;
	mbpdu_pack_bits(buf + 6, bits, n);
	return 6 + nbytes;
}

size_t mbpdu_write_regs_req(uint8_t *buf, uint16_t addr, const uint16_t *regs, uint16_t n)
{
	if (regs == NULL || n < 1 || n > MB_MAX_WRITE_REGS || !mbpdu_range_ok(addr, n))
		return 0;
	buf[0] = MB_FC_WRITE_REGISTERS;
	put16(buf + 1, addr);
	put16(buf + 3, n);
	buf[5] = (uint8_t)(2 * n);
	for (uint16_t i = 0; i < n; i++)
		put16(buf + 6 + 2 * i, regs[i]);
	return 6 + 2 * (size_t)n;
}

/*
 * Every write reply echoes the first five bytes of its request: FC 5 and 6 echo
 * address and value, FC 15 and 16 address and quantity.
 */
int mbpdu_write_resp(const uint8_t *req, size_t reqlen, const uint8_t *pdu, size_t len)
{
	int err;

	if (req == NULL || pdu == NULL || reqlen < 5)
		return MBE_PROTO;
	switch (req[0]) {
	case MB_FC_WRITE_COIL:
	case MB_FC_WRITE_REGISTER:
	case MB_FC_WRITE_COILS:
	case MB_FC_WRITE_REGISTERS:
		break;
	default:
		return MBE_PROTO;
	}
	if (mbpdu_exception(pdu, len, req[0], &err))
		return err;
	if (len != 5 || memcmp(pdu, req, 5) != 0)
		return MBE_PROTO;
	return 0;
}

size_t mbtcp_frame(uint8_t *adu, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t pdulen)
{
	if (pdu == NULL || pdulen < 1 || pdulen > MB_PDU_MAX)
		return 0;
	put16(adu, tid);
	put16(adu + 2, 0);
	put16(adu + 4, (uint16_t)(pdulen + 1));
	adu[6] = unit;
	memcpy(adu + MBTCP_HDR, pdu, pdulen);
	return MBTCP_HDR + pdulen;
}

/* tid and unit are filled even for a bad header, so the caller can say which frame. */
int mbtcp_header(const uint8_t *hdr, uint16_t *tid, uint8_t *unit)
{
	uint16_t length = get16(hdr + 4);

	if (tid != NULL)
		*tid = get16(hdr);
	if (unit != NULL)
		*unit = hdr[6];
	if (get16(hdr + 2) != 0)
		return -1;
	if (length < 2 || length - 1 > MB_PDU_MAX)
		return -1;
	return length - 1;
}

static size_t mbpdu_exc_resp(uint8_t *resp, uint8_t fc, int code)
{
	/* a callback's odd return (negative, 0 after failing, > 255) is the server's fault */
	if (code < 1 || code > 255)
		code = MB_EXC_DEVICE_FAILURE;
	resp[0] = (uint8_t)(fc | 0x80);
	resp[1] = (uint8_t)code;
	return 2;
}

static size_t mbpdu_serve_read(const struct mbpdu_server *srv, const uint8_t *req,
			       size_t reqlen, uint8_t *resp)
{
	uint8_t fc = req[0];
	enum mb_table t;
	uint16_t start, count;
	int rc;

	switch (fc) {
	case MB_FC_READ_COILS:
		t = MB_COIL;
		break;
	case MB_FC_READ_DISCRETE:
		t = MB_DISCRETE;
		break;
	case MB_FC_READ_HOLDING:
		t = MB_HOLDING;
		break;
	default:
		t = MB_INPUT;
		break;
	}
	if (mbpdu_is_bits(t) ? srv->read_bits == NULL : srv->read_regs == NULL)
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_FUNCTION);
	if (reqlen != 5)
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_VALUE);
	start = get16(req + 1);
	count = get16(req + 3);
	if (!mbpdu_read_count_ok(t, count))
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_VALUE);
	if (!mbpdu_range_ok(start, count))
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_ADDRESS);

	if (mbpdu_is_bits(t)) {
		uint8_t bits[MB_MAX_READ_BITS];
		memset(bits, 0, count);
		rc = srv->read_bits(srv->ctx, t, start, count, bits);
		if (rc != 0)
			return mbpdu_exc_resp(resp, fc, rc);
		resp[0] = fc;
		resp[1] = (uint8_t)(((size_t)count + 7) / 8);
		mbpdu_pack_bits(resp + 2, bits, count);
		return 2 + (size_t)resp[1];
	}
	uint16_t regs[MB_MAX_READ_REGS];
	memset(regs, 0, sizeof regs);
	rc = srv->read_regs(srv->ctx, t, start, count, regs);
	if (rc != 0)
		return mbpdu_exc_resp(resp, fc, rc);
	resp[0] = fc;
	resp[1] = (uint8_t)(2 * count);
	for (uint16_t i = 0; i < count; i++)
		put16(resp + 2 + 2 * i, regs[i]);
	return 2 + 2 * (size_t)count;
}

static size_t mbpdu_serve_write1(const struct mbpdu_server *srv, const uint8_t *req,
				 size_t reqlen, uint8_t *resp)
{
	uint8_t fc = req[0];
	uint16_t addr, value;
	int rc;

	if (fc == MB_FC_WRITE_COIL ? srv->write_bits == NULL : srv->write_regs == NULL)
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_FUNCTION);
	if (reqlen != 5)
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_VALUE);
	addr = get16(req + 1);
	value = get16(req + 3);
	if (fc == MB_FC_WRITE_COIL) {
		if (value != 0xFF00 && value != 0x0000)
			return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_VALUE);
		uint8_t bit = value == 0xFF00;
		rc = srv->write_bits(srv->ctx, addr, 1, &bit);
	} else {
		rc = srv->write_regs(srv->ctx, addr, 1, &value);
	}
	if (rc != 0)
		return mbpdu_exc_resp(resp, fc, rc);
	memcpy(resp, req, 5);
	return 5;
}

static size_t mbpdu_serve_writen(const struct mbpdu_server *srv, const uint8_t *req,
				 size_t reqlen, uint8_t *resp)
{
	uint8_t fc = req[0];
	int coils = fc == MB_FC_WRITE_COILS;
	uint16_t addr, n;
	size_t nbytes;
	int rc;

	if (coils ? srv->write_bits == NULL : srv->write_regs == NULL)
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_FUNCTION);
	if (reqlen < 6)
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_VALUE);
	addr = get16(req + 1);
	n = get16(req + 3);
	nbytes = coils ? ((size_t)n + 7) / 8 : 2 * (size_t)n;
	if (n < 1 || n > (coils ? MB_MAX_WRITE_BITS : MB_MAX_WRITE_REGS) ||
	    req[5] != nbytes || reqlen != 6 + nbytes)
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_VALUE);
	if (!mbpdu_range_ok(addr, n))
		return mbpdu_exc_resp(resp, fc, MB_EXC_ILLEGAL_ADDRESS);

	if (coils) {
		uint8_t bits[MB_MAX_WRITE_BITS];
		for (uint16_t i = 0; i < n; i++)
			bits[i] = (req[6 + i / 8] >> (i % 8)) & 1;
		rc = srv->write_bits(srv->ctx, addr, n, bits);
	} else {
		uint16_t regs[MB_MAX_WRITE_REGS];
		for (uint16_t i = 0; i < n; i++)
			regs[i] = get16(req + 6 + 2 * i);
		rc = srv->write_regs(srv->ctx, addr, n, regs);
	}
	if (rc != 0)
		return mbpdu_exc_resp(resp, fc, rc);
	memcpy(resp, req, 5);
	return 5;
}

/*
 * Checks follow the order of the Modbus application protocol's server state
 * diagram: function code (exception 1), then quantity and length (3), then address
 * range (2), then the callback's own verdict. A request with no function code at all
 * has nothing to answer: 0.
 */
size_t mbpdu_serve(const struct mbpdu_server *srv, const uint8_t *req, size_t reqlen,
		   uint8_t *resp)
{
	if (srv == NULL || req == NULL || reqlen < 1)
		return 0;
	switch (req[0]) {
	case MB_FC_READ_COILS:
	case MB_FC_READ_DISCRETE:
	case MB_FC_READ_HOLDING:
	case MB_FC_READ_INPUT:
		return mbpdu_serve_read(srv, req, reqlen, resp);
	case MB_FC_WRITE_COIL:
	case MB_FC_WRITE_REGISTER:
		return mbpdu_serve_write1(srv, req, reqlen, resp);
	case MB_FC_WRITE_COILS:
	case MB_FC_WRITE_REGISTERS:
		return mbpdu_serve_writen(srv, req, reqlen, resp);
	default:
		return mbpdu_exc_resp(resp, req[0], MB_EXC_ILLEGAL_FUNCTION);
	}
}
