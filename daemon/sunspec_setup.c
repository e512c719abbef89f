/*
 * sunspec_setup: the glue between SunSpec discovery (drivers/sunspec.c) and a loaded
 * config. Owns filling in a sunspec device's points and resolving the rule references
 * the config loader left unresolved (point -1) for them. Must never speak Modbus itself (the
 * driver does), read YAML, or touch a config that pollers are already running on.
 */
#include "sunspec_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mberr.h"

static void resolve(const struct config *cfg, size_t dev, const struct rule_cfg *r,
		    struct point_ref *ref, bool write)
{
	const struct device_cfg *d = &cfg->devices[dev];
	long pi;

	if (ref->device != dev || ref->point >= 0)
		return;
	pi = config_find_point(d, ref->name);
	if (pi < 0) {
		log_warnx("rule %s: device %s has no SunSpec point '%s' (it reports what its "
			  "models implement); the reference is ignored", r->id, d->id, ref->name);
		return;
	}
	if (write && !d->points[pi].writable) {
		log_warnx("rule %s: SunSpec point %s.%s is not writable; the action is ignored",
			  r->id, d->id, ref->name);
		return;
	}
	ref->point = pi;
}

static void resolve_rules(struct config *cfg, size_t dev, double rated_w)
{
	for (size_t i = 0; i < cfg->nrules; i++) {
		struct rule_cfg *r = &cfg->rules[i];

		if (r->has_point)
			resolve(cfg, dev, r, &r->point, false);
		for (size_t k = 0; k < r->ninflow; k++)
			resolve(cfg, dev, r, &r->inflow[k], false);
		for (size_t k = 0; k < r->noutflow; k++)
			resolve(cfg, dev, r, &r->outflow[k], false);
		if (r->has_power)
			resolve(cfg, dev, r, &r->power, false);
		if (r->has_fault)
			resolve(cfg, dev, r, &r->fault, false);
		for (size_t k = 0; k < r->non_fire; k++)
			resolve(cfg, dev, r, &r->on_fire[k].target, true);
		for (size_t k = 0; k < r->non_resolve; k++)
			resolve(cfg, dev, r, &r->on_resolve[k].target, true);
		/* a rated_power: in the rule is the operator's word and wins over the nameplate */
		if (r->kind == RULE_PV && r->has_inverter && r->inverter == dev &&
		    r->rated_power_w == 0 && rated_w > 0)
			r->rated_power_w = rated_w;
	}
}

int sunspec_setup_apply(struct config *cfg, size_t dev, struct sunspec_info *info)
{
	struct device_cfg *d = &cfg->devices[dev];
	struct src_loc *locs;

	/* config_free frees point_locs with the points; readers expect one per point */
	locs = calloc(info->npoints ? info->npoints : 1, sizeof *locs);
	if (!locs)
		return -1;
	for (size_t i = 0; i < info->npoints; i++)
		locs[i] = d->loc;
	/* a profile's shared table stays with the config and its other devices */
	if (!d->points_shared) {
		free(d->points);
		free(d->point_locs);
	}
	d->points = info->points;
	d->npoints = info->npoints;
	d->point_locs = locs;
	d->points_shared = false;
	info->points = NULL;
	info->npoints = 0;
	resolve_rules(cfg, dev, info->rated_w);
	return 0;
}

static void describe(const struct sunspec_info *in, char *buf, size_t len)
{
	size_t n;

	n = (size_t)snprintf(buf, len, "%s%s%s%s%s, models", *in->mn ? in->mn : "(no maker)",
			     *in->md ? " " : "", in->md, *in->sn ? " SN " : "", in->sn);
	for (size_t i = 0; i < in->nmodels && n < len; i++)
		n += (size_t)snprintf(buf + n, len - n, " %u", in->models[i]);
	if (n >= len)
		return;
	if (in->rated_w >= 1000)
		snprintf(buf + n, len - n, ", rated %g kW", in->rated_w / 1000);
	else if (in->rated_w > 0)
		snprintf(buf + n, len - n, ", rated %g W", in->rated_w);
	else
		snprintf(buf + n, len - n, ", rated power unknown");
}

int sunspec_setup(struct config *cfg, char *err, size_t errlen)
{
	int missing = 0;

	for (size_t i = 0; i < cfg->ndevices; i++) {
		struct device_cfg *d = &cfg->devices[i];
		const struct bus_cfg *b;
		struct sunspec_info info;
		char why[256], desc[256];
		int rc, tmo;

		if (!d->sunspec || d->npoints > 0)
			continue;
		if (d->bus >= cfg->nbuses) {
			missing++;
			continue;
		}
		b = &cfg->buses[d->bus];
		if (b->kind != BUS_TCP) {
			log_warnx("device %s: SunSpec discovery on a serial line (bus %s) is not in "
				  "this build; the device is not polled", d->id, b->id);
			missing++;
			continue;
		}
		tmo = b->timeout_ms > 60000 ? 60000 : b->timeout_ms < 1 ? 1 : (int)b->timeout_ms;
		rc = sunspec_discover_tcp(b->host, b->port, d->unit_id, tmo, &info, why,
					  sizeof why);
		if (rc != 0) {
			log_warnx("device %s: SunSpec discovery at %s:%u unit %u failed: %s; the "
				  "device is not polled until the next reload or restart", d->id,
				  b->host, b->port, d->unit_id, why);
			missing++;
			continue;
		}
		describe(&info, desc, sizeof desc);
		log_info("device %s: SunSpec %s; %zu points at %u", d->id, desc, info.npoints,
			 info.base);
		if (sunspec_setup_apply(cfg, i, &info) != 0) {
			sunspec_info_free(&info);
			snprintf(err, errlen, "device %s: out of memory", d->id);
			return -1;
		}
	}
	return missing;
}
