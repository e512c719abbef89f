/*
 * netconn: opening a TCP connection to a Modbus TCP device or gateway, a DTU or a serial
 * server, the same way for every caller (tcpoll, serpoll's RTU-over-TCP lines, sluicectl
 * probe's client): the name resolved (a numeric host first, which never calls the
 * resolver), then a non-blocking connect() to each of its addresses in turn, with
 * TCP_NODELAY (one small request at a time: Nagle would only add latency).
 *
 * In steps for an event loop (netconn_resolve, netconn_try, netconn_done, netconn_take),
 * or in one call for a caller that may wait (netconn_open).
 *
 * Name resolution is the one step here that may block: a host name (not an address) is
 * looked up with a blocking getaddrinfo, which stalls the calling thread while the
 * resolver runs. netconn_resolve is the one place to make it asynchronous.
 */
#ifndef SLUICE_NETCONN_H
#define SLUICE_NETCONN_H

#include <stddef.h>
#include <stdint.h>

#include "fdio.h"

struct addrinfo;

/* A connect in progress; NETCONN_INIT (fd -1) before the first use. */
struct netconn {
	struct addrinfo *addrs;  /* from resolving */
	struct addrinfo *next;   /* the next address to try */
	int fd;                  /* the socket connecting, or -1 */
	int err;                 /* errno of the last address that failed */
};
#define NETCONN_INIT { .fd = -1 }

/* Resolve host and port: 0, or -1 with err filled ("cannot resolve HOST: ..."). */
int netconn_resolve(struct netconn *nc, const char *host, uint16_t port, char *err,
		    size_t errlen);
/* Begin connecting to the next address: 0 with nc->fd connecting (wait until it is
 * writable, then netconn_done), or -1 when none is left (nc->err says why the last one
 * failed). */
int netconn_try(struct netconn *nc);
/* nc->fd is writable or in error: 0 when connected, else its errno (the socket is
 * closed, and netconn_try goes on with the next address). */
int netconn_done(struct netconn *nc);
/* Give up on nc->fd with errno e (e.g. it cannot be watched): closed, netconn_try goes on. */
void netconn_drop(struct netconn *nc, int e);
/* The connected socket, now the caller's; the addresses are freed. */
int netconn_take(struct netconn *nc);
/* Close a socket still connecting and free the addresses: nc is as new. */
void netconn_clear(struct netconn *nc);

/* "cannot connect to HOST port PORT: ..." for errno e (ETIMEDOUT: no answer). */
void netconn_strerror(char *buf, size_t len, const char *host, uint16_t port, int e);

/*
 * The whole connect, waiting through w (NULL: plain poll()) until deadline, which bounds
 * all the addresses together. Returns 0 with the socket in *fd; a positive errno with
 * err filled (EHOSTUNREACH when the name does not resolve, ETIMEDOUT at the deadline);
 * or the waiter's negative code.
 */
int netconn_open(const char *host, uint16_t port, int64_t deadline, const struct fdio_waiter *w,
		 int *fd, char *err, size_t errlen);

#endif
