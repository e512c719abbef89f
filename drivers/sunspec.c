/*
 * sunspec: SunSpec discovery — marker, model chain, and the point list the generic
 * pollers read. Owns the knowledge of SunSpec register layouts; must never log, keep
 * state between calls, or trust a length it has not checked: every register here
 * comes from a device (or a fuzzer).
 *
 * Scale factors are read once, at discovery, and baked into each point's scale. The
 * SunSpec specification allows a device to change a sunssf register at run time, but
 * inverters in the field fix them per model and firmware (the SunSpec Alliance's own
 * test tools treat them so); a reload or restart discovers again. Reading them each
 * poll would need a point kind the generic pollers do not have.
 *
 * "Not implemented" values: a point whose scale factor is not implemented (0x8000) has
 * no meaning and is left out of the list. Values are judged each poll by the pollers
 * (sunspec_not_impl: the point fails with MBE_NOT_IMPL), because inverters mark values
 * absent only at times — W reads 0x8000 at night on some — and a point dropped at a
 * night-time discovery would be gone all day. Only the optional points (VA, VAr,
 * cabinet temperature) are dropped when discovery reads them as not implemented.
 */
#include "sunspec.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mberr.h"

#define SS_MARKER_HI 0x5375 /* "Su" */
#define SS_MARKER_LO 0x6e53 /* "nS" */
#define SS_END 0xFFFF
#define SS_READ_MAX 125
#define SS_NI_I16 0x8000
#define SS_NI_U16 0xFFFF

/* Model lengths (registers after id and length) that the layouts below need. */
#define SS_LEN_COMMON 64  /* Mn..SN; DA and the pad are not used */
#define SS_LEN_INT_INV 50
#define SS_LEN_FLT_INV 60
#define SS_LEN_NAMEPLATE 3 /* DERTyp, WRtg, WRtg_SF */
#define SS_LEN_MPPT_HDR 8
#define SS_LEN_MPPT_MOD 20
#define SS_BODY_MAX (SS_LEN_MPPT_HDR + SS_LEN_MPPT_MOD * SUNSPEC_MAX_MPPT)

enum {
	F_OPT = 1,  /* dropped when discovery reads it as not implemented */
	F_PH_B = 2, /* exists on two- and three-phase inverters only */
	F_PH_C = 4, /* three-phase only */
};

struct ss_field {
	const char *name;
	uint16_t off;      /* in the model body */
	enum pt_type type;
	int sf;            /* body offset of its scale factor, -1 for none */
	const char *unit;
	unsigned flags;
};

/* Inverter models 101 (single phase), 102 (split phase), 103 (three phase):
 * integers with scale factors. */
static const struct ss_field ss_int_inv[] = {
	{ "A", 0, PT_UINT16, 4, "A", 0 },
	{ "PhVphA", 8, PT_UINT16, 11, "V", 0 },
	{ "PhVphB", 9, PT_UINT16, 11, "V", F_PH_B },
	{ "PhVphC", 10, PT_UINT16, 11, "V", F_PH_C },
	{ "W", 12, PT_INT16, 13, "W", 0 },
	{ "Hz", 14, PT_UINT16, 15, "Hz", 0 },
	{ "VA", 16, PT_INT16, 17, "VA", F_OPT },
	{ "VAr", 18, PT_INT16, 19, "var", F_OPT },
	{ "PF", 20, PT_INT16, 21, "%", 0 },
	{ "WH", 22, PT_UINT32, 24, "Wh", 0 },
	{ "DCA", 25, PT_UINT16, 26, "A", 0 },
	{ "DCV", 27, PT_UINT16, 28, "V", 0 },
	{ "DCW", 29, PT_INT16, 30, "W", 0 },
	{ "TmpCab", 31, PT_INT16, 35, "C", F_OPT },
	{ "St", 36, PT_UINT16, -1, "", 0 },
	{ "Evt1", 38, PT_UINT32, -1, "", 0 },
};

/* Inverter models 111/112/113: the same values as float32. */
static const struct ss_field ss_flt_inv[] = {
	{ "A", 0, PT_FLOAT32, -1, "A", 0 },
	{ "PhVphA", 14, PT_FLOAT32, -1, "V", 0 },
	{ "PhVphB", 16, PT_FLOAT32, -1, "V", F_PH_B },
	{ "PhVphC", 18, PT_FLOAT32, -1, "V", F_PH_C },
	{ "W", 20, PT_FLOAT32, -1, "W", 0 },
	{ "Hz", 22, PT_FLOAT32, -1, "Hz", 0 },
	{ "VA", 24, PT_FLOAT32, -1, "VA", F_OPT },
	{ "VAr", 26, PT_FLOAT32, -1, "var", F_OPT },
	{ "PF", 28, PT_FLOAT32, -1, "%", 0 },
	{ "WH", 30, PT_FLOAT32, -1, "Wh", 0 },
	{ "DCA", 32, PT_FLOAT32, -1, "A", 0 },
	{ "DCV", 34, PT_FLOAT32, -1, "V", 0 },
	{ "DCW", 36, PT_FLOAT32, -1, "W", 0 },
	{ "TmpCab", 38, PT_FLOAT32, -1, "C", F_OPT },
	{ "St", 46, PT_UINT16, -1, "", 0 },
	{ "Evt1", 48, PT_UINT32, -1, "", 0 },
};

/* One module of model 160; the scale factors are in the model's header. */
static const struct ss_field ss_mppt_mod[] = {
	{ "DCA", 9, PT_UINT16, 0, "A", 0 },
	{ "DCV", 10, PT_UINT16, 1, "V", 0 },
	{ "DCW", 11, PT_UINT16, 2, "W", 0 },
	{ "DCWH", 12, PT_UINT32, 3, "Wh", 0 },
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* The point list being built; its capacity is fixed by the layouts above. */
#define SS_POINTS_MAX (3 + NELEM(ss_int_inv) + NELEM(ss_mppt_mod) * SUNSPEC_MAX_MPPT)

struct walk {
	sunspec_read_fn read;
	void *ctx;
	struct sunspec_info *info;
	struct point_def *pts;
	size_t npts;
	bool have_common, have_mppt; /* only the first of each counts: the rest repeat names */
	char *err;
	size_t errlen;
};

static int fail(struct walk *w, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct walk *w, int code, const char *fmt, ...)
{
	va_list ap;

	if (w->err && w->errlen) {
		va_start(ap, fmt);
		vsnprintf(w->err, w->errlen, fmt, ap);
		va_end(ap);
	}
	return code;
}

/* Read count registers from addr in requests of at most 125; the caller has checked
 * that addr + count stays within the register space. */
static int read_span(struct walk *w, uint32_t addr, uint32_t count, uint16_t *out)
{
	while (count > 0) {
		uint16_t n = count > SS_READ_MAX ? SS_READ_MAX : (uint16_t)count;
		int rc = w->read(w->ctx, (uint16_t)addr, n, out);
		if (rc != 0)
			return rc;
		addr += n;
		count -= n;
		out += n;
	}
	return 0;
}

static bool sf_valid(uint16_t raw)
{
	int16_t sf = (int16_t)raw;
	/* 0x8000 is "not implemented"; SunSpec scale factors are -10..10 */
	return raw != SS_NI_I16 && sf >= -10 && sf <= 10;
}

static void point_init(struct point_def *p, const char *name, uint16_t addr, enum pt_type type,
		       const char *unit)
{
	memset(p, 0, sizeof *p);
	snprintf(p->name, sizeof p->name, "%s", name);
	p->table = MB_HOLDING;
	p->address = addr;
	p->type = type;
	p->bit = -1;
	p->scale = 1.0;
	snprintf(p->unit, sizeof p->unit, "%s", unit);
}

/*
 * Add the fields of one model (body at addr, its registers in body[0..len)) under the
 * names given, with suffix appended (MPPT modules). sfbody holds the registers the
 * fields' sf offsets index (the body itself, or model 160's header).
 */
static void add_fields(struct walk *w, const struct ss_field *f, size_t nf, uint32_t addr,
		       const uint16_t *body, size_t len, const uint16_t *sfbody, size_t sflen,
		       unsigned phases, const char *suffix)
{
	for (size_t i = 0; i < nf; i++) {
		struct point_def p;
		char name[POINT_NAME_MAX];
		size_t width = codec_type_regs(f[i].type);

		if ((f[i].flags & F_PH_B) && phases < 2)
			continue;
		if ((f[i].flags & F_PH_C) && phases < 3)
			continue;
		if ((size_t)f[i].off + width > len || w->npts >= SS_POINTS_MAX)
			continue;
		snprintf(name, sizeof name, "%s%s", f[i].name, suffix);
		point_init(&p, name, (uint16_t)(addr + f[i].off), f[i].type, f[i].unit);
		if (f[i].sf >= 0) {
			if ((size_t)f[i].sf >= sflen || !sf_valid(sfbody[f[i].sf]))
				continue; /* a value without its scale means nothing */
			p.scale = pow(10.0, (int16_t)sfbody[f[i].sf]);
		}
		if ((f[i].flags & F_OPT) && sunspec_not_impl(&p, body + f[i].off))
			continue;
		w->pts[w->npts++] = p;
	}
}

static void decode_text(const uint16_t *regs, uint16_t nregs, char *buf, size_t cap)
{
	struct point_def p;
	struct value v;

	point_init(&p, "text", 0, PT_STRING, "");
	p.length = nregs;
	if (codec_decode_regs(&p, regs, &v, buf, cap) != 0)
		buf[0] = '\0';
}

static int model_common(struct walk *w, uint32_t body_addr, const uint16_t *body, size_t len)
{
	static const struct {
		const char *name;
		uint16_t off;
	} strs[] = { { "Mn", 0 }, { "Md", 16 }, { "SN", 48 } };
	char *texts[] = { w->info->mn, w->info->md, w->info->sn };

	if (len < SS_LEN_COMMON)
		return fail(w, MBE_PROTO, "SunSpec common model at %u: length %zu, expected at "
			    "least %d", (unsigned)(body_addr - 2), len, SS_LEN_COMMON);
	for (size_t i = 0; i < NELEM(strs); i++) {
		struct point_def *p = &w->pts[w->npts++];

		decode_text(body + strs[i].off, 16, texts[i], SUNSPEC_TEXT_MAX);
		point_init(p, strs[i].name, (uint16_t)(body_addr + strs[i].off), PT_STRING, "");
		p->length = 16;
	}
	return 0;
}

static void model_nameplate(struct walk *w, const uint16_t *body, size_t len)
{
	if (len < SS_LEN_NAMEPLATE || body[1] == SS_NI_U16 || !sf_valid(body[2]))
		return; /* the rated power stays unknown; the pv rule then needs rated_power */
	w->info->rated_w = body[1] * pow(10.0, (int16_t)body[2]);
}

static int model_mppt(struct walk *w, uint16_t id, uint32_t hdr, uint32_t body_addr,
		      const uint16_t *body, size_t have, size_t len)
{
	size_t n;

	if (have < SS_LEN_MPPT_HDR)
		return fail(w, MBE_PROTO, "SunSpec model %u at %u: length %zu, expected at least "
			    "%d", id, (unsigned)hdr, len, SS_LEN_MPPT_HDR);
	n = body[6];
	if (n == SS_NI_U16)
		n = 0;
	if (SS_LEN_MPPT_HDR + n * SS_LEN_MPPT_MOD > len)
		return fail(w, MBE_PROTO, "SunSpec model %u at %u: %zu modules do not fit its "
			    "length %zu", id, (unsigned)hdr, n, len);
	if (n > SUNSPEC_MAX_MPPT)
		n = SUNSPEC_MAX_MPPT; /* the body read holds this many */
	for (size_t k = 0; k < n; k++) {
		size_t off = SS_LEN_MPPT_HDR + k * SS_LEN_MPPT_MOD;
		char suffix[8];

		snprintf(suffix, sizeof suffix, "_%zu", k + 1);
		add_fields(w, ss_mppt_mod, NELEM(ss_mppt_mod), body_addr + off, body + off,
			   SS_LEN_MPPT_MOD, body, SS_LEN_MPPT_HDR, 3, suffix);
	}
	return 0;
}

/* How many registers of model id's body are worth reading (0: skip the model). */
static size_t model_need(uint16_t id, size_t len)
{
	size_t need;

	switch (id) {
	case 1:
		need = SS_LEN_COMMON;
		break;
	case 101: case 102: case 103:
		need = SS_LEN_INT_INV;
		break;
	case 111: case 112: case 113:
		need = SS_LEN_FLT_INV;
		break;
	case 120:
		need = SS_LEN_NAMEPLATE;
		break;
	case 160:
		need = SS_BODY_MAX;
		break;
	default:
		return 0;
	}
	return len < need ? len : need;
}

/* body holds the first have registers of a model of length len. */
static int model_decode(struct walk *w, uint16_t id, uint32_t hdr, const uint16_t *body,
			size_t have, size_t len)
{
	uint32_t body_addr = hdr + 2;
	struct sunspec_info *in = w->info;

	if (id == 1) {
		if (w->have_common)
			return 0;
		w->have_common = true;
		return model_common(w, body_addr, body, have);
	}
	if (id == 120) {
		if (in->rated_w == 0)
			model_nameplate(w, body, have);
		return 0;
	}
	if (id == 160) {
		if (w->have_mppt)
			return 0;
		w->have_mppt = true;
		return model_mppt(w, id, hdr, body_addr, body, have, len);
	}
	len = have;
	if (in->inverter != 0)
		return 0; /* a second inverter model describes the same values: keep the first */
	if (id >= 101 && id <= 103) {
		if (len < SS_LEN_INT_INV)
			return fail(w, MBE_PROTO, "SunSpec model %u at %u: length %zu, expected %d",
				    id, (unsigned)hdr, len, SS_LEN_INT_INV);
		add_fields(w, ss_int_inv, NELEM(ss_int_inv), body_addr, body, len, body, len,
			   id - 100u, "");
	} else {
		if (len < SS_LEN_FLT_INV)
			return fail(w, MBE_PROTO, "SunSpec model %u at %u: length %zu, expected %d",
				    id, (unsigned)hdr, len, SS_LEN_FLT_INV);
		add_fields(w, ss_flt_inv, NELEM(ss_flt_inv), body_addr, body, len, body, len,
			   id - 110u, "");
	}
	in->inverter = id;
	return 0;
}

/* Where the marker is: 0 with info->base set, or an MBE_* code. */
static int find_marker(struct walk *w)
{
	static const uint16_t bases[] = { 40000, 0, 50000 };
	int last = 0;
	bool answered = false;

	for (size_t i = 0; i < NELEM(bases); i++) {
		uint16_t m[2];
		int rc = read_span(w, bases[i], 2, m);

		if (rc == 0 && m[0] == SS_MARKER_HI && m[1] == SS_MARKER_LO) {
			w->info->base = bases[i];
			return 0;
		}
		if (rc == 0 || rc >= MBE_EXC_BASE) {
			answered = true;
			continue;
		}
		last = rc;
		/* a link that is down will not come up for the next base */
		if (rc == MBE_CONNECT || rc == MBE_CLOSED || rc == MBE_IO)
			break;
	}
	if (!answered)
		return fail(w, last, "no answer: %s", mb_strerror(last));
	return fail(w, MBE_PROTO, "no SunSpec marker 'SunS' at 40000, 0 or 50000");
}

static int walk_chain(struct walk *w)
{
	uint32_t hdr = (uint32_t)w->info->base + 2;
	uint16_t body[SS_BODY_MAX];

	for (;;) {
		uint16_t h[2];
		size_t len, need;
		int rc;

		if (hdr + 2 > 0x10000)
			return fail(w, MBE_PROTO, "SunSpec model chain runs past register 65535 "
				    "without an end marker");
		if ((rc = read_span(w, hdr, 2, h)) != 0)
			return fail(w, rc, "SunSpec model header at %u: %s", (unsigned)hdr,
				    mb_strerror(rc));
		if (h[0] == SS_END)
			break;
		if (w->info->nmodels == 0 && h[0] != 1)
			return fail(w, MBE_PROTO, "SunSpec map at %u starts with model %u, not the "
				    "common model 1", (unsigned)w->info->base, h[0]);
		if (w->info->nmodels >= SUNSPEC_MAX_MODELS)
			return fail(w, MBE_PROTO, "SunSpec model chain at %u: no end marker after %d "
				    "models", (unsigned)w->info->base, SUNSPEC_MAX_MODELS);
		len = h[1];
		if (hdr + 2 + len > 0x10000)
			return fail(w, MBE_PROTO, "SunSpec model %u at %u: length %zu runs past "
				    "register 65535", h[0], (unsigned)hdr, len);
		w->info->models[w->info->nmodels++] = h[0];
		if ((need = model_need(h[0], len)) > 0) {
			if ((rc = read_span(w, hdr + 2, (uint32_t)need, body)) != 0)
				return fail(w, rc, "SunSpec model %u at %u: %s", h[0],
					    (unsigned)hdr, mb_strerror(rc));
			if ((rc = model_decode(w, h[0], hdr, body, need, len)) != 0)
				return rc;
		}
		hdr += 2 + (uint32_t)len;
	}
	if (w->info->nmodels == 0)
		return fail(w, MBE_PROTO, "SunSpec map at %u has no models",
			    (unsigned)w->info->base);
	return 0;
}

int sunspec_discover(sunspec_read_fn read, void *ctx, struct sunspec_info *out, char *err,
		     size_t errlen)
{
	struct walk w = { .read = read, .ctx = ctx, .info = out, .err = err, .errlen = errlen };
	int rc;

	memset(out, 0, sizeof *out);
	if (err && errlen)
		err[0] = '\0';
	w.pts = calloc(SS_POINTS_MAX, sizeof *w.pts);
	if (!w.pts)
		return fail(&w, MBE_IO, "out of memory");
	if ((rc = find_marker(&w)) != 0 || (rc = walk_chain(&w)) != 0)
		goto bad;
	if (out->inverter == 0) {
		rc = fail(&w, MBE_PROTO, "SunSpec map at %u has no inverter model (101-103, "
			  "111-113)", (unsigned)out->base);
		goto bad;
	}
	out->points = w.pts;
	out->npoints = w.npts;
	return 0;
bad:
	free(w.pts);
	memset(out, 0, sizeof *out);
	return rc;
}

void sunspec_info_free(struct sunspec_info *info)
{
	if (!info)
		return;
	free(info->points);
	info->points = NULL;
	info->npoints = 0;
}
