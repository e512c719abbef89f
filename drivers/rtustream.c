/*
 * rtustream: an RTU request and its reply on a byte stream (drivers/rtustream.h). Owns
 * nothing but the bytes of one exchange; the descriptor is its caller's, to close after
 * a failure if the caller no longer trusts the stream. Every loop over the stream is
 * bounded by the exchange's deadline, or, while flushing and draining, by RS_NOISE_MAX
 * bytes and RS_DRAIN_MAX_MS, and goes through the caller's waiter, which may stop it; it
 * never select()s.
 */
#include "rtustream.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "clock.h"
#include "log.h"
#include "mberr.h"
#include "mbpdu.h"
#include "rtu.h"

#define RS_DRAIN_MAX_MS 500     /* a line that never falls quiet is not waited out longer */
#define RS_NOISE_MAX 4096       /* nor read further: a stream this long without a pause is
				   not a late reply, nor noise a frame could follow */

static void rs_say(struct rtustream *s, const char *fmt, ...) PRINTF(2, 3);

static void rs_say(struct rtustream *s, const char *fmt, ...)
{
	va_list ap;

	if (s->detail == NULL || s->detaillen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(s->detail, s->detaillen, fmt, ap);
	va_end(ap);
}

static int rs_errno_code(int e)
{
	return e == ECONNRESET || e == EPIPE ? MBE_CLOSED : MBE_IO;
}

static void rs_flooded(struct rtustream *s, const char *when, size_t n, int64_t ms)
{
	s->flooded = true;
	rs_say(s, "the line does not fall silent (%zu bytes %s in %lld ms): a device or DTU "
	       "that talks without pause, or another master on the line", n, when,
	       (long long)ms);
}

/* Drop what is waiting on a socket before a request: a late reply to a request that
 * timed out, or noise, must not be read as this reply. 0; MBE_PROTO (flooded set) when
 * more than RS_NOISE_MAX bytes keep coming, since a stream that never pauses holds no
 * frame we could find; MBE_CLOSED / MBE_IO when the connection is gone; or the waiter's
 * code (each read is preceded by a wait that does not sleep, so a stop is heard). (A tty
 * is flushed by its owner, with tcflush.) */
static int rs_flush(struct rtustream *s)
{
	int64_t t0 = clock_mono_ms();
	uint8_t junk[512];

	s->stale = 0;
	if (!s->is_socket)
		return 0;
	for (;;) {
		int rc = fdio_wait(s->waiter, s->fd, POLLIN, clock_mono_ms());
		ssize_t n;

		if (rc != 1)
			return rc; /* 0: nothing waiting */
		n = recv(s->fd, junk, sizeof junk, MSG_DONTWAIT);
		if (n > 0) {
			s->stale += (size_t)n;
			if (s->stale > RS_NOISE_MAX) {
				rs_flooded(s, "waiting before the request", s->stale,
					   clock_mono_ms() - t0);
				return MBE_PROTO;
			}
			continue;
		}
		if (n == 0)
			return MBE_CLOSED;
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK)
			return 0;
		return rs_errno_code(errno);
	}
}

/* After a garbled reply, read until the stream has been quiet for quiet_ms, so that the
 * rest of the frame is not taken for the next reply. A stream that is not quiet after
 * RS_DRAIN_MAX_MS (beyond quiet_ms) or RS_NOISE_MAX bytes is flooded (see rs_flooded):
 * false. The waits go through the caller's waiter, so a stop ends the drain too. */
static bool rs_drain(struct rtustream *s)
{
	int64_t t0 = clock_mono_ms(), end = t0 + RS_DRAIN_MAX_MS + s->quiet_ms;
	size_t n = 0;

	for (;;) {
		uint8_t junk[512];
		int64_t now = clock_mono_ms(), until = now + s->quiet_ms;
		ssize_t k;
		int rc;

		if (now >= end || n > RS_NOISE_MAX) {
			rs_flooded(s, "after a garbled reply", n, now - t0);
			return false;
		}
		if (until > end)
			until = end;
		rc = fdio_wait(s->waiter, s->fd, POLLIN, until);
		if (rc == 0 && until < end)
			return true; /* quiet_ms of silence */
		if (rc < 0)
			return true; /* stopping: nothing more to learn */
		if (rc == 0)
			continue; /* the drain's own end: flooded, above */
		k = read(s->fd, junk, sizeof junk);
		if (k <= 0)
			return true; /* closed or failing: the next request finds out */
		n += (size_t)k;
	}
}

static int64_t rs_transfer_ms(const struct rtustream *s, size_t nbytes)
{
	return rtu_transfer_ms(s->baud, s->char_bits, nbytes);
}

static void rs_hex(char *out, size_t len, const uint8_t *p, size_t n)
{
	size_t off = 0;

	out[0] = '\0';
	for (size_t i = 0; i < n && off + 4 < len; i++)
		off += (size_t)snprintf(out + off, len - off, "%s%02X", i ? " " : "", p[i]);
}

/*
 * Read one reply frame into adu before deadline (which rest_ms moves once the reply has
 * begun), its length in *lenp: 0 or an MBE_* code, or the waiter's own.
 */
static int rs_read_frame(struct rtustream *s, uint8_t *adu, int64_t deadline, size_t expect,
			 size_t *lenp)
{
	size_t have = 0;
	int need = 0;

	for (;;) {
		/* no further than this frame: whatever follows it is stale */
		size_t want = need > 0 ? (size_t)need : 3;
		int rc = fdio_wait(s->waiter, s->fd, POLLIN, deadline);
		ssize_t k;

		if (rc == 0) {
			if (have == 0)
				rs_say(s, "no reply within %lld ms", (long long)s->timeout_ms);
			else
				rs_say(s, "the reply stopped after %zu bytes (a frame cut short: noise, "
				       "or another master on the line)", have);
			return MBE_TIMEOUT;
		}
		if (rc != 1)
			return rc;
		k = read(s->fd, adu + have, want - have);
		if (k == 0)
			return s->is_socket ? MBE_CLOSED : MBE_IO;
		if (k < 0) {
			if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
				continue;
			return rs_errno_code(errno);
		}
		if (have == 0 && s->rest_ms > 0) {
			int64_t rest = clock_mono_ms() + s->rest_ms + rs_transfer_ms(s, expect);
			if (rest > deadline)
				deadline = rest;
		}
		have += (size_t)k;
		need = rtu_reply_len(adu, have);
		if (need < 0 || need > RTU_ADU_MAX) {
			char hex[32];
			rs_hex(hex, sizeof hex, adu, have);
			rs_say(s, "the reply does not begin like a Modbus RTU frame (%s): wrong baud "
			       "or parity, or not an RTU device", hex);
			(void)rs_drain(s);
			return MBE_PROTO;
		}
		if (need > 0 && have >= (size_t)need) {
			*lenp = (size_t)need;
			return 0;
		}
	}
}

int rtustream_exchange(struct rtustream *s, uint8_t unit, const uint8_t *req, size_t reqlen,
		       uint8_t *resp, size_t *resplen)
{
	uint8_t adu[RTU_ADU_MAX];
	const uint8_t *pdu;
	size_t len, pdulen, expect, n = 0;
	uint8_t runit;
	int64_t deadline;
	int rc;

	if (s->detail != NULL && s->detaillen > 0)
		s->detail[0] = '\0';
	s->flooded = false;
	len = rtu_frame(adu, unit, req, reqlen);
	if (len == 0)
		return MBE_PROTO;
	if ((rc = rs_flush(s)) != 0)
		return rc;
	expect = rtu_reply_size(req, reqlen);
	/* a poller's deadline covers the whole reply: the request's and the reply's transfer
	 * times at the line's speed are added to the time for the reply to begin */
	deadline = clock_mono_ms() + s->timeout_ms +
		   rs_transfer_ms(s, s->rest_ms > 0 ? len : len + expect);
	if (expect == 0)
		expect = RTU_ADU_MAX;
	rc = fdio_write_all(s->waiter, s->fd, s->is_socket, adu, len, deadline);
	if (rc != 0)
		return rc;
	if (unit == 0) {
		rs_say(s, "unit 0 is broadcast on RTU: no device answers it");
		return MBE_TIMEOUT;
	}
	rc = rs_read_frame(s, adu, deadline, expect, &n);
	if (rc != 0)
		return rc;
	if (rtu_unframe(adu, n, &runit, &pdu, &pdulen) != 0) {
		/* the length was in range: the CRC is what failed */
		rs_say(s, "CRC error in the reply (computed %04X, received %04X): noise or a bad "
		       "termination on the line, a wrong baud or parity, or two devices with the "
		       "same unit id", rtu_crc16(adu, n - 2),
		       (unsigned)(adu[n - 2] | adu[n - 1] << 8));
		/* a stream that never paused was never a frame with a bad CRC */
		return rs_drain(s) ? MBE_BAD_CRC : MBE_PROTO;
	}
	if (runit != unit) {
		rs_say(s, "the reply came from unit %u, not unit %u: two devices share a unit id, "
		       "or one answers for another", runit, unit);
		return MBE_WRONG_UNIT;
	}
	if ((pdu[0] & 0x7F) != req[0]) {
		rs_say(s, "the reply answers function %u, not %u", pdu[0] & 0x7F, req[0]);
		return MBE_PROTO;
	}
	memcpy(resp, pdu, pdulen);
	*resplen = pdulen;
	return 0;
}
