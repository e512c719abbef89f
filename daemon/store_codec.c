/*
 * store_codec: the bytes the store writes for a reading's values and for a device's
 * description (store.h, store_int.h say the formats). Pure: no SQL, no I/O, no JSON.
 * Every decoder takes bytes that may be damaged (a salvaged page, a torn spill) and
 * returns an error rather than read past them.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_int.h"

/* A growing byte buffer; oom sticks. */
struct cbuf {
	unsigned char *p;
	size_t len, cap;
	bool oom;
};

static void cb_room(struct cbuf *b, size_t n)
{
	size_t nc;
	unsigned char *p;

	if (b->oom || b->len + n <= b->cap)
		return;
	nc = b->cap ? b->cap : 64;
	while (nc < b->len + n)
		nc *= 2;
	p = realloc(b->p, nc);
	if (!p) {
		b->oom = true;
		return;
	}
	b->p = p;
	b->cap = nc;
}

static void cb_bytes(struct cbuf *b, const void *s, size_t n)
{
	cb_room(b, n);
	if (b->oom)
		return;
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void cb_u8(struct cbuf *b, unsigned v)
{
	unsigned char c = (unsigned char)v;

	cb_bytes(b, &c, 1);
}

static void cb_varint(struct cbuf *b, uint64_t v)
{
	unsigned char t[10];
	size_t n = 0;

	do {
		t[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v)
			t[n] |= 0x80;
		n++;
	} while (v);
	cb_bytes(b, t, n);
}

static void cb_le(struct cbuf *b, uint64_t v, size_t n)
{
	unsigned char t[8];

	for (size_t i = 0; i < n; i++)
		t[i] = (unsigned char)(v >> (8 * i));
	cb_bytes(b, t, n);
}

static void cb_str(struct cbuf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	cb_varint(b, n);
	cb_bytes(b, s, n);
}

/* A reader over bytes that may be damaged: bad sticks, and nothing is read past end. */
struct crd {
	const unsigned char *p, *end;
	bool bad;
};

static uint64_t rd_varint(struct crd *r)
{
	uint64_t v = 0;

	for (unsigned shift = 0; shift < 64; shift += 7) {
		unsigned char c;

		if (r->p >= r->end) {
			r->bad = true;
			return 0;
		}
		c = *r->p++;
		v |= (uint64_t)(c & 0x7f) << shift;
		if (!(c & 0x80))
			return v;
	}
	r->bad = true;
	return 0;
}

static unsigned rd_u8(struct crd *r)
{
	if (r->p >= r->end) {
		r->bad = true;
		return 0;
	}
	return *r->p++;
}

static uint64_t rd_le(struct crd *r, size_t n)
{
	uint64_t v = 0;

	if ((size_t)(r->end - r->p) < n) {
		r->bad = true;
		r->p = r->end;
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		v |= (uint64_t)r->p[i] << (8 * i);
	r->p += n;
	return v;
}

/* n bytes in place, or NULL (bad) */
static const unsigned char *rd_bytes(struct crd *r, size_t n)
{
	const unsigned char *s = r->p;

	if ((size_t)(r->end - r->p) < n) {
		r->bad = true;
		r->p = r->end;
		return NULL;
	}
	r->p += n;
	return s;
}

/* A string into buf (cap with its NUL); longer ones or ones holding a NUL are bad. */
static void rd_str(struct crd *r, char *buf, size_t cap)
{
	uint64_t n = rd_varint(r);
	const unsigned char *s;

	buf[0] = '\0';
	if (r->bad || n >= cap) {
		r->bad = true;
		return;
	}
	s = rd_bytes(r, (size_t)n);
	if (!s || memchr(s, 0, (size_t)n)) {
		r->bad = true;
		return;
	}
	memcpy(buf, s, (size_t)n);
	buf[n] = '\0';
}

static char *rd_strdup(struct crd *r)
{
	uint64_t n = rd_varint(r);
	const unsigned char *s;
	char *d;

	if (r->bad || n > 65535)
		goto bad;
	s = rd_bytes(r, (size_t)n);
	if (!s || memchr(s, 0, (size_t)n))
		goto bad;
	d = malloc((size_t)n + 1);
	if (!d)
		goto bad;
	memcpy(d, s, (size_t)n);
	d[n] = '\0';
	return d;
bad:
	r->bad = true;
	return NULL;
}

uint64_t store_hash(const void *p, size_t len)
{
	const unsigned char *s = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= s[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* ---- a reading's values ------------------------------------------------------------ */

/*
 * A value's tag, four bits: the kind as the store keeps it. A float32 point's value is
 * kept in four bytes when that is exactly the value (always, but for a scale or an
 * offset that made it a real no float holds): platforms get back the bits the device
 * sent. NaN stays NaN in either width.
 */
enum { T_NONE, T_FALSE, T_TRUE, T_INT, T_UINT, T_F32, T_F64, T_STR, T_NTAGS };

static unsigned vals_tag(const struct value *v)
{
	switch (v->kind) {
	case VAL_BOOL:
		return v->v.b ? T_TRUE : T_FALSE;
	case VAL_INT:
		return T_INT;
	case VAL_UINT:
		return T_UINT;
	case VAL_DOUBLE:
		return isnan(v->v.d) || (double)(float)v->v.d == v->v.d ? T_F32 : T_F64;
	case VAL_STRING:
		return T_STR;
	default:
		return T_NONE;
	}
}

/*
 * Values, in point order:  varint n, then n 4-bit tags (two to a byte, the first in the
 * low half), then each value's bytes — T_NONE: varint err (MBE_*); T_INT: varint of the
 * zigzag; T_UINT: varint; T_F32, T_F64: little-endian IEEE bits; T_STR: varint length
 * and bytes; T_FALSE, T_TRUE: none. Ten float32 points: 46 bytes.
 */
int store_row_set_reading(struct store_row *row, const struct reading *r)
{
	struct cbuf b = { 0 };
	size_t ntag = ((size_t)r->nvalues + 1) / 2, at;

	cb_varint(&b, r->nvalues);
	at = b.len;
	cb_room(&b, ntag);
	if (!b.oom) {
		memset(b.p + at, 0, ntag);
		b.len += ntag;
	}
	for (uint16_t i = 0; i < r->nvalues && !b.oom; i++) {
		const struct value *v = &r->values[i];
		unsigned t = vals_tag(v);
		float f;
		uint32_t u32;
		uint64_t u64;

		b.p[at + i / 2] |= (unsigned char)(t << (4 * (i % 2)));
		switch (t) {
		case T_NONE:
			cb_varint(&b, v->err > 0 ? (uint64_t)v->err : 0);
			break;
		case T_INT:
			cb_varint(&b, ((uint64_t)v->v.i << 1) ^ (uint64_t)(v->v.i >> 63));
			break;
		case T_UINT:
			cb_varint(&b, v->v.u);
			break;
		case T_F32:
			f = (float)v->v.d;
			memcpy(&u32, &f, 4);
			cb_le(&b, u32, 4);
			break;
		case T_F64:
			memcpy(&u64, &v->v.d, 8);
			cb_le(&b, u64, 8);
			break;
		case T_STR:
			cb_str(&b, v->s ? v->s : "");
			break;
		}
	}
	if (b.oom) {
		free(b.p);
		return -1;
	}
	free(row->vals);
	row->vals = b.p;
	row->nvals = b.len;
	return 0;
}

struct reading *store_row_reading(const struct store_row *row)
{
	struct crd rd = { row->vals, row->vals + row->nvals, false };
	struct reading *r;
	const unsigned char *tags;
	uint64_t n = rd_varint(&rd);

	if (!row->vals || rd.bad || n > UINT16_MAX)
		return NULL;
	tags = rd_bytes(&rd, ((size_t)n + 1) / 2);
	if (!tags)
		return NULL;
	/* string bytes are fewer than the encoding's, each with its NUL */
	r = reading_new(0, (uint16_t)n, row->nvals + (size_t)n);
	if (!r)
		return NULL;
	r->ts_ms = row->ts_ms;
	for (uint16_t i = 0; i < n && !rd.bad; i++) {
		struct value *v = &r->values[i];
		unsigned t = (tags[i / 2] >> (4 * (i % 2))) & 0xf;
		const unsigned char *src;
		uint64_t x;
		uint32_t u32;
		float f;
		char *s;

		*v = (struct value){ .kind = VAL_NONE };
		switch (t) {
		case T_NONE:
			x = rd_varint(&rd);
			v->err = x > INT32_MAX ? INT32_MAX : (int)x;
			break;
		case T_FALSE:
		case T_TRUE:
			v->kind = VAL_BOOL;
			v->v.b = t == T_TRUE;
			break;
		case T_INT:
			x = rd_varint(&rd);
			v->kind = VAL_INT;
			v->v.i = (int64_t)(x >> 1) ^ -(int64_t)(x & 1);
			break;
		case T_UINT:
			v->kind = VAL_UINT;
			v->v.u = rd_varint(&rd);
			break;
		case T_F32:
			u32 = (uint32_t)rd_le(&rd, 4);
			memcpy(&f, &u32, 4);
			v->kind = VAL_DOUBLE;
			v->v.d = f;
			break;
		case T_F64:
			x = rd_le(&rd, 8);
			v->kind = VAL_DOUBLE;
			memcpy(&v->v.d, &x, 8);
			break;
		case T_STR:
			x = rd_varint(&rd);
			if (rd.bad || x >= r->strcap - r->strused) {
				rd.bad = true;
				break;
			}
			s = reading_strbuf(r, (size_t)x + 1);
			src = rd_bytes(&rd, (size_t)x);
			if (!s || !src) {
				rd.bad = true;
				break;
			}
			memcpy(s, src, (size_t)x);
			s[x] = '\0';
			v->kind = VAL_STRING;
			v->s = s;
			break;
		default:
			rd.bad = true;
		}
	}
	if (rd.bad || rd.p != rd.end) {
		reading_free(r);
		return NULL;
	}
	return r;
}

/* ---- a device's description ---------------------------------------------------------- */

enum { DEV_NAME = 1, DEV_PROFILE = 2, DEV_SUNSPEC = 4 };
enum { PT_WRITABLE = 1, PT_SCALED = 2 };

int store_dev_encode(const struct device_cfg *d, unsigned char **out, size_t *len)
{
	struct cbuf b = { 0 };

	cb_u8(&b, 1);
	cb_u8(&b, (d->name ? DEV_NAME : 0) | (d->profile ? DEV_PROFILE : 0) |
		  (d->sunspec ? DEV_SUNSPEC : 0));
	cb_str(&b, d->id);
	if (d->name)
		cb_str(&b, d->name);
	if (d->profile)
		cb_str(&b, d->profile);
	cb_varint(&b, d->npoints);
	for (size_t i = 0; i < d->npoints; i++) {
		const struct point_def *p = &d->points[i];
		bool scaled = p->scale != 1.0 || p->offset != 0.0;
		uint64_t u;

		cb_str(&b, p->name);
		cb_u8(&b, (unsigned)p->type);
		cb_str(&b, p->unit);
		cb_u8(&b, (p->writable ? PT_WRITABLE : 0) | (scaled ? PT_SCALED : 0));
		if (scaled) {
			memcpy(&u, &p->scale, 8);
			cb_le(&b, u, 8);
			memcpy(&u, &p->offset, 8);
			cb_le(&b, u, 8);
		}
	}
	if (b.oom) {
		free(b.p);
		return -1;
	}
	*out = b.p;
	*len = b.len;
	return 0;
}

void store_dev_free(struct device_cfg *d)
{
	if (!d)
		return;
	free(d->name);
	free(d->profile);
	free(d->points);
	free(d);
}

struct device_cfg *store_dev_decode(const unsigned char *p, size_t len)
{
	struct crd rd = { p, p + len, false };
	struct device_cfg *d;
	unsigned flags;
	uint64_t n;

	if (!p || rd_u8(&rd) != 1)
		return NULL;
	d = calloc(1, sizeof *d);
	if (!d)
		return NULL;
	flags = rd_u8(&rd);
	rd_str(&rd, d->id, sizeof d->id);
	if (flags & DEV_NAME)
		d->name = rd_strdup(&rd);
	if (flags & DEV_PROFILE)
		d->profile = rd_strdup(&rd);
	d->sunspec = (flags & DEV_SUNSPEC) != 0;
	n = rd_varint(&rd);
	if (rd.bad || n > UINT16_MAX || n > len)
		goto bad;
	d->points = calloc(n ? (size_t)n : 1, sizeof *d->points);
	if (!d->points)
		goto bad;
	d->npoints = (size_t)n;
	for (size_t i = 0; i < n && !rd.bad; i++) {
		struct point_def *pt = &d->points[i];
		unsigned type, pf;
		uint64_t u;

		rd_str(&rd, pt->name, sizeof pt->name);
		type = rd_u8(&rd);
		pt->type = type <= PT_STRING ? (enum pt_type)type : PT_STRING;
		if (type > PT_STRING)
			rd.bad = true;
		rd_str(&rd, pt->unit, sizeof pt->unit);
		pf = rd_u8(&rd);
		pt->writable = (pf & PT_WRITABLE) != 0;
		pt->bit = -1;
		pt->scale = 1.0;
		if (pf & PT_SCALED) {
			u = rd_le(&rd, 8);
			memcpy(&pt->scale, &u, 8);
			u = rd_le(&rd, 8);
			memcpy(&pt->offset, &u, 8);
		}
	}
	if (rd.bad || rd.p != rd.end)
		goto bad;
	return d;
bad:
	store_dev_free(d);
	return NULL;
}
