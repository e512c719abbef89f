/*
 * test_payload: the "sluice" format's exact bytes. Where docs/mqtt.md shows a message,
 * that message is the expected text (with the seq the envelope adds), so the schema's
 * examples and the code cannot drift apart; the other cases pin what the schema says in
 * words: every value kind, failed points, NaN and infinities, Chinese names, retained
 * or not, every topic.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mberr.h"
#include "payload.h"

#include "alert_fixture.h"

static const struct payload_format *fmt(void)
{
	const struct payload_format *f = payload_format_find("sluice");

	assert_non_null(f);
	return f;
}

static struct point_def pt(const char *name, enum pt_type type)
{
	struct point_def p = { .type = type, .bit = -1, .scale = 1.0 };

	snprintf(p.name, sizeof p.name, "%s", name);
	return p;
}

static struct device_cfg dev(const char *id, const char *name, struct point_def *pts, size_t n)
{
	struct device_cfg d = { .name = (char *)name, .points = pts, .npoints = n };

	snprintf(d.id, sizeof d.id, "%s", id);
	return d;
}

/* A row as published: the envelope around the body, with seq. */
static void assert_published(const struct payload_msg *m, uint64_t seq, const char *want)
{
	struct jbuf out;

	jb_init(&out);
	assert_int_equal(fmt()->envelope(&out, seq, jb_cstr_get((struct jbuf *)&m->body)), 0);
	assert_string_equal(jb_cstr_get(&out), want);
	jb_free(&out);
}

static void test_formats(void **state)
{
	(void)state;
	assert_non_null(payload_format_find(PAYLOAD_FORMAT_DEFAULT));
	assert_string_equal(payload_format_find("sluice")->name, "sluice");
	assert_null(payload_format_find("Sluice"));
	assert_null(payload_format_find(""));
}

/* docs/mqtt.md's second telemetry example: every point type of sluice-sim's device. */
static void test_reading_every_type(void **state)
{
	struct point_def pts[] = {
		pt("flag", PT_BOOL),    pt("door", PT_BOOL),     pt("i16", PT_INT16),
		pt("u16", PT_UINT16),   pt("i32", PT_INT32),     pt("u32", PT_UINT32),
		pt("i64", PT_INT64),    pt("u64", PT_UINT64),    pt("f32", PT_FLOAT32),
		pt("f64", PT_FLOAT64),  pt("scaled", PT_UINT16), pt("bit2", PT_BOOL),
		pt("bit9", PT_BOOL),    pt("label", PT_STRING),
	};
	struct device_cfg d = dev("all-types", NULL, pts, 14);
	struct reading *r = reading_new(0, 14, 0);
	struct payload_msg m;

	(void)state;
	r->ts_ms = 1795706907543;
	r->values[0] = (struct value){ .kind = VAL_BOOL, .v.b = false };
	r->values[1] = (struct value){ .kind = VAL_BOOL, .v.b = false };
	r->values[2] = (struct value){ .kind = VAL_INT, .v.i = 555 };
	r->values[3] = (struct value){ .kind = VAL_UINT, .v.u = 151 };
	r->values[4] = (struct value){ .kind = VAL_INT, .v.i = 685 };
	r->values[5] = (struct value){ .kind = VAL_UINT, .v.u = 345 };
	r->values[6] = (struct value){ .kind = VAL_INT, .v.i = 694 };
	r->values[7] = (struct value){ .kind = VAL_UINT, .v.u = 298 };
	r->values[8] = (struct value){ .kind = VAL_DOUBLE, .v.d = (double)15.711878f };
	r->values[9] = (struct value){ .kind = VAL_DOUBLE, .v.d = 0.0 };
	r->values[10] = (struct value){ .kind = VAL_DOUBLE, .v.d = 0.0 };
	r->values[11] = (struct value){ .kind = VAL_BOOL, .v.b = false };
	r->values[12] = (struct value){ .kind = VAL_BOOL, .v.b = false };
	r->values[13] = (struct value){ .kind = VAL_STRING, .s = "SLUICE-SIM" };
	payload_msg_init(&m);
	assert_int_equal(fmt()->reading(&m, &d, r), 0);
	assert_string_equal(m.topic, "telemetry/all-types");
	assert_false(m.retain);
	assert_published(&m, 4,
			 "{\"seq\":4,\"ts\":1795706907543,\"values\":{\"flag\":false,\"door\":false,"
			 "\"i16\":555,\"u16\":151,\"i32\":685,\"u32\":345,\"i64\":694,\"u64\":298,"
			 "\"f32\":15.711878,\"f64\":0,\"scaled\":0,\"bit2\":false,\"bit9\":false,"
			 "\"label\":\"SLUICE-SIM\"}}");
	payload_msg_free(&m);
	reading_free(r);
}

/* docs/mqtt.md: a point that failed is left out of values and named in errors. */
static void test_reading_failed_point(void **state)
{
	struct point_def pts[] = { pt("flow", PT_FLOAT32), pt("total", PT_FLOAT64) };
	struct device_cfg d = dev("dma3-inlet", "三号分区 进水流量计", pts, 2);
	struct reading *r = reading_new(0, 2, 0);
	struct payload_msg m;

	(void)state;
	r->ts_ms = 1795706960451;
	r->values[0] = (struct value){ .kind = VAL_DOUBLE, .v.d = (double)26.867098f };
	r->values[1] = (struct value){ .kind = VAL_NONE, .err = MBE_EXC_BASE + 2 };
	payload_msg_init(&m);
	assert_int_equal(fmt()->reading(&m, &d, r), 0);
	assert_string_equal(m.topic, "telemetry/dma3-inlet");
	assert_published(&m, 2,
			 "{\"seq\":2,\"ts\":1795706960451,\"values\":{\"flow\":26.867098},"
			 "\"errors\":{\"total\":\"illegal data address\"}}");
	payload_msg_free(&m);
	reading_free(r);
}

/* Extremes: exact 64-bit integers, NaN and infinities as null, float32 widened, a
 * string that needs escapes, a Chinese point name, every point failed, and a value past
 * the device's points (a reading cut to the config it was taken under). */
static void test_reading_extremes(void **state)
{
	struct point_def pts[] = { pt("i64", PT_INT64),  pt("u64", PT_UINT64), pt("nan", PT_FLOAT64),
				   pt("inf", PT_FLOAT32), pt("ninf", PT_FLOAT64), pt("流量", PT_FLOAT64),
				   pt("s", PT_STRING) };
	struct device_cfg d = dev("x", NULL, pts, 7);
	struct reading *r = reading_new(0, 8, 0);
	struct payload_msg m;

	(void)state;
	r->ts_ms = 0;
	r->values[0] = (struct value){ .kind = VAL_INT, .v.i = INT64_MIN };
	r->values[1] = (struct value){ .kind = VAL_UINT, .v.u = UINT64_MAX };
	r->values[2] = (struct value){ .kind = VAL_DOUBLE, .v.d = NAN };
	r->values[3] = (struct value){ .kind = VAL_DOUBLE, .v.d = INFINITY };
	r->values[4] = (struct value){ .kind = VAL_DOUBLE, .v.d = -INFINITY };
	r->values[5] = (struct value){ .kind = VAL_DOUBLE, .v.d = 0.1 };
	r->values[6] = (struct value){ .kind = VAL_STRING, .s = "say \"hi\"\n" };
	r->values[7] = (struct value){ .kind = VAL_INT, .v.i = 7 }; /* no point: not written */
	payload_msg_init(&m);
	assert_int_equal(fmt()->reading(&m, &d, r), 0);
	assert_string_equal(jb_cstr_get(&m.body),
			    "\"ts\":0,\"values\":{\"i64\":-9223372036854775808,"
			    "\"u64\":18446744073709551615,\"nan\":null,\"inf\":null,\"ninf\":null,"
			    "\"流量\":0.1,\"s\":\"say \\\"hi\\\"\\n\"}");

	/* all failed: values is empty, errors names each with its stable text */
	for (uint16_t i = 0; i < 7; i++)
		r->values[i] = (struct value){ .kind = VAL_NONE, .err = MBE_TIMEOUT };
	r->values[2].err = MBE_BAD_CRC;
	r->values[5].err = MBE_EXC_BASE + 0x20;
	r->values[6].err = MBE_NOT_IMPL;
	r->nvalues = 7;
	r->ts_ms = 1;
	assert_int_equal(fmt()->reading(&m, &d, r), 0);
	assert_string_equal(jb_cstr_get(&m.body),
			    "\"ts\":1,\"values\":{},\"errors\":{\"i64\":\"timeout\",\"u64\":\"timeout\","
			    "\"nan\":\"CRC error\",\"inf\":\"timeout\",\"ninf\":\"timeout\","
			    "\"流量\":\"exception 32\",\"s\":\"not implemented\"}");
	payload_msg_free(&m);
	reading_free(r);
}

/* docs/mqtt.md's device example; offline with its last error; no name. */
static void test_device_state(void **state)
{
	struct device_cfg named = dev("dma3-inlet", "三号分区 进水流量计", NULL, 0);
	struct device_cfg bare = dev("old-meter", NULL, NULL, 0);
	struct payload_msg m;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(fmt()->device_state(&m, &named, true, 1795706907307, 0), 0);
	assert_string_equal(m.topic, "device/dma3-inlet");
	assert_true(m.retain);
	assert_published(&m, 1,
			 "{\"seq\":1,\"ts\":1795706907307,\"state\":\"online\","
			 "\"name\":\"三号分区 进水流量计\"}");

	assert_int_equal(fmt()->device_state(&m, &bare, false, 1795706910000, MBE_CONNECT), 0);
	assert_string_equal(m.topic, "device/old-meter");
	assert_true(m.retain);
	assert_string_equal(jb_cstr_get(&m.body),
			    "\"ts\":1795706910000,\"state\":\"offline\","
			    "\"last_error\":\"connection failed\"");

	/* online again after failures: the last error is still said */
	assert_int_equal(fmt()->device_state(&m, &named, true, 5, MBE_TIMEOUT), 0);
	assert_string_equal(jb_cstr_get(&m.body),
			    "\"ts\":5,\"state\":\"online\",\"name\":\"三号分区 进水流量计\","
			    "\"last_error\":\"timeout\"");
	payload_msg_free(&m);
}

static struct alert_transition transition(const char *rule, const char *check, int state,
					  int sev, int64_t ts, double value, double threshold,
					  const char *unit, const char *message)
{
	struct alert_transition t = { .state = state, .severity = sev, .ts_ms = ts,
				      .value = value, .threshold = threshold };

	snprintf(t.rule, sizeof t.rule, "%s", rule);
	snprintf(t.check, sizeof t.check, "%s", check);
	snprintf(t.unit, sizeof t.unit, "%s", unit);
	snprintf(t.message, sizeof t.message, "%s", message);
	return t;
}

/* docs/mqtt.md's alert examples: one with unit and rule name, one with neither. */
static void test_alert_documented(void **state)
{
	struct alert_transition t = transition(
		"xinhua-waterlogging", "level", ALERT_FIRING, SEV_BLUE, 1795708220741, 0.135, 0.1,
		"m", "water 0.14 m above the road at 新华路下穿道 积水点 (blue ≥ 0.10 m)");
	struct alert_transition comms = transition(
		"comms-old-meter", "offline", ALERT_FIRING, SEV_YELLOW, 1795708222241, 3, 3, "",
		"old-meter (老城区 旧水表) offline: 3 polls in a row failed");
	struct payload_msg m;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(fmt()->alert(&m, &t, "新华路下穿道 积水", NULL), 0);
	assert_string_equal(m.topic, "alert/xinhua-waterlogging/level");
	assert_true(m.retain);
	assert_published(&m, 22,
			 "{\"seq\":22,\"ts\":1795708220741,\"rule\":\"xinhua-waterlogging\","
			 "\"check\":\"level\",\"state\":\"firing\",\"severity\":\"blue\","
			 "\"value\":0.135,\"threshold\":0.1,\"unit\":\"m\",\"message\":\"water 0.14 m "
			 "above the road at 新华路下穿道 积水点 (blue ≥ 0.10 m)\","
			 "\"name\":\"新华路下穿道 积水\"}");
	assert_int_equal(fmt()->alert(&m, &comms, NULL, NULL), 0);
	assert_string_equal(m.topic, "alert/comms-old-meter/offline");
	assert_published(&m, 18,
			 "{\"seq\":18,\"ts\":1795708222241,\"rule\":\"comms-old-meter\","
			 "\"check\":\"offline\",\"state\":\"firing\",\"severity\":\"yellow\","
			 "\"value\":3,\"threshold\":3,\"message\":\"old-meter (老城区 旧水表) "
			 "offline: 3 polls in a row failed\"}");
	payload_msg_free(&m);
}

/* Resolved, with no severity and no measurement; and sent again because its action's
 * write failed. */
static void test_alert_resolved_and_failed_write(void **state)
{
	struct alert_transition t = transition("pump", "above", ALERT_RESOLVED, SEV_NONE, 10, NAN,
					       INFINITY, "", "back to normal");
	struct alert_transition sign = transition("xinhua-waterlogging", "level", ALERT_FIRING,
						  SEV_RED, 20, 0.52, 0.5, "m", "deep");
	struct payload_write_failure f = { .device = "warn-sign", .point = "显示", .value = 1,
					   .err = MBE_EXC_BASE + 4 };
	struct payload_msg m;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(fmt()->alert(&m, &t, NULL, NULL), 0);
	assert_string_equal(jb_cstr_get(&m.body),
			    "\"ts\":10,\"rule\":\"pump\",\"check\":\"above\",\"state\":\"resolved\","
			    "\"severity\":null,\"value\":null,\"threshold\":null,"
			    "\"message\":\"back to normal\"");
	assert_int_equal(fmt()->alert(&m, &sign, "积水", &f), 0);
	assert_string_equal(m.topic, "alert/xinhua-waterlogging/level");
	assert_true(m.retain);
	assert_string_equal(jb_cstr_get(&m.body),
			    "\"ts\":20,\"rule\":\"xinhua-waterlogging\",\"check\":\"level\","
			    "\"state\":\"firing\",\"severity\":\"red\",\"value\":0.52,"
			    "\"threshold\":0.5,\"unit\":\"m\",\"message\":\"deep\",\"name\":\"积水\","
			    "\"action\":{\"write\":\"warn-sign.显示\",\"value\":1,"
			    "\"error\":\"server device failure\"}");
	payload_msg_free(&m);
}

/* The text a member of a message has: what follows "name": up to the next , or }. */
static void member(const char *body, const char *name, char *out, size_t len)
{
	char key[80];
	const char *p;
	size_t n;

	snprintf(key, sizeof key, "\"%s\":", name);
	p = strstr(body, key);
	assert_non_null(p);
	p += strlen(key);
	n = strcspn(p, ",}");
	assert_true(n < len);
	memcpy(out, p, n);
	out[n] = '\0';
}

/*
 * An alert's value is written as telemetry writes the point it came from: a float32
 * point's 85.3 is 85.3 in both, not the widened double's 85.30000305175781 in the alert.
 * The limit is the config's and stays a double; a scaled integer point, a double.
 */
static void test_alert_value_as_telemetry(void **state)
{
	struct config *cfg = fx_load("gateway: { id: gw, timezone: UTC }\n"
				     "uplink: { host: 127.0.0.1 }\n"
				     "buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
				     "devices:\n"
				     "  - id: boiler\n"
				     "    bus: b\n"
				     "    points:\n"
				     "      temp: { table: input, address: 0, type: float32, unit: °C }\n"
				     "      level: { table: input, address: 2, type: uint16, "
				     "scale: 0.001, unit: m }\n"
				     "alerts:\n"
				     "  - { id: hot, kind: threshold, point: boiler.temp, "
				     "above: 85.123456789 }\n"
				     "  - { id: deep, kind: threshold, point: boiler.level, above: 0.1 }\n");
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	struct reading *r = reading_new(0, 2, 0);
	struct payload_msg m, tm;
	char tv[64], av[64];

	(void)state;
	payload_msg_init(&m);
	payload_msg_init(&tm);
	r->ts_ms = 1000;
	r->values[0] = (struct value){ .kind = VAL_DOUBLE, .v.d = (double)85.3f };
	r->values[1] = (struct value){ .kind = VAL_DOUBLE, .v.d = 135 * 0.001 };
	assert_int_equal(alert_feed(e, 0, r->ts_ms, r->values, 2, &o), 0);
	assert_int_equal(o.nt, 2);
	assert_int_equal(fmt()->reading(&tm, &cfg->devices[0], r), 0);
	assert_string_equal(jb_cstr_get(&tm.body),
			    "\"ts\":1000,\"values\":{\"temp\":85.3,\"level\":0.135}");

	assert_string_equal(o.t[0].rule, "hot");
	assert_int_equal(fmt()->alert(&m, &o.t[0], NULL, NULL), 0);
	member(jb_cstr_get(&m.body), "value", av, sizeof av);
	member(jb_cstr_get(&tm.body), "temp", tv, sizeof tv);
	assert_string_equal(av, tv);
	member(jb_cstr_get(&m.body), "threshold", av, sizeof av);
	assert_string_equal(av, "85.123456789");
	assert_string_equal(jb_cstr_get(&m.body),
			    "\"ts\":1000,\"rule\":\"hot\",\"check\":\"above\","
			    "\"state\":\"firing\",\"severity\":\"yellow\",\"value\":85.3,"
			    "\"threshold\":85.123456789,\"unit\":\"°C\",\"message\":\"temp 85.3 °C "
			    "above 85.1235 °C at boiler\"");

	assert_string_equal(o.t[1].rule, "deep");
	assert_int_equal(fmt()->alert(&m, &o.t[1], NULL, NULL), 0);
	member(jb_cstr_get(&m.body), "value", av, sizeof av);
	member(jb_cstr_get(&tm.body), "level", tv, sizeof tv);
	assert_string_equal(av, tv);

	/* a value marked float32 by the engine, and a learnt threshold, as float32 */
	o.t[1].value = (double)16.958353f;
	o.t[1].threshold = (double)0.1f;
	o.t[1].threshold_f32 = true;
	assert_int_equal(fmt()->alert(&m, &o.t[1], NULL, NULL), 0);
	member(jb_cstr_get(&m.body), "value", av, sizeof av);
	assert_string_equal(av, "16.95835304260254");
	member(jb_cstr_get(&m.body), "threshold", av, sizeof av);
	assert_string_equal(av, "0.1");
	o.t[1].value_f32 = true;
	assert_int_equal(fmt()->alert(&m, &o.t[1], NULL, NULL), 0);
	member(jb_cstr_get(&m.body), "value", av, sizeof av);
	assert_string_equal(av, "16.958353");

	payload_msg_free(&m);
	payload_msg_free(&tm);
	reading_free(r);
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void test_envelope(void **state)
{
	struct jbuf out;

	(void)state;
	jb_init(&out);
	assert_int_equal(fmt()->envelope(&out, UINT64_MAX, "\"ts\":1"), 0);
	assert_string_equal(jb_cstr_get(&out), "{\"seq\":18446744073709551615,\"ts\":1}");
	/* the buffer is reset, not appended to */
	assert_int_equal(fmt()->envelope(&out, 1, "\"a\":2"), 0);
	assert_string_equal(jb_cstr_get(&out), "{\"seq\":1,\"a\":2}");
	assert_int_equal(out.len, strlen("{\"seq\":1,\"a\":2}"));
	jb_free(&out);
}

/* docs/mqtt.md's status example; the clean stop's offline; no name; the will. */
static void test_status_and_will(void **state)
{
	struct payload_gateway g = { .id = "gw1", .name = "测试站 gw1", .version = "0.1.0",
				     .stream = "5f0c2a9e8d7b6a41" };
	struct payload_gateway bare = { .id = "gw2", .version = "1.2.3" };
	struct payload_msg m;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(fmt()->status(&m, &g, true, 1795706907307), 0);
	assert_string_equal(m.topic, "status");
	assert_true(m.retain);
	assert_string_equal(jb_cstr_get(&m.body),
			    "{\"state\":\"online\",\"ts\":1795706907307,\"gateway\":\"gw1\","
			    "\"name\":\"测试站 gw1\",\"version\":\"0.1.0\","
			    "\"stream\":\"5f0c2a9e8d7b6a41\"}");
	assert_int_equal(fmt()->status(&m, &bare, false, 42), 0);
	assert_string_equal(m.topic, "status");
	assert_string_equal(jb_cstr_get(&m.body),
			    "{\"state\":\"offline\",\"ts\":42,\"gateway\":\"gw2\",\"version\":\"1.2.3\"}");
	assert_int_equal(fmt()->will(&m, &g), 0);
	assert_string_equal(m.topic, "status");
	assert_true(m.retain);
	assert_string_equal(jb_cstr_get(&m.body), "{\"state\":\"offline\"}");
	payload_msg_free(&m);
}

/* docs/mqtt.md's health example (with held_rows and lost_at_stop, as listed); a device with
 * no state yet is left out; store_error only while the store fails. */
static void test_health(void **state)
{
	static const char *const ids[] = { "dma3-inlet",  "dma3-outlet", "xinhua-underpass",
					   "warn-sign",   "booster-pump", "old-meter", "never-polled" };
	struct device_cfg devs[7];
	struct dev_status ds[7] = {
		{ .ok = 5, .published = 1 }, { .ok = 5, .published = 1 }, { .ok = 5, .published = 1 },
		{ .ok = 2, .published = 1 }, { .ok = 2, .published = 1 },
		{ .failed = 4, .published = 0 }, { .published = -1 },
	};
	struct health h = {
		.ts_ms = 1795708228039, .uptime_s = 10, .polls_ok = 19, .polls_failed = 4,
		.db_bytes = 757848, .last_seq = 35, .stream = "5f0c2a9e8d7b6a41",
		.lag_p50_ms = 1, .lag_p99_ms = 512, .lag_polls = 23, .devices = devs, .dev = ds,
		.ndevices = 7,
	};
	struct payload_msg m;

	(void)state;
	for (size_t i = 0; i < 7; i++)
		devs[i] = dev(ids[i], NULL, NULL, 0);
	payload_msg_init(&m);
	assert_int_equal(fmt()->health(&m, &h), 0);
	assert_string_equal(m.topic, "health");
	assert_false(m.retain);
	assert_string_equal(
		jb_cstr_get(&m.body),
		"{\"ts\":1795708228039,\"uptime_s\":10,\"polls_ok\":19,\"polls_failed\":4,"
		"\"backlog_rows\":0,\"backlog_age_s\":0,\"dropped\":0,\"set_aside_rows\":0,"
		"\"not_stored\":0,"
		"\"held_rows\":0,\"lost_at_stop\":0,\"db_bytes\":757848,\"last_seq\":35,"
		"\"stream\":\"5f0c2a9e8d7b6a41\",\"skipped_seqs\":0,"
		"\"poll_lag_ms\":{\"p50\":1,\"p99\":512,\"polls\":23},\"devices\":{"
		"\"dma3-inlet\":{\"polls_ok\":5,\"polls_failed\":0,\"online\":true},"
		"\"dma3-outlet\":{\"polls_ok\":5,\"polls_failed\":0,\"online\":true},"
		"\"xinhua-underpass\":{\"polls_ok\":5,\"polls_failed\":0,\"online\":true},"
		"\"warn-sign\":{\"polls_ok\":2,\"polls_failed\":0,\"online\":true},"
		"\"booster-pump\":{\"polls_ok\":2,\"polls_failed\":0,\"online\":true},"
		"\"old-meter\":{\"polls_ok\":0,\"polls_failed\":4,\"online\":false}}}");

	/* the store failing, rows held, a backlog; the first device without state: the
	 * object starts without a comma */
	h.backlog_rows = 1200;
	h.backlog_age_s = 3600;
	h.dropped = 7;
	h.set_aside = 2;
	h.not_stored = 3;
	h.store_error = "database or disk is full";
	h.held_rows = 20000;
	h.lost_at_stop = 12;
	h.skipped = 40;
	h.stream = NULL;
	h.dev = ds + 5;
	h.devices = devs + 5;
	h.ndevices = 2;
	ds[6].published = 0;
	ds[5].published = -1;
	assert_int_equal(fmt()->health(&m, &h), 0);
	assert_string_equal(
		jb_cstr_get(&m.body),
		"{\"ts\":1795708228039,\"uptime_s\":10,\"polls_ok\":19,\"polls_failed\":4,"
		"\"backlog_rows\":1200,\"backlog_age_s\":3600,\"dropped\":7,\"set_aside_rows\":2,"
		"\"not_stored\":3,"
		"\"store_error\":\"database or disk is full\",\"held_rows\":20000,"
		"\"lost_at_stop\":12,\"db_bytes\":757848,\"last_seq\":35,"
		"\"skipped_seqs\":40,"
		"\"poll_lag_ms\":{\"p50\":1,\"p99\":512,\"polls\":23},\"devices\":{"
		"\"never-polled\":{\"polls_ok\":0,\"polls_failed\":0,\"online\":false}}}");

	/* no device with a state: an empty object */
	h.ndevices = 1;
	assert_int_equal(fmt()->health(&m, &h), 0);
	assert_non_null(strstr(jb_cstr_get(&m.body), ",\"devices\":{}}"));
	payload_msg_free(&m);
}

/* Every topic under <prefix>/<gateway>/; a buffer too small is refused, not cut. */
static void test_topics(void **state)
{
	struct point_def p = pt("v", PT_INT16);
	struct device_cfg d = dev("dma3-inlet", NULL, &p, 1);
	struct alert_transition t = transition("r", "c", ALERT_FIRING, SEV_RED, 0, 0, 0, "", "");
	char rule[ID_MAX], check[ALERT_CHECK_MAX], buf[64];
	struct payload_msg m;
	struct reading *r = reading_new(0, 1, 0);
	char *longest;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(fmt()->topic(buf, sizeof buf, "sluice", "gw1", "telemetry/dma3-inlet"), 0);
	assert_string_equal(buf, "sluice/gw1/telemetry/dma3-inlet");
	assert_int_equal(fmt()->topic(buf, sizeof buf, "city/water", "站1", "status"), 0);
	assert_string_equal(buf, "city/water/站1/status");
	assert_int_equal(fmt()->topic(buf, 18, "sluice", "gw1", "status"), 0);
	assert_string_equal(buf, "sluice/gw1/status");
	assert_int_equal(fmt()->topic(buf, 17, "sluice", "gw1", "status"), -1);

	/* the longest relative topic fits: alert/<longest rule id>/<longest check> */
	memset(rule, 'r', sizeof rule - 1);
	rule[sizeof rule - 1] = '\0';
	memset(check, 'c', sizeof check - 1);
	check[sizeof check - 1] = '\0';
	memcpy(t.rule, rule, sizeof rule);
	memcpy(t.check, check, sizeof check);
	assert_int_equal(fmt()->alert(&m, &t, NULL, NULL), 0);
	longest = malloc(sizeof rule + sizeof check + 8);
	assert_non_null(longest);
	snprintf(longest, sizeof rule + sizeof check + 8, "alert/%s/%s", rule, check);
	assert_string_equal(m.topic, longest);
	free(longest);

	r->values[0] = (struct value){ .kind = VAL_INT, .v.i = 1 };
	assert_int_equal(fmt()->reading(&m, &d, r), 0);
	assert_string_equal(m.topic, "telemetry/dma3-inlet");
	assert_int_equal(fmt()->device_state(&m, &d, true, 0, 0), 0);
	assert_string_equal(m.topic, "device/dma3-inlet");
	payload_msg_free(&m);
	reading_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_reading_every_type),
		cmocka_unit_test(test_reading_failed_point),
		cmocka_unit_test(test_reading_extremes),
		cmocka_unit_test(test_device_state),
		cmocka_unit_test(test_alert_documented),
		cmocka_unit_test(test_alert_resolved_and_failed_write),
		cmocka_unit_test(test_alert_value_as_telemetry),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_status_and_will),
		cmocka_unit_test(test_health),
		cmocka_unit_test(test_topics),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
