/*
 * alert_pv: the pv rule kind, one rule per inverter. Checks:
 *   fault       the inverter reports a fault or alarm: its fault: point non-zero, or for a
 *               SunSpec inverter operating state St = 7 (FAULT) or any Evt1 bit. Fires
 *               at once (the inverter's own word needs no 'for'), resolves on the first
 *               reading without one.
 *   no_output   no output in the daylight window while the inverter answers (a failed
 *               poll decides nothing: offline is the comms check's business).
 *   low_output  output below min_output_ratio of rated power for 'for', judged only in
 *               the middle half of the daylight window, where a clear or hazy sky gives
 *               well above that share; with hysteresis, so it does not flap.
 *   peer        normalised output (of rated power) below peer_ratio of the median of the
 *               other pv rules' inverters on this gateway, the site, for 'for'. Needs two
 *               peers with fresh readings, and peers that produce something.
 * Without an irradiance sensor, "low" can only be told from the time of day and from
 * neighbours: both heuristics keep dawn, dusk and the night out of the verdict.
 *
 * no_output, low_output and peer only ever start in their window: outside it they hold
 * (a firing alert stays firing through the night and resolves once the inverter is seen
 * producing again), and a pending one is dropped. A pending check is also dropped when
 * its inverter stops answering, so that alert_tick never fires it on stale data.
 * low_output and peer decide nothing at zero output: that is no_output's alert.
 *
 * SunSpec inverters: their points are discovered at run time, so the config's refs to
 * them carry no index (point -1) and the engine is built before discovery. Points are
 * found by name (W, St, Evt1, WRtg, or the name a power:/fault: ref kept) in the
 * device's point list when a reading comes in, and found again if that list changes.
 *
 * It must never do I/O or read a clock (see alert.c).
 */
#include "alert_int.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SS_ST_FAULT 7
#define NOOUT_FRAC 0.002      /* of rated power: at or below is no output */
#define NOOUT_MIN_W 1.0       /* ... and at least this, when rated power is unknown */
#define LOW_CLEAR_FRAC 0.5    /* low_output clears this share of min_output_ratio above it */
#define PEER_CLEAR 0.1        /* peer clears at (peer_ratio + this) x the peers' median */
#define PEER_MIN_RATIO 0.05   /* peers below this share of rated power: nothing to compare */
#define FRESH_MIN_MS (15 * 60 * 1000LL)

struct pv {
	struct check *fault, *no_output, *low_output, *peer;
	/* point indexes in the inverter's list; -1 when it has none */
	long w, st, evt, wrtg, fpt;
	const struct point_def *pts; /* the list they were found in, and its length */
	size_t npts;
	bool resolved;
	double w_factor;             /* the power point's unit to W */
	double rated_w;              /* rated_power:, else the nameplate; 0: unknown */
	/* the latest answer, for the peers */
	int64_t last_ts;             /* 0: none yet */
	double last_w;
	bool answering;
};

static bool is_pv(const struct rstate *r)
{
	return r->rc && r->rc->kind == RULE_PV && r->ops == &alert_pv_ops && r->priv;
}

/* Other pv rules on other inverters: the peers of rc. */
static size_t peer_count(const struct config *cfg, const struct rule_cfg *rc)
{
	size_t n = 0;

	for (size_t i = 0; i < cfg->nrules; i++) {
		const struct rule_cfg *o = &cfg->rules[i];
		bool dup = false;

		if (o == rc || o->kind != RULE_PV || !o->has_inverter || o->inverter == rc->inverter)
			continue;
		for (size_t j = 0; j < i; j++) /* two rules on one inverter count once */
			if (cfg->rules[j].kind == RULE_PV && cfg->rules[j].has_inverter &&
			    cfg->rules[j].inverter == o->inverter && &cfg->rules[j] != rc)
				dup = true;
		if (!dup)
			n++;
	}
	return n;
}

static int pv_init(struct alert_engine *e, struct rstate *r, char *err, size_t errlen)
{
	const struct rule_cfg *rc = r->rc;
	const struct device_cfg *d;
	struct pv *p;
	bool ss, rated;

	if (!rc->has_inverter)
		return 0; /* config refuses this; nothing to watch */
	d = &e->cfg->devices[rc->inverter];
	ss = d->sunspec;
	rated = rc->rated_power_w > 0 || ss;
	if (!(p = calloc(1, sizeof *p))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	r->priv = p;
	p->w = p->st = p->evt = p->wrtg = p->fpt = -1;
	p->w_factor = 1;
	p->rated_w = rc->rated_power_w;
	/* actions go with the inverter's own fault, else with no_output */
	if (((rc->has_fault || ss) && !(p->fault = engine_check(e, r, "fault", 0, true))) ||
	    (rc->has_daylight &&
	     !(p->no_output = engine_check(e, r, "no_output", rc->for_ms, !p->fault))) ||
	    (rc->has_daylight && rated &&
	     !(p->low_output = engine_check(e, r, "low_output", rc->for_ms, false))) ||
	    (rated && peer_count(e->cfg, rc) >= 2 &&
	     !(p->peer = engine_check(e, r, "peer", rc->for_ms, false)))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static void pv_free(struct rstate *r)
{
	free(r->priv);
}

/* A ref's index, or the named point of the device's present list. */
static long find_point(const struct device_cfg *d, const struct point_ref *ref, const char *name)
{
	if (ref && ref->point >= 0)
		return (size_t)ref->point < d->npoints ? ref->point : -1;
	if (ref)
		name = ref->name;
	for (size_t i = 0; i < d->npoints; i++)
		if (strcmp(d->points[i].name, name) == 0)
			return (long)i;
	return -1;
}

static void resolve(const struct config *cfg, const struct rule_cfg *rc, struct pv *p)
{
	const struct device_cfg *d = &cfg->devices[rc->inverter];

	if (p->resolved && p->pts == d->points && p->npts == d->npoints)
		return;
	p->pts = d->points;
	p->npts = d->npoints;
	p->resolved = true;
	p->w = find_point(d, rc->has_power ? &rc->power : NULL, "W");
	p->fpt = rc->has_fault ? find_point(d, &rc->fault, NULL) : -1;
	p->st = d->sunspec ? find_point(d, NULL, "St") : -1;
	p->evt = d->sunspec ? find_point(d, NULL, "Evt1") : -1;
	p->wrtg = d->sunspec ? find_point(d, NULL, "WRtg") : -1;
	p->w_factor = p->w >= 0 && strcmp(d->points[p->w].unit, "kW") == 0 ? 1000 : 1;
	/* the output in W is the power point's reading (times 1000 for kW): its precision;
	 * the limits come from rated power (config or nameplate) and the peer ratio from
	 * other inverters and their nameplates, so they stay doubles */
	if (p->no_output)
		p->no_output->value_f32 = p->w >= 0 && d->points[p->w].type == PT_FLOAT32;
	if (p->low_output)
		p->low_output->value_f32 = p->w >= 0 && d->points[p->w].type == PT_FLOAT32;
}

static double val_at(long idx, const struct value *v, size_t n)
{
	return idx >= 0 && (size_t)idx < n ? alert_num(&v[idx]) : NAN;
}

static const char *const evt1_names[] = {
	"GROUND_FAULT", "DC_OVER_VOLT", "AC_DISCONNECT", "DC_DISCONNECT", "GRID_DISCONNECT",
	"CABINET_OPEN", "MANUAL_SHUTDOWN", "OVER_TEMP", "OVER_FREQUENCY", "UNDER_FREQUENCY",
	"AC_OVER_VOLT", "AC_UNDER_VOLT", "BLOWN_STRING_FUSE", "UNDER_TEMP", "MEMORY_LOSS",
	"HW_TEST_FAILURE",
};

static int eval_fault(struct alert_engine *e, struct rstate *r, struct pv *p, int64_t ts,
		      const struct value *v, size_t n, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	const char *dn = alert_devname(e->cfg, rc->inverter);
	double f = val_at(p->fpt, v, n), st = val_at(p->st, v, n), ev = val_at(p->evt, v, n);
	char msg[ALERT_MSG_MAX];
	size_t len;
	bool on = false, known = false;

	/* 0xFFFFFFFF is SunSpec's "not implemented" for a bitfield32 */
	if (!isnan(ev) && ev >= 4294967295.0)
		ev = NAN;
	if (!isnan(st) && st >= 65535.0)
		st = NAN;
	len = (size_t)snprintf(msg, sizeof msg, "inverter %s", dn);
	if (!isnan(f)) {
		known = true;
		if (f != 0) {
			on = true;
			len += (size_t)snprintf(msg + len, sizeof msg - len, ", %s = %g",
						rc->fault.name, f);
		}
	}
	if (!isnan(st)) {
		known = true;
		if (st == SS_ST_FAULT) {
			on = true;
			len += (size_t)snprintf(msg + len, sizeof msg - len, ", state FAULT");
		}
	}
	if (!isnan(ev)) {
		uint32_t bits = (uint32_t)ev;
		bool first = true;

		known = true;
		for (unsigned b = 0; b < 32 && len < sizeof msg; b++) {
			if (!(bits & (1u << b)))
				continue;
			on = true;
			if (b < sizeof evt1_names / sizeof evt1_names[0])
				len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s",
							first ? ", events " : " ", evt1_names[b]);
			else
				len += (size_t)snprintf(msg + len, sizeof msg - len, "%sbit%u",
							first ? ", events " : " ", b);
			first = false;
		}
	}
	if (!known)
		return 0; /* nothing to say this poll */
	if (len < sizeof msg)
		snprintf(msg + len, sizeof msg - len, on ? ": fault or alarm" : ": no fault");
	return check_eval(e, p->fault, ts, on ? rc->severity : SEV_NONE,
			  !isnan(f) ? f : !isnan(st) ? st : ev, NAN, "", msg, o);
}

/* Drop a pending check: its window ended or its data went away. */
static void drop_pending(struct alert_engine *e, struct check *c, int64_t ts, struct alert_out *o)
{
	char unit[POINT_UNIT_MAX], msg[ALERT_MSG_MAX];

	if (!c || c->state != ALERT_PENDING)
		return;
	/* check_eval copies into c->unit and c->msg: hand it copies, not themselves */
	snprintf(unit, sizeof unit, "%s", c->unit);
	snprintf(msg, sizeof msg, "%s", c->msg);
	check_eval(e, c, ts, SEV_NONE, c->value, c->threshold, unit, msg, o);
}

static double noout_level(const struct pv *p)
{
	return p->rated_w > 0 ? fmax(NOOUT_MIN_W, NOOUT_FRAC * p->rated_w) : NOOUT_MIN_W;
}

static int eval_no_output(struct alert_engine *e, struct rstate *r, struct pv *p, int64_t ts,
			  double w, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct check *c = p->no_output;
	double lvl = noout_level(p), clear = 2 * lvl;
	bool day = alert_in_window(alert_local_tod(ts), rc->daylight_from_s, rc->daylight_to_s);
	const char *dn = alert_devname(e->cfg, rc->inverter);
	char msg[ALERT_MSG_MAX];

	if (w > (c->state == ALERT_FIRING ? clear : lvl)) {
		snprintf(msg, sizeof msg, "inverter %s produces again: %.0f W", dn, w);
		return check_eval(e, c, ts, SEV_NONE, w, lvl, "W", msg, o);
	}
	if (!day) {
		drop_pending(e, c, ts, o);
		return 0; /* no output at night is no news */
	}
	if (c->state == ALERT_FIRING)
		return 0;
	snprintf(msg, sizeof msg, "inverter %s answers but produces no output in daylight (%.0f W)",
		 dn, w);
	return check_eval(e, c, ts, rc->severity, w, lvl, "W", msg, o);
}

/* The middle half of the daylight window: far enough from dawn and dusk that a working
 * array gives well above any sensible min_output_ratio. */
static bool midday(const struct rule_cfg *rc, int64_t ts)
{
	int len = rc->daylight_to_s - rc->daylight_from_s;
	int tod = alert_local_tod(ts);

	return tod >= rc->daylight_from_s + len / 4 && tod < rc->daylight_to_s - len / 4;
}

static int eval_low_output(struct alert_engine *e, struct rstate *r, struct pv *p, int64_t ts,
			   double w, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct check *c = p->low_output;
	double lim = rc->min_output_ratio * p->rated_w, clear, ratio = w / p->rated_w;
	const char *dn = alert_devname(e->cfg, rc->inverter);
	char msg[ALERT_MSG_MAX];

	clear = lim + (rc->hysteresis > 0 ? rc->hysteresis * p->w_factor
					  : LOW_CLEAR_FRAC * lim);
	if (w >= (c->state == ALERT_FIRING ? clear : lim)) {
		snprintf(msg, sizeof msg, "inverter %s back at %.1f %% of rated power (%.0f of %.0f W)",
			 dn, 100 * ratio, w, p->rated_w);
		return check_eval(e, c, ts, SEV_NONE, w, lim, "W", msg, o);
	}
	if (!midday(rc, ts)) {
		drop_pending(e, c, ts, o);
		return 0;
	}
	if (c->state == ALERT_FIRING)
		return 0; /* a low one stays low, even at zero */
	if (w <= noout_level(p)) {
		drop_pending(e, c, ts, o);
		return 0; /* no output at all is no_output's alert */
	}
	snprintf(msg, sizeof msg,
		 "inverter %s at %.1f %% of rated power (%.0f of %.0f W), below %g %%", dn,
		 100 * ratio, w, p->rated_w, 100 * rc->min_output_ratio);
	return check_eval(e, c, ts, rc->severity, w, lim, "W", msg, o);
}

static double median(double *v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		for (size_t j = i; j > 0 && v[j - 1] > v[j]; j--) {
			double t = v[j];
			v[j] = v[j - 1];
			v[j - 1] = t;
		}
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int64_t fresh_ms(const struct config *cfg, size_t dev)
{
	int64_t f = 3 * cfg->devices[dev].interval_ms;
	return f > FRESH_MIN_MS ? f : FRESH_MIN_MS;
}

static int eval_peer(struct alert_engine *e, struct rstate *r, struct pv *p, int64_t ts,
		     double w, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct check *c = p->peer;
	double ratio = w / p->rated_w, pr[64], med, lim, clear;
	size_t np = 0;
	const char *dn = alert_devname(e->cfg, rc->inverter);
	char msg[ALERT_MSG_MAX];

	for (size_t i = 0; i < e->nrules && np < sizeof pr / sizeof pr[0]; i++) {
		const struct rstate *q = &e->rules[i];
		const struct pv *qp;
		bool dup = false;

		if (q == r || !is_pv(q) || q->rc->inverter == rc->inverter)
			continue;
		qp = q->priv;
		if (!qp->answering || qp->rated_w <= 0 || qp->last_ts == 0 ||
		    llabs(ts - qp->last_ts) > fresh_ms(e->cfg, q->rc->inverter))
			continue;
		for (size_t j = 0; j < i; j++)
			if (is_pv(&e->rules[j]) && &e->rules[j] != r &&
			    e->rules[j].rc->inverter == q->rc->inverter)
				dup = true;
		if (!dup)
			pr[np++] = qp->last_w / qp->rated_w;
	}
	if (np < 2) {
		drop_pending(e, c, ts, o);
		return 0; /* too few peers answering: no comparison */
	}
	med = median(pr, np);
	lim = rc->peer_ratio * med;
	clear = fmin(rc->peer_ratio + PEER_CLEAR, 1.0) * med;
	if (c->state == ALERT_FIRING ? ratio >= clear : ratio >= lim) {
		snprintf(msg, sizeof msg,
			 "inverter %s back at %.0f %% of its peers' output (%.1f %% of rated, "
			 "peers %.1f %%)", dn, med > 0 ? 100 * ratio / med : 100.0, 100 * ratio,
			 100 * med);
		return check_eval(e, c, ts, SEV_NONE, ratio, lim, "", msg, o);
	}
	if (med < PEER_MIN_RATIO || w <= noout_level(p) ||
	    (rc->has_daylight &&
	     !alert_in_window(alert_local_tod(ts), rc->daylight_from_s, rc->daylight_to_s))) {
		drop_pending(e, c, ts, o);
		return 0; /* dim light, no output at all, or outside daylight: hold */
	}
	if (c->state == ALERT_FIRING)
		return 0;
	snprintf(msg, sizeof msg,
		 "inverter %s at %.0f %% of its peers' output (%.1f %% of rated, median of %zu "
		 "peers %.1f %%), below %g %%", dn, 100 * ratio / med, 100 * ratio, np, 100 * med,
		 100 * rc->peer_ratio);
	return check_eval(e, c, ts, rc->severity, ratio, lim, "", msg, o);
}

static int pv_feed(struct alert_engine *e, struct rstate *r, size_t dev, int64_t ts,
		   const struct value *v, size_t n, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	struct pv *p = r->priv;
	double w, rated;

	if (!p || dev != rc->inverter)
		return 0;
	resolve(e->cfg, rc, p);
	if (p->fault && eval_fault(e, r, p, ts, v, n, o) < 0)
		return -1;
	if (rc->rated_power_w > 0) {
		/* rated_power:, or the nameplate that SunSpec discovery put there */
		p->rated_w = rc->rated_power_w;
	} else {
		rated = val_at(p->wrtg, v, n);
		if (isfinite(rated) && rated > 0)
			p->rated_w = rated; /* the nameplate, when rated_power: is not given */
	}
	w = val_at(p->w, v, n) * p->w_factor;
	if (!isfinite(w)) {
		/* a failed poll (or a W not discovered yet): offline is comms' alert */
		p->answering = false;
		drop_pending(e, p->no_output, ts, o);
		drop_pending(e, p->low_output, ts, o);
		drop_pending(e, p->peer, ts, o);
		return 0;
	}
	if (w < 0)
		w = 0; /* the inverter's own night draw */
	p->answering = true;
	p->last_ts = ts;
	p->last_w = w;
	if (p->no_output && eval_no_output(e, r, p, ts, w, o) < 0)
		return -1;
	if (p->rated_w <= 0)
		return 0; /* no nameplate yet: low_output and peer need rated power */
	if (p->low_output && eval_low_output(e, r, p, ts, w, o) < 0)
		return -1;
	if (p->peer && eval_peer(e, r, p, ts, w, o) < 0)
		return -1;
	return 0;
}

/* Readings stopped coming (a poller that stopped feeding): do not let a pending check's
 * 'for' run out on data that is no longer there. */
static int pv_tick(struct alert_engine *e, struct rstate *r, int64_t now, struct alert_out *o)
{
	struct pv *p = r->priv;

	if (!p || !p->answering || now - p->last_ts <= fresh_ms(e->cfg, r->rc->inverter))
		return 0;
	p->answering = false;
	drop_pending(e, p->no_output, now, o);
	drop_pending(e, p->low_output, now, o);
	drop_pending(e, p->peer, now, o);
	return 0;
}

static void pv_save(const struct rstate *r, struct jbuf *b)
{
	const struct pv *p = r->priv;

	if (p && p->last_ts)
		save_line(b, r->id, "pv\t%" PRId64 "\t%.17g\t%d\t%.17g", p->last_ts, p->last_w,
			  p->answering ? 1 : 0, r->rc->rated_power_w > 0 ? 0.0 : p->rated_w);
}

static void pv_restore(struct rstate *r, char **f, size_t nf)
{
	struct pv *p = r->priv;

	if (!p || nf < 5 || strcmp(f[0], "pv") != 0)
		return;
	p->last_ts = field_i64(f[1]);
	p->last_w = field_num(f[2]);
	p->answering = atoi(f[3]) != 0;
	if (r->rc->rated_power_w <= 0 && field_num(f[4]) > 0)
		p->rated_w = field_num(f[4]);
	if (!isfinite(p->last_w) || p->last_w < 0)
		p->answering = false;
}

/* The clock stepped: the latest answer keeps its age, for freshness and the peers. */
static void pv_clock_step(struct alert_engine *e, struct rstate *r, int64_t delta)
{
	struct pv *p = r->priv;

	if (p && p->last_ts && engine_live(e, p->last_ts))
		p->last_ts += delta;
}

const struct rule_ops alert_pv_ops = {
	.init = pv_init,
	.free = pv_free,
	.feed = pv_feed,
	.tick = pv_tick,
	.save = pv_save,
	.restore = pv_restore,
	.clock_step = pv_clock_step,
};
