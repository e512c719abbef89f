/*
 * payload_sparkplug: the "sparkplug" format's messages (Sparkplug B 3.0, protobuf bytes
 * by lib/spb; docs/mqtt.md, "Sparkplug B"). The gateway is one edge node, its id
 * gateway.id, in the group uplink.sparkplug.group; each device of the config is a
 * Sparkplug device of that node, its id the device's id.
 *
 * A Sparkplug session is stateful where sluice's JSON is not: every message but NDEATH
 * carries the node's seq (0..255, one more than the message before it, NBIRTH's 0),
 * DATA messages name metrics by the alias their birth gave them, and a birth must come
 * before any data. So the builders here take what the caller keeps per session (seq,
 * bdSeq, which alert metric is which) and the time of publishing as arguments, and are
 * called when a message is published, not when a reading is stored: a backlog is built
 * in whichever format is configured when it drains. Pure: no clock, no I/O.
 *
 * Where sluice puts what (docs/mqtt.md says the same for the platform):
 *   - node metrics (NBIRTH, NDATA): bdSeq, Node Control/Rebirth, sluice/seq, sluice/version,
 *     sluice/name, health/<counter> (the health message's numbers), and per alert check
 *     alert/<rule>/<check>/{state,severity,value,threshold,message}: alerts are the
 *     gateway's decisions, and a rule may span devices (a zone's inflow and outflow), so
 *     they are node metrics, not device metrics;
 *   - device metrics (DBIRTH, DDATA): one per point, by its name, its unit as the
 *     property engUnit; and sluice/seq;
 *   - sluice/seq: the gateway-wide seq of the outbox row a message carries (a reading, a
 *     device state, an alert transition), so that a platform that dedups and counts gaps
 *     by it can, as with the sluice format. Null in messages that carry no row (a birth
 *     after a reconnect or a rebirth, health).
 */
#ifndef SLUICE_PAYLOAD_SPARKPLUG_H
#define SLUICE_PAYLOAD_SPARKPLUG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "payload.h"
#include "status.h"

/*
 * Aliases, unique across the edge node as Sparkplug 3.0 requires: node metrics below
 * 2^16 — bdSeq 1, Node Control/Rebirth 2, sluice/seq 3, sluice/version 4, sluice/name 5,
 * sluice/command 6,
 * health metrics from 16, alert metrics from 64 (8 per check: the i-th check's field f at
 * 64 + 8 i + f) — and device d's (0-based, in config order) at (d + 1) << 16: its
 * sluice/seq there, point i at ((d + 1) << 16) + 1 + i. They hold for one session: a
 * reload that changes devices or alerts needs a rebirth.
 */
#define PSP_ALIAS_BDSEQ 1
#define PSP_ALIAS_REBIRTH 2
#define PSP_ALIAS_SEQ 3
#define PSP_ALIAS_VERSION 4
#define PSP_ALIAS_NAME 5
#define PSP_ALIAS_COMMAND 6
#define PSP_ALIAS_HEALTH 16
#define PSP_ALIAS_ALERTS 64
#define PSP_ALERT_FIELDS 8
/* The most alert checks that have aliases below the devices' */
#define PSP_ALERTS_MAX ((65536 - PSP_ALIAS_ALERTS) / PSP_ALERT_FIELDS)

uint64_t payload_sparkplug_point_alias(size_t device, size_t point);
uint64_t payload_sparkplug_device_seq_alias(size_t device);
/* The device and point an alias names (the reverse of point_alias): 0, or -1 when it
 * names no point. */
int payload_sparkplug_alias_point(uint64_t alias, size_t *device, size_t *point);

/* The Sparkplug datatype a point's values have (docs/mqtt.md's table): Boolean, Int16 ..
 * UInt64 for exact integers, Float for float32 points, Double for float64 and scaled
 * integers, String. */
uint32_t payload_sparkplug_datatype(const struct point_def *p);

/* The edge node, as the builders name it. */
struct payload_sparkplug_node {
	const char *group;     /* uplink.sparkplug.group */
	const char *id;        /* the edge node id: gateway.id */
	const char *name;      /* gateway.name, may be NULL */
	const char *version;
	uint64_t bdseq;        /* this connection's (its will's) birth/death sequence, 0..255 */
};

/*
 * NBIRTH (seq is 0 after a connect; a rebirth may give another): the node's metrics with
 * their values now. h: the health numbers (NULL: their metrics are null). alerts: one per
 * alert check the node will ever publish, in the order that gives their aliases (the
 * caller keeps it for the session), each the check's latest transition, or state
 * ALERT_OK for a check that has none.
 */
int payload_sparkplug_nbirth(struct payload_msg *m, const struct payload_sparkplug_node *n,
			     const struct health *h, const struct alert_transition *alerts,
			     size_t nalerts, uint8_t seq, int64_t now_ms);

/* NDEATH: bdSeq alone, no seq and no timestamp (it is set at CONNECT, as the will). */
int payload_sparkplug_ndeath(struct payload_msg *m, const struct payload_sparkplug_node *n);

/*
 * DBIRTH of device d (index di in the config): every point with its name, alias,
 * datatype and unit, its value from values[0..nvalues) (NULL: every value null, as
 * before the first poll), taken at ts_ms; sluice/seq row_seq (0: null).
 */
int payload_sparkplug_dbirth(struct payload_msg *m, const struct payload_sparkplug_node *n,
			     const struct device_cfg *d, size_t di, const struct value *values,
			     size_t nvalues, int64_t ts_ms, uint64_t row_seq, uint8_t seq,
			     int64_t now_ms);

/*
 * DDATA of one reading: aliases only, each point's value at ts_ms (a failed point is
 * null with the property Quality 0, BAD), and sluice/seq row_seq. historical: the row
 * is from the backlog (docs/mqtt.md: is_historical on every metric).
 */
int payload_sparkplug_ddata(struct payload_msg *m, const struct payload_sparkplug_node *n,
			    const struct device_cfg *d, size_t di, const struct value *values,
			    size_t nvalues, int64_t ts_ms, bool historical, uint64_t row_seq,
			    uint8_t seq, int64_t now_ms);

/* DDEATH of device d: the node's seq, and sluice/seq row_seq (0: none). */
int payload_sparkplug_ddeath(struct payload_msg *m, const struct payload_sparkplug_node *n,
			     const struct device_cfg *d, size_t di, uint64_t row_seq, uint8_t seq,
			     int64_t now_ms);

/* NDATA of an alert transition: the index-th check's metrics, at t->ts_ms. */
int payload_sparkplug_alert(struct payload_msg *m, const struct payload_sparkplug_node *n,
			    const struct alert_transition *t, size_t index, bool historical,
			    uint64_t row_seq, uint8_t seq, int64_t now_ms);

/* NDATA of a command's event (command.h, command_event: the audit trail): the metric
 * sluice/command, a String holding the event as JSON (text: the event's members, the
 * sluice format's, without braces), at ts_ms; and sluice/seq row_seq. */
int payload_sparkplug_command(struct payload_msg *m, const struct payload_sparkplug_node *n,
			      const char *text, int64_t ts_ms, bool historical, uint64_t row_seq,
			      uint8_t seq, int64_t now_ms);

/* NDATA of the health numbers (sent live only, as the sluice format's health is). */
int payload_sparkplug_health(struct payload_msg *m, const struct payload_sparkplug_node *n,
			     const struct health *h, uint8_t seq, int64_t now_ms);

/*
 * A Sparkplug 3.0 host application's STATE message ({"online":true,"timestamp":...}, on
 * spBv1.0/STATE/<host id>): 0 with *online and *ts_ms, or -1 when it is not one.
 */
int payload_sparkplug_state(const void *payload, size_t len, bool *online, int64_t *ts_ms);

#endif
