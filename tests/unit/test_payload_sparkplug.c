/*
 * test_payload_sparkplug: the "sparkplug" format's messages. Each is decoded twice: by
 * lib/spb (field by field: names, aliases, datatypes, values, flags) and by Google's
 * protobuf from the published schema (tests/integration/sparkplug.py decode, run here),
 * whose reading of the whole message is compared with what a Sparkplug host must see.
 * Then the topics, the aliases' layout, and the host's STATE messages.
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
#include <unistd.h>

#include "mberr.h"
#include "payload.h"
#include "payload_sparkplug.h"
#include "spb.h"

#define NOW 1795708228039ll
#define TS 1795706960451ll

static const struct payload_sparkplug_node NODE = { .group = "cq-water", .id = "gw-01",
						    .name = "丰都 一号", .version = "0.1.0",
						    .bdseq = 7 };

static struct point_def pt(const char *name, enum mb_table table, enum pt_type type,
			   const char *unit)
{
	struct point_def p = { .table = table, .type = type, .bit = -1, .scale = 1.0 };

	snprintf(p.name, sizeof p.name, "%s", name);
	snprintf(p.unit, sizeof p.unit, "%s", unit);
	return p;
}

/* The body decoded by lib/spb; fails the test when it does not decode. */
static struct spb_payload *decoded(const struct payload_msg *m)
{
	char err[200];
	struct spb_payload *p = spb_decode(m->body.p, m->body.len, err, sizeof err);

	if (!p)
		fail_msg("%s: %s", m->topic, err);
	return p;
}

/* The body as Google's protobuf reads it (sparkplug.py decode), as compact JSON. */
static char *py_decoded(const struct payload_msg *m)
{
	char path[] = "/tmp/sluice-spb-XXXXXX", cmd[256], *out = NULL;
	size_t cap = 0, len = 0;
	int fd = mkstemp(path);
	FILE *f;

	assert_true(fd >= 0);
	assert_int_equal(write(fd, m->body.p, m->body.len), (ssize_t)m->body.len);
	close(fd);
	snprintf(cmd, sizeof cmd, "python3 tests/integration/sparkplug.py decode < %s", path);
	f = popen(cmd, "r");
	assert_non_null(f);
	for (;;) {
		size_t n;
		if (len + 4096 > cap) {
			cap = cap * 2 + 8192;
			assert_non_null(out = realloc(out, cap));
		}
		if (!(n = fread(out + len, 1, cap - len - 1, f)))
			break;
		len += n;
	}
	out[len] = '\0';
	assert_int_equal(pclose(f), 0);
	unlink(path);
	while (len && out[len - 1] == '\n')
		out[--len] = '\0';
	return out;
}

static void assert_py(const struct payload_msg *m, const char *want)
{
	char *got = py_decoded(m);

	if (strcmp(got, want) != 0)
		fail_msg("protobuf decodes\n  %s\nexpected\n  %s", got, want);
	free(got);
}

static const struct spb_metric *metric(const struct spb_payload *p, size_t i)
{
	assert_true(i < p->nmetrics);
	return &p->metrics[i];
}

/* ---- topics ------------------------------------------------------------------------ */

static void test_topics(void **state)
{
	const struct payload_format *f = payload_format_find("sparkplug");
	char buf[128], small[30];

	(void)state;
	assert_non_null(f);
	assert_string_equal(f->name, "sparkplug");
	assert_int_equal(f->topic(buf, sizeof buf, "cq-water", "gw-01", "NBIRTH"), 0);
	assert_string_equal(buf, "spBv1.0/cq-water/NBIRTH/gw-01");
	assert_int_equal(f->topic(buf, sizeof buf, "cq-water", "gw-01", "DDATA/dma3-inlet"), 0);
	assert_string_equal(buf, "spBv1.0/cq-water/DDATA/gw-01/dma3-inlet");
	assert_int_equal(f->topic(small, sizeof small, "cq-water", "gw-01", "DDATA/dma3-inlet"), -1);
	/* what the table leaves to payload_sparkplug.h, and what Sparkplug has not */
	assert_null(f->status);
	assert_null(f->reading);
	assert_null(f->envelope);
	assert_non_null(f->will);
	assert_null(payload_format_find("sparkplugb"));
}

static void test_aliases(void **state)
{
	size_t d, p;

	(void)state;
	assert_int_equal(payload_sparkplug_point_alias(0, 0), 65537);
	assert_int_equal(payload_sparkplug_device_seq_alias(0), 65536);
	assert_int_equal(payload_sparkplug_point_alias(4, 4999), 5 * 65536 + 5000);
	assert_int_equal(payload_sparkplug_alias_point(5 * 65536 + 5000, &d, &p), 0);
	assert_int_equal(d, 4);
	assert_int_equal(p, 4999);
	assert_int_equal(payload_sparkplug_alias_point(65536, &d, &p), -1);   /* a sluice/seq */
	assert_int_equal(payload_sparkplug_alias_point(PSP_ALIAS_REBIRTH, &d, &p), -1);
	assert_int_equal(payload_sparkplug_alias_point(PSP_ALIAS_ALERTS + 8, &d, &p), -1);
	/* the last alert check's fields stay below the first device's */
	assert_true(PSP_ALIAS_ALERTS + PSP_ALERT_FIELDS * PSP_ALERTS_MAX <= 65536);
}

static void test_datatypes(void **state)
{
	struct point_def p = pt("x", MB_HOLDING, PT_INT16, "");

	(void)state;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_INT16);
	p.scale = 0.1;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_DOUBLE);
	p.scale = 1.0;
	p.offset = -40;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_DOUBLE);
	p.offset = 0;
	p.type = PT_UINT32;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_UINT32);
	p.type = PT_INT64;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_INT64);
	p.type = PT_UINT64;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_UINT64);
	p.type = PT_FLOAT32;
	p.scale = 10;   /* float32 stays Float, as the JSON format writes it as a float32 */
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_FLOAT);
	p.type = PT_FLOAT64;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_DOUBLE);
	p.type = PT_BOOL;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_BOOLEAN);
	p.type = PT_STRING;
	assert_int_equal(payload_sparkplug_datatype(&p), SPB_STRING);
}

/* ---- the node ---------------------------------------------------------------------- */

static struct alert_transition alert(const char *rule, const char *check, int st)
{
	struct alert_transition t = { .state = st, .severity = SEV_ORANGE, .ts_ms = TS,
				      .value = 0.342, .threshold = 0.27, .value_f32 = true };

	snprintf(t.rule, sizeof t.rule, "%s", rule);
	snprintf(t.check, sizeof t.check, "%s", check);
	snprintf(t.unit, sizeof t.unit, "m");
	snprintf(t.message, sizeof t.message, "water 0.34 m above the road");
	return t;
}

static void test_nbirth(void **state)
{
	struct health h = { .ts_ms = NOW, .uptime_s = 10, .polls_ok = 19, .polls_failed = 4,
			    .backlog_age_s = -1, .last_seq = 35, .lag_p99_ms = 512 };
	struct alert_transition al[2] = { alert("xinhua", "level", ALERT_FIRING),
					  alert("comms-old-meter", "offline", ALERT_OK) };
	struct payload_msg m;
	struct spb_payload *p;
	const struct spb_metric *x;
	char *py;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(payload_sparkplug_nbirth(&m, &NODE, &h, al, 2, 0, NOW), 0);
	assert_string_equal(m.topic, "NBIRTH");
	assert_false(m.retain);
	p = decoded(&m);
	assert_true(p->has_seq && p->seq == 0);
	assert_true(p->has_timestamp && p->timestamp == NOW);
	assert_int_equal(p->nmetrics, 5 + 15 + 2 * 5 + 1);
	x = metric(p, 0);
	assert_string_equal(x->name, "bdSeq");
	assert_int_equal(x->alias, PSP_ALIAS_BDSEQ);
	assert_int_equal(x->datatype, SPB_UINT64);
	assert_int_equal(x->value.kind, SPB_V_LONG);
	assert_int_equal(x->value.v.l, 7);
	assert_true(x->has_timestamp && x->timestamp == NOW);
	x = metric(p, 1);
	assert_string_equal(x->name, "Node Control/Rebirth");
	assert_int_equal(x->datatype, SPB_BOOLEAN);
	assert_int_equal(x->value.kind, SPB_V_BOOL);
	assert_false(x->value.v.b);
	x = metric(p, 2);
	assert_string_equal(x->name, "sluice/seq");
	assert_true(x->is_null);
	assert_int_equal(x->value.kind, SPB_V_NONE);
	assert_string_equal(metric(p, 3)->value.s, "0.1.0");
	assert_string_equal(metric(p, 4)->value.s, "丰都 一号");
	x = metric(p, 5);
	assert_string_equal(x->name, "health/uptime_s");
	assert_int_equal(x->alias, PSP_ALIAS_HEALTH);
	assert_int_equal(x->datatype, SPB_INT64);
	assert_int_equal(x->value.v.l, 10);
	x = metric(p, 9);
	assert_string_equal(x->name, "health/backlog_age_s");
	assert_int_equal((int64_t)x->value.v.l, -1);   /* Int64: two's complement */
	x = metric(p, 16);
	assert_string_equal(x->name, "health/last_seq");
	assert_int_equal(x->datatype, SPB_UINT64);
	assert_int_equal(x->value.v.l, 35);
	x = metric(p, 19);
	assert_string_equal(x->name, "health/store_error");
	assert_true(x->is_null);
	/* the first alert check: its five metrics from alias 64 */
	x = metric(p, 20);
	assert_string_equal(x->name, "alert/xinhua/level/state");
	assert_int_equal(x->alias, 64);
	assert_string_equal(x->value.s, "firing");
	assert_int_equal(x->timestamp, TS);
	assert_string_equal(metric(p, 21)->value.s, "orange");
	x = metric(p, 22);
	assert_string_equal(x->name, "alert/xinhua/level/value");
	assert_int_equal(x->datatype, SPB_DOUBLE);
	assert_true(x->value.v.d == 0.342);   /* the float32's shortest decimal, not 0.34200000762 */
	assert_int_equal(x->nprops, 1);
	assert_string_equal(x->props[0].key, "engUnit");
	assert_string_equal(x->props[0].value.s, "m");
	assert_true(metric(p, 23)->value.v.d == 0.27);
	assert_string_equal(metric(p, 24)->value.s, "water 0.34 m above the road");
	/* the second: no transition yet */
	x = metric(p, 25);
	assert_string_equal(x->name, "alert/comms-old-meter/offline/state");
	assert_int_equal(x->alias, 64 + 8);
	assert_string_equal(x->value.s, "ok");
	assert_int_equal(x->timestamp, NOW);
	for (size_t i = 26; i < 30; i++)
		assert_true(metric(p, i)->is_null);
	/* last, the commands' events: null until one */
	x = metric(p, 30);
	assert_string_equal(x->name, "sluice/command");
	assert_int_equal(x->alias, PSP_ALIAS_COMMAND);
	assert_int_equal(x->datatype, SPB_STRING);
	assert_true(x->is_null);
	spb_free(p);

	/* as a host reads it */
	py = py_decoded(&m);
	assert_non_null(strstr(py, "\"seq\":0,\"timestamp\":1795708228039}"));
	assert_non_null(strstr(py, "{\"alias\":1,\"datatype\":8,\"name\":\"bdSeq\",\"timestamp\":"
				   "1795708228039,\"value\":7}"));
	assert_non_null(strstr(py, "{\"alias\":2,\"datatype\":11,\"name\":\"Node Control/Rebirth\","
				   "\"timestamp\":1795708228039,\"value\":false}"));
	assert_non_null(strstr(py, "{\"alias\":3,\"datatype\":8,\"is_null\":true,\"name\":"
				   "\"sluice/seq\",\"timestamp\":1795708228039}"));
	assert_non_null(strstr(py, "{\"alias\":66,\"datatype\":10,\"name\":\"alert/xinhua/level/"
				   "value\",\"properties\":{\"engUnit\":\"m\"},\"timestamp\":"
				   "1795706960451,\"value\":0.342}"));
	assert_non_null(strstr(py, "\"name\":\"sluice/name\",\"timestamp\":1795708228039,"
				   "\"value\":\"丰都 一号\"}"));
	free(py);

	/* no health numbers: their metrics are declared, null */
	assert_int_equal(payload_sparkplug_nbirth(&m, &NODE, NULL, NULL, 0, 12, NOW), 0);
	p = decoded(&m);
	assert_int_equal(p->seq, 12);
	assert_int_equal(p->nmetrics, 21);
	assert_true(metric(p, 5)->is_null && metric(p, 19)->is_null);
	spb_free(p);
	/* more checks than have aliases */
	assert_int_equal(payload_sparkplug_nbirth(&m, &NODE, NULL, al, PSP_ALERTS_MAX + 1, 0, NOW),
			 -1);
	payload_msg_free(&m);
}

static void test_ndeath_is_the_will(void **state)
{
	const struct payload_format *f = payload_format_find("sparkplug");
	struct payload_gateway g = { .id = "gw-01", .version = "x", .bdseq = 255 };
	struct payload_msg m;
	struct spb_payload *p;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(f->will(&m, &g), 0);
	assert_string_equal(m.topic, "NDEATH");
	assert_false(m.retain);
	p = decoded(&m);
	assert_false(p->has_seq);          /* NDEATH carries no seq */
	assert_false(p->has_timestamp);    /* nor a time: it is set at CONNECT */
	assert_int_equal(p->nmetrics, 1);
	assert_string_equal(p->metrics[0].name, "bdSeq");
	assert_false(p->metrics[0].has_alias);
	assert_int_equal(p->metrics[0].datatype, SPB_UINT64);
	assert_int_equal(p->metrics[0].value.v.l, 255);
	spb_free(p);
	assert_py(&m, "{\"metrics\":[{\"datatype\":8,\"name\":\"bdSeq\",\"value\":255}]}");
	payload_msg_free(&m);
}

static void test_alert_and_health_ndata(void **state)
{
	struct alert_transition t = alert("xinhua", "level", ALERT_RESOLVED);
	struct health h = { .ts_ms = NOW, .polls_ok = 3, .store_error = "disk full" };
	struct payload_msg m;
	struct spb_payload *p;

	(void)state;
	payload_msg_init(&m);
	t.value = NAN;
	assert_int_equal(payload_sparkplug_alert(&m, &NODE, &t, 3, true, 42, 9, NOW), 0);
	assert_string_equal(m.topic, "NDATA");
	p = decoded(&m);
	assert_int_equal(p->seq, 9);
	assert_int_equal(p->nmetrics, 6);
	for (size_t i = 0; i < 6; i++) {
		assert_null(p->metrics[i].name);          /* DATA: aliases only */
		assert_false(p->metrics[i].has_datatype);
		assert_true(p->metrics[i].is_historical);
		assert_int_equal(p->metrics[i].timestamp, TS);
		assert_int_equal(p->metrics[i].nprops, 0);
	}
	assert_int_equal(p->metrics[0].alias, 64 + 3 * 8);
	assert_string_equal(p->metrics[0].value.s, "resolved");
	assert_string_equal(p->metrics[1].value.s, "orange");   /* the last it fired at */
	assert_true(p->metrics[2].is_null);                      /* NaN: null */
	assert_true(p->metrics[3].value.v.d == 0.27);
	assert_int_equal(p->metrics[5].alias, PSP_ALIAS_SEQ);
	assert_int_equal(p->metrics[5].value.v.l, 42);
	spb_free(p);
	assert_int_equal(payload_sparkplug_alert(&m, &NODE, &t, PSP_ALERTS_MAX, false, 1, 0, NOW),
			 -1);

	assert_int_equal(payload_sparkplug_health(&m, &NODE, &h, 200, NOW + 5), 0);
	assert_string_equal(m.topic, "NDATA");
	p = decoded(&m);
	assert_int_equal(p->seq, 200);
	assert_int_equal(p->timestamp, NOW + 5);
	assert_int_equal(p->nmetrics, 15);
	assert_int_equal(p->metrics[1].alias, PSP_ALIAS_HEALTH + 1);
	assert_int_equal(p->metrics[1].value.v.l, 3);
	assert_false(p->metrics[1].is_historical);
	assert_string_equal(p->metrics[14].value.s, "disk full");
	spb_free(p);
	payload_msg_free(&m);
}

/* A command's event: NDATA of sluice/command, the event as JSON, and sluice/seq. */
static void test_command_ndata(void **state)
{
	struct payload_msg m;
	struct spb_payload *p;
	char *py;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(payload_sparkplug_command(&m, &NODE, "\"ts\":1,\"ok\":true", TS, false, 17,
						   4, NOW), 0);
	assert_string_equal(m.topic, "NDATA");
	p = decoded(&m);
	assert_int_equal(p->seq, 4);
	assert_int_equal(p->nmetrics, 2);
	assert_null(p->metrics[0].name);
	assert_int_equal(p->metrics[0].alias, PSP_ALIAS_COMMAND);
	assert_int_equal(p->metrics[0].timestamp, TS);
	assert_string_equal(p->metrics[0].value.s, "{\"ts\":1,\"ok\":true}");
	assert_int_equal(p->metrics[1].alias, PSP_ALIAS_SEQ);
	assert_int_equal(p->metrics[1].value.v.l, 17);
	spb_free(p);
	py = py_decoded(&m);
	assert_non_null(strstr(py, "{\"alias\":6,\"timestamp\":1795706960451,\"value\":"
				   "\"{\\\"ts\\\":1,\\\"ok\\\":true}\"}"));
	free(py);
	payload_msg_free(&m);
}

/* ---- devices ------------------------------------------------------------------------- */

static struct point_def pts[11];
static struct device_cfg dev;

static void make_device(void)
{
	pts[0] = pt("run", MB_COIL, PT_BOOL, "");
	pts[1] = pt("temp", MB_HOLDING, PT_INT16, "°C");
	pts[2] = pt("speed", MB_HOLDING, PT_UINT16, "rpm");
	pts[3] = pt("i32", MB_HOLDING, PT_INT32, "");
	pts[4] = pt("u32", MB_HOLDING, PT_UINT32, "");
	pts[5] = pt("total", MB_HOLDING, PT_INT64, "m3");
	pts[6] = pt("u64", MB_HOLDING, PT_UINT64, "");
	pts[7] = pt("flow", MB_INPUT, PT_FLOAT32, "m3/h");
	pts[8] = pt("f64", MB_INPUT, PT_FLOAT64, "");
	pts[9] = pt("level", MB_INPUT, PT_UINT16, "m");
	pts[9].scale = 0.01;
	pts[10] = pt("label", MB_HOLDING, PT_STRING, "");
	memset(&dev, 0, sizeof dev);
	snprintf(dev.id, sizeof dev.id, "dma3-inlet");
	dev.points = pts;
	dev.npoints = 11;
}

static void make_values(struct value *v)
{
	memset(v, 0, 11 * sizeof *v);
	v[0] = (struct value){ .kind = VAL_BOOL, .v.b = true };
	v[1] = (struct value){ .kind = VAL_INT, .v.i = -2 };
	v[2] = (struct value){ .kind = VAL_UINT, .v.u = 1450 };
	v[3] = (struct value){ .kind = VAL_INT, .v.i = INT32_MIN };
	v[4] = (struct value){ .kind = VAL_UINT, .v.u = UINT32_MAX };
	v[5] = (struct value){ .kind = VAL_INT, .v.i = -5 };
	v[6] = (struct value){ .kind = VAL_UINT, .v.u = UINT64_MAX };
	v[7] = (struct value){ .kind = VAL_DOUBLE, .v.d = 26.5 };
	v[8] = (struct value){ .kind = VAL_DOUBLE, .v.d = 0.1 };
	v[9] = (struct value){ .kind = VAL_DOUBLE, .v.d = 1.25 };
	v[10] = (struct value){ .kind = VAL_STRING, .s = "泵\xff" };
}

static void test_dbirth(void **state)
{
	struct value v[11];
	struct payload_msg m;
	struct spb_payload *p;
	const struct spb_metric *x;
	static const uint32_t types[11] = { SPB_BOOLEAN, SPB_INT16, SPB_UINT16, SPB_INT32,
					    SPB_UINT32, SPB_INT64, SPB_UINT64, SPB_FLOAT,
					    SPB_DOUBLE, SPB_DOUBLE, SPB_STRING };

	(void)state;
	make_device();
	make_values(v);
	payload_msg_init(&m);
	assert_int_equal(payload_sparkplug_dbirth(&m, &NODE, &dev, 2, v, 11, TS, 17, 1, NOW), 0);
	assert_string_equal(m.topic, "DBIRTH/dma3-inlet");
	p = decoded(&m);
	assert_int_equal(p->seq, 1);
	assert_int_equal(p->timestamp, NOW);
	assert_int_equal(p->nmetrics, 12);
	x = metric(p, 0);
	assert_string_equal(x->name, "sluice/seq");
	assert_int_equal(x->alias, 3 * 65536);
	assert_int_equal(x->value.v.l, 17);
	for (size_t i = 0; i < 11; i++) {
		x = metric(p, i + 1);
		assert_string_equal(x->name, pts[i].name);
		assert_int_equal(x->alias, 3 * 65536 + 1 + i);
		assert_true(x->has_datatype);
		assert_int_equal(x->datatype, types[i]);
		assert_int_equal(x->timestamp, TS);
		assert_false(x->is_null);
		assert_int_equal(x->nprops, pts[i].unit[0] ? 1 : 0);
		if (pts[i].unit[0]) {
			assert_string_equal(x->props[0].key, "engUnit");
			assert_int_equal(x->props[0].type, SPB_STRING);
			assert_string_equal(x->props[0].value.s, pts[i].unit);
		}
	}
	assert_true(metric(p, 1)->value.v.b);
	assert_int_equal((int32_t)metric(p, 2)->value.v.i, -2);
	assert_int_equal(metric(p, 3)->value.v.i, 1450);
	assert_int_equal((int32_t)metric(p, 4)->value.v.i, INT32_MIN);
	assert_int_equal(metric(p, 5)->value.v.i, UINT32_MAX);
	assert_int_equal((int64_t)metric(p, 6)->value.v.l, -5);
	assert_true(metric(p, 7)->value.v.l == UINT64_MAX);
	assert_int_equal(metric(p, 8)->value.kind, SPB_V_FLOAT);
	assert_true(metric(p, 8)->value.v.f == 26.5f);
	assert_true(metric(p, 9)->value.v.d == 0.1);
	assert_true(metric(p, 10)->value.v.d == 1.25);
	assert_string_equal(metric(p, 11)->value.s, "泵\xEF\xBF\xBD");   /* valid UTF-8 */
	spb_free(p);
	assert_py(&m,
		  "{\"metrics\":["
		  "{\"alias\":196608,\"datatype\":8,\"name\":\"sluice/seq\",\"timestamp\":1795706960451,\"value\":17},"
		  "{\"alias\":196609,\"datatype\":11,\"name\":\"run\",\"timestamp\":1795706960451,\"value\":true},"
		  "{\"alias\":196610,\"datatype\":2,\"name\":\"temp\",\"properties\":{\"engUnit\":\"°C\"},\"timestamp\":1795706960451,\"value\":4294967294},"
		  "{\"alias\":196611,\"datatype\":6,\"name\":\"speed\",\"properties\":{\"engUnit\":\"rpm\"},\"timestamp\":1795706960451,\"value\":1450},"
		  "{\"alias\":196612,\"datatype\":3,\"name\":\"i32\",\"timestamp\":1795706960451,\"value\":2147483648},"
		  "{\"alias\":196613,\"datatype\":7,\"name\":\"u32\",\"timestamp\":1795706960451,\"value\":4294967295},"
		  "{\"alias\":196614,\"datatype\":4,\"name\":\"total\",\"properties\":{\"engUnit\":\"m3\"},\"timestamp\":1795706960451,\"value\":18446744073709551611},"
		  "{\"alias\":196615,\"datatype\":8,\"name\":\"u64\",\"timestamp\":1795706960451,\"value\":18446744073709551615},"
		  "{\"alias\":196616,\"datatype\":9,\"name\":\"flow\",\"properties\":{\"engUnit\":\"m3/h\"},\"timestamp\":1795706960451,\"value\":26.5},"
		  "{\"alias\":196617,\"datatype\":10,\"name\":\"f64\",\"timestamp\":1795706960451,\"value\":0.1},"
		  "{\"alias\":196618,\"datatype\":10,\"name\":\"level\",\"properties\":{\"engUnit\":\"m\"},\"timestamp\":1795706960451,\"value\":1.25},"
		  "{\"alias\":196619,\"datatype\":12,\"name\":\"label\",\"timestamp\":1795706960451,\"value\":\"泵\xEF\xBF\xBD\"}"
		  "],\"seq\":1,\"timestamp\":1795708228039}");

	/* before the first poll: every value null, sluice/seq too */
	assert_int_equal(payload_sparkplug_dbirth(&m, &NODE, &dev, 0, NULL, 0, NOW, 0, 5, NOW), 0);
	p = decoded(&m);
	for (size_t i = 0; i < 12; i++) {
		assert_true(metric(p, i)->is_null);
		assert_int_equal(metric(p, i)->value.kind, SPB_V_NONE);
	}
	assert_int_equal(metric(p, 1)->alias, 65537);
	spb_free(p);
	payload_msg_free(&m);
}

static void test_ddata(void **state)
{
	struct value v[11];
	struct payload_msg m;
	struct spb_payload *p;
	const struct spb_metric *x;
	size_t before;

	(void)state;
	make_device();
	make_values(v);
	v[2] = (struct value){ .kind = VAL_NONE, .err = MBE_TIMEOUT };
	payload_msg_init(&m);
	assert_int_equal(payload_sparkplug_ddata(&m, &NODE, &dev, 0, v, 11, TS, false, 42, 255, NOW),
			 0);
	assert_string_equal(m.topic, "DDATA/dma3-inlet");
	p = decoded(&m);
	assert_int_equal(p->seq, 255);
	assert_int_equal(p->nmetrics, 12);
	for (size_t i = 0; i < 12; i++) {
		x = metric(p, i);
		assert_null(x->name);
		assert_false(x->has_datatype);
		assert_false(x->is_historical);
		assert_int_equal(x->timestamp, TS);
	}
	assert_int_equal(metric(p, 0)->alias, 65537);
	x = metric(p, 2);   /* the point that failed */
	assert_true(x->is_null);
	assert_int_equal(x->value.kind, SPB_V_NONE);
	assert_int_equal(x->nprops, 1);
	assert_string_equal(x->props[0].key, "Quality");
	assert_int_equal(x->props[0].type, SPB_INT32);
	assert_int_equal(x->props[0].value.v.i, 0);
	assert_int_equal(metric(p, 1)->nprops, 0);   /* no unit in DATA */
	x = metric(p, 11);
	assert_int_equal(x->alias, 65536);
	assert_int_equal(x->value.v.l, 42);
	spb_free(p);
	before = m.body.len;
	assert_py(&m,
		  "{\"metrics\":["
		  "{\"alias\":65537,\"timestamp\":1795706960451,\"value\":true},"
		  "{\"alias\":65538,\"timestamp\":1795706960451,\"value\":4294967294},"
		  "{\"alias\":65539,\"is_null\":true,\"properties\":{\"Quality\":0},\"timestamp\":1795706960451},"
		  "{\"alias\":65540,\"timestamp\":1795706960451,\"value\":2147483648},"
		  "{\"alias\":65541,\"timestamp\":1795706960451,\"value\":4294967295},"
		  "{\"alias\":65542,\"timestamp\":1795706960451,\"value\":18446744073709551611},"
		  "{\"alias\":65543,\"timestamp\":1795706960451,\"value\":18446744073709551615},"
		  "{\"alias\":65544,\"timestamp\":1795706960451,\"value\":26.5},"
		  "{\"alias\":65545,\"timestamp\":1795706960451,\"value\":0.1},"
		  "{\"alias\":65546,\"timestamp\":1795706960451,\"value\":1.25},"
		  "{\"alias\":65547,\"timestamp\":1795706960451,\"value\":\"泵\xEF\xBF\xBD\"},"
		  "{\"alias\":65536,\"timestamp\":1795706960451,\"value\":42}"
		  "],\"seq\":255,\"timestamp\":1795708228039}");

	/* from the backlog: every metric is historical, and two bytes longer */
	assert_int_equal(payload_sparkplug_ddata(&m, &NODE, &dev, 0, v, 11, TS, true, 42, 0, NOW),
			 0);
	assert_int_equal(m.body.len, before + 12 * 2 - 1);   /* and seq 0 is one byte shorter */
	p = decoded(&m);
	for (size_t i = 0; i < 12; i++)
		assert_true(metric(p, i)->is_historical);
	spb_free(p);

	/* a reading of fewer values than points: only those */
	assert_int_equal(payload_sparkplug_ddata(&m, &NODE, &dev, 0, v, 2, TS, false, 43, 1, NOW),
			 0);
	p = decoded(&m);
	assert_int_equal(p->nmetrics, 3);
	spb_free(p);
	payload_msg_free(&m);
}

static void test_ddeath(void **state)
{
	struct payload_msg m;
	struct spb_payload *p;

	(void)state;
	make_device();
	payload_msg_init(&m);
	assert_int_equal(payload_sparkplug_ddeath(&m, &NODE, &dev, 1, 0, 3, NOW), 0);
	assert_string_equal(m.topic, "DDEATH/dma3-inlet");
	assert_py(&m, "{\"seq\":3,\"timestamp\":1795708228039}");
	assert_int_equal(payload_sparkplug_ddeath(&m, &NODE, &dev, 1, 99, 4, NOW), 0);
	p = decoded(&m);
	assert_int_equal(p->nmetrics, 1);
	assert_int_equal(p->metrics[0].alias, 2 * 65536);
	assert_int_equal(p->metrics[0].value.v.l, 99);
	spb_free(p);
	payload_msg_free(&m);
}

static void test_state(void **state)
{
	static const char *const bad[] = {
		"", "ONLINE", "{\"online\":\"true\",\"timestamp\":1}", "{\"online\":true}",
		"{\"timestamp\":5}", "{\"online\":true,\"timestamp\":-1}",
		"{\"online\":true,\"timestamp\":\"5\"}", "[true,5]", "{\"online\":true,\"timestamp\":1e30}",
	};
	bool online = false;
	int64_t ts = 0;
	const char *good = "{\"online\":true,\"timestamp\":1795708228039}";

	(void)state;
	assert_int_equal(payload_sparkplug_state(good, strlen(good), &online, &ts), 0);
	assert_true(online);
	assert_int_equal(ts, NOW);
	good = " {\"timestamp\":1,\"online\":false,\"extra\":[1]} ";
	assert_int_equal(payload_sparkplug_state(good, strlen(good), &online, &ts), 0);
	assert_false(online);
	assert_int_equal(ts, 1);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		if (payload_sparkplug_state(bad[i], strlen(bad[i]), &online, &ts) != -1)
			fail_msg("accepted %s", bad[i]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_topics),
		cmocka_unit_test(test_aliases),
		cmocka_unit_test(test_datatypes),
		cmocka_unit_test(test_nbirth),
		cmocka_unit_test(test_ndeath_is_the_will),
		cmocka_unit_test(test_alert_and_health_ndata),
		cmocka_unit_test(test_command_ndata),
		cmocka_unit_test(test_dbirth),
		cmocka_unit_test(test_ddata),
		cmocka_unit_test(test_ddeath),
		cmocka_unit_test(test_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
