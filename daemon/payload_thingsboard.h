/*
 * payload_thingsboard: the "thingsboard" format's messages, the ThingsBoard gateway API
 * (docs/mqtt.md, "ThingsBoard"). The gateway connects to ThingsBoard as its own device
 * (a gateway device, its access token as the MQTT user name) and speaks for the devices
 * of its config on v1/gateway/...; its own numbers and decisions go to the gateway
 * device's telemetry, v1/devices/me/telemetry. ThingsBoard's topics are fixed:
 * topic_prefix has no part in them, and the payload_msg topics below are whole.
 *
 * What goes where:
 *   - a reading: v1/gateway/telemetry {"<device>":[{"ts":<ms>,"values":{...}}]}, a value
 *     per point that answered (failed points are left out), and sluice_seq;
 *   - a device's state (an outbox row): v1/gateway/attributes {"<device>":{"online":...,
 *     "last_error":...,"sluice_seq":...}}; and, as the device comes and goes and for every
 *     online device after each connect, v1/gateway/connect and v1/gateway/disconnect
 *     ({"device":"<device>"}), which ThingsBoard's device activity follows;
 *   - a device's description, after it connects: v1/gateway/attributes with its name,
 *     profile and the unit of each point;
 *   - an alert transition: the gateway device's telemetry, keys
 *     alert/<rule>/<check>/{state,severity,value,threshold,message}: telemetry keeps the
 *     history (an attribute keeps only the last), and ThingsBoard's alarm rules read
 *     telemetry; the gateway's, because a rule may span devices;
 *   - health: the gateway device's telemetry, a key per number.
 * sluice_seq is the gateway-wide seq of the outbox row (docs/mqtt.md, "Sequence numbers").
 * Pure: no clock, no I/O.
 */
#ifndef SLUICE_PAYLOAD_THINGSBOARD_H
#define SLUICE_PAYLOAD_THINGSBOARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alert.h"
#include "payload.h"

#define PTB_TOPIC_TELEMETRY "v1/gateway/telemetry"
#define PTB_TOPIC_ATTRIBUTES "v1/gateway/attributes"
#define PTB_TOPIC_CONNECT "v1/gateway/connect"
#define PTB_TOPIC_DISCONNECT "v1/gateway/disconnect"
#define PTB_TOPIC_RPC "v1/gateway/rpc"
#define PTB_TOPIC_ME_TELEMETRY "v1/devices/me/telemetry"

/* {"device":"<id>"} on connect or disconnect; connect names the device's profile as
 * ThingsBoard's device type ("type"), when it has one. */
int payload_thingsboard_connect(struct payload_msg *m, const struct device_cfg *d, bool connect);

/* The device's name, profile and units, on attributes. */
int payload_thingsboard_describe(struct payload_msg *m, const struct device_cfg *d);

/* One reading: values[i] of point i, at ts_ms; row_seq its outbox seq. */
int payload_thingsboard_telemetry(struct payload_msg *m, const struct device_cfg *d,
				  const struct value *values, size_t nvalues, int64_t ts_ms,
				  uint64_t row_seq);

/* A device's state row: online or not, why its last poll failed (MBE_*, 0: none). */
int payload_thingsboard_device_state(struct payload_msg *m, const struct device_cfg *d,
				     bool online, int64_t ts_ms, int last_err, uint64_t row_seq);

/* An alert transition as the gateway device's telemetry (rule_name and failed as the
 * sluice format's alert builder takes them). */
int payload_thingsboard_alert(struct payload_msg *m, const struct alert_transition *t,
			      const char *rule_name, const struct payload_write_failure *failed,
			      uint64_t row_seq);

/* A command's event (command.h, command_event: the audit trail) as the gateway device's
 * telemetry at ts_ms: the key command, its value the event as JSON (text: the event's
 * members, the sluice format's, without braces), and sluice_seq. */
int payload_thingsboard_command(struct payload_msg *m, const char *text, int64_t ts_ms,
				uint64_t row_seq);

#endif
