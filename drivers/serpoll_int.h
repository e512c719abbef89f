/*
 * serpoll_int: what the serial-line poller (serpoll.c: the lines, their threads, the
 * devices' schedule, the write queue) shares with its two transports behind one table
 * of functions, as libmodbus's backends are: serpoll_tty.c (Modbus RTU on a tty through
 * libmodbus) and serpoll_dtu.c (RTU frames on a TCP socket to a DTU or serial server).
 * Private to those three files: nothing else may include it.
 */
#ifndef SLUICE_SERPOLL_INT_H
#define SLUICE_SERPOLL_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "mbwrite.h"
#include "netconn.h"
#include "plan.h"
#include "serpoll.h"

#define SP_STOPPED (-1)          /* not an MBE_* code: the line is stopping */

struct sp_line;

/* A transport. Its open connection is l->conn (NULL while closed), whatever it is. */
struct sp_backend {
	const char *name;
	/* Open the line: 0 with l->conn set, MBE_CONNECT with err filled, or SP_STOPPED when
	 * stopping interrupted it. */
	int (*open)(struct sp_line *l, char *err, size_t errlen);
	void (*close)(struct sp_line *l);
	/* One request on the open line: 0, MBE_EXC_BASE + code, another MBE_* code, or
	 * SP_STOPPED. */
	int (*read)(struct sp_line *l, uint8_t unit, const struct plan_req *rq, uint16_t *regs,
		    uint8_t *bits);
	int (*write)(struct sp_line *l, uint8_t unit, const struct mbwrite *w);
};

extern const struct sp_backend serpoll_tty_backend; /* BUS_RTU */
extern const struct sp_backend serpoll_dtu_backend; /* BUS_RTU_OVER_TCP */

struct sp_write;

struct sp_line {
	struct serpoll *sp;
	const struct bus_cfg *bus;
	size_t busidx;               /* into the site's buses */
	const struct sp_backend *be;
	void *conn;                  /* the backend's open connection, NULL while closed */
	int64_t timeout;             /* until the reply begins */
	int64_t guard;               /* silence between requests */
	unsigned char_bits;
	int64_t last_end;            /* when the line last fell silent */
	struct link_breaker link;    /* opening: backoff, and its journal */
	struct netconn nc;           /* RTU over TCP: the DTU's addresses and their lookup,
					kept from one connection to the next */

	pthread_t thread;
	bool started;
	int wakefd;                  /* eventfd: a write queued, or stop */
	struct sp_dev **devs;
	size_t ndevs;

	pthread_mutex_t mu;          /* the write queue and the probe queue */
	bool mu_init;
	struct sp_write *wq_head, *wq_tail;
	size_t nwq;
	struct poller_probe *pq_head, *pq_tail;
	size_t npq;
};

/*
 * Wait for events on fd (or, with fd < 0, just sleep) until deadline. Returns 1 when fd
 * is ready, 0 at the deadline, 2 when a sleep (fd < 0) was woken by a queued write,
 * SP_STOPPED when the line is stopping. A wake-up while waiting on fd is drained and the
 * wait goes on: a write waits for the request in progress.
 */
int serpoll_line_wait(struct sp_line *l, int fd, short events, int64_t deadline);

#endif
