/*
 * test_alert_clock: a step of the wall clock (alert_clock_step) neither stalls nor
 * bursts the alert engine. For each rule kind one stream of readings runs three times:
 * on a right clock, and on a clock that is wrong by an hour (either way) until it is
 * stepped right in the middle of the stream, as NTP does after a boot without RTC. The
 * transitions must be the same, at the same true times (within a poll). Then: a pending
 * 'for' that neither stalls nor fires early, a night with a known leak, a step back into
 * a night and after it, readings stamped by the old clock that arrive after the step, and
 * state restored from another run that a step must leave alone.
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
#define DAY0 1709251200000LL /* 2024-03-01 00:00 UTC */
#define MAXT 64

static void set_tz(const char *tz)
{
	setenv("TZ", tz, 1); /* the engine's local time is the process's */
	tzset();
}

/* One value to one point of dev (NAN: a failed poll). */
static void feed1(struct alert_engine *e, size_t dev, int64_t ts, double x, struct alert_out *o)
{
	struct value v = { .kind = VAL_DOUBLE };

	if (isnan(x)) {
		v.kind = VAL_NONE;
		v.err = 1;
	} else {
		v.v.d = x;
	}
	assert_int_equal(alert_feed(e, dev, ts, &v, 1, o), 0);
}

/* ---- a stream, run on a right clock and on a stepped one ----------------------------- */

struct stream {
	const char *name;
	int64_t t0;      /* true time at elapsed 0 */
	int64_t poll, dur;
	/* feed every device at elapsed el, stamped ts */
	void (*feed)(struct alert_engine *e, int64_t el, int64_t ts, struct alert_out *o);
};

struct got {
	char rule[ID_MAX], check[ALERT_CHECK_MAX];
	int state, sev;
	int64_t el;      /* true time of the transition, from t0 */
	int64_t wrong;   /* decided before the step, on a clock this wrong */
};

struct result {
	struct got t[MAXT];
	size_t nt;
	size_t replaced, clock_notes, night_skips, notes;
};

/* Transitions and notes of o; before the step the clock read wrong by -delta. */
static void collect(struct result *res, const struct stream *s, struct alert_out *o,
		    int64_t wrong)
{
	for (size_t i = 0; i < o->nt; i++) {
		struct got *g = &res->t[res->nt];

		assert_true(res->nt < MAXT);
		res->nt++;
		snprintf(g->rule, sizeof g->rule, "%s", o->t[i].rule);
		snprintf(g->check, sizeof g->check, "%s", o->t[i].check);
		g->state = o->t[i].state;
		g->sev = o->t[i].severity;
		g->el = o->t[i].ts_ms - s->t0 + wrong;
		g->wrong = wrong;
	}
	for (size_t i = 0; i < o->nn; i++) {
		res->notes++;
		if (strstr(o->n[i].message, "reset or replaced"))
			res->replaced++;
		if (!strcmp(o->n[i].check, "clock"))
			res->clock_notes++;
		if (strstr(o->n[i].message, "decided already"))
			res->night_skips++;
	}
	alert_out_reset(o);
}

/*
 * The stream on a clock that reads t - delta until elapsed step_at, when it is stepped
 * by delta (delta 0: a right clock throughout). Each poll feeds, then ticks.
 */
static void run(const struct stream *s, const struct config *cfg, int64_t step_at, int64_t delta,
		struct result *res)
{
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	bool stepped = delta == 0;

	memset(res, 0, sizeof *res);
	for (int64_t el = 0; el <= s->dur; el += s->poll) {
		int64_t ts;

		if (!stepped && el >= step_at) {
			alert_clock_step(e, delta);
			stepped = true;
		}
		ts = s->t0 + el - (stepped ? 0 : delta);
		s->feed(e, el, ts, &o);
		assert_int_equal(alert_tick(e, ts, &o), 0);
		collect(res, s, &o, stepped ? 0 : delta);
	}
	alert_out_free(&o);
	alert_free(e);
}

static void dump(const char *what, const struct result *r)
{
	fprintf(stderr, "  %s: %zu transitions, %zu notes\n", what, r->nt, r->notes);
	for (size_t i = 0; i < r->nt; i++)
		fprintf(stderr, "    %s/%s %s sev %d at +%.2f h\n", r->t[i].rule, r->t[i].check,
			r->t[i].state == ALERT_FIRING ? "firing" : "resolved", r->t[i].sev,
			(double)r->t[i].el / H);
}

/*
 * The same transitions, at the same true times within tol. One decided before the step
 * was decided on a clock that read local time wrong (a night, a day, daylight began an
 * hour early or late): it may be that much off, which is the wrong clock's doing, not
 * the step's.
 */
static void expect_same(const struct result *ref, const struct result *got, int64_t tol)
{
	bool same = ref->nt == got->nt;

	for (size_t i = 0; same && i < ref->nt; i++)
		same = !strcmp(ref->t[i].rule, got->t[i].rule) &&
		       !strcmp(ref->t[i].check, got->t[i].check) &&
		       ref->t[i].state == got->t[i].state && ref->t[i].sev == got->t[i].sev &&
		       llabs(ref->t[i].el - got->t[i].el) <= tol + llabs(got->t[i].wrong);
	if (!same) {
		dump("right clock", ref);
		dump("stepped clock", got);
	}
	assert_true(same);
	assert_int_equal(got->replaced, ref->replaced); /* a step is no meter replacement */
}

/* Run s on a right clock, then stepped by +1 h and by -1 h at each of steps[]. */
static void check_stream(const struct stream *s, const struct config *cfg, const int64_t *steps,
			 size_t nsteps, struct result *ref)
{
	struct result got;

	run(s, cfg, 0, 0, ref);
	fprintf(stderr, "%s:\n", s->name);
	dump("right clock", ref);
	assert_true(ref->nt > 0);
	for (size_t i = 0; i < nsteps; i++)
		for (int sign = -1; sign <= 1; sign += 2) {
			fprintf(stderr, "  step %+d h at +%.2f h\n", sign, (double)steps[i] / H);
			run(s, cfg, steps[i], sign * H, &got);
			expect_same(ref, &got, s->poll);
		}
}

static size_t count(const struct result *r, const char *check, int state)
{
	size_t n = 0;
	for (size_t i = 0; i < r->nt; i++)
		n += !strcmp(r->t[i].check, check) && r->t[i].state == state;
	return n;
}

static int64_t first_el(const struct result *r, const char *check, int state)
{
	for (size_t i = 0; i < r->nt; i++)
		if (!strcmp(r->t[i].check, check) && r->t[i].state == state)
			return r->t[i].el;
	return -1;
}

/* ---- threshold and comms ------------------------------------------------------------- */

static const char thr_cfg[] =
	"gateway: { id: gw, timezone: UTC }\n"
	"uplink: { host: 127.0.0.1 }\n"
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
	"devices:\n"
	"  - id: pump\n"
	"    bus: b\n"
	"    offline_after: 3\n"
	"    points: { pressure: { table: holding, address: 0, type: float32, unit: MPa } }\n"
	"alerts:\n"
	"  - id: low\n"
	"    kind: threshold\n"
	"    point: pump.pressure\n"
	"    below: 0.15\n"
	"    hysteresis: 0.01\n"
	"    for: 10m\n"
	"    severity: orange\n";

/* Pressure low from 50 min to 80 min, the pump silent from 100 to 110 min; 10 s polls. */
static void thr_feed(struct alert_engine *e, int64_t el, int64_t ts, struct alert_out *o)
{
	double x = el >= 50 * M && el < 80 * M ? 0.12 : 0.30;

	if (el >= 100 * M && el < 110 * M)
		x = NAN;
	feed1(e, 0, ts, x, o);
}

static void test_threshold_and_comms(void **state)
{
	struct config *cfg = fx_load(thr_cfg);
	struct stream s = { "threshold and comms", DAY0 + 10 * H, 10 * S, 2 * H, thr_feed };
	/* mid-'for', and between the failed polls that take the pump offline */
	int64_t steps[] = { 55 * M, 100 * M + 15 * S };
	struct result ref;

	(void)state;
	set_tz("UTC");
	check_stream(&s, cfg, steps, 2, &ref);
	assert_int_equal(first_el(&ref, "below", ALERT_FIRING), 60 * M);
	assert_int_equal(count(&ref, "offline", ALERT_FIRING), 1);
	config_free(cfg);
}

/* A pending 'for' across the step: it fires after its real duration, not an hour late
 * (a step back) and not at once (a step forward). */
static void test_for_neither_stalls_nor_fires_early(void **state)
{
	struct config *cfg = fx_load(thr_cfg);

	(void)state;
	for (int sign = -1; sign <= 1; sign += 2) {
		struct alert_engine *e = fx_engine(cfg);
		struct alert_out o = { 0 };
		int64_t t = DAY0, fired = -1;

		feed1(e, 0, t, 0.30, &o);
		feed1(e, 0, t + M, 0.12, &o); /* pending from +1 min: fires at +11 min */
		for (int64_t el = M; el <= 30 * M && fired < 0; el += 10 * S) {
			int64_t ts = t + el;
			if (el >= 5 * M) { /* the clock is stepped at +5 min */
				if (el == 5 * M)
					alert_clock_step(e, sign * H);
				ts += sign * H;
			}
			feed1(e, 0, ts, 0.12, &o);
			assert_int_equal(alert_tick(e, ts, &o), 0);
			if (o.nt) {
				assert_int_equal(o.t[0].state, ALERT_FIRING);
				fired = o.t[0].ts_ms - sign * H - t;
			}
			alert_out_reset(&o);
		}
		fprintf(stderr, "  step %+d h: fired at +%.1f min\n", sign, (double)fired / M);
		assert_int_equal(fired, 11 * M);
		alert_out_free(&o);
		alert_free(e);
	}
	config_free(cfg);
}

/* ---- waterlogging --------------------------------------------------------------------- */

static const char wl_cfg[] =
	"gateway: { id: gw, timezone: UTC }\n"
	"uplink: { host: 127.0.0.1 }\n"
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
	"devices:\n"
	"  - id: gauge\n"
	"    bus: b\n"
	"    points: { level: { table: holding, address: 0, type: float32, unit: m } }\n"
	"alerts:\n"
	"  - id: underpass\n"
	"    kind: waterlogging\n"
	"    point: gauge.level\n"
	"    levels: { blue: 0.10, yellow: 0.20, orange: 0.30, red: 0.40 }\n"
	"    hysteresis: 0.02\n"
	"    for: 2m\n"
	"    rise: { by: 0.15, within: 20m }\n"
	"    stuck: { for: 30m, tolerance: 0.001 }\n";

/* Dry, a rise to 0.5 m from 40 to 100 min, held, drained by 200 min; the gauge is noisy
 * (a few mm) except from 230 to 300 min, when it is stuck. 30 s polls. */
static void wl_feed(struct alert_engine *e, int64_t el, int64_t ts, struct alert_out *o)
{
	double m = (double)el / M, x;

	if (m < 40)
		x = 0.02;
	else if (m < 100)
		x = 0.02 + 0.48 * (m - 40) / 60;
	else if (m < 140)
		x = 0.50;
	else if (m < 200)
		x = 0.50 - 0.48 * (m - 140) / 60;
	else
		x = 0.02;
	if (m < 230 || m >= 300)
		x += 0.004 * (((int64_t)m * 7 + el / (30 * S)) % 3 - 1);
	feed1(e, 0, ts, x, o);
}

static void test_waterlogging(void **state)
{
	struct config *cfg = fx_load(wl_cfg);
	struct stream s = { "waterlogging", DAY0 + 2 * H, 30 * S, 6 * H, wl_feed };
	/* in the rise window and the grades' 'for', and while the gauge is stuck */
	int64_t steps[] = { 55 * M, 245 * M };
	struct result ref;

	(void)state;
	set_tz("UTC");
	check_stream(&s, cfg, steps, 2, &ref);
	assert_int_equal(count(&ref, "level", ALERT_FIRING), 7); /* 4 up, 3 down */
	assert_int_equal(count(&ref, "rise", ALERT_FIRING), 1);
	/* stuck from 230 min (or the poll before, if its noise was nil), for 30 min */
	assert_true(first_el(&ref, "stuck", ALERT_FIRING) >= 259 * M &&
		    first_el(&ref, "stuck", ALERT_FIRING) <= 260 * M);
	config_free(cfg);
}

/* ---- pv -------------------------------------------------------------------------------- */

static const char pv_cfg[] =
	"gateway: { id: gw, timezone: Asia/Shanghai }\n"
	"uplink: { host: 127.0.0.1 }\n"
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
	"devices:\n"
	"  - id: inv\n"
	"    bus: b\n"
	"    points:\n"
	"      power: { table: input, address: 0, type: float32, unit: W }\n"
	"      fault: { table: input, address: 2, type: uint16 }\n"
	"alerts:\n"
	"  - id: roof\n"
	"    kind: pv\n"
	"    inverter: inv\n"
	"    power: inv.power\n"
	"    fault: inv.fault\n"
	"    rated_power: 10kW\n"
	"    daylight: { from: \"06:00\", to: \"19:00\" }\n"
	"    min_output_ratio: 0.1\n"
	"    for: 30m\n";

#define PV_T0 (1717171200000LL + 7 * H) /* 2024-06-01 07:00 in Asia/Shanghai */

/* A clear day's curve; no output from 09:40 to 11:00, 5 % from 12:00 to 13:30, a fault
 * from 14:00 to 14:20. One-minute polls. */
static void pv_feed(struct alert_engine *e, int64_t el, int64_t ts, struct alert_out *o)
{
	double h = 7 + (double)el / H;
	struct value v[2] = { { .kind = VAL_DOUBLE }, { .kind = VAL_UINT } };

	v[0].v.d = 10000 * sin(M_PI * (h - 6) / 13);
	if (h >= 9 + 40 / 60.0 && h < 11)
		v[0].v.d = 0;
	if (h >= 12 && h < 13.5)
		v[0].v.d = 500;
	v[1].v.u = h >= 14 && h < 14 + 20 / 60.0 ? 4 : 0;
	assert_int_equal(alert_feed(e, 0, ts, v, 2, o), 0);
}

static void test_pv(void **state)
{
	struct config *cfg;
	struct stream s = { "pv", PV_T0, M, 9 * H, pv_feed };
	/* in no_output's 'for', and in low_output's */
	int64_t steps[] = { 2 * H + 55 * M, 5 * H + 15 * M };
	struct result ref;

	(void)state;
	set_tz("Asia/Shanghai");
	cfg = fx_load(pv_cfg);
	check_stream(&s, cfg, steps, 2, &ref);
	assert_int_equal(first_el(&ref, "no_output", ALERT_FIRING), 3 * H + 10 * M);
	assert_int_equal(first_el(&ref, "low_output", ALERT_FIRING), 5 * H + 30 * M);
	assert_int_equal(count(&ref, "fault", ALERT_FIRING), 1);
	config_free(cfg);
	set_tz("UTC");
}

/* ---- leakage --------------------------------------------------------------------------- */

static const char leak_cfg[] =
	"gateway: { id: gw, timezone: UTC }\n"
	"uplink: { host: 127.0.0.1 }\n"
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
	"devices:\n"
	"  - id: inlet\n"
	"    bus: b\n"
	"    points: { total: { table: holding, address: 0, type: float64, unit: m3 } }\n"
	"  - id: out\n"
	"    bus: b\n"
	"    unit_id: 2\n"
	"    points: { total: { table: holding, address: 0, type: float64, unit: m3 } }\n"
	"alerts:\n"
	"  - id: dma\n"
	"    kind: leakage\n"
	"    inflow: inlet.total\n"
	"    outflow: out.total\n"
	"    max_loss_ratio: 0.08\n"
	"    night: { from: \"01:00\", to: \"05:00\", max_flow: 10 }\n"
	"    burst: { ratio: 6, for: 1h, days: 4 }\n";

struct zone {
	bool leak;     /* +15 m3/h from day 2, 00:00 */
	bool burst;    /* +60 m3/h on day 3, 10:00 to 13:00 */
};

static struct zone zone;

/* Customers' use: 100 m3/h +- 40 over the day, its integral in m3 from t = 0. */
static double use_total(double h)
{
	return 100 * h - 40 * (24 / (2 * M_PI)) * (cos(2 * M_PI * h / 24) - 1);
}

/* Losses: 5 m3/h of background leakage, and the leak and burst of the zone. */
static double loss_total(double h)
{
	double v = 5 * h;

	if (zone.leak && h > 48)
		v += 15 * (h - 48);
	if (zone.burst && h > 82)
		v += 60 * (fmin(h, 85) - 82);
	return v;
}

static void leak_feed(struct alert_engine *e, int64_t el, int64_t ts, struct alert_out *o)
{
	double h = (double)el / H;

	feed1(e, 0, ts, 1000 + use_total(h) + loss_total(h), o);
	feed1(e, 1, ts, 500 + use_total(h), o);
}

static void test_leakage(void **state)
{
	struct config *cfg = fx_load(leak_cfg);
	struct stream s = { "leakage", DAY0, M, 4 * D + 2 * H, leak_feed };
	/* in the first night of the leak, and in the burst's 'for' */
	int64_t steps[] = { 2 * D + 3 * H, 3 * D + 10 * H + 30 * M };
	struct result ref;

	(void)state;
	set_tz("UTC");
	zone = (struct zone){ .leak = true, .burst = true };
	check_stream(&s, cfg, steps, 2, &ref);
	/* the leak: the night it began and the day's balance; the burst a day later */
	assert_int_equal(first_el(&ref, "night", ALERT_FIRING), 2 * D + 5 * H);
	assert_int_equal(first_el(&ref, "balance", ALERT_FIRING), 3 * D);
	assert_int_equal(first_el(&ref, "burst", ALERT_FIRING), 3 * D + 11 * H + 15 * M);
	config_free(cfg);
}

/* The night with a known leak, stepped during that night: it fires the same, with the
 * same night minimum. (Stepped forward without re-basing, the meters' interval across
 * the step would spread a minute's volume over the hour: a false empty night.) */
static void test_night_leak(void **state)
{
	struct config *cfg = fx_load(leak_cfg);
	struct stream s = { "night", DAY0, M, 2 * D + 6 * H, leak_feed };
	int64_t steps[] = { 2 * D + 1 * H + 30 * M, 2 * D + 3 * H, 2 * D + 4 * H + 30 * M };
	struct result ref;

	(void)state;
	set_tz("UTC");
	zone = (struct zone){ .leak = true };
	check_stream(&s, cfg, steps, 3, &ref);
	assert_int_equal(count(&ref, "night", ALERT_FIRING), 1);
	assert_int_equal(first_el(&ref, "night", ALERT_FIRING), 2 * D + 5 * H);
	config_free(cfg);
}

/* A zone without a leak whose clock is stepped back during a night, and again just
 * after a night was decided: no alert, no meter "replaced", no night decided twice. */
static const char night_base_cfg[] =
	"gateway: { id: gw, timezone: UTC }\n"
	"uplink: { host: 127.0.0.1 }\n"
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
	"devices:\n"
	"  - id: inlet\n"
	"    bus: b\n"
	"    points: { total: { table: holding, address: 0, type: float64, unit: m3 } }\n"
	"alerts:\n"
	"  - id: town\n"
	"    kind: leakage\n"
	"    inflow: inlet.total\n"
	"    night: { from: \"01:00\", to: \"05:00\", baseline: 3, ratio: 0.1 }\n";

/* A town's inlet: 20 m3/h at night, rising from 04:00 to the day's 80 m3/h by 07:00. */
static double town_flow(double h)
{
	double tod = fmod(h, 24);
	return tod < 4 ? 20 : tod < 7 ? 20 + 20 * (tod - 4) : tod < 22 ? 80 : 20;
}

static double *town; /* its totalizer, minute by minute */

static void town_feed(struct alert_engine *e, int64_t el, int64_t ts, struct alert_out *o)
{
	feed1(e, 0, ts, 100 + town[el / M], o);
}

static void test_step_back_in_night(void **state)
{
	struct config *cfg = fx_load(night_base_cfg);
	struct stream s = { "town", DAY0, M, 5 * D + 8 * H, town_feed };
	size_t n = (size_t)(s.dur / M) + 1;
	struct result ref, got;
	/* the night of day 4: during it, and 30 min after it was decided (at 04:30, which
	 * its clock, an hour ahead, read as 05:30), when its last half hour comes back: a
	 * short night of 30-40 m3/h that would fire against a baseline of 20 */
	int64_t steps[] = { 4 * D + 3 * H, 4 * D + 5 * H };

	(void)state;
	set_tz("UTC");
	town = malloc(n * sizeof *town);
	assert_non_null(town);
	town[0] = 0;
	for (size_t i = 1; i < n; i++)
		town[i] = town[i - 1] + town_flow((double)(i - 1) / 60) / 60;
	run(&s, cfg, 0, 0, &ref);
	dump("right clock", &ref);
	assert_int_equal(ref.nt, 0);
	for (size_t i = 0; i < 2; i++) {
		fprintf(stderr, "  step -1 h at +%.2f h\n", (double)steps[i] / H);
		run(&s, cfg, steps[i], -H, &got);
		dump("stepped back", &got);
		assert_int_equal(got.nt, 0);       /* no false alert */
		assert_int_equal(got.replaced, 0); /* the meter was not "replaced" */
		/* after the night: its last quarter hours come back, and are not a night */
		assert_int_equal(got.night_skips, i == 1 ? 1 : 0);
	}
	free(town);
	config_free(cfg);
}

/* ---- readings stamped by the old clock, processed after the step ----------------------- */

static void test_stale_readings(void **state)
{
	struct config *cfg = fx_load(thr_cfg);

	(void)state;
	set_tz("UTC");
	for (int sign = -1; sign <= 1; sign += 2) {
		struct alert_engine *e = fx_engine(cfg);
		struct alert_out o = { 0 };
		int64_t t = DAY0, delta = sign * H;

		/* pending since +1 min on the old clock; the step at +5 min */
		feed1(e, 0, t, 0.30, &o);
		for (int64_t el = M; el < 5 * M; el += 10 * S)
			feed1(e, 0, t + el, 0.12, &o);
		assert_int_equal(alert_tick(e, t + 5 * M - 2 * S, &o), 0);
		alert_clock_step(e, delta);
		/* three readings the poller stamped by the old clock just before it */
		for (int64_t el = 5 * M - 2 * S; el <= 5 * M; el += S)
			feed1(e, 0, t + el, 0.12, &o);
		assert_int_equal(o.nt, 0); /* a step back: not fired an hour "later" */
		assert_int_equal(o.nn, 1); /* one note says so */
		assert_string_equal(o.n[0].check, "clock");
		alert_out_reset(&o);
		/* then the new clock: fires 10 min after the condition began, not before */
		for (int64_t el = 5 * M; el <= 12 * M; el += 10 * S) {
			feed1(e, 0, t + el + delta, 0.12, &o);
			assert_int_equal(alert_tick(e, t + el + delta, &o), 0);
			if (el < 11 * M)
				assert_int_equal(o.nt, 0);
		}
		assert_int_equal(o.nt, 1);
		assert_int_equal(o.t[0].ts_ms, t + 11 * M + delta);
		alert_out_free(&o);
		alert_free(e);
	}
	config_free(cfg);
}

/* A reading stamped long before the engine's time (no step told): not evaluated, with a
 * note; a zone's meters see no negative interval and count nothing twice. */
static void test_late_reading(void **state)
{
	struct config *cfg = fx_load(leak_cfg);
	struct stream s = { "late", DAY0, M, D + 2 * H, leak_feed };
	struct result ref, got;
	struct alert_engine *e;
	struct alert_out o = { 0 };
	char *a, *b;

	(void)state;
	set_tz("UTC");
	zone = (struct zone){ .leak = true };
	run(&s, cfg, 0, 0, &ref);
	/* the same stream with, at noon, two readings of both meters stamped 2 h before */
	e = fx_engine(cfg);
	memset(&got, 0, sizeof got);
	for (int64_t el = 0; el <= s.dur; el += M) {
		leak_feed(e, el, s.t0 + el, &o);
		if (el == 12 * H) {
			leak_feed(e, el - 2 * H, s.t0 + el - 2 * H, &o);
			leak_feed(e, el - 2 * H + M, s.t0 + el - 2 * H + M, &o);
		}
		assert_int_equal(alert_tick(e, s.t0 + el, &o), 0);
		collect(&got, &s, &o, 0);
	}
	assert_int_equal(got.clock_notes, 1); /* one note for the run of them */
	expect_same(&ref, &got, 0);
	/* and its state is the unstepped one's: the same meter marks, bins and days */
	{
		struct alert_engine *e2 = fx_engine(cfg);
		for (int64_t el = 0; el <= s.dur; el += M) {
			leak_feed(e2, el, s.t0 + el, &o);
			assert_int_equal(alert_tick(e2, s.t0 + el, &o), 0);
		}
		a = alert_save(e);
		b = alert_save(e2);
		assert_string_equal(a, b);
		free(a);
		free(b);
		alert_free(e2);
	}
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* ---- restored state, and persistence across a step ------------------------------------- */

/* A box that boots with its clock years behind, restores a pending 'for' saved by the
 * run before, then gets the right time from NTP: the restored time stays as it was
 * saved (as on a box with a good RTC); only what was learnt on the wrong clock moves. */
static void test_restored_state_left_alone(void **state)
{
	struct config *cfg = fx_load(thr_cfg);
	struct alert_engine *e = fx_engine(cfg), *e2;
	struct alert_out o = { 0 };
	struct alert_transition act[4];
	int64_t t = DAY0, wrong = 5 * 365 * D; /* the clock is 5 years behind */
	char err[128], *blob;

	(void)state;
	feed1(e, 0, t, 0.12, &o); /* pending since t */
	blob = alert_save(e);
	alert_free(e);
	e2 = fx_engine(cfg);
	assert_int_equal(alert_restore(e2, blob, err, sizeof err), 0);
	free(blob);
	/* a minute on the wrong clock, then NTP */
	for (int64_t el = 0; el <= M; el += 10 * S) {
		feed1(e2, 0, t + 2 * M + el - wrong, 0.12, &o);
		assert_int_equal(alert_tick(e2, t + 2 * M + el - wrong, &o), 0);
	}
	alert_clock_step(e2, wrong);
	assert_int_equal(alert_active(e2, act, 4), 1);
	assert_int_equal(act[0].ts_ms, t); /* not moved 5 years on */
	assert_int_equal(o.nt, 0);
	/* the restored 'for' runs out 10 min after t, as it would have */
	for (int64_t el = 3 * M + 10 * S; el <= 12 * M && !o.nt; el += 10 * S) {
		feed1(e2, 0, t + el, 0.12, &o);
		assert_int_equal(alert_tick(e2, t + el, &o), 0);
	}
	assert_int_equal(o.nt, 1);
	assert_int_equal(o.t[0].ts_ms, t + 10 * M);
	alert_out_free(&o);
	alert_free(e2);
	config_free(cfg);
}

/* Saved after a step back into a decided night and restored: the restored engine does not
 * decide that night again either. */
static void test_persistence_after_step(void **state)
{
	struct config *cfg = fx_load(leak_cfg);
	struct stream s = { "persist", DAY0, M, 2 * D + 8 * H, leak_feed };
	struct alert_engine *e = fx_engine(cfg);
	struct alert_out o = { 0 };
	struct result got;
	bool stepped = false, restored = false;
	char err[128];

	(void)state;
	set_tz("UTC");
	zone = (struct zone){ .leak = true };
	memset(&got, 0, sizeof got);
	for (int64_t el = 0; el <= s.dur; el += M) {
		int64_t ts;

		/* back 1 h, 40 min after the night's verdict (at 04:30, its clock read 05:30) */
		if (!stepped && el >= 2 * D + 5 * H + 10 * M) {
			alert_clock_step(e, -H);
			stepped = true;
		}
		if (stepped && !restored && el >= 2 * D + 5 * H + 20 * M) {
			char *blob = alert_save(e);
			struct alert_engine *e2 = fx_engine(cfg);
			assert_int_equal(alert_restore(e2, blob, err, sizeof err), 0);
			free(blob);
			alert_free(e);
			e = e2;
			restored = true;
		}
		ts = s.t0 + el + (stepped ? 0 : H);
		leak_feed(e, el, ts, &o);
		assert_int_equal(alert_tick(e, ts, &o), 0);
		collect(&got, &s, &o, stepped ? 0 : -H);
	}
	dump("saved and restored after a step back", &got);
	assert_int_equal(count(&got, "night", ALERT_FIRING), 1);
	assert_int_equal(got.night_skips, 1);
	assert_int_equal(got.replaced, 0);
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_threshold_and_comms),
		cmocka_unit_test(test_for_neither_stalls_nor_fires_early),
		cmocka_unit_test(test_waterlogging),
		cmocka_unit_test(test_pv),
		cmocka_unit_test(test_leakage),
		cmocka_unit_test(test_night_leak),
		cmocka_unit_test(test_step_back_in_night),
		cmocka_unit_test(test_stale_readings),
		cmocka_unit_test(test_late_reading),
		cmocka_unit_test(test_restored_state_left_alone),
		cmocka_unit_test(test_persistence_after_step),
	};

	set_tz("UTC");
	return cmocka_run_group_tests(tests, NULL, NULL);
}
