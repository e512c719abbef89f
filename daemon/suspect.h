/*
 * suspect: which outbox row a broker refuses without saying so, and how wide the
 * in-flight window may be meanwhile.
 *
 * An MQTT 3.1.1 broker has no way to refuse one message: mosquitto with max_packet_size
 * drops the connection when a PUBLISH is too large for it, and a broker whose ACL denies
 * a topic may do the same. Sent again on every new session, such a row ends every
 * session, and everything behind it waits. All the gateway sees is sessions that end
 * within moments of a publish, with rows unacknowledged. So:
 *
 *   - such a drop narrows the window to one row, and keeps it there until as many rows
 *     as were in flight have been acknowledged: the rows go one at a time past the place
 *     where the session died;
 *   - a row that was alone in flight when the session dropped right after it, SUSPECT_STRIKES
 *     times in a row, is the one: the caller sets it aside;
 *   - the window widens again, doubling with each acknowledgement, once the rows that were
 *     in flight have gone by.
 *
 * A broker restart is not mistaken for a refusal: it may end a session with rows in
 * flight, and the window narrows for a moment, but a good row is acknowledged at its
 * next sending, which clears its strikes; only a row that is never acknowledged, and is
 * alone at each of three drops in a row, is set aside.
 *
 * Pure: no I/O, no clock of its own (times are passed in), no knowledge of MQTT or the
 * store. Only the core thread uses it.
 */
#ifndef SLUICE_SUSPECT_H
#define SLUICE_SUSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Drops with a row alone in flight before it is set aside. */
#define SUSPECT_STRIKES 3
/* A drop this soon after the last publish is "right after it". The broker reads a
 * PUBLISH as it arrives; generous for a slow link or a loaded box. */
#define SUSPECT_MOMENT_MS 2000

struct suspect {
	unsigned max;         /* the configured window (uplink.inflight) */
	unsigned window;      /* rows allowed in flight now, 1..max */
	unsigned narrow_left; /* acknowledgements to see before the window may widen */
	uint64_t seq;         /* the row that was alone in flight at the last drops, 0 none */
	unsigned strikes;     /* how many of those drops in a row */
};

void suspect_init(struct suspect *s, unsigned max);

/* How many rows may be in flight now. */
unsigned suspect_window(const struct suspect *s);

/* The broker answered for row seq (acknowledged it, or refused it with a reason). */
void suspect_answered(struct suspect *s, uint64_t seq);

/*
 * A session ended. seqs: the n rows in flight, unanswered; since_publish_ms: how long
 * ago the last of them was published; by_broker: the broker or the network ended it
 * (not our own timeout). Returns the seq of the row to set aside, or 0.
 */
uint64_t suspect_dropped(struct suspect *s, const uint64_t *seqs, size_t n,
			 int64_t since_publish_ms, bool by_broker);

#endif
