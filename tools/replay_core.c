/*
 * replay_core: a CSV of recorded readings through the alert engine (see replay_core.h).
 * Each row is one reading per device that has a column in it, fed with the row's
 * timestamp, then a tick at that time, so 'for' durations and day ends run on the
 * recording's clock. It must never read the real clock: a replay of the same file
 * gives the same output.
 */
#include "replay_core.h"

#include <ctype.h>
#include <inttypes.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "csv.h"
#include "json.h"
#include "typo.h"

/* The edit-distance cells one replay may spend on "did you mean" (about a second): a
 * header of many stray columns against a config of many points stays bounded. */
#define SUGGEST_BUDGET 100000000u

static int digits(const char **p, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++, (*p)++) {
		if (!isdigit((unsigned char)**p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	*out = v;
	return 0;
}

int replay_parse_time(const char *s, int64_t *ms)
{
	const char *p = s;
	struct tm tm = { 0 };
	int y, mo, d, h, mi, sec = 0, frac_ms = 0, off = 0;
	bool utc = false;
	time_t t;

	while (*p == ' ')
		p++;
	if (!*p)
		return -1;
	/* epoch seconds */
	if (strlen(p) < 20 && strspn(p, "0123456789") >= 9 && !strchr(p, '-')) {
		char *end;
		double v;
		errno = 0;
		v = strtod(p, &end);
		while (*end == ' ')
			end++;
		if (errno || *end || !isfinite(v) || v < 0 || v > 1e11)
			return -1;
		*ms = (int64_t)llround(v * 1000);
		return 0;
	}
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
	    digits(&p, 2, &d) || (*p != 'T' && *p != ' '))
		return -1;
	p++;
	if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi))
		return -1;
	if (*p == ':') {
		p++;
		if (digits(&p, 2, &sec))
			return -1;
		if (*p == '.' || *p == ',') {
			int scale = 100;
			p++;
			if (!isdigit((unsigned char)*p))
				return -1;
			for (; isdigit((unsigned char)*p); p++, scale /= 10)
				frac_ms += (*p - '0') * scale;
		}
	}
	if (*p == 'Z') {
		utc = true;
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
		if (digits(&p, 2, &oh))
			return -1;
		if (*p == ':')
			p++;
		if (isdigit((unsigned char)*p) && digits(&p, 2, &om))
			return -1;
		if (oh > 14 || om > 59)
			return -1;
		off = sign * (oh * 3600 + om * 60);
		utc = true;
	}
	while (*p == ' ')
		p++;
	if (*p || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 24 || mi > 59 || sec > 60 ||
	    (h == 24 && (mi || sec)))
		return -1;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	tm.tm_isdst = -1;
	t = utc ? timegm(&tm) - off : mktime(&tm);
	if (t == (time_t)-1 && !(y == 1969 && mo == 12 && d == 31))
		return -1;
	*ms = (int64_t)t * 1000 + frac_ms;
	return 0;
}

static const char *state_name(int s)
{
	return s == ALERT_FIRING ? "firing" : s == ALERT_RESOLVED ? "resolved"
					   : s == ALERT_PENDING ? "pending" : "ok";
}

void replay_json(struct jbuf *b, const struct alert_transition *t)
{
	bool first = true;
	char when[40];
	time_t s = (time_t)(t->ts_ms / 1000);
	struct tm tm;

	localtime_r(&s, &tm);
	strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S%z", &tm);
	jb_cstr(b, "{");
	jb_key(b, "ts", &first);
	jb_i64(b, t->ts_ms);
	jb_key(b, "time", &first);
	jb_str(b, when);
	jb_key(b, "rule", &first);
	jb_str(b, t->rule);
	jb_key(b, "check", &first);
	jb_str(b, t->check);
	jb_key(b, "state", &first);
	jb_str(b, state_name(t->state));
	jb_key(b, "severity", &first);
	jb_str(b, severity_name(t->severity));
	jb_key(b, "value", &first);
	if (t->value_f32)
		jb_float32(b, t->value);
	else
		jb_double(b, t->value);
	jb_key(b, "threshold", &first);
	if (t->threshold_f32)
		jb_float32(b, t->threshold);
	else
		jb_double(b, t->threshold);
	jb_key(b, "unit", &first);
	jb_str(b, t->unit);
	jb_key(b, "message", &first);
	jb_str(b, t->message);
	jb_cstr(b, "}");
}

struct col {
	long device;      /* -1: not fed */
	long point;
};

/* Resolve "device.point" into c; 0, or -1 with err saying what it lacks. */
static int resolve(const struct config *cfg, const char *ref, struct col *c, char *err,
		   size_t errlen)
{
	const char *dot = strrchr(ref, '.');
	char dev[ID_MAX];
	long di, pi;

	if (!dot || dot == ref || (size_t)(dot - ref) >= sizeof dev) {
		snprintf(err, errlen, "'%s' is not device.point", ref);
		return -1;
	}
	memcpy(dev, ref, (size_t)(dot - ref));
	dev[dot - ref] = '\0';
	if ((di = config_find_device(cfg, dev)) < 0) {
		snprintf(err, errlen, "the config has no device '%s'", dev);
		return -1;
	}
	if ((pi = config_find_point(&cfg->devices[di], dot + 1)) < 0) {
		snprintf(err, errlen, "device %s has no point '%s'", dev, dot + 1);
		return -1;
	}
	c->device = di;
	c->point = pi;
	return 0;
}

/*
 * " (did you mean ...?)" for word, which should have named a device.point of cfg, or ""
 * when nothing is near. For a column whose name has no dot (col), what to type instead:
 * --map COL=device.point, for a point of that name or one near it; otherwise the
 * device.point near it.
 */
static void suggest_ref(const struct config *cfg, const char *word, const char *col,
			uint64_t *spent, char *buf, size_t len)
{
	struct typo_best full, name;
	char ref[ID_MAX + POINT_NAME_MAX + 2];
	const char *dev = NULL, *pt = NULL;

	typo_best_init(&full, word, spent, SUGGEST_BUDGET);
	typo_best_init(&name, word, spent, SUGGEST_BUDGET);
	for (size_t d = 0; d < cfg->ndevices; d++)
		for (size_t p = 0; p < cfg->devices[d].npoints; p++) {
			const char *pn = cfg->devices[d].points[p].name;

			snprintf(ref, sizeof ref, "%s.%s", cfg->devices[d].id, pn);
			typo_best_try(&full, ref);
			if (!col)
				continue;
			if (!dev && strcmp(pn, word) == 0) {
				dev = cfg->devices[d].id;
				pt = pn;
			}
			typo_best_try(&name, pn);
		}
	buf[0] = '\0';
	if (col && !dev && name.best[0] && name.distance <= full.distance)
		/* the first device with a point of the name found near */
		for (size_t d = 0; d < cfg->ndevices && !dev; d++)
			if (config_find_point(&cfg->devices[d], name.best) >= 0) {
				dev = cfg->devices[d].id;
				pt = cfg->devices[d].points[config_find_point(&cfg->devices[d],
									      name.best)].name;
			}
	if (col && dev)
		snprintf(buf, len, " (did you mean --map %s=%s.%s?)", col, dev, pt);
	else if (col && full.best[0])
		snprintf(buf, len, " (did you mean --map %s=%s?)", col, full.best);
	else if (full.best[0])
		snprintf(buf, len, " (did you mean '%s'?)", full.best);
}

/* A column no reading comes from: said on the log with what it lacks and what is near,
 * and named in the summary's list (st->ignored). */
static void column_ignored(const struct config *cfg, const struct replay_opts *o,
			   struct replay_stats *st, const char *file, size_t i, const char *name,
			   uint64_t *spent)
{
	char why[256], dym[2 * TYPO_WORD_MAX + 64];
	size_t n = strlen(st->ignored);
	struct col unused;

	st->columns_ignored++;
	if (strchr(name, '.') && resolve(cfg, name, &unused, why, sizeof why) < 0) {
		suggest_ref(cfg, name, NULL, spent, dym, sizeof dym);
	} else {
		snprintf(why, sizeof why, "it names no device.point");
		suggest_ref(cfg, name, name, spent, dym, sizeof dym);
	}
	if (o->log)
		fprintf(o->log, "%s: column %zu '%s' ignored: %s%s\n", file, i + 1, name, why, dym);
	/* the summary names as many as fit, then says there were more */
	if (n >= 3 && strcmp(st->ignored + n - 3, "...") == 0)
		return;
	if (n + strlen(name) + 8 < sizeof st->ignored)
		snprintf(st->ignored + n, sizeof st->ignored - n, "%s%s", n ? ", " : "", name);
	else
		snprintf(st->ignored + n, sizeof st->ignored - n, "%s...", n ? ", " : "");
}

static void fmt_when(int64_t ts_ms, char *buf, size_t len)
{
	time_t s = (time_t)(ts_ms / 1000);
	struct tm tm;

	localtime_r(&s, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/*
 * A write a rule asked for (on_fire, on_resolve), for --explain: sluiced would have
 * sent it to the device; a replay only says so. Its transition is the latest of its
 * check in the same output (the engine appends a check's actions after its transition).
 */
static void explain_write(FILE *f, const struct config *cfg, const struct alert_out *out,
			  const struct alert_action *a)
{
	const struct alert_transition *t = NULL;
	const struct device_cfg *d = &cfg->devices[a->device];
	char when[40] = "", why[48] = "";

	for (size_t i = out->nt; i-- > 0 && !t;)
		if (!strcmp(out->t[i].rule, a->rule) && !strcmp(out->t[i].check, a->check))
			t = &out->t[i];
	if (t) {
		fmt_when(t->ts_ms, when, sizeof when);
		if (t->state == ALERT_FIRING)
			snprintf(why, sizeof why, " (on_fire, %s)", severity_name(t->severity)
									   ? severity_name(t->severity)
									   : "firing");
		else
			snprintf(why, sizeof why, " (on_resolve)");
	}
	fprintf(f, "%s%s%s/%s: explain: would write %s.%s = %g%s\n", when, *when ? " " : "",
		a->rule, a->check, d->id, d->points[a->point].name, a->value, why);
}

static int flush(const struct config *cfg, const struct replay_opts *o, struct replay_stats *st,
		 struct alert_out *out, struct jbuf *jb)
{
	for (size_t i = 0; i < out->nt; i++) {
		st->transitions++;
		if (out->t[i].state == ALERT_FIRING)
			st->firing++;
		if (o->on_transition)
			o->on_transition(o->ctx, &out->t[i]);
		if (o->out) {
			jb_reset(jb);
			replay_json(jb, &out->t[i]);
			if (jb->oom)
				return -1;
			fprintf(o->out, "%s\n", jb_cstr_get(jb));
		}
	}
	for (size_t i = 0; i < out->nn; i++) {
		FILE *to = out->n[i].explain ? o->explain : o->log;
		if (!out->n[i].explain)
			st->notes++;
		if (o->on_note)
			o->on_note(o->ctx, &out->n[i]);
		if (to) {
			char when[40];

			fmt_when(out->n[i].ts_ms, when, sizeof when);
			fprintf(to, "%s %s/%s: %s%s\n", when, out->n[i].rule, out->n[i].check,
				out->n[i].explain ? "explain: " : "", out->n[i].message);
		}
	}
	for (size_t i = 0; i < out->na && o->explain; i++)
		explain_write(o->explain, cfg, out, &out->a[i]);
	alert_out_reset(out);
	return 0;
}

int replay_run(const struct config *cfg, const struct replay_opts *o, struct replay_stats *st,
	       char *err, size_t errlen)
{
	struct csv c;
	FILE *f = strcmp(o->csv, "-") == 0 ? stdin : fopen(o->csv, "r");
	struct col *cols = NULL;
	struct value **vals = NULL;
	bool *has = NULL;
	struct alert_engine *e = NULL;
	struct alert_out out = { 0 };
	struct jbuf jb;
	size_t tcol = 0;
	unsigned maxbad = o->max_bad_logged ? o->max_bad_logged : 20;
	int rc = -1, r;
	char rerr[512];
	uint64_t spent = 0;

	memset(st, 0, sizeof *st);
	jb_init(&jb);
	if (!f) {
		snprintf(err, errlen, "%s: %s", o->csv, strerror(errno));
		return -1;
	}
	if (csv_open(&c, f, o->csv, err, errlen) < 0) {
		if (f != stdin)
			fclose(f);
		return -1;
	}
	if (!(cols = calloc(c.nhdr, sizeof *cols)) ||
	    !(vals = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *vals)) ||
	    !(has = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *has))) {
		snprintf(err, errlen, "out of memory");
		goto done;
	}
	/* the timestamp column: one named so, else the first */
	for (size_t i = 0; i < c.nhdr; i++) {
		cols[i].device = -1;
		if (!strcasecmp(c.hdr[i], "timestamp") || !strcasecmp(c.hdr[i], "time") ||
		    !strcasecmp(c.hdr[i], "ts")) {
			tcol = i;
			break;
		}
	}
	for (size_t i = 0; i < c.nhdr; i++) {
		cols[i].device = -1;
		if (i != tcol && strchr(c.hdr[i], '.'))
			(void)resolve(cfg, c.hdr[i], &cols[i], rerr, sizeof rerr);
	}
	for (size_t m = 0; m < o->nmaps; m++) {
		const char *eq = strchr(o->maps[m], '=');
		size_t k;
		if (!eq || eq == o->maps[m]) {
			snprintf(err, errlen, "--map '%s': expected COLUMN=device.point", o->maps[m]);
			goto done;
		}
		for (k = 0; k < c.nhdr; k++)
			if (strlen(c.hdr[k]) == (size_t)(eq - o->maps[m]) &&
			    !strncmp(c.hdr[k], o->maps[m], (size_t)(eq - o->maps[m])))
				break;
		if (k == c.nhdr) {
			snprintf(err, errlen, "--map '%s': %s has no column '%.*s'", o->maps[m],
				 o->csv, (int)(eq - o->maps[m]), o->maps[m]);
			goto done;
		}
		if (k == tcol) {
			snprintf(err, errlen, "--map '%s': column %s holds the timestamps",
				 o->maps[m], c.hdr[k]);
			goto done;
		}
		if (resolve(cfg, eq + 1, &cols[k], rerr, sizeof rerr) < 0) {
			char dym[2 * TYPO_WORD_MAX + 64];

			suggest_ref(cfg, eq + 1, NULL, &spent, dym, sizeof dym);
			snprintf(err, errlen, "--map '%s': %s%s", o->maps[m], rerr, dym);
			goto done;
		}
	}
	for (size_t i = 0; i < c.nhdr; i++) {
		if (i == tcol)
			continue;
		if (cols[i].device < 0) {
			column_ignored(cfg, o, st, o->csv, i, c.hdr[i], &spent);
			continue;
		}
		st->columns_used++;
		if (!vals[cols[i].device] &&
		    !(vals[cols[i].device] = calloc(cfg->devices[cols[i].device].npoints + 1,
						    sizeof **vals))) {
			snprintf(err, errlen, "out of memory");
			goto done;
		}
	}
	if (!st->columns_used) {
		snprintf(err, errlen, "%s: no column names a device.point of the config (name "
			 "them so in the header, or use --map COLUMN=device.point)", o->csv);
		goto done;
	}
	if (!(e = alert_new(cfg, err, errlen)))
		goto done;
	alert_set_explain(e, o->explain != NULL);
	while ((r = csv_next(&c, rerr, sizeof rerr)) != 0) {
		int64_t ts;
		bool bad = false;

		if (r == -2) {
			snprintf(err, errlen, "%s", rerr);
			goto done;
		}
		if (r == -1) {
			if (++st->bad_rows <= maxbad && o->log)
				fprintf(o->log, "%s (skipped)\n", rerr);
			continue;
		}
		if (replay_parse_time(c.fld[tcol], &ts) < 0) {
			snprintf(rerr, sizeof rerr, "%s:%zu: column %s: '%.40s' is not a timestamp",
				 c.name, c.line, c.hdr[tcol], c.fld[tcol]);
			bad = true;
		}
		for (size_t d = 0; d < cfg->ndevices; d++) {
			has[d] = false;
			if (vals[d])
				for (size_t p = 0; p < cfg->devices[d].npoints; p++)
					vals[d][p] = (struct value){ .kind = VAL_NONE, .err = 0 };
		}
		for (size_t i = 0; i < c.nhdr && !bad; i++) {
			const char *s = c.fld[i];
			struct value *v;
			char *end;
			double x;

			if (cols[i].device < 0)
				continue;
			has[cols[i].device] = true;
			while (*s == ' ')
				s++;
			if (!*s || !strcasecmp(s, "nan") || !strcasecmp(s, "null"))
				continue; /* no value: a failed point */
			v = &vals[cols[i].device][cols[i].point];
			if (!strcasecmp(s, "true") || !strcasecmp(s, "false")) {
				v->kind = VAL_BOOL;
				v->v.b = s[0] == 't' || s[0] == 'T';
				continue;
			}
			errno = 0;
			x = strtod(s, &end);
			while (*end == ' ')
				end++;
			if (errno == ERANGE || *end || !isfinite(x)) {
				snprintf(rerr, sizeof rerr, "%s:%zu: column %s: '%.40s' is not a number",
					 c.name, c.line, c.hdr[i], c.fld[i]);
				bad = true;
				break;
			}
			v->kind = VAL_DOUBLE;
			v->v.d = x;
		}
		if (bad) {
			if (++st->bad_rows <= maxbad && o->log)
				fprintf(o->log, "%s (skipped)\n", rerr);
			continue;
		}
		if ((o->has_from && ts < o->from_ms) || (o->has_to && ts >= o->to_ms)) {
			st->skipped_rows++;
			continue;
		}
		st->rows++;
		if (st->rows == 1)
			st->first_ms = ts;
		st->last_ms = ts;
		for (size_t d = 0; d < cfg->ndevices; d++)
			if (has[d] && alert_feed(e, d, ts, vals[d], cfg->devices[d].npoints, &out) < 0)
				goto oom;
		if (alert_tick(e, ts, &out) < 0 || flush(cfg, o, st, &out, &jb) < 0)
			goto oom;
	}
	if (st->bad_rows > maxbad && o->log)
		fprintf(o->log, "%s: %" PRIu64 " more bad rows not shown\n", o->csv,
			st->bad_rows - maxbad);
	rc = 0;
	goto done;
oom:
	snprintf(err, errlen, "out of memory");
done:
	alert_out_free(&out);
	alert_free(e);
	jb_free(&jb);
	if (vals)
		for (size_t d = 0; d < cfg->ndevices; d++)
			free(vals[d]);
	free(vals);
	free(has);
	free(cols);
	csv_close(&c);
	if (f != stdin)
		fclose(f);
	return rc;
}
