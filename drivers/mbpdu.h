/*
 * mbpdu: Modbus PDUs (function code + data), independent of the transport, and the
 * Modbus TCP (MBAP) framing around them. Pure functions over byte buffers; shared by
 * the pollers, sluicectl probe and sluice-sim (which answers requests with them).
 *
 * Every parser checks lengths before it reads: a reply is outside input.
 */
#ifndef SLUICE_MBPDU_H
#define SLUICE_MBPDU_H

#include <stddef.h>
#include <stdint.h>

#include "codec.h"

#define MB_MAX_READ_REGS 125
#define MB_MAX_READ_BITS 2000
#define MB_MAX_WRITE_REGS 123
#define MB_MAX_WRITE_BITS 1968
#define MB_PDU_MAX 253
#define MBTCP_HDR 7 /* transaction id, protocol id, length, unit id */
#define MBTCP_ADU_MAX (MBTCP_HDR + MB_PDU_MAX)

enum {
	MB_FC_READ_COILS = 1,
	MB_FC_READ_DISCRETE = 2,
	MB_FC_READ_HOLDING = 3,
	MB_FC_READ_INPUT = 4,
	MB_FC_WRITE_COIL = 5,
	MB_FC_WRITE_REGISTER = 6,
	MB_FC_WRITE_COILS = 15,
	MB_FC_WRITE_REGISTERS = 16,
};

/* Function code that reads a table. */
uint8_t mbpdu_read_fc(enum mb_table t);

/* Build a read request PDU into buf (at least 5 bytes). Returns its length. */
size_t mbpdu_read_req(uint8_t *buf, enum mb_table t, uint16_t start, uint16_t count);

/*
 * Parse a read response PDU for a request of `count` items from table t.
 * Registers go to regs[0..count) in host order; bits go to bits[0..count) as 0/1.
 * Returns 0, MBE_EXC_BASE + code for an exception reply, or MBE_PROTO.
 */
int mbpdu_read_resp(const uint8_t *pdu, size_t len, enum mb_table t, uint16_t count,
		    uint16_t *regs, uint8_t *bits);

/* Write requests (FC 5, 6, 15, 16). Return the PDU length, 0 on bad arguments. */
size_t mbpdu_write_coil_req(uint8_t *buf, uint16_t addr, int on);
size_t mbpdu_write_reg_req(uint8_t *buf, uint16_t addr, uint16_t value);
size_t mbpdu_write_coils_req(uint8_t *buf, uint16_t addr, const uint8_t *bits, uint16_t n);
size_t mbpdu_write_regs_req(uint8_t *buf, uint16_t addr, const uint16_t *regs, uint16_t n);

/* Check a write response against the request PDU it answers: 0, MBE_EXC_BASE+code, MBE_PROTO. */
int mbpdu_write_resp(const uint8_t *req, size_t reqlen, const uint8_t *pdu, size_t len);

/*
 * MBAP framing. mbtcp_frame writes header + pdu into adu (MBTCP_ADU_MAX bytes) and
 * returns the ADU length. mbtcp_header parses the first MBTCP_HDR bytes: returns the
 * PDU length that follows (1..MB_PDU_MAX) or -1 when the header is not Modbus TCP
 * (protocol id not 0, length out of range).
 */
size_t mbtcp_frame(uint8_t *adu, uint16_t tid, uint8_t unit, const uint8_t *pdu, size_t pdulen);
int mbtcp_header(const uint8_t *hdr, uint16_t *tid, uint8_t *unit);

/*
 * Server side, for sluice-sim: answer one request PDU. The callbacks read and write
 * the served tables; they return 0 or a Modbus exception code (2 = illegal address).
 * Writes the response PDU (normal or exception) to resp and returns its length.
 */
struct mbpdu_server {
	void *ctx;
	int (*read_regs)(void *ctx, enum mb_table t, uint16_t start, uint16_t count, uint16_t *out);
	int (*read_bits)(void *ctx, enum mb_table t, uint16_t start, uint16_t count, uint8_t *out);
	int (*write_regs)(void *ctx, uint16_t start, uint16_t count, const uint16_t *in);
	int (*write_bits)(void *ctx, uint16_t start, uint16_t count, const uint8_t *in);
};
size_t mbpdu_serve(const struct mbpdu_server *srv, const uint8_t *req, size_t reqlen,
		   uint8_t *resp);

#endif
