/*
 * payload: the northbound formats — how each message the gateway sends is written for
 * a platform: its topic and its bytes, from a reading, a device's state, an alert
 * transition, the gateway's status and its health. A format is a const table of
 * builders (struct payload_format), found by name: "sluice" (docs/mqtt.md, the schema
 * platforms rely on: every byte of it is stable), "sparkplug" (Sparkplug B 3.0) and
 * "thingsboard" (the ThingsBoard gateway API). A builder a format leaves NULL is a message
 * it does not have (ThingsBoard has no will) or one that its own header builds with what
 * the table's signature lacks (Sparkplug's seq 0..255 and aliases: payload_sparkplug.h,
 * payload_thingsboard.h).
 *
 * Builders are pure: no clock (every time is an argument), no I/O, no SQL, no MQTT.
 * What they build goes into the store's outbox (readings, device states, alerts: a
 * topic and a body; the format's envelope adds seq when the row is published) or
 * straight to the uplink (status, health). A new format is a new payload_<name>.c with
 * its table, declared in payload_int.h and listed in payload.c.
 */
#ifndef SLUICE_PAYLOAD_H
#define SLUICE_PAYLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "config.h"
#include "json.h"
#include "reading.h"
#include "status.h"

/* The format every gateway speaks until the config names another. */
#define PAYLOAD_FORMAT_DEFAULT "sluice"

/* Room for a relative topic: the longest is alert/<rule>/<check>. */
#define PAYLOAD_TOPIC_MAX (ID_MAX + ALERT_CHECK_MAX + 16)

/* One message as a format writes it. Builders overwrite all of it. */
struct payload_msg {
	char topic[PAYLOAD_TOPIC_MAX]; /* relative to the uplink's root (payload_format.topic) */
	bool retain;                   /* the broker keeps it for later subscribers */
	struct jbuf body;              /* an outbox row's body (what the envelope wraps), or a
					  status or health message's whole payload */
};

void payload_msg_init(struct payload_msg *m);
void payload_msg_free(struct payload_msg *m);

/* The gateway, as its status message names it. */
struct payload_gateway {
	const char *id;
	const char *name;      /* may be NULL */
	const char *version;
	const char *stream;    /* the seq space's id (store_stream); NULL: not said */
	uint64_t bdseq;        /* Sparkplug: this connection's birth/death sequence (the will's) */
};

/* A write an alert's action asked for, which failed: published with the alert again. */
struct payload_write_failure {
	const char *device;    /* the device's id */
	const char *point;     /* the point's name */
	double value;
	int err;               /* MBE_* */
};

/*
 * A format's builders. Each returns 0, or -1 when the message is incomplete (out of
 * memory): then nothing of it may be stored or sent.
 */
struct payload_format {
	const char *name;
	/* Outbox rows: one per poll of a device; the device's online/offline state
	 * (last_err: MBE_* of its last failure, 0 when none); an alert transition, with the
	 * rule's name when it has one and the failed write when that is why it is sent again. */
	int (*reading)(struct payload_msg *m, const struct device_cfg *d, const struct reading *r);
	int (*device_state)(struct payload_msg *m, const struct device_cfg *d, bool online,
			    int64_t ts_ms, int last_err);
	int (*alert)(struct payload_msg *m, const struct alert_transition *t, const char *rule_name,
		     const struct payload_write_failure *failed);
	/* A stored row's payload as published: its body with its seq, into out (reset first). */
	int (*envelope)(struct jbuf *out, uint64_t seq, const char *body);
	/* The gateway's own state: connected (online) or stopping cleanly, at ts_ms; and the
	 * will the broker publishes when the connection dies without a goodbye. */
	int (*status)(struct payload_msg *m, const struct payload_gateway *g, bool online,
		      int64_t ts_ms);
	int (*will)(struct payload_msg *m, const struct payload_gateway *g);
	int (*health)(struct payload_msg *m, const struct health *h);
	/* A relative topic's full name under prefix and gateway: 0, or -1 when it does not
	 * fit in len. prefix is the format's root: topic_prefix for sluice, the group for
	 * Sparkplug (ThingsBoard's topics are whole already). */
	int (*topic)(char *buf, size_t len, const char *prefix, const char *gateway,
		     const char *rel);
};

/* The format of that name, or NULL. */
const struct payload_format *payload_format_find(const char *name);

#endif
