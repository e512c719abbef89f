/*
 * test_payload_thingsboard: the "thingsboard" format as contract tests: each message's
 * topic and exact JSON against the shapes of ThingsBoard's gateway API
 * (v1/gateway/connect, disconnect, telemetry, attributes) and device API
 * (v1/devices/me/telemetry), and every value kind written as the sluice format writes it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "mberr.h"
#include "payload.h"
#include "payload_thingsboard.h"

static struct point_def pt(const char *name, enum pt_type type, const char *unit)
{
	struct point_def p = { .table = MB_HOLDING, .type = type, .bit = -1, .scale = 1.0 };

	snprintf(p.name, sizeof p.name, "%s", name);
	snprintf(p.unit, sizeof p.unit, "%s", unit);
	return p;
}

static void assert_msg(const struct payload_msg *m, const char *topic, const char *json)
{
	assert_string_equal(m->topic, topic);
	assert_false(m->retain);
	assert_string_equal(jb_cstr_get((struct jbuf *)&m->body), json);
}

static void test_table(void **state)
{
	const struct payload_format *f = payload_format_find("thingsboard");
	struct health h = { .ts_ms = 1795708228039, .uptime_s = 10, .polls_ok = 19,
			    .polls_failed = 4, .last_seq = 35, .lag_p50_ms = 1, .lag_p99_ms = 512 };
	struct payload_msg m;
	char buf[64];

	(void)state;
	assert_non_null(f);
	assert_null(f->will);     /* ThingsBoard tracks the gateway's connection itself */
	assert_null(f->status);
	assert_int_equal(f->topic(buf, sizeof buf, "sluice", "gw", PTB_TOPIC_TELEMETRY), 0);
	assert_string_equal(buf, "v1/gateway/telemetry");
	assert_int_equal(f->topic(buf, 10, "sluice", "gw", PTB_TOPIC_TELEMETRY), -1);
	payload_msg_init(&m);
	assert_int_equal(f->health(&m, &h), 0);
	assert_msg(&m, "v1/devices/me/telemetry",
		   "{\"ts\":1795708228039,\"values\":{\"uptime_s\":10,\"polls_ok\":19,"
		   "\"polls_failed\":4,\"backlog_rows\":0,\"backlog_age_s\":0,\"dropped\":0,"
		   "\"set_aside_rows\":0,\"not_stored\":0,\"held_rows\":0,\"lost_at_stop\":0,"
		   "\"db_bytes\":0,\"last_seq\":35,\"poll_lag_p50_ms\":1,\"poll_lag_p99_ms\":512}}");
	h.store_error = "disk full";
	assert_int_equal(f->health(&m, &h), 0);
	assert_non_null(strstr(jb_cstr_get(&m.body), "\"not_stored\":0,\"store_error\":\"disk "
				  "full\",\"held_rows\":0"));
	payload_msg_free(&m);
}

static void test_devices(void **state)
{
	struct point_def pts[5] = { pt("flow", PT_FLOAT32, "m3/h"), pt("total", PT_UINT64, "m3"),
				    pt("run", PT_BOOL, ""), pt("label", PT_STRING, ""),
				    pt("temp", PT_INT16, "°C") };
	struct device_cfg d = { .name = "三号分区 进水流量计", .profile = "flowmeter-generic",
				.points = pts, .npoints = 5 };
	struct value v[5] = {
		{ .kind = VAL_DOUBLE, .v.d = 15.709782600402832 },
		{ .kind = VAL_UINT, .v.u = 18446744073709551615ull },
		{ .kind = VAL_BOOL, .v.b = true },
		{ .kind = VAL_STRING, .s = "泵\"站" },
		{ .kind = VAL_NONE, .err = MBE_TIMEOUT },
	};
	struct payload_msg m;

	(void)state;
	snprintf(d.id, sizeof d.id, "dma3-inlet");
	payload_msg_init(&m);
	assert_int_equal(payload_thingsboard_connect(&m, &d, true), 0);
	assert_msg(&m, "v1/gateway/connect",
		   "{\"device\":\"dma3-inlet\",\"type\":\"flowmeter-generic\"}");
	assert_int_equal(payload_thingsboard_connect(&m, &d, false), 0);
	assert_msg(&m, "v1/gateway/disconnect", "{\"device\":\"dma3-inlet\"}");

	assert_int_equal(payload_thingsboard_describe(&m, &d), 0);
	assert_msg(&m, "v1/gateway/attributes",
		   "{\"dma3-inlet\":{\"name\":\"三号分区 进水流量计\",\"profile\":"
		   "\"flowmeter-generic\",\"units\":{\"flow\":\"m3/h\",\"total\":\"m3\","
		   "\"temp\":\"°C\"}}}");

	assert_int_equal(payload_thingsboard_telemetry(&m, &d, v, 5, 1795706960451, 2), 0);
	assert_msg(&m, "v1/gateway/telemetry",
		   "{\"dma3-inlet\":[{\"ts\":1795706960451,\"values\":{\"flow\":15.709783,"
		   "\"total\":18446744073709551615,\"run\":true,\"label\":\"泵\\\"站\","
		   "\"sluice_seq\":2}}]}");

	assert_int_equal(payload_thingsboard_device_state(&m, &d, false, 1795706907307,
							  MBE_TIMEOUT, 3), 0);
	assert_msg(&m, "v1/gateway/attributes",
		   "{\"dma3-inlet\":{\"online\":false,\"state_ts\":1795706907307,"
		   "\"last_error\":\"timeout\",\"sluice_seq\":3}}");
	assert_int_equal(payload_thingsboard_device_state(&m, &d, true, 1, 0, 4), 0);
	assert_msg(&m, "v1/gateway/attributes",
		   "{\"dma3-inlet\":{\"online\":true,\"state_ts\":1,\"last_error\":null,"
		   "\"sluice_seq\":4}}");

	/* no name, no profile, no units: the attributes say so much */
	d.name = NULL;
	d.profile = NULL;
	d.npoints = 1;
	pts[0].unit[0] = '\0';
	assert_int_equal(payload_thingsboard_connect(&m, &d, true), 0);
	assert_msg(&m, "v1/gateway/connect", "{\"device\":\"dma3-inlet\"}");
	assert_int_equal(payload_thingsboard_describe(&m, &d), 0);
	assert_msg(&m, "v1/gateway/attributes", "{\"dma3-inlet\":{\"units\":{}}}");
	/* a reading where every point failed: the seq alone */
	assert_int_equal(payload_thingsboard_telemetry(&m, &d, &v[4], 1, 7, 5), 0);
	assert_msg(&m, "v1/gateway/telemetry",
		   "{\"dma3-inlet\":[{\"ts\":7,\"values\":{\"sluice_seq\":5}}]}");
	payload_msg_free(&m);
}

static void test_alert(void **state)
{
	struct alert_transition t = { .rule = "xinhua-waterlogging", .check = "level",
				      .state = ALERT_FIRING, .severity = SEV_ORANGE,
				      .ts_ms = 1795708222741, .value = 0.342, .threshold = 0.27,
				      .unit = "m", .message = "water 0.34 m above the road",
				      .value_f32 = true };
	struct payload_write_failure wf = { .device = "warn-sign", .point = "lamp", .value = 1,
					    .err = MBE_TIMEOUT };
	struct payload_msg m;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(payload_thingsboard_alert(&m, &t, "新华路下穿道 积水", NULL, 27), 0);
	assert_msg(&m, "v1/devices/me/telemetry",
		   "{\"ts\":1795708222741,\"values\":{"
		   "\"alert/xinhua-waterlogging/level/state\":\"firing\","
		   "\"alert/xinhua-waterlogging/level/severity\":\"orange\","
		   "\"alert/xinhua-waterlogging/level/value\":0.342,"
		   "\"alert/xinhua-waterlogging/level/threshold\":0.27,"
		   "\"alert/xinhua-waterlogging/level/unit\":\"m\","
		   "\"alert/xinhua-waterlogging/level/message\":\"water 0.34 m above the road\","
		   "\"alert/xinhua-waterlogging/level/name\":\"新华路下穿道 积水\","
		   "\"sluice_seq\":27}}");
	t.state = ALERT_RESOLVED;
	t.value = NAN;
	t.unit[0] = '\0';
	assert_int_equal(payload_thingsboard_alert(&m, &t, NULL, &wf, 28), 0);
	assert_msg(&m, "v1/devices/me/telemetry",
		   "{\"ts\":1795708222741,\"values\":{"
		   "\"alert/xinhua-waterlogging/level/state\":\"resolved\","
		   "\"alert/xinhua-waterlogging/level/severity\":\"orange\","
		   "\"alert/xinhua-waterlogging/level/value\":null,"
		   "\"alert/xinhua-waterlogging/level/threshold\":0.27,"
		   "\"alert/xinhua-waterlogging/level/message\":\"water 0.34 m above the road\","
		   "\"alert/xinhua-waterlogging/level/action\":{\"write\":\"warn-sign.lamp\","
		   "\"value\":1,\"error\":\"timeout\"},"
		   "\"sluice_seq\":28}}");
	payload_msg_free(&m);
}

/* A command's event: the gateway device's telemetry, the event as an object. */
static void test_command(void **state)
{
	struct payload_msg m;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(payload_thingsboard_command(&m, "\"ts\":5,\"id\":\"7\",\"ok\":true",
						     1795708222741, 31), 0);
	assert_msg(&m, "v1/devices/me/telemetry",
		   "{\"ts\":1795708222741,\"values\":{\"command\":{\"ts\":5,\"id\":\"7\",\"ok\":true},"
		   "\"sluice_seq\":31}}");
	payload_msg_free(&m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_table),
		cmocka_unit_test(test_devices),
		cmocka_unit_test(test_alert),
		cmocka_unit_test(test_command),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
