/*
 * rtu: the bytes of a Modbus RTU frame and the time they take on a line. Owns the CRC,
 * the framing rules (where a frame ends when nothing on the wire says so) and the
 * character-time arithmetic. Pure: it must never do I/O, allocate, keep state or read a
 * byte before checking that the length covers it.
 */
#include "rtu.h"

#include <string.h>

#include "mberr.h"

/* Bitwise rather than a 512-byte table: frames are at most 256 bytes and a line
 * carries at most a few thousand per second, so speed does not matter here. */
uint16_t rtu_crc16(const uint8_t *p, size_t n)
{
	uint16_t crc = 0xFFFF;

	for (size_t i = 0; i < n; i++) {
		crc ^= p[i];
		for (int b = 0; b < 8; b++)
			crc = (crc & 1) ? (uint16_t)((crc >> 1) ^ 0xA001) : (uint16_t)(crc >> 1);
	}
	return crc;
}

size_t rtu_frame(uint8_t *adu, uint8_t unit, const uint8_t *pdu, size_t pdulen)
{
	uint16_t crc;

	if (adu == NULL || pdu == NULL || pdulen < 1 || pdulen > MB_PDU_MAX)
		return 0;
	adu[0] = unit;
	memcpy(adu + 1, pdu, pdulen);
	crc = rtu_crc16(adu, 1 + pdulen);
	/* the one little-endian field of Modbus */
	adu[1 + pdulen] = (uint8_t)crc;
	adu[2 + pdulen] = (uint8_t)(crc >> 8);
	return 3 + pdulen;
}

int rtu_unframe(const uint8_t *adu, size_t len, uint8_t *unit, const uint8_t **pdu,
		size_t *pdulen)
{
	uint16_t crc;

	if (adu == NULL || len < RTU_ADU_MIN || len > RTU_ADU_MAX)
		return MBE_PROTO;
	crc = (uint16_t)(adu[len - 2] | adu[len - 1] << 8);
	if (crc != rtu_crc16(adu, len - 2))
		return MBE_PROTO;
	if (unit != NULL)
		*unit = adu[0];
	if (pdu != NULL)
		*pdu = adu + 1;
	if (pdulen != NULL)
		*pdulen = len - 3;
	return 0;
}

int rtu_reply_len(const uint8_t *buf, size_t have)
{
	uint8_t fc;

	if (buf == NULL || have < 2)
		return 0;
	fc = buf[1];
	if (fc & 0x80)
		return 5; /* unit, fc|0x80, exception code, CRC */
	switch (fc) {
	case MB_FC_READ_COILS:
	case MB_FC_READ_DISCRETE:
	case MB_FC_READ_HOLDING:
	case MB_FC_READ_INPUT:
		if (have < 3)
			return 0;
		/* a zero byte count answers no valid request; 251 is the most a PDU holds */
		if (buf[2] == 0 || buf[2] > MB_PDU_MAX - 2)
			return -1;
		return 3 + buf[2] + 2;
	case MB_FC_WRITE_COIL:
	case MB_FC_WRITE_REGISTER:
	case MB_FC_WRITE_COILS:
	case MB_FC_WRITE_REGISTERS:
		return 8; /* unit, fc, address, value or quantity, CRC */
	default:
		return -1;
	}
}

int rtu_request_len(const uint8_t *buf, size_t have)
{
	if (buf == NULL || have < 2)
		return 0;
	switch (buf[1]) {
	case MB_FC_READ_COILS:
	case MB_FC_READ_DISCRETE:
	case MB_FC_READ_HOLDING:
	case MB_FC_READ_INPUT:
	case MB_FC_WRITE_COIL:
	case MB_FC_WRITE_REGISTER:
		return 8;
	case MB_FC_WRITE_COILS:
	case MB_FC_WRITE_REGISTERS:
		if (have < 7)
			return 0;
		if (buf[6] == 0 || buf[6] > MB_PDU_MAX - 6)
			return -1;
		return 7 + buf[6] + 2;
	default:
		return -1;
	}
}

size_t rtu_reply_size(const uint8_t *req, size_t reqlen)
{
	uint16_t count;

	if (req == NULL || reqlen < 5)
		return 0;
	count = (uint16_t)(req[3] << 8 | req[4]);
	switch (req[0]) {
	case MB_FC_READ_COILS:
	case MB_FC_READ_DISCRETE:
		return 5 + ((size_t)count + 7) / 8;
	case MB_FC_READ_HOLDING:
	case MB_FC_READ_INPUT:
		return 5 + 2 * (size_t)count;
	case MB_FC_WRITE_COIL:
	case MB_FC_WRITE_REGISTER:
	case MB_FC_WRITE_COILS:
	case MB_FC_WRITE_REGISTERS:
		return 8;
	default:
		return 0;
	}
}

unsigned rtu_char_bits(unsigned data_bits, char parity, unsigned stop_bits)
{
	if (data_bits < 5 || data_bits > 8)
		data_bits = 8;
	if (stop_bits < 1 || stop_bits > 2)
		stop_bits = 1;
	return 1 + data_bits + (parity == 'E' || parity == 'O' ? 1 : 0) + stop_bits;
}

int64_t rtu_transfer_us(unsigned baud, unsigned char_bits, size_t nbytes)
{
	uint64_t bits = (uint64_t)char_bits * nbytes * 1000000u;

	if (baud == 0)
		return 0;
	return (int64_t)((bits + baud - 1) / baud);
}

int64_t rtu_transfer_ms(unsigned baud, unsigned char_bits, size_t nbytes)
{
	return (rtu_transfer_us(baud, char_bits, nbytes) + 999) / 1000;
}
