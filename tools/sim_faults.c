/*
 * sim_faults: the fault decisions of sluice-sim and the noise of Modbus TCP faults
 * (sim_faults.h says what it owns). No socket, no clock, no log.
 */
#include <stdlib.h>
#include <string.h>

#include "mberr.h"
#include "mbpdu.h"
#include "sim_faults.h"

#define GOLDEN 0x9e3779b97f4a7c15ULL /* splitmix64's increment */
#define NOISE_SALT 0x6e6f697365ULL   /* "noise": a reply's noise apart from the draws */

/* splitmix64's output of z: sim_rtu's noise step, without keeping the state */
static uint64_t mix(uint64_t z)
{
	return sim_rtu_noise_next(&z);
}

void sim_faults_seed(struct sim_faults *f, uint64_t state)
{
	f->rng = state;
}

int sim_faults_add(struct sim_faults *f, const struct sim_fault_spec *spec, bool crc)
{
	switch (spec->kind) {
	case SIM_FAULT_SLOW:
		f->slow_ms = spec->value;
		break;
	case SIM_FAULT_BAD_CRC:
		if (!crc)
			return 1;
		f->bad_crc_pct = spec->value;
		break;
	case SIM_FAULT_WRONG_UNIT:
		f->wrong_unit_pct = spec->value;
		break;
	case SIM_FAULT_GARBAGE:
		f->garbage_pct = spec->value;
		break;
	case SIM_FAULT_SHORT:
		f->short_pct = spec->value;
		break;
	case SIM_FAULT_SILENT:
		f->silent_pct = spec->value;
		break;
	case SIM_FAULT_EXCEPTION: {
		struct sim_exc_range *ne = realloc(f->exc, (f->nexc + 1) * sizeof *ne);
		if (!ne)
			return -1;
		f->exc = ne;
		ne[f->nexc++] = spec->range;
		break;
	}
	default:
		return 1;
	}
	return 0;
}

void sim_faults_free(struct sim_faults *f)
{
	free(f->exc);
	f->exc = NULL;
	f->nexc = 0;
}

/* True for pct % of the draws, in an order fixed by the seed. A share of 0 does not
 * draw, so a fault that is not given leaves the others' draws where they were. */
static bool roll(struct sim_faults *f, unsigned pct)
{
	if (pct == 0)
		return false;
	f->rng += GOLDEN;
	return mix(f->rng) % 100 < pct;
}

bool sim_faults_silent(struct sim_faults *f)
{
	return roll(f, f->silent_pct);
}

enum mb_table sim_faults_fc_table(uint8_t fc)
{
	switch (fc) {
	case MB_FC_READ_COILS:
	case MB_FC_WRITE_COIL:
	case MB_FC_WRITE_COILS:
		return MB_COIL;
	case MB_FC_READ_DISCRETE:
		return MB_DISCRETE;
	case MB_FC_READ_INPUT:
		return MB_INPUT;
	default:
		return MB_HOLDING;
	}
}

bool sim_faults_exception(struct sim_faults *f, const uint8_t *pdu, size_t plen)
{
	uint8_t fc = plen ? pdu[0] : 0;
	uint32_t start, count;

	if (f->nexc == 0 || plen < 5 || !((fc >= MB_FC_READ_COILS && fc <= MB_FC_WRITE_REGISTER) ||
					  fc == MB_FC_WRITE_COILS || fc == MB_FC_WRITE_REGISTERS))
		return false;
	start = (uint32_t)(pdu[1] << 8 | pdu[2]);
	count = fc == MB_FC_WRITE_COIL || fc == MB_FC_WRITE_REGISTER ? 1
		: (uint32_t)(pdu[3] << 8 | pdu[4]);
	if (count == 0)
		return false; /* mbpdu answers a quantity of 0 with exception 3 */
	for (size_t i = 0; i < f->nexc; i++)
		if (f->exc[i].table == sim_faults_fc_table(fc) && start <= f->exc[i].hi &&
		    start + count - 1 >= f->exc[i].lo &&
		    (f->exc[i].pct >= 100 || roll(f, f->exc[i].pct)))
			return true;
	return false;
}

uint8_t sim_faults_other_unit(uint8_t unit)
{
	return unit >= 247 ? (uint8_t)(unit == 247 ? 1 : unit - 246) : (uint8_t)(unit + 1);
}

bool sim_faults_reply(struct sim_faults *f, uint8_t unit, bool crc, struct sim_rtu_fault *out)
{
	out->delay_ms = f->slow_ms;
	if (crc && roll(f, f->bad_crc_pct))
		out->bad_crc = true;
	if (roll(f, f->wrong_unit_pct))
		out->unit = sim_faults_other_unit(unit);
	bool garbage = roll(f, f->garbage_pct);
	bool cut = roll(f, f->short_pct);
	if (garbage || cut) {
		out->mangle = garbage ? SIM_RTU_GARBAGE : SIM_RTU_SHORT;
		out->noise = mix(f->rng ^ NOISE_SALT);
	}
	return out->delay_ms || out->bad_crc || out->unit != unit || out->mangle != SIM_RTU_INTACT;
}

/* Could a master take pdu[0..len) as the reply to the request req[0..reqlen): a reply
 * or an exception, by the parsers sluiced itself uses? Noise must never be. */
static bool reply_acceptable(const uint8_t *req, size_t reqlen, const uint8_t *pdu, size_t len)
{
	uint16_t regs[MB_MAX_READ_REGS];
	uint8_t bits[MB_MAX_READ_BITS];
	int rc;

	if (reqlen < 5)
		return false;
	if (req[0] >= MB_FC_READ_COILS && req[0] <= MB_FC_READ_INPUT)
		rc = mbpdu_read_resp(pdu, len, sim_faults_fc_table(req[0]),
				     (uint16_t)(req[3] << 8 | req[4]), regs, bits);
	else
		rc = mbpdu_write_resp(req, reqlen, pdu, len);
	return rc == 0 || rc > MBE_EXC_BASE;
}

/*
 * Three kinds of noise, as broken gateways and line noise behind them produce: (0) a
 * valid header with the request's transaction id and an honest length around a PDU of
 * noise that is not the request's function code or its exception; (1) the same with
 * the request's function code and then noise (a byte count that does not fit, a write
 * that does not echo the request); (2) a header of noise and noise after it. A PDU of
 * noise is half to one and a half times the reply's length; a header that would pass
 * for the reply's, or a PDU that would, is changed until it does not.
 */
size_t sim_faults_tcp_garbage(uint8_t *adu, size_t alen, uint16_t tid, uint8_t uid,
			      const uint8_t *req, size_t reqlen, uint64_t noise)
{
	uint64_t x = noise;
	size_t rlen = alen - MBTCP_HDR;
	size_t n = (rlen / 2 > 0 ? rlen / 2 : 1) + (size_t)(sim_rtu_noise_next(&x) % (rlen + 1));
	unsigned kind = (unsigned)(sim_rtu_noise_next(&x) % 3);
	uint8_t fc = req[0], pdu[MB_PDU_MAX];

	if (n > MB_PDU_MAX)
		n = MB_PDU_MAX;
	for (size_t i = 0; i < n; i++)
		pdu[i] = (uint8_t)sim_rtu_noise_next(&x);
	if (kind == 2) {
		uint16_t t;
		uint8_t u;
		for (size_t i = 0; i < MBTCP_HDR; i++)
			adu[i] = (uint8_t)sim_rtu_noise_next(&x);
		if (mbtcp_header(adu, &t, &u) >= 0 && t == tid && u == uid)
			adu[2] ^= 0x80; /* a protocol id that is not Modbus */
		memcpy(adu + MBTCP_HDR, pdu, n);
		return MBTCP_HDR + n;
	}
	if (kind == 0 && (pdu[0] & 0x7F) == fc)
		pdu[0] ^= 0x40;
	if (kind == 1)
		pdu[0] = fc;
	while (reply_acceptable(req, reqlen, pdu, n)) {
		if (n >= 2)
			pdu[1] ^= 0x01; /* the byte count, or the echoed address */
		else
			pdu[0] ^= 0x40;
	}
	return mbtcp_frame(adu, tid, uid, pdu, n);
}

/*
 * Half the time the header stays as it is and promises more than is sent (0 to all but
 * one of the PDU's bytes follow it: a master waits for the rest); else the length is
 * honest about a PDU cut after 1 to all but one of its bytes, too short for its byte
 * count.
 */
size_t sim_faults_tcp_short(uint8_t *adu, size_t alen, uint64_t noise)
{
	uint64_t x = noise;
	size_t rlen = alen - MBTCP_HDR;
	size_t keep;

	if (rlen < 2)
		return MBTCP_HDR; /* no reply PDU is this short; still a header of promises */
	if (sim_rtu_noise_next(&x) % 2)
		return MBTCP_HDR + (size_t)(sim_rtu_noise_next(&x) % rlen);
	keep = 1 + (size_t)(sim_rtu_noise_next(&x) % (rlen - 1));
	adu[4] = (uint8_t)((keep + 1) >> 8);
	adu[5] = (uint8_t)(keep + 1);
	return MBTCP_HDR + keep;
}
