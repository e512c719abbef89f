/*
 * alert_leakage: the leakage rule kind, per zone (DMA), from its inflow and outflow
 * meters. Owns the meters' marks, the 15-minute bins of the zone's net flow, the daily
 * water balance, the night minimum and its baseline, and the usual flow per time of day.
 *
 * It must never do I/O or read a clock (see alert.c).
 *
 * How readings become volumes: a totalizer (m3, L) is differenced between readings; a
 * drop is a rollover when the counter's modulus ('rollover:', else 2^bits x scale of an
 * unsigned point) explains it with a plausible volume, else a reset or a replaced meter:
 * that interval's volume is unknown and the counting restarts from the new reading. A
 * jump far above the meter's usual rate is a replacement too. A flow (m3/h, L/s, L/min)
 * is integrated with the trapezoid rule. Each interval's volume is spread evenly over the
 * time it spans, into:
 *   - the local calendar day (for 'balance'), with the time it covers; a day is decided
 *     once it is complete (30 minutes of lag for meters polled late) and only if every
 *     meter covered 90 % of it, otherwise no verdict and a note that says why;
 *   - 15-minute bins (epoch-aligned, so local quarter hours), closed 15 minutes after
 *     their end; a bin where every meter covered half of it gives the zone's net flow
 *     (inflows - outflows, m3/h). 'night' takes the minimum over the bins of the night
 *     window and compares it with night.max_flow and/or the median of the last
 *     night.baseline nights. 'burst' compares each bin with the median of that quarter
 *     hour over the last burst.days days, sustained for burst.for. Both histories
 *     always take the new value, alert or not: the baseline moves on, so a leak that
 *     stays becomes the new normal and the next one is still seen.
 * A day or a night is decided once: data that comes back to it later (a late meter, a
 * clock stepped back) is not counted again.
 *
 * A step of the wall clock (leak_clock_step) moves the meters' marks by the step and the
 * ring of bins by the step rounded to whole bins, so an hour stepped back is not binned
 * twice and an hour stepped forward does not leave an empty hour in the night. Calendar
 * days stay put: a day that loses or gains an hour is judged on its coverage.
 */
#include "alert_leak_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIN_MS LEAK_BIN_MS
#define NBINS 16                 /* 4 h of bins in the ring */
#define BIN_LAG_MS BIN_MS        /* a bin is closed this long after its end */
#define DAY_LAG_MS (30 * 60 * 1000LL)
#define MAX_SPAN_MS (6 * 3600 * 1000LL) /* a longer gap is no data */
#define COVER_GAP_MS (2 * 3600 * 1000LL)/* intervals up to this count as coverage */
#define DAY_COVER 0.9
#define BIN_COVER 0.5
#define SLOTS 96                 /* quarter hours of a day */
#define MAXM 16                  /* meters per zone */
#define MAXDAYS 28
#define MAXNIGHTS 60

struct meter {
	const struct point_ref *ref;
	int sign;            /* +1 inflow, -1 outflow */
	bool total;          /* a totalizer, else a flow */
	double factor;       /* to m3, or to m3/h */
	double modulus;      /* in m3; 0: none known */
	bool have;
	double prev;         /* m3, or m3/h */
	int64_t prev_ts;
	double rate;         /* recent m3/h, for telling a replacement from use */
	char name[ID_MAX + POINT_NAME_MAX + 2];
	const char *unit;    /* of the point, for messages */
	double zrate;        /* m3/h over its latest interval, for the zone's next sample */
	bool zfresh;         /* ... not yet in a zone sample */
};

/* A pump named in night.exclude: its run signal, followed as a step function. */
struct pumpx {
	const struct night_exclude *cfg;
	bool have, on;
	int64_t ts;          /* of the latest run sample */
};

struct day {
	int64_t start, end;  /* 0: unused */
	double vol[MAXM];
	int64_t cov[MAXM];
};

struct leak {
	struct check *balance, *night, *burst;
	struct meter m[MAXM];
	size_t nm;
	bool f32;            /* every meter is a float32 point (alert_transition.value_f32) */
	struct day day[2];
	int64_t base;        /* start of bin 0 of the ring; 0 until the first data */
	double bvol[NBINS][MAXM];
	int64_t bcov[NBINS][MAXM];
	double bxvol[NBINS];        /* excluded pumps' volume in each bin, and the time their */
	int64_t bxcov[NBINS];       /* run signals covered (night.exclude) */
	/* night */
	bool in_night;
	bool night_wait;    /* the window ended; the hour after it may still show a pump switch */
	double night_min;
	int night_bins;
	int64_t night_last; /* the end of the last bin of the night */
	int64_t night_decided; /* night_key of the latest night decided; 0: none */
	int64_t night_skipped; /* ... whose bins came back (a note was given) */
	int64_t day_decided;   /* start of the latest day decided; 0: none */
	double nhist[7][MAXNIGHTS]; /* per weekday with night.weekly, else [0] */
	unsigned nn[7], nh[7];      /* count, next index */
	/* night, as a change detector (alert_leak_night.c): the night's quarter hours, the
	 * pump steps found in the zone's samples, the excluded pumps */
	int64_t nfirst;             /* start of the night's first quarter hour */
	int nnb;
	double nnet[NIGHT_BINS], nexc[NIGHT_BINS];
	struct steps steps;
	struct night_det det;
	struct pumpx px[MAXM];
	size_t npx;
	bool restoring;             /* the saved "lk" line matched this zone's meters */
	/* burst */
	double shist[SLOTS][MAXDAYS];
	unsigned sn[SLOTS], sh[SLOTS];
	int64_t slast[SLOTS];       /* start of the bin each slot recorded last */
};

static double unit_factor(const char *u, bool *total)
{
	*total = true;
	if (!strcmp(u, "m3") || !strcmp(u, "m³"))
		return 1;
	if (!strcmp(u, "L"))
		return 0.001;
	*total = false;
	if (!strcmp(u, "m3/h") || !strcmp(u, "m³/h"))
		return 1;
	if (!strcmp(u, "L/s"))
		return 3.6;
	if (!strcmp(u, "L/min"))
		return 0.06;
	return NAN;
}

static double type_modulus(const struct point_def *p)
{
	double bits;

	switch (p->type) {
	case PT_UINT16:
		bits = 16;
		break;
	case PT_UINT32:
		bits = 32;
		break;
	case PT_INT32:
		bits = 31; /* counts up to 2^31 - 1, then wraps (negative values are not use) */
		break;
	case PT_INT16:
		bits = 15;
		break;
	default:
		return 0;
	}
	return ldexp(1, (int)bits) * fabs(p->scale);
}

static int leak_init(struct alert_engine *e, struct rstate *r, char *err, size_t errlen)
{
	const struct rule_cfg *rc = r->rc;
	struct leak *l = calloc(1, sizeof *l);

	if (!(r->priv = l)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (rc->ninflow + rc->noutflow > MAXM) {
		snprintf(err, errlen, "rule %s: at most %d meters in a zone", rc->id, MAXM);
		return -1;
	}
	for (size_t i = 0; i < rc->ninflow + rc->noutflow; i++) {
		struct meter *m = &l->m[l->nm];
		const struct point_ref *ref = i < rc->ninflow ? &rc->inflow[i]
							       : &rc->outflow[i - rc->ninflow];
		const struct point_def *p = alert_ref_def(e->cfg, ref);

		if (!p)
			continue; /* a SunSpec point: not a meter */
		m->ref = ref;
		m->sign = i < rc->ninflow ? 1 : -1;
		m->factor = unit_factor(p->unit, &m->total);
		m->unit = p->unit;
		if (isnan(m->factor)) {
			snprintf(err, errlen, "rule %s: %s.%s has unit '%s', not a volume or flow",
				 rc->id, e->cfg->devices[ref->device].id, ref->name, p->unit);
			return -1;
		}
		m->modulus = (rc->rollover > 0 ? rc->rollover : type_modulus(p)) * m->factor;
		snprintf(m->name, sizeof m->name, "%s.%s", e->cfg->devices[ref->device].id,
			 ref->name);
		l->f32 = (l->nm == 0 || l->f32) && p->type == PT_FLOAT32;
		l->nm++;
	}
	night_init(&l->det);
	for (size_t i = 0; i < rc->nnight_exclude && i < MAXM; i++)
		l->px[l->npx++].cfg = &rc->night_exclude[i];
	if ((rc->has_max_loss_ratio && rc->noutflow &&
	     !(l->balance = engine_check(e, r, "balance", 0, true))) ||
	    (rc->has_night && !(l->night = engine_check(e, r, "night", 0, true))) ||
	    (rc->has_burst && !(l->burst = engine_check(e, r, "burst", rc->burst_for_ms, true)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	/*
	 * Volumes, net flows, loss ratios and the baselines learnt from them are sums,
	 * differences and averages of the meters' readings, times exact constants (units,
	 * hours): made only of float32 readings, they know no more than a float32 does, and
	 * its digits are the ones worth printing. The balance's limit is the config's.
	 */
	if (l->balance)
		l->balance->value_f32 = l->f32;
	if (l->night)
		l->night->value_f32 = l->night->threshold_f32 = l->f32;
	if (l->burst)
		l->burst->value_f32 = l->burst->threshold_f32 = l->f32;
	return 0;
}

static void leak_free(struct rstate *r)
{
	free(r->priv);
}

static double median(const double *v, unsigned n)
{
	double s[MAXNIGHTS > MAXDAYS ? MAXNIGHTS : MAXDAYS];

	memcpy(s, v, n * sizeof *s);
	for (unsigned i = 1; i < n; i++)
		for (unsigned j = i; j > 0 && s[j - 1] > s[j]; j--) {
			double t = s[j];
			s[j] = s[j - 1];
			s[j - 1] = t;
		}
	return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

/* ---- night and burst, on each closed bin -------------------------------------------- */

/* Which night a bin of the window belongs to: the local day on which its window
 * began (a window through midnight belongs to the evening's day). */
static int64_t night_key(const struct rule_cfg *rc, int64_t start)
{
	return alert_local_midnight(start - (int64_t)rc->night_from_s * 1000);
}

static int night_done(struct alert_engine *e, struct rstate *r, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct leak *l = r->priv;
	double x = l->night_min, lim = INFINITY, base = NAN;
	bool firing = l->night->state == ALERT_FIRING, on = false, learnt = false;
	char msg[ALERT_MSG_MAX], date[16];
	unsigned need = rc->night_baseline < 3 ? rc->night_baseline : 3;
	int wd = 0;

	if (rc->night_weekly) {
		/* the weekday of the night's end: 1970-01-01 was a Thursday */
		int64_t day = alert_local_midnight(l->night_last - 1);
		wd = (int)((((day + 43200000) / 86400000) % 7 + 7) % 7);
		need = rc->night_baseline < 2 ? rc->night_baseline : 2;
	}
	l->in_night = false;
	l->night_decided = night_key(rc, l->night_last - BIN_MS);
	if (l->night_bins < 2)
		return out_note(o, r->id, "night", l->night_last, "no verdict for the night: "
				"only %d quarter hours of data", l->night_bins);
	if (rc->has_night_max_flow) {
		lim = rc->night_max_flow;
		on = firing ? x > lim - rc->hysteresis : x > lim;
	}
	if (rc->night_baseline && l->nn[wd] >= need) {
		double lb;
		base = median(l->nhist[wd], l->nn[wd]);
		lb = base * (1 + rc->night_ratio) + rc->night_by;
		if (firing ? x > lb - rc->hysteresis : x > lb) {
			if (!on) {
				lim = lb;
				learnt = true;
			}
			on = true;
		} else if (!on) {
			lim = lb;
			learnt = true;
		}
	}
	if (rc->night_baseline) {
		l->nhist[wd][l->nh[wd]] = x;
		l->nh[wd] = (l->nh[wd] + 1) % rc->night_baseline;
		if (l->nn[wd] < rc->night_baseline)
			l->nn[wd]++;
	}
	alert_local_date(l->night_last - 1, date, sizeof date);
	if (isinf(lim))
		return 0; /* the baseline is still being learnt */
	if (isnan(base))
		snprintf(msg, sizeof msg, "minimum night flow %.2f m3/h at %s on the night to %s "
			 "(limit %.2f m3/h)", x, r->rc->name ? r->rc->name : r->id, date, lim);
	else
		snprintf(msg, sizeof msg, "minimum night flow %.2f m3/h at %s on the night to %s "
			 "(usual %.2f, limit %.2f m3/h)", x, r->rc->name ? r->rc->name : r->id,
			 date, base, lim);
	/* the limit is night.max_flow (the config's) or the baseline (learnt) */
	l->night->threshold_f32 = l->f32 && learnt;
	return check_eval(e, l->night, l->night_last, on ? rc->severity : SEV_NONE, x, lim,
			  "m3/h", msg, o);
}

/* A quarter hour of the night for the change detector: its net and excluded flows. */
static void night_bin(struct leak *l, int64_t start, double net, double exc)
{
	int64_t i = (start - l->nfirst) / BIN_MS;

	if (i < 0 || i >= NIGHT_BINS)
		return;
	while (l->nnb < i) {
		l->nnet[l->nnb] = NAN;
		l->nexc[l->nnb++] = NAN;
	}
	l->nnet[i] = net;
	l->nexc[i] = exc;
	if (l->nnb <= i)
		l->nnb = (int)i + 1;
}

/* The night window ended: the detector decides the night (alert_leak_night.c). */
static int night_end(struct alert_engine *e, struct rstate *r, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct leak *l = r->priv;
	struct pump_event ev[STEP_EVENTS];
	int64_t key = night_key(rc, l->night_last - BIN_MS);
	int64_t lo = key + ((int64_t)rc->night_from_s - PUMP_MARGIN_S) * 1000;
	struct night_obs ob = { .day = alert_local_dayno(key), .first = l->nfirst,
				.nbins = l->nnb, .net = l->nnet, .exc = l->nexc,
				.end = l->night_last, .S = l->steps.S, .ev = ev };

	l->in_night = false;
	l->night_wait = false;
	l->night_decided = key;
	ob.nev = ob.S > 0 ? steps_events(&l->steps, lo, l->night_last + PUMP_MARGIN_S * 1000LL, ev,
					 STEP_EVENTS) : 0;
	return night_decide(e, r, &l->det, l->night, &ob, o);
}

static int bin_result(struct alert_engine *e, struct rstate *r, int64_t start, double net,
		      double exc, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct leak *l = r->priv;
	int tod = alert_local_tod(start);

	if (l->night) {
		bool in = alert_in_window(tod, rc->night_from_s, rc->night_to_s);
		int64_t key = in && !l->in_night ? night_key(rc, start) : 0;

		/* a night whose window ended is decided once the hour after it is binned: a
		 * pump that switched off then ran through the window */
		if (l->night_wait && (in || start >= l->night_last + PUMP_MARGIN_S * 1000LL) &&
		    night_end(e, r, o) < 0)
			return -1;

		if (in && !l->in_night && key <= l->night_decided) {
			/* a night already decided (the clock was stepped back into it) */
			if (key != l->night_skipped) {
				l->night_skipped = key;
				if (out_note(o, r->id, "night", start + BIN_MS, "quarter hours "
					     "of a night decided already (the clock stepped "
					     "back): not counted again") < 0)
					return -1;
			}
		} else if (in && !isnan(net)) {
			if (!l->in_night || net < l->night_min)
				l->night_min = net;
			if (!l->in_night) {
				l->night_bins = 0;
				l->nfirst = start;
				l->nnb = 0;
			}
			l->in_night = true;
			l->night_bins++;
			l->night_last = start + BIN_MS;
			night_bin(l, start, net, exc);
		} else if (!in && l->in_night && rc->night_legacy) {
			if (night_done(e, r, o) < 0)
				return -1;
		} else if (!in && l->in_night) {
			l->in_night = false;
			l->night_wait = true;
		}
	}
	if (l->burst && !isnan(net)) {
		unsigned s = (unsigned)(tod / 900) % SLOTS, n = 0;
		char msg[ALERT_MSG_MAX];
		double hist[MAXDAYS];
		/* this quarter hour was recorded already (the clock was stepped back over
		 * it): the newer value replaces the older, which is no history of it */
		int again = l->sn[s] && start <= l->slast[s]
				    ? (int)((l->sh[s] + rc->burst_days - 1) % rc->burst_days) : -1;

		for (unsigned i = 0; i < l->sn[s]; i++)
			if ((int)i != again)
				hist[n++] = l->shist[s][i];
		if (n >= 3) {
			double usual = median(hist, n);
			double lim = usual * (1 + rc->burst_ratio) + rc->burst_by;
			bool firing = l->burst->state == ALERT_FIRING;
			bool on = firing ? net > lim - rc->hysteresis : net > lim;

			snprintf(msg, sizeof msg, "%s: net flow %.1f m3/h, usually %.1f m3/h at this "
				 "time of day (limit %.1f m3/h)", rc->name ? rc->name : r->id, net,
				 usual, lim);
			if (check_eval(e, l->burst, start + BIN_MS, on ? rc->severity : SEV_NONE,
				       net, lim, "m3/h", msg, o) < 0)
				return -1;
		}
		l->slast[s] = start;
		if (again >= 0) {
			l->shist[s][again] = net;
			return 0;
		}
		l->shist[s][l->sh[s]] = net;
		l->sh[s] = (l->sh[s] + 1) % rc->burst_days;
		if (l->sn[s] < rc->burst_days)
			l->sn[s]++;
	}
	return 0;
}

/* Close bin 0 of the ring and shift. */
static int bin_close(struct alert_engine *e, struct rstate *r, struct alert_out *o)
{
	struct leak *l = r->priv;
	double net = 0, exc = 0;

	for (size_t k = 0; k < l->nm; k++) {
		if ((double)l->bcov[0][k] < BIN_COVER * BIN_MS) {
			net = NAN;
			break;
		}
		net += l->m[k].sign * l->bvol[0][k] * (3600000.0 / (double)l->bcov[0][k]);
	}
	/* the excluded pumps' flow, where their run signals say what it was */
	if (l->npx)
		exc = (double)l->bxcov[0] >= BIN_COVER * BIN_MS
			      ? l->bxvol[0] * (3600000.0 / (double)l->bxcov[0]) : NAN;
	if (l->nm && bin_result(e, r, l->base, net, exc, o) < 0)
		return -1;
	memmove(l->bvol[0], l->bvol[1], sizeof l->bvol[0] * (NBINS - 1));
	memmove(l->bcov[0], l->bcov[1], sizeof l->bcov[0] * (NBINS - 1));
	memset(l->bvol[NBINS - 1], 0, sizeof l->bvol[0]);
	memset(l->bcov[NBINS - 1], 0, sizeof l->bcov[0]);
	memmove(l->bxvol, l->bxvol + 1, sizeof l->bxvol[0] * (NBINS - 1));
	memmove(l->bxcov, l->bxcov + 1, sizeof l->bxcov[0] * (NBINS - 1));
	l->bxvol[NBINS - 1] = 0;
	l->bxcov[NBINS - 1] = 0;
	l->base += BIN_MS;
	return 0;
}

/* ---- the daily balance -------------------------------------------------------------- */

static int day_decide(struct alert_engine *e, struct rstate *r, struct day *d,
		      struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct leak *l = r->priv;
	double in = 0, out = 0, len = (double)(d->end - d->start), ratio, lim;
	char date[16], msg[ALERT_MSG_MAX];
	bool on;

	alert_local_date(d->start, date, sizeof date);
	if (d->start > l->day_decided)
		l->day_decided = d->start;
	for (size_t k = 0; k < l->nm; k++) {
		if ((double)d->cov[k] < DAY_COVER * len) {
			int rv = out_note(o, r->id, "balance", d->end, "no verdict for %s: meter %s "
					  "has data for %.0f %% of the day (%.0f %% needed)", date,
					  l->m[k].name, 100.0 * (double)d->cov[k] / len,
					  100 * DAY_COVER);
			d->start = 0;
			return rv;
		}
		if (l->m[k].sign > 0)
			in += d->vol[k];
		else
			out += d->vol[k];
	}
	d->start = 0;
	if (in <= 0)
		return out_note(o, r->id, "balance", d->end, "no verdict for %s: no inflow", date);
	ratio = (in - out) / in;
	lim = rc->max_loss_ratio;
	on = l->balance->state == ALERT_FIRING ? ratio > lim - rc->hysteresis : ratio > lim;
	snprintf(msg, sizeof msg, "%s lost %.1f %% of its water on %s (in %.1f m3, out %.1f m3; "
		 "limit %.1f %%)", rc->name ? rc->name : r->id, 100 * ratio, date, in, out,
		 100 * lim);
	return check_eval(e, l->balance, d->end, on ? rc->severity : SEV_NONE, ratio, lim, "",
			  msg, o);
}

static struct day *day_for(struct alert_engine *e, struct rstate *r, int64_t t,
			   struct alert_out *o, int *rc_)
{
	struct leak *l = r->priv;
	int64_t start = alert_local_midnight(t);
	struct day *d = NULL;

	if (start <= l->day_decided)
		return NULL; /* decided already: never twice */
	for (int i = 0; i < 2; i++)
		if (l->day[i].start == start)
			return &l->day[i];
	for (int i = 0; i < 2 && !d; i++)
		if (!l->day[i].start)
			d = &l->day[i];
	if (!d) {
		/* both in use: the older one is as complete as it will be */
		d = l->day[0].start < l->day[1].start ? &l->day[0] : &l->day[1];
		if (start < d->start)
			return NULL; /* data older than both days: too late */
		if (day_decide(e, r, d, o) < 0)
			*rc_ = -1;
	}
	memset(d, 0, sizeof *d);
	d->start = start;
	d->end = alert_local_next_midnight(start);
	return d;
}

/* The ring of bins starts at t0's bin and reaches t1, closing what falls out of it. */
static int ring_reach(struct alert_engine *e, struct rstate *r, int64_t t0, int64_t t1,
		      struct alert_out *o)
{
	struct leak *l = r->priv;

	if (!l->base)
		l->base = t0 - (t0 % BIN_MS + BIN_MS) % BIN_MS;
	while (t1 > l->base + NBINS * BIN_MS)
		if (bin_close(e, r, o) < 0)
			return -1;
	return 0;
}

/* Spread vol over [t0, t1): into days (when balance is checked) and bins. */
static int add_interval(struct alert_engine *e, struct rstate *r, size_t k, int64_t t0,
			int64_t t1, double vol, bool covered, struct alert_out *o)
{
	struct leak *l = r->priv;
	double per_ms = vol / (double)(t1 - t0);
	int rc_ = 0;

	if (l->balance) {
		for (int64_t a = t0; a < t1;) {
			struct day *d = day_for(e, r, a, o, &rc_);
			int64_t end, b;
			if (rc_ < 0)
				return -1;
			/* no day for a (decided, or too old): on to the next day */
			end = d ? d->end : alert_local_next_midnight(alert_local_midnight(a));
			b = end < t1 ? end : t1;
			if (d) {
				d->vol[k] += per_ms * (double)(b - a);
				if (covered)
					d->cov[k] += b - a;
			}
			a = b;
		}
	}
	if (ring_reach(e, r, t0, t1, o) < 0)
		return -1;
	if (!covered)
		return 0;
	for (int i = 0; i < NBINS; i++) {
		int64_t bs = l->base + i * BIN_MS, be = bs + BIN_MS;
		int64_t a = t0 > bs ? t0 : bs, b = t1 < be ? t1 : be;
		if (b > a) {
			l->bvol[i][k] += per_ms * (double)(b - a);
			l->bcov[i][k] += b - a;
		}
	}
	return 0;
}

/* An excluded pump ran at flow (m3/h on average) over [t0, t1): into the bins. */
static int add_excluded(struct alert_engine *e, struct rstate *r, int64_t t0, int64_t t1,
			double flow, struct alert_out *o)
{
	struct leak *l = r->priv;

	if (ring_reach(e, r, t0, t1, o) < 0)
		return -1;
	for (int i = 0; i < NBINS; i++) {
		int64_t bs = l->base + i * BIN_MS, be = bs + BIN_MS;
		int64_t a = t0 > bs ? t0 : bs, b = t1 < be ? t1 : be;
		if (b > a) {
			l->bxvol[i] += flow * (double)(b - a) / 3600000.0;
			l->bxcov[i] += b - a;
		}
	}
	return 0;
}

/* Once every meter has a rate newer than the zone's last sample, the zone has a new
 * one: its net flow less the excluded pumps', for the step finder. */
static int zone_sample(struct rstate *r, int64_t ts, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct leak *l = r->priv;
	double q = 0;
	int tod, from, to, hours;

	if (!l->night || rc->night_legacy || !rc->night_pump_steps)
		return 0;
	for (size_t k = 0; k < l->nm; k++)
		if (!l->m[k].zfresh)
			return 0;
	for (size_t k = 0; k < l->nm; k++) {
		q += l->m[k].sign * l->m[k].zrate;
		l->m[k].zfresh = false;
	}
	for (size_t k = 0; k < l->npx; k++)
		if (l->px[k].have && l->px[k].on)
			q -= l->px[k].cfg->flow;
	tod = alert_local_tod(ts);
	from = ((rc->night_from_s - PUMP_MARGIN_S) % 86400 + 86400) % 86400;
	to = (rc->night_to_s + PUMP_MARGIN_S) % 86400;
	hours = alert_in_window(tod, from, rc->night_to_s) ? STEP_LEARN
		: alert_in_window(tod, rc->night_to_s, to) ? STEP_MATCH : STEP_OFF;
	if (steps_sample(&l->steps, ts, q, hours) == 1) {
		/* the nights learnt so far may hold the pump's flow: learn them again */
		night_forget(&l->det);
		return out_note(o, r->id, "night", ts, "a pump's step of %.1f m3/h recurs in the "
				"zone's flow: its switches are taken out of the night flow from now "
				"on, and the nights are learnt again", l->steps.S);
	}
	return 0;
}

static int meter_read(struct alert_engine *e, struct rstate *r, size_t k, int64_t ts, double raw,
		      struct alert_out *o)
{
	struct meter *m = &((struct leak *)r->priv)->m[k];
	double x = raw * m->factor, vol;
	int64_t dt = ts - m->prev_ts;
	bool was = m->have;

	if (was && dt <= 0)
		return 0;
	m->have = true;
	if (!was || dt > MAX_SPAN_MS) {
		m->prev = x;
		m->prev_ts = ts;
		if (m->total)
			return 0;
		m->zrate = x;
		m->zfresh = true;
		return zone_sample(r, ts, o);
	}
	if (m->total) {
		double d = x - m->prev, h = (double)dt / 3600000.0;
		bool replaced = false;

		if (d < 0 && m->modulus > 0 && d + m->modulus < m->modulus / 2)
			d += m->modulus; /* rolled over */
		else if (d < 0)
			replaced = true;
		/* a jump far above use: a new meter with a higher reading */
		if (!replaced && m->rate > 0 && d / h > 50 * m->rate + 1)
			replaced = true;
		if (replaced) {
			/* the interval's own volume is unknown: its usual rate stands in */
			m->prev = x;
			m->prev_ts = ts;
			if (out_note(o, r->id, "balance", ts, "meter %s went from %.3f to %.3f %s: "
				     "reset or replaced; counting restarts", m->name,
				     (x - d) / m->factor, x / m->factor, m->unit) < 0)
				return -1;
			if (m->rate <= 0 || dt > COVER_GAP_MS)
				return 0;
			return add_interval(e, r, k, ts - dt, ts, m->rate * h, true, o);
		}
		vol = d;
		m->rate = m->rate > 0 ? 0.9 * m->rate + 0.1 * (d / h) : d / h;
		m->zrate = d / h;
	} else {
		vol = (m->prev + x) / 2 * ((double)dt / 3600000.0);
		m->zrate = x;
	}
	m->prev = x;
	m->prev_ts = ts;
	m->zfresh = true;
	if (add_interval(e, r, k, ts - dt, ts, vol, dt <= COVER_GAP_MS, o) < 0)
		return -1;
	return zone_sample(r, ts, o);
}

/* A run signal of an excluded pump: the pump ran, or not, since its last one. */
static int pump_read(struct alert_engine *e, struct rstate *r, size_t k, int64_t ts, bool on,
		     struct alert_out *o)
{
	struct pumpx *p = &((struct leak *)r->priv)->px[k];
	int64_t dt = ts - p->ts;

	if (p->have && dt <= 0)
		return 0;
	/* the trapezoid rule, as for a flow meter: an interval with a switch counts half
	 * the pump's flow, as the meters' readings on either side of it do */
	if (p->have && dt <= COVER_GAP_MS &&
	    add_excluded(e, r, p->ts, ts, p->cfg->flow * ((p->on ? 0.5 : 0) + (on ? 0.5 : 0)),
			 o) < 0)
		return -1;
	p->have = true;
	p->on = on;
	p->ts = ts;
	return 0;
}

static int leak_feed(struct alert_engine *e, struct rstate *r, size_t dev, int64_t ts,
		     const struct value *v, size_t n, struct alert_out *o)
{
	struct leak *l = r->priv;

	/* run signals first: a zone sample taken with this reading sees the pumps' state */
	for (size_t k = 0; k < l->npx; k++) {
		double x = alert_ref_value(&l->px[k].cfg->run, dev, v, n);
		if (isfinite(x) && pump_read(e, r, k, ts, x >= 0.5, o) < 0)
			return -1;
	}
	for (size_t k = 0; k < l->nm; k++) {
		double x = alert_ref_value(l->m[k].ref, dev, v, n);
		if (isfinite(x) && meter_read(e, r, k, ts, x, o) < 0)
			return -1;
	}
	return 0;
}

static int leak_tick(struct alert_engine *e, struct rstate *r, int64_t now, struct alert_out *o)
{
	struct leak *l = r->priv;

	while (l->base && now >= l->base + BIN_MS + BIN_LAG_MS)
		if (bin_close(e, r, o) < 0)
			return -1;
	for (int i = 0; i < 2; i++)
		if (l->day[i].start && now >= l->day[i].end + DAY_LAG_MS &&
		    day_decide(e, r, &l->day[i], o) < 0)
			return -1;
	return 0;
}

/* ---- a step of the wall clock ------------------------------------------------------ */

static void leak_clock_step(struct alert_engine *e, struct rstate *r, int64_t delta)
{
	struct leak *l = r->priv;
	/* to whole bins, half away from zero: ±1 h is exactly 4 */
	int64_t bins = (delta + (delta < 0 ? -BIN_MS / 2 : BIN_MS / 2)) / BIN_MS;

	for (size_t k = 0; k < l->nm; k++)
		if (l->m[k].have && engine_live(e, l->m[k].prev_ts))
			l->m[k].prev_ts += delta;
	for (size_t k = 0; k < l->npx; k++)
		if (l->px[k].have && engine_live(e, l->px[k].ts))
			l->px[k].ts += delta;
	steps_clock_step(e, &l->steps, delta);
	/* the ring, when it holds what this engine binned (it follows the ticks, so it
	 * overlaps the live span), and with it the night in progress */
	if (l->base && bins && l->base + NBINS * BIN_MS > e->first_ms && l->base <= e->last_ms) {
		l->base += bins * BIN_MS;
		if (l->in_night || l->night_wait) {
			l->night_last += bins * BIN_MS;
			l->nfirst += bins * BIN_MS;
		}
	}
}

/* ---- persistence -------------------------------------------------------------------- */

static void nums(char *buf, size_t len, const double *v, size_t n)
{
	size_t u = 0;
	buf[0] = '\0';
	for (size_t i = 0; i < n && u < len; i++)
		u += (size_t)snprintf(buf + u, len - u, "\t%.17g", v[i]);
}

static void leak_save(const struct rstate *r, struct jbuf *b)
{
	const struct leak *l = r->priv;
	char buf[3072];

	save_line(b, r->id, "lk\t%zu\t%" PRId64 "\t%d\t%.17g\t%d\t%" PRId64 "\t%" PRId64 "\t%" PRId64
		  "\t%d", l->nm, l->base, l->in_night, l->night_min, l->night_bins, l->night_last,
		  l->day_decided, l->night_decided, l->night_wait);
	for (size_t k = 0; k < l->nm; k++) {
		const struct meter *m = &l->m[k];
		save_line(b, r->id, "lkm\t%zu\t%d\t%.17g\t%" PRId64 "\t%.17g\t%.17g\t%d", k, m->have,
			  m->prev, m->prev_ts, m->rate, m->zrate, m->zfresh);
	}
	for (size_t k = 0; k < l->npx; k++)
		save_line(b, r->id, "lkp\t%zu\t%d\t%d\t%" PRId64, k, l->px[k].have, l->px[k].on,
			  l->px[k].ts);
	for (int i = 0; i < 2; i++) {
		const struct day *d = &l->day[i];
		double cov[MAXM];
		if (!d->start)
			continue;
		for (size_t k = 0; k < l->nm; k++)
			cov[k] = (double)d->cov[k];
		nums(buf, sizeof buf / 2, d->vol, l->nm);
		nums(buf + strlen(buf), sizeof buf / 2, cov, l->nm);
		save_line(b, r->id, "lkd\t%" PRId64 "\t%" PRId64 "%s", d->start, d->end, buf);
	}
	for (int i = 0; i < NBINS; i++) {
		double cov[MAXM];
		for (size_t k = 0; k < l->nm; k++)
			cov[k] = (double)l->bcov[i][k];
		nums(buf, sizeof buf / 2, l->bvol[i], l->nm);
		nums(buf + strlen(buf), sizeof buf / 2, cov, l->nm);
		save_line(b, r->id, "lkb\t%d%s", i, buf);
	}
	if (l->npx) {
		double v[2 * NBINS];
		for (int i = 0; i < NBINS; i++) {
			v[2 * i] = l->bxvol[i];
			v[2 * i + 1] = (double)l->bxcov[i];
		}
		nums(buf, sizeof buf, v, 2 * NBINS);
		save_line(b, r->id, "lkx%s", buf);
	}
	if ((l->in_night || l->night_wait) && !r->rc->night_legacy) {
		char big[NIGHT_BINS * 26];
		nums(big, sizeof big, l->nnet, (size_t)l->nnb);
		save_line(b, r->id, "lkg\t%" PRId64 "%s", l->nfirst, big);
		nums(big, sizeof big, l->nexc, (size_t)l->nnb);
		save_line(b, r->id, "lkge%s", big);
	}
	if (l->night && !r->rc->night_legacy) {
		steps_save(&l->steps, r->id, b);
		night_save(&l->det, r->id, b);
	}
	for (int w = 0; w < 7; w++) {
		if (!l->nn[w])
			continue;
		nums(buf, sizeof buf, l->nhist[w], l->nn[w]);
		save_line(b, r->id, "lkn\t%d\t%u%s", w, l->nh[w], buf);
	}
	for (int s = 0; s < SLOTS; s++) {
		if (!l->sn[s])
			continue;
		nums(buf, sizeof buf, l->shist[s], l->sn[s]);
		save_line(b, r->id, "lks\t%d\t%u%s", s, l->sh[s], buf);
	}
}

static void leak_restore(struct rstate *r, char **f, size_t nf)
{
	struct leak *l = r->priv;
	const struct rule_cfg *rc = r->rc;
	size_t nm = l->nm;

	if (!strcmp(f[0], "lk") && nf >= 7) {
		if ((size_t)atol(f[1]) != nm)
			return; /* the zone's meters changed: start afresh */
		l->restoring = true;
		l->base = field_i64(f[2]);
		l->in_night = atoi(f[3]);
		l->night_min = field_num(f[4]);
		l->night_bins = atoi(f[5]);
		l->night_last = field_i64(f[6]);
		if (nf >= 9) { /* saved by a version that knew them */
			l->day_decided = field_i64(f[7]);
			l->night_decided = field_i64(f[8]);
		}
		if (nf >= 10)
			l->night_wait = atoi(f[9]) != 0;
	} else if (!strcmp(f[0], "lkm") && nf >= 6) {
		size_t k = (size_t)atol(f[1]);
		if (k < nm) {
			l->m[k].have = atoi(f[2]);
			l->m[k].prev = field_num(f[3]);
			l->m[k].prev_ts = field_i64(f[4]);
			l->m[k].rate = field_num(f[5]);
			if (nf >= 8) {
				l->m[k].zrate = field_num(f[6]);
				l->m[k].zfresh = atoi(f[7]) != 0;
			}
		}
	} else if (!strcmp(f[0], "lkp") && nf >= 5) {
		size_t k = (size_t)atol(f[1]);
		if (k < l->npx && l->restoring) {
			l->px[k].have = atoi(f[2]) != 0;
			l->px[k].on = atoi(f[3]) != 0;
			l->px[k].ts = field_i64(f[4]);
		}
	} else if (!strcmp(f[0], "lkx") && nf == 1 + 2 * NBINS && l->npx && l->restoring) {
		for (int i = 0; i < NBINS; i++) {
			l->bxvol[i] = field_num(f[1 + 2 * i]);
			l->bxcov[i] = (int64_t)field_num(f[2 + 2 * i]);
		}
	} else if (!strcmp(f[0], "lkg") && nf >= 2 && nf - 2 <= NIGHT_BINS && l->restoring) {
		l->nfirst = field_i64(f[1]);
		l->nnb = (int)(nf - 2);
		for (int i = 0; i < l->nnb; i++) {
			l->nnet[i] = field_num(f[2 + i]);
			l->nexc[i] = 0;
		}
	} else if (!strcmp(f[0], "lkge") && (int)nf - 1 == l->nnb && l->restoring) {
		for (int i = 0; i < l->nnb; i++)
			l->nexc[i] = field_num(f[1 + i]);
	} else if (l->restoring && l->night && !rc->night_legacy &&
		   (steps_restore(&l->steps, f, nf) || night_restore(&l->det, f, nf))) {
		return;
	} else if (!strcmp(f[0], "lkd") && nf == 3 + 2 * nm) {
		struct day *d = !l->day[0].start ? &l->day[0] : &l->day[1];
		d->start = field_i64(f[1]);
		d->end = field_i64(f[2]);
		for (size_t k = 0; k < nm; k++) {
			d->vol[k] = field_num(f[3 + k]);
			d->cov[k] = (int64_t)field_num(f[3 + nm + k]);
		}
	} else if (!strcmp(f[0], "lkb") && nf == 2 + 2 * nm) {
		int i = atoi(f[1]);
		if (i >= 0 && i < NBINS)
			for (size_t k = 0; k < nm; k++) {
				l->bvol[i][k] = field_num(f[2 + k]);
				l->bcov[i][k] = (int64_t)field_num(f[2 + nm + k]);
			}
	} else if (!strcmp(f[0], "lkn") && nf >= 3) {
		int w = atoi(f[1]);
		unsigned h = (unsigned)atoi(f[2]), n = (unsigned)(nf - 3);
		if (w >= 0 && w < 7 && n <= rc->night_baseline && h < rc->night_baseline) {
			l->nn[w] = n;
			l->nh[w] = h;
			for (unsigned i = 0; i < n; i++)
				l->nhist[w][i] = field_num(f[3 + i]);
		}
	} else if (!strcmp(f[0], "lks") && nf >= 3 && rc->has_burst) {
		int s = atoi(f[1]);
		unsigned h = (unsigned)atoi(f[2]), n = (unsigned)(nf - 3);
		if (s >= 0 && s < SLOTS && n <= rc->burst_days && h < rc->burst_days) {
			l->sn[s] = n;
			l->sh[s] = h;
			for (unsigned i = 0; i < n; i++)
				l->shist[s][i] = field_num(f[3 + i]);
		}
	}
}

const struct rule_ops alert_leakage_ops = {
	.init = leak_init,
	.free = leak_free,
	.feed = leak_feed,
	.tick = leak_tick,
	.save = leak_save,
	.restore = leak_restore,
	.clock_step = leak_clock_step,
};
