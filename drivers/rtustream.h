/*
 * rtustream: one Modbus RTU exchange over a byte stream — a TCP socket to a DTU or a
 * serial server (serpoll's RTU-over-TCP lines, sluicectl probe --rtu-tcp) or a tty
 * (probe on a serial line): send the request frame, read the reply frame with deadlines
 * (RTU has no length field: the length follows from its first bytes, rtu_reply_len),
 * check its CRC, unit and function, and after a garbled reply drain the stream until it
 * has been quiet a while, as an RTU master waits out a frame it could not follow.
 *
 * A stream that never pauses (a DTU or device that talks without end, line noise on a
 * fast link) is not followed: flushing before a request and draining after a garbled
 * reply stop after a few kilobytes or half a second, the exchange fails with MBE_PROTO,
 * and `flooded` tells the caller to close the stream rather than read it again.
 *
 * It tells a CRC error, a reply from another unit and a timeout apart, because those
 * send a technician to three different places (wiring and speed, addressing, power),
 * and says which in words (detail). It never retries and never sends a frame it was not
 * asked to; the descriptor stays its caller's.
 */
#ifndef SLUICE_RTUSTREAM_H
#define SLUICE_RTUSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fdio.h"

struct rtustream {
	int fd;                          /* non-blocking */
	bool is_socket;                  /* a TCP socket; else a tty */
	const struct fdio_waiter *waiter;/* NULL: a plain poll() */
	int64_t timeout_ms;              /* for the reply to begin */
	unsigned baud;                   /* the line's speed; 0 when not known (a DTU's own
					    business): no transfer time is then added */
	unsigned char_bits;              /* rtu_char_bits of the line */
	/* Once the reply has begun, it may take this long on top of its transfer time
	 * (a person's probe: a slow line is not a dead device). 0 for a poller: the
	 * deadline for the reply to begin, with the transfer times of the request and the
	 * reply added, then holds for the whole reply. */
	int64_t rest_ms;
	int64_t quiet_ms;                /* silence that ends a garbled reply */
	char *detail;                    /* why the last exchange failed, in words ("" when
					    the code says it all); may be NULL */
	size_t detaillen;
	size_t stale;                    /* bytes dropped before the last request: a late
					    reply to an earlier one, or noise */
	bool flooded;                    /* the last exchange found the stream talking
					    without pause (detail says so): close it */
};

/*
 * Send request PDU req to unit and read its reply PDU (at most MB_PDU_MAX bytes) into
 * resp, its length in *resplen. Returns 0 (a Modbus exception reply included), or
 * MBE_TIMEOUT (no reply, one cut short, or unit 0, which is broadcast on RTU), MBE_CLOSED,
 * MBE_IO, MBE_BAD_CRC, MBE_WRONG_UNIT, MBE_PROTO (a frame no reply begins with, a reply
 * to another function, a stream that never pauses: then s->flooded), or the waiter's
 * negative code.
 */
int rtustream_exchange(struct rtustream *s, uint8_t unit, const uint8_t *req, size_t reqlen,
		       uint8_t *resp, size_t *resplen);

#endif
