/*
 * alert_leak_night: the night check of a leakage zone as a change detector. Owns the
 * zone's nightly values (the last NIGHT_HIST nights), the weekday offsets and noise level
 * learnt from them, the two CUSUM statistics and the latched steps, and decides from
 * them when to page, when to page again for a second leak, and when a repair resolves.
 *
 * It must never do I/O or read a clock (see alert.c).
 *
 * Why a detector and not a nightly verdict: a night judged on its own against a baseline
 * of recent nights flips in and out of alarm when the night flow sits near the limit,
 * and pages again whenever the baseline wobbles under a leak that stays. Here each night
 * adds one value to a level, and the question is whether that level has changed:
 *
 *   value   the lowest quarter hour of the night window, with the pump's flow taken
 *           out (alert_leak_steps.c finds the pump's switches; a night with none is
 *           compared with the expected level with and without the pump running, and
 *           left undecided when it is too close to tell), and the flows that exclude:
 *           names taken out;
 *   weekday each weekday's offset from the level around it (the median over the kept
 *           nights, leaving out weeks in which the level changed): a town uses more
 *           water on some nights of the week than on others;
 *   noise   sigma, from the night-to-night changes of the weekday-adjusted value (robust:
 *           a median, so a step does not count as noise), at least 1 % of the level;
 *   level   before any page, the median of the last NIGHT_BASE nights since the level
 *           last changed; with a step latched, the last few nights and their rise, so
 *           that a leak that keeps growing after its page is not paged again;
 *   CUSUM   up += z - k, down -= z + k (z = (value - level) / sigma, k = allowance),
 *           each held at 0 or above. Up reaching the decision interval h pages: a large
 *           step after one night, a small one after a few. The step starts where the
 *           rise is best explained by one jump (the split of the run that maximises
 *           n x mean^2), and its size is the median of the nights since less the level
 *           before. Down reaching h is a fall: the level starts again from there.
 *
 * After a page the step is latched: the alert stays firing, the level starts again from
 * the step, and a further rise of its own (a second leak) pages again, a firing of the
 * same severity that names both. A repair is the level falling back by half the latched
 * step (and by at least 3 sigma, so noise never resolves one): the alert resolves, or,
 * with several latched, the top one goes and the alert stays.
 */
#include "alert_leak_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NIGHT_BASE 28     /* nights behind the level before a page */
#define NIGHT_RECENT 3    /* nights behind the level with a step latched */
#define NIGHT_TREND 6     /* night-to-night changes behind the rise of a latched step */
#define NIGHT_WD_MIN 2    /* weekday offsets need this many weeks of it */
#define NIGHT_MIN_SIG 2.0 /* a page needs a step of at least this many sigma */
#define NIGHT_REPAIR_SIG 3.0 /* a repair needs a fall of at least this many sigma */
#define NIGHT_SIG_REL 0.01/* sigma is at least this share of the level */
#define NIGHT_SIG_MIN 0.05/* m3/h */
#define NONE INT32_MIN

static const char *const wdname[7] = { "Monday", "Tuesday", "Wednesday", "Thursday",
				       "Friday", "Saturday", "Sunday" };

static int weekday(int32_t day)
{
	return (int)(((day + 3) % 7 + 7) % 7);
}

static void sortd(double *s, int n)
{
	for (int i = 1; i < n; i++)
		for (int j = i; j > 0 && s[j - 1] > s[j]; j--) {
			double t = s[j];
			s[j] = s[j - 1];
			s[j - 1] = t;
		}
}

/* The median of n values (n >= 1), v left as it was. */
static double median(const double *v, int n)
{
	double s[NIGHT_HIST + 1];

	memcpy(s, v, (size_t)n * sizeof *s);
	sortd(s, n);
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

void night_init(struct night_det *d)
{
	memset(d, 0, sizeof *d);
	d->seg0 = NONE;
	d->run_p = d->run_m = NONE;
}

void night_forget(struct night_det *d)
{
	struct latched stk[NIGHT_STACK];
	int n = d->nstk;

	memcpy(stk, d->stk, sizeof stk);
	night_init(d);
	memcpy(d->stk, stk, sizeof stk);
	d->nstk = n;
}

/* ---- what the kept nights say -------------------------------------------------------- */

static bool near_bound(const struct night_det *d, int32_t day)
{
	for (int i = 0; i < d->nb; i++)
		if (d->bounds[i] >= day - 3 && d->bounds[i] <= day + 3)
			return true;
	return false;
}

/* Each weekday's offset from the week around it: the median over the kept nights of the
 * night less the median of the seven nights centred on it, leaving out weeks in which
 * the level changed. 0 until NIGHT_WD_MIN weeks of that weekday are known. Returns how
 * many weekdays are known. */
static int wd_offsets(const struct night_det *d, double w[7])
{
	int known = 0;
	double dev[7][NIGHT_HIST];
	int n[7] = { 0 };

	for (int i = 0; i < d->nh; i++) {
		double win[7];
		int k = 0;
		if (near_bound(d, d->h[i].day))
			continue;
		for (int j = i - 3 < 0 ? 0 : i - 3; j < d->nh && j <= i + 3; j++)
			if (d->h[j].day >= d->h[i].day - 3 && d->h[j].day <= d->h[i].day + 3)
				win[k++] = d->h[j].x;
		if (k >= 6) {
			int wd = weekday(d->h[i].day);
			dev[wd][n[wd]++] = d->h[i].x - median(win, k);
		}
	}
	for (int wd = 0; wd < 7; wd++) {
		w[wd] = n[wd] >= NIGHT_WD_MIN ? median(dev[wd], n[wd]) : 0;
		known += n[wd] >= NIGHT_WD_MIN;
	}
	return known;
}

/* Weekday-adjusted values of the kept nights (all, or the anchored ones): y and day. */
static int adjusted(const struct night_det *d, const double w[7], bool anchored_only,
		    double *y, int32_t *day)
{
	int n = 0;

	for (int i = 0; i < d->nh; i++) {
		if (anchored_only && !d->h[i].anchored)
			continue;
		y[n] = d->h[i].x - w[weekday(d->h[i].day)];
		day[n++] = d->h[i].day;
	}
	return n;
}

static double noise(const double *y, const int32_t *day, int n, double ref)
{
	double dif[NIGHT_HIST], s = 0;
	int k = 0;

	for (int i = 1; i < n; i++)
		if (day[i] - day[i - 1] == 1)
			dif[k++] = fabs(y[i] - y[i - 1]);
	if (k >= 5)
		s = 1.4826 * median(dif, k) / sqrt(2);
	if (isfinite(ref) && s < NIGHT_SIG_REL * fabs(ref))
		s = NIGHT_SIG_REL * fabs(ref);
	return s > NIGHT_SIG_MIN ? s : NIGHT_SIG_MIN;
}

/* How fast the level rises: the median change from one night to the next over the last
 * NIGHT_TREND nights, so that one abrupt step among them does not count as a rise. NAN
 * with fewer than three such changes. */
static double trend(const double *y, const int32_t *day, int n)
{
	double dif[NIGHT_TREND];
	int k = 0;

	for (int i = n - 1; i > 0 && k < NIGHT_TREND; i--)
		if (day[i] - day[i - 1] == 1)
			dif[k++] = y[i] - y[i - 1];
	return k >= 3 ? median(dif, k) : NAN;
}

/* The level tonight's value is compared with (NAN: none yet). */
static double reference(const struct night_det *d, const double *y, const int32_t *day, int n)
{
	double v[NIGHT_HIST];
	int k = 0, first = n;

	for (int i = 0; i < n; i++)
		if (d->seg0 == NONE || day[i] >= d->seg0) {
			first = i;
			break;
		}
	if (!d->nstk) {
		for (int i = first; i < n; i++)
			if (d->run_p == NONE || day[i] < d->run_p)
				v[k++] = y[i];
		if (!k)
			return NAN;
		return k > NIGHT_BASE ? median(v + k - NIGHT_BASE, NIGHT_BASE) : median(v, k);
	}
	/* latched: the last few nights of the present level, and the rise the nights are on
	 * (over the page too: a leak that keeps growing after its page is one leak) */
	k = n - first;
	if (!k)
		return NAN;
	{
		int m = k < NIGHT_RECENT ? k : NIGHT_RECENT;
		double lvl = median(y + n - m, m), s = trend(y, day, n);
		if (s > 0)
			lvl += s * (m + 1) / 2.0;
		return lvl;
	}
}

/* The value expected tonight, from the nights whose pump state was seen. */
static double expected(const struct night_det *d, int wd)
{
	double w[7], y[NIGHT_HIST], r;
	int32_t day[NIGHT_HIST];
	int n;

	wd_offsets(d, w);
	if ((n = adjusted(d, w, true, y, day)) < 3)
		return NAN;
	r = reference(d, y, day, n);
	if (!isfinite(r))
		r = median(n > 7 ? y + n - 7 : y, n > 7 ? 7 : n);
	return r + w[wd];
}

/* ---- one night's value ---------------------------------------------------------------- */

/* How long the pump ran in [a, b), given its switches and its state before the first. */
static double pump_share(const struct pump_event *ev, int nev, bool on0, int64_t a, int64_t b)
{
	int64_t t = a, on_ms = 0;
	bool on = on0;

	for (int i = 0; i < nev && t < b; i++) {
		if (ev[i].t > t) {
			int64_t u = ev[i].t < b ? ev[i].t : b;
			if (on)
				on_ms += u - t;
			t = u;
		}
		on = ev[i].sign > 0;
	}
	if (on && b > t)
		on_ms += b - t;
	return (double)on_ms / (double)(b - a);
}

enum how { HOW_PLAIN, HOW_STEPS, HOW_ON, HOW_OFF };

struct verdict {
	double x, expect, level, wd, sig, z;
	double up, down; /* the CUSUMs tonight, before a page or a fall starts them again */
	int known;       /* weekdays whose offset is known */
	double usual;    /* a page: the level before the step, on tonight's weekday */
	int how, kind;   /* kind: 0 nothing, 1 page, 2 repair, 3 the level fell */
	double step;
	int32_t since;
	bool learning;
};

static void say_date(int32_t day, const struct rule_cfg *rc, char *buf, size_t len)
{
	/* a night is named by the date its window ends on */
	alert_dayno_date(day + (rc->night_to_s <= rc->night_from_s ? 1 : 0), buf, len);
}

static void push_bound(struct night_det *d, int32_t day)
{
	if (d->nb == NIGHT_BOUNDS) {
		memmove(d->bounds, d->bounds + 1, (NIGHT_BOUNDS - 1) * sizeof *d->bounds);
		d->nb--;
	}
	d->bounds[d->nb++] = day;
}

static void new_level(struct night_det *d, int32_t from)
{
	d->seg0 = from;
	d->cp = d->cm = 0;
	d->run_p = d->run_m = NONE;
	push_bound(d, from);
}

static void add_night(struct night_det *d, int32_t day, double x, bool anchored)
{
	if (d->nh == NIGHT_HIST) {
		memmove(d->h, d->h + 1, (NIGHT_HIST - 1) * sizeof *d->h);
		d->nh--;
	}
	d->h[d->nh++] = (struct night_rec){ .day = day, .anchored = anchored, .x = x };
	/* a change before the kept nights no longer bears on any weekday offset */
	while (d->nb && d->bounds[0] < d->h[0].day - 3) {
		memmove(d->bounds, d->bounds + 1, (size_t)(d->nb - 1) * sizeof *d->bounds);
		d->nb--;
	}
}

static int explain(struct alert_engine *e, struct rstate *r, const struct night_det *d,
		   const struct night_obs *ob, const struct verdict *v, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	char date[16], since[16], pump[64], act[64];

	if (!e->explain)
		return 0;
	say_date(ob->day, rc, date, sizeof date);
	switch (v->how) {
	case HOW_STEPS:
		snprintf(pump, sizeof pump, "pump %.1f out by %d switch%s", ob->S, ob->nev,
			 ob->nev == 1 ? "" : "es");
		break;
	case HOW_ON:
		snprintf(pump, sizeof pump, "pump %.1f on all night (by level)", ob->S);
		break;
	case HOW_OFF:
		snprintf(pump, sizeof pump, "pump %.1f off all night (by level)", ob->S);
		break;
	default:
		snprintf(pump, sizeof pump, "no pump");
	}
	act[0] = '\0';
	if (v->kind == 1) {
		say_date(v->since, rc, since, sizeof since);
		snprintf(act, sizeof act, " | PAGE +%.2f since %s", v->step, since);
	} else if (v->kind == 2) {
		snprintf(act, sizeof act, " | REPAIR -%.2f", v->step);
	} else if (v->kind == 3) {
		say_date(v->since, rc, since, sizeof since);
		snprintf(act, sizeof act, " | FELL: level from %s", since);
	}
	if (v->learning)
		return out_explain(e, o, r->id, "night", ob->end, "night to %s: %.2f m3/h (%s) "
				   "| learning: %d nights (%u needed), %d of 7 weekdays", date, v->x, pump,
				   d->nh, rc->night_learn, v->known);
	return out_explain(e, o, r->id, "night", ob->end, "night to %s: %.2f m3/h (%s) | %s "
			"%+.2f | expected %.2f (level %.2f) | sigma %.2f | z %+.2f | up %.2f "
			"down %.2f of %.1f | latched %d%s", date, v->x, pump,
			wdname[weekday(ob->day)], v->wd, v->expect, v->level, v->sig, v->z, v->up,
			v->down, rc->night_decision, d->nstk, act);
}

/* The night's value with the pump taken out, or a note saying why there is none. */
static int night_value(struct rstate *r, struct night_det *d, const struct night_obs *ob,
		       double *x, int *how, struct alert_out *o)
{
	double plain = INFINITY, best = INFINITY;
	int valid = 0;
	char date[16];
	bool on0 = ob->nev && ob->ev[0].sign < 0; /* the first switch is off: it ran before */

	for (int i = 0; i < ob->nbins; i++) {
		int64_t a = ob->first + i * LEAK_BIN_MS;
		double v = ob->net[i] - ob->exc[i];
		if (!isfinite(v))
			continue;
		valid++;
		if (v < plain)
			plain = v;
		if (ob->S > 0 && ob->nev) {
			v -= ob->S * pump_share(ob->ev, ob->nev, on0, a, a + LEAK_BIN_MS);
			if (v < best)
				best = v;
		}
	}
	say_date(ob->day, r->rc, date, sizeof date);
	if (valid < 2)
		return out_note(o, r->id, "night", ob->end, "no verdict for the night to %s: only %d "
				"quarter hours of data", date, valid);
	if (!(ob->S > 0)) {
		*x = plain;
		*how = HOW_PLAIN;
		return 1;
	}
	if (ob->nev) {
		*x = best;
		*how = HOW_STEPS;
		return 1;
	}
	/* No switch seen: the pump ran all night or not at all. The nearer of the two to the
	 * level expected tonight, unless they are too close to call. */
	{
		double ex = expected(d, weekday(ob->day)), off = plain - ex, on = plain - ob->S - ex;
		if (!isfinite(ex))
			return out_note(o, r->id, "night", ob->end, "no verdict for the night to %s: "
					"no pump switch seen, and too few nights known to tell "
					"whether its %.1f m3/h ran", date, ob->S);
		if (fabs(fabs(off) - fabs(on)) < ob->S / 3)
			return out_note(o, r->id, "night", ob->end, "no verdict for the night to %s: "
					"no pump switch seen, and %.1f m3/h is as far from the "
					"expected %.1f with its %.1f m3/h as without", date, plain,
					ex, ob->S);
		*how = fabs(on) < fabs(off) ? HOW_ON : HOW_OFF;
		*x = *how == HOW_ON ? plain - ob->S : plain;
	}
	return 1;
}

/* ---- the decision ----------------------------------------------------------------------- */

static const char *zone(const struct rstate *r)
{
	return r->rc->name ? r->rc->name : r->id;
}

static int page(struct alert_engine *e, struct rstate *r, struct night_det *d, struct check *c,
		const struct night_obs *ob, const struct verdict *v, struct alert_out *o)
{
	char msg[ALERT_MSG_MAX], since[16], under[16];
	bool first = d->nstk == 1 || c->state != ALERT_FIRING;
	const struct latched *prev = d->nstk >= 2 ? &d->stk[d->nstk - 2] : NULL;

	say_date(v->since, r->rc, since, sizeof since);
	if (first || !prev) {
		snprintf(msg, sizeof msg, "night flow at %s up %.1f m3/h since the night to %s "
			 "(%.1f m3/h, usually %.1f)", zone(r), v->step, since, v->x, v->usual);
		return check_eval(e, c, ob->end, r->rc->severity, v->x, v->usual, "m3/h", msg, o);
	}
	say_date(prev->since, r->rc, under, sizeof under);
	snprintf(msg, sizeof msg, "night flow at %s up another %.1f m3/h since the night to %s "
		 "(%.1f m3/h, usually %.1f), on top of %.1f m3/h since %s", zone(r), v->step,
		 since, v->x, v->usual, prev->peak - prev->pre, under);
	return check_refire(e, c, ob->end, v->x, v->usual, "m3/h", msg, o);
}

int night_decide(struct alert_engine *e, struct rstate *r, struct night_det *d,
		 struct check *c, const struct night_obs *ob, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	double w[7], y[NIGHT_HIST + 1], ref, sig, h = rc->night_decision, k = rc->night_allowance;
	int32_t day[NIGHT_HIST + 1];
	struct verdict v = { 0 };
	int n, rv, known, wd = weekday(ob->day);
	bool ready;

	if (d->nh && ob->day <= d->h[d->nh - 1].day)
		return 0; /* decided already */
	if ((rv = night_value(r, d, ob, &v.x, &v.how, o)) <= 0)
		return rv;
	known = wd_offsets(d, w);
	n = adjusted(d, w, false, y, day);
	ref = reference(d, y, day, n);
	sig = noise(y, day, n, ref);
	/* no page before every weekday's offset is known: a town's Saturday night is no leak */
	ready = d->nh >= (int)rc->night_learn && known == 7 && isfinite(ref);
	add_night(d, ob->day, v.x, v.how != HOW_ON && v.how != HOW_OFF);
	v.wd = w[wd];
	v.level = ref;
	v.expect = ref + w[wd];
	v.sig = sig;
	if (!ready) {
		v.learning = true;
		v.known = known;
		return explain(e, r, d, ob, &v, o);
	}
	v.z = (v.x - w[wd] - ref) / sig;
	if (d->cp == 0) {
		d->run_p = ob->day;
		d->ref_p = ref;
	}
	d->cp = fmax(0, d->cp + v.z - k);
	if (d->cp == 0)
		d->run_p = NONE;
	if (d->cm == 0)
		d->run_m = ob->day;
	d->cm = fmax(0, d->cm - v.z - k);
	if (d->cm == 0)
		d->run_m = NONE;
	v.up = d->cp;
	v.down = d->cm;

	/* the kept nights with tonight's, adjusted with tonight's offsets */
	wd_offsets(d, w);
	n = adjusted(d, w, false, y, day);
	if (d->cp >= h) {
		/* where the run is best explained by one jump, and by how much */
		int first = 0, best = 0;
		double bsc = -1, tail[NIGHT_HIST], pre;
		while (first < n && day[first] < d->run_p)
			first++;
		for (int i = first; i < n; i++) {
			double s = 0;
			for (int j = i; j < n; j++)
				s += y[j] - d->ref_p;
			if (s * s / (n - i) > bsc) {
				bsc = s * s / (n - i);
				best = i;
			}
		}
		pre = best - first > 0 ? median(y + (best - first > 3 ? best - 3 : first),
						 best - first > 3 ? 3 : best - first)
				       : d->ref_p;
		for (int j = best; j < n; j++)
			tail[j - best] = y[j];
		v.step = median(tail, n - best) - pre;
		v.since = day[best];
		v.usual = pre + v.wd;
		if (v.step >= rc->night_min_step && v.step >= NIGHT_MIN_SIG * sig) {
			struct latched l = { .since = v.since, .pre = pre, .peak = pre + v.step,
					     .step = v.step };
			if (d->nstk == NIGHT_STACK) {
				/* as many latched as it holds: the newest folds into the top */
				d->stk[NIGHT_STACK - 1].peak = fmax(d->stk[NIGHT_STACK - 1].peak, l.peak);
			} else {
				d->stk[d->nstk++] = l;
			}
			v.kind = 1;
			new_level(d, v.since);
			if ((rv = explain(e, r, d, ob, &v, o)) < 0)
				return -1;
			return page(e, r, d, c, ob, &v, o);
		}
	} else if (d->cm >= h) {
		v.kind = 3;
		v.since = d->run_m;
		new_level(d, d->run_m);
	}
	if (d->nstk) {
		/* latched: the level since the step, and whether it fell back */
		int first = 0, m;
		double lvl, need;
		struct latched *top = &d->stk[d->nstk - 1];
		while (first < n && d->seg0 != NONE && day[first] < d->seg0)
			first++;
		m = n - first;
		if (m >= 2) {
			lvl = median(y + n - (m < NIGHT_RECENT ? m : NIGHT_RECENT),
				     m < NIGHT_RECENT ? m : NIGHT_RECENT);
			if (m >= NIGHT_RECENT && lvl > top->peak)
				top->peak = lvl;
			need = fmax(0.5 * (top->peak - top->pre), NIGHT_REPAIR_SIG * sig);
			if (lvl <= top->peak - need) {
				char msg[ALERT_MSG_MAX], date[16], since[16];
				struct latched gone = *top;
				d->nstk--;
				/* a fall that takes more than the top step repairs those below too */
				while (d->nstk && lvl <= d->stk[d->nstk - 1].pre +
							  0.5 * (d->stk[d->nstk - 1].peak -
								 d->stk[d->nstk - 1].pre))
					d->nstk--;
				v.kind = 2;
				v.step = gone.peak - lvl;
				new_level(d, day[n - 2]);
				if (explain(e, r, d, ob, &v, o) < 0)
					return -1;
				say_date(ob->day, rc, date, sizeof date);
				say_date(gone.since, rc, since, sizeof since);
				if (!d->nstk) {
					snprintf(msg, sizeof msg, "night flow at %s back down to %.1f m3/h "
						 "on the night to %s: the rise of %.1f m3/h since %s is "
						 "gone", zone(r), v.x, date, gone.peak - gone.pre, since);
					return check_eval(e, c, ob->end, SEV_NONE, v.x, v.expect, "m3/h",
							  msg, o);
				}
				{
					const struct latched *t = &d->stk[d->nstk - 1];
					char tsince[16];
					say_date(t->since, rc, tsince, sizeof tsince);
					snprintf(msg, sizeof msg, "night flow at %s up %.1f m3/h since the "
						 "night to %s (latched); the rise of %.1f m3/h since %s "
						 "went away on the night to %s", zone(r), t->peak - t->pre,
						 tsince, gone.peak - gone.pre, since, date);
					check_update(c, v.x, v.expect, "m3/h", msg);
					return out_note(o, r->id, "night", ob->end, "%s", msg);
				}
			}
		}
	} else if (c->state == ALERT_FIRING) {
		/* firing with nothing latched: the detector's state was lost (the zone's meters
		 * changed, or the saved state was) and it learnt again */
		char msg[ALERT_MSG_MAX];
		snprintf(msg, sizeof msg, "night flow at %s: the detector learnt the zone again and "
			 "holds no rise; %.1f m3/h", zone(r), v.x);
		if (explain(e, r, d, ob, &v, o) < 0)
			return -1;
		return check_eval(e, c, ob->end, SEV_NONE, v.x, v.expect, "m3/h", msg, o);
	}
	return explain(e, r, d, ob, &v, o);
}

/* ---- persistence ------------------------------------------------------------------------ */

void night_save(const struct night_det *d, const char *rule, struct jbuf *b)
{
	char buf[6144];
	size_t u = 0;

	buf[0] = '\0';
	save_line(b, rule, "lnd\t%" PRId32 "\t%.17g\t%.17g\t%" PRId32 "\t%" PRId32 "\t%.17g",
		  d->seg0, d->cp, d->cm, d->run_p, d->run_m, d->ref_p);
	for (int i = 0; i < d->nh; i++)
		u += (size_t)snprintf(buf + u, sizeof buf - u, "\t%" PRId32 "\t%d\t%.17g",
				      d->h[i].day, d->h[i].anchored, d->h[i].x);
	save_line(b, rule, "lnh%s", buf);
	u = 0;
	buf[0] = '\0';
	for (int i = 0; i < d->nstk; i++)
		u += (size_t)snprintf(buf + u, sizeof buf - u, "\t%" PRId32 "\t%.17g\t%.17g\t%.17g",
				      d->stk[i].since, d->stk[i].pre, d->stk[i].peak, d->stk[i].step);
	save_line(b, rule, "lnl%s", buf);
	u = 0;
	buf[0] = '\0';
	for (int i = 0; i < d->nb; i++)
		u += (size_t)snprintf(buf + u, sizeof buf - u, "\t%" PRId32, d->bounds[i]);
	save_line(b, rule, "lnb%s", buf);
}

bool night_restore(struct night_det *d, char **f, size_t nf)
{
	if (!strcmp(f[0], "lnd") && nf >= 7) {
		d->seg0 = (int32_t)field_i64(f[1]);
		d->cp = field_num(f[2]);
		d->cm = field_num(f[3]);
		d->run_p = (int32_t)field_i64(f[4]);
		d->run_m = (int32_t)field_i64(f[5]);
		d->ref_p = field_num(f[6]);
		if (!(d->cp >= 0) || !(d->cm >= 0) || !isfinite(d->cp) || !isfinite(d->cm))
			d->cp = d->cm = 0;
	} else if (!strcmp(f[0], "lnh")) {
		size_t n = (nf - 1) / 3;
		if ((nf - 1) % 3 || n > NIGHT_HIST)
			return true;
		for (size_t i = 0; i < n; i++) {
			d->h[i] = (struct night_rec){ .day = (int32_t)field_i64(f[1 + 3 * i]),
						      .anchored = atoi(f[2 + 3 * i]) != 0,
						      .x = field_num(f[3 + 3 * i]) };
			/* nights in order, each with a value: anything else is no history */
			if (!isfinite(d->h[i].x) || (i && d->h[i].day <= d->h[i - 1].day)) {
				d->nh = 0;
				return true;
			}
		}
		d->nh = (int)n;
	} else if (!strcmp(f[0], "lnl")) {
		size_t n = (nf - 1) / 4;
		if ((nf - 1) % 4 || n > NIGHT_STACK)
			return true;
		for (size_t i = 0; i < n; i++) {
			d->stk[i] = (struct latched){ .since = (int32_t)field_i64(f[1 + 4 * i]),
						      .pre = field_num(f[2 + 4 * i]),
						      .peak = field_num(f[3 + 4 * i]),
						      .step = field_num(f[4 + 4 * i]) };
			if (!isfinite(d->stk[i].pre) || !isfinite(d->stk[i].peak))
				return true;
		}
		d->nstk = (int)n;
	} else if (!strcmp(f[0], "lnb")) {
		size_t n = nf - 1;
		if (n > NIGHT_BOUNDS)
			return true;
		for (size_t i = 0; i < n; i++)
			d->bounds[i] = (int32_t)field_i64(f[1 + i]);
		d->nb = (int)n;
	} else {
		return false;
	}
	return true;
}
