/*
 * test_alert_floodnet: waterlogging on real street floods (FloodNet NYC, 43 events
 * trimmed into tests/data/floodnet-events.csv, read with csv.c). Each event's depth
 * profile is fed as a level point; the grade crossings are computed here, independently
 * of the engine, and must match its transitions one for one. Then one-sample spikes
 * (a car under an ultrasonic sensor) are injected between samples: with spike
 * rejection they must change nothing. Runs from the repository root.
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
#include "csv.h"
#include "replay_core.h"

#define INCH 0.0254
#define MAXS 4096

static const double lv[5] = { NAN, 0.05, 0.1016, 0.3048, 0.6096 }; /* 2, 4, 12, 24 in */
#define HYST 0.02

static struct config *load(double spike)
{
	char path[] = "/tmp/test_alert_fn_XXXXXX";
	int fd = mkstemp(path);
	struct config_opts opts = { .profile_path = "/nonexistent", .skip_secret_files = true };
	struct config *cfg;
	FILE *f;

	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	fprintf(f, "gateway: { id: nyc, timezone: UTC }\n"
		   "uplink: { host: 127.0.0.1 }\n"
		   "buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
		   "devices:\n"
		   "  - id: gauge\n"
		   "    bus: b\n"
		   "    points: { depth: { table: holding, address: 0, type: float32, unit: m } }\n"
		   "alerts:\n"
		   "  - id: street\n"
		   "    kind: waterlogging\n"
		   "    point: gauge.depth\n"
		   "    levels: { blue: %g, yellow: %g, orange: %g, red: %g }\n"
		   "    hysteresis: %g\n"
		   "    spike: %g\n", lv[1], lv[2], lv[3], lv[4], HYST, spike);
	fclose(f);
	cfg = config_load(path, &opts, NULL);
	unlink(path);
	assert_non_null(cfg);
	return cfg;
}

struct event {
	char name[128];
	int64_t t0;
	size_t n;
	double depth[MAXS];
	int64_t ts[MAXS];
};

/* "[0.00, 0.87, ...]" into v; the count. */
static size_t parse_list(const char *s, double *v, size_t max)
{
	size_t n = 0;
	char *end;

	assert_true(*s == '[');
	s++;
	while (*s && *s != ']' && n < max) {
		v[n++] = strtod(s, &end);
		assert_true(end != s);
		s = end;
		while (*s == ',' || *s == ' ')
			s++;
	}
	return n;
}

static size_t read_events(struct event **out)
{
	FILE *f = fopen("tests/data/floodnet-events.csv", "r");
	struct csv c;
	char err[256];
	size_t n = 0, cap = 0;
	long idepth = -1, itime = -1, istart = -1;
	struct event *ev = NULL;
	static double tmp[MAXS];
	int r;

	assert_non_null(f);
	assert_int_equal(csv_open(&c, f, "floodnet-events.csv", err, sizeof err), 0);
	for (size_t i = 0; i < c.nhdr; i++) {
		if (!strcmp(c.hdr[i], "flood_profile_depth_inches"))
			idepth = (long)i;
		if (!strcmp(c.hdr[i], "flood_profile_time_secs"))
			itime = (long)i;
		if (!strcmp(c.hdr[i], "flood_start_time"))
			istart = (long)i;
	}
	assert_true(idepth >= 0 && itime >= 0 && istart >= 0);
	while ((r = csv_next(&c, err, sizeof err)) == 1) {
		struct event *e;
		size_t nd, nt;
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			ev = realloc(ev, cap * sizeof *ev);
			assert_non_null(ev);
		}
		e = &ev[n++];
		snprintf(e->name, sizeof e->name, "%s", c.fld[0]);
		assert_int_equal(replay_parse_time(c.fld[istart], &e->t0), 0);
		nd = parse_list(c.fld[idepth], e->depth, MAXS);
		nt = parse_list(c.fld[itime], tmp, MAXS);
		assert_int_equal(nd, nt);
		e->n = nd;
		for (size_t i = 0; i < nd; i++) {
			e->depth[i] *= INCH;
			e->ts[i] = e->t0 + (int64_t)llround(tmp[i] * 1000);
		}
	}
	assert_int_equal(r, 0);
	csv_close(&c);
	fclose(f);
	*out = ev;
	return n;
}

struct tr {
	int64_t ts;
	int state, sev;
};

/* The grades, computed the plain way: enter at the depth, leave hysteresis below it. */
static size_t expected(const struct event *e, struct tr *out)
{
	int cur = 0;
	size_t n = 0;
	int64_t last = INT64_MIN;

	for (size_t i = 0; i < e->n; i++) {
		double x = e->depth[i];
		int g = 0;
		if (e->ts[i] <= last)
			continue; /* a repeated timestamp */
		last = e->ts[i];
		for (int k = 1; k <= 4; k++)
			if (x >= lv[k])
				g = k;
		if (g < cur) {
			g = 0;
			for (int k = cur; k >= 1; k--)
				if (x > lv[k] - HYST) {
					g = k;
					break;
				}
		}
		if (g != cur) {
			out[n++] = (struct tr){ e->ts[i], g ? ALERT_FIRING : ALERT_RESOLVED,
						g ? g : cur };
			cur = g;
		}
	}
	return n;
}

/* Feed samples (with optional injected spikes) to a fresh engine; the transitions. */
static size_t run(const struct config *cfg, const struct event *e, bool spikes, struct tr *out)
{
	char err[128];
	struct alert_engine *en = alert_new(cfg, err, sizeof err);
	struct alert_out o = { 0 };
	size_t n = 0;

	assert_non_null(en);
	for (size_t i = 0; i < e->n; i++) {
		struct value v = { .kind = VAL_DOUBLE };
		v.v.d = e->depth[i];
		assert_int_equal(alert_feed(en, 0, e->ts[i], &v, 1, &o), 0);
		if (spikes && i % 7 == 3 && i + 1 < e->n && e->ts[i + 1] - e->ts[i] > 2000) {
			/* a car: 0.8 m more for one sample, between two real ones */
			v.v.d = e->depth[i] + 0.8;
			assert_int_equal(alert_feed(en, 0, e->ts[i] + 1000, &v, 1, &o), 0);
		}
	}
	for (size_t i = 0; i < o.nt; i++)
		out[n++] = (struct tr){ o.t[i].ts_ms, o.t[i].state, o.t[i].severity };
	alert_out_free(&o);
	alert_free(en);
	return n;
}

static bool same(const struct tr *a, size_t na, const struct tr *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (a[i].ts != b[i].ts || a[i].state != b[i].state || a[i].sev != b[i].sev)
			return false;
	return true;
}

static void test_floodnet(void **state)
{
	struct config *plain = load(0), *guarded = load(0.3);
	struct event *ev;
	size_t nev = read_events(&ev), total = 0, differ = 0, by_grade[5] = { 0 };
	static struct tr want[MAXS], got[MAXS], clean[MAXS], spiked[MAXS];

	(void)state;
	assert_int_equal(nev, 43);
	for (size_t i = 0; i < nev; i++) {
		size_t nw = expected(&ev[i], want), ng = run(plain, &ev[i], false, got);
		size_t nc = run(guarded, &ev[i], false, clean), ns = run(guarded, &ev[i], true, spiked);

		if (!same(want, nw, got, ng))
			fprintf(stderr, "event %zu (%s): %zu transitions expected, %zu from the engine\n",
				i, ev[i].name, nw, ng);
		assert_true(same(want, nw, got, ng));
		/* injected spikes raise nothing: the same transitions as without them */
		assert_true(same(clean, nc, spiked, ns));
		/* and spike rejection changes real floods little: only where the data itself
		 * has a one-sample jump of 0.3 m that the next sample takes back */
		if (!same(clean, nc, got, ng))
			differ++;
		total += nw;
		for (size_t k = 0; k < nw; k++)
			if (want[k].state == ALERT_FIRING)
				by_grade[want[k].sev]++;
	}
	fprintf(stderr, "  %zu events, %zu transitions (firing at blue %zu, yellow %zu, orange %zu, "
		"red %zu); spike rejection changed %zu events\n", nev, total, by_grade[1],
		by_grade[2], by_grade[3], by_grade[4], differ);
	assert_true(total > 43);
	assert_true(by_grade[4] > 0);
	assert_true(differ <= 3);
	free(ev);
	config_free(plain);
	config_free(guarded);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_floodnet),
	};

	setenv("TZ", "UTC", 1);
	tzset();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
