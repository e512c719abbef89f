/*
 * pollshared: the logic every poller shares (drivers/tcpoll.c, drivers/serpoll.c), so
 * that a Modbus TCP device and a serial one are decoded, judged, written and logged by
 * the same rules. Owns no state of its own: each function works on what its caller
 * passes. It must never do I/O, read a clock, log, lock or allocate; the pollers do
 * that around these calls, each on its own thread.
 */
#include "pollshared.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mberr.h"
#include "mbpdu.h"
#include "sunspec.h"

#define PS_EXC_GW_PATH 0x0A    /* gateway path unavailable */
#define PS_EXC_GW_TARGET 0x0B  /* gateway target device failed to respond */

int pollshared_check_device(const struct site *cfg, const struct device_cfg *d, char *err,
			    size_t errlen)
{
	if (d->bus >= cfg->nbuses) {
		snprintf(err, errlen, "device %s: bus index %zu out of range", d->id, d->bus);
		return -1;
	}
	if (d->npoints > UINT16_MAX) {
		/* a reading counts its values in 16 bits */
		snprintf(err, errlen, "device %s: %zu points, at most %u", d->id, d->npoints,
			 UINT16_MAX);
		return -1;
	}
	return 0;
}

bool pollshared_dev_polled(const struct site *cfg, const struct device_cfg *d,
			   unsigned kinds)
{
	unsigned kind;

	if (d->bus >= cfg->nbuses)
		return false;
	kind = (unsigned)cfg->buses[d->bus].kind;
	/* a sunspec device is polled once discovery (daemon/sunspec_setup.c) gave it points */
	return kind < 32 && (kinds & POLLSHARED_BUS(kind)) != 0 &&
	       (!d->sunspec || d->npoints > 0);
}

size_t pollshared_strbytes(const struct device_cfg *d)
{
	size_t n = 0;

	for (size_t k = 0; k < d->npoints; k++)
		if (d->points[k].type == PT_STRING)
			n += 2 * (size_t)d->points[k].length + 1;
	return n;
}

/* The fractional parts of i*phi are evenly spread for any number of devices, unlike a
 * hash modulo the interval: a thousand devices at 1 s do not fire together. */
int64_t pollshared_phase(uint32_t index, int64_t interval)
{
	uint64_t frac = ((uint64_t)index * UINT64_C(0x9E3779B97F4A7C15)) >> 32;

	return (int64_t)((frac * (uint64_t)interval) >> 32);
}

void pollshared_fail_reqs(const struct read_plan *plan, struct reading *r, size_t from,
			  size_t to, int code)
{
	for (size_t i = 0; i < plan->npoints; i++) {
		if (plan->slots[i].req < from || plan->slots[i].req >= to)
			continue;
		memset(&r->values[i], 0, sizeof r->values[i]);
		r->values[i].kind = VAL_NONE;
		r->values[i].err = code;
	}
}

void pollshared_decode_request(const struct device_cfg *d, const struct read_plan *plan,
			       struct reading *r, size_t reqi, const uint16_t *regs,
			       const uint8_t *bits)
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

bool pollshared_reading_failed(const struct reading *r)
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
bool pollshared_is_answer(int rc)
{
	return rc == 0 || (rc > MBE_EXC_BASE && rc != MBE_EXC_BASE + PS_EXC_GW_PATH &&
			   rc != MBE_EXC_BASE + PS_EXC_GW_TARGET);
}

int pollshared_write_prepare(const struct point_def *p, double value,
			     const struct pollshared_wrules *rules, struct pollshared_wreq *out)
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

void pollshared_logpace_start(struct pollshared_logpace *lp, const struct pollshared_logsched *s,
			      int64_t since)
{
	if (s->nmarks > 0) {
		lp->step = 1;
		lp->next = since + s->marks[0];
	} else {
		lp->gap = s->first;
		lp->next = since + lp->gap;
	}
}

bool pollshared_logpace_due(struct pollshared_logpace *lp, const struct pollshared_logsched *s,
			    int64_t since, int64_t now)
{
	if (now < lp->next)
		return false;
	if (s->nmarks > 0) {
		/* an outage may outlast several steps between two checks: skip those */
		while (lp->next <= now)
			lp->next = lp->step < s->nmarks ? since + s->marks[lp->step++] :
							  lp->next + s->every;
	} else {
		lp->gap = 2 * lp->gap < s->max ? 2 * lp->gap : s->max;
		lp->next = now + lp->gap;
	}
	return true;
}

void pollshared_fmt_span(char *buf, size_t len, int64_t ms, enum pollshared_span style)
{
	long long s = (long long)(ms / 1000);

	if (style == POLLSHARED_SPAN_COARSE) {
		if (s < 120)
			snprintf(buf, len, "%llds", s);
		else if (s < 7200)
			snprintf(buf, len, "%lldmin", s / 60);
		else
			snprintf(buf, len, "%lldh", s / 3600);
		return;
	}
	if (s < 60)
		snprintf(buf, len, "%llds", s);
	else if (s < 3600)
		snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, len, "%lldh%02lldm", s / 3600, s % 3600 / 60);
	else
		snprintf(buf, len, "%lldd%02lldh", s / 86400, s % 86400 / 3600);
}
