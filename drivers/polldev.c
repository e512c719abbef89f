/*
 * polldev: the per-device part every poller shares (drivers/polldev.h). Owns the read
 * plan polldev_init builds (freed by polldev_fini) and nothing else. It must never
 * touch a connection, wait or lock: the pollers call it from their own threads, each on
 * its own devices; it only reads the wall clock to stamp a reading, and logs.
 */
#include "polldev.h"

#include <stdio.h>

#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "point.h"

static int pd_check(const struct site *s, const struct device_cfg *d, char *err,
		    size_t errlen)
{
	if (d->bus >= s->nbuses) {
		snprintf(err, errlen, "device %s: bus index %zu out of range", d->id, d->bus);
		return -1;
	}
	if (d->npoints > UINT16_MAX) {
		/* a reading counts its values in 16 bits */
		snprintf(err, errlen, "device %s: %zu points, at most %u", d->id, d->npoints,
			 UINT16_MAX);
		return -1;
	}
	return 0;
}

bool polldev_selected(const struct site *s, const struct device_cfg *d, unsigned kinds)
{
	unsigned kind;

	if (d->bus >= s->nbuses)
		return false;
	kind = (unsigned)s->buses[d->bus].kind;
	/* a sunspec device is polled once discovery (daemon/sunspec_setup.c) gave it points */
	return kind < 32 && (kinds & POLLDEV_BUS(kind)) != 0 && (!d->sunspec || d->npoints > 0);
}

bool polldev_bus_owned(const struct site *s, size_t bus, unsigned kinds)
{
	unsigned kind;

	if (bus >= s->nbuses || (kind = (unsigned)s->buses[bus].kind) >= 32 ||
	    (kinds & POLLDEV_BUS(kind)) == 0)
		return false;
	for (size_t i = 0; i < s->ndevices; i++)
		if (s->devices[i].bus == bus)
			return true;
	return false;
}

int polldev_count(const struct site *s, unsigned kinds, size_t *n, char *err, size_t errlen)
{
	*n = 0;
	for (size_t i = 0; i < s->ndevices; i++) {
		if (pd_check(s, &s->devices[i], err, errlen) != 0)
			return -1;
		if (polldev_selected(s, &s->devices[i], kinds))
			(*n)++;
	}
	return 0;
}

/* String room a reading of d needs: every string point at its full length. */
static size_t pd_strbytes(const struct device_cfg *d)
{
	size_t n = 0;

	for (size_t k = 0; k < d->npoints; k++)
		if (d->points[k].type == PT_STRING)
			n += 2 * (size_t)d->points[k].length + 1;
	return n;
}

int polldev_init(struct polldev *pd, const struct site *s, uint32_t index, char *err,
		 size_t errlen)
{
	const struct device_cfg *dc = &s->devices[index];

	pd->cfg = dc;
	pd->bus = &s->buses[dc->bus];
	pd->index = index;
	pd->strbytes = pd_strbytes(dc);
	breaker_dev_init(&pd->brk, dc->interval_ms, dc->offline_after, index);
	if (plan_build(dc->points, dc->npoints, dc->max_registers, dc->max_gap, &pd->plan) != 0) {
		snprintf(err, errlen, "device %s: cannot plan its reads (out of memory, or a point "
			 "past address 65535)", dc->id);
		return -1;
	}
	return 0;
}

void polldev_fini(struct polldev *pd)
{
	plan_free(&pd->plan);
}

/* The fractional parts of i*phi are evenly spread for any number of devices, unlike a
 * hash modulo the interval: a thousand devices at 1 s do not fire together. */
int64_t polldev_phase(uint32_t index, int64_t interval)
{
	uint64_t frac = ((uint64_t)index * UINT64_C(0x9E3779B97F4A7C15)) >> 32;

	return (int64_t)((frac * (uint64_t)interval) >> 32);
}

int64_t polldev_first_due(const struct polldev *pd, int64_t now)
{
	return now + polldev_phase(pd->index, pd->brk.interval);
}

struct reading *polldev_reading(const struct polldev *pd, uint32_t generation, int64_t due,
				int64_t now)
{
	struct reading *r = reading_new(pd->index, (uint16_t)pd->cfg->npoints, pd->strbytes);

	if (r == NULL) {
		log_warnx("device %s: out of memory, poll skipped", pd->cfg->id);
		return NULL;
	}
	r->generation = generation;
	r->ts_ms = clock_real_ms();
	r->sched_mono_ms = due;
	r->start_mono_ms = now;
	return r;
}

enum breaker_event polldev_judge(struct polldev *pd, const struct breaker_pace *pace,
				 struct reading *r, bool answered, int err, int64_t now)
{
	enum breaker_event ev = breaker_dev_poll(&pd->brk, pace, answered, err, r->start_mono_ms,
						 now);

	breaker_dev_log(&pd->brk, ev, pd->cfg, pd->bus->id, now);
	r->online = pd->brk.online;
	r->last_err = pd->brk.last_err;
	return ev;
}

void polldev_log_write(const struct polldev *pd, uint16_t point, double value, int err)
{
	const struct device_cfg *d = pd->cfg;
	const char *name = d->points[point].name;

	if (err == 0)
		log_debug("device %s (bus %s, unit %u): %s = %g written", d->id, pd->bus->id,
			  d->unit_id, name, value);
	else
		log_warnx("device %s (bus %s, unit %u): writing %s = %g failed: %s", d->id,
			  pd->bus->id, d->unit_id, name, value, mb_strerror(err));
}
