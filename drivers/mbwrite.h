/*
 * mbwrite: a register write (an alert action) as it goes on the wire: the value checked
 * against its point and encoded into a function code and registers, the request PDU
 * built, and the read-modify-write of a bool that lives on one bit of a holding
 * register. Shared by the pollers (tcpoll, serpoll), which queue and send the writes.
 * Pure: no I/O, no clock, no allocation.
 */
#ifndef SLUICE_MBWRITE_H
#define SLUICE_MBWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "point.h"

/* A write as it goes on the wire. */
struct mbwrite {
	uint8_t fc;          /* MB_FC_WRITE_COIL, MB_FC_WRITE_REGISTER or MB_FC_WRITE_REGISTERS */
	bool rmw;            /* a bool on a bit of a holding register: its register is read
				first (mbwrite_pdu then says FC 3), the bit set in it
				(mbwrite_set_bit), and the register written with fc */
	bool on;             /* a bool's new state (the coil, or the bit) */
	uint16_t addr;
	uint16_t n;          /* registers of regs used */
	uint16_t regs[4];    /* the widest writable type, 64 bits */
};

/* The pollers' documented refusals differ in two places and each is held to its own
 * by its tests, so the checks take the poller's rules. */
struct mbwrite_rules {
	int readonly_errno;  /* a writable: point in an input or discrete table */
	bool value_first;    /* a value that is not finite, or a bool not 0 or 1, is ERANGE
				even on a point that cannot be written */
	bool coil_any_type;  /* a coil point not of type bool is written as a coil (0 or 1),
				not refused with EINVAL (config never makes one) */
};

/*
 * Check value against point p and encode it into out. 0, or -1 with errno: EPERM p is
 * not writable; rules->readonly_errno p is in a read-only table; EINVAL p is of a type
 * that cannot be written (string); ERANGE value does not fit p's type (a bool takes 0 or
 * 1).
 */
int mbwrite_prepare(const struct point_def *p, double value, const struct mbwrite_rules *rules,
		    struct mbwrite *out);

/* The request PDU that w sends next into pdu (MB_PDU_MAX bytes): the read of its
 * register while w->rmw, else the write. Returns its length, 0 when it cannot be built. */
size_t mbwrite_pdu(const struct mbwrite *w, uint8_t *pdu);

/* The register that w->rmw read holds reg: set or clear p's bit in it, and make w the
 * write of that one register. */
void mbwrite_set_bit(struct mbwrite *w, const struct point_def *p, uint16_t reg);

#endif
