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

#endif
