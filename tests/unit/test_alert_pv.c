/*
 * test_alert_pv: the pv rule. Each check (fault, no_output, low_output, peer) fires and
 * resolves with the rule's severity and a message that says what happened; no output at
 * night and an offline inverter raise nothing; a cloudy dawn and dusk do not flap; one
 * of three inverters at 30 % of the others fires peer; a SunSpec inverter is watched by
 * its discovered point names (W, St, Evt1, WRtg). Local time is Asia/Shanghai (UTC+8).
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
#include <time.h>
#include <unistd.h>

#include "alert.h"
#include "config.h"

#include "alert_fixture.h"

#define S 1000LL
#define M (60 * S)
#define H (60 * M)
#define D (24 * H)
#define DAY0 1717171200000LL /* 2024-06-01 00:00 in Asia/Shanghai */

/* One poll of a plain inverter: power (W), fault; NAN power = a failed poll. */
static void feed(struct alert_engine *e, size_t dev, int64_t ts, double w, unsigned fault,
		 struct alert_out *o)
{
	struct value v[2] = { { .kind = VAL_DOUBLE }, { .kind = VAL_UINT } };

	if (isnan(w)) {
		v[0].kind = v[1].kind = VAL_NONE;
	} else {
		v[0].v.d = w;
		v[1].v.u = fault;
	}
	assert_int_equal(alert_feed(e, dev, ts, v, 2, o), 0);
	assert_int_equal(alert_tick(e, ts, o), 0);
}

static const struct alert_transition *find(const struct alert_out *o, const char *rule,
					   const char *check, int state)
{
	for (size_t i = 0; i < o->nt; i++)
		if (!strcmp(o->t[i].rule, rule) && !strcmp(o->t[i].check, check) &&
		    o->t[i].state == state)
			return &o->t[i];
	return NULL;
}

static size_t count(const struct alert_out *o, const char *check)
{
	size_t n = 0;
	for (size_t i = 0; i < o->nt; i++)
		if (!check || !strcmp(o->t[i].check, check))
			n++;
	return n;
}

static void dump(const struct alert_out *o)
{
	for (size_t i = 0; i < o->nt; i++)
		fprintf(stderr, "  %s/%s %s sev %d at +%.1f h: %s\n", o->t[i].rule, o->t[i].check,
			o->t[i].state == ALERT_FIRING ? "firing" : "resolved", o->t[i].severity,
			(double)(o->t[i].ts_ms - DAY0) / H, o->t[i].message);
}

#define HEAD                                                                              \
	"gateway: { id: gw, timezone: Asia/Shanghai }\n"                                   \
	"uplink: { host: 127.0.0.1 }\n"                                                    \
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"

#define INV(id, unit)                                                                     \
	"  - id: " id "\n"                                                                 \
	"    bus: b\n"                                                                     \
	"    unit_id: " unit "\n"                                                          \
	"    points:\n"                                                                    \
	"      power: { table: input, address: 0, type: float32, unit: W }\n"             \
	"      fault: { table: input, address: 2, type: uint16 }\n"

static const char one_cfg[] = HEAD "devices:\n" INV("inv1", "1")
	"alerts:\n"
	"  - id: roof\n"
	"    kind: pv\n"
	"    inverter: inv1\n"
	"    power: inv1.power\n"
	"    fault: inv1.fault\n"
	"    rated_power: 10kW\n"
	"    daylight: { from: \"08:00\", to: \"16:00\" }\n"
	"    min_output_ratio: 0.1\n"
	"    for: 30m\n"
	"    severity: orange\n";

static void test_checks_made(void **state)
{
	struct config *cfg = fx_load(one_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	struct alert_transition act[8];

	(void)state;
	/* peer needs two peers: a lone inverter has fault, no_output and low_output */
	feed(e, 0, DAY0 + 11 * H, 0, 0, &o);
	/* no_output pending; low_output leaves zero output to it; fault is ok */
	assert_int_equal(alert_active(e, act, 8), 1);
	assert_string_equal(act[0].check, "no_output");
	assert_int_equal(act[0].state, ALERT_PENDING);
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void test_fault(void **state)
{
	struct config *cfg = fx_load(one_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	const struct alert_transition *t;

	(void)state;
	/* at night too: the inverter's own word needs no daylight and no 'for' */
	feed(e, 0, DAY0 + 2 * H, 0, 0, &o);
	assert_int_equal(o.nt, 0);
	feed(e, 0, DAY0 + 2 * H + M, 0, 3, &o);
	assert_non_null(t = find(&o, "roof", "fault", ALERT_FIRING));
	assert_int_equal(t->severity, SEV_ORANGE);
	assert_int_equal(t->ts_ms, DAY0 + 2 * H + M);
	assert_true(t->value == 3);
	assert_non_null(strstr(t->message, "fault = 3"));
	assert_non_null(strstr(t->message, "inv1"));
	alert_out_reset(&o);
	feed(e, 0, DAY0 + 2 * H + 2 * M, 0, 3, &o); /* still: no second firing */
	assert_int_equal(o.nt, 0);
	feed(e, 0, DAY0 + 2 * H + 3 * M, 0, 0, &o);
	assert_non_null(t = find(&o, "roof", "fault", ALERT_RESOLVED));
	assert_int_equal(t->severity, SEV_ORANGE);
	assert_non_null(strstr(t->message, "no fault"));
	assert_int_equal(o.nt, 1);
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void test_no_output(void **state)
{
	struct config *cfg = fx_load(one_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	const struct alert_transition *t;

	(void)state;
	/* a whole night of zero output, polled each minute: nothing */
	for (int64_t ts = DAY0; ts < DAY0 + 8 * H; ts += M)
		feed(e, 0, ts, 0, 0, &o);
	assert_int_equal(o.nt, 0);
	/* daylight from 08:00 and still nothing: fires after 'for' (30 min) */
	for (int64_t ts = DAY0 + 8 * H; ts < DAY0 + 10 * H; ts += M)
		feed(e, 0, ts, 0, 0, &o);
	dump(&o);
	assert_int_equal(o.nt, 1);
	assert_non_null(t = find(&o, "roof", "no_output", ALERT_FIRING));
	assert_int_equal(t->ts_ms, DAY0 + 8 * H + 30 * M);
	assert_int_equal(t->severity, SEV_ORANGE);
	assert_string_equal(t->unit, "W");
	assert_true(t->value_f32);      /* the float32 power point's reading */
	assert_false(t->threshold_f32); /* from rated power */
	assert_non_null(strstr(t->message, "no output in daylight"));
	alert_out_reset(&o);
	/* output comes back */
	feed(e, 0, DAY0 + 10 * H, 6000, 0, &o);
	assert_non_null(t = find(&o, "roof", "no_output", ALERT_RESOLVED));
	assert_int_equal(t->severity, SEV_ORANGE);
	assert_non_null(strstr(t->message, "produces again: 6000 W"));
	assert_int_equal(o.nt, 1);
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* A dead inverter that fired in daylight stays firing through the night (no output at
 * night is no news either way) and resolves when it produces. */
static void test_no_output_holds_overnight(void **state)
{
	struct config *cfg = fx_load(one_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };

	(void)state;
	for (int64_t ts = DAY0 + 15 * H; ts < DAY0 + D + 9 * H; ts += M)
		feed(e, 0, ts, 0, 0, &o);
	assert_int_equal(count(&o, NULL), 1);
	assert_int_equal(find(&o, "roof", "no_output", ALERT_FIRING)->ts_ms, DAY0 + 15 * H + 30 * M);
	alert_out_reset(&o);
	/* a pending alert at 15:50 is dropped at the end of daylight, never fires at night */
	alert_free(e);
	e = fx_engine(cfg);
	for (int64_t ts = DAY0 + 15 * H + 50 * M; ts < DAY0 + 20 * H; ts += M)
		feed(e, 0, ts, 0, 0, &o);
	assert_int_equal(o.nt, 0);
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void test_offline_no_output(void **state)
{
	struct config *cfg = fx_load(one_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };

	(void)state;
	/* pending from 10:00, offline from 10:10 for two hours: comms fires, not no_output */
	for (int64_t ts = DAY0 + 10 * H; ts < DAY0 + 10 * H + 10 * M; ts += M)
		feed(e, 0, ts, 0, 0, &o);
	for (int64_t ts = DAY0 + 10 * H + 10 * M; ts < DAY0 + 12 * H; ts += M)
		feed(e, 0, ts, NAN, 0, &o);
	dump(&o);
	assert_null(find(&o, "roof", "no_output", ALERT_FIRING));
	assert_non_null(find(&o, "comms-inv1", "offline", ALERT_FIRING));
	assert_int_equal(o.nt, 1);
	alert_out_reset(&o);
	/* polls that stop coming at all (ticks only): the pending check is dropped */
	alert_free(e);
	e = fx_engine(cfg);
	feed(e, 0, DAY0 + 10 * H, 0, 0, &o);
	for (int64_t ts = DAY0 + 10 * H; ts < DAY0 + 12 * H; ts += 10 * S)
		assert_int_equal(alert_tick(e, ts, &o), 0);
	dump(&o);
	assert_null(find(&o, "roof", "no_output", ALERT_FIRING));
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void test_low_output(void **state)
{
	struct config *cfg = fx_load(one_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	const struct alert_transition *t;

	(void)state;
	/* 5 % of 10 kW from 10:00 (in the middle half of 08:00-16:00, i.e. 10:00-14:00) */
	for (int64_t ts = DAY0 + 10 * H; ts < DAY0 + 11 * H; ts += M)
		feed(e, 0, ts, 500, 0, &o);
	dump(&o);
	assert_int_equal(o.nt, 1);
	assert_non_null(t = find(&o, "roof", "low_output", ALERT_FIRING));
	assert_int_equal(t->ts_ms, DAY0 + 10 * H + 30 * M);
	assert_int_equal(t->severity, SEV_ORANGE);
	assert_true(t->value == 500);
	assert_true(t->threshold == 1000);
	assert_non_null(strstr(t->message, "5.0 % of rated power (500 of 10000 W), below 10 %"));
	alert_out_reset(&o);
	/* hovering just above the limit (and dropping to zero once): hysteresis holds it */
	for (int64_t ts = DAY0 + 11 * H; ts < DAY0 + 12 * H; ts += M)
		feed(e, 0, ts, (ts / M) % 2 ? 1100 : (ts / M) % 7 ? 900 : 0, 0, &o);
	assert_int_equal(o.nt, 0);
	feed(e, 0, DAY0 + 12 * H, 1600, 0, &o);
	assert_non_null(t = find(&o, "roof", "low_output", ALERT_RESOLVED));
	assert_int_equal(t->severity, SEV_ORANGE);
	assert_non_null(strstr(t->message, "back at 16.0 %"));
	assert_int_equal(o.nt, 1);
	alert_out_reset(&o);
	/* low output only after 14:00 (outside the middle half): nothing */
	for (int64_t ts = DAY0 + 14 * H; ts < DAY0 + 16 * H; ts += M)
		feed(e, 0, ts, 500, 0, &o);
	assert_int_equal(o.nt, 0);
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* A week of sunny days, from 06:00 to 18:00, with a cloudy hour at dawn and at dusk
 * whose output wanders across 10 % of rated every few minutes: not one transition. */
static double sun(int64_t ts, unsigned *seed)
{
	int64_t tod = (ts - DAY0) % D;
	double x = (double)(tod - 6 * H) / (double)(12 * H);

	if (x <= 0 || x >= 1)
		return 0;
	*seed = *seed * 1103515245u + 12345u;
	if ((tod >= 7 * H && tod < 9 * H) || (tod >= 15 * H && tod < 17 * H))
		return 200 + (double)(*seed >> 16 & 0x7ff); /* 200..2247 W: clouds */
	return 8000 * sin(M_PI * x) + (double)(*seed >> 16 & 0xff);
}

static void test_dawn_dusk(void **state)
{
	struct config *cfg = fx_load(one_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	unsigned seed = 1;
	size_t crossings = 0;
	bool below = false;

	(void)state;
	for (int64_t ts = DAY0; ts < DAY0 + 7 * D; ts += M) {
		double w = sun(ts, &seed);
		if ((w < 1000) != below && w > 0)
			crossings++;
		below = w < 1000;
		feed(e, 0, ts, w, 0, &o);
	}
	dump(&o);
	assert_true(crossings > 100); /* the test does wander across the limit */
	assert_int_equal(o.nt, 0);
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static const char three_cfg[] = HEAD "devices:\n" INV("a", "1") INV("b", "2") INV("c", "3")
	"alerts:\n"
	"  - { id: pv-a, kind: pv, inverter: a, power: a.power, rated_power: 10kW, for: 20m }\n"
	"  - { id: pv-b, kind: pv, inverter: b, power: b.power, rated_power: 10kW, for: 20m }\n"
	"  - { id: pv-c, kind: pv, inverter: c, power: c.power, rated_power: 20kW, for: 20m,\n"
	"      severity: red, daylight: { from: \"07:00\", to: \"17:00\" } }\n";

static void test_peer(void **state)
{
	struct config *cfg = fx_load(three_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	const struct alert_transition *t;

	(void)state;
	/* night: all at zero, nothing; morning: all alike (c is twice the size), nothing */
	for (int64_t ts = DAY0; ts < DAY0 + 10 * H; ts += M) {
		double k = ts < DAY0 + 6 * H ? 0 : (double)(ts - DAY0 - 6 * H) / (double)(4 * H);
		feed(e, 0, ts, 7000 * k, 0, &o);
		feed(e, 1, ts + S, 7200 * k, 0, &o);
		feed(e, 2, ts + 2 * S, 14000 * k, 0, &o);
	}
	dump(&o);
	assert_int_equal(o.nt, 0);
	/* from 10:00, c gives 30 % of what the others give */
	for (int64_t ts = DAY0 + 10 * H; ts < DAY0 + 11 * H; ts += M) {
		feed(e, 0, ts, 7000, 0, &o);
		feed(e, 1, ts + S, 7200, 0, &o);
		feed(e, 2, ts + 2 * S, 0.3 * 14000, 0, &o);
	}
	dump(&o);
	assert_int_equal(o.nt, 1);
	assert_non_null(t = find(&o, "pv-c", "peer", ALERT_FIRING));
	assert_int_equal(t->severity, SEV_RED);
	assert_int_equal(t->ts_ms, DAY0 + 10 * H + 20 * M + 2 * S);
	assert_float_equal(t->value, 0.21, 1e-9); /* its own share of rated power */
	assert_float_equal(t->threshold, 0.5 * 0.71, 1e-9);
	assert_non_null(strstr(t->message, "at 30 % of its peers' output (21.0 % of rated, median of 2 peers 71.0 %), below 50 %"));
	alert_out_reset(&o);
	/* a is offline: only one peer left for c, so no comparison, but c's alert holds */
	for (int64_t ts = DAY0 + 11 * H; ts < DAY0 + 12 * H; ts += M) {
		feed(e, 0, ts, NAN, 0, &o);
		feed(e, 1, ts + S, 7200, 0, &o);
		feed(e, 2, ts + 2 * S, 0.3 * 14000, 0, &o);
	}
	assert_null(find(&o, "pv-c", "peer", ALERT_RESOLVED));
	assert_null(find(&o, "pv-b", "peer", ALERT_FIRING));
	alert_out_reset(&o);
	/* repaired */
	feed(e, 0, DAY0 + 12 * H, 7000, 0, &o);
	feed(e, 1, DAY0 + 12 * H + S, 7200, 0, &o);
	feed(e, 2, DAY0 + 12 * H + 2 * S, 14100, 0, &o);
	assert_non_null(t = find(&o, "pv-c", "peer", ALERT_RESOLVED));
	assert_int_equal(t->severity, SEV_RED);
	assert_non_null(strstr(t->message, "back at"));
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static const char ss_cfg[] = HEAD "devices:\n" INV("a", "1") INV("b", "2")
	"  - { id: ss, bus: b, unit_id: 3, profile: sunspec, name: 屋顶逆变器 }\n"
	"alerts:\n"
	"  - id: roof\n"
	"    kind: pv\n"
	"    inverter: ss\n"
	"    daylight: { from: \"08:00\", to: \"16:00\" }\n"
	"    for: 10m\n"
	"  - { id: pv-a, kind: pv, inverter: a, power: a.power, rated_power: 10kW }\n"
	"  - { id: pv-b, kind: pv, inverter: b, power: b.power, rated_power: 10kW }\n";

/* What SunSpec discovery leaves in the device's point list (names as the models say). */
static void discover(struct device_cfg *d)
{
	static const char *const names[] = { "Mn", "W", "St", "Evt1", "WRtg" };

	d->npoints = 5;
	d->points = calloc(d->npoints, sizeof *d->points);
	assert_non_null(d->points);
	for (size_t i = 0; i < d->npoints; i++) {
		snprintf(d->points[i].name, sizeof d->points[i].name, "%s", names[i]);
		d->points[i].scale = 1;
	}
	snprintf(d->points[1].unit, sizeof d->points[1].unit, "W");
	snprintf(d->points[4].unit, sizeof d->points[4].unit, "W");
}

static void feed_ss(struct alert_engine *e, int64_t ts, double w, unsigned st, uint32_t evt,
		    struct alert_out *o)
{
	struct value v[5] = { { .kind = VAL_STRING, .s = "SIM" }, { .kind = VAL_DOUBLE },
			      { .kind = VAL_UINT }, { .kind = VAL_UINT }, { .kind = VAL_DOUBLE } };

	v[1].v.d = w;
	v[2].v.u = st;
	v[3].v.u = evt;
	v[4].v.d = 20000;
	assert_int_equal(alert_feed(e, 2, ts, v, 5, o), 0);
	assert_int_equal(alert_tick(e, ts, o), 0);
}

static void test_sunspec(void **state)
{
	struct config *cfg = fx_load(ss_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	const struct alert_transition *t;

	(void)state;
	/* before discovery the device has no points: a reading of nothing decides nothing */
	assert_int_equal(alert_feed(e, 2, DAY0 + 10 * H, NULL, 0, &o), 0);
	assert_int_equal(o.nt, 0);
	discover(&cfg->devices[2]);
	/* St = 7 FAULT, then an over-temperature event bit */
	feed_ss(e, DAY0 + 10 * H, 15000, 4, 0, &o);
	assert_int_equal(o.nt, 0);
	feed_ss(e, DAY0 + 10 * H + M, 0, 7, 0, &o);
	assert_non_null(t = find(&o, "roof", "fault", ALERT_FIRING));
	assert_int_equal(t->severity, SEV_YELLOW);
	assert_non_null(strstr(t->message, "屋顶逆变器"));
	assert_non_null(strstr(t->message, "state FAULT"));
	alert_out_reset(&o);
	feed_ss(e, DAY0 + 10 * H + 2 * M, 15000, 4, 1u << 7, &o);
	assert_int_equal(o.nt, 0); /* still in alarm */
	{
		struct alert_transition act[8];
		assert_int_equal(alert_active(e, act, 8), 1);
		assert_string_equal(act[0].check, "fault");
		assert_int_equal(act[0].state, ALERT_FIRING);
		assert_non_null(strstr(act[0].message, "events OVER_TEMP"));
	}
	feed_ss(e, DAY0 + 10 * H + 3 * M, 15000, 4, 0, &o);
	assert_non_null(t = find(&o, "roof", "fault", ALERT_RESOLVED));
	alert_out_reset(&o);
	/* low output against the nameplate WRtg = 20 kW (no rated_power: given): 1 kW */
	for (int64_t ts = DAY0 + 11 * H; ts < DAY0 + 11 * H + 15 * M; ts += M)
		feed_ss(e, ts, 1000, 4, 0, &o);
	assert_non_null(t = find(&o, "roof", "low_output", ALERT_FIRING));
	assert_true(t->threshold == 2000);
	assert_int_equal(t->ts_ms, DAY0 + 11 * H + 10 * M);
	/* an unanswered SunSpec poll: the W point failed */
	alert_out_reset(&o);
	{
		struct value v[5] = { { 0 } };
		for (int64_t ts = DAY0 + 12 * H; ts < DAY0 + 13 * H; ts += M) {
			assert_int_equal(alert_feed(e, 2, ts, v, 5, &o), 0);
			assert_int_equal(alert_tick(e, ts, &o), 0);
		}
	}
	assert_null(find(&o, "roof", "no_output", ALERT_FIRING));
	assert_null(find(&o, "roof", "low_output", ALERT_RESOLVED));
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* The way sunspec_setup hands over the nameplate: rated_power_w filled in the rule after
 * the engine was built, and the W point found by name, with no WRtg point. */
static void test_sunspec_rated_from_setup(void **state)
{
	struct config *cfg = fx_load(ss_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	const struct alert_transition *t;

	(void)state;
	discover(&cfg->devices[2]);
	snprintf(cfg->devices[2].points[4].name, sizeof cfg->devices[2].points[4].name, "X");
	cfg->rules[0].rated_power_w = 50000;
	for (int64_t ts = DAY0 + 11 * H; ts < DAY0 + 11 * H + 15 * M; ts += M)
		feed_ss(e, ts, 4000, 4, 0, &o);
	assert_non_null(t = find(&o, "roof", "low_output", ALERT_FIRING));
	assert_true(t->threshold == 5000);
	assert_non_null(strstr(t->message, "(4000 of 50000 W)"));
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* A firing low_output survives a restart without firing again, and resolves after it. */
static void test_save_restore(void **state)
{
	struct config *cfg = fx_load(one_cfg);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	char err[128], *blob;

	(void)state;
	for (int64_t ts = DAY0 + 10 * H; ts < DAY0 + 11 * H; ts += M)
		feed(e, 0, ts, 500, 0, &o);
	assert_non_null(find(&o, "roof", "low_output", ALERT_FIRING));
	assert_non_null(blob = alert_save(e));
	assert_non_null(strstr(blob, "\troof\tpv\t"));
	alert_free(e);
	alert_out_reset(&o);
	e = fx_engine(cfg);
	assert_int_equal(alert_restore(e, blob, err, sizeof err), 0);
	free(blob);
	feed(e, 0, DAY0 + 11 * H, 500, 0, &o);
	assert_int_equal(o.nt, 0);
	feed(e, 0, DAY0 + 11 * H + M, 5000, 0, &o);
	assert_non_null(find(&o, "roof", "low_output", ALERT_RESOLVED));
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_checks_made),
		cmocka_unit_test(test_fault),
		cmocka_unit_test(test_no_output),
		cmocka_unit_test(test_no_output_holds_overnight),
		cmocka_unit_test(test_offline_no_output),
		cmocka_unit_test(test_low_output),
		cmocka_unit_test(test_dawn_dusk),
		cmocka_unit_test(test_peer),
		cmocka_unit_test(test_sunspec),
		cmocka_unit_test(test_sunspec_rated_from_setup),
		cmocka_unit_test(test_save_restore),
	};

	setenv("TZ", "Asia/Shanghai", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
