/*
 * mbclient: blocking Modbus transactions for sluicectl probe. Owns its one descriptor.
 * Every wait is a poll() (drivers/fdio, drivers/netconn) bounded by the timeout given at
 * open, so a dead device costs the person at the terminal that timeout and no more; it
 * never select()s and never retries on its own (the person decides). After a failed
 * transaction the descriptor is closed, since a late reply would otherwise answer the
 * next request; so is one on which bytes wait before a request (nothing asked for
 * them), and transaction ids are drawn at random (drivers/mbtid.h).
 * This file is Modbus TCP and the parts every transport shares; RTU framing (over TCP
 * or a serial line) is mbclient_rtu.c, reached through c->ops.
 */
#include "mbclient.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "fdio.h"
#include "mbclient_int.h"
#include "mberr.h"
#include "mbpdu.h"
#include "netconn.h"

int mbclient_parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port)
{
	const char *colon, *hs = s;
	size_t hl;
	char *end;
	unsigned long p = 502;

	if (s == NULL || *s == '\0')
		return -1;
	if (*s == '[') {
		const char *rb = strchr(s, ']');
		if (rb == NULL)
			return -1;
		hs = s + 1;
		hl = (size_t)(rb - hs);
		colon = rb[1] == ':' ? rb + 1 : NULL;
		if (rb[1] != '\0' && colon == NULL)
			return -1;
	} else {
		colon = strchr(s, ':');
		if (colon != NULL && strchr(colon + 1, ':') != NULL)
			return -1; /* a bare IPv6 address: brackets needed to tell the port */
		hl = colon != NULL ? (size_t)(colon - s) : strlen(s);
	}
	if (colon != NULL) {
		errno = 0;
		p = strtoul(colon + 1, &end, 10);
		if (colon[1] == '\0' || *end != '\0' || errno != 0 || p < 1 || p > 65535)
			return -1;
	}
	if (hl == 0 || hl >= hostlen)
		return -1;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	*port = (uint16_t)p;
	return 0;
}

int mbclient_tcp_connect(struct mbclient *c, char *err, size_t errlen)
{
	/* no waiter: nothing but the timeouts interrupt a person's probe */
	return netconn_open(&c->nc, c->host, c->port, c->timeout_ms, NULL, &c->fd, err, errlen);
}

/* Connect or open c->fd by whichever transport c is. */
static int client_connect(struct mbclient *c, char *err, size_t errlen)
{
	if (c->ops != NULL)
		return c->ops->open(c, err, errlen);
	return mbclient_tcp_connect(c, err, errlen);
}

struct mbclient *mbclient_alloc(int timeout_ms, char *err, size_t errlen)
{
	struct mbclient *c = calloc(1, sizeof *c);

	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 1000;
	c->fd = -1;
	c->nc = (struct netconn)NETCONN_INIT;
	mbtid_init(&c->tids);
	return c;
}

struct mbclient *mbclient_open_tcp(const char *host, uint16_t port, int timeout_ms, char *err,
				   size_t errlen)
{
	struct mbclient *c = mbclient_alloc(timeout_ms, err, errlen);

	if (c == NULL)
		return NULL;
	if (strlen(host) >= sizeof c->host) {
		snprintf(err, errlen, "host name too long");
		mbclient_close(c);
		return NULL;
	}
	snprintf(c->host, sizeof c->host, "%s", host);
	c->port = port;
	if (client_connect(c, err, errlen) != 0) {
		mbclient_close(c);
		return NULL;
	}
	return c;
}

static void client_drop(struct mbclient *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
}

/* Is anything waiting on the connection, or has the peer closed it, before a request? */
static bool client_unsolicited(const struct mbclient *c)
{
	uint8_t b;
	ssize_t n;

	do
		n = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
	while (n < 0 && errno == EINTR);
	return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

const char *mbclient_detail(const struct mbclient *c)
{
	return c != NULL ? c->detail : "";
}

void mbclient_close(struct mbclient *c)
{
	if (c == NULL)
		return;
	client_drop(c);
	netconn_fini(&c->nc); /* a lookup still running frees itself when it ends */
	free(c);
}

int mbclient_transact(struct mbclient *c, uint8_t unit, const uint8_t *req, size_t reqlen,
		      uint8_t *resp, size_t *resplen)
{
	uint8_t adu[MBTCP_ADU_MAX], hdr[MBTCP_HDR];
	size_t len;
	int64_t deadline;
	int rc, pdulen;
	uint16_t tid, rtid;
	uint8_t runit;
	char err[256];

	c->detail[0] = '\0';
	if (reqlen == 0 || reqlen > MB_PDU_MAX)
		return MBE_PROTO;
	if (c->fd < 0 && client_connect(c, err, sizeof err) != 0) {
		snprintf(c->detail, sizeof c->detail, "%s", err);
		return MBE_CONNECT;
	}
	if (c->ops != NULL) {
		rc = c->ops->transact(c, unit, req, reqlen, resp, resplen);
		if (rc != 0)
			client_drop(c);
		return rc;
	}
	if (client_unsolicited(c)) {
		/* bytes no request of ours asked for (a trailing frame after the last reply)
		 * or a closed connection: a fresh one, so that they answer nothing */
		client_drop(c);
		if (client_connect(c, err, sizeof err) != 0) {
			snprintf(c->detail, sizeof c->detail, "%s", err);
			return MBE_CONNECT;
		}
	}
	tid = mbtid_next(&c->tids);
	len = mbtcp_frame(adu, tid, unit, req, reqlen);
	deadline = clock_mono_ms() + c->timeout_ms;
	rc = fdio_write_all(NULL, c->fd, true, adu, len, deadline);
	if (rc == 0)
		rc = fdio_read_all(NULL, c->fd, hdr, MBTCP_HDR, deadline);
	if (rc == MBE_TIMEOUT)
		snprintf(c->detail, sizeof c->detail, "no reply within %d ms", c->timeout_ms);
	if (rc == 0) {
		pdulen = mbtcp_header(hdr, &rtid, &runit);
		if (pdulen < 0 || rtid != tid || runit != unit) {
			if (pdulen < 0)
				snprintf(c->detail, sizeof c->detail, "the reply is not Modbus TCP "
					 "(is this port an RTU-over-TCP converter? try --rtu-tcp)");
			else if (runit != unit)
				snprintf(c->detail, sizeof c->detail, "the reply came from unit %u, "
					 "not unit %u", runit, unit);
			else
				snprintf(c->detail, sizeof c->detail, "the reply answers another "
					 "request (transaction %u, not %u)", rtid, tid);
			rc = MBE_PROTO;
		} else
			rc = fdio_read_all(NULL, c->fd, resp, (size_t)pdulen, deadline);
		if (rc == 0)
			*resplen = (size_t)pdulen;
	}
	if (rc != 0)
		client_drop(c);
	return rc;
}

int mbclient_read(struct mbclient *c, uint8_t unit, enum mb_table t, uint16_t start,
		  uint16_t count, uint16_t *regs, uint8_t *bits)
{
	uint8_t req[8], resp[MB_PDU_MAX];
	size_t reqlen, resplen = 0;
	int rc;

	if (count == 0 || mbpdu_read_fc(t) == 0)
		return MBE_PROTO;
	reqlen = mbpdu_read_req(req, t, start, count);
	rc = mbclient_transact(c, unit, req, reqlen, resp, &resplen);
	if (rc != 0)
		return rc;
	return mbpdu_read_resp(resp, resplen, t, count, regs, bits);
}
