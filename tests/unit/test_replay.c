/*
 * test_replay: what `sluicectl replay` tells a technician about the input and the rules,
 * through replay_core on small files: a CSV column that names no point is listed by name
 * with the name probably meant (a device.point near it, or the --map that would use a
 * column named after a point); a --map to no point says the same; --explain shows the
 * writes (on_fire, on_resolve) the rules would have made, and nothing else shows them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "alert.h"
#include "config.h"

#include "alert_fixture.h"
#include "replay_core.h"
#include "typo.h"

static const char site[] =
	"gateway: { id: gw, timezone: UTC }\n"
	"uplink: { host: 127.0.0.1 }\n"
	"buses: [ { id: b, tcp: { host: 127.0.0.1 } } ]\n"
	"devices:\n"
	"  - id: gauge\n"
	"    bus: b\n"
	"    points: { level: { table: input, address: 0, type: float32, unit: m } }\n"
	"  - id: sign\n"
	"    bus: b\n"
	"    unit_id: 2\n"
	"    points: { lamp: { table: coil, address: 0, type: bool, writable: true } }\n"
	"alerts:\n"
	"  - id: xinhua\n"
	"    kind: waterlogging\n"
	"    point: gauge.level\n"
	"    levels: { blue: 0.10, orange: 0.27 }\n"
	"    spike: 0\n"
	"    on_fire:\n"
	"      - { severity: orange, write: sign.lamp, value: 1 }\n"
	"    on_resolve:\n"
	"      - { write: sign.lamp, value: 0 }\n";

/* A temporary CSV with text; its path in path. */
static void write_csv(char *path, const char *text)
{
	int fd;
	FILE *f;

	strcpy(path, "/tmp/sluice_test_replay_XXXXXX");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	f = fdopen(fd, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

struct run {
	char *out, *log, *explain;
	size_t nout, nlog, nexplain;
	struct replay_stats st;
	char err[1024];
	int rc;
};

static void run(const struct config *cfg, const char *csv, const char *const *maps, size_t nmaps,
		bool explain, struct run *r)
{
	char path[64];
	FILE *out, *log, *ex = NULL;
	struct replay_opts o = { .maps = maps, .nmaps = nmaps };

	memset(r, 0, sizeof *r);
	write_csv(path, csv);
	out = open_memstream(&r->out, &r->nout);
	log = open_memstream(&r->log, &r->nlog);
	assert_non_null(out);
	assert_non_null(log);
	if (explain) {
		ex = open_memstream(&r->explain, &r->nexplain);
		assert_non_null(ex);
	}
	o.csv = path;
	o.out = out;
	o.log = log;
	o.explain = ex;
	r->rc = replay_run(cfg, &o, &r->st, r->err, sizeof r->err);
	fclose(out);
	fclose(log);
	if (ex)
		fclose(ex);
	unlink(path);
	if (getenv("TEST_REPLAY_VERBOSE"))
		fprintf(stderr, "--- log:\n%s--- explain:\n%s--- err: %s\n", r->log,
			r->explain ? r->explain : "", r->rc ? r->err : "");
}

static void run_free(struct run *r)
{
	free(r->out);
	free(r->log);
	free(r->explain);
}

static const char rows[] =
	"2024-03-01 00:00:00,0.00,1,1,x\n"
	"2024-03-01 00:01:00,0.12,2,2,x\n"
	"2024-03-01 00:02:00,0.30,3,3,x\n"
	"2024-03-01 00:03:00,0.05,4,4,x\n";

/* Columns that name no point: each said with why and what is near, and named in the
 * summary (it used to be "1 ignored" and nothing else). */
static void test_ignored_columns_named(void **state)
{
	struct config *cfg = fx_load(site);
	char csv[1024];
	struct run r;

	(void)state;
	snprintf(csv, sizeof csv, "timestamp,gauge.level,gauge.levle,level,remark\n%s", rows);
	run(cfg, csv, NULL, 0, false, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.st.columns_used, 1);
	assert_int_equal(r.st.columns_ignored, 3);
	assert_string_equal(r.st.ignored, "gauge.levle, level, remark");
	assert_non_null(strstr(r.log, ": column 3 'gauge.levle' ignored: device gauge has no "
				   "point 'levle' (did you mean 'gauge.level'?)\n"));
	/* a column named after a point: the --map that would read it */
	assert_non_null(strstr(r.log, ": column 4 'level' ignored: it names no device.point "
				   "(did you mean --map level=gauge.level?)\n"));
	/* nothing near: said, with no guess */
	assert_non_null(strstr(r.log, ": column 5 'remark' ignored: it names no device.point\n"));
	/* the rule still ran on the column that names its point */
	assert_int_equal(r.st.rows, 4);
	assert_true(r.st.transitions >= 2);
	run_free(&r);

	/* a column near a point's name, and one near a device.point without its dot */
	snprintf(csv, sizeof csv, "ts,levle,gaugelevel\n%s",
		 "2024-03-01 00:00:00,0.00,1\n");
	run(cfg, csv, NULL, 0, false, &r);
	assert_int_equal(r.rc, -1);
	assert_non_null(strstr(r.err, "no column names a device.point of the config"));
	assert_non_null(strstr(r.log, "'levle' ignored: it names no device.point (did you mean "
				   "--map levle=gauge.level?)"));
	assert_non_null(strstr(r.log, "'gaugelevel' ignored: it names no device.point (did you "
				   "mean --map gaugelevel=gauge.level?)"));
	run_free(&r);

	/* a --map to no point is refused with the point meant */
	{
		const char *const maps[] = { "level=gauge.lvel" };

		snprintf(csv, sizeof csv, "timestamp,level\n%s", "2024-03-01 00:00:00,0.00\n");
		run(cfg, csv, maps, 1, false, &r);
		assert_int_equal(r.rc, -1);
		assert_string_equal(r.err, "--map 'level=gauge.lvel': device gauge has no point "
				    "'lvel' (did you mean 'gauge.level'?)");
		run_free(&r);
	}
	config_free(cfg);
}

/* Many stray columns: the summary names those that fit, then "..." once. */
static void test_ignored_columns_many(void **state)
{
	struct config *cfg = fx_load(site);
	char csv[8192], name[64];
	size_t n;
	struct run r;

	(void)state;
	n = (size_t)snprintf(csv, sizeof csv, "timestamp,gauge.level");
	for (int i = 0; i < 60; i++) {
		snprintf(name, sizeof name, ",stray_column_%02d", i);
		n += (size_t)snprintf(csv + n, sizeof csv - n, "%s", name);
	}
	snprintf(csv + n, sizeof csv - n, "\n2024-03-01 00:00:00,0.1%s\n",
		 ",1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1"
		 ",1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1");
	run(cfg, csv, NULL, 0, false, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.st.columns_ignored, 60);
	n = strlen(r.st.ignored);
	assert_true(n < sizeof r.st.ignored);
	assert_true(strncmp(r.st.ignored, "stray_column_00, stray_column_01, ", 34) == 0);
	assert_string_equal(r.st.ignored + n - 5, ", ...");
	assert_null(strstr(r.st.ignored, "...,"));
	assert_null(strstr(r.st.ignored, "stray_column_59"));
	run_free(&r);
	config_free(cfg);
}

/* --explain shows the writes sluiced would have sent, with what triggered them; without
 * it they are not printed anywhere (the transitions on stdout are the same). */
static void test_explain_shows_writes(void **state)
{
	struct config *cfg = fx_load(site);
	char csv[1024];
	struct run r, quiet;

	(void)state;
	snprintf(csv, sizeof csv, "timestamp,gauge.level\n"
		 "2024-03-01 00:00:00,0.00\n"
		 "2024-03-01 00:01:00,0.12\n"   /* blue: no write (on_fire is at orange) */
		 "2024-03-01 00:02:00,0.30\n"   /* orange: the lamp on */
		 "2024-03-01 00:03:00,0.05\n"); /* resolved: the lamp off */
	run(cfg, csv, NULL, 0, true, &r);
	assert_int_equal(r.rc, 0);
	assert_int_equal(r.st.transitions, 3);
	assert_string_equal(r.explain,
			    "2024-03-01 00:02:00 xinhua/level: explain: would write sign.lamp = 1 "
			    "(on_fire, orange)\n"
			    "2024-03-01 00:03:00 xinhua/level: explain: would write sign.lamp = 0 "
			    "(on_resolve)\n");
	assert_null(strstr(r.log, "would write"));
	assert_null(strstr(r.out, "would write"));

	run(cfg, csv, NULL, 0, false, &quiet);
	assert_int_equal(quiet.rc, 0);
	assert_string_equal(quiet.out, r.out);
	assert_null(strstr(quiet.log, "would write"));
	run_free(&quiet);
	run_free(&r);
	config_free(cfg);
}

/* The did-you-mean rule itself (lib/typo.c): case and one swap are slips, a longer word
 * allows more, the word itself and a distant one are no suggestion, the budget holds. */
static void test_typo(void **state)
{
	struct typo_best t;
	uint64_t spent = 0;

	(void)state;
	assert_int_equal(typo_distance("level", "LEVEL"), 0);
	assert_int_equal(typo_distance("levle", "level"), 1);
	assert_int_equal(typo_distance("", "abc"), 3);
	typo_best_init(&t, "gauge.levle", NULL, 0);
	typo_best_try(&t, "gauge.level");
	typo_best_try(&t, "gauge.levels");
	assert_string_equal(t.best, "gauge.level");
	typo_best_init(&t, "lvl", NULL, 0);
	typo_best_try(&t, "lvl");       /* the word itself */
	typo_best_try(&t, "level");     /* 2 edits: too many for a 3-letter word */
	assert_string_equal(t.best, "");
	typo_best_init(&t, "levle", &spent, 10);
	typo_best_try(&t, "level");     /* spends 36 cells */
	assert_true(spent > 10);
	typo_best_try(&t, "levels");
	assert_string_equal(t.best, "level");
	typo_best_init(&t, "leve", &spent, 10);
	typo_best_try(&t, "level");     /* over budget: not compared */
	assert_string_equal(t.best, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ignored_columns_named),
		cmocka_unit_test(test_ignored_columns_many),
		cmocka_unit_test(test_explain_shows_writes),
		cmocka_unit_test(test_typo),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
