/*
 * mbclient: blocking Modbus transactions for sluicectl probe. Owns its one descriptor.
 * Every wait is a poll() bounded by the timeout given at open, so a dead device costs
 * the person at the terminal that timeout and no more; it never select()s and never
 * retries on its own (the person decides). After a failed transaction the descriptor is
 * closed, since a late reply would otherwise answer the next request.
 * This file is Modbus TCP and the parts every transport shares; RTU framing (over TCP
 * or a serial line) is mbclient_rtu.c, reached through c->ops.
 */
#include "mbclient.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "mbclient_int.h"
#include "mberr.h"
#include "mbpdu.h"

int64_t mbclient_mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int mbclient_wait_fd(int fd, short events, int64_t deadline)
{
	for (;;) {
		struct pollfd pf = { .fd = fd, .events = events };
		int64_t left = deadline - mbclient_mono_ms();
		int rc;

		if (left < 0)
			left = 0;
		rc = poll(&pf, 1, (int)left);
		if (rc < 0 && errno == EINTR)
			continue;
		return rc;
	}
}

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

/* EAI errors and timeouts are mapped to errnos. */
int mbclient_tcp_connect(struct mbclient *c, char *err, size_t errlen)
{
	struct addrinfo hints, *ai = NULL;
	char port[8];
	int rc, last = ECONNREFUSED;
	int64_t deadline = mbclient_mono_ms() + c->timeout_ms;

	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(port, sizeof port, "%u", (unsigned)c->port);
	rc = getaddrinfo(c->host, port, &hints, &ai);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", c->host, gai_strerror(rc));
		return EHOSTUNREACH;
	}
	for (struct addrinfo *a = ai; a != NULL; a = a->ai_next) {
		int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		int soerr = 0, one = 1;
		socklen_t len = sizeof soerr;

		if (fd < 0) {
			last = errno;
			continue;
		}
		(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
			if (errno != EINPROGRESS) {
				last = errno;
				close(fd);
				continue;
			}
			rc = mbclient_wait_fd(fd, POLLOUT, deadline);
			if (rc <= 0) {
				last = rc == 0 ? ETIMEDOUT : errno;
				close(fd);
				continue;
			}
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
				soerr = errno;
			if (soerr != 0) {
				last = soerr;
				close(fd);
				continue;
			}
		}
		freeaddrinfo(ai);
		c->fd = fd;
		return 0;
	}
	freeaddrinfo(ai);
	snprintf(err, errlen, "cannot connect to %s port %u: %s", c->host, (unsigned)c->port,
		 last == ETIMEDOUT ? "no answer (timed out)" : strerror(last));
	return last;
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
		free(c);
		return NULL;
	}
	snprintf(c->host, sizeof c->host, "%s", host);
	c->port = port;
	if (client_connect(c, err, errlen) != 0) {
		free(c);
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

const char *mbclient_detail(const struct mbclient *c)
{
	return c != NULL ? c->detail : "";
}

void mbclient_close(struct mbclient *c)
{
	if (c == NULL)
		return;
	client_drop(c);
	free(c);
}

/* Read exactly n bytes before deadline: 0 or an MBE_* code. */
static int recv_all(int fd, uint8_t *buf, size_t n, int64_t deadline)
{
	size_t got = 0;

	while (got < n) {
		int rc = mbclient_wait_fd(fd, POLLIN, deadline);
		ssize_t k;

		if (rc == 0)
			return MBE_TIMEOUT;
		if (rc < 0)
			return MBE_IO;
		k = recv(fd, buf + got, n - got, MSG_DONTWAIT);
		if (k == 0)
			return MBE_CLOSED;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return errno == ECONNRESET ? MBE_CLOSED : MBE_IO;
		}
		got += (size_t)k;
	}
	return 0;
}

int mbclient_write_all(int fd, bool is_socket, const uint8_t *buf, size_t n, int64_t deadline)
{
	size_t off = 0;

	while (off < n) {
		ssize_t k = is_socket ? send(fd, buf + off, n - off, MSG_NOSIGNAL | MSG_DONTWAIT)
				      : write(fd, buf + off, n - off);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				int rc = mbclient_wait_fd(fd, POLLOUT, deadline);
				if (rc == 0)
					return MBE_TIMEOUT;
				if (rc < 0)
					return MBE_IO;
				continue;
			}
			return errno == ECONNRESET || errno == EPIPE ? MBE_CLOSED : MBE_IO;
		}
		off += (size_t)k;
	}
	return 0;
}

int mbclient_transact(struct mbclient *c, uint8_t unit, const uint8_t *req, size_t reqlen,
		      uint8_t *resp, size_t *resplen)
{
	uint8_t adu[MBTCP_ADU_MAX], hdr[MBTCP_HDR];
	size_t len;
	int64_t deadline;
	int rc, pdulen;
	uint16_t tid;
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
	c->tid++;
	len = mbtcp_frame(adu, c->tid, unit, req, reqlen);
	deadline = mbclient_mono_ms() + c->timeout_ms;
	rc = mbclient_write_all(c->fd, true, adu, len, deadline);
	if (rc == 0)
		rc = recv_all(c->fd, hdr, MBTCP_HDR, deadline);
	if (rc == MBE_TIMEOUT)
		snprintf(c->detail, sizeof c->detail, "no reply within %d ms", c->timeout_ms);
	if (rc == 0) {
		pdulen = mbtcp_header(hdr, &tid, &runit);
		if (pdulen < 0 || tid != c->tid || runit != unit) {
			if (pdulen < 0)
				snprintf(c->detail, sizeof c->detail, "the reply is not Modbus TCP "
					 "(is this port an RTU-over-TCP converter? try --rtu-tcp)");
			else if (runit != unit)
				snprintf(c->detail, sizeof c->detail, "the reply came from unit %u, "
					 "not unit %u", runit, unit);
			else
				snprintf(c->detail, sizeof c->detail, "the reply answers another "
					 "request (transaction %u, not %u)", tid, c->tid);
			rc = MBE_PROTO;
		} else
			rc = recv_all(c->fd, resp, (size_t)pdulen, deadline);
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
