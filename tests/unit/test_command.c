/*
 * test_command: commands from the platform (daemon/command.c) in each format, against a
 * config loaded from YAML as sluiced loads it. Every reason a write is refused has its
 * case, and each refusal carries no write; a good command yields exactly the write it
 * asks for; replies are the formats' exact bytes; a command seen before is answered
 * with its first answer; the subscriptions each format needs.
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

#include "command.h"
#include "config.h"
#include "payload_sparkplug.h"
#include "spb.h"

#define NOW 1795708228039ll

#define DEVICES \
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n" \
	"devices:\n" \
	"  - id: pump\n" \
	"    bus: b\n" \
	"    points:\n" \
	"      speed: { table: holding, address: 0, type: uint16, writable: true, min: 0, max: 1450 }\n" \
	"      run: { table: coil, address: 0, type: bool, writable: true }\n" \
	"      temp: { table: input, address: 0, type: int16 }\n" \
	"      setp: { table: holding, address: 1, type: int16, writable: true, scale: 0.1 }\n" \
	"      label: { table: holding, address: 2, type: string, length: 2, writable: true }\n" \
	"      big: { table: holding, address: 4, type: int64, writable: true }\n" \
	"      level: { table: holding, address: 8, type: uint16 }\n" \
	"  - id: meter\n" \
	"    bus: b\n" \
	"    points:\n" \
	"      flow: { table: holding, address: 0, type: float32, writable: true }\n"

static struct config *load(const char *uplink)
{
	char text[4096];
	struct config_diag d;
	struct config *cfg;

	snprintf(text, sizeof text, "gateway: { id: gw }\nuplink: %s\n%s", uplink, DEVICES);
	cfg = config_load_buffer("cmd.yaml", text, strlen(text), NULL, &d);
	for (size_t i = 0; i < d.n; i++)
		fprintf(stderr, "%s\n", d.msgs[i]);
	config_diag_free(&d);
	assert_non_null(cfg);
	return cfg;
}

static bool online[2];

static bool is_online(void *ctx, size_t device)
{
	(void)ctx;
	return device < 2 && online[device];
}

static struct command_env env_of(const struct config *cfg)
{
	online[0] = online[1] = true;
	return (struct command_env){ .cfg = cfg, .online = is_online, .now_ms = NOW };
}

static int parse(const struct command_env *env, const char *topic, const char *json,
		 struct command *c)
{
	return command_parse(env, topic, json, strlen(json), c);
}

/* A refusal: its reason, and nothing to write. */
static void assert_refused(const struct command_env *env, const char *topic, const char *json,
			   const char *reason)
{
	struct command c;

	if (parse(env, topic, json, &c) != COMMAND_REFUSED)
		fail_msg("not refused: %s", json);
	assert_int_equal(c.what, COMMAND_REFUSED);
	assert_int_equal(c.nwrites, 0);
	if (strcmp(c.reason, reason) != 0)
		fail_msg("%s\n  refused for: %s\n  expected:    %s", json, c.reason, reason);
}

static void assert_reply(const struct command *c, bool ok, const char *error, const char *topic,
			 const char *json)
{
	struct payload_msg m;

	payload_msg_init(&m);
	assert_int_equal(command_reply(&m, c, ok, error), 0);
	assert_string_equal(m.topic, topic);
	assert_false(m.retain);
	assert_string_equal(jb_cstr_get(&m.body), json);
	payload_msg_free(&m);
}

/* ---- sluice ---------------------------------------------------------------------------- */

#define W "sluice/gw/command/write"

static void test_sluice_write(void **state)
{
	struct config *cfg = load("{ host: h, commands: true }");
	struct command_env env = env_of(cfg);
	struct command c;

	(void)state;
	assert_int_equal(parse(&env, W, "{\"id\":\"c-1\",\"device\":\"pump\",\"point\":\"speed\","
			       "\"value\":1000}", &c), COMMAND_WRITE);
	assert_int_equal(c.nwrites, 1);
	assert_int_equal(c.writes[0].device, 0);
	assert_int_equal(c.writes[0].point, 0);
	assert_true(c.writes[0].value == 1000);
	assert_string_equal(c.id, "c-1");
	assert_int_equal(c.ts_ms, -1);
	assert_true(c.key != 0);
	assert_reply(&c, true, NULL, "command/reply",
		     "{\"id\":\"c-1\",\"device\":\"pump\",\"point\":\"speed\",\"ok\":true}");
	assert_reply(&c, false, "timeout", "command/reply",
		     "{\"id\":\"c-1\",\"device\":\"pump\",\"point\":\"speed\",\"ok\":false,"
		     "\"error\":\"timeout\"}");

	/* a bool, as true/false or 0/1; a scaled point in its unit; a float; an int64 */
	assert_int_equal(parse(&env, W, "{\"id\":\"2\",\"device\":\"pump\",\"point\":\"run\","
			       "\"value\":true}", &c), COMMAND_WRITE);
	assert_true(c.writes[0].value == 1 && c.writes[0].point == 1);
	assert_int_equal(parse(&env, W, "{\"id\":\"3\",\"device\":\"pump\",\"point\":\"run\","
			       "\"value\":0}", &c), COMMAND_WRITE);
	assert_true(c.writes[0].value == 0);
	assert_int_equal(parse(&env, W, "{\"id\":\"4\",\"device\":\"pump\",\"point\":\"setp\","
			       "\"value\":-12.5}", &c), COMMAND_WRITE);
	assert_true(c.writes[0].value == -12.5);
	assert_int_equal(parse(&env, W, "{\"id\":\"5\",\"device\":\"meter\",\"point\":\"flow\","
			       "\"value\":26.5,\"ts\":1795708200000}", &c), COMMAND_WRITE);
	assert_true(c.writes[0].device == 1 && c.writes[0].value == 26.5);
	assert_int_equal(c.ts_ms, 1795708200000);
	assert_int_equal(parse(&env, W, "{\"id\":17,\"device\":\"pump\",\"point\":\"big\","
			       "\"value\":-9000000000}", &c), COMMAND_WRITE);
	assert_true(c.id_is_number);
	assert_reply(&c, true, NULL, "command/reply",
		     "{\"id\":17,\"device\":\"pump\",\"point\":\"big\",\"ok\":true}");

	/* not ours: another gateway, another prefix, our own reply topic */
	assert_int_equal(parse(&env, "sluice/gw2/command/write", "{}", &c), COMMAND_NONE);
	assert_int_equal(parse(&env, "other/gw/command/write", "{}", &c), COMMAND_NONE);
	assert_int_equal(parse(&env, "sluice/gw/command/reply", "{}", &c), COMMAND_NONE);
	assert_int_equal(parse(&env, "sluice/gw/command/write/x", "{}", &c), COMMAND_NONE);
	config_free(cfg);

	cfg = load("{ host: h, commands: true, topic_prefix: cq/water }");
	env = env_of(cfg);
	assert_int_equal(parse(&env, "cq/water/gw/command/write", "{\"id\":\"1\",\"device\":"
			       "\"pump\",\"point\":\"run\",\"value\":1}", &c), COMMAND_WRITE);
	config_free(cfg);
}

static void test_sluice_refusals(void **state)
{
	struct config *cfg = load("{ host: h, commands: true, command_max_age: 30s }");
	struct command_env env = env_of(cfg);
	struct command c;
	char big[COMMAND_PAYLOAD_MAX + 2];

	(void)state;
	assert_refused(&env, W, "{\"id\":", "malformed JSON: unexpected end at byte 6");
	assert_refused(&env, W, "[1]", "malformed: the command must be a JSON object");
	assert_refused(&env, W, "{\"device\":\"pump\"}", "no \"id\"");
	assert_refused(&env, W, "{\"id\":1.5}", "\"id\" must be a string or a whole number, of at "
		       "most 63 bytes");
	assert_refused(&env, W, "{\"id\":\"1\"}", "no \"device\"");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":5}", "\"device\" must be a string");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\"}", "no \"point\"");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"tank\",\"point\":\"x\",\"value\":1}",
		       "no device 'tank'");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"sped\",\"value\":1}",
		       "device pump has no point 'sped'");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\"}",
		       "no \"value\"");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"temp\",\"value\":1}",
		       "point pump.temp is not writable");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"level\",\"value\":1}",
		       "point pump.level is not writable");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"label\",\"value\":1}",
		       "point pump.label is a string: only numbers and bools are written");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"run\",\"value\":2}",
		       "value 2 cannot be written to bool point pump.run (expected true or false)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"run\",\"value\":\"on\"}",
		       "value must be true or false (pump.run is a bool)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":\"5\"}",
		       "value must be a number (pump.speed is uint16)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":true}",
		       "value must be a number (pump.speed is uint16)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":5.5}",
		       "value 5.5 is not a whole number (pump.speed is uint16)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":-1}",
		       "value -1 is below the min of pump.speed (0)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":1500}",
		       "value 1500 is above the max of pump.speed (1450)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"setp\",\"value\":4000}",
		       "value 4000 does not fit point pump.setp (int16)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"big\",\"value\":1e30}",
		       "value 1e+30 does not fit point pump.big (int64)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":5,"
		       "\"ts\":\"now\"}", "\"ts\" must be a time in ms since the epoch");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":5,"
		       "\"ts\":1795708150000}",
		       "the command is 78 s old (uplink.command_max_age is 30 s)");
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":5,"
		       "\"ts\":1795708300000}",
		       "the command's time is 71 s ahead of the gateway's clock "
		       "(uplink.command_max_age is 30 s)");
	online[0] = false;
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":5}",
		       "device pump is offline");
	/* no state yet counts as offline */
	env.online = NULL;
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"meter\",\"point\":\"flow\",\"value\":5}",
		       "device meter is offline");
	memset(big, ' ', sizeof big - 1);
	big[sizeof big - 1] = '\0';
	big[0] = '{';
	assert_refused(&env, W, big, "a command of 65537 bytes (at most 65536)");

	/* a refusal is answered, with the id it had */
	assert_int_equal(parse(&env, W, "{\"id\":\"9\",\"device\":\"pump\",\"point\":\"run\","
			       "\"value\":5}", &c), COMMAND_REFUSED);
	assert_reply(&c, false, c.reason, "command/reply",
		     "{\"id\":\"9\",\"device\":\"pump\",\"point\":\"run\",\"ok\":false,\"error\":"
		     "\"value 5 cannot be written to bool point pump.run (expected true or false)\"}");
	/* a command without an id has no one to answer */
	{
		struct payload_msg m;
		payload_msg_init(&m);
		assert_int_equal(parse(&env, W, "{\"device\":\"pump\"}", &c), COMMAND_REFUSED);
		assert_int_equal(command_reply(&m, &c, false, c.reason), 1);
		payload_msg_free(&m);
	}
	config_free(cfg);

	cfg = load("{ host: h }");
	env = env_of(cfg);
	assert_refused(&env, W, "{\"id\":\"1\",\"device\":\"pump\",\"point\":\"speed\",\"value\":5}",
		       "commands are off on this gateway (uplink.commands)");
	config_free(cfg);
}

/* ---- ThingsBoard ------------------------------------------------------------------------ */

#define RPC "v1/gateway/rpc"

static void test_thingsboard(void **state)
{
	struct config *cfg = load("{ host: h, format: thingsboard, commands: true }");
	struct command_env env = env_of(cfg);
	struct command c;
	struct payload_msg m;

	(void)state;
	assert_int_equal(parse(&env, RPC, "{\"device\":\"pump\",\"data\":{\"id\":7,\"method\":"
			       "\"write\",\"params\":{\"point\":\"speed\",\"value\":5}}}", &c),
			 COMMAND_WRITE);
	assert_int_equal(c.nwrites, 1);
	assert_true(c.writes[0].device == 0 && c.writes[0].point == 0 && c.writes[0].value == 5);
	assert_reply(&c, true, NULL, "v1/gateway/rpc",
		     "{\"device\":\"pump\",\"id\":7,\"data\":{\"success\":true}}");
	assert_reply(&c, false, "illegal data address", "v1/gateway/rpc",
		     "{\"device\":\"pump\",\"id\":7,\"data\":{\"success\":false,\"error\":"
		     "\"illegal data address\"}}");
	assert_int_equal(parse(&env, "v1/gateway/attributes", "{}", &c), COMMAND_NONE);
	assert_int_equal(parse(&env, "sluice/gw/command/write", "{}", &c), COMMAND_NONE);

	assert_refused(&env, RPC, "{\"data\":{}}", "no \"device\"");
	assert_refused(&env, RPC, "{\"device\":\"pump\"}", "no \"data\" object");
	assert_refused(&env, RPC, "{\"device\":\"pump\",\"data\":{\"method\":\"write\"}}",
		       "no \"id\"");
	assert_refused(&env, RPC, "{\"device\":\"pump\",\"data\":{\"id\":1,\"method\":\"reboot\"}}",
		       "method 'reboot' is not one the gateway takes (write)");
	assert_refused(&env, RPC, "{\"device\":\"pump\",\"data\":{\"id\":1,\"method\":\"write\"}}",
		       "no \"params\" object");
	assert_refused(&env, RPC, "{\"device\":\"pump\",\"data\":{\"id\":1,\"method\":\"write\","
		       "\"params\":{\"point\":\"speed\",\"value\":99999}}}",
		       "value 99999 is above the max of pump.speed (1450)");
	online[0] = false;
	assert_refused(&env, RPC, "{\"device\":\"pump\",\"data\":{\"id\":1,\"method\":\"write\","
		       "\"params\":{\"point\":\"speed\",\"value\":9}}}", "device pump is offline");
	/* refused, and answered as ThingsBoard expects */
	assert_int_equal(parse(&env, RPC, "{\"device\":\"pump\",\"data\":{\"id\":\"a\",\"method\":"
			       "\"write\",\"params\":{\"point\":\"speed\",\"value\":9}}}", &c),
			 COMMAND_REFUSED);
	assert_reply(&c, false, c.reason, "v1/gateway/rpc",
		     "{\"device\":\"pump\",\"id\":\"a\",\"data\":{\"success\":false,\"error\":"
		     "\"device pump is offline\"}}");
	/* no device: no one to answer */
	payload_msg_init(&m);
	assert_int_equal(parse(&env, RPC, "{\"data\":{\"id\":3}}", &c), COMMAND_REFUSED);
	assert_int_equal(command_reply(&m, &c, false, c.reason), 1);
	payload_msg_free(&m);
	config_free(cfg);

	cfg = load("{ host: h, format: thingsboard }");
	env = env_of(cfg);
	assert_refused(&env, RPC, "{\"device\":\"pump\",\"data\":{\"id\":1,\"method\":\"write\","
		       "\"params\":{\"point\":\"speed\",\"value\":9}}}",
		       "commands are off on this gateway (uplink.commands)");
	config_free(cfg);
}

/* ---- Sparkplug ------------------------------------------------------------------------- */

#define DCMD "spBv1.0/cq/DCMD/gw/pump"
#define NCMD "spBv1.0/cq/NCMD/gw"

struct spbcmd {
	struct spb_metric m[20];
	struct spb_payload p;
	struct jbuf b;
};

static void spb_begin(struct spbcmd *s, int64_t ts)
{
	memset(s, 0, sizeof *s);
	s->p.has_timestamp = ts >= 0;
	s->p.timestamp = (uint64_t)ts;
	s->p.metrics = s->m;
	jb_init(&s->b);
}

static struct spb_metric *spb_metric(struct spbcmd *s, const char *name, uint64_t alias)
{
	struct spb_metric *m = &s->m[s->p.nmetrics++];

	m->name = name;
	m->has_alias = alias != 0;
	m->alias = alias;
	return m;
}

static int spb_parse(const struct command_env *env, const char *topic, struct spbcmd *s,
		     struct command *c)
{
	int rc;

	jb_reset(&s->b);
	assert_int_equal(spb_encode(&s->p, &s->b), 0);
	rc = command_parse(env, topic, s->b.p, s->b.len, c);
	jb_free(&s->b);
	return rc;
}

static void spb_refused(const struct command_env *env, const char *topic, struct spbcmd *s,
			const char *reason)
{
	struct command c;

	if (spb_parse(env, topic, s, &c) != COMMAND_REFUSED)
		fail_msg("not refused (expected: %s)", reason);
	assert_int_equal(c.nwrites, 0);
	if (strcmp(c.reason, reason) != 0)
		fail_msg("refused for: %s\nexpected:    %s", c.reason, reason);
}

static void test_sparkplug_dcmd(void **state)
{
	struct config *cfg = load("{ host: h, format: sparkplug, commands: true, "
				  "sparkplug: { group: cq, primary_host: scada-1 } }");
	struct command_env env = env_of(cfg);
	struct spbcmd s;
	struct spb_metric *m;
	struct command c;
	struct payload_msg pm;

	(void)state;
	/* by name, and by alias (what the DBIRTH gave point 1 of device 0) */
	spb_begin(&s, NOW - 1000);
	m = spb_metric(&s, "speed", 0);
	m->value = (struct spb_value){ .kind = SPB_V_INT, .v.i = 1200 };
	m = spb_metric(&s, NULL, payload_sparkplug_point_alias(0, 1));
	m->value = (struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	m = spb_metric(&s, "setp", 0);   /* an Int16 of -125: -12.5 in its unit */
	m->has_datatype = true;
	m->datatype = SPB_INT16;
	m->value = (struct spb_value){ .kind = SPB_V_INT, .v.i = (uint32_t)-125 };
	m = spb_metric(&s, "big", 0);
	m->value = (struct spb_value){ .kind = SPB_V_LONG, .v.l = (uint64_t)-7 };
	assert_int_equal(spb_parse(&env, DCMD, &s, &c), COMMAND_WRITE);
	assert_int_equal(c.nwrites, 4);
	assert_true(c.writes[0].point == 0 && c.writes[0].value == 1200);
	assert_true(c.writes[1].point == 1 && c.writes[1].value == 1);
	assert_true(c.writes[2].point == 3 && c.writes[2].value == -125);
	assert_true(c.writes[3].point == 5 && c.writes[3].value == -7);
	assert_string_equal(c.device, "pump");
	assert_int_equal(c.ts_ms, NOW - 1000);
	assert_true(c.key != 0);
	payload_msg_init(&pm);
	assert_int_equal(command_reply(&pm, &c, true, NULL), 1);   /* Sparkplug: no reply */
	payload_msg_free(&pm);

	/* the other device, a float */
	spb_begin(&s, NOW);
	m = spb_metric(&s, "flow", 0);
	m->value = (struct spb_value){ .kind = SPB_V_FLOAT, .v.f = 2.5f };
	assert_int_equal(spb_parse(&env, "spBv1.0/cq/DCMD/gw/meter", &s, &c), COMMAND_WRITE);
	assert_true(c.writes[0].device == 1 && c.writes[0].value == 2.5);

	/* not ours */
	spb_begin(&s, NOW);
	assert_int_equal(spb_parse(&env, "spBv1.0/cq/DCMD/gw2/pump", &s, &c), COMMAND_NONE);
	assert_int_equal(spb_parse(&env, "spBv1.0/other/DCMD/gw/pump", &s, &c), COMMAND_NONE);
	assert_int_equal(spb_parse(&env, "spBv1.0/cq/DDATA/gw/pump", &s, &c), COMMAND_NONE);
	assert_int_equal(spb_parse(&env, "spBv1.0/cq/DCMD/gw", &s, &c), COMMAND_NONE);
	assert_int_equal(spb_parse(&env, "spBv1.0/cq/DCMD/gw/", &s, &c), COMMAND_NONE);
	assert_int_equal(spb_parse(&env, "spBv1.0/cq/NCMD/gw/x", &s, &c), COMMAND_NONE);

	/* refusals: nothing written, even when the other metrics are good */
	spb_begin(&s, NOW);
	spb_refused(&env, DCMD, &s, "a DCMD without metrics");
	spb_begin(&s, -1);
	spb_metric(&s, "speed", 0)->value = (struct spb_value){ .kind = SPB_V_INT, .v.i = 1 };
	spb_refused(&env, DCMD, &s, "a Sparkplug command without a timestamp");
	spb_begin(&s, NOW - 61000);
	spb_metric(&s, "speed", 0)->value = (struct spb_value){ .kind = SPB_V_INT, .v.i = 1 };
	spb_refused(&env, DCMD, &s, "the command is 61 s old (uplink.command_max_age is 60 s)");
	spb_begin(&s, NOW);
	spb_metric(&s, "speed", 0)->value = (struct spb_value){ .kind = SPB_V_INT, .v.i = 1 };
	spb_metric(&s, "sped", 0)->value = (struct spb_value){ .kind = SPB_V_INT, .v.i = 1 };
	spb_refused(&env, DCMD, &s, "device pump has no point 'sped'");
	spb_begin(&s, NOW);
	spb_metric(&s, NULL, payload_sparkplug_point_alias(1, 0));
	spb_refused(&env, DCMD, &s, "alias 131073 names no point of device pump");
	spb_begin(&s, NOW);
	spb_metric(&s, NULL, payload_sparkplug_point_alias(0, 7));
	spb_refused(&env, DCMD, &s, "alias 65544 names no point of device pump");
	spb_begin(&s, NOW);
	spb_metric(&s, NULL, 0);
	spb_refused(&env, DCMD, &s, "metric 0 has neither a name nor an alias");
	spb_begin(&s, NOW);
	spb_metric(&s, "speed", 0)->is_null = true;
	spb_refused(&env, DCMD, &s, "metric 0 (pump.speed) has no numeric value");
	spb_begin(&s, NOW);
	spb_metric(&s, "run", 0)->value = (struct spb_value){ .kind = SPB_V_STRING, .s = "on",
							      .len = 2 };
	spb_refused(&env, DCMD, &s, "metric 0 (pump.run) has no boolean value");
	spb_begin(&s, NOW);
	spb_metric(&s, "speed", 0)->value = (struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	spb_refused(&env, DCMD, &s, "metric 0 (pump.speed) has no numeric value");
	spb_begin(&s, NOW);
	spb_metric(&s, "speed", 0)->value = (struct spb_value){ .kind = SPB_V_INT, .v.i = 2000 };
	spb_refused(&env, DCMD, &s, "metric 0: 2000 is above the max of pump.speed (1450)");
	spb_begin(&s, NOW);
	spb_metric(&s, "temp", 0)->value = (struct spb_value){ .kind = SPB_V_INT, .v.i = 1 };
	spb_refused(&env, DCMD, &s, "point pump.temp is not writable");
	spb_begin(&s, NOW);
	spb_metric(&s, "flow", 0);
	spb_refused(&env, "spBv1.0/cq/DCMD/gw/tank", &s, "no device 'tank'");
	spb_begin(&s, NOW);
	for (int i = 0; i < 17; i++)
		spb_metric(&s, "run", 0)->value = (struct spb_value){ .kind = SPB_V_BOOL };
	spb_refused(&env, DCMD, &s, "a DCMD of 17 metrics; the gateway takes at most 16");
	online[0] = false;
	spb_begin(&s, NOW);
	spb_metric(&s, "run", 0)->value = (struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	spb_refused(&env, DCMD, &s, "device pump is offline");
	online[0] = true;
	assert_int_equal(command_parse(&env, DCMD, "\x12\x05\x0a", 3, &c), COMMAND_REFUSED);
	assert_string_equal(c.reason, "malformed Sparkplug payload: length past the end of its "
			    "message at byte 2");
	assert_true(c.key != 0);
	config_free(cfg);

	/* commands off: DCMD refused, NCMD Rebirth still honoured */
	cfg = load("{ host: h, format: sparkplug, sparkplug: { group: cq } }");
	env = env_of(cfg);
	spb_begin(&s, NOW);
	spb_metric(&s, "run", 0)->value = (struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	spb_refused(&env, DCMD, &s, "commands are off on this gateway (uplink.commands)");
	spb_begin(&s, NOW);
	spb_metric(&s, "Node Control/Rebirth", 0)->value =
		(struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	assert_int_equal(spb_parse(&env, NCMD, &s, &c), COMMAND_REBIRTH);
	config_free(cfg);
}

static void test_sparkplug_ncmd_and_state(void **state)
{
	struct config *cfg = load("{ host: h, format: sparkplug, commands: true, "
				  "sparkplug: { group: cq, primary_host: scada-1 } }");
	struct command_env env = env_of(cfg);
	struct spbcmd s;
	struct command c;
	const char *st;

	(void)state;
	spb_begin(&s, NOW);
	spb_metric(&s, NULL, PSP_ALIAS_REBIRTH)->value =
		(struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	assert_int_equal(spb_parse(&env, NCMD, &s, &c), COMMAND_REBIRTH);
	assert_int_equal(c.nwrites, 0);
	spb_begin(&s, NOW);
	spb_metric(&s, "Node Control/Rebirth", 0)->value =
		(struct spb_value){ .kind = SPB_V_BOOL, .v.b = false };
	spb_refused(&env, NCMD, &s, "an NCMD that asks for nothing (Node Control/Rebirth is not "
		    "true)");
	spb_begin(&s, NOW);
	spb_metric(&s, "Node Control/Reboot", 0)->value =
		(struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	spb_refused(&env, NCMD, &s, "node metric 'Node Control/Reboot' cannot be written (only "
		    "Node Control/Rebirth)");
	spb_begin(&s, NOW);
	spb_metric(&s, NULL, 16)->value = (struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	spb_refused(&env, NCMD, &s, "node metric alias 16 cannot be written (only Node "
		    "Control/Rebirth, alias 2)");
	spb_begin(&s, NOW - 600000);
	spb_metric(&s, "Node Control/Rebirth", 0)->value =
		(struct spb_value){ .kind = SPB_V_BOOL, .v.b = true };
	spb_refused(&env, NCMD, &s, "the command is 600 s old (uplink.command_max_age is 60 s)");

	st = "{\"online\":true,\"timestamp\":1795708228000}";
	assert_int_equal(parse(&env, "spBv1.0/STATE/scada-1", st, &c), COMMAND_HOST);
	assert_true(c.host_online);
	assert_int_equal(c.host_ts_ms, 1795708228000);
	assert_int_equal(parse(&env, "spBv1.0/STATE/scada-2", st, &c), COMMAND_NONE);
	assert_refused(&env, "spBv1.0/STATE/scada-1", "OFFLINE",
		       "a STATE message that is not Sparkplug 3.0's "
		       "{\"online\":...,\"timestamp\":...}");
	config_free(cfg);
}

/* ---- subscriptions -------------------------------------------------------------------- */

static void test_subscriptions(void **state)
{
	char t[4][COMMAND_TOPIC_MAX];
	struct config *cfg;

	(void)state;
	cfg = load("{ host: h }");
	assert_int_equal(command_subscriptions(cfg, t, 4), 0);
	config_free(cfg);
	cfg = load("{ host: h, commands: true, topic_prefix: cq/water }");
	assert_int_equal(command_subscriptions(cfg, t, 4), 1);
	assert_string_equal(t[0], "cq/water/gw/command/write");
	config_free(cfg);
	cfg = load("{ host: h, format: thingsboard, commands: true }");
	assert_int_equal(command_subscriptions(cfg, t, 4), 1);
	assert_string_equal(t[0], "v1/gateway/rpc");
	config_free(cfg);
	cfg = load("{ host: h, format: thingsboard }");
	assert_int_equal(command_subscriptions(cfg, t, 4), 0);
	config_free(cfg);
	cfg = load("{ host: h, format: sparkplug, sparkplug: { group: cq } }");
	assert_int_equal(command_subscriptions(cfg, t, 4), 1);
	assert_string_equal(t[0], "spBv1.0/cq/NCMD/gw");
	config_free(cfg);
	cfg = load("{ host: h, format: sparkplug, commands: true, sparkplug: { group: cq, "
		   "primary_host: scada-1 } }");
	assert_int_equal(command_subscriptions(cfg, t, 4), 3);
	assert_string_equal(t[0], "spBv1.0/cq/NCMD/gw");
	assert_string_equal(t[1], "spBv1.0/cq/DCMD/gw/+");
	assert_string_equal(t[2], "spBv1.0/STATE/scada-1");
	/* fewer slots than topics: the count says how many there are */
	memset(t[1], 0, sizeof t[1]);
	assert_int_equal(command_subscriptions(cfg, t, 1), 3);
	assert_string_equal(t[1], "");
	config_free(cfg);
}

/* ---- deduplication ----------------------------------------------------------------- */

/* The audit trail's event: what was asked and its outcome, as the sluice format's members
 * after seq; a refusal before the points were known has no writes. */
static void test_event(void **state)
{
	struct config *cfg = load("{ host: h, format: thingsboard, commands: true }");
	struct command_env env = env_of(cfg);
	struct payload_msg m;
	struct command c;

	(void)state;
	payload_msg_init(&m);
	assert_int_equal(parse(&env, "v1/gateway/rpc", "{\"device\":\"pump\",\"data\":{\"id\":7,"
			       "\"method\":\"write\",\"params\":{\"point\":\"setp\",\"value\":-1.5}}}", &c),
			 COMMAND_WRITE);
	assert_int_equal(command_event(&m, &c, cfg, true, NULL, NOW), 0);
	assert_string_equal(m.topic, "command/event");
	assert_false(m.retain);
	assert_string_equal(jb_cstr_get(&m.body),
			    "\"ts\":1795708228039,\"format\":\"thingsboard\",\"id\":\"7\",\"device\":\"pump\","
			    "\"writes\":[{\"point\":\"setp\",\"value\":-1.5}],\"ok\":true");
	assert_int_equal(command_event(&m, &c, cfg, false, "write pump.setp failed: timeout", NOW),
			 0);
	assert_non_null(strstr(jb_cstr_get(&m.body),
			       "\"ok\":false,\"error\":\"write pump.setp failed: timeout\""));
	/* refused unread: no id, no device, no writes */
	assert_int_equal(parse(&env, "v1/gateway/rpc", "nope", &c), COMMAND_REFUSED);
	assert_int_equal(command_event(&m, &c, cfg, false, c.reason, NOW), 0);
	assert_non_null(strstr(jb_cstr_get(&m.body), "\"id\":null,\"device\":null,\"writes\":[],"
			       "\"ok\":false,\"error\":\"malformed JSON"));
	/* the gateway's own reply, handed back by the broker: not a command */
	assert_int_equal(parse(&env, "v1/gateway/rpc", "{\"device\":\"pump\",\"id\":7,\"data\":"
			       "{\"success\":true}}", &c), COMMAND_NONE);
	assert_int_equal(parse(&env, "v1/gateway/rpc", "{\"device\":\"pump\",\"id\":7,\"data\":"
			       "{\"success\":false,\"error\":\"x\"}}", &c), COMMAND_NONE);
	payload_msg_free(&m);
	config_free(cfg);
}

static void test_dedup(void **state)
{
	struct config *cfg = load("{ host: h, format: thingsboard, commands: true }");
	struct command_env env = env_of(cfg);
	struct command_dedup *d = malloc(sizeof *d);
	const struct command_seen *e;
	struct command c, c2, r;
	const char *rpc = "{\"device\":\"pump\",\"data\":{\"id\":7,\"method\":\"write\",\"params\":"
			  "{\"point\":\"speed\",\"value\":5}}}";

	(void)state;
	assert_non_null(d);
	command_dedup_init(d);
	assert_int_equal(parse(&env, RPC, rpc, &c), COMMAND_WRITE);
	assert_null(command_dedup(d, &c, NOW));              /* new: carry it out */
	e = command_dedup(d, &c, NOW + 1000);                /* redelivered meanwhile */
	assert_non_null(e);
	assert_int_equal(e->state, COMMAND_SEEN_PENDING);    /* no answer yet, not again */
	command_dedup_done(d, c.key, false, "timeout");
	e = command_dedup(d, &c, NOW + 2000);
	assert_int_equal(e->state, COMMAND_SEEN_FAILED);
	assert_string_equal(e->error, "timeout");
	/* the same id for another device is another command */
	assert_int_equal(parse(&env, RPC, "{\"device\":\"meter\",\"data\":{\"id\":7,\"method\":"
			       "\"write\",\"params\":{\"point\":\"flow\",\"value\":5}}}", &c2),
			 COMMAND_WRITE);
	assert_true(c2.key != c.key);
	assert_null(command_dedup(d, &c2, NOW));
	command_dedup_done(d, c2.key, true, NULL);
	e = command_dedup(d, &c2, NOW + 5000);
	assert_int_equal(e->state, COMMAND_SEEN_OK);
	/* even if it would now be refused, a repeat gets the first answer */
	online[1] = false;
	assert_int_equal(parse(&env, RPC, "{\"device\":\"meter\",\"data\":{\"id\":7,\"method\":"
			       "\"write\",\"params\":{\"point\":\"flow\",\"value\":5}}}", &r),
			 COMMAND_REFUSED);
	assert_true(r.key == c2.key);
	assert_int_equal(command_dedup(d, &r, NOW + 6000)->state, COMMAND_SEEN_OK);
	/* a refusal is remembered with its reason */
	assert_int_equal(parse(&env, RPC, "{\"device\":\"meter\",\"data\":{\"id\":8,\"method\":"
			       "\"write\",\"params\":{\"point\":\"flow\",\"value\":5}}}", &r),
			 COMMAND_REFUSED);
	assert_null(command_dedup(d, &r, NOW));
	e = command_dedup(d, &r, NOW + 1);
	assert_int_equal(e->state, COMMAND_SEEN_FAILED);
	assert_string_equal(e->error, "device meter is offline");
	/* past the window it is new again */
	assert_null(command_dedup(d, &c, NOW + COMMAND_SEEN_MS + 1));
	/* a command without a key (malformed) is never remembered */
	assert_int_equal(parse(&env, RPC, "{", &r), COMMAND_REFUSED);
	assert_int_equal(r.key, 0);
	assert_null(command_dedup(d, &r, NOW));
	assert_null(command_dedup(d, &r, NOW));
	/* bounded: after COMMAND_SEEN_MAX newer commands the first is forgotten */
	command_dedup_init(d);
	assert_null(command_dedup(d, &c, NOW));
	for (int i = 0; i < COMMAND_SEEN_MAX; i++) {
		struct command x = c;
		x.key = 1000 + (uint64_t)i;
		assert_null(command_dedup(d, &x, NOW));
	}
	assert_null(command_dedup(d, &c, NOW));
	free(d);
	config_free(cfg);

	/* Sparkplug: the same bytes on the same topic are the same command */
	cfg = load("{ host: h, format: sparkplug, commands: true, sparkplug: { group: cq } }");
	env = env_of(cfg);
	{
		struct spbcmd s;
		struct command a, b;
		spb_begin(&s, NOW);
		spb_metric(&s, "run", 0)->value = (struct spb_value){ .kind = SPB_V_BOOL, .v.b = 1 };
		assert_int_equal(spb_parse(&env, DCMD, &s, &a), COMMAND_WRITE);
		assert_int_equal(spb_parse(&env, DCMD, &s, &b), COMMAND_WRITE);
		assert_true(a.key == b.key);
		s.p.timestamp++;
		assert_int_equal(spb_parse(&env, DCMD, &s, &b), COMMAND_WRITE);
		assert_true(a.key != b.key);
	}
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sluice_write),
		cmocka_unit_test(test_sluice_refusals),
		cmocka_unit_test(test_thingsboard),
		cmocka_unit_test(test_sparkplug_dcmd),
		cmocka_unit_test(test_sparkplug_ncmd_and_state),
		cmocka_unit_test(test_subscriptions),
		cmocka_unit_test(test_event),
		cmocka_unit_test(test_dedup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
