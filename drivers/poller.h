/*
 * poller: what every kind of poller (Modbus TCP pool, serial line, RTU over TCP)
 * shares with the core: where readings go, and how a register write (an alert action)
 * is asked for and reported.
 */
#ifndef SLUICE_POLLER_H
#define SLUICE_POLLER_H

#include <stdint.h>

#include "reading.h"

struct poller_sink {
	void *ctx;
	/* Called from a poller thread; takes ownership of r (frees it if it cannot keep it). */
	void (*emit)(void *ctx, struct reading *r);
	/* A write asked for with *_write() finished: err 0 or an MBE_* code. Called from a
	 * poller thread; may be NULL. */
	void (*write_done)(void *ctx, uint32_t device, uint16_t point, uint64_t tag, int err);
};

#endif
