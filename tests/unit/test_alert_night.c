/*
 * test_alert_night: the leakage night check as a change detector, on synthetic towns
 * whose night flow, weekday pattern, noise, booster pump and leaks are known. A leak that
 * stays pages once and stays latched (no resolve/fire flap), also when it keeps growing;
 * a second leak pages again at the same severity without running on_fire again; a repair
 * lowers the latched step or resolves; a pump's steps are found in the flow and taken out
 * (and a slow leak under them is still seen), or taken out by night.exclude from its run
 * signal; a restart from the saved state and a step of the wall clock change nothing; a
 * config naming baseline/ratio gets the nightly verdict it asks for.
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

#include "alert.h"
#include "config.h"

#include "alert_fixture.h"

#define S 1000LL
#define M (60 * S)
#define H (60 * M)
#define D (24 * H)
#define DAY0 1704067200000LL /* 2024-01-01 00:00 UTC, a Monday */
#define POLL (5 * M)
#define MAXT 32

static const char head[] =
	"gateway: { id: gw, timezone: UTC }\n"
	"uplink: { host: 127.0.0.1 }\n"
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
	"devices:\n"
	"  - id: inlet\n"
	"    bus: b\n"
	"    points:\n"
	"      p227: { table: input, address: 0, type: float32, unit: m3/h }\n"
	"      p235: { table: input, address: 2, type: float32, unit: m3/h }\n"
	"      run: { table: discrete, address: 0, type: bool }\n"
	"      lamp: { table: coil, address: 0, type: bool, writable: true }\n"
	"alerts:\n"
	"  - id: town\n"
	"    kind: leakage\n"
	"    name: 北区\n"
	"    severity: orange\n"
	"    inflow: [inlet.p227, inlet.p235]\n";

/* The defaults of the judged setup: a night window and nothing else. */
static const char night_default[] = "    night: { from: \"01:00\", to: \"05:00\" }\n";

/* ---- a synthetic town ------------------------------------------------------------------ */

struct leak {
	double day;      /* starts (days after DAY0, fractional) */
	double size;     /* m3/h at full size */
	double ramp;     /* days to full size (0: abrupt) */
	double end;      /* repaired (0: never) */
};

struct town {
	double night, day_flow; /* m3/h of use at night (00:00-05:00) and by day */
	double saturday;        /* more at night on Saturdays */
	double noise;           /* +- m3/h on each sample */
	double nightly;         /* +- m3/h on each night as a whole (towns vary night to night) */
	double pump;            /* a booster pump's flow, 0: none */
	bool slow;              /* the pump stops late some nights, early others */
	struct leak leak[4];
	int nleak;
};

static struct town town;

/* A deterministic noise in [-1, 1] for sample i. */
static double jitter(int64_t i)
{
	uint64_t x = (uint64_t)i * 6364136223846793005ULL + 1442695040888963407ULL;
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return (double)(x % 2001) / 1000.0 - 1;
}

/* When the pump stops after the night that ends on day d, in minutes after that day's
 * midnight; it starts again at 14:00. Most nights between 01:40 and 04:20; with 'slow',
 * every fifth night it runs until 05:30 (all through the window) and every seventh it
 * stopped before the night began (23:00 the evening before, given as -60). */
static int pump_off(int d)
{
	if (town.slow && d % 5 == 3)
		return 5 * 60 + 30;
	if (town.slow && d % 7 == 5)
		return -60;
	return 100 + (d * 37) % 160;
}

static bool pump_on(int64_t el)
{
	int d = (int)(el / D), min = (int)(el % D / M), off_next = pump_off(d + 1);

	if (!(town.pump > 0))
		return false;
	if (off_next < 0 && min >= 23 * 60)
		return false; /* stopped before midnight */
	return min < pump_off(d) || min >= 14 * 60;
}

static double use(int64_t el)
{
	double tod = (double)(el % D) / H, f;
	int wd = (int)(el / D % 7); /* DAY0 is a Monday */

	if (tod < 5)
		f = town.night + (wd == 5 ? town.saturday : 0);
	else if (tod < 7)
		f = town.night + (town.day_flow - town.night) * (tod - 5) / 2;
	else if (tod < 21)
		f = town.day_flow;
	else
		f = town.day_flow - (town.day_flow - town.night) * (tod - 21) / 3;
	return f;
}

static double losses(int64_t el)
{
	double days = (double)el / D, v = 0;

	for (int i = 0; i < town.nleak; i++) {
		const struct leak *l = &town.leak[i];
		if (days < l->day || (l->end > 0 && days >= l->end))
			continue;
		v += l->ramp > 0 && days < l->day + l->ramp ? l->size * (days - l->day) / l->ramp
							     : l->size;
	}
	return v;
}

/* The inlet's reading at elapsed el, stamped ts. */
static void feed(struct alert_engine *e, int64_t el, int64_t ts, struct alert_out *o)
{
	double q = use(el) + losses(el) + town.noise * jitter(el / POLL) +
		   town.nightly * jitter(1000003 + (el + 12 * H) / D);
	bool on = pump_on(el);
	struct value v[4] = { { .kind = VAL_DOUBLE }, { .kind = VAL_DOUBLE }, { .kind = VAL_BOOL },
			      { .kind = VAL_NONE, .err = 1 } };

	if (on)
		q += town.pump;
	v[0].v.d = 0.55 * q;
	v[1].v.d = 0.45 * q;
	v[2].v.b = on;
	assert_int_equal(alert_feed(e, 0, ts, v, 4, o), 0);
}

/* ---- what came out ---------------------------------------------------------------------- */

struct got {
	struct alert_transition t[MAXT];
	size_t nt, na, notes, pump_found;
	char last_note[ALERT_MSG_MAX];
};

static void take(struct got *g, struct alert_out *o)
{
	for (size_t i = 0; i < o->nt; i++) {
		if (strcmp(o->t[i].check, "night"))
			continue;
		assert_true(g->nt < MAXT);
		g->t[g->nt++] = o->t[i];
		fprintf(stderr, "    day %5.2f %s %s: %s\n", (double)(o->t[i].ts_ms - DAY0) / D,
			o->t[i].state == ALERT_FIRING ? "firing" : "resolved",
			severity_name(o->t[i].severity), o->t[i].message);
	}
	g->na += o->na;
	for (size_t i = 0; i < o->nn; i++) {
		g->notes++;
		if (strstr(o->n[i].message, "recurs in the zone's flow"))
			g->pump_found++;
		snprintf(g->last_note, sizeof g->last_note, "%s", o->n[i].message);
	}
	alert_out_reset(o);
}

/* The number after 'after' in msg, or NAN. */
static double number_after(const char *msg, const char *after)
{
	const char *p = strstr(msg, after);
	return p ? strtod(p + strlen(after), NULL) : NAN;
}

static size_t count(const struct got *g, int state)
{
	size_t n = 0;
	for (size_t i = 0; i < g->nt; i++)
		n += g->t[i].state == state;
	return n;
}

/* The day (after DAY0) of the k-th transition in state, or -1. */
static double day_of(const struct got *g, int state, int k)
{
	for (size_t i = 0; i < g->nt; i++)
		if (g->t[i].state == state && k-- == 0)
			return (double)(g->t[i].ts_ms - DAY0) / D;
	return -1;
}

/* Run the town for days with the rule's night: text; each poll feeds, then ticks. */
static void run_town(const char *night, int days, struct got *g)
{
	char text[2048];
	struct config *cfg;
	struct alert_engine *e;
	struct alert_out o = { 0 };

	snprintf(text, sizeof text, "%s%s", head, night);
	cfg = fx_load(text);
	e = fx_engine(cfg);
	memset(g, 0, sizeof *g);
	for (int64_t el = 0; el < days * D; el += POLL) {
		feed(e, el, DAY0 + el, &o);
		assert_int_equal(alert_tick(e, DAY0 + el, &o), 0);
		take(g, &o);
	}
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

static void quiet_town(void)
{
	town = (struct town){ .night = 30, .day_flow = 90, .saturday = 6, .noise = 1.5,
			      .nightly = 2 };
}

/* ---- latching ---------------------------------------------------------------------------- */

/* A leak that stays: one page, the night it began, and no resolve for a month after. */
static void test_one_page_per_leak(void **state)
{
	struct got g;

	(void)state;
	quiet_town();
	town.leak[town.nleak++] = (struct leak){ .day = 40.1, .size = 7 };
	run_town(night_default, 75, &g);
	assert_int_equal(count(&g, ALERT_FIRING), 1);
	assert_int_equal(count(&g, ALERT_RESOLVED), 0);
	assert_true(day_of(&g, ALERT_FIRING, 0) >= 41 && day_of(&g, ALERT_FIRING, 0) < 45);
	assert_int_equal(g.t[0].severity, SEV_ORANGE);
	/* the message says how large the step is and since when */
	assert_true(fabs(number_after(g.t[0].message, "北区 up ") - 7) < 2);
	assert_non_null(strstr(g.t[0].message, "since the night to 2024-02-1"));
	assert_true(fabs(g.t[0].value - g.t[0].threshold - 7) < 3);
}

/* A small leak pages after a few nights, not one. */
static void test_small_step_takes_nights(void **state)
{
	struct got g;

	(void)state;
	quiet_town();
	town.leak[town.nleak++] = (struct leak){ .day = 40.1, .size = 3.5 };
	run_town(night_default, 70, &g);
	assert_int_equal(count(&g, ALERT_FIRING), 1);
	assert_int_equal(count(&g, ALERT_RESOLVED), 0);
	assert_true(day_of(&g, ALERT_FIRING, 0) >= 42 && day_of(&g, ALERT_FIRING, 0) < 48);
}

/* An incipient leak that keeps growing after its page is re-baselined on: no second page
 * for the same leak, and no resolve. */
static void test_growing_leak_pages_once(void **state)
{
	struct got g;

	(void)state;
	quiet_town();
	town.leak[town.nleak++] = (struct leak){ .day = 35, .size = 24, .ramp = 16 };
	run_town(night_default, 80, &g);
	assert_int_equal(count(&g, ALERT_FIRING), 1);
	assert_int_equal(count(&g, ALERT_RESOLVED), 0);
	assert_true(day_of(&g, ALERT_FIRING, 0) < 45);
}

/* Without a leak, a town with a weekday pattern and noise is never paged. */
static void test_no_leak_no_page(void **state)
{
	struct got g;

	(void)state;
	quiet_town();
	run_town(night_default, 90, &g);
	assert_int_equal(g.nt, 0);
}

/* ---- a second leak, repairs, actions ------------------------------------------------------ */

static const char night_actions[] =
	"    night: { from: \"01:00\", to: \"05:00\" }\n"
	"    on_fire: [ { write: inlet.lamp, value: 1 } ]\n"
	"    on_resolve: [ { write: inlet.lamp, value: 0 } ]\n";

static void test_second_leak_repairs(void **state)
{
	struct got g;
	const char *second;

	(void)state;
	quiet_town();
	town.leak[town.nleak++] = (struct leak){ .day = 40.1, .size = 8, .end = 75.5 };
	town.leak[town.nleak++] = (struct leak){ .day = 52.6, .size = 11, .end = 63.5 };
	run_town(night_actions, 90, &g);
	/* two pages, at the same severity; the second names both steps */
	assert_int_equal(count(&g, ALERT_FIRING), 2);
	assert_int_equal(g.t[0].state, ALERT_FIRING);
	assert_int_equal(g.t[1].state, ALERT_FIRING);
	assert_int_equal(g.t[1].severity, g.t[0].severity);
	assert_true(day_of(&g, ALERT_FIRING, 1) >= 53 && day_of(&g, ALERT_FIRING, 1) < 54.5);
	second = g.t[1].message;
	assert_true(fabs(number_after(second, "up another ") - 11) < 4);
	assert_true(fabs(number_after(second, "on top of ") - 8) < 4);
	assert_non_null(strstr(second, "since 2024-02-1"));
	/* the second leak's repair lowers the latched step without a transition; the
	 * first's resolves */
	assert_int_equal(count(&g, ALERT_RESOLVED), 1);
	assert_int_equal(g.t[2].state, ALERT_RESOLVED);
	assert_true(day_of(&g, ALERT_RESOLVED, 0) >= 76 && day_of(&g, ALERT_RESOLVED, 0) < 79);
	/* on_fire ran once (the first page), on_resolve once */
	assert_int_equal(g.na, 2);
}

/* The repair of the second leak leaves the alert firing for the first, and says so. */
static void test_lowered_step_shows(void **state)
{
	char text[2048];
	struct config *cfg;
	struct alert_engine *e;
	struct alert_out o = { 0 };
	struct alert_transition act[4];
	bool lowered = false;

	(void)state;
	quiet_town();
	town.leak[town.nleak++] = (struct leak){ .day = 40.1, .size = 8 };
	town.leak[town.nleak++] = (struct leak){ .day = 52.6, .size = 11, .end = 63.5 };
	snprintf(text, sizeof text, "%s%s", head, night_default);
	cfg = fx_load(text);
	e = fx_engine(cfg);
	for (int64_t el = 0; el < 72 * D; el += POLL) {
		feed(e, el, DAY0 + el, &o);
		assert_int_equal(alert_tick(e, DAY0 + el, &o), 0);
		for (size_t i = 0; i < o.nn; i++)
			lowered |= strstr(o.n[i].message, "went away") != NULL;
		assert_int_equal(o.nt > 0 && o.t[0].state == ALERT_RESOLVED, 0);
		alert_out_reset(&o);
	}
	assert_true(lowered);
	assert_int_equal(alert_active(e, act, 4), 1);
	assert_int_equal(act[0].state, ALERT_FIRING);
	assert_non_null(strstr(act[0].message, "(latched)"));
	assert_non_null(strstr(act[0].message, "went away"));
	alert_out_free(&o);
	alert_free(e);
	config_free(cfg);
}

/* ---- pumps ------------------------------------------------------------------------------- */

static void pump_town(void)
{
	quiet_town();
	town.pump = 42;
	town.slow = true;
}

/* The pump's steps are found in the flow: no page in three months without a leak, though
 * the pump runs through the whole window some nights and not at all on others. */
static void test_pump_steps_not_paged(void **state)
{
	struct got g;

	(void)state;
	pump_town();
	run_town(night_default, 90, &g);
	assert_int_equal(g.pump_found, 1);
	assert_int_equal(g.nt, 0);
}

/* With the pump taken out, an abrupt leak smaller than the pump pages, once. */
static void test_pump_and_leak(void **state)
{
	struct got g;

	(void)state;
	pump_town();
	town.leak[town.nleak++] = (struct leak){ .day = 50.4, .size = 9 };
	run_town(night_default, 80, &g);
	assert_int_equal(count(&g, ALERT_FIRING), 1);
	assert_int_equal(count(&g, ALERT_RESOLVED), 0);
	assert_true(day_of(&g, ALERT_FIRING, 0) >= 51 && day_of(&g, ALERT_FIRING, 0) < 53.5);
}

/* A leak that rises slowly under the pump's switching is not taken for the pump. */
static void test_pump_hides_no_slow_leak(void **state)
{
	struct got g;

	(void)state;
	pump_town();
	town.leak[town.nleak++] = (struct leak){ .day = 45, .size = 20, .ramp = 25 };
	run_town(night_default, 90, &g);
	assert_int_equal(count(&g, ALERT_FIRING), 1);
	assert_int_equal(count(&g, ALERT_RESOLVED), 0);
	assert_true(day_of(&g, ALERT_FIRING, 0) < 62);
}

/* The site names the pump's run signal: its flow is taken out while it runs, with or
 * without the search for steps, and a slow leak is still seen. */
static const char night_exclude[] =
	"    night: { from: \"01:00\", to: \"05:00\", pump_steps: false,\n"
	"             exclude: { run: inlet.run, flow: 42 } }\n";
static const char night_exclude_steps[] =
	"    night:\n"
	"      from: \"01:00\"\n"
	"      to: \"05:00\"\n"
	"      exclude: [ { run: inlet.run, flow: 42 } ]\n";

static void test_exclude(void **state)
{
	struct got g;

	(void)state;
	pump_town();
	run_town(night_exclude, 80, &g);
	assert_int_equal(g.nt, 0);
	run_town(night_exclude_steps, 80, &g);
	assert_int_equal(g.nt, 0);
	assert_int_equal(g.pump_found, 0); /* nothing of the pump left to find */
	town.leak[town.nleak++] = (struct leak){ .day = 45, .size = 20, .ramp = 25 };
	run_town(night_exclude, 90, &g);
	assert_int_equal(count(&g, ALERT_FIRING), 1);
	assert_int_equal(count(&g, ALERT_RESOLVED), 0);
	assert_true(day_of(&g, ALERT_FIRING, 0) < 62);
}

/* Without pump_steps the pump's nights are what they are: a pump that runs through the
 * window on some nights pages (this is what the search for steps prevents). */
static void test_pump_unseen_pages(void **state)
{
	struct got g;

	(void)state;
	pump_town();
	run_town("    night: { from: \"01:00\", to: \"05:00\", pump_steps: false }\n", 90, &g);
	assert_true(count(&g, ALERT_FIRING) >= 1);
}

/* ---- restart and clock step -------------------------------------------------------------- */

/* The same transitions at the same times (within a poll); with words, the same messages. */
static void same_transitions(const struct got *a, const struct got *b, bool words)
{
	assert_int_equal(a->nt, b->nt);
	for (size_t i = 0; i < a->nt; i++) {
		assert_int_equal(a->t[i].state, b->t[i].state);
		assert_int_equal(a->t[i].severity, b->t[i].severity);
		assert_true(llabs(a->t[i].ts_ms - b->t[i].ts_ms) <= POLL);
		if (words)
			assert_string_equal(a->t[i].message, b->t[i].message);
	}
}

/* The same town into two engines; the second is saved and restored into a new engine
 * every 29 hours 35 minutes (so every phase of the day and the night comes up): the same
 * transitions, at the same times, with the same messages. */
static void test_restart(void **state)
{
	char text[2048], err[256];
	struct config *cfg;
	struct alert_engine *a, *b;
	struct alert_out oa = { 0 }, ob = { 0 };
	struct got ga = { 0 }, gb = { 0 };
	int restarts = 0;

	(void)state;
	pump_town();
	town.leak[town.nleak++] = (struct leak){ .day = 40.1, .size = 8, .end = 75.5 };
	town.leak[town.nleak++] = (struct leak){ .day = 52.6, .size = 11, .end = 63.5 };
	town.leak[town.nleak++] = (struct leak){ .day = 80, .size = 15, .ramp = 10 };
	snprintf(text, sizeof text, "%s%s", head, night_default);
	cfg = fx_load(text);
	a = fx_engine(cfg);
	b = fx_engine(cfg);
	for (int64_t el = 0; el < 100 * D; el += POLL) {
		if (el && el % (29 * H + 35 * M) < POLL) {
			char *blob = alert_save(b);
			assert_non_null(blob);
			alert_free(b);
			b = fx_engine(cfg);
			assert_int_equal(alert_restore(b, blob, err, sizeof err), 0);
			free(blob);
			restarts++;
		}
		feed(a, el, DAY0 + el, &oa);
		assert_int_equal(alert_tick(a, DAY0 + el, &oa), 0);
		take(&ga, &oa);
		feed(b, el, DAY0 + el, &ob);
		assert_int_equal(alert_tick(b, DAY0 + el, &ob), 0);
		take(&gb, &ob);
	}
	assert_true(restarts > 70);
	assert_int_equal(count(&ga, ALERT_FIRING), 3);
	same_transitions(&ga, &gb, true);
	assert_int_equal(ga.na, gb.na);
	alert_out_free(&oa);
	alert_out_free(&ob);
	alert_free(a);
	alert_free(b);
	config_free(cfg);
}

/* A clock that read an hour wrong (either way) until it was stepped right: in the first
 * night of a leak that began at noon, in the hour after that night's window (a night
 * waiting for its pump switch), and the evening before. Nights decided on the wrong clock were judged an hour off (this town's nights are
 * flat from 00:00 to 05:00 and its pump stops between 01:40 and 04:20, so they are much
 * the same, though the pump may be found a night earlier or later): the same pages on
 * the same nights, of much the same size. */
static void test_clock_step(void **state)
{
	static const int64_t at[] = { 51 * D + 3 * H, 51 * D + 5 * H + 30 * M, 50 * D + 18 * H };
	char text[2048];
	struct config *cfg;
	struct got ref, got;

	(void)state;
	pump_town();
	town.slow = false;
	town.leak[town.nleak++] = (struct leak){ .day = 50.5, .size = 9 };
	snprintf(text, sizeof text, "%s%s", head, night_default);
	cfg = fx_load(text);
	run_town(night_default, 60, &ref);
	assert_int_equal(count(&ref, ALERT_FIRING), 1);
	for (size_t i = 0; i < sizeof at / sizeof *at; i++)
		for (int sign = -1; sign <= 1; sign += 2) {
			struct alert_engine *e = fx_engine(cfg);
			struct alert_out o = { 0 };
			int64_t delta = sign * H;
			bool stepped = false;

			fprintf(stderr, "  step %+d h at day %.2f\n", sign, (double)at[i] / D);
			memset(&got, 0, sizeof got);
			for (int64_t el = 0; el < 60 * D; el += POLL) {
				int64_t ts;
				if (!stepped && el >= at[i]) {
					alert_clock_step(e, delta);
					stepped = true;
				}
				ts = DAY0 + el - (stepped ? 0 : delta);
				feed(e, el, ts, &o);
				assert_int_equal(alert_tick(e, ts, &o), 0);
				take(&got, &o);
			}
			same_transitions(&ref, &got, false);
			/* the step's size, learnt in part on the wrong clock, within a margin */
			assert_true(fabs(number_after(ref.t[0].message, "北区 up ") -
					 number_after(got.t[0].message, "北区 up ")) < 4);
			alert_out_free(&o);
			alert_free(e);
		}
	config_free(cfg);
}

/* ---- the nightly verdict, when a config asks for it ----------------------------------------- */

/* Naming baseline and ratio keeps the check before the detector: each night against the
 * median of the last nights, which moves on, so a leak that stays resolves within days. */
static void test_baseline_keys_keep_the_verdict(void **state)
{
	struct got g;

	(void)state;
	quiet_town();
	town.saturday = 0;
	town.leak[town.nleak++] = (struct leak){ .day = 40.1, .size = 7 };
	run_town("    night: { from: \"01:00\", to: \"05:00\", baseline: 4, ratio: 0.1 }\n", 60, &g);
	assert_true(count(&g, ALERT_FIRING) >= 1);
	assert_true(count(&g, ALERT_RESOLVED) >= 1);
	assert_non_null(strstr(g.t[0].message, "minimum night flow"));
}

/* A rule moves from the nightly verdict to the detector while its alert fires: the saved
 * state carries the alert over, the detector learns the zone afresh (the leak is part of
 * what it learns) and then resolves the alert it holds no rise for, once. */
static void test_from_verdict_to_detector(void **state)
{
	char text[2048], err[256], *blob = NULL;
	struct config *old, *new;
	struct alert_engine *e;
	struct alert_out o = { 0 };
	struct got g = { 0 };
	int64_t el;

	(void)state;
	quiet_town();
	town.saturday = 0;
	town.leak[town.nleak++] = (struct leak){ .day = 20.1, .size = 7 };
	snprintf(text, sizeof text, "%s%s", head,
		 "    night: { from: \"01:00\", to: \"05:00\", baseline: 4, ratio: 0.1 }\n");
	old = fx_load(text);
	snprintf(text, sizeof text, "%s%s", head, night_default);
	new = fx_load(text);
	e = fx_engine(old);
	for (el = 0; !blob; el += POLL) {
		feed(e, el, DAY0 + el, &o);
		assert_int_equal(alert_tick(e, DAY0 + el, &o), 0);
		take(&g, &o);
		if (count(&g, ALERT_FIRING))
			assert_non_null(blob = alert_save(e));
		assert_true(el < 30 * D);
	}
	alert_free(e);
	e = fx_engine(new);
	assert_int_equal(alert_restore(e, blob, err, sizeof err), 0);
	free(blob);
	memset(&g, 0, sizeof g);
	for (; el < 70 * D; el += POLL) {
		feed(e, el, DAY0 + el, &o);
		assert_int_equal(alert_tick(e, DAY0 + el, &o), 0);
		take(&g, &o);
	}
	assert_int_equal(g.nt, 1);
	assert_int_equal(g.t[0].state, ALERT_RESOLVED);
	assert_non_null(strstr(g.t[0].message, "learnt the zone again"));
	alert_out_free(&o);
	alert_free(e);
	config_free(old);
	config_free(new);
}

/* ---- the keys ------------------------------------------------------------------------------ */

static void test_keys(void **state)
{
	char text[2048];
	struct config *cfg;
	const struct rule_cfg *rc;

	(void)state;
	snprintf(text, sizeof text, "%s%s", head, night_exclude_steps);
	cfg = fx_load(text);
	rc = &cfg->rules[0];
	assert_false(rc->night_legacy);
	assert_true(rc->night_allowance == 2 && rc->night_decision == 5);
	assert_true(rc->night_min_step == 0 && rc->night_learn == 14 && rc->night_pump_steps);
	assert_int_equal(rc->nnight_exclude, 1);
	assert_true(rc->night_exclude[0].flow == 42);
	assert_string_equal(rc->night_exclude[0].run.name, "run");
	config_free(cfg);
	snprintf(text, sizeof text, "%s%s", head,
		 "    night: { from: \"01:00\", to: \"05:00\", allowance: 1, decision: 8,\n"
		 "             min_step: 3.5, learn: 28 }\n");
	cfg = fx_load(text);
	rc = &cfg->rules[0];
	assert_true(rc->night_allowance == 1 && rc->night_decision == 8);
	assert_true(rc->night_min_step == 3.5 && rc->night_learn == 28);
	config_free(cfg);
	snprintf(text, sizeof text, "%s%s", head,
		 "    night: { from: \"01:00\", to: \"05:00\", weekly: true }\n");
	cfg = fx_load(text);
	assert_true(cfg->rules[0].night_legacy);
	config_free(cfg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_one_page_per_leak),
		cmocka_unit_test(test_small_step_takes_nights),
		cmocka_unit_test(test_growing_leak_pages_once),
		cmocka_unit_test(test_no_leak_no_page),
		cmocka_unit_test(test_second_leak_repairs),
		cmocka_unit_test(test_lowered_step_shows),
		cmocka_unit_test(test_pump_steps_not_paged),
		cmocka_unit_test(test_pump_and_leak),
		cmocka_unit_test(test_pump_hides_no_slow_leak),
		cmocka_unit_test(test_exclude),
		cmocka_unit_test(test_pump_unseen_pages),
		cmocka_unit_test(test_restart),
		cmocka_unit_test(test_clock_step),
		cmocka_unit_test(test_baseline_keys_keep_the_verdict),
		cmocka_unit_test(test_from_verdict_to_detector),
		cmocka_unit_test(test_keys),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
