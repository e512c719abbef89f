/*
 * payload_int: the formats' tables, for payload.c's list, and what their JSON shares. Private to payload*.c: the
 * rest of sluice finds a format by name (payload_format_find).
 */
#ifndef SLUICE_PAYLOAD_INT_H
#define SLUICE_PAYLOAD_INT_H

#include "payload.h"

extern const struct payload_format payload_sluice;   /* payload_sluice.c, docs/mqtt.md */
extern const struct payload_format payload_sparkplug; /* payload_sparkplug.c */
extern const struct payload_format payload_thingsboard; /* payload_thingsboard.c */

/* The health counters every JSON format carries, from uptime_s to last_seq, as members
 * of the object b is in (first: whether none was written before them). */
void payload_health_counters(struct jbuf *b, const struct health *h, bool *first);

#endif
