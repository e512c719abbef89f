/*
 * payload_sluice: the "sluice" format, sluice's own JSON schema (docs/mqtt.md). It owns
 * every byte of it — topics, member names and their order, how values are written —
 * and must never change one: platforms parse these messages, and the schema only ever
 * gains members. Pure: no clock, no I/O.
 */
#include <stdio.h>

#include "mberr.h"
#include "payload_int.h"

/* kind[/a[/b]]; false when it does not fit. Ids are [A-Za-z0-9_-]+ (config): every
 * level is safe as it is. */
static bool sl_topic(struct payload_msg *m, const char *kind, const char *a, const char *b)
{
	int n = b   ? snprintf(m->topic, sizeof m->topic, "%s/%s/%s", kind, a, b)
		: a ? snprintf(m->topic, sizeof m->topic, "%s/%s", kind, a)
		    : snprintf(m->topic, sizeof m->topic, "%s", kind);

	return n >= 0 && (size_t)n < sizeof m->topic;
}

static int sl_done(struct payload_msg *m, bool topic_ok)
{
	return topic_ok && !m->body.oom ? 0 : -1;
}

static void sl_begin(struct payload_msg *m, bool retain)
{
	jb_reset(&m->body);
	m->retain = retain;
}

/* "ts":...,"values":{...}[,"errors":{...}]: a failed point is named in errors only. */
static int sl_reading(struct payload_msg *m, const struct device_cfg *d, const struct reading *r)
{
	struct jbuf *b = &m->body;
	bool first = true, any_err = false;

	sl_begin(m, false);
	jb_cstr(b, "\"ts\":");
	jb_i64(b, r->ts_ms);
	jb_cstr(b, ",\"values\":{");
	for (uint16_t i = 0; i < r->nvalues && i < d->npoints; i++) {
		if (r->values[i].kind == VAL_NONE) {
			any_err = true;
			continue;
		}
		jb_key(b, d->points[i].name, &first);
		jb_point_value(b, &d->points[i], &r->values[i]);
	}
	jb_cstr(b, "}");
	if (any_err) {
		first = true;
		jb_cstr(b, ",\"errors\":{");
		for (uint16_t i = 0; i < r->nvalues && i < d->npoints; i++) {
			if (r->values[i].kind != VAL_NONE)
				continue;
			jb_key(b, d->points[i].name, &first);
			jb_str(b, mb_strerror(r->values[i].err));
		}
		jb_cstr(b, "}");
	}
	return sl_done(m, sl_topic(m, "telemetry", d->id, NULL));
}

static int sl_device_state(struct payload_msg *m, const struct device_cfg *d, bool online,
			   int64_t ts_ms, int last_err)
{
	struct jbuf *b = &m->body;

	sl_begin(m, true);
	jb_cstr(b, "\"ts\":");
	jb_i64(b, ts_ms);
	jb_cstr(b, ",\"state\":");
	jb_str(b, online ? "online" : "offline");
	if (d->name) {
		jb_cstr(b, ",\"name\":");
		jb_str(b, d->name);
	}
	if (last_err) {
		jb_cstr(b, ",\"last_error\":");
		jb_str(b, mb_strerror(last_err));
	}
	return sl_done(m, sl_topic(m, "device", d->id, NULL));
}

static int sl_alert(struct payload_msg *m, const struct alert_transition *t, const char *rule_name,
		    const struct payload_write_failure *failed)
{
	struct jbuf *b = &m->body;

	sl_begin(m, true);
	jb_cstr(b, "\"ts\":");
	jb_i64(b, t->ts_ms);
	jb_cstr(b, ",\"rule\":");
	jb_str(b, t->rule);
	jb_cstr(b, ",\"check\":");
	jb_str(b, t->check);
	jb_cstr(b, ",\"state\":");
	jb_str(b, t->state == ALERT_FIRING ? "firing" : "resolved");
	jb_cstr(b, ",\"severity\":");
	if (severity_name(t->severity))
		jb_str(b, severity_name(t->severity));
	else
		jb_cstr(b, "null");
	jb_cstr(b, ",\"value\":");
	if (t->value_f32)
		jb_float32(b, t->value);
	else
		jb_double(b, t->value);
	jb_cstr(b, ",\"threshold\":");
	if (t->threshold_f32)
		jb_float32(b, t->threshold);
	else
		jb_double(b, t->threshold);
	if (t->unit[0]) {
		jb_cstr(b, ",\"unit\":");
		jb_str(b, t->unit);
	}
	jb_cstr(b, ",\"message\":");
	jb_str(b, t->message);
	if (rule_name) {
		jb_cstr(b, ",\"name\":");
		jb_str(b, rule_name);
	}
	if (failed) {
		char ref[ID_MAX + POINT_NAME_MAX + 2];

		snprintf(ref, sizeof ref, "%s.%s", failed->device, failed->point);
		jb_cstr(b, ",\"action\":{\"write\":");
		jb_str(b, ref);
		jb_cstr(b, ",\"value\":");
		jb_double(b, failed->value);
		jb_cstr(b, ",\"error\":");
		jb_str(b, mb_strerror(failed->err));
		jb_cstr(b, "}");
	}
	return sl_done(m, sl_topic(m, "alert", t->rule, t->check));
}

static int sl_envelope(struct jbuf *out, uint64_t seq, const char *body)
{
	jb_reset(out);
	jb_cstr(out, "{\"seq\":");
	jb_u64(out, seq);
	jb_cstr(out, ",");
	jb_cstr(out, body);
	jb_cstr(out, "}");
	return out->oom ? -1 : 0;
}

static void sl_status_body(struct payload_msg *m, const struct payload_gateway *g, bool online,
			   bool with_ts, int64_t ts_ms)
{
	struct jbuf *b = &m->body;
	bool first = true;

	sl_begin(m, true);
	jb_cstr(b, "{");
	jb_key(b, "state", &first);
	jb_str(b, online ? "online" : "offline");
	if (with_ts) {
		jb_key(b, "ts", &first);
		jb_i64(b, ts_ms);
		jb_key(b, "gateway", &first);
		jb_str(b, g->id);
		if (g->name) {
			jb_key(b, "name", &first);
			jb_str(b, g->name);
		}
		jb_key(b, "version", &first);
		jb_str(b, g->version);
		if (g->stream) {
			jb_key(b, "stream", &first);
			jb_str(b, g->stream);
		}
	}
	jb_cstr(b, "}");
}

static int sl_status(struct payload_msg *m, const struct payload_gateway *g, bool online,
		     int64_t ts_ms)
{
	sl_status_body(m, g, online, true, ts_ms);
	return sl_done(m, sl_topic(m, "status", NULL, NULL));
}

/* {"state":"offline"} alone: the will is set once per connection, so it can say no when */
static int sl_will(struct payload_msg *m, const struct payload_gateway *g)
{
	sl_status_body(m, g, false, false, 0);
	return sl_done(m, sl_topic(m, "status", NULL, NULL));
}

static int sl_health(struct payload_msg *m, const struct health *h)
{
	struct jbuf *b = &m->body;
	bool first = true, dfirst = true;

	sl_begin(m, false);
	jb_cstr(b, "{");
	jb_key(b, "ts", &first);
	jb_i64(b, h->ts_ms);
	payload_health_counters(b, h, &first);
	if (h->stream) {
		jb_key(b, "stream", &first);
		jb_str(b, h->stream);
	}
	jb_key(b, "skipped_seqs", &first);
	jb_u64(b, h->skipped);
	jb_key(b, "poll_lag_ms", &first);
	jb_cstr(b, "{\"p50\":");
	jb_i64(b, h->lag_p50_ms);
	jb_cstr(b, ",\"p99\":");
	jb_i64(b, h->lag_p99_ms);
	jb_cstr(b, ",\"polls\":");
	jb_u64(b, h->lag_polls);
	jb_cstr(b, "}");
	jb_key(b, "devices", &first);
	jb_cstr(b, "{");
	for (size_t i = 0; i < h->ndevices; i++) {
		const struct dev_status *ds = &h->dev[i];

		if (ds->published < 0)
			continue; /* no state yet (not polled in this build) */
		jb_key(b, h->devices[i].id, &dfirst);
		jb_cstr(b, "{\"polls_ok\":");
		jb_u64(b, ds->ok);
		jb_cstr(b, ",\"polls_failed\":");
		jb_u64(b, ds->failed);
		jb_cstr(b, ",\"online\":");
		jb_bool(b, ds->published == 1);
		jb_cstr(b, "}");
	}
	jb_cstr(b, "}}");
	return sl_done(m, sl_topic(m, "health", NULL, NULL));
}

/* Every topic under <topic_prefix>/<gateway id>/. */
static int sl_full_topic(char *buf, size_t len, const char *prefix, const char *gateway,
			 const char *rel)
{
	int n = snprintf(buf, len, "%s/%s/%s", prefix, gateway, rel);

	return n < 0 || (size_t)n >= len ? -1 : 0;
}

const struct payload_format payload_sluice = {
	.name = "sluice",
	.reading = sl_reading,
	.device_state = sl_device_state,
	.alert = sl_alert,
	.envelope = sl_envelope,
	.status = sl_status,
	.will = sl_will,
	.health = sl_health,
	.topic = sl_full_topic,
};
