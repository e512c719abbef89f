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
 */
#ifndef SLUICE_UPLINK_H
#define SLUICE_UPLINK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/*
 * Events are delivered from inside uplink_io, uplink_tick and uplink_shutdown, after
 * libmosquitto has returned: a handler may call uplink_publish, never uplink_free or
 * uplink_shutdown. disconnected() comes once per lost connection and once per failed
 * connect attempt; acked() only for the caller's QoS 1 and 2 messages (a QoS 0
 * message has no acknowledgement, and the uplink's own status messages are not
 * reported).
 */
struct uplink_events {
	void *ctx;
	void (*connected)(void *ctx);
	void (*disconnected)(void *ctx, const char *why);
	void (*acked)(void *ctx, int mid);  /* PUBACK (QoS 1) or PUBCOMP (QoS 2) */
};

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

/* The socket to poll (also while a connect is under way), -1 between sessions. It may
 * be numbered past 1023: only poll() and mosquitto_loop_read/write/misc touch it. */
int uplink_fd(struct uplink *u);
bool uplink_want_write(struct uplink *u);
/* After poll: revents of uplink_fd. Call uplink_tick in the same loop turn. */
void uplink_io(struct uplink *u, short revents);
/* Keepalive, and (re)connect with backoff when it is time. now is monotonic ms. Returns
 * the ms until it next wants to be called. */
int64_t uplink_tick(struct uplink *u, int64_t now_ms);
bool uplink_connected(struct uplink *u);

/*
 * Publish to <prefix>/<gateway>/<topic>. Fails (-1) when not connected: the caller
 * keeps the message and sends it later. On success *mid identifies the later acked().
 */
int uplink_publish(struct uplink *u, const char *topic, const void *payload, size_t len,
		   int qos, bool retain, int *mid);

/* Publish status offline and disconnect cleanly, waiting at most wait_ms for what is in
 * flight (acks that arrive meanwhile are delivered). No reconnect follows; free next. */
void uplink_shutdown(struct uplink *u, int64_t wait_ms);

/* Full topic for a relative one, into buf. 0, or -1 when it does not fit. */
int uplink_topic(const struct uplink *u, const char *rel, char *buf, size_t len);

#endif
