/*
 * uplink: the one place that speaks MQTT (libmosquitto). Its socket is driven from
 * the core loop — uplink_fd / uplink_want_write / uplink_io / uplink_tick — never by a
 * libmosquitto thread, because mosquitto_loop() select()s and cannot take a
 * descriptor past 1023.
 *
 * A session is one mosquitto handle: when the connection drops, the handle is
 * destroyed and a new one made on reconnect, so nothing is ever queued inside
 * libmosquitto while disconnected; the outbox in store is the only queue and the core
 * re-sends whatever was not acknowledged.
 *
 * A session ends when the broker leaves an acknowledgement overdue by ack_timeout
 * (default twice the keepalive). Reconnects back off from 1 s doubling to 60 s; the
 * backoff starts again from 1 s only once a session has stayed up for the keepalive
 * (at most 30 s), so a broker that accepts and then drops every session is not
 * reconnected to every second. Each connect begins on a thread of its own, because
 * libmosquitto looks the broker's name up inside its connect with a blocking
 * getaddrinfo: the core loop never waits for a resolver.
 *
 * Brokers: the first (uplink.host) and the fallbacks (uplink.fallback), tried in order
 * within one round when the one before cannot be reached, the rounds spaced by the
 * backoff. A session lost on any broker starts a new round from the first. While on a
 * fallback, the first is probed every uplink.fallback_check (a TCP connect from a thread
 * of its own: the session is not disturbed); when it answers, the session on the
 * fallback is ended cleanly (its status or NDEATH first) and the first broker is tried
 * at once — if it then fails, the round goes on to the fallbacks as before.
 *
 * The format (uplink.format) decides the topics, the status messages and the will
 * (sluice: status, its will "offline"; Sparkplug: NDEATH with bdSeq, no status;
 * ThingsBoard: none), and what is subscribed to on each connect: the format's command
 * topics (daemon/command.h) when uplink.commands is on, Sparkplug's NCMD and the
 * primary host's STATE. Messages that arrive are copied and handed to the caller.
 */
#ifndef SLUICE_UPLINK_H
#define SLUICE_UPLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* How a session, or an attempt at one, ended. */
enum uplink_end {
	UPLINK_END_ATTEMPT, /* a connect attempt failed: no session was up */
	UPLINK_END_BROKER,  /* the broker or the network ended a session: closed, reset,
			       a DISCONNECT */
	UPLINK_END_OURS,    /* we ended it: no answer within the keepalive, an
			       acknowledgement overdue (ack_timeout), a local failure */
};

/*
 * Events are delivered from inside uplink_io, uplink_tick and uplink_shutdown, after
 * libmosquitto has returned: a handler may call uplink_publish, never uplink_free or
 * uplink_shutdown. disconnected() comes once per lost connection and once per failed
 * connect attempt; acked() only for the caller's messages (QoS 1 and 2 when the broker
 * acknowledged them; QoS 0, which has no acknowledgement, once written to the socket —
 * what delivery means at QoS 0), refused() for its QoS 1 and 2 ones; the uplink's own
 * status messages are not reported. refused(): the broker acknowledged the message with
 * a reason code of 0x80 or more (MQTT 5: not authorised, quota exceeded, ...): it did
 * not take it.
 */
struct uplink_events {
	void *ctx;
	void (*connected)(void *ctx);
	void (*disconnected)(void *ctx, const char *why, enum uplink_end end);
	/* PUBACK (QoS 1) or PUBCOMP (QoS 2); for QoS 0, written to the socket */
	void (*acked)(void *ctx, int mid);
	void (*refused)(void *ctx, int mid, const char *why);
	/* A message on one of the subscriptions: topic and payload are copies that live until
	 * the handler returns. At most UPLINK_MSG_MAX bytes (longer ones are dropped and
	 * logged), and at most UPLINK_MSGS_MAX per loop call (the rest likewise). */
	void (*message)(void *ctx, const char *topic, const void *payload, size_t len);
	/* Sparkplug: a connect attempt begins, its will (NDEATH) carrying bdseq. The caller
	 * stores it, so that after a restart the next attempt carries the one after
	 * (uplink_set_bdseq): a host tells an old NDEATH from a new one by it. */
	void (*bdseq)(void *ctx, uint64_t bdseq);
};

#define UPLINK_MSG_MAX 65536
#define UPLINK_MSGS_MAX 64

struct uplink;

/*
 * The longest full topic, <prefix>/<gateway>/<topic>, with its NUL: uplink_publish does
 * not publish a longer one. config checks a config's topics against it at load, so a
 * prefix too long is a config error, not a daemon that never publishes.
 */
#define UPLINK_TOPIC_MAX 1024

/* Reads the password file; err says why it failed. Does not connect yet. */
struct uplink *uplink_new(const struct config *cfg, const struct uplink_events *ev, char *err,
			  size_t errlen);
void uplink_free(struct uplink *u);

/* The descriptor to poll, -1 between sessions: the session's socket, or, while a connect
 * begins on its thread, a descriptor that turns readable when it is done. It may be
 * numbered past 1023: only poll() and mosquitto_loop_read/write/misc touch it. */
int uplink_fd(struct uplink *u);
bool uplink_want_write(struct uplink *u);
/* After poll: revents of uplink_fd. Call uplink_tick in the same loop turn. */
void uplink_io(struct uplink *u, short revents);
/* Keepalive, and (re)connect with backoff when it is time. now is monotonic ms. Returns
 * the ms until it next wants to be called. */
int64_t uplink_tick(struct uplink *u, int64_t now_ms);
bool uplink_connected(struct uplink *u);

/* The seq space's id (store_stream), carried in every status message from the next. */
void uplink_set_stream(struct uplink *u, const char *stream);

/*
 * After disconnected(): make the next attempt after the shortest backoff (1 s), without
 * growing it, because the caller learns from each short session (suspect.c, finding a
 * row the broker drops sessions for). At most a few times between two sessions that
 * lasted: past that the backoff grows as for any broker that drops every session.
 */
void uplink_reconnect_soon(struct uplink *u);

/*
 * Publish to <prefix>/<gateway>/<topic>. On success (0) *mid identifies the later
 * acked() or refused(). -1 when it cannot be sent now (not connected, out of memory):
 * the caller keeps the message and sends it later. UPLINK_REFUSED when this message can
 * never be sent to this broker, now or later: larger than the broker takes (its CONNACK
 * said, MQTT 5, or uplink.max_packet_size, counting the whole packet), or not a valid
 * publish (topic, QoS or retain the broker does not support); uplink_refusal says why.
 */
#define UPLINK_REFUSED (-2)
int uplink_publish(struct uplink *u, const char *topic, const void *payload, size_t len,
		   int qos, bool retain, int *mid);
/* Why the last uplink_publish returned UPLINK_REFUSED. */
const char *uplink_refusal(const struct uplink *u);

/* Say goodbye (status offline; Sparkplug: NDEATH) and disconnect cleanly, waiting at most
 * wait_ms for what is in flight (acks that arrive meanwhile are delivered). No reconnect
 * follows; free next. */
void uplink_shutdown(struct uplink *u, int64_t wait_ms);

/* Full topic for a relative one, into buf. 0, or -1 when it does not fit. */
int uplink_topic(const struct uplink *u, const char *rel, char *buf, size_t len);

/* Sparkplug: the bdSeq the next connect attempt's will carries (0..255; at start, the one
 * after what the bdseq event last stored). */
void uplink_set_bdseq(struct uplink *u, uint64_t next);
/* Sparkplug: the bdSeq of this session's will, which its NBIRTH must repeat. */
uint64_t uplink_bdseq(const struct uplink *u);

/* The broker of this session (or of the attempt under way): 0 the first, 1.. the
 * fallbacks in their order; *hostport (may be NULL) its host:port for people. */
size_t uplink_broker(const struct uplink *u, const char **hostport);

#endif
