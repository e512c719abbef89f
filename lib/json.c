/*
 * json: owns the text of every JSON document sluice writes (telemetry, alerts, status,
 * health, replay output). It guarantees the text is valid JSON whatever the input:
 * names typed by a technician, bytes read from a device's string registers, NaN from a
 * broken sensor. It must never do I/O, never abort on bad input, and never write
 * a byte of invalid UTF-8 or a number JSON cannot read.
 *
 * Allocation failure is sticky (b->oom): later appends are ignored so a caller can
 * build a whole document and check once at the end.
 */
#include "json.h"

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void jb_init(struct jbuf *b)
{
	b->p = NULL;
	b->len = 0;
	b->cap = 0;
	b->oom = false;
}

void jb_free(struct jbuf *b)
{
	free(b->p);
	jb_init(b);
}

void jb_reset(struct jbuf *b)
{
	b->len = 0;
	b->oom = false;
	if (b->p)
		b->p[0] = '\0';
}

/* Room for n more bytes plus the terminating NUL that jb_cstr_get relies on. */
static bool jb_grow(struct jbuf *b, size_t n)
{
	size_t need, ncap;
	char *np;

	if (b->oom)
		return false;
	/* len + n + 1 must not wrap, and doubling must not either */
	if (n > SIZE_MAX / 2 - b->len - 1) {
		b->oom = true;
		return false;
	}
	need = b->len + n + 1;
	if (need <= b->cap)
		return true;
	ncap = b->cap ? b->cap : 64;
	while (ncap < need)
		ncap *= 2;
	np = realloc(b->p, ncap);
	if (np == NULL) {
		b->oom = true;
		return false;
	}
	b->p = np;
	b->cap = ncap;
	return true;
}

void jb_raw(struct jbuf *b, const char *s, size_t n)
{
	if (!jb_grow(b, n))
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void jb_cstr(struct jbuf *b, const char *s)
{
	jb_raw(b, s, strlen(s));
}

static void jb_byte(struct jbuf *b, char c)
{
	jb_raw(b, &c, 1);
}

/*
 * Length of the well-formed UTF-8 sequence at s (1..4), or 0 when it is ill-formed;
 * then *bad is how many bytes to replace by one U+FFFD: the "maximal subpart" of
 * Unicode §3.9 (U+FFFD substitution of maximal subparts), so a truncated sequence is
 * one replacement character and each stray byte is its own.
 */
static size_t utf8_seq(const unsigned char *s, size_t n, size_t *bad)
{
	unsigned char c = s[0];
	unsigned char lo = 0x80, hi = 0xBF;
	size_t want, i;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF) {
		want = 2;
	} else if (c >= 0xE0 && c <= 0xEF) {
		want = 3;
		if (c == 0xE0)
			lo = 0xA0;          /* overlong below U+0800 */
		else if (c == 0xED)
			hi = 0x9F;          /* U+D800..U+DFFF are surrogates */
	} else if (c >= 0xF0 && c <= 0xF4) {
		want = 4;
		if (c == 0xF0)
			lo = 0x90;          /* overlong below U+10000 */
		else if (c == 0xF4)
			hi = 0x8F;          /* beyond U+10FFFF */
	} else {
		/* 80..BF stray continuation, C0 C1 overlong leads, F5..FF beyond U+10FFFF */
		*bad = 1;
		return 0;
	}
	for (i = 1; i < want; i++) {
		if (i >= n || s[i] < lo || s[i] > hi) {
			*bad = i;
			return 0;
		}
		lo = 0x80;
		hi = 0xBF;
	}
	return want;
}

void jb_strn(struct jbuf *b, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;

	jb_byte(b, '"');
	while (i < n) {
		unsigned char c = s[i];
		size_t len, bad = 0;
		char esc[7];
		const char *rep = NULL;
		size_t replen = 0;

		if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
			i++;
			run++;
			continue;
		}
		if (c >= 0x80) {
			len = utf8_seq(s + i, n - i, &bad);
			if (len) {
				i += len;
				run += len;
				continue;
			}
			rep = "\xEF\xBF\xBD";
			replen = 3;
		} else {
			bad = 1;
			rep = esc;
			replen = 2;
			esc[0] = '\\';
			switch (c) {
			case '"': esc[1] = '"'; break;
			case '\\': esc[1] = '\\'; break;
			case '\b': esc[1] = 'b'; break;
			case '\f': esc[1] = 'f'; break;
			case '\n': esc[1] = 'n'; break;
			case '\r': esc[1] = 'r'; break;
			case '\t': esc[1] = 't'; break;
			default:
				memcpy(esc, "\\u00", 4);
				esc[4] = hex[c >> 4];
				esc[5] = hex[c & 0xF];
				replen = 6;
				break;
			}
		}
		/* flush the clean run before it in one copy: names are mostly clean */
		jb_raw(b, str + i - run, run);
		run = 0;
		jb_raw(b, rep, replen);
		i += bad;
	}
	jb_raw(b, str + i - run, run);
	jb_byte(b, '"');
}

void jb_utf8(struct jbuf *b, const char *str, size_t n)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0, run = 0;

	while (i < n) {
		size_t len, bad = 0;

		if (s[i] < 0x80) {
			i++;
			run++;
			continue;
		}
		if ((len = utf8_seq(s + i, n - i, &bad))) {
			i += len;
			run += len;
			continue;
		}
		jb_raw(b, str + i - run, run);
		run = 0;
		jb_raw(b, "\xEF\xBF\xBD", 3);
		i += bad;
	}
	jb_raw(b, str + i - run, run);
}

void jb_str(struct jbuf *b, const char *s)
{
	if (s == NULL) {
		jb_cstr(b, "null");
		return;
	}
	jb_strn(b, s, strlen(s));
}

/*
 * Copy printf's number into JSON form. The only byte of %g output that is not a
 * digit, a sign or 'e' is the decimal point, and under a locale such as de_DE that
 * is ',' (possibly several bytes): whatever it is, it becomes '.'.
 */
static void jb_number_text(struct jbuf *b, const char *t)
{
	char out[64];
	size_t o = 0;

	for (; *t && o < sizeof out - 1; t++) {
		if ((*t >= '0' && *t <= '9') || *t == '-' || *t == '+' || *t == 'e') {
			out[o++] = *t;
		} else if (o == 0 || out[o - 1] != '.') {
			out[o++] = '.';
		}
	}
	jb_raw(b, out, o);
}

void jb_double(struct jbuf *b, double v)
{
	char t[64];
	int prec, first;

	if (!isfinite(v)) {
		jb_cstr(b, "null");
		return;
	}
	/*
	 * 15 significant digits read back exactly for every normal double that has a
	 * 15-digit form (DBL_DIG), and %g drops trailing zeros, so 0.1 stays "0.1";
	 * 17 always reads back. Subnormals have fewer significant bits, so for them the
	 * search starts at 1 digit: 5e-324 rather than 4.94065645841247e-324.
	 */
	first = (v != 0 && fabs(v) < DBL_MIN) ? 1 : DBL_DIG;
	for (prec = first; prec < 17; prec++) {
		snprintf(t, sizeof t, "%.*g", prec, v);
		if (strtod(t, NULL) == v)
			break;
	}
	if (prec == 17)
		snprintf(t, sizeof t, "%.17g", v);
	jb_number_text(b, t);
}

void jb_float32(struct jbuf *b, double v)
{
	char t[64];
	float f = (float)v;
	int prec;

	/* a value a scale pushed past float's range is not a float32 reading any more */
	if (!isfinite(v) || !isfinite(f)) {
		jb_double(b, v);
		return;
	}
	/* FLT_DIG (6) digits name most floats; 9 always read back (FLT_DECIMAL_DIG);
	 * subnormals have fewer bits, so for them the search starts at 1 digit */
	for (prec = (f != 0 && fabsf(f) < FLT_MIN) ? 1 : FLT_DIG; prec < 9; prec++) {
		snprintf(t, sizeof t, "%.*g", prec, (double)f);
		if (strtof(t, NULL) == f)
			break;
	}
	if (prec == 9)
		snprintf(t, sizeof t, "%.9g", (double)f);
	jb_number_text(b, t);
}

void jb_point_value(struct jbuf *b, const struct point_def *p, const struct value *v)
{
	switch (v->kind) {
	case VAL_BOOL:
		jb_bool(b, v->v.b);
		break;
	case VAL_INT:
		jb_i64(b, v->v.i);
		break;
	case VAL_UINT:
		jb_u64(b, v->v.u);
		break;
	case VAL_DOUBLE:
		if (p && p->type == PT_FLOAT32)
			jb_float32(b, v->v.d);
		else
			jb_double(b, v->v.d);
		break;
	case VAL_STRING:
		jb_str(b, v->s ? v->s : "");
		break;
	default:
		jb_cstr(b, "null");
	}
}

void jb_i64(struct jbuf *b, int64_t v)
{
	char t[24];
	int n = snprintf(t, sizeof t, "%" PRId64, v);

	jb_raw(b, t, (size_t)n);
}

void jb_u64(struct jbuf *b, uint64_t v)
{
	char t[24];
	int n = snprintf(t, sizeof t, "%" PRIu64, v);

	jb_raw(b, t, (size_t)n);
}

void jb_bool(struct jbuf *b, bool v)
{
	jb_cstr(b, v ? "true" : "false");
}

void jb_key(struct jbuf *b, const char *key, bool *first)
{
	if (!*first)
		jb_byte(b, ',');
	*first = false;
	jb_str(b, key);
	jb_byte(b, ':');
}

const char *jb_cstr_get(struct jbuf *b)
{
	if (b->oom || b->p == NULL)
		return "";
	return b->p;
}
