/*
 * store: the one place that speaks SQL. A SQLite database in WAL mode under data_dir
 * holds the outbox — every reading, alert transition and device state, each with a
 * gateway-wide sequence number that never repeats — until the broker acknowledges it,
 * then keeps it for keep_sent as local history.
 *
 * Two kinds of rows (docs/design.md, "The store"):
 *  - a reading is kept as values: the device by number (store_devices: what its points
 *    are called and what type they are, recorded once per device and config), its time,
 *    and its values in a few bytes each (store_row_set_reading). The payload format
 *    builds the message from them when it is published, so a backlog goes out in the
 *    format configured when it drains;
 *  - an alert transition or a device state is a text row: its topic (relative to
 *    <prefix>/<gateway>/) and a body, the members of the payload object after "seq"
 *    (e.g. "ts":1700000000000,"state":"online"). Readings stored by a release before
 *    schema 3 are text rows too (topic telemetry/<device>) and go out as they are.
 *
 * Seqs are handed out before a row is stored (store_next_seq), so that a reading can be
 * published at once; what keeps them from repeating is in store.c's opening comment.
 * Delivery of readings is a high-water mark (store_delivered), with the rows the broker
 * refused set aside as its exceptions; transitions are marked one by one.
 *
 * Single-threaded: only the core thread calls it (sluicectl opens its own read-only
 * handle with store_open_ro).
 */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "reading.h"

/*
 * ROW_TELEMETRY: readings; under the size bound the oldest unsent go first.
 * ROW_ALERT: retained state transitions — alert/<rule>/<check> and device/<id>
 * online/offline — never dropped, sent before telemetry, one per topic in flight.
 */
enum row_kind { ROW_TELEMETRY = 0, ROW_ALERT = 1 };

struct store_row {
	uint64_t seq;   /* store_next_seq, or given by store_append (0: none yet) */
	int kind;       /* enum row_kind */
	int64_t ts_ms;  /* when it happened (real time) */
	/* a text row: transitions, and readings stored before schema 3 (dev 0) */
	char *topic;    /* relative topic, e.g. "alert/xinhua/level" */
	char *body;     /* payload members after seq */
	bool retain;    /* publish retained (state) */
	/* a reading: its device (store_devices) and its values (store_row_set_reading) */
	uint32_t dev;
	unsigned char *vals;
	size_t nvals;   /* bytes at vals */
};

struct store_stats {
	uint64_t rows;            /* in the outbox, sent or not */
	uint64_t unsent;          /* backlog: unsent rows, not counting those set aside */
	uint64_t aside;           /* unsent rows set aside (store_aside_put) */
	int64_t oldest_unsent_ms; /* ts of the oldest unsent row not set aside, 0 when none */
	uint64_t last_seq;        /* highest seq ever handed out */
	uint64_t dropped;         /* unsent rows dropped to respect max_size, ever */
	uint64_t lost_at_stop;    /* rows that waited in memory at a stop and could not be
				     kept (store_spill), ever, as far as a start could count */
	uint64_t skipped;         /* seqs passed over at starts that followed a crash or a
				     power cut (store.c: "Seqs"), ever */
	uint64_t db_bytes;        /* database + WAL on disk */
	char stream[24];          /* the seq space's id ("" before schema 3 on a read-only
				     handle) */
};

struct store;

/*
 * Open (creating data_dir, mode 0750, and data_dir/sluice.db when needed) and migrate
 * the schema (a database of an older release keeps its backlog: its rows go out as they
 * are). Every file the store makes in data_dir is 0640 whatever the umask; an older one
 * with more bits loses them; a data_dir others can read or enter is logged.
 *
 * Unless the last stop was clean (store_close left data_dir/sluice.clean naming the
 * file as it still is), every page is checked first; a damaged file (unreadable, cut
 * short, a malformed page) is renamed to sluice.db.damaged-<UTC time> (with its -wal),
 * logged, and replaced by a fresh database into which what can still be read is
 * carried (undelivered rows with their seqs, rows set aside, alert rows, device
 * descriptions, meta, the counters); the newest two damaged copies are kept. Seqs never
 * repeat, even then (store.c, "Seqs"). A foreign or newer database is refused, not
 * replaced.
 *
 * Then the rows the last stop kept in data_dir/sluice.spill (store_spill) are stored,
 * before anything else; when they cannot be yet (the disk still full), before the next
 * store_append or store_meta_put, which fail until they are in.
 *
 * buf NULL: the config's defaults. Takes an exclusive lock on data_dir/sluice.lock: a
 * second store_open of the same data_dir, in this process or another, fails ("... is
 * in use by another sluiced"). err receives why not.
 */
struct store *store_open(const char *data_dir, const struct buffer_cfg *buf, char *err,
			 size_t errlen);
/*
 * Read-only, for sluicectl: never creates, never writes (the writing functions fail
 * with "opened read-only"), never disturbs a running sluiced. Fails with "no database
 * at PATH: has sluiced run with this data_dir?" when there is none. Opened while no
 * sluiced has the database open, the handle reads the file as it is then (it creates
 * no -wal/-shm files): a long-running reader that follows new rows reopens.
 */
struct store *store_open_ro(const char *data_dir, char *err, size_t errlen);
/* Closing the daemon's handle of a sound database stores what delivery it knows of and
 * records a clean stop (sluice.clean), as its last write. */
void store_close(struct store *st);

/*
 * The rows a stopping daemon still holds because the store cannot write them (the
 * disk full): kept in data_dir/sluice.spill, whose space was reserved at open, and
 * stored by the next store_open before anything else, in this order, with their
 * timestamps and seqs (those without one get theirs then). key := value, as
 * store_append_meta's, goes in with them. When not all fit, alert rows are kept and the
 * oldest telemetry goes. Logs what it did; returns how many rows are lost (0: all
 * kept), which the next start adds to lost_at_stop. rows are never also in the store:
 * call it only with rows an append refused. A process killed (SIGKILL, power cut)
 * never gets here: what it held is gone.
 */
size_t store_spill(struct store *st, const struct store_row *rows, size_t n, const char *key,
		   const char *value);

/*
 * sluicectl check: read every page of data_dir's database (SQLite's quick_check)
 * read-only, creating and changing nothing; safe beside a running sluiced (it reads a
 * snapshot). 0: sound ("PATH: ok" in what). 1: damaged, what says what is wrong (a
 * line per problem, up to 20). -1: it could not be checked (no database, no access,
 * not a sluice database), what says why.
 */
int store_check_dir(const char *data_dir, char *what, size_t len);

/* Why the last call on st failed ("PATH: what: sqlite's message"), for the functions
 * that take no err buffer. */
const char *store_error(const struct store *st);

/*
 * The last failure said the file is damaged (SQLite found a malformed page). The
 * handle is no good any more: close it and store_open again, which sets the damaged
 * file aside and starts afresh (see store_open).
 */
bool store_damaged(const struct store *st);

/*
 * Close and open again, keeping the lock: for a handle whose file turned out damaged
 * while running (store_damaged). The open does what store_open does with a damaged
 * file. On failure (-1, err says why) the handle stays, but every call on it fails
 * until a store_reopen succeeds.
 */
int store_reopen(struct store *st, char *err, size_t errlen);

/* ---- devices --------------------------------------------------------------------- */

/*
 * The devices of a config, as their readings name them: ids[i] (never 0) for devs[i].
 * A device is the same number for as long as its description (store_int.h: its id,
 * name, profile, and its points' names, types, units, scales) stays the same, across
 * restarts and reloads; changed, it is a new number, and the readings stored under the
 * old one keep their own description. A description not yet in the database is written
 * now, or with the next store_append when the store cannot write now. devs must stay
 * valid until the next call (store_device hands them back). 0, or -1 (out of memory).
 */
int store_devices(struct store *st, const struct device_cfg *devs, size_t n, uint32_t *ids);

/*
 * The device number dev stands for: the caller's (store_devices) or the stored
 * description, of which only id, name, profile, sunspec and each point's name, type,
 * unit, scale, offset and writable are set. Valid until the next call on st that is
 * not store_row_reading or store_stats. NULL when there is no such device (store_error).
 */
const struct device_cfg *store_device(struct store *st, uint32_t dev);

/*
 * A reading's values as stored: row->vals from r's values (the row's dev is the
 * caller's to set), replacing any. 0, or -1 (out of memory).
 */
int store_row_set_reading(struct store_row *row, const struct reading *r);

/*
 * A stored reading back: its values (in its device's point order) and ts; device and
 * generation 0. Allocated: reading_free. NULL when the bytes are damaged or out of
 * memory.
 */
struct reading *store_row_reading(const struct store_row *row);

/* ---- the outbox ------------------------------------------------------------------ */

/*
 * The seq of the next row, handed out now, before the row is stored: it may be
 * published as soon as it has it (store.c, "Seqs", says why it never repeats). 0 when
 * none can be handed out now (sluice.seq cannot be raised: the disk full): the row then
 * gets one when it is stored, and so must every row after it — the caller asks again
 * only once the rows without one are stored.
 */
uint64_t store_next_seq(struct store *st);

/* The seq space's id: changes only when seqs start again at 1 (a new data_dir). */
const char *store_stream(const struct store *st);

/*
 * Append rows in one transaction, in array order: rows with a seq (store_next_seq, in
 * increasing order) keep it, rows without one get the next. Readings must have dev and
 * vals, text rows topic and body. With durability full the commit is synced to disk
 * before it returns. Returns 0, or -1 (nothing appended; the seqs given here are taken
 * back (set to 0), those handed out before stay; err says why, naming the row). The
 * rows' strings and bytes stay the caller's.
 */
int store_append(struct store *st, struct store_row *rows, size_t n, char *err, size_t errlen);

/* The same, and meta key := value in the same transaction (NULL key: none). */
int store_append_meta(struct store *st, struct store_row *rows, size_t n, const char *key,
		      const char *value, char *err, size_t errlen);

/*
 * Up to max unsent rows of a kind with seq > after, in seq order, leaving out the rows
 * set aside (store_fetch_aside has those). The caller passes the highest seq of that
 * kind it has in flight (0 for none), so rows in flight are not fetched again. Rows are
 * allocated: free each with store_row_clear. Returns the number of rows, or -1 (nothing
 * to free; store_error says why). Costs no SQL when the store knows it has none.
 */
long store_fetch_unsent(struct store *st, int kind, uint64_t after, size_t max,
			struct store_row *out);
void store_row_clear(struct store_row *r);

/*
 * Delivered (acknowledged by the broker): every reading with seq <= upto, but for the
 * rows set aside. The caller knows: it publishes readings in seq order and passes the
 * highest seq below which every one it published was acknowledged or set aside. Rows
 * not stored yet are covered too when they are. Kept in memory at once; written with
 * the next append or store_maintain, at most 5 s later (a crash before re-sends
 * them: at least once). upto below the current mark is ignored.
 */
void store_delivered(struct store *st, uint64_t upto);

/* Mark transitions, and rows set aside, delivered: one by one, in one transaction,
 * sent_at = now (real time); a row set aside is no longer. Seqs of readings not set
 * aside, already sent or no longer stored are ignored. Returns 0 or -1. */
int store_mark_sent(struct store *st, const uint64_t *seqs, size_t n);

/*
 * Set aside: an unsent row the broker refuses for good (too large for it, not
 * authorised for its topic, ...) would block everything behind it if it were sent again
 * and again. Set aside, it stays stored and unsent but leaves the backlog
 * (store_fetch_unsent, stats.unsent and the backlog's age skip it) and is counted in
 * stats.aside until it is delivered (store_mark_sent) or dropped by the size bound
 * (then counted in dropped, like any unsent row). Persistent across restarts, and
 * carried into a fresh database when the file is found damaged.
 */

/* Set row seq aside, saying why (reason is stored). A row handed its seq but not stored
 * yet is set aside when it is. 1 when set aside, 0 when there is no such unsent row or
 * it is aside already, -1 on error (store_error). */
int store_aside_put(struct store *st, uint64_t seq, const char *reason);

/*
 * Up to max rows set aside with seq > after, in seq order, for a retry: as
 * store_fetch_unsent, of both kinds. A state transition (ROW_ALERT) that a newer row of
 * its topic has superseded is left out: sent now, it would set the topic's retained
 * state back. It stays set aside.
 */
long store_fetch_aside(struct store *st, uint64_t after, size_t max, struct store_row *out);

/* A row set aside, for sluicectl: the row, when and why it was set aside. */
struct store_aside {
	struct store_row row;
	int64_t since_ms;  /* real time */
	char *reason;
	bool superseded;   /* a state transition with a newer one of its topic: never retried */
};

/* The first max rows set aside, in seq order. Each is allocated: store_aside_clear it.
 * Returns the number, or -1 (nothing to free; store_error says why). */
long store_aside_list(struct store *st, size_t max, struct store_aside *out);
void store_aside_clear(struct store_aside *a);

/*
 * Delete delivered rows sent before now_ms - keep_sent (now_ms: real-time ms), and
 * enforce max_size (0: no bound): delivered history first, then the oldest unsent
 * telemetry, never alert rows; every unsent row dropped is added to the persistent
 * `dropped` counter (see store_stats) and logged. Also writes what store_delivered
 * said and raises sluice.seq ahead of need. Call now and then (e.g. every 2 s); each
 * call does bounded work. Returns 0 or -1 (store_error).
 */
int store_maintain(struct store *st, int64_t now_ms);

/* Write now what the handle knows and would write later (the delivery mark, the
 * chains' heads): for a reader that must see it at once. 0 or -1 (store_error). */
int store_flush(struct store *st);

/* Unsent telemetry up to seq has been handed to the broker and awaits its ack: the size
 * bound drops only newer unsent telemetry (0: nothing in flight). */
void store_set_in_flight(struct store *st, uint64_t seq);

/* Returns 0 or -1 (store_error). Cheap on the daemon's handle (it keeps its counts);
 * a read-only handle counts the outbox, O(rows). */
int store_stats(struct store *st, struct store_stats *out);

/*
 * Recent rows of one topic, newest first: telemetry/<device> (sluicectl tail; through
 * the device's own chain of readings, a few page reads each, however many other
 * devices there are), or a transition's topic.
 */
long store_recent(struct store *st, const char *topic, size_t max, struct store_row *out);

/* Recent transitions whose topic starts with prefix (e.g. "alert/"), newest first:
 * sluicectl alerts' recent transitions. Same contract as store_recent. */
long store_recent_prefix(struct store *st, const char *prefix, size_t max, struct store_row *out);

/*
 * The newest transition of each topic that starts with prefix, in topic order — the
 * retained state of each alert check ("alert/") or device ("device/") as far as the
 * outbox still holds it (the newest of each topic is never pruned). *out is allocated:
 * store_row_clear each row, then free(*out). Returns the number of rows (*out may be
 * NULL when 0), or -1 (nothing to free; store_error says why).
 */
long store_latest(struct store *st, const char *prefix, struct store_row **out);

/*
 * Key/value state that must survive restarts (alert state, counters). get: 0 with
 * *value allocated (free it), or 0 with *value NULL when the key is absent; -1 on
 * error. put: one transaction of its own; value NULL deletes the key. 0 or -1.
 */
int store_meta_get(struct store *st, const char *key, char **value);
int store_meta_put(struct store *st, const char *key, const char *value);

#endif
