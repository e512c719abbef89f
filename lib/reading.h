/*
 * reading: one poll of one device, the message that crosses from a poller thread to
 * the core. One allocation holds the header, the values and their string bytes; the
 * receiver owns it and frees it with reading_free(). Its size is fixed at creation.
 */
#ifndef SLUICE_READING_H
#define SLUICE_READING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "point.h"

struct reading {
	uint32_t device;     /* index into config.devices */
	uint32_t generation; /* the config generation the poller was built from */
	int64_t ts_ms;       /* real-time clock when the poll began, ms since the epoch */
	int64_t sched_mono_ms; /* when the poll was due, monotonic */
	int64_t start_mono_ms; /* when it began, monotonic (jitter = start - sched) */
	bool online;         /* the device's circuit breaker after this poll: false once
				offline_after polls in a row failed, true again on an answer */
	int last_err;        /* the MBE_* code of the last failure (0 when none yet) */
	uint16_t nvalues;    /* one per point of the device, in its order */
	size_t strcap;       /* bytes available at strings */
	size_t strused;
	char *strings;       /* inside the same allocation, after values */
	struct value values[];
};

/* Allocate a reading for n values with room for strbytes string bytes; values start as
 * VAL_NONE with err MBE_TIMEOUT. NULL on allocation failure. */
struct reading *reading_new(uint32_t device, uint16_t n, size_t strbytes);
void reading_free(struct reading *r);

/* Room for a string of at most cap-1 bytes in r's string area, or NULL. */
char *reading_strbuf(struct reading *r, size_t cap);

#endif
