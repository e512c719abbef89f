/*
 * payload_sparkplug: the "sparkplug" format (payload_sparkplug.h, docs/mqtt.md). It owns
 * which metrics each Sparkplug message holds, their names, aliases, datatypes and
 * properties, and the topics under spBv1.0/; the protobuf bytes are lib/spb's. It must
 * never keep state between calls (the session's seq and bdSeq are the caller's), read a
 * clock or do I/O.
 */
#include "payload_sparkplug.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "jread.h"
#include "payload_int.h"
#include "spb.h"

/* ---- aliases and datatypes -------------------------------------------------------- */

uint64_t payload_sparkplug_point_alias(size_t device, size_t point)
{
	return ((uint64_t)(device + 1) << 16) + 1 + point;
}

uint64_t payload_sparkplug_device_seq_alias(size_t device)
{
	return (uint64_t)(device + 1) << 16;
}

int payload_sparkplug_alias_point(uint64_t alias, size_t *device, size_t *point)
{
	uint64_t d = alias >> 16, p = alias & 0xFFFF;

	if (d == 0 || p == 0 || d - 1 > SIZE_MAX)
		return -1;
	*device = (size_t)(d - 1);
	*point = (size_t)(p - 1);
	return 0;
}

uint32_t payload_sparkplug_datatype(const struct point_def *p)
{
	switch (p->type) {
	case PT_BOOL:
		return SPB_BOOLEAN;
	case PT_STRING:
		return SPB_STRING;
	case PT_FLOAT32:
		return SPB_FLOAT;
	case PT_FLOAT64:
		return SPB_DOUBLE;
	default:
		break;
	}
	if (!codec_is_exact(p))
		return SPB_DOUBLE;   /* scale or offset: a real number in the point's unit */
	switch (p->type) {
	case PT_INT16:
		return SPB_INT16;
	case PT_UINT16:
		return SPB_UINT16;
	case PT_INT32:
		return SPB_INT32;
	case PT_UINT32:
		return SPB_UINT32;
	case PT_INT64:
		return SPB_INT64;
	case PT_UINT64:
		return SPB_UINT64;
	default:
		return SPB_DOUBLE;
	}
}

/* ---- building a payload ------------------------------------------------------------- */

/*
 * The metrics of one message, and the text they point to (names made here, device
 * strings made valid UTF-8): a bump arena sized before anything is put in it, so that
 * no pointer into it moves.
 */
struct psp {
	struct spb_metric *m;
	size_t n, cap;
	struct spb_property *props;  /* two per metric at most: engUnit, Quality */
	char *text;
	size_t used, size;
	bool oom;
};

static bool psp_init(struct psp *b, size_t metrics, size_t text)
{
	memset(b, 0, sizeof *b);
	b->cap = metrics;
	b->m = calloc(metrics ? metrics : 1, sizeof *b->m);
	b->props = calloc(metrics ? metrics : 1, sizeof *b->props);
	b->size = text;
	b->text = malloc(text ? text : 1);
	b->oom = !b->m || !b->props || !b->text;
	return !b->oom;
}

static void psp_free(struct psp *b)
{
	free(b->m);
	free(b->props);
	free(b->text);
}

static struct spb_metric *psp_add(struct psp *b, const char *name, uint64_t alias, int64_t ts,
				  uint32_t datatype)
{
	struct spb_metric *m;

	if (b->n == b->cap) {
		b->oom = true;   /* a count below was wrong: refuse rather than write past */
		return NULL;
	}
	m = &b->m[b->n++];
	memset(m, 0, sizeof *m);
	m->name = name;
	m->has_alias = true;
	m->alias = alias;
	m->has_timestamp = ts >= 0;
	m->timestamp = (uint64_t)ts;
	m->has_datatype = datatype != SPB_UNKNOWN;
	m->datatype = datatype;
	return m;
}

/* printf into the arena; NULL when it does not fit (b->oom). */
static const char *psp_text(struct psp *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static const char *psp_text(struct psp *b, const char *fmt, ...)
{
	va_list ap;
	char *at = b->text + b->used;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(at, b->size - b->used, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= b->size - b->used) {
		b->oom = true;
		return NULL;
	}
	b->used += (size_t)n + 1;
	return at;
}

/* A device's string as valid UTF-8 in the arena (3 bytes for each bad one at most). */
static void psp_utf8(struct psp *b, struct spb_value *v, const char *s)
{
	struct jbuf j;

	jb_init(&j);
	jb_utf8(&j, s ? s : "", s ? strlen(s) : 0);
	if (j.oom || j.len + 1 > b->size - b->used) {
		b->oom = true;
		jb_free(&j);
		return;
	}
	v->kind = SPB_V_STRING;
	v->s = b->text + b->used;
	v->len = j.len;
	if (j.len)
		memcpy(b->text + b->used, j.p, j.len);
	b->text[b->used + j.len] = '\0';
	b->used += j.len + 1;
	jb_free(&j);
}

static struct spb_value v_str(const char *s)
{
	return (struct spb_value){ .kind = SPB_V_STRING, .s = s, .len = strlen(s) };
}

static struct spb_value v_long(uint64_t l)
{
	return (struct spb_value){ .kind = SPB_V_LONG, .v.l = l };
}

/* A double, or null when it is not a number. */
static void set_double(struct spb_metric *m, double d, bool f32)
{
	if (!isfinite(d)) {
		m->is_null = true;
		return;
	}
	if (f32) {
		/* as the JSON format writes it: the shortest decimal of the float32, read back
		 * as a double (85.3, not the widened 85.30000305175781) */
		struct jbuf j;
		jb_init(&j);
		jb_float32(&j, d);
		if (!j.oom)
			d = strtod(jb_cstr_get(&j), NULL);
		jb_free(&j);
	}
	m->value = (struct spb_value){ .kind = SPB_V_DOUBLE, .v.d = d };
}

/* A point's value as its datatype says; a failed point is null, Quality BAD (0). */
static void set_point_value(struct psp *b, struct spb_metric *m, const struct point_def *p,
			    const struct value *v, bool failed_is_bad)
{
	uint32_t dt = payload_sparkplug_datatype(p);
	double d;

	if (!v || v->kind == VAL_NONE) {
		m->is_null = true;
		if (v && failed_is_bad) {
			struct spb_property *q = &b->props[m - b->m];
			*q = (struct spb_property){ .key = "Quality", .has_type = true,
						    .type = SPB_INT32,
						    .value = { .kind = SPB_V_INT, .v.i = 0 } };
			m->props = q;
			m->nprops = 1;
		}
		return;
	}
	switch (dt) {
	case SPB_BOOLEAN:
		m->value.kind = SPB_V_BOOL;
		m->value.v.b = v->kind == VAL_BOOL ? v->v.b
			     : v->kind == VAL_INT  ? v->v.i != 0
			     : v->kind == VAL_UINT ? v->v.u != 0
						   : v->v.d != 0;
		return;
	case SPB_STRING:
		psp_utf8(b, &m->value, v->kind == VAL_STRING ? v->s : "");
		return;
	case SPB_INT16:
	case SPB_INT32:
	case SPB_UINT16:
	case SPB_UINT32:
		/* uint32 on the wire; a signed one as its two's complement */
		m->value.kind = SPB_V_INT;
		m->value.v.i = v->kind == VAL_INT ? (uint32_t)(int32_t)v->v.i : (uint32_t)v->v.u;
		return;
	case SPB_INT64:
	case SPB_UINT64:
		m->value.kind = SPB_V_LONG;
		m->value.v.l = v->kind == VAL_INT ? (uint64_t)v->v.i : v->v.u;
		return;
	default:
		break;
	}
	d = v->kind == VAL_DOUBLE ? v->v.d : v->kind == VAL_INT ? (double)v->v.i
	  : v->kind == VAL_UINT ? (double)v->v.u : v->kind == VAL_BOOL ? (double)v->v.b : NAN;
	if (!isfinite(d)) {
		m->is_null = true;
		return;
	}
	if (dt == SPB_FLOAT) {
		m->value.kind = SPB_V_FLOAT;
		m->value.v.f = (float)d;
	} else {
		m->value.kind = SPB_V_DOUBLE;
		m->value.v.d = d;
	}
}

static void set_unit(struct psp *b, struct spb_metric *m, const char *unit)
{
	struct spb_property *u;

	if (!unit || !unit[0])
		return;
	u = &b->props[m - b->m];
	*u = (struct spb_property){ .key = "engUnit", .has_type = true, .type = SPB_STRING,
				    .value = v_str(unit) };
	m->props = u;
	m->nprops = 1;
}

/* sluice/seq: the outbox row's seq, or null when the message carries none. */
static void add_row_seq(struct psp *b, uint64_t alias, uint64_t row_seq, bool birth, int64_t ts,
			bool historical)
{
	struct spb_metric *m = psp_add(b, birth ? "sluice/seq" : NULL, alias, ts,
				       birth ? SPB_UINT64 : SPB_UNKNOWN);

	if (!m)
		return;
	m->is_historical = historical;
	if (row_seq)
		m->value = v_long(row_seq);
	else
		m->is_null = true;
}

/* Encode b's metrics as the payload of m (topic verb[/device]). */
static int psp_finish(struct psp *b, struct payload_msg *m, bool has_seq, uint8_t seq,
		      int64_t now_ms, const char *verb, const char *device)
{
	struct spb_payload p = { .has_timestamp = now_ms >= 0, .timestamp = (uint64_t)now_ms,
				 .metrics = b->m, .nmetrics = b->n, .has_seq = has_seq,
				 .seq = seq };
	int n, rc = -1;

	jb_reset(&m->body);
	m->retain = false;   /* Sparkplug 3.0: no message of the edge node is retained */
	n = device ? snprintf(m->topic, sizeof m->topic, "%s/%s", verb, device)
		   : snprintf(m->topic, sizeof m->topic, "%s", verb);
	if (!b->oom && n > 0 && (size_t)n < sizeof m->topic)
		rc = spb_encode(&p, &m->body);
	psp_free(b);
	return rc;
}

/* ---- the node ----------------------------------------------------------------------- */

/* The health metrics: name, datatype, value. */
static const char *const health_names[] = {
	"health/uptime_s", "health/polls_ok", "health/polls_failed", "health/backlog_rows",
	"health/backlog_age_s", "health/dropped", "health/set_aside_rows", "health/not_stored",
	"health/held_rows", "health/lost_at_stop", "health/db_bytes", "health/last_seq",
	"health/poll_lag_p50_ms", "health/poll_lag_p99_ms", "health/store_error",
};
#define NHEALTH (sizeof health_names / sizeof health_names[0])

static void add_health(struct psp *b, const struct health *h, bool birth, int64_t ts)
{
	for (size_t i = 0; i < NHEALTH; i++) {
		bool text = i == NHEALTH - 1;
		bool is_signed = i == 0 || i == 4 || i == 12 || i == 13;
		struct spb_metric *m = psp_add(b, birth ? health_names[i] : NULL,
					       PSP_ALIAS_HEALTH + i, ts,
					       !birth ? SPB_UNKNOWN
					       : text ? SPB_STRING
					       : is_signed ? SPB_INT64 : SPB_UINT64);
		uint64_t v;

		if (!m)
			return;
		if (!h || (text && !h->store_error)) {
			m->is_null = true;
			continue;
		}
		if (text) {
			m->value = v_str(h->store_error);
			continue;
		}
		switch (i) {
		case 0: v = (uint64_t)h->uptime_s; break;
		case 1: v = h->polls_ok; break;
		case 2: v = h->polls_failed; break;
		case 3: v = h->backlog_rows; break;
		case 4: v = (uint64_t)h->backlog_age_s; break;
		case 5: v = h->dropped; break;
		case 6: v = h->set_aside; break;
		case 7: v = h->not_stored; break;
		case 8: v = h->held_rows; break;
		case 9: v = h->lost_at_stop; break;
		case 10: v = h->db_bytes; break;
		case 11: v = h->last_seq; break;
		case 12: v = (uint64_t)h->lag_p50_ms; break;
		default: v = (uint64_t)h->lag_p99_ms; break;
		}
		m->value = v_long(v);
	}
}

static const char *const alert_fields[] = { "state", "severity", "value", "threshold",
					    "message" };
#define NALERT_FIELDS (sizeof alert_fields / sizeof alert_fields[0])

/* An alert check's metrics: names only in a birth (which the arena then holds). */
static void add_alert(struct psp *b, const struct alert_transition *t, size_t index, bool birth,
		      bool historical, int64_t ts)
{
	static const uint32_t types[NALERT_FIELDS] = { SPB_STRING, SPB_STRING, SPB_DOUBLE,
						       SPB_DOUBLE, SPB_STRING };

	for (size_t f = 0; f < NALERT_FIELDS; f++) {
		const char *name = birth ? psp_text(b, "alert/%s/%s/%s", t->rule, t->check,
						   alert_fields[f])
					 : NULL;
		struct spb_metric *m = psp_add(b, name, PSP_ALIAS_ALERTS + PSP_ALERT_FIELDS * index + f,
					       ts, birth ? types[f] : SPB_UNKNOWN);
		const char *sev = severity_name(t->severity);

		if (!m)
			return;
		m->is_historical = historical;
		switch (f) {
		case 0:
			m->value = v_str(t->state == ALERT_FIRING     ? "firing"
					 : t->state == ALERT_RESOLVED ? "resolved"
								      : "ok");
			break;
		case 1:
			if (sev && (t->state == ALERT_FIRING || t->state == ALERT_RESOLVED))
				m->value = v_str(sev);
			else
				m->is_null = true;
			break;
		case 2:
		case 3:
			if (t->state != ALERT_FIRING && t->state != ALERT_RESOLVED) {
				m->is_null = true;
				break;
			}
			set_double(m, f == 2 ? t->value : t->threshold,
				   f == 2 ? t->value_f32 : t->threshold_f32);
			if (birth)
				set_unit(b, m, t->unit);
			break;
		default:
			if (t->state == ALERT_FIRING || t->state == ALERT_RESOLVED)
				m->value = v_str(t->message);
			else
				m->is_null = true;
			break;
		}
	}
}

int payload_sparkplug_nbirth(struct payload_msg *m, const struct payload_sparkplug_node *n,
			     const struct health *h, const struct alert_transition *alerts,
			     size_t nalerts, uint8_t seq, int64_t now_ms)
{
	struct psp b;
	struct spb_metric *x;

	if (nalerts > PSP_ALERTS_MAX)
		return -1;
	/* an alert metric's name: alert/<rule>/<check>/threshold and its NUL */
	if (!psp_init(&b, 6 + NHEALTH + NALERT_FIELDS * nalerts,
		      nalerts * NALERT_FIELDS * (6 + ID_MAX + ALERT_CHECK_MAX + 12)))
		return psp_finish(&b, m, false, 0, -1, "NBIRTH", NULL);
	if ((x = psp_add(&b, "bdSeq", PSP_ALIAS_BDSEQ, now_ms, SPB_UINT64)))
		x->value = v_long(n->bdseq);
	if ((x = psp_add(&b, "Node Control/Rebirth", PSP_ALIAS_REBIRTH, now_ms, SPB_BOOLEAN)))
		x->value = (struct spb_value){ .kind = SPB_V_BOOL, .v.b = false };
	add_row_seq(&b, PSP_ALIAS_SEQ, 0, true, now_ms, false);
	if ((x = psp_add(&b, "sluice/version", PSP_ALIAS_VERSION, now_ms, SPB_STRING)))
		x->value = v_str(n->version ? n->version : "");
	if ((x = psp_add(&b, "sluice/name", PSP_ALIAS_NAME, now_ms, SPB_STRING))) {
		if (n->name)
			x->value = v_str(n->name);
		else
			x->is_null = true;
	}
	add_health(&b, h, true, now_ms);
	for (size_t i = 0; i < nalerts; i++)
		add_alert(&b, &alerts[i], i, true, false,
			  alerts[i].state == ALERT_FIRING || alerts[i].state == ALERT_RESOLVED
				  ? alerts[i].ts_ms
				  : now_ms);
	/* last: the metrics above keep their places in every NBIRTH before it */
	if ((x = psp_add(&b, "sluice/command", PSP_ALIAS_COMMAND, now_ms, SPB_STRING)))
		x->is_null = true;
	return psp_finish(&b, m, true, seq, now_ms, "NBIRTH", NULL);
}

int payload_sparkplug_ndeath(struct payload_msg *m, const struct payload_sparkplug_node *n)
{
	struct psp b;
	struct spb_metric *x;

	if (psp_init(&b, 1, 0) && (x = psp_add(&b, "bdSeq", 0, -1, SPB_UINT64))) {
		/* by name: a death is no DATA message, and a host may have lost the alias */
		x->has_alias = false;
		x->value = v_long(n->bdseq);
	}
	return psp_finish(&b, m, false, 0, -1, "NDEATH", NULL);
}

int payload_sparkplug_alert(struct payload_msg *m, const struct payload_sparkplug_node *n,
			    const struct alert_transition *t, size_t index, bool historical,
			    uint64_t row_seq, uint8_t seq, int64_t now_ms)
{
	struct psp b;

	(void)n;
	if (index >= PSP_ALERTS_MAX)
		return -1;
	if (psp_init(&b, NALERT_FIELDS + 1, 0)) {
		add_alert(&b, t, index, false, historical, t->ts_ms);
		add_row_seq(&b, PSP_ALIAS_SEQ, row_seq, false, t->ts_ms, historical);
	}
	return psp_finish(&b, m, true, seq, now_ms, "NDATA", NULL);
}

int payload_sparkplug_command(struct payload_msg *m, const struct payload_sparkplug_node *n,
			      const char *text, int64_t ts_ms, bool historical, uint64_t row_seq,
			      uint8_t seq, int64_t now_ms)
{
	struct psp b;
	struct spb_metric *x;
	const char *json;

	(void)n;
	if (psp_init(&b, 2, strlen(text) + 3)) {
		json = psp_text(&b, "{%s}", text);
		if (json && (x = psp_add(&b, NULL, PSP_ALIAS_COMMAND, ts_ms, SPB_UNKNOWN))) {
			x->is_historical = historical;
			x->value = v_str(json);
		}
		add_row_seq(&b, PSP_ALIAS_SEQ, row_seq, false, ts_ms, historical);
	}
	return psp_finish(&b, m, true, seq, now_ms, "NDATA", NULL);
}

int payload_sparkplug_health(struct payload_msg *m, const struct payload_sparkplug_node *n,
			     const struct health *h, uint8_t seq, int64_t now_ms)
{
	struct psp b;

	(void)n;
	if (psp_init(&b, NHEALTH, 0))
		add_health(&b, h, false, h->ts_ms);
	return psp_finish(&b, m, true, seq, now_ms, "NDATA", NULL);
}

/* ---- devices ------------------------------------------------------------------------ */

/* Room for a device's string values made valid UTF-8: three bytes for each. */
static size_t strings_size(const struct device_cfg *d, const struct value *values, size_t nvalues)
{
	size_t n = 0;

	for (size_t i = 0; values && i < nvalues && i < d->npoints; i++)
		if (values[i].kind == VAL_STRING && values[i].s)
			n += 3 * strlen(values[i].s) + 1;
	return n + 1;
}

int payload_sparkplug_dbirth(struct payload_msg *m, const struct payload_sparkplug_node *n,
			     const struct device_cfg *d, size_t di, const struct value *values,
			     size_t nvalues, int64_t ts_ms, uint64_t row_seq, uint8_t seq,
			     int64_t now_ms)
{
	struct psp b;

	(void)n;
	if (psp_init(&b, d->npoints + 1, strings_size(d, values, nvalues))) {
		add_row_seq(&b, payload_sparkplug_device_seq_alias(di), row_seq, true, ts_ms, false);
		for (size_t i = 0; i < d->npoints; i++) {
			const struct point_def *p = &d->points[i];
			struct spb_metric *x = psp_add(&b, p->name, payload_sparkplug_point_alias(di, i),
						       ts_ms, payload_sparkplug_datatype(p));
			if (!x)
				break;
			set_point_value(&b, x, p, values && i < nvalues ? &values[i] : NULL, false);
			set_unit(&b, x, p->unit);
		}
	}
	return psp_finish(&b, m, true, seq, now_ms, "DBIRTH", d->id);
}

int payload_sparkplug_ddata(struct payload_msg *m, const struct payload_sparkplug_node *n,
			    const struct device_cfg *d, size_t di, const struct value *values,
			    size_t nvalues, int64_t ts_ms, bool historical, uint64_t row_seq,
			    uint8_t seq, int64_t now_ms)
{
	size_t np = nvalues < d->npoints ? nvalues : d->npoints;
	struct psp b;

	(void)n;
	if (psp_init(&b, np + 1, strings_size(d, values, np))) {
		for (size_t i = 0; i < np; i++) {
			struct spb_metric *x = psp_add(&b, NULL, payload_sparkplug_point_alias(di, i),
						       ts_ms, SPB_UNKNOWN);
			if (!x)
				break;
			x->is_historical = historical;
			set_point_value(&b, x, &d->points[i], &values[i], true);
		}
		add_row_seq(&b, payload_sparkplug_device_seq_alias(di), row_seq, false, ts_ms,
			    historical);
	}
	return psp_finish(&b, m, true, seq, now_ms, "DDATA", d->id);
}

int payload_sparkplug_ddeath(struct payload_msg *m, const struct payload_sparkplug_node *n,
			     const struct device_cfg *d, size_t di, uint64_t row_seq, uint8_t seq,
			     int64_t now_ms)
{
	struct psp b;

	(void)n;
	if (psp_init(&b, 1, 0) && row_seq)
		add_row_seq(&b, payload_sparkplug_device_seq_alias(di), row_seq, false, now_ms,
			    false);
	return psp_finish(&b, m, true, seq, now_ms, "DDEATH", d->id);
}

/* ---- the host's STATE ----------------------------------------------------------------- */

int payload_sparkplug_state(const void *payload, size_t len, bool *online, int64_t *ts_ms)
{
	char err[120];
	struct jval *v = jread_parse(payload, len, err, sizeof err);
	const struct jval *on, *ts;
	int rc = -1;

	if (!v)
		return -1;
	on = jread_get(v, "online");
	ts = jread_get(v, "timestamp");
	if (v->type == J_OBJ && on && on->type == J_BOOL && ts && ts->type == J_NUM &&
	    ts->num >= 0 && ts->num < 9.2e18) {
		*online = on->b;
		*ts_ms = (int64_t)ts->num;
		rc = 0;
	}
	jread_free(v);
	return rc;
}

/* ---- the format's table ------------------------------------------------------------- */

/* The will: NDEATH with this connection's bdSeq. */
static int spb_will(struct payload_msg *m, const struct payload_gateway *g)
{
	struct payload_sparkplug_node n = { .id = g->id, .bdseq = g->bdseq };

	return payload_sparkplug_ndeath(m, &n);
}

/* spBv1.0/<group>/<verb>/<edge node>[/<device>]: rel is verb[/device], root the group. */
static int spb_topic(char *buf, size_t len, const char *group, const char *node, const char *rel)
{
	const char *slash = strchr(rel, '/');
	int n = slash ? snprintf(buf, len, "spBv1.0/%s/%.*s/%s/%s", group, (int)(slash - rel), rel,
				 node, slash + 1)
		      : snprintf(buf, len, "spBv1.0/%s/%s/%s", group, rel, node);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

const struct payload_format payload_sparkplug = {
	.name = "sparkplug",
	.will = spb_will,
	.topic = spb_topic,
};
