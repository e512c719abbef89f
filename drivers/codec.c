/*
 * codec: registers to values and back, for every point type, byte order and word
 * order. Owns the meaning of a point's bytes and nothing else: it must never do I/O,
 * allocate, look at a clock or log. Registers are uint16_t in host order as received
 * (the wire's high byte first); byte_order little swaps the two bytes of each register,
 * word_order little reverses the registers of a 32- or 64-bit value.
 */
#include "codec.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <string.h>

#include "mberr.h"

static const char *const type_names[] = {
	[PT_BOOL] = "bool",
	[PT_INT16] = "int16",
	[PT_UINT16] = "uint16",
	[PT_INT32] = "int32",
	[PT_UINT32] = "uint32",
	[PT_INT64] = "int64",
	[PT_UINT64] = "uint64",
	[PT_FLOAT32] = "float32",
	[PT_FLOAT64] = "float64",
	[PT_STRING] = "string",
};
#define NTYPES (sizeof type_names / sizeof type_names[0])

static const char *const table_names[] = {
	[MB_COIL] = "coil",
	[MB_DISCRETE] = "discrete",
	[MB_INPUT] = "input",
	[MB_HOLDING] = "holding",
};
#define NTABLES (sizeof table_names / sizeof table_names[0])

static bool codec_is_bit_table(enum mb_table t)
{
	return t == MB_COIL || t == MB_DISCRETE;
}

static uint16_t codec_swap16(uint16_t r)
{
	return (uint16_t)((r >> 8) | (r << 8));
}

uint16_t codec_type_regs(enum pt_type t)
{
	switch (t) {
	case PT_BOOL:
	case PT_INT16:
	case PT_UINT16:
		return 1;
	case PT_INT32:
	case PT_UINT32:
	case PT_FLOAT32:
		return 2;
	case PT_INT64:
	case PT_UINT64:
	case PT_FLOAT64:
		return 4;
	case PT_STRING: /* its width is the point's length, not the type's */
	default:
		return 0;
	}
}

uint16_t codec_width(const struct point_def *p)
{
	if (codec_is_bit_table(p->table))
		return 1;
	if (p->type == PT_STRING)
		return p->length;
	return codec_type_regs(p->type);
}

static bool codec_is_int_type(enum pt_type t)
{
	switch (t) {
	case PT_INT16:
	case PT_UINT16:
	case PT_INT32:
	case PT_UINT32:
	case PT_INT64:
	case PT_UINT64:
		return true;
	default:
		return false;
	}
}

static bool codec_is_signed(enum pt_type t)
{
	return t == PT_INT16 || t == PT_INT32 || t == PT_INT64;
}

static bool codec_neutral(const struct point_def *p)
{
	return p->scale == 1.0 && p->offset == 0.0;
}

/*
 * Exact means decoding yields VAL_BOOL, VAL_INT or VAL_UINT: a scale or offset other
 * than the neutral ones makes the value a double even when both are whole numbers,
 * because a scaled 64-bit counter no longer fits a double exactly.
 */
bool codec_is_exact(const struct point_def *p)
{
	if (p->type == PT_BOOL || codec_is_bit_table(p->table))
		return true;
	return codec_is_int_type(p->type) && codec_neutral(p);
}

/*
 * The value's registers, most significant first, with each register's bytes in
 * big-endian order: everything after this sees one canonical layout.
 */
static uint64_t codec_gather(const struct point_def *p, const uint16_t *regs, unsigned n)
{
	uint64_t raw = 0;

	for (unsigned i = 0; i < n; i++) {
		unsigned k = p->word_order == ORDER_LITTLE ? n - 1 - i : i;
		uint16_t r = regs[k];
		if (p->byte_order == ORDER_LITTLE)
			r = codec_swap16(r);
		raw = (raw << 16) | r;
	}
	return raw;
}

static void codec_scatter(const struct point_def *p, uint64_t raw, unsigned n, uint16_t *regs)
{
	for (unsigned i = 0; i < n; i++) {
		/* i counts from the least significant word */
		unsigned k = p->word_order == ORDER_LITTLE ? i : n - 1 - i;
		uint16_t r = (uint16_t)(raw >> (16 * i));
		if (p->byte_order == ORDER_LITTLE)
			r = codec_swap16(r);
		regs[k] = r;
	}
}

/* Sign-extend the low `bits` bits of raw; done on unsigned values to stay defined. */
static int64_t codec_sext(uint64_t raw, unsigned bits)
{
	if (bits < 64) {
		uint64_t sign = UINT64_C(1) << (bits - 1);
		uint64_t mask = (UINT64_C(1) << bits) - 1;
		raw &= mask;
		if (raw & sign)
			raw |= ~mask;
	}
	/* two's-complement conversion without relying on implementation-defined casts */
	if (raw <= (uint64_t)INT64_MAX)
		return (int64_t)raw;
	return -(int64_t)(~raw) - 1;
}

static void codec_decode_string(const struct point_def *p, const uint16_t *regs,
				struct value *out, char *strbuf, size_t strcap)
{
	size_t n = 0;

	/* A device pads with NULs or spaces; the first NUL ends the text, as it would
	 * for any C consumer downstream. */
	for (unsigned i = 0; i < p->length && n + 1 < strcap; i++) {
		uint16_t r = regs[i];
		if (p->byte_order == ORDER_LITTLE)
			r = codec_swap16(r);
		char c = (char)(r >> 8);
		if (c == '\0')
			break;
		strbuf[n++] = c;
		if (n + 1 >= strcap)
			break;
		c = (char)(r & 0xff);
		if (c == '\0')
			break;
		strbuf[n++] = c;
	}
	while (n > 0 && strbuf[n - 1] == ' ')
		n--;
	strbuf[n] = '\0';
	out->kind = VAL_STRING;
	out->s = strbuf;
}

int codec_decode_regs(const struct point_def *p, const uint16_t *regs, struct value *out,
		      char *strbuf, size_t strcap)
{
	unsigned n = codec_type_regs(p->type);
	uint64_t raw;
	int64_t sraw = 0;
	double d;

	memset(out, 0, sizeof *out);
	if (codec_is_bit_table(p->table) || (unsigned)p->type >= NTYPES)
		goto unsupported;

	switch (p->type) {
	case PT_BOOL: {
		uint16_t r = regs[0];
		if (p->byte_order == ORDER_LITTLE)
			r = codec_swap16(r);
		out->kind = VAL_BOOL;
		if (p->bit >= 0 && p->bit <= 15)
			out->v.b = (r >> p->bit) & 1;
		else
			out->v.b = r != 0;
		return 0;
	}
	case PT_STRING:
		if (strbuf == NULL || strcap == 0)
			goto unsupported;
		codec_decode_string(p, regs, out, strbuf, strcap);
		return 0;
	case PT_FLOAT32: {
		uint32_t u = (uint32_t)codec_gather(p, regs, n);
		float f;
		memcpy(&f, &u, sizeof f);
		d = f;
		break;
	}
	case PT_FLOAT64: {
		uint64_t u = codec_gather(p, regs, n);
		memcpy(&d, &u, sizeof d);
		break;
	}
	default:
		raw = codec_gather(p, regs, n);
		if (codec_is_signed(p->type))
			sraw = codec_sext(raw, 16 * n);
		if (codec_neutral(p)) {
			if (codec_is_signed(p->type)) {
				out->kind = VAL_INT;
				out->v.i = sraw;
			} else {
				out->kind = VAL_UINT;
				out->v.u = raw;
			}
			return 0;
		}
		d = codec_is_signed(p->type) ? (double)sraw : (double)raw;
		break;
	}
	/* NaN and infinities go through: the JSON writer prints them as null */
	out->kind = VAL_DOUBLE;
	out->v.d = d * p->scale + p->offset;
	return 0;

unsupported:
	out->kind = VAL_NONE;
	out->err = MBE_UNSUPPORTED;
	return -1;
}

void codec_decode_bit(const struct point_def *p, uint8_t bit, struct value *out)
{
	(void)p;
	memset(out, 0, sizeof *out);
	out->kind = VAL_BOOL;
	out->v.b = bit != 0;
}

/* Encode an exact raw value already known to fit the type. */
static int codec_put_raw(const struct point_def *p, uint64_t raw, uint16_t *regs)
{
	unsigned n = codec_type_regs(p->type);
	codec_scatter(p, raw, n, regs);
	return (int)n;
}

static int codec_put_float(const struct point_def *p, double raw, uint16_t *regs)
{
	if (p->type == PT_FLOAT32) {
		/* a finite value that float32 cannot hold would silently become infinite */
		if (isfinite(raw) && fabs(raw) > FLT_MAX) {
			errno = ERANGE;
			return -1;
		}
		float f = (float)raw;
		uint32_t u;
		memcpy(&u, &f, sizeof u);
		return codec_put_raw(p, u, regs);
	}
	uint64_t u;
	memcpy(&u, &raw, sizeof u);
	return codec_put_raw(p, u, regs);
}

static bool codec_encodable(const struct point_def *p)
{
	if (codec_is_bit_table(p->table) || (unsigned)p->type >= NTYPES)
		return false;
	if (p->type == PT_STRING)
		return false;
	if (p->type == PT_BOOL && p->bit >= 0)
		return false;
	return true;
}

int codec_encode_int(const struct point_def *p, int64_t raw, uint16_t *regs)
{
	if (!codec_encodable(p)) {
		errno = EINVAL;
		return -1;
	}
	switch (p->type) {
	case PT_BOOL:
		if (raw != 0 && raw != 1)
			goto range;
		return codec_put_raw(p, (uint64_t)raw, regs);
	case PT_INT16:
		if (raw < INT16_MIN || raw > INT16_MAX)
			goto range;
		break;
	case PT_UINT16:
		if (raw < 0 || raw > UINT16_MAX)
			goto range;
		break;
	case PT_INT32:
		if (raw < INT32_MIN || raw > INT32_MAX)
			goto range;
		break;
	case PT_UINT32:
		if (raw < 0 || raw > (int64_t)UINT32_MAX)
			goto range;
		break;
	case PT_INT64:
		break;
	case PT_UINT64:
		if (raw < 0)
			goto range;
		break;
	case PT_FLOAT32:
	case PT_FLOAT64:
		return codec_put_float(p, (double)raw, regs);
	default:
		errno = EINVAL;
		return -1;
	}
	/* two's complement, truncated to the type's width by codec_scatter */
	return codec_put_raw(p, (uint64_t)raw, regs);
range:
	errno = ERANGE;
	return -1;
}

int codec_encode_uint(const struct point_def *p, uint64_t raw, uint16_t *regs)
{
	if (raw <= (uint64_t)INT64_MAX)
		return codec_encode_int(p, (int64_t)raw, regs);
	if (!codec_encodable(p)) {
		errno = EINVAL;
		return -1;
	}
	if (p->type == PT_UINT64)
		return codec_put_raw(p, raw, regs);
	if (p->type == PT_FLOAT32 || p->type == PT_FLOAT64)
		return codec_put_float(p, (double)raw, regs);
	errno = ERANGE;
	return -1;
}

int codec_encode_regs(const struct point_def *p, double value, uint16_t *regs)
{
	double raw;

	if (!codec_encodable(p)) {
		errno = EINVAL;
		return -1;
	}
	if (p->type == PT_BOOL) {
		if (isnan(value)) {
			errno = ERANGE;
			return -1;
		}
		return codec_put_raw(p, value != 0.0, regs);
	}
	raw = (value - p->offset) / p->scale;
	if (p->type == PT_FLOAT32 || p->type == PT_FLOAT64)
		return codec_put_float(p, raw, regs);

	if (!isfinite(raw)) {
		errno = ERANGE;
		return -1;
	}
	raw = round(raw);
	/* Bounds as exact powers of two: INT64_MAX itself is not representable as a
	 * double, and comparing against its rounded value would let 2^63 through. */
	if (codec_is_signed(p->type)) {
		if (raw < -9223372036854775808.0 || raw >= 9223372036854775808.0) {
			errno = ERANGE;
			return -1;
		}
		return codec_encode_int(p, (int64_t)raw, regs);
	}
	if (raw < 0.0 || raw >= 18446744073709551616.0) {
		errno = ERANGE;
		return -1;
	}
	return codec_encode_uint(p, (uint64_t)raw, regs);
}

void codec_set_bit(const struct point_def *p, bool on, uint16_t *reg)
{
	uint16_t r = *reg;

	if (p->byte_order == ORDER_LITTLE)
		r = codec_swap16(r);
	if (p->bit >= 0 && p->bit <= 15) {
		uint16_t m = (uint16_t)(1u << p->bit);
		r = on ? (uint16_t)(r | m) : (uint16_t)(r & ~m);
	} else {
		r = on;
	}
	if (p->byte_order == ORDER_LITTLE)
		r = codec_swap16(r);
	*reg = r;
}

const char *codec_type_name(enum pt_type t)
{
	if ((unsigned)t >= NTYPES)
		return NULL;
	return type_names[t];
}

int codec_type_from_name(const char *s)
{
	if (s == NULL)
		return -1;
	for (size_t i = 0; i < NTYPES; i++)
		if (strcmp(s, type_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *codec_table_name(enum mb_table t)
{
	if ((unsigned)t >= NTABLES)
		return NULL;
	return table_names[t];
}

int codec_table_from_name(const char *s)
{
	if (s == NULL)
		return -1;
	for (size_t i = 0; i < NTABLES; i++)
		if (strcmp(s, table_names[i]) == 0)
			return (int)i;
	return -1;
}
