/*
 * tcpoll: the Modbus TCP pollers. A small fixed set of threads (never one per
 * endpoint) each run an epoll loop over their share of the TCP buses; Modbus TCP is
 * framed on our own non-blocking sockets, because libmodbus select()s and cannot take
 * a descriptor past 1023. One connection per bus (host:port), shared by the devices
 * on it, one request in flight per connection. Each device is polled on its interval
 * on the monotonic clock; every poll produces exactly one reading, handed to the sink.
 */
#ifndef SLUICE_TCPOLL_H
#define SLUICE_TCPOLL_H

#include <stdint.h>

#include "config.h"
#include "poller.h"
#include "reading.h"


struct tcpoll_stats {
	uint64_t polls;      /* readings emitted */
	uint64_t failed;     /* readings with at least one failed point */
	uint64_t requests;   /* Modbus requests sent */
	uint64_t timeouts;
	uint64_t connects;   /* connections opened */
	uint64_t connect_fails; /* connection attempts that failed (refused, unreachable, timed out) */
};

struct tcpoll;

/*
 * Build pollers for every device on a BUS_TCP bus of cfg (sunspec devices excepted:
 * their points are discovered at run time) across nthreads threads (0: one per core,
 * at most 4). cfg must outlive the tcpoll. NULL with err on failure.
 */
struct tcpoll *tcpoll_new(const struct config *cfg, uint32_t generation, unsigned nthreads,
			  const struct poller_sink *sink, char *err, size_t errlen);
int tcpoll_start(struct tcpoll *tp);
/* Stop and join the threads; in-flight polls are abandoned (no reading for them). */
void tcpoll_stop(struct tcpoll *tp);
void tcpoll_free(struct tcpoll *tp);
void tcpoll_get_stats(struct tcpoll *tp, struct tcpoll_stats *out);
/* Number of devices this tcpoll polls. */
size_t tcpoll_ndevices(const struct tcpoll *tp);

#endif
