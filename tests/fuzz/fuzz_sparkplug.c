/*
 * fuzz_sparkplug: the Sparkplug B decoder (lib/spb.c) on arbitrary bytes, which is what
 * an NCMD or DCMD from the network may be, and a round trip of whatever it accepts:
 * encoded again, the payload must decode to the same fields and encode to the same
 * bytes (the encoder writes one canonical form), and spb_encoded_size must say how
 * many. The only payloads the encoder may refuse are those holding a value it never
 * writes (a data set, template, property set or extension the decoder passed over).
 */
#include <string.h>

#include "fuzz.h"
#include "spb.h"

static bool has_other(const struct spb_payload *p)
{
	for (size_t i = 0; i < p->nmetrics; i++) {
		if (p->metrics[i].value.kind == SPB_V_OTHER)
			return true;
		for (size_t k = 0; k < p->metrics[i].nprops; k++)
			if (p->metrics[i].props[k].value.kind == SPB_V_OTHER)
				return true;
	}
	return false;
}

static void same_value(const struct spb_value *a, const struct spb_value *b)
{
	fuzz_check(a->kind == b->kind);
	switch (a->kind) {
	case SPB_V_INT:
		fuzz_check(a->v.i == b->v.i);
		break;
	case SPB_V_LONG:
		fuzz_check(a->v.l == b->v.l);
		break;
	case SPB_V_FLOAT:
		fuzz_check(memcmp(&a->v.f, &b->v.f, 4) == 0);
		break;
	case SPB_V_DOUBLE:
		fuzz_check(memcmp(&a->v.d, &b->v.d, 8) == 0);
		break;
	case SPB_V_BOOL:
		fuzz_check(a->v.b == b->v.b);
		break;
	case SPB_V_STRING:
	case SPB_V_BYTES:
		fuzz_check(a->len == b->len && memcmp(a->s, b->s, a->len) == 0);
		fuzz_check(a->s[a->len] == '\0');
		break;
	default:
		break;
	}
}

static void same(const struct spb_payload *a, const struct spb_payload *b)
{
	fuzz_check(a->has_timestamp == b->has_timestamp);
	fuzz_check(!a->has_timestamp || a->timestamp == b->timestamp);
	fuzz_check(a->has_seq == b->has_seq && (!a->has_seq || a->seq == b->seq));
	fuzz_check(!a->uuid == !b->uuid && (!a->uuid || strcmp(a->uuid, b->uuid) == 0));
	fuzz_check(a->has_body == b->has_body);
	fuzz_check(!a->has_body ||
		   (a->body_len == b->body_len && memcmp(a->body, b->body, a->body_len) == 0));
	fuzz_check(a->nmetrics == b->nmetrics);
	for (size_t i = 0; i < a->nmetrics; i++) {
		const struct spb_metric *x = &a->metrics[i], *y = &b->metrics[i];
		fuzz_check(!x->name == !y->name && (!x->name || strcmp(x->name, y->name) == 0));
		fuzz_check(x->has_alias == y->has_alias && (!x->has_alias || x->alias == y->alias));
		fuzz_check(x->has_timestamp == y->has_timestamp &&
			   (!x->has_timestamp || x->timestamp == y->timestamp));
		fuzz_check(x->has_datatype == y->has_datatype &&
			   (!x->has_datatype || x->datatype == y->datatype));
		fuzz_check(x->is_historical == y->is_historical);
		fuzz_check(x->is_transient == y->is_transient && x->is_null == y->is_null);
		fuzz_check(x->nprops == y->nprops);
		for (size_t k = 0; k < x->nprops; k++) {
			fuzz_check(strcmp(x->props[k].key, y->props[k].key) == 0);
			fuzz_check(x->props[k].has_type == y->props[k].has_type);
			fuzz_check(!x->props[k].has_type || x->props[k].type == y->props[k].type);
			fuzz_check(x->props[k].is_null == y->props[k].is_null);
			same_value(&x->props[k].value, &y->props[k].value);
		}
		same_value(&x->value, &y->value);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct spb_payload *p, *q;
	struct jbuf b, b2;
	char err[200];

	p = spb_decode(data, size, err, sizeof err);
	if (!p) {
		fuzz_check(err[0] != '\0');
		return 0;
	}
	fuzz_check(p->nmetrics <= SPB_METRICS_MAX);
	jb_init(&b);
	if (spb_encode(p, &b) != 0) {
		fuzz_check(!b.oom && has_other(p));
		fuzz_check(spb_encoded_size(p) == 0);
		spb_free(p);
		jb_free(&b);
		return 0;
	}
	fuzz_check(spb_encoded_size(p) == b.len);
	q = spb_decode(b.p, b.len, err, sizeof err);
	if (!q)
		fuzz_fail("re-encoded payload does not decode: %s", err);
	same(p, q);
	jb_init(&b2);
	fuzz_check(spb_encode(q, &b2) == 0);
	fuzz_check(b2.len == b.len && (b.len == 0 || memcmp(b2.p, b.p, b.len) == 0));
	jb_free(&b2);
	jb_free(&b);
	spb_free(q);
	spb_free(p);
	return 0;
}
