/*
 * store_int: what the store's files share and nothing else sees: the handle and its
 * statements (store.c opens, migrates and recovers the file; store_outbox.c is the
 * outbox, delivery, the size bound and what sluicectl reads), the binary forms the store
 * writes (store_codec.c) and the seq space's files (store_seq.c). Private to store*.c.
 */
#ifndef SLUICE_STORE_INT_H
#define SLUICE_STORE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "config.h"
#include "reading.h"
#include "spill.h"
#include "store.h"

/* ---- store_codec.c: bytes, no SQL --------------------------------------------------- */

/*
 * A device as stored (the "schema" of its readings): what a payload format needs to
 * name and write a stored reading's values — the device's id, name and profile, and
 * each point's name, type, unit, scale, offset and writable — and nothing of how it
 * is polled (bus, address, orders), so that re-wiring a device does not make it another
 * device. Version 1, all integers varints, strings a varint length and bytes:
 *
 *   u8 1, u8 flags (1 name, 2 profile, 4 sunspec), id, [name], [profile], n points,
 *   each: name, u8 type, unit, u8 flags (1 writable, 2 scale/offset follow),
 *   [f64 scale, f64 offset little-endian]
 *
 * Encoded into *out (allocated, free it); 0 or -1 (out of memory).
 */
int store_dev_encode(const struct device_cfg *d, unsigned char **out, size_t *len);

/* The device that bytes describe, allocated (store_dev_free), or NULL when they are not
 * a description (damaged) or out of memory. Only id, name, profile, sunspec, points and
 * npoints are set; a point's bit is -1, the rest zero. */
struct device_cfg *store_dev_decode(const unsigned char *p, size_t len);
void store_dev_free(struct device_cfg *d);

/* FNV-1a, 64 bits: a device description's key (equal bytes, equal hash; the bytes are
 * compared too). */
uint64_t store_hash(const void *p, size_t len);

/* ---- store_seq.c: the seq space's files ---------------------------------------------- */

/*
 * The files beside the database that keep seqs from repeating (store.c's opening
 * comment says why each is safe):
 *   sluice.seq   "<ceiling>\n<stream>\n": every seq handed out is below the ceiling;
 *                written whole and synced, raised a block at a time. The stream names the
 *                seq space.
 *   sluice.mark  a page mapped shared: the highest seq handed out, stored before the seq
 *                is published, with the boot it was written in. Never synced while
 *                running: it survives the process (the page cache is the kernel's), not
 *                a power cut, hence the boot id.
 */
#define STORE_STREAM_LEN 16 /* hex digits */

struct store_seq {
	char *seq_path, *mark_path;
	uint64_t ceiling;            /* 0: unknown or none */
	char stream[STORE_STREAM_LEN + 1]; /* "" when the file names none */
	bool ceiling_warned;
	/* the mark: mapped, or NULL when it cannot be (then a start after a crash falls
	 * back to the ceiling) */
	volatile unsigned char *mark;
	int mark_fd;
	uint64_t marked;             /* what the mark says now */
	unsigned slot;               /* the slot written next */
};

/* At open: read sluice.seq (ceiling, stream) and the mark, map the mark for writing.
 * *found_mark: the highest seq the mark says was handed out, when it can be trusted
 * after a stop that was not clean (written in this boot); 0 otherwise. *existed: there
 * was a mark file (a run of this release handed out seqs here). Never fails: what
 * cannot be read or mapped is logged and left out. */
void store_seq_open(struct store_seq *sf, const char *seq_path, const char *mark_path,
		    uint64_t *found_mark, bool *existed);
void store_seq_close(struct store_seq *sf, bool sync);

/* The ceiling raised to above want (a block at a time, synced): 0, or -1 (logged once). */
int store_seq_raise(struct store_seq *sf, uint64_t want, uint64_t block);

/* Record that seqs up to seq are handed out (before any of them is published). */
void store_seq_mark(struct store_seq *sf, uint64_t seq);

/* A new stream id (random, hex) into sf->stream, written with the ceiling. */
void store_seq_new_stream(struct store_seq *sf);

/* Write the ceiling and the stream as they are (sync). 0 or -1. */
int store_seq_write(struct store_seq *sf);


/* ---- the handle (store.c, store_outbox.c) ---------------------------------------------- */

/* The prepared statements; their SQL is store.c's stmt_sql[]. */
enum {
	S_BEGIN_W,
	S_BEGIN_R,
	S_COMMIT,
	S_ROLLBACK,
	S_INS_READING,
	S_INS_EVENT,
	S_INS_LEGACY,
	S_INS_DEVICE,
	S_FIND_DEVICE,
	S_GET_DEVICE,
	S_DELIVERED_PUT,
	S_FETCH_EVENTS,
	S_FETCH_LEGACY,
	S_FETCH_READINGS,
	S_MARK_EVENT,
	S_MARK_LEGACY,
	S_MARK_LEGACY_UPTO,
	S_COUNT_READINGS_RANGE,
	S_COUNT_ASIDE_READINGS_RANGE,
	S_MARKS_BEFORE,
	S_PRUNE_MARKS,
	S_PRUNE_READINGS,
	S_PRUNE_EVENTS,
	S_PRUNE_LEGACY,
	S_HISTORY_READINGS,
	S_DROP_LEGACY,
	S_DROP_ASIDE_READINGS,
	S_DROP_READINGS,
	S_COUNTER_GET,
	S_COUNTER_ADD,
	S_COUNTER_SET,
	S_OLDEST_UNSENT,
	S_RECENT_EVENTS,
	S_RECENT_PREFIX,
	S_LATEST,
	S_READING_GET,
	S_EVENT_GET,
	S_LEGACY_GET,
	S_READINGS_BACK,
	S_LEGACY_RECENT,
	S_DEVICES_OF,
	S_HEAD_GET,
	S_HEAD_PUT,
	S_META_GET,
	S_META_PUT,
	S_META_DEL,
	S_PAGE_COUNT,
	S_FREELIST,
	S_CHECKPOINT,
	S_ASIDE_PUT,
	S_ASIDE_DEL,
	S_ASIDE_GONE,
	S_ASIDE_AFTER,
	S_EVENT_SUPERSEDED,
	S_NSTMT
};

/* A device of the current config (store_devices), by number. */
struct store_devcur {
	uint32_t dev;
	const struct device_cfg *d;
};

/* A description handed out but not yet in the database (written with the next append). */
struct store_devpend {
	uint32_t dev;
	uint64_t hash;
	unsigned char *blob;
	size_t len;
	char id[ID_MAX];
};

/* A stored description, decoded (store_device), least recently used first out. */
struct store_devcache {
	uint32_t dev;
	struct device_cfg *d;
	uint64_t used;
};
#define STORE_DEVCACHE 64

/* The newest reading of each device id (the chains sluicectl tail walks). */
struct store_heads {
	char **id;
	uint64_t *seq;
	bool *dirty;
	size_t n, cap;
	bool any_dirty;
};

/* A row set aside before it was stored: set aside when it is. */
struct store_pend_aside {
	uint64_t seq;
	int64_t since;
	char *reason;
};

struct store {
	sqlite3 *db;
	char *path;        /* data_dir/sluice.db */
	char *wal_path;    /* its -wal */
	char *lock_path;
	int lock_fd;       /* -1 read-only */
	bool ro;
	struct buffer_cfg buf;
	uint64_t wal_allow; /* bytes the WAL may hold before a truncating checkpoint */
	sqlite3_stmt *stmt[S_NSTMT];
	/*
	 * Counts, taken once at open and then kept up to date after each commit (only this
	 * handle writes; the lock file sees to that), so store_stats and the fetches cost no
	 * O(rows) count. A read-only handle counts instead.
	 */
	int64_t n_readings, n_events, n_legacy; /* rows */
	int64_t rd_undelivered;  /* readings above the delivered mark, and those below it
				    set aside */
	int64_t ev_unsent, leg_unsent; /* transitions, legacy rows: sent_at NULL */
	int64_t naside;           /* entries of the aside table */
	uint64_t rd_max, ev_max, leg_max; /* the highest seq of each table, 0: none */
	/*
	 * Delivery of readings: every one with seq <= hwm is delivered but for those set
	 * aside; hwm_disk is what the database says, written at most DELIVERED_WRITE_MS after
	 * hwm moved (hwm_at: mono ms of the last write).
	 */
	uint64_t hwm, hwm_disk;
	int64_t hwm_at;
	/* Seqs (store.c, "Seqs"): next_seq is the one handed out next. */
	struct store_seq seq;
	uint64_t next_seq;
	char *clean_path;
	char *seq_path, *mark_path;
	const char *check_why;
	bool opened;
	bool damaged;
	uint64_t in_flight; /* telemetry up to this seq is in flight: not dropped */
	/* devices: the current config's (sorted by dev), those not yet written, a cache of
	 * stored ones, and the next free number */
	struct store_devcur *cur;
	size_t ncur;
	struct store_devpend *pend;
	size_t npend;
	struct store_devcache cache[STORE_DEVCACHE];
	uint64_t cache_tick;
	uint32_t next_dev;
	struct store_heads heads;
	uint64_t heads_at;      /* the heads table covers readings up to this seq */
	int64_t heads_written;  /* mono ms */
	struct store_pend_aside *paside;
	size_t npaside;
	/* the spill file (spill.h) */
	char *spill_path;
	struct spill *spill;
	struct spill_content spill_in;
	bool spill_pending, spill_warned;
	uint64_t spill_taken;
	char err[512];
};

extern const char *const store_sql[S_NSTMT];

void store_setf(struct store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int store_sqlerr(struct store *st, const char *what);
void store_copyerr(const struct store *st, char *err, size_t errlen);
int store_run(struct store *st, int id, const char *what);
int store_int(struct store *st, int id, int64_t *out, const char *what);
void store_rollback(struct store *st);
int store_commit(struct store *st);
int store_usable(struct store *st);
int store_writable(struct store *st);
int store_exec(struct store *st, const char *sql, const char *what);
int64_t store_limit(size_t max);
int64_t store_i64(uint64_t v);

/* store.c: the ceiling raised ahead of need (store_maintain) */
void store_seq_ahead(struct store *st);

/* store_outbox.c, for store.c's open and close */
int store_outbox_load(struct store *st);     /* counts, delivery mark, devices, heads */
void store_outbox_free(struct store *st);
int store_outbox_flush(struct store *st);    /* delivery mark and heads, at a clean close */
void store_spill_start(struct store *st);
int store_counter_get(struct store *st, const char *name, int64_t *v);
int store_counter_add(struct store *st, const char *name, int64_t v);

#endif
