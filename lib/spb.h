/*
 * spb: the Sparkplug B payload as bytes — an encoder and a decoder of the one message
 * that every Sparkplug B (3.0) MQTT payload is, org.eclipse.tahu.protobuf.Payload of the
 * published sparkplug_b.proto (proto2). Written for that fixed schema, not a general
 * protobuf library: the fields sluice writes and reads are named below, everything else
 * a peer sends (metadata, data sets, templates, extensions) is skipped as protobuf
 * skips unknown fields. docs/mqtt.md, "Sparkplug B", says what sluice puts in them.
 *
 * Pure: no I/O, no clock. The decoder trusts nothing of its input: every length is
 * checked against what is left, a varint longer than 64 bits is an error, and the
 * decoded payload is one allocation of exactly the size it needs.
 */
#ifndef SLUICE_SPB_H
#define SLUICE_SPB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* Sparkplug's DataType enum (the values that go in Metric.datatype and
 * PropertyValue.type). */
enum spb_datatype {
	SPB_UNKNOWN = 0,
	SPB_INT8 = 1,
	SPB_INT16 = 2,
	SPB_INT32 = 3,
	SPB_INT64 = 4,
	SPB_UINT8 = 5,
	SPB_UINT16 = 6,
	SPB_UINT32 = 7,
	SPB_UINT64 = 8,
	SPB_FLOAT = 9,
	SPB_DOUBLE = 10,
	SPB_BOOLEAN = 11,
	SPB_STRING = 12,
	SPB_DATETIME = 13,
	SPB_TEXT = 14,
	SPB_UUID = 15,
	SPB_DATASET = 16,
	SPB_BYTES = 17,
	SPB_FILE = 18,
	SPB_TEMPLATE = 19,
	SPB_PROPERTYSET = 20,
	SPB_PROPERTYSETLIST = 21,
};

/* Which member of a value's oneof is set. */
enum spb_value_kind {
	SPB_V_NONE = 0, /* none: a null metric, or a metric without a value */
	SPB_V_INT,      /* int_value, uint32: Int8..Int32 (two's complement), UInt8..UInt32 */
	SPB_V_LONG,     /* long_value, uint64: Int64 (two's complement), UInt64, DateTime */
	SPB_V_FLOAT,    /* float_value */
	SPB_V_DOUBLE,   /* double_value */
	SPB_V_BOOL,     /* boolean_value */
	SPB_V_STRING,   /* string_value: s[0..len), NUL-terminated when decoded */
	SPB_V_BYTES,    /* bytes_value (Metric only): s[0..len) */
	SPB_V_OTHER,    /* a data set, template, property set or extension: present, not
			   decoded (the decoder only); the encoder never writes one */
};

struct spb_value {
	uint8_t kind;   /* enum spb_value_kind */
	union {
		uint32_t i;
		uint64_t l;
		float f;
		double d;
		bool b;
	} v;
	const char *s;  /* SPB_V_STRING, SPB_V_BYTES */
	size_t len;
};

/* One key and value of a metric's PropertySet (e.g. "engUnit": "m3/h", "Quality": 0). */
struct spb_property {
	const char *key;
	bool has_type;
	uint32_t type;  /* enum spb_datatype */
	bool is_null;
	struct spb_value value; /* SPB_V_BYTES is not a property value */
};

struct spb_metric {
	const char *name;            /* NULL: not given (DATA messages carry the alias only) */
	bool has_alias;
	uint64_t alias;
	bool has_timestamp;
	uint64_t timestamp;          /* ms since the epoch, UTC */
	bool has_datatype;
	uint32_t datatype;           /* enum spb_datatype */
	bool is_historical, is_transient, is_null;
	const struct spb_property *props; /* the PropertySet, nprops pairs (none: no set) */
	size_t nprops;
	struct spb_value value;
};

struct spb_payload {
	bool has_timestamp;
	uint64_t timestamp;
	const struct spb_metric *metrics;
	size_t nmetrics;
	bool has_seq;
	uint64_t seq;
	const char *uuid;            /* NULL: not given */
	bool has_body;
	const uint8_t *body;
	size_t body_len;
};

/*
 * Append p's encoding to out: the fields in field-number order, as protobuf's own
 * serialisers write them, so the bytes are those of any conforming encoder. Optional
 * scalars are written when their has_ flag says, flags (is_historical, ...) when true,
 * strings when not NULL. 0, or -1 when out ran out of memory (out->oom) or p holds what
 * the schema cannot say (a value kind the encoder does not write, bytes in a property).
 */
int spb_encode(const struct spb_payload *p, struct jbuf *out);

/* Bytes spb_encode writes for p (the same checks: 0 when it would fail). */
size_t spb_encoded_size(const struct spb_payload *p);

/* The most metrics, and properties per metric, the decoder takes. */
#define SPB_METRICS_MAX 65536
#define SPB_PROPS_MAX 1024

/*
 * Decode len bytes. Returns the payload (every pointer in it into the one allocation;
 * free it with spb_free), or NULL with err saying what is wrong (and at which byte): a
 * truncated field, a varint past 64 bits, a group (wire types 3 and 4, which the schema
 * never uses), field number 0, a property set whose keys and values differ in number,
 * a name or key holding a NUL byte, more than SPB_METRICS_MAX metrics or SPB_PROPS_MAX
 * properties, or no memory. Fields the schema does not name are skipped; a field of a
 * known number but another wire type is skipped as protobuf does. A later occurrence of
 * a field wins, except repeated ones (metrics, properties), which accumulate.
 */
struct spb_payload *spb_decode(const void *buf, size_t len, char *err, size_t errlen);
void spb_free(struct spb_payload *p);

/* The metric called name, or the one with alias (when has_alias), or NULL. */
const struct spb_metric *spb_find(const struct spb_payload *p, const char *name,
				  bool has_alias, uint64_t alias);

#endif
