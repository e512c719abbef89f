/*
 * serpoll_dtu: serpoll's transport for a BUS_RTU_OVER_TCP line, a serial line behind a
 * DTU or serial server in transparent mode: RTU frames (drivers/rtustream) on our own
 * TCP socket (drivers/netconn), since libmodbus has no such backend. Owns that socket
 * while the line is open; the line's struct netconn (the DTU's last good address, a
 * lookup still running) outlives it. Every wait goes through the line's own wait, so
 * that a stop is heard at once, even in the middle of a lookup, a connect or an
 * exchange; it never select()s.
 *
 * Timeout: as on a tty (serpoll_tty.c), the time for the reply to begin plus the
 * transfer times of the request and the reply at the bus's baud (the DTU's serial side)
 * is a deadline for the whole reply. A DTU that talks without pause fails the request
 * at once (rtustream reads a few kilobytes of it at most) and its connection is closed:
 * a failed poll like any other, which the device's breaker counts.
 */
#include "serpoll_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "clock.h"
#include "fdio.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "netconn.h"
#include "rtustream.h"

#define DTU_CONNECT_MIN_MS 1000   /* a DTU on a cellular link is slow to accept */
#define DTU_QUIET_MS 20           /* silence that ends a garbled reply */

struct dtu {
	struct rtustream rs;
	struct fdio_waiter waiter;   /* the line's wait: a stop interrupts it */
	char detail[320];
};

static int dtu_wait(void *ctx, int fd, short events, int64_t deadline)
{
	return serpoll_line_wait(ctx, fd, events, deadline);
}

static int dtu_open(struct sp_line *l, char *err, size_t errlen)
{
	const struct bus_cfg *b = l->bus;
	int64_t timeout = l->timeout > DTU_CONNECT_MIN_MS ? l->timeout : DTU_CONNECT_MIN_MS;
	struct dtu *t = calloc(1, sizeof *t);
	int fd = -1, rc;

	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return MBE_CONNECT;
	}
	t->waiter = (struct fdio_waiter){ .wait = dtu_wait, .ctx = l };
	/* a host name is looked up off this thread, waited for through the line's wait */
	rc = netconn_open(&l->nc, b->host, b->port, timeout, &t->waiter, &fd, err, errlen);
	if (rc != 0) {
		free(t);
		return rc < 0 ? SP_STOPPED : MBE_CONNECT;
	}
	t->rs = (struct rtustream){
		.fd = fd,
		.is_socket = true,
		.waiter = &t->waiter,
		.timeout_ms = l->timeout,
		.baud = b->baud,
		.char_bits = l->char_bits,
		.rest_ms = 0,
		.quiet_ms = l->guard > DTU_QUIET_MS ? l->guard : DTU_QUIET_MS,
		.detail = t->detail,
		.detaillen = sizeof t->detail,
	};
	l->conn = t;
	return 0;
}

static void dtu_close(struct sp_line *l)
{
	struct dtu *t = l->conn;

	if (t == NULL)
		return;
	close(t->rs.fd);
	free(t);
	l->conn = NULL;
}

/* Send request PDU req to unit (reqlen 0: a request that could not be built) and check
 * its reply: with rq, a read's, decoded into regs or bits; without, a write's echo. */
static int dtu_request(struct sp_line *l, uint8_t unit, const uint8_t *req, size_t reqlen,
		       const struct plan_req *rq, uint16_t *regs, uint8_t *bits)
{
	struct dtu *t = l->conn;
	uint8_t resp[MB_PDU_MAX];
	size_t rlen = 0;
	int rc;

	if (reqlen == 0)
		return MBE_UNSUPPORTED;
	t->rs.timeout_ms = l->timeout; /* a probe may ask for its own */
	rc = rtustream_exchange(&t->rs, unit, req, reqlen, resp, &rlen);
	if (t->rs.stale > 0 && !t->rs.flooded)
		log_debug("bus %s: %zu stale bytes dropped", l->bus->id, t->rs.stale);
	if (rc != 0) {
		if (rc != SP_STOPPED && t->detail[0] != '\0')
			log_debug("bus %s: unit %u: %s", l->bus->id, unit, t->detail);
		/* a stream that never pauses cannot be framed again: a new connection may
		 * find the DTU sane, and meanwhile the flood waits in no buffer of ours */
		if (t->rs.flooded)
			dtu_close(l);
		return rc;
	}
	return rq != NULL ? mbpdu_read_resp(resp, rlen, rq->table, rq->count, regs, bits) :
			    mbpdu_write_resp(req, reqlen, resp, rlen);
}

static int dtu_read(struct sp_line *l, uint8_t unit, const struct plan_req *rq, uint16_t *regs,
		    uint8_t *bits)
{
	uint8_t req[8];

	return dtu_request(l, unit, req, mbpdu_read_req(req, rq->table, rq->start, rq->count), rq,
			   regs, bits);
}

static int dtu_write(struct sp_line *l, uint8_t unit, const struct mbwrite *w)
{
	uint8_t req[MB_PDU_MAX];

	return dtu_request(l, unit, req, mbwrite_pdu(w, req), NULL, NULL, NULL);
}

const struct sp_backend serpoll_dtu_backend = {
	.name = "rtu_over_tcp",
	.open = dtu_open,
	.close = dtu_close,
	.read = dtu_read,
	.write = dtu_write,
};
