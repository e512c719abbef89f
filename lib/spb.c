/*
 * spb: owns the bytes of a Sparkplug B payload (protobuf wire format, the fields of
 * sparkplug_b.proto's Payload, Metric, PropertySet and PropertyValue). It must never do
 * I/O, never read past what it was given, and never allocate more than a small multiple
 * of its input: a payload from the network may be anything.
 *
 * The wire format, as far as this schema uses it: every field is a varint key
 * (field number << 3 | wire type) and a value — wire type 0 a varint (uint32, uint64,
 * bool), 1 eight bytes little-endian (double), 2 a varint length and that many bytes
 * (string, bytes, an embedded message), 5 four bytes little-endian (float). A varint is
 * 7 bits a byte, least significant first, the high bit set on every byte but the last.
 *
 * Why our own and not protobuf-c: the schema is fixed and small (four messages, the
 * fields sluice reads and writes), so a codec of its own costs a few hundred lines and no
 * generated code, no new library on the boxes (nor in the armhf and arm64 cross builds,
 * whose multiarch -dev packages lag), and a decoder whose every allocation and bound is
 * ours to state: it faces whatever a network sends as a DCMD. Its correctness is checked
 * against Google's protobuf (tests/unit/test_spb.c) and by fuzzing.
 *
 * Decoding runs the same walk twice: the first pass checks everything and counts the
 * metrics, properties and string bytes; the second fills one allocation of exactly that
 * size. So a decoded payload is freed with one free(), and nothing is half-built when
 * the input turns out to be bad.
 */
#include "spb.h"

#include <stdalign.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Field numbers (sparkplug_b.proto). */
enum {
	F_PAYLOAD_TIMESTAMP = 1, F_PAYLOAD_METRICS = 2, F_PAYLOAD_SEQ = 3, F_PAYLOAD_UUID = 4,
	F_PAYLOAD_BODY = 5,
};
enum {
	F_METRIC_NAME = 1, F_METRIC_ALIAS = 2, F_METRIC_TIMESTAMP = 3, F_METRIC_DATATYPE = 4,
	F_METRIC_HISTORICAL = 5, F_METRIC_TRANSIENT = 6, F_METRIC_NULL = 7,
	F_METRIC_METADATA = 8, F_METRIC_PROPERTIES = 9, F_METRIC_INT = 10, F_METRIC_LONG = 11,
	F_METRIC_FLOAT = 12, F_METRIC_DOUBLE = 13, F_METRIC_BOOL = 14, F_METRIC_STRING = 15,
	F_METRIC_BYTES = 16, F_METRIC_DATASET = 17, F_METRIC_TEMPLATE = 18,
	F_METRIC_EXTENSION = 19,
};
enum { F_PSET_KEYS = 1, F_PSET_VALUES = 2 };
enum {
	F_PVAL_TYPE = 1, F_PVAL_NULL = 2, F_PVAL_INT = 3, F_PVAL_LONG = 4, F_PVAL_FLOAT = 5,
	F_PVAL_DOUBLE = 6, F_PVAL_BOOL = 7, F_PVAL_STRING = 8, F_PVAL_PSET = 9,
	F_PVAL_PSETS = 10, F_PVAL_EXTENSION = 11,
};
enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_SGROUP = 3, WT_EGROUP = 4, WT_I32 = 5 };

/* ---- encoding -------------------------------------------------------------------- */

static size_t varint_size(uint64_t v)
{
	size_t n = 1;

	while (v >= 0x80) {
		v >>= 7;
		n++;
	}
	return n;
}

/* The key of a field: field numbers here are small, so its size is that of the varint. */
static size_t key_size(unsigned field)
{
	return varint_size((uint64_t)field << 3);
}

static size_t len_field_size(unsigned field, size_t len)
{
	return key_size(field) + varint_size(len) + len;
}

/* Bytes of a value's oneof member, with its key; (size_t)-1 when it cannot be written. */
static size_t value_size(const struct spb_value *v, unsigned f_int, bool bytes_ok)
{
	switch (v->kind) {
	case SPB_V_NONE:
		return 0;
	case SPB_V_INT:
		return key_size(f_int) + varint_size(v->v.i);
	case SPB_V_LONG:
		return key_size(f_int + 1) + varint_size(v->v.l);
	case SPB_V_FLOAT:
		return key_size(f_int + 2) + 4;
	case SPB_V_DOUBLE:
		return key_size(f_int + 3) + 8;
	case SPB_V_BOOL:
		return key_size(f_int + 4) + 1;
	case SPB_V_STRING:
		return len_field_size(f_int + 5, v->len);
	case SPB_V_BYTES:
		return bytes_ok ? len_field_size(f_int + 6, v->len) : (size_t)-1;
	}
	return (size_t)-1;
}

static size_t pvalue_size(const struct spb_property *pr)
{
	size_t n = 0, vs;

	if (pr->has_type)
		n += key_size(F_PVAL_TYPE) + varint_size(pr->type);
	if (pr->is_null)
		n += key_size(F_PVAL_NULL) + 1;
	vs = value_size(&pr->value, F_PVAL_INT, false);
	return vs == (size_t)-1 ? vs : n + vs;
}

static size_t pset_size(const struct spb_metric *m)
{
	size_t n = 0;

	for (size_t i = 0; i < m->nprops; i++) {
		size_t vs = pvalue_size(&m->props[i]);
		if (vs == (size_t)-1 || !m->props[i].key)
			return (size_t)-1;
		n += len_field_size(F_PSET_KEYS, strlen(m->props[i].key));
		n += len_field_size(F_PSET_VALUES, vs);
	}
	return n;
}

static size_t metric_size(const struct spb_metric *m)
{
	size_t n = 0, vs;

	if (m->name)
		n += len_field_size(F_METRIC_NAME, strlen(m->name));
	if (m->has_alias)
		n += key_size(F_METRIC_ALIAS) + varint_size(m->alias);
	if (m->has_timestamp)
		n += key_size(F_METRIC_TIMESTAMP) + varint_size(m->timestamp);
	if (m->has_datatype)
		n += key_size(F_METRIC_DATATYPE) + varint_size(m->datatype);
	if (m->is_historical)
		n += key_size(F_METRIC_HISTORICAL) + 1;
	if (m->is_transient)
		n += key_size(F_METRIC_TRANSIENT) + 1;
	if (m->is_null)
		n += key_size(F_METRIC_NULL) + 1;
	if (m->nprops) {
		size_t ps = pset_size(m);
		if (ps == (size_t)-1)
			return ps;
		n += len_field_size(F_METRIC_PROPERTIES, ps);
	}
	vs = value_size(&m->value, F_METRIC_INT, true);
	return vs == (size_t)-1 ? vs : n + vs;
}

static size_t payload_size(const struct spb_payload *p)
{
	size_t n = 0;

	if (p->has_timestamp)
		n += key_size(F_PAYLOAD_TIMESTAMP) + varint_size(p->timestamp);
	for (size_t i = 0; i < p->nmetrics; i++) {
		size_t ms = metric_size(&p->metrics[i]);
		if (ms == (size_t)-1)
			return ms;
		n += len_field_size(F_PAYLOAD_METRICS, ms);
	}
	if (p->has_seq)
		n += key_size(F_PAYLOAD_SEQ) + varint_size(p->seq);
	if (p->uuid)
		n += len_field_size(F_PAYLOAD_UUID, strlen(p->uuid));
	if (p->has_body)
		n += len_field_size(F_PAYLOAD_BODY, p->body_len);
	return n;
}

size_t spb_encoded_size(const struct spb_payload *p)
{
	size_t n = payload_size(p);

	return n == (size_t)-1 ? 0 : n;
}

/* The writer: a buffer sized beforehand, so the writes below cannot fail. */
struct wr {
	uint8_t *p;
	size_t n;
};

static void put_varint(struct wr *w, uint64_t v)
{
	while (v >= 0x80) {
		w->p[w->n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	w->p[w->n++] = (uint8_t)v;
}

static void put_key(struct wr *w, unsigned field, unsigned wt)
{
	put_varint(w, (uint64_t)field << 3 | wt);
}

static void put_bytes(struct wr *w, unsigned field, const void *s, size_t len)
{
	put_key(w, field, WT_LEN);
	put_varint(w, len);
	if (len)
		memcpy(w->p + w->n, s, len);
	w->n += len;
}

static void put_fixed(struct wr *w, uint64_t v, int bytes)
{
	for (int i = 0; i < bytes; i++)
		w->p[w->n++] = (uint8_t)(v >> (8 * i));
}

static void put_value(struct wr *w, const struct spb_value *v, unsigned f_int)
{
	uint32_t f32;
	uint64_t f64;

	switch (v->kind) {
	case SPB_V_INT:
		put_key(w, f_int, WT_VARINT);
		put_varint(w, v->v.i);
		break;
	case SPB_V_LONG:
		put_key(w, f_int + 1, WT_VARINT);
		put_varint(w, v->v.l);
		break;
	case SPB_V_FLOAT:
		memcpy(&f32, &v->v.f, 4);
		put_key(w, f_int + 2, WT_I32);
		put_fixed(w, f32, 4);
		break;
	case SPB_V_DOUBLE:
		memcpy(&f64, &v->v.d, 8);
		put_key(w, f_int + 3, WT_I64);
		put_fixed(w, f64, 8);
		break;
	case SPB_V_BOOL:
		put_key(w, f_int + 4, WT_VARINT);
		put_varint(w, v->v.b ? 1 : 0);
		break;
	case SPB_V_STRING:
		put_bytes(w, f_int + 5, v->s, v->len);
		break;
	case SPB_V_BYTES:
		put_bytes(w, f_int + 6, v->s, v->len);
		break;
	default:
		break;
	}
}

static void put_flag(struct wr *w, unsigned field)
{
	put_key(w, field, WT_VARINT);
	put_varint(w, 1);
}

static void put_metric(struct wr *w, const struct spb_metric *m)
{
	if (m->name)
		put_bytes(w, F_METRIC_NAME, m->name, strlen(m->name));
	if (m->has_alias) {
		put_key(w, F_METRIC_ALIAS, WT_VARINT);
		put_varint(w, m->alias);
	}
	if (m->has_timestamp) {
		put_key(w, F_METRIC_TIMESTAMP, WT_VARINT);
		put_varint(w, m->timestamp);
	}
	if (m->has_datatype) {
		put_key(w, F_METRIC_DATATYPE, WT_VARINT);
		put_varint(w, m->datatype);
	}
	if (m->is_historical)
		put_flag(w, F_METRIC_HISTORICAL);
	if (m->is_transient)
		put_flag(w, F_METRIC_TRANSIENT);
	if (m->is_null)
		put_flag(w, F_METRIC_NULL);
	if (m->nprops) {
		put_key(w, F_METRIC_PROPERTIES, WT_LEN);
		put_varint(w, pset_size(m));
		/* repeated fields in field order: every key, then every value */
		for (size_t i = 0; i < m->nprops; i++)
			put_bytes(w, F_PSET_KEYS, m->props[i].key, strlen(m->props[i].key));
		for (size_t i = 0; i < m->nprops; i++) {
			const struct spb_property *pr = &m->props[i];
			put_key(w, F_PSET_VALUES, WT_LEN);
			put_varint(w, pvalue_size(pr));
			if (pr->has_type) {
				put_key(w, F_PVAL_TYPE, WT_VARINT);
				put_varint(w, pr->type);
			}
			if (pr->is_null)
				put_flag(w, F_PVAL_NULL);
			put_value(w, &pr->value, F_PVAL_INT);
		}
	}
	put_value(w, &m->value, F_METRIC_INT);
}

int spb_encode(const struct spb_payload *p, struct jbuf *out)
{
	size_t n = payload_size(p), start;
	struct wr w;

	if (n == (size_t)-1 || out->oom)
		return -1;
	if (n == 0)
		return 0;   /* the empty payload: nothing to write (out->p may be NULL) */
	/* room first: jb_raw grows the buffer, and the bytes are then written in place */
	start = out->len;
	for (size_t left = n; left > 0;) {
		static const char zeros[256];
		size_t k = left < sizeof zeros ? left : sizeof zeros;
		jb_raw(out, zeros, k);
		left -= k;
	}
	if (out->oom)
		return -1;
	w.p = (uint8_t *)out->p + start;
	w.n = 0;
	if (p->has_timestamp) {
		put_key(&w, F_PAYLOAD_TIMESTAMP, WT_VARINT);
		put_varint(&w, p->timestamp);
	}
	for (size_t i = 0; i < p->nmetrics; i++) {
		put_key(&w, F_PAYLOAD_METRICS, WT_LEN);
		put_varint(&w, metric_size(&p->metrics[i]));
		put_metric(&w, &p->metrics[i]);
	}
	if (p->has_seq) {
		put_key(&w, F_PAYLOAD_SEQ, WT_VARINT);
		put_varint(&w, p->seq);
	}
	if (p->uuid)
		put_bytes(&w, F_PAYLOAD_UUID, p->uuid, strlen(p->uuid));
	if (p->has_body)
		put_bytes(&w, F_PAYLOAD_BODY, p->body, p->body_len);
	return w.n == n ? 0 : -1;
}

/* ---- decoding -------------------------------------------------------------------- */

/* Bytes to read: [p, end). */
struct rd {
	const uint8_t *p, *end;
	const uint8_t *start;   /* of the whole payload, for the offsets in messages */
};

/* The state of one pass: counting (out == NULL) or filling. */
struct dec {
	const uint8_t *start;
	char *err;
	size_t errlen;
	bool failed;
	/* counts (pass 1), then cursors (pass 2) */
	size_t nmetrics, nprops, nchars;
	struct spb_payload *out;
	struct spb_metric *metrics;
	struct spb_property *props;
	char *chars;
};

static bool dec_fail(struct dec *d, const struct rd *r, const char *what)
{
	if (!d->failed)
		snprintf(d->err, d->errlen, "%s at byte %zu", what, (size_t)(r->p - d->start));
	d->failed = true;
	return false;
}

static bool get_varint(struct dec *d, struct rd *r, uint64_t *v)
{
	uint64_t x = 0;

	for (unsigned shift = 0;; shift += 7) {
		uint8_t b;
		if (r->p >= r->end)
			return dec_fail(d, r, "truncated varint");
		b = *r->p++;
		if (shift == 63 && b > 1) {
			r->p--;
			return dec_fail(d, r, "varint longer than 64 bits");
		}
		x |= (uint64_t)(b & 0x7F) << shift;
		if (!(b & 0x80))
			break;
		if (shift == 63) {
			r->p--;
			return dec_fail(d, r, "varint longer than 64 bits");
		}
	}
	*v = x;
	return true;
}

static bool get_fixed(struct dec *d, struct rd *r, int bytes, uint64_t *v)
{
	uint64_t x = 0;

	if (r->end - r->p < bytes)
		return dec_fail(d, r, "truncated fixed-width field");
	for (int i = 0; i < bytes; i++)
		x |= (uint64_t)r->p[i] << (8 * i);
	r->p += bytes;
	*v = x;
	return true;
}

/* A length-delimited field's bytes, as a reader of their own. */
static bool get_len(struct dec *d, struct rd *r, struct rd *sub)
{
	uint64_t n;

	if (!get_varint(d, r, &n))
		return false;
	if (n > (uint64_t)(r->end - r->p))
		return dec_fail(d, r, "length past the end of its message");
	sub->p = r->p;
	sub->end = r->p + n;
	sub->start = r->start;
	r->p += n;
	return true;
}

/* The next field's number and wire type; false at the end (d->failed says why). */
static bool get_key(struct dec *d, struct rd *r, unsigned *field, unsigned *wt)
{
	uint64_t k;

	if (r->p >= r->end)
		return false;
	if (!get_varint(d, r, &k))
		return false;
	if (k >> 3 == 0 || k >> 3 > 0x1FFFFFFF)
		return dec_fail(d, r, "field number out of range");
	*wt = (unsigned)(k & 7);
	*field = (unsigned)(k >> 3);
	if (*wt == WT_SGROUP || *wt == WT_EGROUP)
		return dec_fail(d, r, "group (wire type 3 or 4)");
	if (*wt != WT_VARINT && *wt != WT_I64 && *wt != WT_LEN && *wt != WT_I32)
		return dec_fail(d, r, "unknown wire type");
	return true;
}

static bool skip(struct dec *d, struct rd *r, unsigned wt)
{
	uint64_t v;
	struct rd sub;

	switch (wt) {
	case WT_VARINT:
		return get_varint(d, r, &v);
	case WT_I64:
		return get_fixed(d, r, 8, &v);
	case WT_I32:
		return get_fixed(d, r, 4, &v);
	default:
		return get_len(d, r, &sub);
	}
}

/* A string's bytes, copied NUL-terminated in pass 2 (the count in pass 1). */
static const char *take_string(struct dec *d, const struct rd *s, bool no_nul, const struct rd *at)
{
	size_t n = (size_t)(s->end - s->p);
	char *c;

	if (no_nul && memchr(s->p, '\0', n)) {
		dec_fail(d, at, "name holding a NUL byte");
		return NULL;
	}
	if (!d->out) {
		d->nchars += n + 1;
		return "";
	}
	c = d->chars;
	if (n)
		memcpy(c, s->p, n);
	c[n] = '\0';
	d->chars += n + 1;
	return c;
}

/*
 * One member of a value oneof (Metric from field 10, PropertyValue from field 3): true
 * when field is one (then v is set), false when it is another field. Wrong wire types
 * are left to the caller's skip.
 */
static bool value_field(struct dec *d, struct rd *r, unsigned field, unsigned wt, unsigned f_int,
			unsigned f_last, bool bytes_ok, struct spb_value *v, bool *ok)
{
	uint64_t x;
	struct rd s;
	unsigned k;

	*ok = true;
	if (field < f_int || field > f_last)
		return false;
	k = field - f_int;
	switch (k) {
	case 0: /* int_value */
	case 1: /* long_value */
	case 4: /* boolean_value */
		if (wt != WT_VARINT)
			return false;
		if (!(*ok = get_varint(d, r, &x)))
			return true;
		v->s = NULL;
		v->len = 0;
		if (k == 0) {
			v->kind = SPB_V_INT;
			v->v.i = (uint32_t)x;   /* as protobuf reads a uint32: the low 32 bits */
		} else if (k == 1) {
			v->kind = SPB_V_LONG;
			v->v.l = x;
		} else {
			v->kind = SPB_V_BOOL;
			v->v.b = x != 0;
		}
		return true;
	case 2: /* float_value */
		if (wt != WT_I32)
			return false;
		if ((*ok = get_fixed(d, r, 4, &x))) {
			uint32_t f = (uint32_t)x;
			v->kind = SPB_V_FLOAT;
			memcpy(&v->v.f, &f, 4);
			v->s = NULL;
			v->len = 0;
		}
		return true;
	case 3: /* double_value */
		if (wt != WT_I64)
			return false;
		if ((*ok = get_fixed(d, r, 8, &x))) {
			v->kind = SPB_V_DOUBLE;
			memcpy(&v->v.d, &x, 8);
			v->s = NULL;
			v->len = 0;
		}
		return true;
	case 5: /* string_value */
	case 6: /* bytes_value (Metric), or a property set (PropertyValue) */
	default:
		if (wt != WT_LEN)
			return false;
		if (!(*ok = get_len(d, r, &s)))
			return true;
		if (k == 5 || (k == 6 && bytes_ok)) {
			const char *c = take_string(d, &s, false, r);
			if (!(*ok = c != NULL))
				return true;
			v->kind = k == 5 ? SPB_V_STRING : SPB_V_BYTES;
			v->s = c;
			v->len = (size_t)(s.end - s.p);
		} else {
			v->kind = SPB_V_OTHER;
			v->s = NULL;
			v->len = 0;
		}
		return true;
	}
}

static bool dec_pvalue(struct dec *d, struct rd *r, struct spb_property *pr)
{
	unsigned field, wt;
	uint64_t x;
	bool ok;

	while (get_key(d, r, &field, &wt)) {
		if (field == F_PVAL_TYPE && wt == WT_VARINT) {
			if (!get_varint(d, r, &x))
				return false;
			pr->has_type = true;
			pr->type = (uint32_t)x;
		} else if (field == F_PVAL_NULL && wt == WT_VARINT) {
			if (!get_varint(d, r, &x))
				return false;
			pr->is_null = x != 0;
		} else if (value_field(d, r, field, wt, F_PVAL_INT, F_PVAL_EXTENSION, false, &pr->value,
				       &ok)) {
			if (!ok)
				return false;
		} else if (!skip(d, r, wt)) {
			return false;
		}
	}
	return !d->failed;
}

/*
 * A PropertySet's keys and values into props[base + ...]; *nkeys and *nvalues count on
 * from where an earlier set of the same metric left them (protobuf merges the two).
 */
static bool dec_pset(struct dec *d, struct rd *r, struct spb_property *props, size_t *nkeys,
		     size_t *nvalues)
{
	unsigned field, wt;
	struct rd s;

	while (get_key(d, r, &field, &wt)) {
		if (field == F_PSET_KEYS && wt == WT_LEN) {
			const char *c;
			if (!get_len(d, r, &s) || !(c = take_string(d, &s, true, r)))
				return false;
			if (*nkeys >= SPB_PROPS_MAX)
				return dec_fail(d, r, "more properties than a metric may have");
			if (props)
				props[*nkeys].key = c;
			(*nkeys)++;
		} else if (field == F_PSET_VALUES && wt == WT_LEN) {
			struct spb_property scratch = { 0 };
			if (*nvalues >= SPB_PROPS_MAX)
				return dec_fail(d, r, "more properties than a metric may have");
			if (!get_len(d, r, &s) || !dec_pvalue(d, &s, props ? &props[*nvalues] : &scratch))
				return false;
			(*nvalues)++;
		} else if (!skip(d, r, wt)) {
			return false;
		}
	}
	return !d->failed;
}

static bool dec_metric(struct dec *d, struct rd *r, struct spb_metric *m)
{
	struct spb_property *props = d->out ? d->props : NULL;
	size_t nkeys = 0, nvalues = 0;
	unsigned field, wt;
	uint64_t x;
	struct rd s;
	bool ok;

	while (get_key(d, r, &field, &wt)) {
		if (field == F_METRIC_NAME && wt == WT_LEN) {
			const char *c;
			if (!get_len(d, r, &s) || !(c = take_string(d, &s, true, r)))
				return false;
			m->name = c;
		} else if ((field == F_METRIC_ALIAS || field == F_METRIC_TIMESTAMP ||
			    field == F_METRIC_DATATYPE || field == F_METRIC_HISTORICAL ||
			    field == F_METRIC_TRANSIENT || field == F_METRIC_NULL) &&
			   wt == WT_VARINT) {
			if (!get_varint(d, r, &x))
				return false;
			switch (field) {
			case F_METRIC_ALIAS:
				m->has_alias = true;
				m->alias = x;
				break;
			case F_METRIC_TIMESTAMP:
				m->has_timestamp = true;
				m->timestamp = x;
				break;
			case F_METRIC_DATATYPE:
				m->has_datatype = true;
				m->datatype = (uint32_t)x;
				break;
			case F_METRIC_HISTORICAL:
				m->is_historical = x != 0;
				break;
			case F_METRIC_TRANSIENT:
				m->is_transient = x != 0;
				break;
			default:
				m->is_null = x != 0;
				break;
			}
		} else if (field == F_METRIC_PROPERTIES && wt == WT_LEN) {
			if (!get_len(d, r, &s) || !dec_pset(d, &s, props, &nkeys, &nvalues))
				return false;
		} else if (value_field(d, r, field, wt, F_METRIC_INT, F_METRIC_EXTENSION, true,
				       &m->value, &ok)) {
			if (!ok)
				return false;
		} else if (!skip(d, r, wt)) {
			return false;
		}
	}
	if (d->failed)
		return false;
	if (nkeys != nvalues) {
		snprintf(d->err, d->errlen, "a property set with %zu keys and %zu values", nkeys,
			 nvalues);
		d->failed = true;
		return false;
	}
	if (d->out) {
		m->props = nkeys ? d->props : NULL;
		m->nprops = nkeys;
		d->props += nkeys;
	} else {
		d->nprops += nkeys;
	}
	return true;
}

static bool dec_payload(struct dec *d, struct rd *r, struct spb_payload *p)
{
	struct spb_metric scratch;
	unsigned field, wt;
	uint64_t x;
	struct rd s;

	while (get_key(d, r, &field, &wt)) {
		if ((field == F_PAYLOAD_TIMESTAMP || field == F_PAYLOAD_SEQ) && wt == WT_VARINT) {
			if (!get_varint(d, r, &x))
				return false;
			if (field == F_PAYLOAD_TIMESTAMP) {
				p->has_timestamp = true;
				p->timestamp = x;
			} else {
				p->has_seq = true;
				p->seq = x;
			}
		} else if (field == F_PAYLOAD_METRICS && wt == WT_LEN) {
			struct spb_metric *m = d->out ? &d->metrics[p->nmetrics] : &scratch;
			if (p->nmetrics >= SPB_METRICS_MAX)
				return dec_fail(d, r, "more metrics than a payload may have");
			memset(m, 0, sizeof *m);
			if (!get_len(d, r, &s) || !dec_metric(d, &s, m))
				return false;
			p->nmetrics++;
		} else if ((field == F_PAYLOAD_UUID || field == F_PAYLOAD_BODY) && wt == WT_LEN) {
			const char *c;
			if (!get_len(d, r, &s) || !(c = take_string(d, &s, false, r)))
				return false;
			if (field == F_PAYLOAD_UUID) {
				p->uuid = c;
			} else {
				p->has_body = true;
				p->body = (const uint8_t *)c;
				p->body_len = (size_t)(s.end - s.p);
			}
		} else if (!skip(d, r, wt)) {
			return false;
		}
	}
	return !d->failed;
}

static size_t align_up(size_t n, size_t a)
{
	return (n + a - 1) / a * a;
}

struct spb_payload *spb_decode(const void *buf, size_t len, char *err, size_t errlen)
{
	static const uint8_t nothing[1];
	struct dec d = { .err = err, .errlen = errlen };
	struct spb_payload count = { 0 }, *p;
	size_t off_metrics, off_props, off_chars, total;
	struct rd r;
	char *mem;

	if (errlen)
		err[0] = '\0';
	if (!buf) {
		/* the empty payload, as an empty buffer may come (NULL, 0) */
		if (len) {
			snprintf(err, errlen, "no buffer");
			return NULL;
		}
		buf = nothing;
	}
	d.start = buf;
	r = (struct rd){ .p = buf, .end = (const uint8_t *)buf + len, .start = buf };
	if (!dec_payload(&d, &r, &count))
		return NULL;
	off_metrics = align_up(sizeof *p, alignof(struct spb_metric));
	off_props = align_up(off_metrics + count.nmetrics * sizeof(struct spb_metric),
			     alignof(struct spb_property));
	off_chars = off_props + d.nprops * sizeof(struct spb_property);
	total = off_chars + d.nchars;
	if (!(mem = calloc(1, total ? total : 1))) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	p = (struct spb_payload *)mem;
	d.out = p;
	d.metrics = (struct spb_metric *)(mem + off_metrics);
	d.props = (struct spb_property *)(mem + off_props);
	d.chars = mem + off_chars;
	r.p = buf;
	if (!dec_payload(&d, &r, p) || p->nmetrics != count.nmetrics) {
		/* the first pass accepted it: the second cannot differ */
		snprintf(err, errlen, "internal error: the two passes disagree");
		free(mem);
		return NULL;
	}
	p->metrics = count.nmetrics ? d.metrics : NULL;
	return p;
}

void spb_free(struct spb_payload *p)
{
	free(p);
}

const struct spb_metric *spb_find(const struct spb_payload *p, const char *name, bool has_alias,
				  uint64_t alias)
{
	for (size_t i = 0; i < p->nmetrics; i++) {
		const struct spb_metric *m = &p->metrics[i];
		if (name && m->name && strcmp(m->name, name) == 0)
			return m;
		if (has_alias && m->has_alias && m->alias == alias)
			return m;
	}
	return NULL;
}
