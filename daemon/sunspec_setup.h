/*
 * sunspec_setup: gives every `profile: sunspec` device of a loaded config the points
 * that discovery finds (drivers/sunspec.h), before the pollers and the alert engine are
 * built from that config, and points the rules that name those points at them.
 *
 * It runs on the core thread and blocks: each device costs at most a few of its bus's
 * timeouts. A device that does not answer is logged and left without points, so the
 * pollers skip it; the next reload (SIGHUP) or restart discovers it again.
 */
#ifndef SLUICE_SUNSPEC_SETUP_H
#define SLUICE_SUNSPEC_SETUP_H

#include <stddef.h>

#include "config.h"
#include "sunspec.h"

/*
 * Discover every sunspec device of cfg that has no points yet (Modbus TCP buses only
 * in this build: a sunspec device on a serial line is logged and left unpolled).
 * Returns the number of sunspec devices left without points (0: all found), or -1
 * with err set when memory ran out (cfg is then still consistent: every device has
 * either all its points or none).
 */
int sunspec_setup(struct config *cfg, char *err, size_t errlen);

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
