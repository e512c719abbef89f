/*
 * command: what the platform sends the gateway, as a pure module. A message that
 * arrived on one of the gateway's subscriptions is read in the configured format and
 * checked against the config and the devices' state: out comes a write request (one
 * point, or several in one Sparkplug DCMD, all valid or none), a Sparkplug rebirth
 * request, a host application's STATE, or a refusal with its reason — and, for the
 * formats that answer, the reply in the command's own format.
 *
 *   sluice       <prefix>/<gw>/command/write  {"id":"…","device":"…","point":"…","value":…}
 *                (an optional "ts", ms: its age is checked); answered on
 *                <prefix>/<gw>/command/reply  {"id":"…","device":"…","point":"…","ok":true}
 *                or {... "ok":false,"error":"…"}
 *   sparkplug    spBv1.0/<group>/DCMD/<gw>/<device>: each metric a write of the point it
 *                names (by name or alias), its age by the payload's timestamp; no reply
 *                (the host sees the written value in the next DDATA); NCMD
 *                Node Control/Rebirth = true: a rebirth (honoured without commands: true)
 *   thingsboard  v1/gateway/rpc {"device":"d","data":{"id":7,"method":"write",
 *                "params":{"point":"p","value":5}}}, answered on the same topic with
 *                {"device":"d","id":7,"data":{"success":true}} or
 *                {"device":"d","id":7,"data":{"success":false,"error":"…"}}
 *
 * A write is refused, and nothing written, when commands are off (uplink.commands), the
 * message is malformed, it is older than uplink.command_max_age (or as much in the
 * future), the device or point is unknown, the point is not writable (or a string),
 * the value is not of the point's type, does not fit it or lies outside its min:/max:,
 * or the device is offline. Who may send commands at all is the broker's ACL
 * (docs/operations.md).
 *
 * A command seen recently — the same id (sluice; device and id for ThingsBoard), the
 * same bytes on the same topic (Sparkplug, which has no id) — is a redelivery (QoS 1) or
 * a retry: it is answered again with the first answer and never carried out twice. The
 * memory of it is bounded: the last COMMAND_SEEN_MAX commands, for COMMAND_SEEN_MS.
 *
 * Pure: no clock (now is an argument), no I/O, no MQTT; the device's state comes from
 * the caller.
 */
#ifndef SLUICE_COMMAND_H
#define SLUICE_COMMAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "payload.h"

#define COMMAND_ID_MAX 64
#define COMMAND_REASON_MAX 200
#define COMMAND_WRITES_MAX 16    /* metrics of one DCMD */
/* A message on a command topic longer than this is refused unread. */
#define COMMAND_PAYLOAD_MAX 65536
/* The longest topic filter, with its NUL (uplink.h's UPLINK_TOPIC_MAX). */
#define COMMAND_TOPIC_MAX 1024

enum command_what {
	COMMAND_NONE = 0,  /* not on a topic of ours (ignore it) */
	COMMAND_WRITE,     /* writes[0..nwrites) to carry out */
	COMMAND_REBIRTH,   /* Sparkplug: publish NBIRTH and every DBIRTH again */
	COMMAND_HOST,      /* Sparkplug: the primary host's STATE (host_online, host_ts_ms) */
	COMMAND_REFUSED,   /* reason says why; nothing is written */
};

struct command_write {
	size_t device, point;  /* indexes into the config */
	double value;          /* in the point's unit, after scale and offset */
};

struct command {
	int what;                     /* enum command_what */
	int format;                   /* enum uplink_format */
	char id[COMMAND_ID_MAX];      /* as given: text, or a number's digits; "" none */
	bool id_is_number;            /* the reply writes it as a number */
	char device[ID_MAX];          /* as named, for the reply ("" none) */
	char point[POINT_NAME_MAX];
	struct command_write writes[COMMAND_WRITES_MAX];
	size_t nwrites;
	bool host_online;
	int64_t host_ts_ms;
	int64_t ts_ms;                /* the command's own time, -1 when it has none */
	uint64_t key;                 /* who it is for deduplication; 0: not deduplicated */
	char reason[COMMAND_REASON_MAX];
};

/* What command_parse needs besides the message. */
struct command_env {
	const struct config *cfg;
	/* Is device (an index into cfg->devices) online now? false also before its state is
	 * known. */
	bool (*online)(void *ctx, size_t device);
	void *ctx;
	int64_t now_ms;               /* real time */
};

/*
 * Read the message on full topic topic (payload[0..len)) into *out (overwritten) and
 * return out->what. Only checks and copies: nothing is carried out, nothing remembered.
 */
int command_parse(const struct command_env *env, const char *topic, const void *payload,
		  size_t len, struct command *out);

/*
 * The topic filters to subscribe to for cfg (full topics): the format's command topics
 * when uplink.commands is on, Sparkplug's NCMD always (a host's Rebirth), and the
 * primary host's STATE when one is named. Writes at most max of them into topics;
 * returns how many there are (at most 3), or -1 when one does not fit.
 */
int command_subscriptions(const struct config *cfg, char (*topics)[COMMAND_TOPIC_MAX],
			  size_t max);

/*
 * The reply to c in its format (outcome: ok, or error why not), relative to the uplink's
 * root like every payload_msg topic: 0; 1 when the format does not answer (Sparkplug, or
 * a command too malformed to say whom to answer); -1 out of memory.
 */
int command_reply(struct payload_msg *m, const struct command *c, bool ok, const char *error);

/*
 * The audit trail: c and its outcome as an outbox event (a transition row: it gets a seq
 * and is stored before it is published), its topic "command/event" and its text the
 * sluice format's members after seq —
 *   "ts":<ms>,"format":"thingsboard","id":"7","device":"d","writes":[{"point":"p",
 *   "value":5}],"ok":false,"error":"…"
 * (writes: what was asked, [] for a command refused before its points were known; id and
 * device null when it had none). Written once the outcome is known: a refusal at once,
 * a write when the poller has answered. 0, or -1 out of memory.
 */
int command_event(struct payload_msg *m, const struct command *c, const struct config *cfg,
		  bool ok, const char *error, int64_t ts_ms);

/* ---- deduplication ----------------------------------------------------------------- */

#define COMMAND_SEEN_MAX 256
#define COMMAND_SEEN_MS (10 * 60 * 1000)

enum command_seen_state { COMMAND_SEEN_PENDING = 1, COMMAND_SEEN_OK, COMMAND_SEEN_FAILED };

struct command_seen {
	uint64_t key;
	int64_t at_ms;
	int state;                     /* enum command_seen_state */
	char error[COMMAND_REASON_MAX];
};

struct command_dedup {
	struct command_seen seen[COMMAND_SEEN_MAX];
	size_t next;                   /* the slot the next new command takes (the oldest) */
};

void command_dedup_init(struct command_dedup *d);
/*
 * c seen within COMMAND_SEEN_MS before now: its entry (the first answer; PENDING while
 * its write is under way, when nothing is to be answered yet). NULL when it is new: then
 * it is remembered — a refusal as answered, a write as pending until command_dedup_done.
 * A command without a key is never remembered (NULL).
 */
const struct command_seen *command_dedup(struct command_dedup *d, const struct command *c,
					 int64_t now_ms);
/* The write of the command with key is done: ok, or error why not. */
void command_dedup_done(struct command_dedup *d, uint64_t key, bool ok, const char *error);

#endif
