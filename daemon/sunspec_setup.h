/*
 * sunspec_setup: gives every `profile: sunspec` device of a loaded config the points
 * that discovery finds (drivers/sunspec.h), and points the rules that name those points
 * at them.
 *
 * Discovery runs in rounds on a thread of its own, reading through the pollers (serial
 * lines, RTU over TCP, Modbus TCP), while the core loop and the other devices go on. The
 * core starts a round when a config is loaded and, while a device is still missing, again
 * on a slow deadline; a round that found a device is applied the way a reload is: the
 * pollers are stopped, the config gains the points, the alert engine and the pollers are
 * built again. Until then the device is not polled.
 */
#ifndef SLUICE_SUNSPEC_SETUP_H
#define SLUICE_SUNSPEC_SETUP_H

#include <stddef.h>

#include "config.h"
#include "poller.h"
#include "sunspec.h"

/*
 * A round of discovery: every sunspec device of cfg that has no points yet, each tried
 * once, one after another, on a thread of the round's own, so that the core loop never
 * waits for a device. Each register read is a probe (drivers/poller.h) handed through
 * probe(pctx, bus, p) to the poller that owns the device's bus — serial line, RTU over
 * TCP or Modbus TCP alike: a line that a poller holds is never opened a second time —
 * and waited for. attempt counts the rounds since the config was loaded (0 the first):
 * a device that does not answer is logged as a warning in round 0, at debug after.
 * NULL when there is nothing to discover, or with err when the round cannot start.
 */
struct sunspec_round;
/* A device still missing is tried again this long after a round, doubling to the most. */
#define SUNSPEC_RETRY_MIN_MS 10000
#define SUNSPEC_RETRY_MAX_MS 300000
struct sunspec_round *sunspec_round_start(const struct config *cfg,
					  int (*probe)(void *pctx, size_t bus,
						       struct poller_probe *p),
					  void *pctx, unsigned attempt, char *err, size_t errlen);
/* Readable (POLLIN) once the round is over. */
int sunspec_round_fd(const struct sunspec_round *r);
/*
 * Stop the round early: the reads still to come fail at once. A read already handed to
 * a poller comes back when that poller stops (PROBE_STOPPED): call this before stopping
 * the pollers, and sunspec_round_join after.
 */
void sunspec_round_cancel(struct sunspec_round *r);
/* Wait for the round's thread (over, or cancelled and its pollers stopped) and log the
 * devices that did not answer. Returns how many were found. */
size_t sunspec_round_join(struct sunspec_round *r);
/*
 * Give the devices found their points in cfg — the config the round started from, whose
 * pollers are gone: the pollers are never run on a config that changes under them — with
 * sunspec_setup_apply, and log each. Returns how many sunspec devices of cfg are still
 * without points, or -1 with err when memory ran out (cfg then still consistent).
 */
long sunspec_round_apply(struct sunspec_round *r, struct config *cfg, char *err, size_t errlen);
/* After sunspec_round_join (applied or not). */
void sunspec_round_free(struct sunspec_round *r);

/* Sunspec devices of cfg that have no points. */
size_t sunspec_missing(const struct config *cfg);

/*
 * Hand info's points to device dev of cfg (info is emptied: the config owns them now,
 * and config_free frees them), resolve the rule and action references to its points by
 * name, and give pv rules on it without a rated_power: the nameplate rating. A reference
 * to a point discovery did not find, or an action on a point that is not writable (no
 * SunSpec point is, in this build), is logged and stays unresolved (-1): the alert
 * engine skips it. Returns 0, or -1 when memory ran out (nothing changed).
 */
int sunspec_setup_apply(struct config *cfg, size_t dev, struct sunspec_info *info);

#endif
