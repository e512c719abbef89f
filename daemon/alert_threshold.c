/*
 * alert_threshold: the threshold rule kind. Checks 'above' and 'below' on one point,
 * each with the rule's 'for' and hysteresis: above fires at value > above and clears
 * at value <= above - hysteresis; below mirrors it.
 *
 * It must never do I/O or read a clock (see alert.c).
 */
#include "alert_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int thr_init(struct alert_engine *e, struct rstate *r, char *err, size_t errlen)
{
	const struct rule_cfg *rc = r->rc;

	if ((rc->has_above && !engine_check(e, r, "above", rc->for_ms, true)) ||
	    (rc->has_below && !engine_check(e, r, "below", rc->for_ms, true))) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static int thr_feed(struct alert_engine *e, struct rstate *r, size_t dev, int64_t ts,
		    const struct value *v, size_t n, struct alert_out *o)
{
	const struct rule_cfg *rc = r->rc;
	const struct point_def *pd;
	const char *unit;
	double x = alert_ref_value(&rc->point, dev, v, n);

	if (!rc->has_point || isnan(x))
		return 0; /* a failed poll decides nothing: comms says the device is away */
	pd = alert_ref_def(e->cfg, &rc->point);
	unit = pd ? pd->unit : "";
	for (size_t i = 0; i < r->nc; i++) {
		struct check *c = r->c[i];
		bool above = strcmp(c->name, "above") == 0, firing = c->state == ALERT_FIRING;
		double lim = above ? rc->above : rc->below;
		double clear = above ? lim - rc->hysteresis : lim + rc->hysteresis;
		bool on = above ? (firing ? x > clear : x > lim) : (firing ? x < clear : x < lim);
		char msg[ALERT_MSG_MAX];

		c->value_f32 = pd && pd->type == PT_FLOAT32; /* the limit is the config's */
		if (on)
			snprintf(msg, sizeof msg, "%s %g%s%s %s %g%s%s at %s", rc->point.name, x,
				 *unit ? " " : "", unit, above ? "above" : "below", lim,
				 *unit ? " " : "", unit, alert_devname(e->cfg, rc->point.device));
		else
			snprintf(msg, sizeof msg, "%s %g%s%s back %s %g%s%s at %s", rc->point.name,
				 x, *unit ? " " : "", unit, above ? "below" : "above", clear,
				 *unit ? " " : "", unit, alert_devname(e->cfg, rc->point.device));
		if (check_eval(e, c, ts, on ? rc->severity : SEV_NONE, x, lim, unit, msg, o) < 0)
			return -1;
	}
	return 0;
}

const struct rule_ops alert_threshold_ops = {
	.init = thr_init,
	.feed = thr_feed,
};
