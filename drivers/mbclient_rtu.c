/*
 * mbclient_rtu: the RTU transports of mbclient, for sluicectl probe: RTU frames over a
 * TCP connection (a DTU or serial server) and over a serial line opened with termios.
 * Owns the serial line's settings and its silence before a request; the exchange itself
 * (framing, reading the reply, telling a CRC error, a reply from another unit and a
 * timeout apart) is drivers/rtustream's, as for the daemon's RTU-over-TCP lines. It
 * never retries and never writes a frame it was not asked to.
 */
#include "mbclient.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "mbclient_int.h"
#include "mberr.h"
#include "mbpdu.h"
#include "rtu.h"
#include "rtustream.h"

#define RTU_QUIET_MS 20   /* silence that ends a garbled reply */

static bool is_serial(const struct mbclient *c)
{
	return c->device[0] != '\0';
}

/* Silence before a request on a serial line: RTU ends a frame with 3.5 characters of
 * it, and a device that is still sending the end of a late reply must be heard out. */
static void rtu_line_quiet(struct mbclient *c)
{
	unsigned bits = rtu_char_bits(c->data_bits, c->parity, c->stop_bits);
	int64_t us = c->baud > 0 ? rtu_transfer_us(c->baud, bits, 4) : 0;
	struct timespec ts;

	if (us < 2000)
		us = 2000; /* a USB adapter's latency, not the line's, sets the floor */
	ts.tv_sec = us / 1000000;
	ts.tv_nsec = (long)(us % 1000000) * 1000;
	nanosleep(&ts, NULL);
	(void)tcflush(c->fd, TCIFLUSH);
}

static int rtu_transact(struct mbclient *c, uint8_t unit, const uint8_t *req, size_t reqlen,
			uint8_t *resp, size_t *resplen)
{
	struct rtustream rs = {
		.fd = c->fd,
		.is_socket = !is_serial(c),
		.timeout_ms = c->timeout_ms,
		.baud = c->baud,
		.char_bits = rtu_char_bits(c->data_bits, c->parity, c->stop_bits),
		/* a person's probe: once a reply has begun, it gets the timeout again on top
		 * of its transfer time (a slow line is not a dead device) */
		.rest_ms = c->timeout_ms,
		.quiet_ms = RTU_QUIET_MS,
		.detail = c->detail,
		.detaillen = sizeof c->detail,
	};
	int rc;

	if (is_serial(c))
		rtu_line_quiet(c);
	rc = rtustream_exchange(&rs, unit, req, reqlen, resp, resplen);
	/* mbclient.h promises MBE_PROTO for these, and the probe's messages (documented in
	 * docs/devices.md) read "malformed reply — " and the detail that says which */
	if (rc == MBE_BAD_CRC || rc == MBE_WRONG_UNIT)
		rc = MBE_PROTO;
	return rc;
}

static speed_t rtu_speed(unsigned baud)
{
	switch (baud) {
	case 1200: return B1200;
	case 2400: return B2400;
	case 4800: return B4800;
	case 9600: return B9600;
	case 19200: return B19200;
	case 38400: return B38400;
	case 57600: return B57600;
	case 115200: return B115200;
	default: return 0;
	}
}

static int rtu_serial_open(struct mbclient *c, char *err, size_t errlen)
{
	struct termios t;
	speed_t sp = rtu_speed(c->baud);
	int fd;

	if (sp == 0) {
		snprintf(err, errlen, "%s: baud %u is not one of 1200, 2400, 4800, 9600, 19200, "
			 "38400, 57600, 115200", c->device, c->baud);
		return EINVAL;
	}
	fd = open(c->device, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		snprintf(err, errlen, "cannot open %s: %s", c->device, strerror(e));
		return e;
	}
	if (tcgetattr(fd, &t) != 0) {
		int e = errno;
		snprintf(err, errlen, "%s is not a serial line: %s", c->device, strerror(e));
		close(fd);
		return e;
	}
	cfmakeraw(&t);
	t.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
	t.c_cflag |= CLOCAL | CREAD | (c->data_bits == 7 ? CS7 : CS8);
	if (c->parity == 'E' || c->parity == 'O')
		t.c_cflag |= PARENB | (c->parity == 'O' ? PARODD : 0);
	if (c->stop_bits == 2)
		t.c_cflag |= CSTOPB;
	t.c_cc[VMIN] = 0;
	t.c_cc[VTIME] = 0;
	if (cfsetispeed(&t, sp) != 0 || cfsetospeed(&t, sp) != 0 ||
	    tcsetattr(fd, TCSANOW, &t) != 0) {
		int e = errno;
		snprintf(err, errlen, "cannot set %s to %u baud: %s", c->device, c->baud,
			 strerror(e));
		close(fd);
		return e;
	}
	c->fd = fd;
	return 0;
}

static const struct mbclient_ops rtu_tcp_ops = {
	.open = mbclient_tcp_connect,
	.transact = rtu_transact,
};

static const struct mbclient_ops rtu_serial_ops = {
	.open = rtu_serial_open,
	.transact = rtu_transact,
};

struct mbclient *mbclient_open_rtu_tcp(const char *host, uint16_t port, int timeout_ms,
				       char *err, size_t errlen)
{
	struct mbclient *c;

	if (strlen(host) >= sizeof c->host) {
		snprintf(err, errlen, "host name too long");
		return NULL;
	}
	if ((c = mbclient_alloc(timeout_ms, err, errlen)) == NULL)
		return NULL;
	c->ops = &rtu_tcp_ops;
	snprintf(c->host, sizeof c->host, "%s", host);
	c->port = port;
	c->parity = 'N';
	c->data_bits = 8;
	c->stop_bits = 1;
	if (c->ops->open(c, err, errlen) != 0) {
		mbclient_close(c);
		return NULL;
	}
	return c;
}

struct mbclient *mbclient_open_rtu(const char *path, unsigned baud, char parity,
				   unsigned data_bits, unsigned stop_bits, int timeout_ms,
				   char *err, size_t errlen)
{
	struct mbclient *c;

	if (strlen(path) == 0 || strlen(path) >= sizeof c->device) {
		snprintf(err, errlen, "no serial device, or its path is too long");
		return NULL;
	}
	if ((parity != 'N' && parity != 'E' && parity != 'O') ||
	    (data_bits != 7 && data_bits != 8) || (stop_bits != 1 && stop_bits != 2)) {
		snprintf(err, errlen, "%s: framing must be 7 or 8 data bits, parity N, E or O, "
			 "1 or 2 stop bits", path);
		return NULL;
	}
	if ((c = mbclient_alloc(timeout_ms, err, errlen)) == NULL)
		return NULL;
	c->ops = &rtu_serial_ops;
	snprintf(c->device, sizeof c->device, "%s", path);
	c->baud = baud;
	c->parity = parity;
	c->data_bits = data_bits;
	c->stop_bits = stop_bits;
	if (c->ops->open(c, err, errlen) != 0) {
		mbclient_close(c);
		return NULL;
	}
	return c;
}
