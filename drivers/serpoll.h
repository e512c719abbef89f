/*
 * serpoll: the serial-line pollers. One thread per line: a BUS_RTU bus (a tty, through
 * libmodbus) or a BUS_RTU_OVER_TCP bus (a serial line behind a DTU or serial server, RTU
 * frames on our own socket). A line is serial by nature, so each thread sends one
 * request at a time, with the bus's guard time of silence between requests, to the
 * many unit ids sharing the line; writes (alert actions) are queued to the line's
 * thread and done between polls.
 *
 * Every poll produces exactly one reading, handed to the sink. Each device has a
 * circuit breaker: after offline_after polls in a row that got no answer the device is
 * offline (reading->online false, last_err set) and is polled at a slower pace until it
 * answers again. An exception reply is an answer (the device is there), except 0x0A and
 * 0x0B, a gateway's way of saying its target is not.
 */
#ifndef SLUICE_SERPOLL_H
#define SLUICE_SERPOLL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "site.h"
#include "poller.h"
#include "reading.h"

struct serpoll_stats {
	uint64_t polls;        /* readings emitted */
	uint64_t failed;       /* readings with at least one failed point */
	uint64_t requests;     /* Modbus requests sent (reads and writes) */
	uint64_t timeouts;
	uint64_t proto_errors; /* bad CRC, wrong unit or function, malformed replies */
	uint64_t opens;        /* lines opened (tty opened, DTU connected) */
	uint64_t open_fails;
	uint64_t writes;       /* writes finished, whatever the result */
	uint64_t write_fails;
	uint64_t offline;      /* devices offline now */
};

struct serpoll;

/*
 * Build one line for every BUS_RTU and BUS_RTU_OVER_TCP bus of cfg that has a device on
 * it, and poll its devices (a sunspec device only once discovery has filled in its
 * points; until then its line is there for discovery's reads: serpoll_probe). The serial
 * devices are opened here, once, so that their descriptors are low (libmodbus select()s
 * and cannot take one past 1023): call this before opening the many TCP sockets. A tty
 * that cannot be opened yet is not an error; its thread keeps trying. cfg is copied; the
 * arrays it points at (the config's) must outlive the serpoll. NULL with err on failure (bad bus, out of memory).
 */
struct serpoll *serpoll_new(const struct site *cfg, uint32_t generation,
			    const struct poller_sink *sink, char *err, size_t errlen);
int serpoll_start(struct serpoll *sp);
/* Stop and join the threads: within about 200 ms plus, on a line waiting for a reply
 * through libmodbus, that request's timeout. A poll in progress is abandoned (no
 * reading); a write still queued is dropped without write_done (as in tcpoll). */
void serpoll_stop(struct serpoll *sp);
void serpoll_free(struct serpoll *sp);

/*
 * Ask for a write of value to point `point` of device `device` (indexes into cfg). The
 * value is checked against the point's type and range now; the write itself is done by
 * the device's line thread between polls, and its result goes to the sink's write_done
 * with tag. Returns 0 when queued, else -1 with errno (and no write_done call):
 * ENOENT the device is not on a serial line of this serpoll, or no such point;
 * EPERM the point is not writable: true; EINVAL it is in a read-only table or of a type
 * that cannot be written (string); ERANGE the value does not fit the point's type (a
 * bool takes 0 or 1); ENOBUFS too many writes queued on the line; ENOMEM. Safe from
 * any thread, before or after serpoll_start. Writes are not retried.
 * Function codes: a coil 5; a holding register 6; several registers 16; a bool on a bit
 * of a holding register is a read (3) then a write (6) of that register.
 */
int serpoll_write(struct serpoll *sp, uint32_t device, uint16_t point, double value,
		  uint64_t tag);

/*
 * Hand probe p (drivers/poller.h) to the line of bus `bus` (an index into cfg's buses):
 * its reads go out between two polls, at p->timeout_ms each (0: the bus's timeout), and
 * p->done is called from the line's thread when they are over. Returns 0 when queued
 * (the serpoll holds p until done), else -1 with errno and p untouched: ENOENT no line
 * of this serpoll for that bus; ENOBUFS too many probes queued on the line; ESHUTDOWN
 * the serpoll is stopping. Safe from any thread while the serpoll exists; a probe still
 * queued when it stops is done with PROBE_STOPPED.
 */
int serpoll_probe(struct serpoll *sp, size_t bus, struct poller_probe *p);

/* The offline retry pace (default max(interval, 5 s), doubling to max(interval, 60 s)),
 * for tests; before serpoll_start. */
void serpoll_set_offline_retry(struct serpoll *sp, int64_t min_ms, int64_t max_ms);

void serpoll_get_stats(struct serpoll *sp, struct serpoll_stats *out);
/* Devices this serpoll polls, and lines (threads). */
size_t serpoll_ndevices(const struct serpoll *sp);
size_t serpoll_nlines(const struct serpoll *sp);
/* True when device (index into cfg) is polled by this serpoll: route its writes here. */
bool serpoll_owns(const struct serpoll *sp, uint32_t device);

#endif
