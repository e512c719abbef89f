/*
 * alert_comms: every device's comms check, comms-<device>/offline. A reading where
 * every point failed is a failed poll; offline_after of them in a row (the device's
 * own setting) fire it, at yellow; the first answer resolves it.
 *
 * It must never do I/O or read a clock (see alert.c).
 */
#include "alert_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct comms {
	unsigned failed; /* polls in a row */
};

static int comms_init(struct alert_engine *e, struct rstate *r, char *err, size_t errlen)
{
	if (!(r->priv = calloc(1, sizeof(struct comms))) ||
	    !engine_check(e, r, "offline", 0, false)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

static void comms_free(struct rstate *r)
{
	free(r->priv);
}

static int comms_feed(struct alert_engine *e, struct rstate *r, size_t dev, int64_t ts,
		      const struct value *v, size_t n, struct alert_out *o)
{
	const struct device_cfg *d = &e->cfg->devices[r->device];
	struct comms *cs = r->priv;
	char msg[ALERT_MSG_MAX];
	bool failed = n > 0;

	if (dev != r->device)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (v[i].kind != VAL_NONE)
			failed = false;
	if (n == 0)
		return 0; /* nothing was asked of it (a SunSpec device before discovery) */
	if (failed) {
		if (cs->failed < UINT32_MAX)
			cs->failed++;
	} else {
		cs->failed = 0;
	}
	if (cs->failed >= d->offline_after && d->offline_after > 0) {
		snprintf(msg, sizeof msg, "%s (%s) offline: %u polls in a row failed", d->id,
			 alert_devname(e->cfg, r->device), cs->failed);
		return check_eval(e, r->c[0], ts, SEV_YELLOW, (double)cs->failed,
				  (double)d->offline_after, "", msg, o);
	}
	if (failed)
		return 0; /* a failure or two: not yet offline, not back either */
	snprintf(msg, sizeof msg, "%s (%s) answers again", d->id, alert_devname(e->cfg, r->device));
	return check_eval(e, r->c[0], ts, SEV_NONE, 0, (double)d->offline_after, "", msg, o);
}

static void comms_save(const struct rstate *r, struct jbuf *b)
{
	const struct comms *cs = r->priv;
	if (cs->failed)
		save_line(b, r->id, "comms\t%u", cs->failed);
}

static void comms_restore(struct rstate *r, char **f, size_t nf)
{
	struct comms *cs = r->priv;
	if (nf >= 2 && strcmp(f[0], "comms") == 0)
		cs->failed = (unsigned)strtoul(f[1], NULL, 10);
}

const struct rule_ops alert_comms_ops = {
	.init = comms_init,
	.free = comms_free,
	.feed = comms_feed,
	.save = comms_save,
	.restore = comms_restore,
};
