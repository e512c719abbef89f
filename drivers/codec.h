/*
 * codec: how a point's registers become a value, and a value registers again.
 *
 * A point (lib/point.h) names a Modbus table, a 0-based wire address, a type and the
 * byte and word order the device uses; scale and offset turn the raw number into an
 * engineering value. This module is pure: no I/O, no allocation, no clock. It is
 * shared by the daemon, sluicectl and sluice-sim (which encodes what it serves).
 */
#ifndef SLUICE_CODEC_H
#define SLUICE_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "point.h"

/* Width of a point in its table: registers for input/holding, bits for coil/discrete. */
uint16_t codec_width(const struct point_def *p);

/* Registers a type needs; 0 for a string, whose width is its point's length. */
uint16_t codec_type_regs(enum pt_type t);

/* True when decoding yields an exact value (VAL_BOOL, VAL_INT, VAL_UINT): a bool, or an
 * integer type with scale 1 and offset 0. Any other scale or offset, even a whole number,
 * makes the value a VAL_DOUBLE. */
bool codec_is_exact(const struct point_def *p);

/*
 * Decode one register-table point from its registers (regs[0] is the register at
 * p->address, host order as received: high byte first on the wire). String points
 * write at most strcap-1 bytes plus NUL into strbuf and point out->s at it; the first
 * NUL ends the text and trailing spaces are trimmed (bytes are passed through as they
 * are, valid UTF-8 or not). A bool reads bit p->bit (0..15) of the register, or, without
 * a bit, is true when the register is non-zero. Returns 0, or -1 (out: VAL_NONE,
 * MBE_UNSUPPORTED) for a point that cannot be decoded from registers (a coil/discrete
 * point) or a string point given no strbuf.
 */
int codec_decode_regs(const struct point_def *p, const uint16_t *regs, struct value *out,
		      char *strbuf, size_t strcap);

/* Decode a coil or discrete input from its bit (0 or 1). */
void codec_decode_bit(const struct point_def *p, uint8_t bit, struct value *out);

/*
 * Encode an engineering value into registers, the inverse of decoding: (value - offset) /
 * scale, rounded to the type, checked against its range. Returns the number of
 * registers written, or -1 when the value does not fit the type (errno ERANGE) or the
 * point cannot be written as registers (EINVAL). A bool with a bit is not encodable
 * here: it needs a read-modify-write of its register (see codec_set_bit).
 */
int codec_encode_regs(const struct point_def *p, double value, uint16_t *regs);

/* Encode a raw integer exactly (for 64-bit values a double cannot hold): raw is the
 * number on the wire, before scale and offset, which are not applied. */
int codec_encode_int(const struct point_def *p, int64_t raw, uint16_t *regs);
/* The same for raw values above INT64_MAX (a uint64 point). */
int codec_encode_uint(const struct point_def *p, uint64_t raw, uint16_t *regs);

/* Set or clear bit p->bit in *reg (a register as read, so byte_order little applies as
 * in decoding); a bool without a bit sets the whole register to 0 or 1. */
void codec_set_bit(const struct point_def *p, bool on, uint16_t *reg);

/* Names, for config parsing and messages. Return NULL / -1 for unknown. */
const char *codec_type_name(enum pt_type t);
int codec_type_from_name(const char *s);
const char *codec_table_name(enum mb_table t);
int codec_table_from_name(const char *s);

#endif
