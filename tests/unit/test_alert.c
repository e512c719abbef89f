/*
 * test_alert: the alert engine's state machine, threshold, comms, waterlogging and
 * persistence, on small configs written to a temporary file. Times are made up and
 * passed in, as the engine never reads a clock.
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

#define T0 1700000000000LL /* 2023-11-14 22:13:20 UTC */
#define S 1000LL
#define M (60 * S)

static const char head[] =
	"gateway: { id: gw, timezone: UTC }\n"
	"uplink: { host: 127.0.0.1 }\n"
	"buses:\n"
	"  - { id: b, tcp: { host: 127.0.0.1 } }\n"
	"devices:\n"
	"  - id: pump\n"
	"    name: 加压泵站\n"
	"    bus: b\n"
	"    offline_after: 3\n"
	"    points:\n"
	"      pressure: { table: holding, address: 0, type: float32, unit: MPa }\n"
	"  - id: gauge\n"
	"    name: 新华路下穿道\n"
	"    bus: b\n"
	"    unit_id: 2\n"
	"    points:\n"
	"      level: { table: holding, address: 0, type: float32, unit: m }\n"
	"  - id: sign\n"
	"    bus: b\n"
	"    unit_id: 3\n"
	"    points:\n"
	"      lamp: { table: coil, address: 0, type: bool, writable: true }\n"
	"alerts:\n";

static struct config *load_rules(const char *rules)
{
	return fx_load2(head, rules);
}

/* Feed one double (NAN: a failed poll) to a one-point device; reset out first. */
static void feed1(struct alert_engine *e, size_t dev, int64_t ts, double x, struct alert_out *o)
{
	struct value v = { 0 };

	if (isnan(x)) {
		v.kind = VAL_NONE;
		v.err = 1;
	} else {
		v.kind = VAL_DOUBLE;
		v.v.d = x;
	}
	alert_out_reset(o);
	assert_int_equal(alert_feed(e, dev, ts, &v, 1, o), 0);
}

static void expect_t(const struct alert_out *o, size_t i, const char *rule, const char *check,
		     int state, int sev)
{
	assert_true(i < o->nt);
	assert_string_equal(o->t[i].rule, rule);
	assert_string_equal(o->t[i].check, check);
	assert_int_equal(o->t[i].state, state);
	assert_int_equal(o->t[i].severity, sev);
}

/* ---- threshold ---------------------------------------------------------------------- */

static const char thr_rules[] =
	"  - id: low\n"
	"    kind: threshold\n"
	"    point: pump.pressure\n"
	"    below: 0.15\n"
	"    hysteresis: 0.01\n"
	"    for: 2m\n"
	"    severity: orange\n";

static void test_threshold_for_and_hysteresis(void **state)
{
	struct config *cfg = load_rules(thr_rules);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };

	(void)state;
	feed1(e, 0, T0, 0.20, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0 + 10 * S, 0.12, &o); /* pending */
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0 + 70 * S, 0.16, &o); /* back before 'for': no alert */
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0 + 80 * S, 0.12, &o);
	feed1(e, 0, T0 + 190 * S, 0.13, &o); /* 110 s: still pending */
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0 + 200 * S, 0.13, &o); /* 120 s */
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "low", "below", ALERT_FIRING, SEV_ORANGE);
	assert_true(o.t[0].ts_ms == T0 + 200 * S);
	assert_true(fabs(o.t[0].value - 0.13) < 1e-9);
	assert_true(fabs(o.t[0].threshold - 0.15) < 1e-9);
	assert_string_equal(o.t[0].unit, "MPa");
	assert_true(o.t[0].value_f32);      /* a float32 point's reading */
	assert_false(o.t[0].threshold_f32); /* the config's limit */
	assert_non_null(strstr(o.t[0].message, "pressure 0.13 MPa below 0.15 MPa at 加压泵站"));
	/* inside the hysteresis band: stays firing, nothing new */
	feed1(e, 0, T0 + 210 * S, 0.155, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0 + 220 * S, 0.12, &o);
	assert_int_equal(o.nt, 0);
	/* a failed poll decides nothing */
	feed1(e, 0, T0 + 225 * S, NAN, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0 + 230 * S, 0.161, &o);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "low", "below", ALERT_RESOLVED, SEV_ORANGE);

	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void test_threshold_tick_fires_pending(void **state)
{
	struct config *cfg = load_rules(thr_rules);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	struct alert_transition act[4];

	(void)state;
	feed1(e, 0, T0, 0.10, &o);
	assert_int_equal(alert_active(e, act, 4), 1);
	assert_int_equal(act[0].state, ALERT_PENDING);
	alert_out_reset(&o);
	assert_int_equal(alert_tick(e, T0 + 119 * S, &o), 0);
	assert_int_equal(o.nt, 0);
	assert_int_equal(alert_tick(e, T0 + 121 * S, &o), 0);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "low", "below", ALERT_FIRING, SEV_ORANGE);
	assert_true(o.t[0].ts_ms == T0 + 120 * S); /* when the 'for' ran out */
	alert_out_reset(&o);
	assert_int_equal(alert_tick(e, T0 + 200 * S, &o), 0);
	assert_int_equal(o.nt, 0); /* fires once */
	assert_int_equal(alert_active(e, act, 4), 1);
	assert_int_equal(act[0].state, ALERT_FIRING);
	/* every check, firing or not, with what a firing one fired with */
	{
		struct alert_transition all[16];
		size_t n = alert_checks(e, all, 16), firing = 0;

		assert_true(n >= 2 && n <= 16);
		assert_int_equal(alert_checks(e, NULL, 0), n);
		for (size_t i = 0; i < n; i++) {
			if (all[i].state != ALERT_FIRING) {
				assert_int_equal(all[i].state, ALERT_OK);
				continue;
			}
			firing++;
			assert_string_equal(all[i].rule, "low");
			assert_string_equal(all[i].check, "below");
			assert_int_equal(all[i].severity, SEV_ORANGE);
			assert_true(all[i].ts_ms == T0 + 120 * S);
			assert_string_equal(all[i].unit, "MPa");
		}
		assert_int_equal(firing, 1);
	}

	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* ---- comms -------------------------------------------------------------------------- */

static void test_comms_offline(void **state)
{
	struct config *cfg = load_rules(thr_rules);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };

	(void)state;
	feed1(e, 0, T0, 0.2, &o);
	feed1(e, 0, T0 + 10 * S, NAN, &o);
	feed1(e, 0, T0 + 20 * S, NAN, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0 + 30 * S, NAN, &o);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "comms-pump", "offline", ALERT_FIRING, SEV_YELLOW);
	assert_non_null(strstr(o.t[0].message, "offline: 3 polls in a row failed"));
	feed1(e, 0, T0 + 40 * S, NAN, &o);
	assert_int_equal(o.nt, 0);
	/* another device's failures are its own */
	feed1(e, 1, T0 + 40 * S, NAN, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0 + 50 * S, 0.2, &o);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "comms-pump", "offline", ALERT_RESOLVED, SEV_YELLOW);

	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* A reading reaches the rules that name its device, in the config's order, and no
 * other (alert_feed visits each device's rules only). */
static void test_rules_see_their_devices_only(void **state)
{
	struct config *cfg = load_rules("  - { id: hi_pump, kind: threshold, point: pump.pressure, "
					"above: 1 }\n"
					"  - { id: hi_level, kind: threshold, point: gauge.level, "
					"above: 1 }\n"
					"  - { id: hi_pump2, kind: threshold, point: pump.pressure, "
					"above: 2, severity: red }\n");
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };

	(void)state;
	feed1(e, 2, T0, 5, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 0, T0, 5, &o);
	assert_int_equal(o.nt, 2);
	expect_t(&o, 0, "hi_pump", "above", ALERT_FIRING, SEV_YELLOW);
	expect_t(&o, 1, "hi_pump2", "above", ALERT_FIRING, SEV_RED);
	feed1(e, 1, T0 + S, 5, &o);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "hi_level", "above", ALERT_FIRING, SEV_YELLOW);
	feed1(e, 1, T0 + 2 * S, 0, &o);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "hi_level", "above", ALERT_RESOLVED, SEV_YELLOW);
	/* the pump's alerts were left as they were by the gauge's readings */
	feed1(e, 0, T0 + 3 * S, 1.5, &o);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "hi_pump2", "above", ALERT_RESOLVED, SEV_RED);
	/* a device the config does not have */
	feed1(e, 3, T0 + 4 * S, 5, &o);
	assert_int_equal(o.nt, 0);

	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* ---- waterlogging ------------------------------------------------------------------- */

static const char wl_rules[] =
	"  - id: xinhua\n"
	"    kind: waterlogging\n"
	"    point: gauge.level\n"
	"    levels: { blue: 0.10, yellow: 0.15, orange: 0.27, red: 0.40 }\n"
	"    hysteresis: 0.02\n"
	"    spike: 0.5\n"
	"    on_fire:\n"
	"      - { severity: red, write: sign.lamp, value: 1 }\n"
	"    on_resolve:\n"
	"      - { write: sign.lamp, value: 0 }\n";

static void test_waterlogging_grades(void **state)
{
	struct config *cfg = load_rules(wl_rules);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	int64_t t = T0;

	(void)state;
	feed1(e, 1, t += M, 0.00, &o);
	feed1(e, 1, t += M, 0.09, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t += M, 0.11, &o);
	expect_t(&o, 0, "xinhua", "level", ALERT_FIRING, SEV_BLUE);
	feed1(e, 1, t += M, 0.31, &o); /* two grades at once: one transition, at orange */
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "xinhua", "level", ALERT_FIRING, SEV_ORANGE);
	assert_string_equal(o.t[0].message,
			    "water 0.31 m above the road at 新华路下穿道 (orange ≥ 0.27 m)");
	assert_int_equal(o.na, 0);
	feed1(e, 1, t += M, 0.41, &o);
	expect_t(&o, 0, "xinhua", "level", ALERT_FIRING, SEV_RED);
	assert_int_equal(o.na, 1); /* the red lamp */
	assert_int_equal(o.a[0].device, 2);
	assert_int_equal(o.a[0].point, 0);
	assert_true(o.a[0].value == 1);
	/* hysteresis: 0.39 stays red, 0.379 goes orange */
	feed1(e, 1, t += M, 0.39, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t += M, 0.379, &o);
	expect_t(&o, 0, "xinhua", "level", ALERT_FIRING, SEV_ORANGE);
	assert_int_equal(o.na, 0);
	feed1(e, 1, t += M, 0.26, &o); /* within orange's band */
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t += M, 0.2, &o);
	expect_t(&o, 0, "xinhua", "level", ALERT_FIRING, SEV_YELLOW);
	feed1(e, 1, t += M, 0.09, &o); /* blue band: 0.08 .. */
	expect_t(&o, 0, "xinhua", "level", ALERT_FIRING, SEV_BLUE);
	feed1(e, 1, t += M, 0.07, &o);
	expect_t(&o, 0, "xinhua", "level", ALERT_RESOLVED, SEV_BLUE);
	assert_int_equal(o.na, 1); /* lamp off */
	assert_true(o.a[0].value == 0);

	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void test_waterlogging_spikes(void **state)
{
	struct config *cfg = load_rules(wl_rules);
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	int64_t t = T0;

	(void)state;
	feed1(e, 1, t += M, 0.02, &o);
	feed1(e, 1, t += M, 0.90, &o); /* a car */
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t += M, 0.03, &o);
	assert_int_equal(o.nt, 0);
	assert_int_equal(o.nn, 1); /* said so */
	assert_non_null(strstr(o.n[0].message, "spike rejected"));
	/* a real jump is confirmed by the next sample: taken, one sample late */
	feed1(e, 1, t += M, 0.80, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t += M, 0.82, &o);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "xinhua", "level", ALERT_FIRING, SEV_RED);
	assert_true(o.t[0].ts_ms == t - M); /* at the sample that jumped */

	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void test_waterlogging_rise_and_stuck(void **state)
{
	struct config *cfg = load_rules("  - id: r\n"
				  "    kind: waterlogging\n"
				  "    point: gauge.level\n"
				  "    rise: { by: 0.05, within: 10m }\n"
				  "    stuck: { for: 1h, tolerance: 0.001 }\n"
				  "    spike: 0\n");
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	int64_t t = T0;

	(void)state;
	feed1(e, 1, t, 0.0, &o);
	for (int i = 1; i <= 5; i++) {
		feed1(e, 1, t + i * 5 * M, 0.02 * i, &o); /* 0.02 m per 5 min */
		if (i < 3)
			assert_int_equal(o.nt, 0);
		if (i == 3) {
			/* 0.06 - 0.02 = 0.04 within 10 min: not yet; 0.06 - 0.00 at 15 min: out */
			assert_int_equal(o.nt, 0);
		}
	}
	/* steeper: 0.06 m in 5 min (0.08 over the 10 min window, its start included) */
	t += 30 * M;
	feed1(e, 1, t, 0.16, &o);
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "r", "rise", ALERT_FIRING, SEV_YELLOW);
	assert_true(fabs(o.t[0].value - 0.08) < 1e-9);
	assert_true(o.t[0].value_f32); /* a difference of two float32 levels */
	assert_false(o.t[0].threshold_f32);
	feed1(e, 1, t + 20 * M, 0.16, &o);
	expect_t(&o, 0, "r", "rise", ALERT_RESOLVED, SEV_YELLOW);
	/* flat since t (noise within the tolerance): stuck once an hour has passed */
	for (int i = 1; i <= 4; i++) {
		feed1(e, 1, t + 20 * M + i * 10 * M, 0.16 + (i % 2) * 0.0005, &o);
		if (i < 4)
			assert_int_equal(o.nt, 0);
	}
	expect_t(&o, 0, "r", "stuck", ALERT_FIRING, SEV_BLUE);
	assert_non_null(strstr(o.t[0].message, "stuck at 0.160 m for 1 h"));
	assert_false(o.t[0].value_f32); /* a time */
	feed1(e, 1, t + 90 * M, 0.20, &o);
	expect_t(&o, 0, "r", "stuck", ALERT_RESOLVED, SEV_BLUE);

	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* A rise that resolves because the water went down again says so: how far it fell from
 * its peak and over how long, not "steady, +0.00" (the window's minimum is the new low,
 * so the rise within the window is 0 whichever way the level went). */
static void test_waterlogging_rise_resolves_with_the_fall(void **state)
{
	struct config *cfg = load_rules("  - id: r\n"
				  "    kind: waterlogging\n"
				  "    point: gauge.level\n"
				  "    rise: { by: 0.30, within: 30m }\n"
				  "    spike: 0\n");
	struct alert_engine *e = fx_engine(cfg), *e2;
	struct alert_out o = { 0 };
	int64_t t = T0;
	char *blob, err[128];

	(void)state;
	feed1(e, 1, t, 0.10, &o);
	feed1(e, 1, t + 5 * M, 0.30, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t + 10 * M, 0.45, &o);
	expect_t(&o, 0, "r", "rise", ALERT_FIRING, SEV_YELLOW);
	feed1(e, 1, t + 15 * M, 0.62, &o); /* the peak */
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t + 25 * M, 0.45, &o); /* 0.35 above the window's low: still firing */
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t + 35 * M, 0.10, &o); /* 52 cm below the peak, 20 min after it */
	assert_int_equal(o.nt, 1);
	expect_t(&o, 0, "r", "rise", ALERT_RESOLVED, SEV_YELLOW);
	fprintf(stderr, "  %s\n", o.t[0].message);
	assert_string_equal(o.t[0].message, "water fell 0.52 m in 20 min at 新华路下穿道, from "
			    "0.62 m to 0.10 m");

	/* up again, then level: the window's rise falls under the limit, no fall */
	feed1(e, 1, t + 40 * M, 0.30, &o);
	feed1(e, 1, t + 45 * M, 0.50, &o);
	expect_t(&o, 0, "r", "rise", ALERT_FIRING, SEV_YELLOW);
	feed1(e, 1, t + 55 * M, 0.52, &o);
	assert_int_equal(o.nt, 0);
	feed1(e, 1, t + 70 * M, 0.52, &o); /* 0.52 - 0.30 within 30 min */
	expect_t(&o, 0, "r", "rise", ALERT_RESOLVED, SEV_YELLOW);
	fprintf(stderr, "  %s\n", o.t[0].message);
	assert_string_equal(o.t[0].message, "water rising slower at 新华路下穿道: 0.52 m, "
			    "+0.22 m within 30 min (rise < 0.30 m)");

	/* a firing rise keeps its peak across a restart */
	feed1(e, 1, t + 85 * M, 0.20, &o);
	feed1(e, 1, t + 90 * M, 0.60, &o);
	expect_t(&o, 0, "r", "rise", ALERT_FIRING, SEV_YELLOW);
	blob = alert_save(e);
	assert_non_null(blob);
	e2 = fx_engine(cfg);
	assert_int_equal(alert_restore(e2, blob, err, sizeof err), 0);
	free(blob);
	feed1(e2, 1, t + 95 * M, 0.55, &o);
	assert_int_equal(o.nt, 0);
	feed1(e2, 1, t + 100 * M, 0.05, &o);
	expect_t(&o, 0, "r", "rise", ALERT_RESOLVED, SEV_YELLOW);
	assert_string_equal(o.t[0].message, "water fell 0.55 m in 10 min at 新华路下穿道, from "
			    "0.60 m to 0.05 m");

	/* the next sample after a gap longer than the window, at the same level: steady */
	feed1(e2, 1, t + 110 * M, 0.50, &o);
	expect_t(&o, 0, "r", "rise", ALERT_FIRING, SEV_YELLOW);
	feed1(e2, 1, t + 150 * M, 0.50, &o);
	expect_t(&o, 0, "r", "rise", ALERT_RESOLVED, SEV_YELLOW);
	assert_string_equal(o.t[0].message, "water steady at 新华路下穿道: 0.50 m, +0.00 m "
			    "within 30 min");

	alert_out_free(&o);
	alert_free(e2);
	alert_free(e);
	config_free(cfg);
}

/* ---- persistence -------------------------------------------------------------------- */

static void test_persistence(void **state)
{
	struct config *cfg = load_rules(wl_rules);
	struct alert_engine *e = fx_engine(cfg), *e2;
	struct alert_out o = { 0 };
	struct alert_transition act[8];
	char err[128], *blob;
	int64_t t = T0;

	(void)state;
	feed1(e, 1, t += M, 0.30, &o);
	expect_t(&o, 0, "xinhua", "level", ALERT_FIRING, SEV_ORANGE);
	feed1(e, 0, t, NAN, &o);
	feed1(e, 0, t, NAN, &o); /* two failed polls of pump: remembered */
	blob = alert_save(e);
	assert_non_null(blob);
	alert_free(e);

	e2 = fx_engine(cfg);
	assert_int_equal(alert_restore(e2, blob, err, sizeof err), 0);
	free(blob);
	assert_int_equal(alert_active(e2, act, 8), 1);
	assert_string_equal(act[0].rule, "xinhua");
	assert_int_equal(act[0].state, ALERT_FIRING);
	assert_int_equal(act[0].severity, SEV_ORANGE);
	assert_non_null(strstr(act[0].message, "orange"));
	feed1(e2, 1, t += M, 0.30, &o); /* does not fire twice */
	assert_int_equal(o.nt, 0);
	feed1(e2, 0, t, NAN, &o); /* the third failure in a row */
	expect_t(&o, 0, "comms-pump", "offline", ALERT_FIRING, SEV_YELLOW);
	feed1(e2, 1, t += M, 0.0, &o);
	expect_t(&o, 0, "xinhua", "level", ALERT_RESOLVED, SEV_ORANGE);
	assert_int_equal(o.na, 1);

	/* garbage is refused; a blob from another config keeps what matches */
	assert_int_equal(alert_restore(e2, "nonsense\n", err, sizeof err), -1);
	assert_int_equal(alert_restore(e2, "sluice-alert 1\nc\tgone\tlevel\t2\t1\t1\t0\t0\t0\t0\tm\tx\n"
					   "c\txinhua\tnope\t2\n\ts\n\n",
				       err, sizeof err), 0);
	alert_out_free(&o);
	alert_free(e2);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threshold_for_and_hysteresis),
		cmocka_unit_test(test_threshold_tick_fires_pending),
		cmocka_unit_test(test_comms_offline),
		cmocka_unit_test(test_rules_see_their_devices_only),
		cmocka_unit_test(test_waterlogging_grades),
		cmocka_unit_test(test_waterlogging_spikes),
		cmocka_unit_test(test_waterlogging_rise_and_stuck),
		cmocka_unit_test(test_waterlogging_rise_resolves_with_the_fall),
		cmocka_unit_test(test_persistence),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
