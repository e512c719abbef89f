/*
 * mbclient_rtu: the RTU transports of mbclient, for sluicectl probe: RTU frames over a
 * TCP connection (a DTU or serial server) and over a serial line opened with termios.
 * Owns the framing of one request and the reading of its reply, with the reply's length
 * known from its first bytes (rtu_reply_len), since RTU has no length field. It tells a
 * CRC error and a reply from another unit apart from a timeout, because those three send
 * a technician to three different places (wiring and speed, addressing, power). It never
 * retries and never writes a frame it was not asked to.
 */
#include "mbclient.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "mbclient_int.h"
#include "mberr.h"
#include "mbpdu.h"
#include "rtu.h"

static bool is_serial(const struct mbclient *c)
{
	return c->device[0] != '\0';
}

/* Write all of buf before deadline: 0 or an MBE_* code. */
static int rtu_write_all(struct mbclient *c, const uint8_t *buf, size_t n, int64_t deadline)
{
	return mbclient_write_all(c->fd, !is_serial(c), buf, n, deadline);
}

static void hex_bytes(char *out, size_t len, const uint8_t *p, size_t n)
{
	size_t off = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && off + 4 < len; i++)
		off += (size_t)snprintf(out + off, len - off, "%s%02X", i ? " " : "", p[i]);
}

/*
 * Read one reply frame into adu: its length, or -(MBE_* code). The first byte must come
 * within the timeout; the rest within the timeout again plus the frame's transfer time at
 * the line's speed (a slow line is not a dead device).
 */
static int rtu_read_frame(struct mbclient *c, uint8_t *adu, int64_t deadline, size_t expect)
{
	size_t have = 0;
	int need = 0;

	for (;;) {
		size_t want = need > 0 ? (size_t)need : 3;
		int rc = mbclient_wait_fd(c->fd, POLLIN, deadline);
		ssize_t k;

		if (rc == 0) {
			if (have == 0)
				snprintf(c->detail, sizeof c->detail, "no reply within %d ms",
					 c->timeout_ms);
			else
				snprintf(c->detail, sizeof c->detail, "the reply stopped after %zu "
					 "bytes (a frame cut short: noise, or another master on "
					 "the line)", have);
			return -MBE_TIMEOUT;
		}
		if (rc < 0)
			return -MBE_IO;
		k = read(c->fd, adu + have, want - have);
		if (k == 0)
			return is_serial(c) ? -MBE_IO : -MBE_CLOSED;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return errno == ECONNRESET ? -MBE_CLOSED : -MBE_IO;
		}
		if (have == 0) {
			int64_t rest = c->timeout_ms;
			unsigned bits = rtu_char_bits(c->data_bits, c->parity, c->stop_bits);
			if (c->baud > 0)
				rest += rtu_transfer_ms(c->baud, bits, expect);
			deadline = mbclient_mono_ms() + rest;
		}
		have += (size_t)k;
		need = rtu_reply_len(adu, have);
		if (need < 0 || need > RTU_ADU_MAX) {
			char hex[32];
			hex_bytes(hex, sizeof hex, adu, have);
			snprintf(c->detail, sizeof c->detail, "the reply does not begin like a Modbus "
				 "RTU frame (%s): wrong baud or parity, or not an RTU device", hex);
			return -MBE_PROTO;
		}
		if (need > 0 && have >= (size_t)need)
			return need;
	}
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
	uint8_t adu[RTU_ADU_MAX];
	const uint8_t *pdu;
	size_t len, pdulen, expect;
	uint16_t crc, got;
	uint8_t runit;
	int64_t deadline;
	int rc, n;

	len = rtu_frame(adu, unit, req, reqlen);
	if (len == 0)
		return MBE_PROTO;
	expect = rtu_reply_size(req, reqlen);
	if (expect == 0)
		expect = RTU_ADU_MAX;
	if (is_serial(c))
		rtu_line_quiet(c);
	deadline = mbclient_mono_ms() + c->timeout_ms;
	if (c->baud > 0)
		deadline += rtu_transfer_ms(c->baud, rtu_char_bits(c->data_bits, c->parity,
								   c->stop_bits), len);
	rc = rtu_write_all(c, adu, len, deadline);
	if (rc != 0)
		return rc;
	if (unit == 0) {
		snprintf(c->detail, sizeof c->detail, "unit 0 is broadcast on RTU: no device "
			 "answers it");
		return MBE_TIMEOUT;
	}
	n = rtu_read_frame(c, adu, deadline, expect);
	if (n < 0)
		return -n;
	crc = rtu_crc16(adu, (size_t)n - 2);
	got = (uint16_t)(adu[n - 2] | adu[n - 1] << 8);
	if (crc != got) {
		snprintf(c->detail, sizeof c->detail, "CRC error in the reply (computed %04X, "
			 "received %04X): noise or a bad termination on the line, a wrong baud "
			 "or parity, or two devices with the same unit id", crc, got);
		return MBE_PROTO;
	}
	if (rtu_unframe(adu, (size_t)n, &runit, &pdu, &pdulen) != 0) {
		snprintf(c->detail, sizeof c->detail, "a reply of %d bytes that is not a frame", n);
		return MBE_PROTO;
	}
	if (runit != unit) {
		snprintf(c->detail, sizeof c->detail, "the reply came from unit %u, not unit %u: "
			 "two devices share a unit id, or one answers for another", runit, unit);
		return MBE_PROTO;
	}
	memcpy(resp, pdu, pdulen);
	*resplen = pdulen;
	return 0;
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
		free(c);
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
		free(c);
		return NULL;
	}
	return c;
}
