/*
 * mbwrite: a register write checked and encoded for the wire (drivers/mbwrite.h). Owns
 * no state: each function works on the write its caller passes. It must never do I/O,
 * read a clock, log, lock or allocate; the pollers queue, send and report the writes.
 */
#include "mbwrite.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "codec.h"
#include "mbpdu.h"

int mbwrite_prepare(const struct point_def *p, double value, const struct mbwrite_rules *rules,
		    struct mbwrite *out)
{
	bool isbool = p->type == PT_BOOL || (rules->coil_any_type && p->table == MB_COIL);
	bool badval = !isfinite(value) || (isbool && value != 0.0 && value != 1.0);
	int n;

	memset(out, 0, sizeof *out);
	if (!p->writable) {
		errno = EPERM;
		return -1;
	}
	if (rules->value_first && badval) {
		errno = ERANGE;
		return -1;
	}
	if (p->table != MB_COIL && p->table != MB_HOLDING) {
		errno = rules->readonly_errno;
		return -1;
	}
	if ((p->table == MB_COIL && !isbool) || p->type == PT_STRING) {
		errno = EINVAL;
		return -1;
	}
	if (badval) {
		errno = ERANGE;
		return -1;
	}
	out->addr = p->address;
	if (isbool) {
		out->on = value == 1.0;
		if (p->table == MB_COIL) {
			out->fc = MB_FC_WRITE_COIL;
			return 0;
		}
		/* on a bit, the other bits of the register are not ours: the poller reads it
		 * first; without a bit, the register is the bool, 0 or 1 */
		out->fc = MB_FC_WRITE_REGISTER;
		out->n = 1;
		out->rmw = p->bit >= 0;
		codec_set_bit(p, out->on, &out->regs[0]);
		return 0;
	}
	n = codec_encode_regs(p, value, out->regs);
	if (n < 1 || n > 4) {
		errno = n < 0 && errno == ERANGE ? ERANGE : EINVAL;
		return -1;
	}
	out->n = (uint16_t)n;
	out->fc = n == 1 ? MB_FC_WRITE_REGISTER : MB_FC_WRITE_REGISTERS;
	return 0;
}

size_t mbwrite_pdu(const struct mbwrite *w, uint8_t *pdu)
{
	if (w->rmw)
		return mbpdu_read_req(pdu, MB_HOLDING, w->addr, 1);
	switch (w->fc) {
	case MB_FC_WRITE_COIL:
		return mbpdu_write_coil_req(pdu, w->addr, w->on);
	case MB_FC_WRITE_REGISTER:
		return mbpdu_write_reg_req(pdu, w->addr, w->regs[0]);
	default:
		return mbpdu_write_regs_req(pdu, w->addr, w->regs, w->n);
	}
}

void mbwrite_set_bit(struct mbwrite *w, const struct point_def *p, uint16_t reg)
{
	codec_set_bit(p, w->on, &reg);
	w->regs[0] = reg;
	w->n = 1;
	w->fc = MB_FC_WRITE_REGISTER;
	w->rmw = false;
}
