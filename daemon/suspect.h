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
 *     in flight have gone by;
 *   - while it searches, a new session sends nothing for SUSPECT_HOLD_MS: a broker that
 *     drops every session whatever is sent (defect 5's) shows itself with nothing in
 *     flight, and is not taken for one that refuses a row. A working broker acknowledges
 *     a row within a round trip, so a row is struck only if the session ends in the
 *     moment between its publish and an acknowledgement that never comes.
 *
 * A row set aside this way teaches something about its topic: the next rows of that
 * topic as large as it or larger are set aside at once (suspect_refuses), instead of
 * each ending three more sessions: a device whose every reading is too large for the
 * broker costs a few drops, once. A row of the topic delivered at that size or larger
 * (a retry, after the broker's limit was raised) unlearns it.
 *
 * A broker restart is not mistaken for a refusal: it may end a session with rows in
 * flight, and the window narrows for a moment, but a good row is acknowledged at its
 * next sending, which clears its strikes; only a row that is never acknowledged, and is
 * alone at each of three drops in a row, is set aside.
 *
 * Pure: no I/O, no clock of its own (times are passed in), no knowledge of MQTT or the
 * store; a topic is a string to compare. Only the core thread uses it.
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
/* While searching, how long a new session waits before it sends a row. */
#define SUSPECT_HOLD_MS 1000

/* A topic with a row set aside by suspect_dropped: rows this large or larger go too. */
struct suspect_topic {
	char *topic;
	size_t bytes;         /* the smallest such row */
	uint64_t seq;         /* that row */
};

struct suspect {
	unsigned max;         /* the configured window (uplink.inflight) */
	unsigned window;      /* rows allowed in flight now, 1..max */
	unsigned narrow_left; /* acknowledgements to see before the window may widen */
	uint64_t seq;         /* the row that was alone in flight at the last drops, 0 none */
	unsigned strikes;     /* how many of those drops in a row */
	struct suspect_topic *learnt;
	size_t nlearnt;
};

/* A fresh start with window max; suspect_free what a previous one learnt first. */
void suspect_init(struct suspect *s, unsigned max);
void suspect_free(struct suspect *s);

/* How many rows may be in flight now. */
unsigned suspect_window(const struct suspect *s);

/* The broker answered for row seq (acknowledged it, or refused it with a reason). */
void suspect_answered(struct suspect *s, uint64_t seq);

/*
 * A session ended. seqs: the n rows in flight, unanswered; since_publish_ms: how long
 * ago the last of them was published; by_broker: the broker or the network ended it
 * (not our own timeout). Returns the seq of the row to set aside, or 0. *telling: the
 * drop came right after a publish (it narrowed the window or struck a row): a session
 * soon after says more.
 */
uint64_t suspect_dropped(struct suspect *s, const uint64_t *seqs, size_t n,
			 int64_t since_publish_ms, bool by_broker, bool *telling);

/* Is it looking for a culprit (the window narrowed, or a row has strikes)? */
bool suspect_searching(const struct suspect *s);

/* How long a new session sends no row: SUSPECT_HOLD_MS while searching, else 0. */
int64_t suspect_hold_ms(const struct suspect *s);

/* The row suspect_dropped named (seq, its topic and size as published) is set aside:
 * remember its topic and size. 0, or -1 out of memory (nothing learnt). */
int suspect_learn(struct suspect *s, const char *topic, size_t bytes, uint64_t seq);

/* Would a row of topic this large end the session, as one did before? Then the
 * learning row's seq (and size in *bytes), else 0. */
uint64_t suspect_refuses(const struct suspect *s, const char *topic, size_t bytes,
			 size_t *learnt_bytes);

/* A row of topic this large was delivered: forget what was learnt of the topic if it
 * said otherwise. */
void suspect_delivered(struct suspect *s, const char *topic, size_t bytes);

#endif
