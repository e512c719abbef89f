/*
 * alert_waterlogging: the waterlogging rule kind, on one water-level point.
 *   level  graded blue/yellow/orange/red: a grade is entered at its depth and left
 *          below depth - hysteresis; escalation and de-escalation go through the grades
 *          (one transition per change of severity); 'for' guards the first firing.
 *   rise   the level rose by rise.by within rise.within (window minimum to now). When
 *          it resolves it says why: the water fell from its peak since the firing (by
 *          how much, over how long), rises slower, or stands.
 *   stuck  no change of more than stuck.tolerance for stuck.for (a dead gauge reads a
 *          flat line); fires at blue, since it is a maintenance call, not a flood.
 * Spike rejection: a jump of more than 'spike' from the last accepted sample is held
 * back until the next sample; if that one falls back (nearer the old level than half the
 * jump) the jump was a car or a person and is dropped, otherwise both are taken. Depths
 * and 'spike' are in the point's unit.
 *
 * It must never do I/O or read a clock (see alert.c).
 */
#include "alert_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sample {
	int64_t ts;
	double v;
};

struct wl {
	struct check *level, *rise, *stuck;
	double spike;           /* 0: off */
	bool have_last;
	double last;            /* the last accepted sample */
	int64_t last_ts;
	bool have_suspect;
	double suspect;
	int64_t suspect_ts;
	double ref;             /* stuck: the value since ref_ts */
	int64_t ref_ts;
	struct sample *q;       /* rise: increasing minima of the window (a monotonic deque) */
	size_t qh, qn, qcap;    /* head index, count, capacity */
	double peak;            /* rise: the highest level since it fired (the latest time it */
	int64_t peak_ts;        /* was there; 0: none), else the last sample */
	uint64_t rejected;      /* spikes dropped */
};

static int wl_init(struct alert_engine *e, struct rstate *r, char *err, size_t errlen)
{
	const struct rule_cfg *rc = r->rc;
	struct wl *w = calloc(1, sizeof *w);
	bool levels = false;

	if (!(r->priv = w))
		goto oom;
	for (int g = SEV_BLUE; g <= SEV_RED; g++)
		if (!isnan(rc->levels[g]))
			levels = true;
	if (levels && !(w->level = engine_check(e, r, "level", rc->for_ms, true)))
		goto oom;
	if (rc->has_rise && !(w->rise = engine_check(e, r, "rise", 0, !levels)))
		goto oom;
	if (rc->has_stuck && !(w->stuck = engine_check(e, r, "stuck", 0, false)))
		goto oom;
	w->spike = rc->spike;
	if (isnan(w->spike)) {
		/* by default a one-sample jump past the lowest grade is suspect */
		w->spike = 0;
		for (int g = SEV_BLUE; g <= SEV_RED && !w->spike; g++)
			if (!isnan(rc->levels[g]))
				w->spike = rc->levels[g];
		if (!w->spike && rc->has_rise)
			w->spike = rc->rise_by;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return -1;
}

static void wl_free(struct rstate *r)
{
	struct wl *w = r->priv;
	if (w)
		free(w->q);
	free(w);
}

static int q_push(struct wl *w, int64_t ts, double v)
{
	if (w->qn == w->qcap) {
		size_t nc = w->qcap ? w->qcap * 2 : 64;
		struct sample *nq = malloc(nc * sizeof *nq);
		if (!nq)
			return -1;
		for (size_t i = 0; i < w->qn; i++)
			nq[i] = w->q[(w->qh + i) % w->qcap];
		free(w->q);
		w->q = nq;
		w->qcap = nc;
		w->qh = 0;
	}
	w->q[(w->qh + w->qn++) % w->qcap] = (struct sample){ ts, v };
	return 0;
}

static struct sample *q_at(struct wl *w, size_t i)
{
	return &w->q[(w->qh + i) % w->qcap];
}

static int grade_want(const struct rule_cfg *rc, const struct check *c, double x)
{
	int cur = c->state == ALERT_FIRING ? c->sev : c->state == ALERT_PENDING ? c->pend_sev : 0;
	int up = SEV_NONE;

	for (int g = SEV_BLUE; g <= SEV_RED; g++)
		if (!isnan(rc->levels[g]) && x >= rc->levels[g])
			up = g;
	if (up >= cur)
		return up;
	/* going down: a grade is kept until the level is hysteresis below its depth */
	for (int g = cur; g >= SEV_BLUE; g--)
		if (!isnan(rc->levels[g]) && x > rc->levels[g] - rc->hysteresis)
			return g;
	return SEV_NONE;
}

static int lowest_grade(const struct rule_cfg *rc)
{
	for (int g = SEV_BLUE; g <= SEV_RED; g++)
		if (!isnan(rc->levels[g]))
			return g;
	return SEV_NONE;
}

static void fmt_dur(int64_t ms, char *buf, size_t len)
{
	if (ms % 3600000 == 0)
		snprintf(buf, len, "%" PRId64 " h", ms / 3600000);
	else if (ms % 60000 == 0)
		snprintf(buf, len, "%" PRId64 " min", ms / 60000);
	else
		snprintf(buf, len, "%" PRId64 " s", ms / 1000);
}

/* A time that passed, for people: seconds, then whole minutes, then hours. */
static void fmt_span(int64_t ms, char *buf, size_t len)
{
	if (ms < 120000)
		snprintf(buf, len, "%" PRId64 " s", (ms + 500) / 1000);
	else if (ms < 3 * 3600000)
		snprintf(buf, len, "%" PRId64 " min", (ms + 30000) / 60000);
	else
		snprintf(buf, len, "%.1f h", (double)ms / 3600000);
}

/* The smallest change the messages' two decimals show. */
#define SHOWN 0.005

/* One accepted sample. */
static int wl_take(struct alert_engine *e, struct rstate *r, int64_t ts, double x,
		   struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct wl *w = r->priv;
	const struct point_def *pd = alert_ref_def(e->cfg, &rc->point);
	const char *u = pd ? pd->unit : "m", *where = alert_devname(e->cfg, rc->point.device);
	char msg[ALERT_MSG_MAX], d[32];
	/* a level and a rise (a difference of two levels) hold the point's precision */
	bool f32 = pd && pd->type == PT_FLOAT32;

	w->have_last = true;
	w->last = x;
	w->last_ts = ts;

	if (w->level) {
		int want = grade_want(rc, w->level, x);
		int show = want ? want : w->level->sev ? w->level->sev : lowest_grade(rc);
		double lim = rc->levels[show];

		w->level->value_f32 = f32;

		if (want)
			snprintf(msg, sizeof msg, "water %.2f %s above the road at %s (%s ≥ %.2f %s)",
				 x, u, where, severity_name(want), lim, u);
		else
			snprintf(msg, sizeof msg, "water down to %.2f %s at %s (below %s %.2f %s)",
				 x, u, where, severity_name(show), lim - rc->hysteresis, u);
		if (check_eval(e, w->level, ts, want, x, lim, u, msg, o) < 0)
			return -1;
	}
	if (w->rise) {
		double rise, fall, lim = rc->rise_by;
		bool on;

		w->rise->value_f32 = f32;
		/* the peak is followed while it fires; until then it is the latest sample, so
		 * that the firing one starts it */
		if (w->rise->state != ALERT_FIRING || !w->peak_ts || x >= w->peak) {
			w->peak = x;
			w->peak_ts = ts;
		}
		fall = w->peak - x;
		while (w->qn && q_at(w, w->qn - 1)->v >= x)
			w->qn--;
		if (q_push(w, ts, x) < 0)
			return -1;
		while (w->qn && q_at(w, 0)->ts < ts - rc->rise_within_ms) {
			w->qh = (w->qh + 1) % w->qcap;
			w->qn--;
		}
		rise = x - q_at(w, 0)->v;
		on = w->rise->state == ALERT_FIRING ? rise > lim - rc->hysteresis : rise >= lim;
		fmt_dur(rc->rise_within_ms, d, sizeof d);
		if (on) {
			snprintf(msg, sizeof msg, "water rose %.2f %s within %s at %s, now %.2f %s "
				 "(rise ≥ %.2f %s)", rise, u, d, where, x, u, lim, u);
		} else if (fall >= SHOWN && fall >= rise) {
			/* the window's low is the new level: its rise says nothing of the fall */
			char ago[32];

			fmt_span(ts - w->peak_ts, ago, sizeof ago);
			snprintf(msg, sizeof msg, "water fell %.2f %s in %s at %s, from %.2f %s to "
				 "%.2f %s", fall, u, ago, where, w->peak, u, x, u);
		} else if (rise >= SHOWN) {
			snprintf(msg, sizeof msg, "water rising slower at %s: %.2f %s, %+.2f %s within "
				 "%s (rise < %.2f %s)", where, x, u, rise, u, d, lim, u);
		} else {
			snprintf(msg, sizeof msg, "water steady at %s: %.2f %s, %+.2f %s within %s",
				 where, x, u, rise, u, d);
		}
		if (check_eval(e, w->rise, ts, on ? rc->severity : SEV_NONE, rise, lim, u, msg,
			       o) < 0)
			return -1;
	}
	if (w->stuck) {
		bool on;

		if (!w->ref_ts || fabs(x - w->ref) > rc->stuck_tolerance) {
			w->ref = x;
			w->ref_ts = ts;
		}
		on = ts - w->ref_ts >= rc->stuck_for_ms;
		fmt_dur(ts - w->ref_ts, d, sizeof d);
		if (on)
			snprintf(msg, sizeof msg, "level gauge at %s stuck at %.3f %s for %s: check "
				 "the sensor", where, x, u, d);
		else
			snprintf(msg, sizeof msg, "level gauge at %s moves again (%.3f %s)", where, x,
				 u);
		if (check_eval(e, w->stuck, ts, on ? SEV_BLUE : SEV_NONE, (double)(ts - w->ref_ts),
			       (double)rc->stuck_for_ms, "ms", msg, o) < 0)
			return -1;
	}
	return 0;
}

static int wl_feed(struct alert_engine *e, struct rstate *r, size_t dev, int64_t ts,
		   const struct value *v, size_t n, struct alert_out *o)
{
	struct wl *w = r->priv;
	double x = alert_ref_value(&r->rc->point, dev, v, n);

	if (!r->rc->has_point || !isfinite(x))
		return 0;
	if (w->have_last && ts <= w->last_ts)
		return 0; /* a repeated or older timestamp adds nothing */
	if (w->have_suspect) {
		double jump = w->suspect - w->last;
		w->have_suspect = false;
		if (fabs(x - w->last) < fabs(jump) / 2) {
			w->rejected++;
			if (out_note(o, r->id, "level", w->suspect_ts, "spike rejected: %.3f after "
				     "%.3f, then %.3f", w->suspect, w->last, x) < 0)
				return -1;
			return wl_take(e, r, ts, x, o);
		}
		if (wl_take(e, r, w->suspect_ts, w->suspect, o) < 0)
			return -1;
	}
	if (w->have_last && w->spike > 0 && fabs(x - w->last) > w->spike) {
		w->have_suspect = true;
		w->suspect = x;
		w->suspect_ts = ts;
		return 0;
	}
	return wl_take(e, r, ts, x, o);
}

static void wl_save(const struct rstate *r, struct jbuf *b)
{
	struct wl *w = r->priv;

	save_line(b, r->id, "wl\t%d\t%.17g\t%" PRId64 "\t%d\t%.17g\t%" PRId64 "\t%.17g\t%" PRId64
		  "\t%.17g\t%" PRId64, w->have_last, w->last, w->last_ts, w->have_suspect,
		  w->suspect, w->suspect_ts, w->ref, w->ref_ts, w->peak, w->peak_ts);
	for (size_t i = 0; i < w->qn; i++) {
		struct sample *s = q_at(w, i);
		save_line(b, r->id, "wlq\t%" PRId64 "\t%.17g", s->ts, s->v);
	}
}

static void wl_restore(struct rstate *r, char **f, size_t nf)
{
	struct wl *w = r->priv;

	if (nf >= 9 && strcmp(f[0], "wl") == 0) {
		w->have_last = atoi(f[1]);
		w->last = field_num(f[2]);
		w->last_ts = field_i64(f[3]);
		w->have_suspect = atoi(f[4]);
		w->suspect = field_num(f[5]);
		w->suspect_ts = field_i64(f[6]);
		w->ref = field_num(f[7]);
		w->ref_ts = field_i64(f[8]);
		/* without one (saved before the peak was kept, or no number), the next
		 * sample starts it */
		if (nf >= 11 && isfinite(field_num(f[9]))) {
			w->peak = field_num(f[9]);
			w->peak_ts = field_i64(f[10]);
		}
	} else if (nf >= 3 && strcmp(f[0], "wlq") == 0 && r->rc->has_rise) {
		(void)q_push(w, field_i64(f[1]), field_num(f[2]));
	}
}

/* The clock stepped: the last sample, a held-back spike, the stuck reference and the
 * rise window move with it, so the window and the stuck timer neither stall nor jump. */
static void wl_clock_step(struct alert_engine *e, struct rstate *r, int64_t delta)
{
	struct wl *w = r->priv;
	int64_t next = INT64_MAX;
	size_t k = w->qn;

	if (w->have_last && engine_live(e, w->last_ts))
		w->last_ts += delta;
	if (w->have_suspect && engine_live(e, w->suspect_ts))
		w->suspect_ts += delta;
	if (w->ref_ts && engine_live(e, w->ref_ts))
		w->ref_ts += delta;
	if (w->peak_ts && engine_live(e, w->peak_ts))
		w->peak_ts += delta;
	for (size_t i = 0; i < w->qn; i++)
		if (engine_live(e, q_at(w, i)->ts))
			q_at(w, i)->ts += delta;
	if (!w->qn)
		return;
	/* restored samples stay where they were: keep only those still older than the
	 * samples after them, so the window stays in time order (packed at its end) */
	for (size_t i = w->qn; i-- > 0;) {
		struct sample s = *q_at(w, i);

		if (s.ts < next) {
			*q_at(w, --k) = s;
			next = s.ts;
		}
	}
	w->qh = (w->qh + k) % w->qcap;
	w->qn -= k;
}

const struct rule_ops alert_waterlogging_ops = {
	.init = wl_init,
	.free = wl_free,
	.feed = wl_feed,
	.save = wl_save,
	.restore = wl_restore,
	.clock_step = wl_clock_step,
};
