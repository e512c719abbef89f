/*
 * sunspec: SunSpec discovery. Finds the 'SunS' marker (at 40000, then 0, then 50000),
 * walks the model chain to its end marker and turns the models sluice understands —
 * common (1), inverter (101/102/103 integer with scale factors, 111/112/113 float),
 * nameplate (120) and MPPT (160) — into a plain point list that the generic pollers
 * read every interval, plus the identity (manufacturer, model, serial) and the rated
 * power for the pv rule.
 *
 * sunspec_discover is pure: every register comes through the caller's read callback
 * (in sluiced, a probe through the poller that owns the bus: daemon/sunspec_setup.c),
 * and everything it reads is outside input (it is fuzzed), so each length is checked
 * before it is used. It never logs; the caller decides what to say.
 */
#ifndef SLUICE_SUNSPEC_H
#define SLUICE_SUNSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "codec.h"

/* Read count (1..125) holding registers from addr into out: 0, or an MBE_* code
 * (MBE_EXC_BASE + the exception code for a Modbus exception). */
typedef int (*sunspec_read_fn)(void *ctx, uint16_t addr, uint16_t count, uint16_t *out);

#define SUNSPEC_MAX_MODELS 64   /* a longer chain is taken for garbage */
#define SUNSPEC_TEXT_MAX 33     /* a 16-register string and its NUL */
#define SUNSPEC_MAX_MPPT 16     /* model 160 modules decoded; more are ignored */

struct sunspec_info {
	uint16_t base;                         /* register of the 'SunS' marker */
	uint16_t models[SUNSPEC_MAX_MODELS];   /* model ids in chain order */
	size_t nmodels;
	char mn[SUNSPEC_TEXT_MAX];             /* model 1: manufacturer */
	char md[SUNSPEC_TEXT_MAX];             /* model 1: model */
	char sn[SUNSPEC_TEXT_MAX];             /* model 1: serial number */
	uint16_t inverter;                     /* the inverter model used, 0 when none */
	double rated_w;                        /* nameplate WRtg in W; 0 when not known */
	struct point_def *points;              /* malloc'ed; sunspec_info_free frees it */
	size_t npoints;
};

/*
 * Discover the device behind read. Returns 0 with *out filled, or an MBE_* code with a
 * message in err: the last transport error when the device does not answer, MBE_PROTO
 * for a map that is not SunSpec or a chain that is truncated or garbage ("model 103 at
 * 40070: length 12, expected at least 50"). On failure nothing is left allocated.
 */
int sunspec_discover(sunspec_read_fn read, void *ctx, struct sunspec_info *out, char *err,
		     size_t errlen);

void sunspec_info_free(struct sunspec_info *info);

/*
 * True when regs (the registers of point p as read) hold SunSpec's "not implemented"
 * value for p's type: int16 0x8000, uint16 0xFFFF, int32 0x80000000, uint32 0xFFFFFFFF,
 * float NaN. Pollers of a sunspec device call it after reading, so that a value the
 * device marks as absent (many inverters do so for W at night) is a failed point
 * (MBE_NOT_IMPL), not -32768 W. Accumulators (WH, acc32, whose "not implemented" is 0)
 * are not judged here: 0 is also a new meter's honest reading. Inline, so that the
 * pollers (and their unit tests) need nothing from this module but codec.
 */
static inline bool sunspec_not_impl(const struct point_def *p, const uint16_t *regs)
{
	struct value v;

	switch (p->type) {
	case PT_INT16:
		return regs[0] == 0x8000;
	case PT_UINT16:
		return regs[0] == 0xFFFF;
	case PT_INT32:
		return regs[0] == 0x8000 && regs[1] == 0;
	case PT_UINT32:
		/* acc32 (energy) uses 0 for "not implemented", which a new meter also reads */
		if (strstr(p->name, "WH") != NULL)
			return false;
		return regs[0] == 0xFFFF && regs[1] == 0xFFFF;
	case PT_FLOAT32:
		return codec_decode_regs(p, regs, &v, NULL, 0) == 0 && v.kind == VAL_DOUBLE &&
		       isnan(v.v.d);
	default:
		return false;
	}
}

#endif
