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

struct uplink_events {
	void *ctx;
	void (*connected)(void *ctx);
	void (*disconnected)(void *ctx, const char *why);
	void (*acked)(void *ctx, int mid);  /* PUBACK (QoS 1) or PUBCOMP (QoS 2) */
};

struct uplink;

/* Reads the password file; err says why it failed. Does not connect yet. */
struct uplink *uplink_new(const struct config *cfg, const struct uplink_events *ev, char *err,
			  size_t errlen);
void uplink_free(struct uplink *u);

/* The socket to poll, -1 while not connected. */
int uplink_fd(struct uplink *u);
bool uplink_want_write(struct uplink *u);
/* After poll: revents of uplink_fd. */
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
 * flight. */
void uplink_shutdown(struct uplink *u, int64_t wait_ms);

/* Full topic for a relative one, into buf. */
int uplink_topic(const struct uplink *u, const char *rel, char *buf, size_t len);

#endif
