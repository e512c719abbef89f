/*
 * alert: the engine's core. Owns the list of rules and their checks, the state machine
 * every check runs (ok -> pending -> firing(severity) -> resolved), the actions a
 * transition asks for, and persistence of the whole state as one text blob. What a
 * condition means belongs to the rule kinds (alert_<kind>.c).
 *
 * It must never do I/O, read a clock, sleep or log: time comes only from the readings'
 * timestamps and from alert_tick's argument, so replay and the daemon agree.
 *
 * The saved blob is text, one record per line, tab-separated, so that it survives a
 * config change: "sluice-alert 1" first, then "c" lines (one per check not ok: rule,
 * check, state, severities, times, value, threshold, unit, message) and "s" lines (a
 * rule kind's private state: rule id, then the kind's own fields). Restoring matches
 * by rule id and check name and ignores what no longer exists.
 *
 * A step of the wall clock (alert_clock_step) re-bases the times the engine learnt live:
 * the engine's own here (pending and firing times, the guard for readings stamped by the
 * old clock), each kind's in its clock_step. "Live" is [first_ms, last_ms]: restored
 * times came from another run, whose clock the step says nothing about.
 */
#include "alert_int.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SAVE_MAGIC "sluice-alert 1"

/* ---- output ------------------------------------------------------------------------ */

static int grow(void **p, size_t *cap, size_t n, size_t size)
{
	void *np;
	size_t nc;

	if (n < *cap)
		return 0;
	nc = *cap ? *cap * 2 : 8;
	if (!(np = realloc(*p, nc * size)))
		return -1;
	*p = np;
	*cap = nc;
	return 0;
}

void alert_out_reset(struct alert_out *o)
{
	o->nt = o->na = o->nn = 0;
}

void alert_out_free(struct alert_out *o)
{
	free(o->t);
	free(o->a);
	free(o->n);
	*o = (struct alert_out){ 0 };
}

/* A check as a transition: what a firing, a pending one or the active list says of it. */
static void check_as_transition(struct alert_transition *t, const struct check *c, int state,
				int sev, int64_t ts)
{
	memset(t, 0, sizeof *t);
	snprintf(t->rule, sizeof t->rule, "%s", c->rule);
	snprintf(t->check, sizeof t->check, "%s", c->name);
	t->state = state;
	t->severity = sev;
	t->ts_ms = ts;
	t->value = c->value;
	t->threshold = c->threshold;
	t->value_f32 = c->value_f32;
	t->threshold_f32 = c->threshold_f32;
	snprintf(t->unit, sizeof t->unit, "%s", c->unit);
	snprintf(t->message, sizeof t->message, "%s", c->msg);
}

static int out_transition(struct alert_out *o, const struct check *c, int state, int sev,
			  int64_t ts)
{
	struct alert_transition *t;

	if (grow((void **)&o->t, &o->capt, o->nt, sizeof *o->t) < 0)
		return -1;
	t = &o->t[o->nt++];
	check_as_transition(t, c, state, sev, ts);
	return 0;
}

static int out_action(struct alert_out *o, const struct check *c, const struct action_cfg *a)
{
	struct alert_action *x;

	if (a->target.point < 0)
		return 0; /* a SunSpec point not resolved yet: nothing to write */
	if (grow((void **)&o->a, &o->capa, o->na, sizeof *o->a) < 0)
		return -1;
	x = &o->a[o->na++];
	memset(x, 0, sizeof *x);
	x->device = a->target.device;
	x->point = (size_t)a->target.point;
	x->value = a->value;
	snprintf(x->rule, sizeof x->rule, "%s", c->rule);
	snprintf(x->check, sizeof x->check, "%s", c->name);
	return 0;
}

static int vnote(struct alert_out *o, bool explain, const char *rule, const char *check,
		 int64_t ts, const char *fmt, va_list ap)
{
	struct alert_note *n;

	if (grow((void **)&o->n, &o->capn, o->nn, sizeof *o->n) < 0)
		return -1;
	n = &o->n[o->nn++];
	snprintf(n->rule, sizeof n->rule, "%s", rule);
	snprintf(n->check, sizeof n->check, "%s", check);
	n->ts_ms = ts;
	n->explain = explain;
	vsnprintf(n->message, sizeof n->message, fmt, ap);
	return 0;
}

int out_note(struct alert_out *o, const char *rule, const char *check, int64_t ts,
	     const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = vnote(o, false, rule, check, ts, fmt, ap);
	va_end(ap);
	return rc;
}

int out_explain(struct alert_engine *e, struct alert_out *o, const char *rule,
		const char *check, int64_t ts, const char *fmt, ...)
{
	va_list ap;
	int rc;

	if (!e->explain)
		return 0;
	va_start(ap, fmt);
	rc = vnote(o, true, rule, check, ts, fmt, ap);
	va_end(ap);
	return rc;
}

/* ---- the state machine ------------------------------------------------------------- */

/* Actions of a firing at sev coming from prev (SEV_NONE: it was not firing). An action
 * with a severity runs when the alert reaches that grade from below. */
static int fire_actions(struct check *c, int prev, int sev, struct alert_out *o)
{
	const struct rule_cfg *rc = c->rc;

	if (!rc || !c->actions)
		return 0;
	for (size_t i = 0; i < rc->non_fire; i++) {
		const struct action_cfg *a = &rc->on_fire[i];
		bool run = a->severity == SEV_NONE ? prev == SEV_NONE
						   : prev < a->severity && sev >= a->severity;
		if (run && out_action(o, c, a) < 0)
			return -1;
	}
	return 0;
}

static int do_fire(struct check *c, int sev, int64_t ts, struct alert_out *o)
{
	int prev = c->state == ALERT_FIRING ? c->sev : SEV_NONE;

	if (out_transition(o, c, ALERT_FIRING, sev, ts) < 0)
		return -1;
	c->state = ALERT_FIRING;
	c->sev = sev;
	c->fired_ms = ts;
	return fire_actions(c, prev, sev, o);
}

static int do_resolve(struct check *c, int64_t ts, struct alert_out *o)
{
	if (out_transition(o, c, ALERT_RESOLVED, c->sev, ts) < 0)
		return -1;
	c->state = ALERT_OK;
	if (c->rc && c->actions)
		for (size_t i = 0; i < c->rc->non_resolve; i++)
			if (out_action(o, c, &c->rc->on_resolve[i]) < 0)
				return -1;
	c->sev = SEV_NONE;
	return 0;
}

int check_eval(struct alert_engine *e, struct check *c, int64_t ts, int want, double value,
	       double threshold, const char *unit, const char *msg, struct alert_out *o)
{
	(void)e;
	check_update(c, value, threshold, unit, msg);
	if (want == SEV_NONE) {
		if (c->state == ALERT_FIRING)
			return do_resolve(c, ts, o);
		c->state = ALERT_OK;
		return 0;
	}
	switch (c->state) {
	case ALERT_FIRING:
		/* escalation and de-escalation are immediate: 'for' guards the start */
		return want != c->sev ? do_fire(c, want, ts, o) : 0;
	case ALERT_PENDING:
		c->pend_sev = want;
		break;
	default:
		c->state = ALERT_PENDING;
		c->pend_sev = want;
		c->since_ms = ts;
		break;
	}
	if (ts - c->since_ms >= c->for_ms)
		return do_fire(c, want, ts, o);
	return 0;
}

int check_tick(struct alert_engine *e, struct check *c, int64_t now, struct alert_out *o)
{
	(void)e;
	if (c->state != ALERT_PENDING || now - c->since_ms < c->for_ms)
		return 0;
	/* decided when the 'for' ran out, not when the tick came */
	return do_fire(c, c->pend_sev, c->since_ms + c->for_ms, o);
}

int check_refire(struct alert_engine *e, struct check *c, int64_t ts, double value,
		 double threshold, const char *unit, const char *msg, struct alert_out *o)
{
	if (c->state != ALERT_FIRING)
		return check_eval(e, c, ts, c->rc ? c->rc->severity : SEV_YELLOW, value,
				  threshold, unit, msg, o);
	check_update(c, value, threshold, unit, msg);
	/* from the severity it has to the same: no action asks for that (fire_actions) */
	return do_fire(c, c->sev, ts, o);
}

void check_update(struct check *c, double value, double threshold, const char *unit,
		  const char *msg)
{
	c->value = value;
	c->threshold = threshold;
	snprintf(c->unit, sizeof c->unit, "%s", unit ? unit : "");
	snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "");
}

/* ---- rules and checks -------------------------------------------------------------- */

struct check *engine_check(struct alert_engine *e, struct rstate *r, const char *name,
			   int64_t for_ms, bool actions)
{
	struct check *c, **nc;

	if (r->nc >= sizeof r->c / sizeof r->c[0])
		return NULL;
	if (!(c = calloc(1, sizeof *c)))
		return NULL;
	if (!(nc = realloc(e->checks, (e->nchecks + 1) * sizeof *nc))) {
		free(c);
		return NULL;
	}
	e->checks = nc;
	e->checks[e->nchecks++] = c;
	snprintf(c->rule, sizeof c->rule, "%s", r->id);
	snprintf(c->name, sizeof c->name, "%s", name);
	c->rc = r->rc;
	c->for_ms = for_ms;
	c->actions = actions;
	r->c[r->nc++] = c;
	return c;
}

static const struct rule_ops *kind_ops(int kind)
{
	switch (kind) {
	case RULE_THRESHOLD:
		return &alert_threshold_ops;
	case RULE_WATERLOGGING:
		return &alert_waterlogging_ops;
	case RULE_LEAKAGE:
		return &alert_leakage_ops;
	case RULE_PV:
		return &alert_pv_ops;
	default:
		return NULL;
	}
}

/*
 * Call add(e, d, rule) for every device d that rule reads: the devices every point_ref of
 * its config names (a device may come more than once), or a comms pseudo-rule's device.
 * Every kind's feed returns at once for a reading of any other device (it matches the
 * reading's device against these refs), so visiting only these rules decides the same.
 * A point_ref added to struct rule_cfg goes here too.
 */
static void rule_devices(struct alert_engine *e, size_t rule, size_t *mark,
			 void (*add)(struct alert_engine *, size_t *, size_t, size_t))
{
	const struct rstate *r = &e->rules[rule];
	const struct rule_cfg *rc = r->rc;

	if (!rc) {
		add(e, mark, r->device, rule);
		return;
	}
	if (rc->has_point)
		add(e, mark, rc->point.device, rule);
	for (size_t k = 0; k < rc->ninflow; k++)
		add(e, mark, rc->inflow[k].device, rule);
	for (size_t k = 0; k < rc->noutflow; k++)
		add(e, mark, rc->outflow[k].device, rule);
	for (size_t k = 0; k < rc->nnight_exclude; k++)
		add(e, mark, rc->night_exclude[k].run.device, rule);
	if (rc->has_inverter)
		add(e, mark, rc->inverter, rule);
	if (rc->has_power)
		add(e, mark, rc->power.device, rule);
	if (rc->has_fault)
		add(e, mark, rc->fault.device, rule);
}

/* mark[d] is 1 + the last rule added for device d: a rule that names a device twice
 * is listed once (the rules come in order). First pass: count into feed_first[d + 1]. */
static void feed_count(struct alert_engine *e, size_t *mark, size_t d, size_t rule)
{
	if (d >= e->cfg->ndevices || mark[d] == rule + 1)
		return;
	mark[d] = rule + 1;
	e->feed_first[d + 1]++;
}

/* Second pass: next[d] is where device d's next rule goes; the slot before it, once
 * past the start of d's rules, holds the last rule written there. */
static void feed_fill(struct alert_engine *e, size_t *next, size_t d, size_t rule)
{
	if (d >= e->cfg->ndevices)
		return;
	if (next[d] > e->feed_first[d] && e->feed_rules[next[d] - 1] == rule)
		return;
	e->feed_rules[next[d]++] = rule;
}

/* The rules each device's readings visit (feed_first, feed_rules), in rule order. */
static int feed_index(struct alert_engine *e)
{
	size_t nd = e->cfg->ndevices, *mark;

	if (!(e->feed_first = calloc(nd + 1, sizeof *e->feed_first)) ||
	    !(mark = calloc(nd ? nd : 1, sizeof *mark)))
		return -1;
	for (size_t i = 0; i < e->nrules; i++)
		rule_devices(e, i, mark, feed_count);
	for (size_t d = 0; d < nd; d++)
		e->feed_first[d + 1] += e->feed_first[d];
	if (!(e->feed_rules = calloc(e->feed_first[nd] ? e->feed_first[nd] : 1,
				     sizeof *e->feed_rules))) {
		free(mark);
		return -1;
	}
	for (size_t d = 0; d < nd; d++)
		mark[d] = e->feed_first[d];
	for (size_t i = 0; i < e->nrules; i++)
		rule_devices(e, i, mark, feed_fill);
	free(mark);
	return 0;
}

struct alert_engine *alert_new(const struct config *cfg, char *err, size_t errlen)
{
	struct alert_engine *e = calloc(1, sizeof *e);
	size_t n = cfg->nrules + cfg->ndevices;

	if (!e || !(e->rules = calloc(n ? n : 1, sizeof *e->rules))) {
		free(e);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	e->cfg = cfg;
	e->last_ms = INT64_MIN;
	e->first_ms = INT64_MAX;
	for (size_t i = 0; i < n; i++) {
		struct rstate *r = &e->rules[i];

		if (i < cfg->nrules) {
			r->rc = &cfg->rules[i];
			r->ops = kind_ops(r->rc->kind);
			snprintf(r->id, sizeof r->id, "%s", r->rc->id);
		} else {
			r->device = i - cfg->nrules;
			r->ops = &alert_comms_ops;
			/* the comms pseudo-rule of a device: comms-<device>/offline */
			snprintf(r->id, sizeof r->id, "comms-%.*s", ID_MAX - 7,
				 cfg->devices[r->device].id);
		}
		e->nrules++;
		if (!r->ops) {
			snprintf(err, errlen, "rule %s: unknown kind %d", r->id, r->rc->kind);
			alert_free(e);
			return NULL;
		}
		if (r->ops->init(e, r, err, errlen) < 0) {
			alert_free(e);
			return NULL;
		}
	}
	if (feed_index(e) < 0) {
		alert_free(e);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	return e;
}

void alert_free(struct alert_engine *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->nrules; i++)
		if (e->rules[i].ops && e->rules[i].ops->free)
			e->rules[i].ops->free(&e->rules[i]);
	for (size_t i = 0; i < e->nchecks; i++)
		free(e->checks[i]);
	free(e->checks);
	free(e->rules);
	free(e->feed_first);
	free(e->feed_rules);
	free(e);
}

/* Notes about the clock go under the device's comms pseudo-rule, check "clock". */
static const char *comms_id(const struct alert_engine *e, size_t device)
{
	return e->rules[e->cfg->nrules + device].id;
}

/* Time seen live: the bounds of what a clock step re-bases. */
static void saw(struct alert_engine *e, int64_t t)
{
	if (t > e->last_ms)
		e->last_ms = t;
	if (t < e->first_ms)
		e->first_ms = t;
}

bool engine_live(const struct alert_engine *e, int64_t t)
{
	return t >= e->first_ms && t <= e->last_ms;
}

int alert_feed(struct alert_engine *e, size_t device, int64_t ts_ms, const struct value *values,
	       size_t n, struct alert_out *out)
{
	if (device >= e->cfg->ndevices)
		return 0;
	if (e->guard && e->last_ms >= e->guard_until)
		e->guard = false;
	if (e->guard && ts_ms >= e->guard_lo && ts_ms <= e->guard_hi) {
		/* stamped by the old clock just before the step, processed after it */
		if (e->guard_n++ == 0 &&
		    out_note(out, comms_id(e, device), "clock", ts_ms + e->guard_delta,
			     "a reading of %s stamped before the clock step: taken at %+.1f s",
			     e->cfg->devices[device].id, (double)e->guard_delta / 1000) < 0)
			return -1;
		ts_ms += e->guard_delta;
	}
	if (e->last_ms != INT64_MIN && ts_ms < e->last_ms - ALERT_LATE_MS) {
		/* Only a stepped clock stamps a reading this long before what the engine
		 * has seen: its intervals would be negative, its 'for' would start in the
		 * past. One note per run of them. */
		if (!e->late_noted &&
		    out_note(out, comms_id(e, device), "clock", e->last_ms,
			     "a reading of %s stamped %.1f s before the latest time seen: not "
			     "evaluated (was the clock stepped?)", e->cfg->devices[device].id,
			     (double)(e->last_ms - ts_ms) / 1000) < 0)
			return -1;
		e->late_noted = true;
		return 0;
	}
	e->late_noted = false;
	saw(e, ts_ms);
	for (size_t k = e->feed_first[device]; k < e->feed_first[device + 1]; k++) {
		struct rstate *r = &e->rules[e->feed_rules[k]];
		if (r->ops->feed && r->ops->feed(e, r, device, ts_ms, values, n, out) < 0)
			return -1;
	}
	return 0;
}

int alert_tick(struct alert_engine *e, int64_t now_ms, struct alert_out *out)
{
	saw(e, now_ms);
	for (size_t i = 0; i < e->nrules; i++) {
		struct rstate *r = &e->rules[i];
		if (r->ops->tick && r->ops->tick(e, r, now_ms, out) < 0)
			return -1;
	}
	for (size_t i = 0; i < e->nchecks; i++)
		if (check_tick(e, e->checks[i], now_ms, out) < 0)
			return -1;
	return 0;
}

/* Beyond this a "step" is garbage (and adding it could overflow): ±30,000 years. */
#define STEP_MAX_MS (1000000000000000LL)

void alert_clock_step(struct alert_engine *e, int64_t delta)
{
	int64_t g;

	if (!e || delta == 0 || delta > STEP_MAX_MS || delta < -STEP_MAX_MS ||
	    e->last_ms == INT64_MIN)
		return; /* nothing learnt live yet: nothing to re-base */
	for (size_t i = 0; i < e->nrules; i++)
		if (e->rules[i].ops->clock_step)
			e->rules[i].ops->clock_step(e, &e->rules[i], delta);
	for (size_t i = 0; i < e->nchecks; i++) {
		struct check *c = e->checks[i];

		/* a 'for' in progress keeps the time it has held: it neither starts over
		 * nor completes early */
		if (c->state == ALERT_PENDING && engine_live(e, c->since_ms))
			c->since_ms += delta;
		if (c->state == ALERT_FIRING && engine_live(e, c->fired_ms))
			c->fired_ms += delta;
	}
	/*
	 * Readings stamped by the old clock shortly before the step are still in the
	 * daemon's queue. They lie within g of the latest old time, and readings of the
	 * new clock lie at least |delta| - g from there, so with g at most half the step
	 * the two never mix; after g of the new clock, the old ones have all arrived.
	 */
	g = (delta < 0 ? -delta : delta) / 2;
	if (g > ALERT_LATE_MS)
		g = ALERT_LATE_MS;
	e->guard = g > 0;
	e->guard_n = 0;
	e->guard_lo = e->last_ms - g;
	e->guard_hi = e->last_ms + g;
	e->guard_delta = delta;
	e->guard_until = e->last_ms + delta + g;
	e->first_ms += delta;
	e->last_ms += delta;
	e->late_noted = false;
}

void alert_set_explain(struct alert_engine *e, bool on)
{
	e->explain = on;
}

size_t alert_checks(const struct alert_engine *e, struct alert_transition *out, size_t max)
{
	for (size_t i = 0; i < e->nchecks && i < max; i++) {
		const struct check *c = e->checks[i];
		struct alert_transition *t = &out[i];

		if (c->state == ALERT_FIRING) {
			check_as_transition(t, c, ALERT_FIRING, c->sev, c->fired_ms);
			continue;
		}
		memset(t, 0, sizeof *t);
		snprintf(t->rule, sizeof t->rule, "%s", c->rule);
		snprintf(t->check, sizeof t->check, "%s", c->name);
		t->state = c->state == ALERT_PENDING ? ALERT_PENDING : ALERT_OK;
	}
	return e->nchecks;
}

size_t alert_active(const struct alert_engine *e, struct alert_transition *out, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < e->nchecks && n < max; i++) {
		const struct check *c = e->checks[i];
		struct alert_transition *t;

		if (c->state != ALERT_PENDING && c->state != ALERT_FIRING)
			continue;
		t = &out[n++];
		if (c->state == ALERT_FIRING)
			check_as_transition(t, c, c->state, c->sev, c->fired_ms);
		else
			check_as_transition(t, c, c->state, c->pend_sev, c->since_ms);
	}
	return n;
}

/* ---- helpers for the kinds --------------------------------------------------------- */

double alert_num(const struct value *v)
{
	switch (v->kind) {
	case VAL_BOOL:
		return v->v.b ? 1 : 0;
	case VAL_INT:
		return (double)v->v.i;
	case VAL_UINT:
		return (double)v->v.u;
	case VAL_DOUBLE:
		return v->v.d;
	default:
		return NAN;
	}
}

const char *alert_devname(const struct config *cfg, size_t dev)
{
	const struct device_cfg *d = &cfg->devices[dev];
	return d->name && *d->name ? d->name : d->id;
}

double alert_ref_value(const struct point_ref *p, size_t dev, const struct value *v, size_t n)
{
	if (p->device != dev || p->point < 0 || (size_t)p->point >= n)
		return NAN;
	return alert_num(&v[p->point]);
}

const struct point_def *alert_ref_def(const struct config *cfg, const struct point_ref *p)
{
	const struct device_cfg *d = &cfg->devices[p->device];
	if (p->point < 0 || (size_t)p->point >= d->npoints)
		return NULL;
	return &d->points[p->point];
}

bool alert_ref_f32(const struct config *cfg, const struct point_ref *p)
{
	const struct point_def *pd = alert_ref_def(cfg, p);

	return pd && pd->type == PT_FLOAT32;
}

int64_t alert_local_midnight(int64_t ts_ms)
{
	time_t t = (time_t)(ts_ms >= 0 ? ts_ms / 1000 : (ts_ms - 999) / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return (int64_t)mktime(&tm) * 1000;
}

int64_t alert_local_next_midnight(int64_t day_ms)
{
	/* noon of the day, plus a day, back to midnight: right on 23 h and 25 h days */
	time_t t = (time_t)(day_ms / 1000) + 12 * 3600;
	struct tm tm;

	localtime_r(&t, &tm);
	tm.tm_mday++;
	tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
	tm.tm_isdst = -1;
	return (int64_t)mktime(&tm) * 1000;
}

int alert_local_tod(int64_t ts_ms)
{
	time_t t = (time_t)(ts_ms >= 0 ? ts_ms / 1000 : (ts_ms - 999) / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	return tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
}

bool alert_in_window(int tod, int from, int to)
{
	if (from <= to)
		return tod >= from && tod < to;
	return tod >= from || tod < to;
}

void alert_local_date(int64_t ts_ms, char *buf, size_t len)
{
	time_t t = (time_t)(ts_ms / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d", &tm);
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar, and back (the
 * well-known era arithmetic: 400-year eras of 146097 days, years starting in March). */
static int32_t days_from_civil(int y, int m, int d)
{
	int era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int32_t alert_local_dayno(int64_t ts_ms)
{
	time_t t = (time_t)(ts_ms >= 0 ? ts_ms / 1000 : (ts_ms - 999) / 1000);
	struct tm tm;

	localtime_r(&t, &tm);
	return days_from_civil(tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

void alert_dayno_date(int32_t day, char *buf, size_t len)
{
	int32_t z = day + 719468, era = (z >= 0 ? z : z - 146096) / 146097;
	int doe = (int)(z - era * 146097);
	int yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
	int m = mp < 10 ? mp + 3 : mp - 9;
	int y = yoe + era * 400 + (m <= 2);

	snprintf(buf, len, "%04d-%02d-%02d", y, m, d);
}

/* ---- persistence ------------------------------------------------------------------- */

void save_line(struct jbuf *b, const char *rule, const char *fmt, ...)
{
	char line[8192];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof line)
		return;
	jb_cstr(b, "s\t");
	jb_cstr(b, rule);
	jb_cstr(b, "\t");
	jb_cstr(b, line);
	jb_cstr(b, "\n");
}

double field_num(const char *s)
{
	return strtod(s, NULL);
}

int64_t field_i64(const char *s)
{
	return strtoll(s, NULL, 10);
}

/* A message or unit without the tabs and newlines that would break a line. */
static void save_text(struct jbuf *b, const char *s)
{
	for (; *s; s++)
		jb_raw(b, *s == '\t' || *s == '\n' || *s == '\r' ? " " : s, 1);
}

char *alert_save(const struct alert_engine *e)
{
	struct jbuf b;
	char num[64];
	char *p;

	jb_init(&b);
	jb_cstr(&b, SAVE_MAGIC "\n");
	for (size_t i = 0; i < e->nchecks; i++) {
		const struct check *c = e->checks[i];
		if (c->state == ALERT_OK)
			continue;
		snprintf(num, sizeof num, "%d\t%d\t%d\t", c->state, c->sev, c->pend_sev);
		jb_cstr(&b, "c\t");
		jb_cstr(&b, c->rule);
		jb_cstr(&b, "\t");
		jb_cstr(&b, c->name);
		jb_cstr(&b, "\t");
		jb_cstr(&b, num);
		snprintf(num, sizeof num, "%" PRId64 "\t%" PRId64 "\t", c->since_ms, c->fired_ms);
		jb_cstr(&b, num);
		snprintf(num, sizeof num, "%.17g\t%.17g\t", c->value, c->threshold);
		jb_cstr(&b, num);
		save_text(&b, c->unit);
		jb_cstr(&b, "\t");
		save_text(&b, c->msg);
		jb_cstr(&b, "\n");
	}
	for (size_t i = 0; i < e->nrules; i++)
		if (e->rules[i].ops->save)
			e->rules[i].ops->save(&e->rules[i], &b);
	if (b.oom) {
		jb_free(&b);
		return NULL;
	}
	/* hand over the buffer itself: the caller frees it with free() */
	jb_cstr_get(&b);
	p = b.p;
	if (!p)
		p = calloc(1, 1);
	return p;
}

static struct rstate *rule_by_id(struct alert_engine *e, const char *id)
{
	for (size_t i = 0; i < e->nrules; i++)
		if (strcmp(e->rules[i].id, id) == 0)
			return &e->rules[i];
	return NULL;
}

#define MAXF 256

int alert_restore(struct alert_engine *e, const char *blob, char *err, size_t errlen)
{
	size_t len = strlen(blob), lineno = 0;
	char *copy = malloc(len + 1), *line, *next;

	if (!copy) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	memcpy(copy, blob, len + 1);
	for (line = copy; line && *line; line = next) {
		char *f[MAXF];
		size_t nf = 0;
		struct rstate *r;

		lineno++;
		if ((next = strchr(line, '\n')))
			*next++ = '\0';
		if (lineno == 1) {
			if (strcmp(line, SAVE_MAGIC) != 0) {
				snprintf(err, errlen, "saved alert state: line 1 is not '%s'",
					 SAVE_MAGIC);
				free(copy);
				return -1;
			}
			continue;
		}
		for (char *p = line; p && nf < MAXF; nf++) {
			f[nf] = p;
			if ((p = strchr(p, '\t')))
				*p++ = '\0';
		}
		if (nf < 2 || !(r = rule_by_id(e, f[1])))
			continue; /* a rule that no longer exists */
		if (f[0][0] == 'c' && nf >= 12) {
			for (size_t k = 0; k < r->nc; k++) {
				struct check *c = r->c[k];
				int st = atoi(f[3]);
				if (strcmp(c->name, f[2]) != 0)
					continue;
				if (st != ALERT_PENDING && st != ALERT_FIRING)
					break;
				c->state = st;
				c->sev = atoi(f[4]);
				c->pend_sev = atoi(f[5]);
				c->since_ms = field_i64(f[6]);
				c->fired_ms = field_i64(f[7]);
				c->value = field_num(f[8]);
				c->threshold = field_num(f[9]);
				snprintf(c->unit, sizeof c->unit, "%s", f[10]);
				snprintf(c->msg, sizeof c->msg, "%s", f[11]);
				if (c->sev < SEV_NONE || c->sev > SEV_RED)
					c->sev = SEV_YELLOW;
				if (c->pend_sev < SEV_NONE || c->pend_sev > SEV_RED)
					c->pend_sev = SEV_YELLOW;
				break;
			}
		} else if (f[0][0] == 's' && r->ops->restore) {
			r->ops->restore(r, f + 2, nf - 2);
		}
	}
	free(copy);
	return 0;
}
