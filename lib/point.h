/*
 * point: what a point is and what one poll of it read to, as plain types: a point's
 * table, wire address, type, byte and word order, scale, offset and unit (struct
 * point_def), and a value (struct value). No functions and no policy: the drivers'
 * codec turns registers into values (drivers/codec.h), the config fills point_defs, the
 * alert engine, the store and the payload builders read values. Every program uses it.
 */
#ifndef SLUICE_POINT_H
#define SLUICE_POINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum mb_table { MB_COIL = 0, MB_DISCRETE, MB_INPUT, MB_HOLDING };

enum pt_type {
	PT_BOOL = 0,
	PT_INT16,
	PT_UINT16,
	PT_INT32,
	PT_UINT32,
	PT_INT64,
	PT_UINT64,
	PT_FLOAT32,
	PT_FLOAT64,
	PT_STRING,
};

enum byte_order { ORDER_BIG = 0, ORDER_LITTLE = 1 };

#define POINT_NAME_MAX 64
#define POINT_UNIT_MAX 24
#define POINT_STRING_MAX_REGS 64 /* a string point is at most 128 bytes */

struct point_def {
	char name[POINT_NAME_MAX];
	enum mb_table table;
	uint16_t address;      /* 0-based, as sent on the wire */
	enum pt_type type;
	int8_t bit;            /* -1, or 0..15: a bool inside a register */
	uint16_t length;       /* registers, for PT_STRING; ignored otherwise */
	uint8_t byte_order;    /* enum byte_order: within each 16-bit register */
	uint8_t word_order;    /* enum byte_order: of the registers of a 32/64-bit value */
	double scale;          /* 1.0 when not given */
	double offset;         /* 0.0 when not given */
	char unit[POINT_UNIT_MAX];
	bool writable;
	/* the range a write from the platform may set (min:, max:, in the point's unit,
	   after scale and offset); has_: given */
	bool has_min, has_max;
	double min, max;
};

/* What one point read to in one poll. */
enum value_kind {
	VAL_NONE = 0, /* failed this poll: err says why */
	VAL_BOOL,
	VAL_INT,      /* exact signed integer (no scale/offset applied, or both neutral) */
	VAL_UINT,     /* exact unsigned integer */
	VAL_DOUBLE,   /* floats, and any integer that scale/offset turned into a real */
	VAL_STRING,
};

struct value {
	uint8_t kind;  /* enum value_kind */
	int err;       /* when kind == VAL_NONE: an MBE_* code (lib/mberr.h) */
	union {
		bool b;
		int64_t i;
		uint64_t u;
		double d;
	} v;
	const char *s; /* VAL_STRING: NUL-terminated, owned by whoever owns the value */
};

#endif
