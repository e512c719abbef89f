/*
 * mberr: why a Modbus transaction failed, as small integer codes that cross from the
 * pollers to the core and into the published `errors` of a reading.
 */
#ifndef SLUICE_MBERR_H
#define SLUICE_MBERR_H

#include <stddef.h>

enum {
	MBE_OK = 0,
	MBE_TIMEOUT = 1,     /* no reply (or no complete reply) within the timeout */
	MBE_CONNECT = 2,     /* could not connect to the device or gateway */
	MBE_CLOSED = 3,      /* the peer closed the connection */
	MBE_PROTO = 4,       /* a malformed reply: bad length, function, framing */
	MBE_IO = 5,          /* a socket or serial error */
	MBE_UNSUPPORTED = 6, /* this build cannot read the point (transport or type) */
	MBE_NOT_IMPL = 7,    /* the device marks the value not implemented (SunSpec 0x8000...) */
	MBE_BAD_CRC = 8,     /* an RTU reply whose CRC is wrong (noise, baud, termination) */
	MBE_WRONG_UNIT = 9,  /* a reply from another unit id than the one asked */
	MBE_EXC_BASE = 0x100 /* + a Modbus exception code (1 illegal function, 2 illegal
				address, 3 illegal value, 4 device failure, 6 busy, 0x0B
				gateway target did not respond, ...) */
};

/* A short, stable, human-readable text for a code ("timeout", "illegal data address").
 * Unnamed exception codes read "exception N" from a per-thread buffer, valid until the
 * same thread calls again. */
const char *mb_strerror(int code);

/* How a hint is written: as config keys ("address: 0") or as probe's option ("--read"). */
enum mb_hint_style { MB_HINT_CONFIG, MB_HINT_PROBE };

/*
 * A read of input or holding registers at address (0-based, as sent) failed with err.
 * When err is ILLEGAL DATA ADDRESS and the address lies in 30000..49999, it may be a
 * manual's register number rather than a wire address (30001 is input register 0, 40001
 * holding register 0): writes into buf a sentence saying so and naming the address (and
 * the table, when the number names the other one) to try, and returns 1. Otherwise writes
 * nothing and returns 0. A check-time warning would be wrong: Huawei's and SunSpec's real
 * wire addresses are that high; only a refusal says the number is wrong. table is an enum
 * mb_table (point.h).
 */
int mb_numbered_hint(char *buf, size_t len, int err, int table, unsigned address,
		     enum mb_hint_style style);

#endif
