/*
 * mbclient_int: what mbclient.c (Modbus TCP, the socket) shares with mbclient_rtu.c (RTU
 * framing over a TCP socket or a serial line). Private to those two files: nothing else
 * may include it. The RTU half is a separate file so that a program or test that only
 * speaks Modbus TCP does not have to link the RTU code.
 */
#ifndef SLUICE_MBCLIENT_INT_H
#define SLUICE_MBCLIENT_INT_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>

#include "mbclient.h"
#include "mbtid.h"
#include "netconn.h"

/* A transport other than Modbus TCP: NULL ops in struct mbclient means Modbus TCP. */
struct mbclient_ops {
	/* (Re)open c->fd: 0, or an errno with err filled. */
	int (*open)(struct mbclient *c, char *err, size_t errlen);
	/* One request and its reply, c->fd open: 0 or an MBE_* code (c->detail filled). */
	int (*transact)(struct mbclient *c, uint8_t unit, const uint8_t *req, size_t reqlen,
			uint8_t *resp, size_t *resplen);
};

struct mbclient {
	const struct mbclient_ops *ops;
	char host[256];         /* TCP and RTU over TCP */
	uint16_t port;
	char device[256];       /* a serial line */
	unsigned baud;          /* 0 when not known (RTU over TCP: the DTU's business) */
	char parity;            /* 'N', 'E', 'O' */
	unsigned data_bits, stop_bits;
	int timeout_ms;
	int fd;
	struct netconn nc;      /* TCP: the addresses, a lookup still running */
	struct mbtid tids;      /* Modbus TCP: the ids of its requests */
	char detail[320];       /* why the last transaction failed, in words; "" if it did not */
};

/* Connect c->fd to c->host port c->port over TCP (drivers/netconn), within the timeout:
 * 0, or an errno with err filled. */
int mbclient_tcp_connect(struct mbclient *c, char *err, size_t errlen);
/* A zeroed client with the common fields set, or NULL with err filled. */
struct mbclient *mbclient_alloc(int timeout_ms, char *err, size_t errlen);

#endif
