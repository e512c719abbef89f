/*
 * mbclient: one Modbus transaction at a time, waiting for each, for a person at a
 * terminal (sluicectl probe). Modbus TCP framing from mbpdu on a plain socket, or RTU
 * framing from rtu over a TCP socket (a DTU or serial server) or a serial line, with
 * poll() and a timeout: no libmodbus, no select(), so any descriptor number works.
 * Not for the daemon: its pollers never block.
 */
#ifndef SLUICE_MBCLIENT_H
#define SLUICE_MBCLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

struct mbclient;

/*
 * Split "HOST:PORT", "[v6addr]:PORT" or a bare host (port 502) into host and port.
 * Returns 0, or -1 when it is not of that form (an IPv6 address needs brackets when a
 * port follows).
 */
int mbclient_parse_addr(const char *s, char *host, size_t hostlen, uint16_t *port);

/*
 * Connect to a Modbus TCP device or gateway, waiting at most timeout_ms (which also
 * bounds each later transaction). NULL with a message in err when it cannot.
 */
struct mbclient *mbclient_open_tcp(const char *host, uint16_t port, int timeout_ms, char *err,
				   size_t errlen);

/*
 * The same with Modbus RTU frames (unit id, PDU, CRC) on the TCP connection, as a 4G DTU
 * or a serial device server carries them. timeout_ms is the time for a reply to begin.
 */
struct mbclient *mbclient_open_rtu_tcp(const char *host, uint16_t port, int timeout_ms,
				       char *err, size_t errlen);

/*
 * Modbus RTU on serial device path (a USB RS-485 adapter, /dev/ttyS1, a pseudo-terminal),
 * raw 8N1-style at baud with parity 'N', 'E' or 'O', data_bits 7 or 8, stop_bits 1 or 2.
 * timeout_ms is the time for a reply to begin; the transfer time of the reply at baud is
 * added. NULL with a message in err for a device that cannot be opened or a speed or
 * framing the line cannot take.
 */
struct mbclient *mbclient_open_rtu(const char *path, unsigned baud, char parity,
				   unsigned data_bits, unsigned stop_bits, int timeout_ms,
				   char *err, size_t errlen);

void mbclient_close(struct mbclient *c);

/*
 * Why the last transaction failed, in words for the person at the terminal ("CRC error
 * in the reply: ...", "the reply came from unit 3, not unit 1"); "" after a success or
 * when the MBE_* code says it all. Valid until the next call on c.
 */
const char *mbclient_detail(const struct mbclient *c);

/*
 * Send request PDU req to unit and wait for its reply PDU (at most MB_PDU_MAX bytes
 * into resp, length in *resplen). Returns 0 or an MBE_* code: MBE_TIMEOUT, MBE_CLOSED,
 * MBE_IO, MBE_PROTO (a reply for another transaction or unit, a bad CRC), MBE_CONNECT. After any
 * of them the connection is closed and the next call connects again: the stream can
 * no longer be trusted. A Modbus exception is a reply like any other here.
 */
int mbclient_transact(struct mbclient *c, uint8_t unit, const uint8_t *req, size_t reqlen,
		      uint8_t *resp, size_t *resplen);

/* Read count registers (regs) or bits (bits, 0/1 each) of table t: 0, an MBE_* code,
 * or MBE_EXC_BASE + the device's exception code. */
int mbclient_read(struct mbclient *c, uint8_t unit, enum mb_table t, uint16_t start,
		  uint16_t count, uint16_t *regs, uint8_t *bits);

#endif
