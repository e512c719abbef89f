/*
 * rtu: Modbus RTU framing (unit id, PDU, CRC-16 low byte first) and the timing of a
 * serial line. Pure functions over byte buffers, shared by the serial pollers (RTU over
 * TCP: libmodbus has no such backend), sluicectl probe and sluice-sim, which serves RTU
 * with them (libmodbus's RTU server answers one unit id only).
 *
 * Every parser checks lengths before it reads: frames are outside input, and fuzzed.
 */
#ifndef SLUICE_RTU_H
#define SLUICE_RTU_H

#include <stddef.h>
#include <stdint.h>

#include "mbpdu.h"

#define RTU_ADU_MIN 4                   /* unit, function, CRC */
#define RTU_ADU_MAX (1 + MB_PDU_MAX + 2) /* 256 */

/* CRC-16/MODBUS (poly 0xA001 reflected, init 0xFFFF) of p[0..n). */
uint16_t rtu_crc16(const uint8_t *p, size_t n);

/* Write unit + pdu + CRC into adu (RTU_ADU_MAX bytes). Returns the ADU length, or 0 for
 * a PDU that is empty or longer than MB_PDU_MAX. */
size_t rtu_frame(uint8_t *adu, uint8_t unit, const uint8_t *pdu, size_t pdulen);

/*
 * Check a whole frame adu[0..len): its CRC and its length. On success (0) *unit is its
 * unit id and *pdu, *pdulen point at the PDU inside adu. MBE_PROTO for a frame too short
 * or too long to be RTU, or a bad CRC. Any output pointer may be NULL.
 */
int rtu_unframe(const uint8_t *adu, size_t len, uint8_t *unit, const uint8_t **pdu,
		size_t *pdulen);

/*
 * How long is the frame that begins with buf[0..have)? A master reading a reply calls
 * rtu_reply_len, a slave reading a request rtu_request_len: RTU has no length field, so
 * the length follows from the function code (and a byte count where there is one).
 * Returns the whole frame's length (CRC included) once enough bytes are there to know
 * it, 0 when more bytes are needed to tell, or -1 when the bytes cannot begin a frame
 * of that direction (an unknown function code, a byte count that does not fit).
 */
int rtu_reply_len(const uint8_t *buf, size_t have);
int rtu_request_len(const uint8_t *buf, size_t have);

/* Length of the normal (not exception) reply ADU to a request PDU; 0 when req is not a
 * request this module can size (function codes 1-6, 15, 16). */
size_t rtu_reply_size(const uint8_t *req, size_t reqlen);

/* Bits on the wire per character: start + data + parity (when not 'N') + stop. Bad
 * arguments are taken as the usual 8N1 (10 bits). */
unsigned rtu_char_bits(unsigned data_bits, char parity, unsigned stop_bits);

/* Time to send nbytes at baud with char_bits per character, in microseconds, rounded up;
 * 0 for baud 0. */
int64_t rtu_transfer_us(unsigned baud, unsigned char_bits, size_t nbytes);
/* The same in whole milliseconds, rounded up. */
int64_t rtu_transfer_ms(unsigned baud, unsigned char_bits, size_t nbytes);

#endif
