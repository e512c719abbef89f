/*
 * payload_thingsboard: the "thingsboard" format (payload_thingsboard.h, docs/mqtt.md). It
 * owns the JSON and topics of the ThingsBoard gateway API as sluice speaks it; values
 * are written as the sluice format writes them (lib/json). It must never keep state,
 * read a clock or do I/O.
 */
#include "payload_thingsboard.h"

#include <stdio.h>
#include <string.h>

#include "mberr.h"
#include "payload_int.h"

static void tb_begin(struct payload_msg *m, const char *topic)
{
	jb_reset(&m->body);
	m->retain = false;
	snprintf(m->topic, sizeof m->topic, "%s", topic);
}

static int tb_done(struct payload_msg *m)
{
	return m->body.oom ? -1 : 0;
}

int payload_thingsboard_connect(struct payload_msg *m, const struct device_cfg *d, bool connect)
{
	struct jbuf *b = &m->body;

	tb_begin(m, connect ? PTB_TOPIC_CONNECT : PTB_TOPIC_DISCONNECT);
	jb_cstr(b, "{\"device\":");
	jb_str(b, d->id);
	if (connect && d->profile) {
		jb_cstr(b, ",\"type\":");
		jb_str(b, d->profile);
	}
	jb_cstr(b, "}");
	return tb_done(m);
}

int payload_thingsboard_describe(struct payload_msg *m, const struct device_cfg *d)
{
	struct jbuf *b = &m->body;
	bool first = true, ufirst = true;

	tb_begin(m, PTB_TOPIC_ATTRIBUTES);
	jb_cstr(b, "{");
	jb_key(b, d->id, &first);
	first = true;
	jb_cstr(b, "{");
	if (d->name) {
		jb_key(b, "name", &first);
		jb_str(b, d->name);
	}
	if (d->profile) {
		jb_key(b, "profile", &first);
		jb_str(b, d->profile);
	}
	jb_key(b, "units", &first);
	jb_cstr(b, "{");
	for (size_t i = 0; i < d->npoints; i++) {
		if (!d->points[i].unit[0])
			continue;
		jb_key(b, d->points[i].name, &ufirst);
		jb_str(b, d->points[i].unit);
	}
	jb_cstr(b, "}}}");
	return tb_done(m);
}

int payload_thingsboard_telemetry(struct payload_msg *m, const struct device_cfg *d,
				  const struct value *values, size_t nvalues, int64_t ts_ms,
				  uint64_t row_seq)
{
	struct jbuf *b = &m->body;
	bool first = true;

	tb_begin(m, PTB_TOPIC_TELEMETRY);
	jb_cstr(b, "{");
	jb_key(b, d->id, &first);
	first = true;
	jb_cstr(b, "[{\"ts\":");
	jb_i64(b, ts_ms);
	jb_cstr(b, ",\"values\":{");
	for (size_t i = 0; i < nvalues && i < d->npoints; i++) {
		if (values[i].kind == VAL_NONE)
			continue;
		jb_key(b, d->points[i].name, &first);
		jb_point_value(b, &d->points[i], &values[i]);
	}
	jb_key(b, "sluice_seq", &first);
	jb_u64(b, row_seq);
	jb_cstr(b, "}}]}");
	return tb_done(m);
}

int payload_thingsboard_device_state(struct payload_msg *m, const struct device_cfg *d,
				     bool online, int64_t ts_ms, int last_err, uint64_t row_seq)
{
	struct jbuf *b = &m->body;
	bool first = true;

	tb_begin(m, PTB_TOPIC_ATTRIBUTES);
	jb_cstr(b, "{");
	jb_key(b, d->id, &first);
	jb_cstr(b, "{\"online\":");
	jb_bool(b, online);
	jb_cstr(b, ",\"state_ts\":");
	jb_i64(b, ts_ms);
	jb_cstr(b, ",\"last_error\":");
	if (last_err)
		jb_str(b, mb_strerror(last_err));
	else
		jb_cstr(b, "null");
	jb_cstr(b, ",\"sluice_seq\":");
	jb_u64(b, row_seq);
	jb_cstr(b, "}}");
	return tb_done(m);
}

/* "alert/<rule>/<check>/<field>": a key of the gateway device's telemetry */
static void tb_alert_key(struct jbuf *b, const struct alert_transition *t, const char *field,
			 bool *first)
{
	char key[ID_MAX + ALERT_CHECK_MAX + 32];

	snprintf(key, sizeof key, "alert/%s/%s/%s", t->rule, t->check, field);
	jb_key(b, key, first);
}

int payload_thingsboard_alert(struct payload_msg *m, const struct alert_transition *t,
			      const char *rule_name, const struct payload_write_failure *failed,
			      uint64_t row_seq)
{
	struct jbuf *b = &m->body;
	bool first = true;

	tb_begin(m, PTB_TOPIC_ME_TELEMETRY);
	jb_cstr(b, "{\"ts\":");
	jb_i64(b, t->ts_ms);
	jb_cstr(b, ",\"values\":{");
	tb_alert_key(b, t, "state", &first);
	jb_str(b, t->state == ALERT_FIRING ? "firing" : "resolved");
	tb_alert_key(b, t, "severity", &first);
	jb_str(b, severity_name(t->severity));
	tb_alert_key(b, t, "value", &first);
	if (t->value_f32)
		jb_float32(b, t->value);
	else
		jb_double(b, t->value);
	tb_alert_key(b, t, "threshold", &first);
	if (t->threshold_f32)
		jb_float32(b, t->threshold);
	else
		jb_double(b, t->threshold);
	if (t->unit[0]) {
		tb_alert_key(b, t, "unit", &first);
		jb_str(b, t->unit);
	}
	tb_alert_key(b, t, "message", &first);
	jb_str(b, t->message);
	if (rule_name) {
		tb_alert_key(b, t, "name", &first);
		jb_str(b, rule_name);
	}
	if (failed) {
		char ref[ID_MAX + POINT_NAME_MAX + 2];

		snprintf(ref, sizeof ref, "%s.%s", failed->device, failed->point);
		tb_alert_key(b, t, "action", &first);
		jb_cstr(b, "{\"write\":");
		jb_str(b, ref);
		jb_cstr(b, ",\"value\":");
		jb_double(b, failed->value);
		jb_cstr(b, ",\"error\":");
		jb_str(b, mb_strerror(failed->err));
		jb_cstr(b, "}");
	}
	jb_key(b, "sluice_seq", &first);
	jb_u64(b, row_seq);
	jb_cstr(b, "}}");
	return tb_done(m);
}

/* The health numbers as the gateway device's telemetry (not buffered, as in sluice's). */
static int tb_health(struct payload_msg *m, const struct health *h)
{
	struct jbuf *b = &m->body;
	bool first = true;

	tb_begin(m, PTB_TOPIC_ME_TELEMETRY);
	jb_cstr(b, "{\"ts\":");
	jb_i64(b, h->ts_ms);
	jb_cstr(b, ",\"values\":{");
	payload_health_counters(b, h, &first);
	jb_key(b, "poll_lag_p50_ms", &first);
	jb_i64(b, h->lag_p50_ms);
	jb_key(b, "poll_lag_p99_ms", &first);
	jb_i64(b, h->lag_p99_ms);
	jb_cstr(b, "}}");
	return tb_done(m);
}

int payload_thingsboard_command(struct payload_msg *m, const char *text, int64_t ts_ms,
				uint64_t row_seq)
{
	struct jbuf *b = &m->body;

	tb_begin(m, PTB_TOPIC_ME_TELEMETRY);
	jb_cstr(b, "{\"ts\":");
	jb_i64(b, ts_ms);
	jb_cstr(b, ",\"values\":{\"command\":{");
	jb_cstr(b, text);
	jb_cstr(b, "},\"sluice_seq\":");
	jb_u64(b, row_seq);
	jb_cstr(b, "}}");
	return tb_done(m);
}

/* ThingsBoard's topics are whole: no prefix, no gateway id in them. */
static int tb_topic(char *buf, size_t len, const char *prefix, const char *gateway,
		    const char *rel)
{
	int n = snprintf(buf, len, "%s", rel);

	(void)prefix;
	(void)gateway;
	return n < 0 || (size_t)n >= len ? -1 : 0;
}

const struct payload_format payload_thingsboard = {
	.name = "thingsboard",
	.health = tb_health,
	.topic = tb_topic,
};
