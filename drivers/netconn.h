/*
 * netconn: opening a TCP connection to a Modbus TCP device or gateway, a DTU or a serial
 * server, the same way for every caller (tcpoll, serpoll's RTU-over-TCP lines, sluicectl
 * probe's client): the name resolved (a numeric host first, which never calls the
 * resolver), then a non-blocking connect() to each of its addresses in turn, with
 * TCP_NODELAY (one small request at a time: Nagle would only add latency).
 *
 * In steps for an event loop (netconn_resolve, netconn_resolved, netconn_try,
 * netconn_done, netconn_take), or in one call for a caller that may wait (netconn_open).
 *
 * Host names. A resolver that does not answer must not stall a poller: a host name is
 * looked up on a thread of its own (blocking getaddrinfo there), and the caller waits
 * for it, with a deadline, on a descriptor it can poll or put in its epoll set. A
 * lookup cannot be cancelled once it runs, so one that misses its deadline is left to
 * finish: it stays the netconn's, is not waited for again, and its answer is taken at
 * the next connect (or it frees itself if the netconn is gone by then). A netconn keeps
 * the last good answer for its name and connects to it when a later lookup fails or
 * misses its deadline (logged once, as a warning, and once when the name resolves
 * again); without one, a name that does not resolve is a connect failure like any
 * other, for the caller's breaker.
 *
 * A struct netconn lives as long as its connection's owner (a bus), not one connect:
 * netconn_clear between connects, netconn_fini at the end.
 */
#ifndef SLUICE_NETCONN_H
#define SLUICE_NETCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>

#include "fdio.h"

#define NETCONN_MAX_ADDRS 8         /* of one name, tried in turn */
#define NETCONN_LOOKUP_MIN_MS 1000  /* a resolver is given at least this long */
#define NETCONN_LOOKUPS_MAX 64      /* lookups running at once, process-wide */

union netconn_addr {
	struct sockaddr sa;
	struct sockaddr_in in;
	struct sockaddr_in6 in6;
};

struct netconn_lookup;

/* NETCONN_INIT (fd -1) before the first use. */
struct netconn {
	union netconn_addr addrs[NETCONN_MAX_ADDRS]; /* the last good answer */
	size_t naddrs;
	size_t next;                 /* the next address to try */
	struct netconn_lookup *lookup; /* running, or done and not yet read */
	bool overdue;                /* the lookup missed a deadline: not waited for again */
	bool stale;                  /* connecting to an earlier answer (said once) */
	int fd;                      /* the socket connecting, or -1 */
	int err;                     /* errno of the last address that failed */
};
#define NETCONN_INIT { .fd = -1 }

enum { NETCONN_READY = 0, NETCONN_PENDING = 1 };

/*
 * Resolve host and port. NETCONN_READY: the addresses are set, netconn_try goes through
 * them. NETCONN_PENDING: a lookup runs; wait until netconn_lookup_fd is readable or the
 * deadline (now + netconn_lookup_ms of the caller's timeout) passes, then call
 * netconn_resolved. -1 with err filled ("cannot resolve HOST: ...").
 */
int netconn_resolve(struct netconn *nc, const char *host, uint16_t port, char *err,
		    size_t errlen);
/* The descriptor that turns readable when the lookup is over; -1 when none runs. */
int netconn_lookup_fd(const struct netconn *nc);
/* The wait for the lookup is over (its descriptor readable, or the deadline passed):
 * NETCONN_READY with the addresses (its answer, or the last good one), or -1 with err. */
int netconn_resolved(struct netconn *nc, const char *host, uint16_t port, char *err,
		     size_t errlen);
/* How long a lookup is waited for by a caller whose connect timeout is timeout_ms. */
int64_t netconn_lookup_ms(int64_t timeout_ms);

/* Begin connecting to the next address: 0 with nc->fd connecting (wait until it is
 * writable, then netconn_done), or -1 when none is left (nc->err says why the last one
 * failed). */
int netconn_try(struct netconn *nc);
/* nc->fd is writable or in error: 0 when connected, else its errno (the socket is
 * closed, and netconn_try goes on with the next address). */
int netconn_done(struct netconn *nc);
/* Give up on nc->fd with errno e (e.g. it cannot be watched): closed, netconn_try goes on. */
void netconn_drop(struct netconn *nc, int e);
/* The connected socket, now the caller's. */
int netconn_take(struct netconn *nc);
/* Close a socket still connecting; the addresses and a running lookup are kept. */
void netconn_clear(struct netconn *nc);
/* Everything: a lookup still running is left to free itself when it ends. */
void netconn_fini(struct netconn *nc);

/* "cannot connect to HOST port PORT: ..." for errno e (ETIMEDOUT: no answer). */
void netconn_strerror(char *buf, size_t len, const char *host, uint16_t port, int e);

/*
 * The whole connect through nc, waiting through w (NULL: plain poll()): the lookup of a
 * host name within netconn_lookup_ms(timeout_ms), then the connect, all its addresses
 * together, within timeout_ms. Returns 0 with the socket in *fd; a positive errno with
 * err filled (EHOSTUNREACH when the name does not resolve, ETIMEDOUT at the deadline);
 * or the waiter's negative code.
 */
int netconn_open(struct netconn *nc, const char *host, uint16_t port, int64_t timeout_ms,
		 const struct fdio_waiter *w, int *fd, char *err, size_t errlen);

/* Lookups running now, process-wide (those left to finish included): for tests. */
unsigned netconn_lookups_running(void);

#endif
