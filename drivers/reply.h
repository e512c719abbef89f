/*
 * reply: what a device's replies make of a poll's reading, the same for every poller:
 * the values a read's reply decodes to, the points a failed request leaves without one,
 * and which failures still show that the device is there (for the circuit breaker).
 * Pure: no I/O, no clock, no logging; it writes only into the reading it is given.
 */
#ifndef SLUICE_REPLY_H
#define SLUICE_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "plan.h"
#include "reading.h"
#include "site.h"

/* Decode the reply to request reqi of plan (regs for register tables, bits for bit
 * tables) into the values of the points it reads; string bytes go to r's string area. */
void reply_decode(const struct device_cfg *d, const struct read_plan *plan, struct reading *r,
		  size_t reqi, const uint16_t *regs, const uint8_t *bits);
/* Fail the points of d's plan read by requests [from, to) with code. */
void reply_fail(const struct read_plan *plan, struct reading *r, size_t from, size_t to,
		int code);
/* True when some value of r has none (a failed point). */
bool reply_reading_failed(const struct reading *r);
/* True when a request's result rc (0 or an MBE_* code) shows the device is there, for
 * the circuit breaker: a reply, or an exception other than a gateway's 0x0A/0x0B. */
bool reply_is_answer(int rc);

#endif
