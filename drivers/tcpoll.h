/*
 * tcpoll: the Modbus TCP pollers. A small fixed set of threads (never one per
 * endpoint) each run an epoll loop over their share of the TCP buses; Modbus TCP is
 * framed on our own non-blocking sockets, because libmodbus select()s and cannot take
 * a descriptor past 1023. One connection per bus (host:port), shared by the devices
 * on it, one request in flight per connection. Each device is polled on its interval
 * on the monotonic clock; every poll produces exactly one reading, handed to the sink.
 *
 * Circuit breaker: a poll fails when the device answered none of its requests (a Modbus
 * exception is an answer, except 0x0A/0x0B from a gateway whose target is silent).
 * After offline_after failed polls in a row the device is offline: its readings carry
 * online = false and last_err, and it is tried at a slower pace (max(interval, 5 s),
 * doubling to 60 s, with jitter) until it answers; then its interval resumes. Every
 * reading carries the breaker's state after its poll: `online`, and `last_err`, the
 * MBE_* code of the device's last failed poll (0 before any; kept after recovery).
 *
 * A merged read the device refuses (illegal data address or value) is split, in the
 * same poll, until only the point that fails alone is reported; one that times out
 * while the device answers its other reads is split for the next poll. Splits last for
 * the run (see tcpoll.c).
 */
#ifndef SLUICE_TCPOLL_H
#define SLUICE_TCPOLL_H

#include <stdint.h>

#include "site.h"
#include "poller.h"
#include "reading.h"


struct tcpoll_stats {
	uint64_t polls;      /* readings emitted */
	uint64_t failed;     /* readings with at least one failed point */
	uint64_t requests;   /* Modbus requests sent */
	uint64_t timeouts;
	uint64_t connects;   /* connections opened */
	uint64_t connect_fails; /* connection attempts that failed (refused, unreachable, timed out) */
	uint64_t offline;    /* devices offline now (their breaker is open) */
	uint64_t splits;     /* merged reads split after a refusal or a timeout */
	uint64_t writes;     /* writes finished (write_done called), ... */
	uint64_t write_fails;/* ... of which failed */
};

struct tcpoll;

/*
 * Build pollers for every device on a BUS_TCP bus of cfg (a sunspec device only once
 * discovery has filled in its points; its bus has a connection meanwhile, for
 * discovery's reads: tcpoll_probe) across nthreads threads (0: one per core, at most 4). cfg is copied; the arrays it points at (the config's) must outlive the
 * tcpoll. NULL with err on failure.
 */
struct tcpoll *tcpoll_new(const struct site *cfg, uint32_t generation, unsigned nthreads,
			  const struct poller_sink *sink, char *err, size_t errlen);
int tcpoll_start(struct tcpoll *tp);
/* Stop and join the threads; in-flight polls are abandoned (no reading for them). */
void tcpoll_stop(struct tcpoll *tp);
void tcpoll_free(struct tcpoll *tp);
void tcpoll_get_stats(struct tcpoll *tp, struct tcpoll_stats *out);
/* Number of devices this tcpoll polls. */
size_t tcpoll_ndevices(const struct tcpoll *tp);

/*
 * Write value (an engineering value: scale and offset are undone) to point `point` of
 * device `device` (an index into config.devices), which must be writable: FC 5 for a
 * coil, FC 6 for one holding register, FC 16 for more, and for a bool at a bit of a
 * holding register a read-modify-write (FC 3, then FC 6; none of our own polls comes
 * between them). A bool takes 0 or 1. Safe from any thread, before or after
 * tcpoll_start. The write is queued on the device's connection and sent between polls;
 * its result comes through sink->write_done (err 0 or an MBE_* code) from a poller
 * thread. Writes are not retried. Returns 0 when queued, or -1 with errno: ENOENT (no
 * such device polled here, or no such point), EPERM (the point is not writable),
 * ERANGE (the value does not fit the point's type), EINVAL (a point that cannot be
 * written, e.g. a string), ENOBUFS (too many writes waiting), ENOMEM. A write still
 * queued when the tcpoll stops is dropped without write_done.
 */
int tcpoll_write(struct tcpoll *tp, uint32_t device, uint16_t point, double value,
		 uint64_t tag);

/*
 * Hand probe p (drivers/poller.h) to the connection of bus `bus` (an index into cfg's
 * buses): its reads go out after the writes waiting there and before the next poll that
 * has not begun, at p->timeout_ms each (0: the bus's timeout), and p->done is called
 * from the connection's thread when they are over. Returns 0 when queued (the tcpoll
 * holds p until done), else -1 with errno and p untouched: ENOENT no connection of this
 * tcpoll for that bus; ENOBUFS too many probes waiting; ESHUTDOWN stopping. Safe from any
 * thread while the tcpoll exists; a probe still waiting when it stops is done with
 * PROBE_STOPPED.
 */
int tcpoll_probe(struct tcpoll *tp, size_t bus, struct poller_probe *p);

/* The offline retry pace (default 5 s doubling to 60 s), for tests; before tcpoll_start. */
void tcpoll_set_offline_retry(struct tcpoll *tp, int64_t min_ms, int64_t max_ms);

#endif
