/*
 * sim_sunspec: a SunSpec inverter for sluice-sim — the 'SunS' marker at register
 * 40000, the common model (1), the three-phase inverter model (103), the nameplate
 * model (120) and the end marker, as a map of points that sim_model animates: output
 * and energy follow the day, the operating state and event bits follow the scenario.
 *
 * Builds a sim_device and nothing else: no I/O, no clock, no log.
 */
#ifndef SLUICE_SIM_SUNSPEC_H
#define SLUICE_SIM_SUNSPEC_H

#include <stdint.h>

#include "sim_model.h"

#define SIM_SUNSPEC_BASE 40000

/* rated_w <= 0: SIM_RATED_POWER_W. NULL with a message in err on failure. */
struct sim_device *sim_sunspec_new(const char *display_name, uint8_t unit_id, double rated_w,
				   int scenario, uint64_t seed, int64_t start_ms, char *err,
				   size_t errlen);

#endif
