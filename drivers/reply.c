/*
 * reply: a poll's replies into its reading (drivers/reply.h), so that a Modbus TCP
 * device and a serial one are decoded and judged by the same rules. Owns no state: each
 * function works on the reading its caller passes. It must never do I/O, read a clock,
 * log, lock or allocate (a string's bytes go to the reading's own area).
 */
#include "reply.h"

#include <string.h>

#include "codec.h"
#include "mberr.h"
#include "sunspec.h"

#define RP_EXC_GW_PATH 0x0A    /* gateway path unavailable */
#define RP_EXC_GW_TARGET 0x0B  /* gateway target device failed to respond */

void reply_fail(const struct read_plan *plan, struct reading *r, size_t from, size_t to,
		int code)
{
	for (size_t i = 0; i < plan->npoints; i++) {
		if (plan->slots[i].req < from || plan->slots[i].req >= to)
			continue;
		memset(&r->values[i], 0, sizeof r->values[i]);
		r->values[i].kind = VAL_NONE;
		r->values[i].err = code;
	}
}

void reply_decode(const struct device_cfg *d, const struct read_plan *plan, struct reading *r,
		  size_t reqi, const uint16_t *regs, const uint8_t *bits)
{
	const struct plan_req *rq = &plan->reqs[reqi];

	for (size_t i = 0; i < plan->npoints; i++) {
		const struct point_def *p = &d->points[i];
		const struct plan_slot *s = &plan->slots[i];
		struct value v;
		int rc = 0;

		if (s->req != reqi)
			continue;
		memset(&v, 0, sizeof v);
		if ((unsigned)s->offset + codec_width(p) > rq->count) {
			rc = -1; /* a plan that does not cover its point: a bug, not the device's */
		} else if (p->table == MB_COIL || p->table == MB_DISCRETE) {
			codec_decode_bit(p, bits[s->offset], &v);
		} else if (p->type == PT_STRING) {
			size_t cap = 2 * (size_t)p->length + 1;
			char *buf = reading_strbuf(r, cap);
			rc = buf == NULL ? -1 : codec_decode_regs(p, regs + s->offset, &v, buf, cap);
		} else if (d->sunspec && sunspec_not_impl(p, regs + s->offset)) {
			v.kind = VAL_NONE; /* the device says there is no value (drivers/sunspec.h) */
			v.err = MBE_NOT_IMPL;
		} else {
			rc = codec_decode_regs(p, regs + s->offset, &v, NULL, 0);
		}
		if (rc != 0) {
			memset(&v, 0, sizeof v);
			v.kind = VAL_NONE;
			v.err = MBE_UNSUPPORTED;
		}
		r->values[i] = v;
	}
}

bool reply_reading_failed(const struct reading *r)
{
	for (uint16_t i = 0; i < r->nvalues; i++)
		if (r->values[i].kind == VAL_NONE)
			return true;
	return false;
}

/* An exception reply is an answer: the device is there, it only refused. Exceptions
 * 0x0A and 0x0B come from a gateway (a serial server in gateway mode) saying that the
 * device behind it did not answer: for the breaker, that is no answer. Exception codes
 * start at 1 (mbpdu reads a code 0 as a malformed reply). */
bool reply_is_answer(int rc)
{
	return rc == 0 || (rc > MBE_EXC_BASE && rc != MBE_EXC_BASE + RP_EXC_GW_PATH &&
			   rc != MBE_EXC_BASE + RP_EXC_GW_TARGET);
}
