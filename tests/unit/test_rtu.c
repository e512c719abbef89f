/*
 * test_rtu: the RTU framing of drivers/rtu — CRC-16/MODBUS against published vectors,
 * frames built and checked, the length rules a master and a slave frame by (with every
 * malformed start a line or a fuzzer can produce), and the character-time arithmetic
 * that serial timeouts are made of.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "mberr.h"
#include "mbpdu.h"
#include "rtu.h"

static void test_crc_vectors(void **state)
{
	(void)state;
	/* the CRC catalogue's check value for CRC-16/MODBUS */
	assert_int_equal(rtu_crc16((const uint8_t *)"123456789", 9), 0x4B37);
	/* the Modbus over serial line spec's example: 11 03 00 6B 00 03 -> CRC 76 87 */
	assert_int_equal(rtu_crc16((const uint8_t[]){ 0x11, 0x03, 0x00, 0x6B, 0x00, 0x03 }, 6),
			 0x8776);
	assert_int_equal(rtu_crc16((const uint8_t[]){ 0x01, 0x03, 0x00, 0x00, 0x00, 0x0A }, 6),
			 0xCDC5);
	/* the empty message is the initial value */
	assert_int_equal(rtu_crc16(NULL, 0), 0xFFFF);
}

static void test_frame_and_unframe(void **state)
{
	uint8_t adu[RTU_ADU_MAX], pdu[MB_PDU_MAX];
	const uint8_t *p = NULL;
	size_t plen = 0;
	uint8_t unit = 0;

	(void)state;
	size_t n = mbpdu_read_req(pdu, MB_HOLDING, 0x006B, 3);
	assert_int_equal(rtu_frame(adu, 0x11, pdu, n), 8);
	/* CRC low byte first on the wire */
	assert_memory_equal(adu, ((uint8_t[]){ 0x11, 0x03, 0x00, 0x6B, 0x00, 0x03, 0x76, 0x87 }),
			    8);
	assert_int_equal(rtu_unframe(adu, 8, &unit, &p, &plen), 0);
	assert_int_equal(unit, 0x11);
	assert_int_equal(plen, 5);
	assert_ptr_equal(p, adu + 1);
	assert_memory_equal(p, pdu, 5);

	/* the longest PDU frames to the longest ADU; one byte more does not frame */
	memset(pdu, 0x5A, sizeof pdu);
	assert_int_equal(rtu_frame(adu, 1, pdu, MB_PDU_MAX), RTU_ADU_MAX);
	assert_int_equal(rtu_unframe(adu, RTU_ADU_MAX, NULL, NULL, NULL), 0);
	assert_int_equal(rtu_frame(adu, 1, pdu, MB_PDU_MAX + 1), 0);
	assert_int_equal(rtu_frame(adu, 1, pdu, 0), 0);
	assert_int_equal(rtu_frame(adu, 1, NULL, 1), 0);
}

static void test_unframe_malformed(void **state)
{
	uint8_t adu[RTU_ADU_MAX + 8];
	uint8_t pdu[] = { 0x03, 0x02, 0x12, 0x34 };
	size_t n;

	(void)state;
	n = rtu_frame(adu, 7, pdu, sizeof pdu);
	assert_int_equal(n, 7);
	/* every single-bit error anywhere is caught */
	for (size_t i = 0; i < n; i++)
		for (int b = 0; b < 8; b++) {
			adu[i] ^= (uint8_t)(1u << b);
			assert_int_equal(rtu_unframe(adu, n, NULL, NULL, NULL), MBE_PROTO);
			adu[i] ^= (uint8_t)(1u << b);
		}
	assert_int_equal(rtu_unframe(adu, n, NULL, NULL, NULL), 0);
	/* truncated, too short to be a frame, too long, absent */
	assert_int_equal(rtu_unframe(adu, n - 1, NULL, NULL, NULL), MBE_PROTO);
	assert_int_equal(rtu_unframe(adu, 3, NULL, NULL, NULL), MBE_PROTO);
	assert_int_equal(rtu_unframe(adu, 0, NULL, NULL, NULL), MBE_PROTO);
	assert_int_equal(rtu_unframe(adu, RTU_ADU_MAX + 1, NULL, NULL, NULL), MBE_PROTO);
	assert_int_equal(rtu_unframe(NULL, 8, NULL, NULL, NULL), MBE_PROTO);
	/* a frame of just unit + function + CRC is well formed (the PDU parser judges it) */
	n = rtu_frame(adu, 1, (const uint8_t[]){ 0x03 }, 1);
	assert_int_equal(n, 4);
	assert_int_equal(rtu_unframe(adu, n, NULL, NULL, NULL), 0);
}

static void test_reply_lengths(void **state)
{
	(void)state;
	/* not enough bytes to tell */
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01 }, 0), 0);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01 }, 1), 0);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x03 }, 2), 0);
	assert_int_equal(rtu_reply_len(NULL, 5), 0);
	/* reads: unit, fc, byte count, data, CRC */
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x03, 0x06 }, 3), 11);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x04, 0xFA }, 3), 255);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x01, 0x01 }, 3), 6);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x02, 0x02 }, 3), 7);
	/* a byte count no reply can have */
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x03, 0x00 }, 3), -1);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x03, 0xFC }, 3), -1);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x03, 0xFF }, 3), -1);
	/* exceptions, whatever the function */
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x83 }, 2), 5);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0xFF }, 2), 5);
	/* writes echo 4 bytes */
	for (uint8_t fc = 5; fc <= 6; fc++)
		assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, fc }, 2), 8);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 15 }, 2), 8);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 16 }, 2), 8);
	/* functions this master never asks for */
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x00 }, 2), -1);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x07 }, 2), -1);
	assert_int_equal(rtu_reply_len((const uint8_t[]){ 0x01, 0x2B }, 2), -1);
}

static void test_request_lengths(void **state)
{
	uint8_t req[RTU_ADU_MAX], pdu[MB_PDU_MAX];
	uint16_t regs[MB_MAX_WRITE_REGS] = { 0 };

	(void)state;
	for (uint8_t fc = 1; fc <= 6; fc++)
		assert_int_equal(rtu_request_len((const uint8_t[]){ 0x01, fc }, 2), 8);
	assert_int_equal(rtu_request_len((const uint8_t[]){ 0x01 }, 1), 0);
	/* FC 16: the byte count at offset 6 decides */
	size_t n = mbpdu_write_regs_req(pdu, 10, regs, 3);
	size_t alen = rtu_frame(req, 1, pdu, n);
	for (size_t have = 2; have < 7; have++)
		assert_int_equal(rtu_request_len(req, have), 0);
	assert_int_equal(rtu_request_len(req, 7), (int)alen);
	n = mbpdu_write_regs_req(pdu, 0, regs, MB_MAX_WRITE_REGS);
	alen = rtu_frame(req, 1, pdu, n);
	assert_int_equal(alen, 255); /* 123 registers: the longest write there is */
	assert_int_equal(rtu_request_len(req, 7), 255);
	/* byte counts that cannot be */
	assert_int_equal(rtu_request_len((const uint8_t[]){ 1, 16, 0, 0, 0, 1, 0 }, 7), -1);
	assert_int_equal(rtu_request_len((const uint8_t[]){ 1, 15, 0, 0, 0, 1, 0xF8 }, 7), -1);
	/* unknown function codes, and replies mistaken for requests */
	assert_int_equal(rtu_request_len((const uint8_t[]){ 1, 0x00 }, 2), -1);
	assert_int_equal(rtu_request_len((const uint8_t[]){ 1, 0x83 }, 2), -1);
	assert_int_equal(rtu_request_len((const uint8_t[]){ 1, 0x08 }, 2), -1);
}

static void test_reply_size(void **state)
{
	uint8_t pdu[MB_PDU_MAX];
	uint16_t regs[2] = { 1, 2 };

	(void)state;
	mbpdu_read_req(pdu, MB_HOLDING, 0, 125);
	assert_int_equal(rtu_reply_size(pdu, 5), 255);
	mbpdu_read_req(pdu, MB_INPUT, 0, 1);
	assert_int_equal(rtu_reply_size(pdu, 5), 7);
	mbpdu_read_req(pdu, MB_COIL, 0, 9);
	assert_int_equal(rtu_reply_size(pdu, 5), 7);
	mbpdu_read_req(pdu, MB_DISCRETE, 0, 2000);
	assert_int_equal(rtu_reply_size(pdu, 5), 255);
	assert_int_equal(rtu_reply_size(pdu, mbpdu_write_regs_req(pdu, 0, regs, 2)), 8);
	assert_int_equal(rtu_reply_size(pdu, mbpdu_write_coil_req(pdu, 0, 1)), 8);
	assert_int_equal(rtu_reply_size(pdu, 4), 0);
	assert_int_equal(rtu_reply_size((const uint8_t[]){ 0x2B, 0, 0, 0, 0 }, 5), 0);
}

static void test_transfer_time(void **state)
{
	(void)state;
	assert_int_equal(rtu_char_bits(8, 'N', 1), 10);
	assert_int_equal(rtu_char_bits(8, 'E', 1), 11);
	assert_int_equal(rtu_char_bits(8, 'O', 2), 12);
	assert_int_equal(rtu_char_bits(7, 'E', 1), 10);
	assert_int_equal(rtu_char_bits(8, 'N', 2), 11);
	assert_int_equal(rtu_char_bits(0, 'X', 9), 10); /* nonsense reads as 8N1 */

	/* one 8N1 character at 9600 baud: 10 bits / 9600 = 1041.67 us, rounded up */
	assert_int_equal(rtu_transfer_us(9600, 10, 1), 1042);
	/* a full 125-register reply, 255 bytes: 265.6 ms at 9600 8N1, 292.2 ms at 8E1 */
	assert_int_equal(rtu_transfer_ms(9600, 10, 255), 266);
	assert_int_equal(rtu_transfer_ms(9600, 11, 255), 293);
	assert_int_equal(rtu_transfer_ms(1200, 10, 8), 67);
	assert_int_equal(rtu_transfer_ms(115200, 10, 8), 1);
	assert_int_equal(rtu_transfer_us(115200, 10, 0), 0);
	assert_int_equal(rtu_transfer_ms(0, 10, 100), 0);
	/* exact multiples are not rounded up */
	assert_int_equal(rtu_transfer_us(10000, 10, 1), 1000);
	assert_int_equal(rtu_transfer_ms(10000, 10, 1), 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc_vectors),
		cmocka_unit_test(test_frame_and_unframe),
		cmocka_unit_test(test_unframe_malformed),
		cmocka_unit_test(test_reply_lengths),
		cmocka_unit_test(test_request_lengths),
		cmocka_unit_test(test_reply_size),
		cmocka_unit_test(test_transfer_time),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
