/*
 * poller: what every kind of poller (Modbus TCP pool, serial line, RTU over TCP)
 * shares with the core: where readings go, how a register write (an alert action) is
 * asked for and reported, and how a probe — reads asked for by someone else than the
 * schedule: `sluicectl probe` through the daemon, SunSpec discovery — is handed to the
 * thread that owns a bus and handed back.
 */
#ifndef SLUICE_POLLER_H
#define SLUICE_POLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "point.h"
#include "reading.h"

struct poller_sink {
	void *ctx;
	/* Called from a poller thread; takes ownership of r (frees it if it cannot keep it). */
	void (*emit)(void *ctx, struct reading *r);
	/* A write asked for with *_write() finished: err 0 or an MBE_* code. Called from a
	 * poller thread; may be NULL. */
	void (*write_done)(void *ctx, uint32_t device, uint16_t point, uint64_t tag, int err);
};

/* The most a probe read asks for: a read request's registers (bits are held to the same
 * count, which is all a person reads at once). */
#define POLLER_PROBE_COUNT_MAX 125
/* Reads in one probe: a configured device's points, one read each. */
#define POLLER_PROBE_READS_MAX 128
/* Per-reply timeout a probe may ask for: the line is shared with the daemon's polls. */
#define POLLER_PROBE_TIMEOUT_MAX_MS 10000

/* One read of a probe. Asked: table, start, count (1..POLLER_PROBE_COUNT_MAX). Answered:
 * err (0, an MBE_* code, MBE_EXC_BASE + the exception), and regs or bits (0/1). */
struct poller_read {
	uint8_t table;                   /* enum mb_table */
	uint16_t start, count;
	int err;
	uint16_t regs[POLLER_PROBE_COUNT_MAX];
	uint8_t bits[POLLER_PROBE_COUNT_MAX];
};

/* How a probe ended, for the one who asked (status). */
enum poller_probe_status {
	PROBE_DONE = 0,  /* every read was tried (or failed after a silence): see each err */
	PROBE_LATE,      /* the line was busy until start_by: nothing was sent */
	PROBE_STOPPED,   /* the poller stopped (reload, shutdown) before the probe was over */
};

/*
 * A probe: reads of one unit on one bus, done one after another between two polls of
 * the bus's poller, never during a poll and never two probes at once on a connection or
 * line. The asker owns it until it is handed to a poller (serpoll_probe, tcpoll_probe:
 * then the poller does), and again from the moment done is called — exactly once, from
 * the poller's thread, or from the thread that stops the poller for a probe still
 * waiting (status PROBE_STOPPED, reads not tried failed with MBE_CLOSED). done must not
 * call back into the poller.
 */
struct poller_probe {
	uint8_t unit;
	int64_t timeout_ms;          /* for each reply; 0: the bus's own */
	int64_t start_by;            /* monotonic ms: not begun by then, it is PROBE_LATE */
	bool stop_on_silence;        /* a read that got no reply at all (poller_silent) fails
					the rest unsent with its code */
	struct poller_read *reads;
	size_t nreads;
	void (*done)(struct poller_probe *p);
	void *ctx;                   /* the asker's */
	int status;                  /* enum poller_probe_status, set before done */
	/* the poller's while it holds the probe */
	struct poller_probe *next;
	size_t bus;
};

/* No reply at all came for a read that ended with rc: a timeout, a connection that
 * failed or closed, an I/O error. A garbled reply (CRC, another unit) or an exception is
 * a reply: the device is talking. */
bool poller_silent(int rc);

/* The reads of p from `from` on fail with code (not sent). */
void poller_probe_fail(struct poller_probe *p, size_t from, int code);

/* The probe is over with status: said to its asker (p->done). */
void poller_probe_finish(struct poller_probe *p, int status);

#endif
