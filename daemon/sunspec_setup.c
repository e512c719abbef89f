/*
 * sunspec_setup: the glue between SunSpec discovery (drivers/sunspec.c) and a loaded
 * config. Owns the discovery rounds (a thread each, reading through the pollers), filling
 * in a sunspec device's points and resolving the rule references the config loader left
 * unresolved (point -1) for them. Must never speak Modbus itself (the driver decodes, the
 * pollers read), open a bus, read YAML, or touch a config that pollers are running on.
 */
#include "sunspec_setup.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
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

/* ---- rounds ------------------------------------------------------------------------ */

/* A read waits at most this long for its line to be free between two polls: discovery
 * is not urgent, and a line busy with slow devices is not a device that is missing. */
#define SS_WAIT_MS 30000
/* A poller that has too many probes waiting is asked again after this. */
#define SS_RETRY_MS 100

struct ss_item {
	size_t dev;                  /* index into the round's config */
	size_t bus;
	char id[ID_MAX];
	char where[360];             /* "bus roof (127.0.0.1:502) unit 3", for the log */
	uint8_t unit;
	int rc;                      /* 0 found, else the MBE_* code of why not */
	char why[256];
	struct sunspec_info info;
};

struct sunspec_round {
	pthread_t thread;
	bool started;
	int fd;                      /* eventfd: the round is over */
	atomic_bool cancel;
	unsigned attempt;
	int (*probe)(void *pctx, size_t bus, struct poller_probe *p);
	void *pctx;
	struct ss_item *items;
	size_t n;
	/* the read in flight, and its coming back */
	struct ss_item *cur;
	struct poller_probe job;
	struct poller_read rd;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool back;
};

size_t sunspec_missing(const struct config *cfg)
{
	size_t n = 0;

	for (size_t i = 0; i < cfg->ndevices; i++)
		n += cfg->devices[i].sunspec && cfg->devices[i].npoints == 0;
	return n;
}

/* From a poller's thread: the read is back. */
static void round_back(struct poller_probe *p)
{
	struct sunspec_round *r = p->ctx;

	pthread_mutex_lock(&r->mu);
	r->back = true;
	pthread_cond_signal(&r->cv);
	pthread_mutex_unlock(&r->mu);
}

/* sunspec_discover's read: one probe through the owning poller, waited for. */
static int round_read(void *ctx, uint16_t addr, uint16_t count, uint16_t *out)
{
	struct sunspec_round *r = ctx;
	int64_t start_by = clock_mono_ms() + SS_WAIT_MS;

	if (count > POLLER_PROBE_COUNT_MAX)
		return MBE_PROTO;
	for (;;) {
		if (atomic_load(&r->cancel))
			return MBE_CLOSED;
		r->rd = (struct poller_read){ .table = MB_HOLDING, .start = addr, .count = count };
		r->job = (struct poller_probe){ .unit = r->cur->unit, .start_by = start_by,
						.stop_on_silence = true, .reads = &r->rd, .nreads = 1,
						.done = round_back, .ctx = r };
		r->back = false;
		if (r->probe(r->pctx, r->cur->bus, &r->job) == 0)
			break;
		/* ENOBUFS: a line with probes waiting; anything else: its poller is stopping */
		if (errno != ENOBUFS || clock_mono_ms() >= start_by)
			return errno == ENOBUFS ? MBE_TIMEOUT : MBE_CLOSED;
		struct timespec ts = { 0, SS_RETRY_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	pthread_mutex_lock(&r->mu);
	while (!r->back)
		pthread_cond_wait(&r->cv, &r->mu);
	pthread_mutex_unlock(&r->mu);
	if (r->job.status == PROBE_STOPPED)
		return MBE_CLOSED;
	if (r->rd.err == 0)
		memcpy(out, r->rd.regs, count * sizeof *out);
	return r->rd.err;
}

static void *round_main(void *arg)
{
	struct sunspec_round *r = arg;
	uint64_t one = 1;

	for (size_t i = 0; i < r->n && !atomic_load(&r->cancel); i++) {
		r->cur = &r->items[i];
		r->cur->rc = sunspec_discover(round_read, r, &r->cur->info, r->cur->why,
					      sizeof r->cur->why);
	}
	if (write(r->fd, &one, sizeof one) < 0) {
		/* cannot happen on a fresh eventfd; the core then finds it at the next round */
	}
	return NULL;
}

struct sunspec_round *sunspec_round_start(const struct config *cfg,
					  int (*probe)(void *pctx, size_t bus,
						       struct poller_probe *p),
					  void *pctx, unsigned attempt, char *err, size_t errlen)
{
	size_t n = sunspec_missing(cfg), k = 0;
	struct sunspec_round *r;
	int e;

	err[0] = '\0';
	if (n == 0)
		return NULL;
	r = calloc(1, sizeof *r);
	if (!r || !(r->items = calloc(n, sizeof *r->items))) {
		free(r);
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	r->probe = probe;
	r->pctx = pctx;
	r->attempt = attempt;
	atomic_init(&r->cancel, false);
	pthread_mutex_init(&r->mu, NULL);
	pthread_cond_init(&r->cv, NULL);
	for (size_t i = 0; i < cfg->ndevices; i++) {
		const struct device_cfg *d = &cfg->devices[i];
		struct ss_item *it;
		const struct bus_cfg *b;
		char addr[280];

		if (!d->sunspec || d->npoints > 0 || d->bus >= cfg->nbuses)
			continue;
		b = &cfg->buses[d->bus];
		it = &r->items[k++];
		it->dev = i;
		it->bus = d->bus;
		it->unit = d->unit_id;
		snprintf(it->id, sizeof it->id, "%s", d->id);
		if (b->kind == BUS_RTU)
			snprintf(addr, sizeof addr, "%s", b->device);
		else
			snprintf(addr, sizeof addr, strchr(b->host, ':') ? "[%s]:%u" : "%s:%u",
				 b->host, b->port);
		snprintf(it->where, sizeof it->where, "bus %s (%s) unit %u", b->id, addr,
			 d->unit_id);
	}
	r->n = k;
	r->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (r->fd < 0 || (e = pthread_create(&r->thread, NULL, round_main, r)) != 0) {
		snprintf(err, errlen, "cannot start discovery: %s", strerror(r->fd < 0 ? errno : e));
		if (r->fd >= 0)
			close(r->fd);
		r->fd = -1;
		sunspec_round_free(r);
		return NULL;
	}
	r->started = true;
	return r;
}

int sunspec_round_fd(const struct sunspec_round *r)
{
	return r->fd;
}

void sunspec_round_cancel(struct sunspec_round *r)
{
	atomic_store(&r->cancel, true);
}

size_t sunspec_round_join(struct sunspec_round *r)
{
	size_t found = 0;

	if (r->started)
		pthread_join(r->thread, NULL);
	r->started = false;
	for (size_t i = 0; i < r->n; i++) {
		struct ss_item *it = &r->items[i];

		if (it->rc == 0 && it->info.npoints > 0) {
			found++;
			continue;
		}
		if (atomic_load(&r->cancel) && (it->rc == MBE_CLOSED || it->why[0] == '\0'))
			continue; /* not tried, or cut short: nothing learnt */
		if (r->attempt == 0)
			log_warnx("device %s: SunSpec discovery on %s failed: %s; it is not polled "
				  "until it answers (tried again in %d s, then less often)", it->id,
				  it->where, it->why[0] ? it->why : mb_strerror(it->rc),
				  SUNSPEC_RETRY_MIN_MS / 1000);
		else
			log_debug("device %s: SunSpec discovery on %s failed again: %s", it->id,
				  it->where, it->why[0] ? it->why : mb_strerror(it->rc));
	}
	return found;
}

long sunspec_round_apply(struct sunspec_round *r, struct config *cfg, char *err, size_t errlen)
{
	for (size_t i = 0; i < r->n; i++) {
		struct ss_item *it = &r->items[i];
		char desc[256];

		if (it->rc != 0 || it->info.npoints == 0 || it->dev >= cfg->ndevices ||
		    strcmp(cfg->devices[it->dev].id, it->id) != 0)
			continue;
		describe(&it->info, desc, sizeof desc);
		log_info("device %s: SunSpec %s; %zu points at %u%s", it->id, desc,
			 it->info.npoints, it->info.base,
			 r->attempt > 0 ? " (found after it did not answer)" : "");
		if (sunspec_setup_apply(cfg, it->dev, &it->info) != 0) {
			snprintf(err, errlen, "device %s: out of memory", it->id);
			return -1;
		}
	}
	return (long)sunspec_missing(cfg);
}

void sunspec_round_free(struct sunspec_round *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		sunspec_info_free(&r->items[i].info);
	if (r->fd >= 0)
		close(r->fd);
	pthread_mutex_destroy(&r->mu);
	pthread_cond_destroy(&r->cv);
	free(r->items);
	free(r);
}
