/*
 * core: the daemon's one event loop. It owns the pieces and the order of work:
 * readings from the pollers' queue are written to the store in batches, and the
 * outbox is drained to the uplink as fast as the broker acknowledges. Signals only
 * set flags that the loop acts on.
 */
#ifndef SLUICE_CORE_H
#define SLUICE_CORE_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

/*
 * Run until SIGTERM/SIGINT. Takes ownership of cfg. Returns the process exit status:
 * 0 after a clean stop, 1 when a resource could not be set up.
 */
int core_run(struct config *cfg);

/*
 * Whether this build does what cfg's uplink asks. The delivery path stores each row's
 * body in the sluice format and publishes it as stored; Sparkplug and ThingsBoard need
 * the body built when a row is published (their seq, aliases and births), and commands
 * need their outcome stored as outbox events, which the outbox does not do yet: until it
 * does, sluiced refuses to start (or reload) with another format or uplink.commands on.
 * false with why (for a person) when it does not.
 */
bool core_uplink_ready(const struct config *cfg, char *why, size_t len);

#endif
