/*
 * store: owns the sqlite3 handle, every SQL string, the schema and its migrations, the
 * on-disk bound of data_dir/sluice.db and the files beside it. It is the outbox between
 * the alert engine and the uplink, the local history, and the place where state that
 * must survive a restart (meta, counters) lives. This file opens, migrates, checks and
 * recovers the database; store_outbox.c is what goes in and out of it; store_codec.c
 * the bytes of a stored reading; store_seq.c the seq space's files.
 *
 * It must never speak MQTT or JSON (a body is opaque text, a reading's values are
 * bytes of its own format), call exit(), or hold the core loop for long: writes are
 * batched, deletions are chunked, busy waits bounded.
 *
 * Durability (each pragma and transaction below says its part):
 *  - WAL mode: a commit is an append to data_dir/sluice.db-wal. Once COMMIT returns,
 *    the rows are in the kernel's page cache, so a crash of the process loses nothing
 *    committed, whatever the durability.
 *  - durability: normal is synchronous=NORMAL, which syncs only at checkpoints: a power
 *    cut may roll back the last commits (those since the WAL was last synced), never
 *    corrupt the file.
 *  - durability: full is synchronous=FULL, which syncs the WAL at every commit: what
 *    store_append returned 0 for survives a power cut.
 *  - Every multi-row change is one transaction: a batch is all in or all out, and a
 *    counter (dropped, lost_at_stop, skipped) changes with the rows it counts.
 *
 * "Stored" means exactly this: the append that wrote the row returned 0. A stored row
 * is never lost by a crash (normal or full) nor, with full, by a power cut; until then
 * it is in the daemon's memory, like a reading in the queue, and a crash takes it.
 *
 * Seqs. A row's seq is handed out (store_next_seq) before the row is stored, so that a
 * reading is published the moment it is taken, not after the next commit: the commit
 * costs a page write and is made once a second, the publish is made at once. A seq
 * must still never repeat — not after a crash before its row was stored (it may have
 * reached the platform), not after a power cut, not when the database is lost — or a
 * platform that drops duplicates by (gateway, seq) would drop a new reading. Three
 * records, each good against what it is for:
 *  1. the database: the seqs of its rows, the delivery mark, counters.last_seq: exact
 *     for what is stored, and as durable as the durability says;
 *  2. data_dir/sluice.mark, a page mapped shared: the highest seq handed out, stored to
 *     (a memory write, no syscall) before a seq above it is handed out. The page cache
 *     outlives the process, so after a crash it is exact; after a power cut it may be
 *     older than what was handed out, so it is believed only in the boot it was written
 *     in (the kernel's boot id, written with it);
 *  3. data_dir/sluice.seq: a ceiling above every seq handed out, written whole and
 *     synced before a seq under it is handed out, a block of STORE_SEQ_BLOCK at a time
 *     (raised ahead of need by store_maintain, so a synced write lands in the hot path
 *     only after a burst). It survives a power cut and a lost database.
 * A start after a clean stop goes on after the highest of the database and
 * sluice.clean (which records the highest seq handed out, rows lost at the stop
 * included); after a crash in the same boot, after the mark; otherwise (a power cut,
 * a reboot, a damaged database whose last seq cannot be read, a mark that cannot be
 * mapped) at the ceiling. The seqs between the last stored row and the first of the new
 * run are skipped: counted (stats.skipped, persistent), logged as a range. Among them
 * are readings that were published before they were stored — delivered, or lost with
 * the process — and seqs never used; docs/mqtt.md tells the platform how to read them.
 * A data directory whose seqs start again at 1 (none of the three records survives)
 * gets a new stream id, which the platform sees in every status message.
 *
 * Delivery. A reading is delivered when its seq is at or below the delivery mark (the
 * newest row of the delivered table) and it is not set aside; the mark moves on in
 * memory as the broker acknowledges, and is written with the next commit or
 * maintenance at most DELIVERED_WRITE_MS later: a crash before that only sends those
 * readings again (at least once). Transitions are few: each has its sent_at.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "fileio.h"
#include "log.h"
#include "store_int.h"

#define STORE_DB_NAME    "sluice.db"
#define STORE_LOCK_NAME  "sluice.lock"
#define STORE_SEQ_NAME   "sluice.seq"
#define STORE_MARK_NAME  "sluice.mark"
#define STORE_CLEAN_NAME "sluice.clean"
#define STORE_SPILL_NAME "sluice.spill"
/*
 * Every file of data_dir is created 0640 whatever the umask (the outbox is not for
 * every local user; the group is sluicectl's), and the directory 0750. SQLite creates
 * the -wal and -shm with the database file's own mode, so the database is created (or
 * brought down to) 0640 before SQLite opens it.
 */
#define STORE_FILE_MODE  0640
#define STORE_DIR_MODE   0750
/* Damaged databases set aside and kept (sluice.db.damaged-*): the newest this many. */
#define STORE_KEEP_DAMAGED 2
/* Tells our file from any other SQLite file: 0x736c7563, "sluc". */
#define STORE_APP_ID     1936487779
#define STORE_STR_(x)    #x
#define STORE_STR(x)     STORE_STR_(x)
#define STORE_PAGE_SIZE  4096       /* the file system block, and the write unit of most SD/eMMC */
/*
 * The seq ceiling (sluice.seq) is raised this many seqs at a time, half a block ahead
 * of need: one small synced write per block (a few file system blocks), about every
 * 16 s at 1,000 rows a second, every 3 s at 5,000 — well under a byte per value. A
 * start that cannot trust the mark (after a power cut) goes on at the ceiling, so a
 * block and a half is also the most seqs such a start skips.
 */
#define STORE_SEQ_BLOCK  ((uint64_t)1 << 14)

/*
 * The daemon's busy wait. In WAL mode readers never block the writer, and the lock file
 * keeps a second writer out, so the only waits left are a truncating checkpoint waiting
 * for a sluicectl read to finish and the one-off WAL recovery a reader may run at its
 * open. Short, so a stuck reader delays the core loop by at most this, never fails it.
 */
#define STORE_BUSY_RW_MS 1000
/* sluicectl may wait longer: it has nothing else to do. */
#define STORE_BUSY_RO_MS 5000

/*
 * The WAL allowance: what the -wal file may grow to before a checkpoint resets it. It
 * is carved out of max_size (see store_enforce_size). 4 MiB is SQLite's own default of
 * 1000 pages; for small bounds it is an eighth of the bound, never under 16 pages.
 * Every page the WAL holds is written twice (the WAL, then the database at the
 * checkpoint), but a page changed by many commits only once to the database: the
 * newest rows' page, the delivery mark's.
 */
#define STORE_WAL_MAX ((uint64_t)4 << 20)
#define STORE_WAL_MIN ((uint64_t)16 * STORE_PAGE_SIZE)

/* Defaults when store_open is given no buffer_cfg (the config's own defaults). */
#define STORE_DEF_MAX_SIZE  ((uint64_t)256 << 20)
#define STORE_DEF_KEEP_SENT ((int64_t)7 * 24 * 3600 * 1000)

/*
 * Schema history: migrations[i] takes user_version i to i + 1. Each runs in one
 * transaction together with the user_version bump, so a crash or power cut mid-way
 * leaves the previous version intact and the next open simply runs it again. Append
 * new steps; never edit a released one.
 */
static const char *const migrations[] = {
	/* 0 -> 1 */
	/*
	 * seq is AUTOINCREMENT, not a plain rowid: a rowid is max(rowid)+1 and would hand
	 * out a seq again once the rows with the highest seqs were pruned; AUTOINCREMENT
	 * keeps the high-water mark in sqlite_sequence, so a seq never repeats.
	 * sent_at is NULL until the broker acknowledged the row (real-time ms).
	 */
	"CREATE TABLE outbox ("
	" seq INTEGER PRIMARY KEY AUTOINCREMENT,"
	" kind INTEGER NOT NULL CHECK (kind IN (0, 1)),"
	" ts INTEGER NOT NULL,"
	" topic TEXT NOT NULL,"
	" body TEXT NOT NULL,"
	" retain INTEGER NOT NULL DEFAULT 0,"
	" sent_at INTEGER);"
	/* The backlog, by kind in seq order: the uplink's fetch and the drop of the oldest
	 * telemetry. Partial, so it holds only the backlog, usually tiny. */
	"CREATE INDEX outbox_unsent ON outbox (kind, seq) WHERE sent_at IS NULL;"
	/* Delivered history by age: keep_sent pruning and the first thing dropped when
	 * full, without scanning the backlog. */
	"CREATE INDEX outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;"
	/* sluicectl tail: the newest rows of one topic. */
	"CREATE INDEX outbox_topic ON outbox (topic, seq);"
	"CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID;"
	"CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
	"INSERT INTO counters (name, value) VALUES ('dropped', 0);"
	"PRAGMA application_id = " STORE_STR(STORE_APP_ID) ";",
	/* 1 -> 2 */
	/*
	 * Rows set aside (store_aside_put): unsent rows the broker refused for good. A
	 * table beside the outbox, not a column of it: a refusal is an exception, a handful
	 * of rows, found without touching the outbox's indexes, and the outbox's hot
	 * statements only ask whether it is empty. since: real-time ms.
	 */
	"CREATE TABLE aside ("
	" seq INTEGER PRIMARY KEY,"
	" since INTEGER NOT NULL,"
	" reason TEXT NOT NULL);",
	/* 2 -> 3 */
	/*
	 * A reading written once, compactly. Before, a reading was a row of topic and JSON
	 * text (300 bytes for ten values), in an index by topic that doubled what each
	 * commit wrote, and marked delivered by an UPDATE that wrote its page again: four
	 * writes of about a page per reading. Now:
	 *
	 *  - readings: seq as the rowid (appended at the right edge of one b-tree: a commit
	 *    writes the pages its rows fill and no other), the device by number, the time,
	 *    prev (how far back the same device's previous reading is: the chain sluicectl
	 *    tail and a history plot walk, instead of an index that every commit would
	 *    write all over), and the values (store_codec.c: 46 bytes for ten float32).
	 *    No sent_at: delivery is the delivered table's mark.
	 *  - devices: what a device's readings need to be written out by any payload
	 *    format — id, name, points' names, types, units — once per device and config
	 *    (store_devices), so a reading stored under an older config still says what it
	 *    is after points are added, removed or renamed.
	 *  - delivered: the delivery mark, appended as it moves (at, upto), so that pruning
	 *    history by keep_sent deletes a range of seqs. Rows set aside are the mark's
	 *    exceptions, in aside as before.
	 *  - heads: the newest reading of each device id, written now and then, where the
	 *    chains start.
	 *  - events: transitions (alert/, device/) as text rows, as before: few, each marked
	 *    sent; their index by topic costs nothing on the readings' path.
	 *  - legacy: the outbox as it was, renamed, keeping its readings of the older
	 *    release: delivered as they are (their text), pruned by their sent_at, read by
	 *    sluicectl tail through their topic index. Nothing new is written to it.
	 *
	 * Seqs are the store's own from here (counters.last_seq, store.c "Seqs"), no longer
	 * AUTOINCREMENT's: rows are written with the seq they were handed. The mark starts
	 * just below the oldest unsent legacy reading, so that acknowledging them moves it.
	 */
	"ALTER TABLE outbox RENAME TO legacy;"
	"CREATE TABLE events ("
	" seq INTEGER PRIMARY KEY,"
	" ts INTEGER NOT NULL,"
	" topic TEXT NOT NULL,"
	" body TEXT NOT NULL,"
	" retain INTEGER NOT NULL DEFAULT 1,"
	" sent_at INTEGER);"
	"INSERT INTO events (seq, ts, topic, body, retain, sent_at)"
	" SELECT seq, ts, topic, body, retain, sent_at FROM legacy WHERE kind = 1;"
	"DELETE FROM legacy WHERE kind = 1;"
	"CREATE INDEX events_unsent ON events (seq) WHERE sent_at IS NULL;"
	"CREATE INDEX events_sent ON events (sent_at) WHERE sent_at IS NOT NULL;"
	"CREATE INDEX events_topic ON events (topic, seq);"
	"CREATE TABLE devices ("
	" dev INTEGER PRIMARY KEY,"
	" device TEXT NOT NULL,"
	" hash INTEGER NOT NULL,"
	" since INTEGER NOT NULL,"
	" schema BLOB NOT NULL);"
	"CREATE INDEX devices_hash ON devices (hash);"
	"CREATE INDEX devices_device ON devices (device);"
	"CREATE TABLE readings ("
	" seq INTEGER PRIMARY KEY,"
	" dev INTEGER NOT NULL,"
	" ts INTEGER NOT NULL,"
	" prev INTEGER NOT NULL,"
	" vals BLOB NOT NULL);"
	"CREATE TABLE delivered (at INTEGER NOT NULL, upto INTEGER NOT NULL);"
	"CREATE TABLE heads (device TEXT PRIMARY KEY, seq INTEGER NOT NULL) WITHOUT ROWID;"
	"INSERT INTO counters (name, value) SELECT 'last_seq',"
	" coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'legacy'), 0);"
	"INSERT INTO delivered (at, upto) SELECT CAST(strftime('%s', 'now') AS INTEGER) * 1000,"
	" coalesce((SELECT min(seq) - 1 FROM legacy WHERE kind = 0 AND sent_at IS NULL),"
	" (SELECT value FROM counters WHERE name = 'last_seq'));",
};
#define STORE_SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

#define EV_COLS "seq, ts, topic, body, retain"
/* a row that is not set aside (the aside table is a handful of rows, usually none) */
#define NOT_ASIDE "seq NOT IN (SELECT seq FROM aside)"

const char *const store_sql[S_NSTMT] = {
	/*
	 * IMMEDIATE takes the write lock at BEGIN: if it cannot be had, we learn it before
	 * touching a row, instead of failing to upgrade a read lock half-way.
	 */
	[S_BEGIN_W] = "BEGIN IMMEDIATE",
	[S_BEGIN_R] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_INS_READING] = "INSERT INTO readings (seq, dev, ts, prev, vals) VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_INS_EVENT] = "INSERT INTO events (seq, ts, topic, body, retain) VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_INS_LEGACY] = "INSERT INTO legacy (seq, kind, ts, topic, body, retain)"
			 " VALUES (?1, 0, ?2, ?3, ?4, ?5)",
	[S_INS_DEVICE] = "INSERT INTO devices (dev, device, hash, since, schema)"
			 " VALUES (?1, ?2, ?3, ?4, ?5)",
	[S_FIND_DEVICE] = "SELECT dev, schema FROM devices WHERE hash = ?1",
	[S_GET_DEVICE] = "SELECT schema FROM devices WHERE dev = ?1",
	[S_DELIVERED_PUT] = "INSERT INTO delivered (at, upto) VALUES (?1, ?2)",
	/* not the rows set aside: they wait for a retry (store_fetch_aside) */
	[S_FETCH_EVENTS] = "SELECT " EV_COLS " FROM events WHERE sent_at IS NULL AND seq > ?1"
			   " AND " NOT_ASIDE " ORDER BY seq LIMIT ?2",
	[S_FETCH_LEGACY] = "SELECT " EV_COLS " FROM legacy WHERE kind = 0 AND sent_at IS NULL"
			   " AND seq > ?1 AND " NOT_ASIDE " ORDER BY seq LIMIT ?2",
	[S_FETCH_READINGS] = "SELECT seq, dev, ts, vals FROM readings WHERE seq > ?1"
			     " AND " NOT_ASIDE " ORDER BY seq LIMIT ?2",
	[S_MARK_EVENT] = "UPDATE events SET sent_at = ?1 WHERE seq = ?2 AND sent_at IS NULL",
	[S_MARK_LEGACY] = "UPDATE legacy SET sent_at = ?1 WHERE seq = ?2 AND sent_at IS NULL",
	/* the older release's readings, delivered as the mark passes them: a range */
	[S_MARK_LEGACY_UPTO] = "UPDATE legacy SET sent_at = ?1 WHERE kind = 0 AND sent_at IS NULL"
			       " AND seq > ?2 AND seq <= ?3 AND " NOT_ASIDE,
	[S_COUNT_READINGS_RANGE] = "SELECT count(*) FROM readings WHERE seq > ?1 AND seq <= ?2",
	[S_COUNT_ASIDE_READINGS_RANGE] = "SELECT count(*) FROM aside a WHERE a.seq > ?1"
					 " AND a.seq <= ?2 AND EXISTS (SELECT 1 FROM readings r"
					 " WHERE r.seq = a.seq)",
	/* the mark as it was at a time: what keep_sent may prune */
	[S_MARKS_BEFORE] = "SELECT max(upto), max(rowid) FROM delivered WHERE at <= ?1",
	[S_PRUNE_MARKS] = "DELETE FROM delivered WHERE rowid < ?1",
	/* delivered readings up to a seq, oldest first, in chunks */
	[S_PRUNE_READINGS] = "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings"
			     " WHERE seq <= ?1 AND " NOT_ASIDE " ORDER BY seq LIMIT ?2)",
	/*
	 * Delivered transitions, oldest first — but never the newest row of a topic: it is
	 * what says an alert is still firing, however long ago it was sent (the
	 * events_topic index finds that newest row).
	 */
	[S_PRUNE_EVENTS] = "DELETE FROM events WHERE seq IN (SELECT o.seq FROM events o"
			   " WHERE o.sent_at IS NOT NULL AND o.sent_at < ?1"
			   " AND o.seq < (SELECT max(l.seq) FROM events l WHERE l.topic = o.topic)"
			   " ORDER BY o.sent_at, o.seq LIMIT ?2)",
	[S_PRUNE_LEGACY] = "DELETE FROM legacy WHERE seq IN (SELECT seq FROM legacy"
			   " WHERE sent_at IS NOT NULL AND sent_at < ?1 ORDER BY sent_at, seq LIMIT ?2)",
	/* the seq below which the first ?2 delivered readings lie (the size bound's chunk) */
	[S_HISTORY_READINGS] = "SELECT seq FROM readings WHERE seq <= ?1 ORDER BY seq"
			       " LIMIT 1 OFFSET ?2",
	/* not the rows in flight (seq <= ?2): they may be delivered, and then a drop
	 * counted for them would be a loss that never happened */
	[S_DROP_LEGACY] = "DELETE FROM legacy WHERE seq IN (SELECT seq FROM legacy"
			  " WHERE kind = 0 AND sent_at IS NULL AND seq > ?2 ORDER BY seq LIMIT ?1)",
	/* the readings set aside below the mark: older than any reading above it */
	[S_DROP_ASIDE_READINGS] = "DELETE FROM readings WHERE seq IN (SELECT a.seq FROM aside a"
				  " JOIN readings r ON r.seq = a.seq WHERE a.seq > ?2"
				  " AND a.seq <= ?3 ORDER BY a.seq LIMIT ?1)",
	[S_DROP_READINGS] = "DELETE FROM readings WHERE seq IN (SELECT seq FROM readings"
			    " WHERE seq > ?2 ORDER BY seq LIMIT ?1)",
	[S_COUNTER_GET] = "SELECT value FROM counters WHERE name = ?1",
	/* a counter row is made at its first use, so that no schema change is needed */
	[S_COUNTER_ADD] = "INSERT INTO counters (name, value) VALUES (?1, ?2)"
			  " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
	[S_COUNTER_SET] = "INSERT INTO counters (name, value) VALUES (?1, ?2)"
			  " ON CONFLICT (name) DO UPDATE SET value = max(value, excluded.value)",
	/*
	 * The oldest unsent row is taken as the first queued of each table (index probes),
	 * not min(ts) over the backlog, which would read every backlog row: after a long
	 * outage that is a million random reads on an SD card, every health tick.
	 */
	[S_OLDEST_UNSENT] = "SELECT min(ts) FROM ("
		"SELECT (SELECT ts FROM legacy WHERE kind = 0 AND sent_at IS NULL AND " NOT_ASIDE
		" ORDER BY seq LIMIT 1) AS ts"
		" UNION ALL SELECT (SELECT ts FROM events WHERE sent_at IS NULL AND " NOT_ASIDE
		" ORDER BY seq LIMIT 1)"
		" UNION ALL SELECT (SELECT ts FROM readings WHERE seq > ?1 AND " NOT_ASIDE
		" ORDER BY seq LIMIT 1))",
	[S_RECENT_EVENTS] = "SELECT " EV_COLS " FROM events WHERE topic = ?1 ORDER BY seq DESC"
			    " LIMIT ?2",
	/*
	 * A topic prefix as a range [?1, ?2) on events_topic, not LIKE (case-insensitive,
	 * and '_' is a wildcard) nor substr() (no index).
	 */
	[S_RECENT_PREFIX] = "SELECT " EV_COLS " FROM events INDEXED BY events_topic"
			    " WHERE topic >= ?1 AND topic < ?2 ORDER BY seq DESC LIMIT ?3",
	[S_LATEST] = "SELECT " EV_COLS " FROM events WHERE seq IN ("
		     "SELECT max(seq) FROM events INDEXED BY events_topic"
		     " WHERE topic >= ?1 AND topic < ?2 GROUP BY topic) ORDER BY topic",
	[S_READING_GET] = "SELECT seq, dev, ts, vals, prev FROM readings WHERE seq = ?1",
	[S_EVENT_GET] = "SELECT " EV_COLS " FROM events WHERE seq = ?1",
	[S_LEGACY_GET] = "SELECT " EV_COLS " FROM legacy WHERE seq = ?1",
	[S_READINGS_BACK] = "SELECT seq, dev FROM readings WHERE seq > ?1 ORDER BY seq DESC",
	[S_LEGACY_RECENT] = "SELECT " EV_COLS " FROM legacy WHERE topic = ?1 AND seq < ?2"
			    " ORDER BY seq DESC LIMIT ?3",
	[S_DEVICES_OF] = "SELECT dev FROM devices WHERE device = ?1",
	[S_HEAD_GET] = "SELECT seq FROM heads WHERE device = ?1",
	[S_HEAD_PUT] = "INSERT INTO heads (device, seq) VALUES (?1, ?2)"
		       " ON CONFLICT (device) DO UPDATE SET seq = excluded.seq",
	[S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[S_META_PUT] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
		       " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[S_META_DEL] = "DELETE FROM meta WHERE key = ?1",
	[S_PAGE_COUNT] = "PRAGMA page_count",
	[S_FREELIST] = "PRAGMA freelist_count",
	[S_CHECKPOINT] = "PRAGMA wal_checkpoint(TRUNCATE)",
	/* rows set aside: see "set aside" in store_outbox.c; a reading is unsent until the
	 * mark passes it, and the mark never passes a row the broker refused */
	[S_ASIDE_PUT] = "INSERT OR IGNORE INTO aside (seq, since, reason) SELECT ?1, ?2, ?3"
			" WHERE EXISTS (SELECT 1 FROM readings WHERE seq = ?1)"
			" OR EXISTS (SELECT 1 FROM events WHERE seq = ?1 AND sent_at IS NULL)"
			" OR EXISTS (SELECT 1 FROM legacy WHERE seq = ?1 AND sent_at IS NULL)",
	[S_ASIDE_DEL] = "DELETE FROM aside WHERE seq = ?1",
	/* entries whose row was dropped since */
	[S_ASIDE_GONE] = "DELETE FROM aside WHERE seq NOT IN (SELECT seq FROM readings)"
			 " AND seq NOT IN (SELECT seq FROM events WHERE sent_at IS NULL)"
			 " AND seq NOT IN (SELECT seq FROM legacy WHERE sent_at IS NULL)",
	[S_ASIDE_AFTER] = "SELECT seq, since, reason FROM aside WHERE seq > ?1 ORDER BY seq LIMIT ?2",
	/* a transition that a newer one of its topic replaced: sent after it, it would set
	 * the retained state back */
	[S_EVENT_SUPERSEDED] = "SELECT EXISTS (SELECT 1 FROM events WHERE topic = ?1 AND seq > ?2)",
};

/* -------------------------------------------------------------------------------- */
/* errors and statements (shared with store_outbox.c through store_int.h)            */

void store_setf(struct store *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof st->err, fmt, ap);
	va_end(ap);
}

/* "PATH: what: sqlite's message". Returns -1 for the caller's convenience. */
int store_sqlerr(struct store *st, const char *what)
{
	int code = sqlite3_extended_errcode(st->db);
	const char *hint = "";
	char sys[96];

	switch (code & 0xff) {
	case SQLITE_NOTADB:
		hint = " (damaged, or not a SQLite file)";
		st->damaged = true;
		break;
	case SQLITE_CORRUPT:
		hint = " (the file is damaged)";
		st->damaged = true;
		break;
	case SQLITE_FULL:
		hint = " (the file system is full)";
		break;
	case SQLITE_IOERR:
		/* which I/O error: EFBIG (a file size limit), EIO (the card), ENOSPC... */
		if (sqlite3_system_errno(st->db))
			snprintf(sys, sizeof sys, " (%s)", strerror(sqlite3_system_errno(st->db)));
		else
			snprintf(sys, sizeof sys, " (code %d: the storage failed, or a file size"
				 " limit was reached)", code);
		hint = sys;
		break;
	case SQLITE_READONLY:
		hint = " (opened read-only, or its files belong to another user)";
		break;
	}
	store_setf(st, "%s: %s: %s%s", st->path, what, sqlite3_errmsg(st->db), hint);
	return -1;
}

void store_copyerr(const struct store *st, char *err, size_t errlen)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", st->err);
}

const char *store_error(const struct store *st)
{
	return st ? st->err : "no store";
}

bool store_damaged(const struct store *st)
{
	return st && st->damaged;
}

int64_t store_limit(size_t max)
{
	return max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
}

int64_t store_i64(uint64_t v)
{
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

/* Step a statement that returns no row we want; reset it either way. */
int store_run(struct store *st, int id, const char *what)
{
	sqlite3_stmt *s = st->stmt[id];
	int rc = sqlite3_step(s);

	if (rc != SQLITE_DONE && rc != SQLITE_ROW) {
		store_sqlerr(st, what);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

/* Step a statement that returns one integer (0 when no row or NULL). */
int store_int(struct store *st, int id, int64_t *out, const char *what)
{
	sqlite3_stmt *s = st->stmt[id];
	int rc = sqlite3_step(s);

	*out = 0;
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE) {
		store_sqlerr(st, what);
		sqlite3_reset(s);
		return -1;
	}
	sqlite3_reset(s);
	return 0;
}

void store_rollback(struct store *st)
{
	/* Some errors (disk full, I/O, out of memory) roll back on their own. */
	if (!sqlite3_get_autocommit(st->db)) {
		sqlite3_step(st->stmt[S_ROLLBACK]);
		sqlite3_reset(st->stmt[S_ROLLBACK]);
	}
}

int store_commit(struct store *st)
{
	if (store_run(st, S_COMMIT, "cannot commit") < 0) {
		store_rollback(st);
		return -1;
	}
	return 0;
}

/* Not open: a damaged file could not be replaced (store_reopen failed). */
int store_usable(struct store *st)
{
	if (st->db)
		return 0;
	store_setf(st, "%s: no database open (replacing the damaged file failed)", st->path);
	return -1;
}

int store_writable(struct store *st)
{
	if (store_usable(st) < 0)
		return -1;
	if (st->ro) {
		store_setf(st, "%s: opened read-only", st->path);
		return -1;
	}
	return 0;
}

/* One-off statements at open and in migrations; not the hot path. */
int store_exec(struct store *st, const char *sql, const char *what)
{
	if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
		return store_sqlerr(st, what);
	return 0;
}

static int store_query_int(struct store *st, const char *sql, int64_t *out, const char *what)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*out = 0;
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return store_sqlerr(st, what);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE) {
		store_sqlerr(st, what);
		sqlite3_finalize(s);
		return -1;
	}
	sqlite3_finalize(s);
	return 0;
}

static int store_query_text(struct store *st, const char *sql, char *buf, size_t len,
			    const char *what)
{
	sqlite3_stmt *s = NULL;
	int rc;

	buf[0] = '\0';
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return store_sqlerr(st, what);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const unsigned char *t = sqlite3_column_text(s, 0);
		snprintf(buf, len, "%s", t ? (const char *)t : "");
	} else if (rc != SQLITE_DONE) {
		store_sqlerr(st, what);
		sqlite3_finalize(s);
		return -1;
	}
	sqlite3_finalize(s);
	return 0;
}

static int store_prepare_all(struct store *st)
{
	for (int i = 0; i < S_NSTMT; i++) {
		/* PERSISTENT: these live as long as the handle and run hundreds of times a
		 * second; SQLite keeps them out of its short-lived lookaside memory. */
		if (sqlite3_prepare_v3(st->db, store_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->stmt[i], NULL) != SQLITE_OK)
			return store_sqlerr(st, "cannot prepare a statement (wrong schema?)");
	}
	return 0;
}

/* -------------------------------------------------------------------------------- */
/* the handle                                                                        */

static char *store_join(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	char *s = malloc(la + lb + 2);

	if (!s)
		return NULL;
	memcpy(s, a, la);
	s[la] = '/';
	memcpy(s + la + 1, b, lb + 1);
	return s;
}

static struct store *store_alloc(const char *data_dir, bool ro, char *err, size_t errlen)
{
	struct store *st;

	if (!data_dir || !*data_dir) {
		if (err && errlen)
			snprintf(err, errlen, "store: no data_dir given");
		return NULL;
	}
	st = calloc(1, sizeof *st);
	if (!st) {
		if (err && errlen)
			snprintf(err, errlen, "store: out of memory");
		return NULL;
	}
	st->lock_fd = -1;
	st->seq.mark_fd = -1;
	st->ro = ro;
	st->path = store_join(data_dir, STORE_DB_NAME);
	st->lock_path = store_join(data_dir, STORE_LOCK_NAME);
	st->seq_path = store_join(data_dir, STORE_SEQ_NAME);
	st->mark_path = store_join(data_dir, STORE_MARK_NAME);
	st->clean_path = store_join(data_dir, STORE_CLEAN_NAME);
	st->spill_path = store_join(data_dir, STORE_SPILL_NAME);
	if (st->path) {
		size_t n = strlen(st->path);
		st->wal_path = malloc(n + 5);
		if (st->wal_path) {
			memcpy(st->wal_path, st->path, n);
			memcpy(st->wal_path + n, "-wal", 5);
		}
	}
	if (!st->path || !st->lock_path || !st->wal_path || !st->seq_path || !st->mark_path ||
	    !st->clean_path || !st->spill_path) {
		if (err && errlen)
			snprintf(err, errlen, "store: out of memory");
		store_close(st);
		return NULL;
	}
	return st;
}

static void store_mark_clean(struct store *st);

/* Finalize the statements and close the handle, keeping st for another open. */
static void store_shut(struct store *st)
{
	for (int i = 0; i < S_NSTMT; i++) {
		sqlite3_finalize(st->stmt[i]);
		st->stmt[i] = NULL;
	}
	if (st->db)
		sqlite3_close_v2(st->db);
	st->db = NULL;
}

void store_close(struct store *st)
{
	bool clean;

	if (!st)
		return;
	clean = st->opened && !st->ro && st->db && !st->damaged;
	/* what delivery the daemon knew of, and the chains' heads: written now, so the
	 * next start sends nothing again that was acknowledged */
	if (clean && store_outbox_flush(st) < 0) {
		log_warnx("store: %s", st->err);
		clean = !st->damaged;
	}
	for (int i = 0; i < S_NSTMT; i++)
		sqlite3_finalize(st->stmt[i]);
	/*
	 * The last connection to close checkpoints the WAL into the database and deletes
	 * it; sqlite3_close_v2 still releases everything if a statement were left behind.
	 */
	if (st->db && sqlite3_close_v2(st->db) != SQLITE_OK)
		clean = false;
	st->db = NULL;
	/* After the close, as the last write: the marker vouches for the file as closed,
	 * and says the highest seq handed out (rows lost at this stop included). */
	if (clean)
		store_mark_clean(st);
	store_seq_close(&st->seq, false);
	store_outbox_free(st);
	spill_close(st->spill);
	spill_content_free(&st->spill_in);
	/* The lock goes only after the database is closed and checkpointed. */
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	free(st->path);
	free(st->wal_path);
	free(st->lock_path);
	free(st->seq_path);
	free(st->mark_path);
	free(st->clean_path);
	free(st->spill_path);
	free(st);
}

/* -------------------------------------------------------------------------------- */
/* open                                                                              */

static int store_lock(struct store *st)
{
	char pid[32];
	int n;

	/*
	 * Two daemons on one data_dir would both publish the same rows. SQLite's own locks
	 * only serialize them, so an advisory lock on a file beside the database keeps the
	 * second one out. flock, not fcntl: SQLite's fcntl locks on the database would be
	 * dropped by any close of another descriptor of the same file in this process.
	 */
	st->lock_fd = fileio_open(st->lock_path, O_RDWR, STORE_FILE_MODE);
	if (st->lock_fd < 0) {
		store_setf(st, "cannot open the lock file %s: %s", st->lock_path, strerror(errno));
		return -1;
	}
	if (flock(st->lock_fd, LOCK_EX | LOCK_NB) < 0) {
		int e = errno;
		if (e == EWOULDBLOCK) {
			n = (int)pread(st->lock_fd, pid, sizeof pid - 1, 0);
			pid[n > 0 ? n : 0] = '\0';
			pid[strcspn(pid, "\n")] = '\0';
			store_setf(st, "%s is in use by another sluiced%s%s%s (lock %s)", st->path,
				   *pid ? " (pid " : "", pid, *pid ? ")" : "", st->lock_path);
		} else {
			store_setf(st, "cannot lock %s: %s", st->lock_path, strerror(e));
		}
		return -1;
	}
	/* Our pid, for the message above and for an operator; best effort. */
	n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(st->lock_fd, 0) == 0 && pwrite(st->lock_fd, pid, (size_t)n, 0) != n)
		log_debug("store: cannot write the pid to %s", st->lock_path);
	return 0;
}

static int store_mkdir(struct store *st, const char *data_dir)
{
	struct stat sb;

	/* 0750: readings and site names are not for every local user; the group is for
	 * sluicectl. Only the last component: the parent is the packager's business. The
	 * chmod because mkdir's mode passes through the umask. */
	if (mkdir(data_dir, STORE_DIR_MODE) == 0)
		(void)chmod(data_dir, STORE_DIR_MODE);
	else if (errno != EEXIST) {
		store_setf(st, "cannot create data_dir %s: %s", data_dir, strerror(errno));
		return -1;
	}
	if (stat(data_dir, &sb) < 0) {
		store_setf(st, "data_dir %s: %s", data_dir, strerror(errno));
		return -1;
	}
	if (!S_ISDIR(sb.st_mode)) {
		store_setf(st, "data_dir %s is not a directory", data_dir);
		return -1;
	}
	/*
	 * A directory made by someone else (an installer, mkdir under umask 022) is left
	 * as it is: it may be shared on purpose. Our files in it are 0640 either way, but
	 * every local user could list and reach them, and any file another program
	 * leaves there, so say it, once per start.
	 */
	if (sb.st_mode & 0007)
		log_warnx("store: data_dir %s is mode %04o: every local user can %s it; sluiced's"
			  " files in it are 0640, but consider chmod o-rwx %s", data_dir,
			  (unsigned)(sb.st_mode & 07777),
			  (sb.st_mode & 0005) == 0005 ? "list and enter"
			  : (sb.st_mode & 0004) ? "list" : "enter", data_dir);
	return 0;
}

static int store_migrate(struct store *st)
{
	int64_t ver, app, nobj;
	char sql[64];

	if (store_query_int(st, "PRAGMA user_version", &ver, "cannot read the schema version") < 0)
		return -1;
	if (store_query_int(st, "PRAGMA application_id", &app, "cannot read the application id") < 0)
		return -1;
	if (ver > STORE_SCHEMA_VERSION) {
		store_setf(st, "%s: schema version %" PRId64 " is newer than this sluice (%d):"
			   " refusing to downgrade", st->path, ver, STORE_SCHEMA_VERSION);
		return -1;
	}
	if (ver == 0) {
		if (store_query_int(st, "SELECT count(*) FROM sqlite_master", &nobj,
				    "cannot read the schema") < 0)
			return -1;
		if (nobj > 0) {
			store_setf(st, "%s: a SQLite database, but not sluice's (it has tables"
				   " and no schema version)", st->path);
			return -1;
		}
	} else if (app != STORE_APP_ID) {
		store_setf(st, "%s: a SQLite database, but not sluice's (application_id %" PRId64 ")",
			   st->path, app);
		return -1;
	}
	for (int v = (int)ver; v < STORE_SCHEMA_VERSION; v++) {
		if (store_exec(st, "BEGIN IMMEDIATE", "cannot begin the schema migration") < 0)
			return -1;
		snprintf(sql, sizeof sql, "PRAGMA user_version = %d", v + 1);
		if (store_exec(st, migrations[v], "cannot migrate the schema") < 0 ||
		    store_exec(st, sql, "cannot set the schema version") < 0 ||
		    store_exec(st, "COMMIT", "cannot commit the schema migration") < 0) {
			if (!sqlite3_get_autocommit(st->db))
				sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
			return -1;
		}
		if (v > 0)
			log_info("store: %s migrated to schema version %d", st->path, v + 1);
	}
	return 0;
}

/*
 * Every page of the file, read at an open that follows a stop that was not clean
 * (check_why): a file cut short or pages torn are found here, where the file can be
 * set aside and replaced, instead of failing some read hours later. quick_check walks
 * the b-trees without comparing indexes to tables: about a second for the default
 * 256 MiB bound on an SD card, which is why a clean stop spares it.
 */
static int store_check(struct store *st)
{
	int64_t t0 = clock_mono_ms();
	char res[256];

	if (store_query_text(st, "PRAGMA quick_check(1)", res, sizeof res,
			     "cannot check the database") < 0)
		return -1;
	if (strcmp(res, "ok") == 0) {
		log_info("store: checked every page of %s (%s): sound, in %.1f s", st->path,
			 st->check_why, (double)(clock_mono_ms() - t0) / 1000);
		return 0;
	}
	for (char *p = res; *p; p++)
		if (*p == '\n')
			*p = ' ';
	st->damaged = true;
	store_setf(st, "%s: the file is damaged: %s", st->path, res);
	return -1;
}

/* -------------------------------------------------------------------------------- */
/* a clean stop                                                                      */

/*
 * sluice.clean says "sluiced closed sluice.db cleanly and left it as this file": its
 * inode, size and modification time, and the highest seq it handed out. store_close
 * writes it after the database is closed (the WAL checkpointed into it, synced), as its
 * last write and whole (fileio); store_open reads it and removes it, durably, before
 * the database is opened (SQLite may write at open: WAL recovery). So a start finds it
 * only when the last stop was clean and nothing ran on the database since. One that
 * names the file as it is now spares the start the reading of every page (seconds on
 * an SD card), and tells it where seqs go on. Every other start checks: after a crash,
 * a power cut, SIGKILL or the OOM killer, an older sluiced, or a file changed since
 * (copied back, edited, cut short). A card that rots while the box is off changes
 * nothing the marker sees: sluicectl check is for that. A marker of the release before
 * (version 1) says no seq: its seqs were all stored.
 */
#define STORE_CLEAN_TAG "sluice clean stop 2\n"
#define STORE_CLEAN_TAG1 "sluice clean stop 1\n"

static int store_clean_line(const struct store *st, char *buf, size_t len)
{
	struct stat sb;

	if (stat(st->path, &sb) < 0)
		return -1;
	return snprintf(buf, len, "%ju %jd %jd.%09ld\n", (uintmax_t)sb.st_ino,
			(intmax_t)sb.st_size, (intmax_t)sb.st_mtim.tv_sec,
			(long)sb.st_mtim.tv_nsec);
}

static void store_mark_clean(struct store *st)
{
	char line[160], all[240];
	int n = store_clean_line(st, line, sizeof line), m = -1;

	if (n >= 0 && (size_t)n < sizeof line)
		m = snprintf(all, sizeof all, STORE_CLEAN_TAG "%sseq %" PRIu64 "\n", line,
			     st->next_seq ? st->next_seq - 1 : 0);
	/* not written: the next start checks every page and goes on from the mark or the
	 * ceiling, slower and never wrong */
	if (m < 0 || (size_t)m >= sizeof all ||
	    fileio_write_whole(st->clean_path, all, (size_t)m, STORE_FILE_MODE) < 0)
		log_debug("store: cannot write %s: %s", st->clean_path, strerror(errno));
}

/* Read and remove the marker; check_why says whether and why to check (NULL: not);
 * *clean_seq the highest seq it says was handed out, when the stop was clean (1: it
 * was, and the marker says no seq). */
static void store_take_clean_mark(struct store *st, uint64_t *clean_seq)
{
	char want[160], have[240];
	struct stat sb;
	ssize_t n = 0;
	int fd = open(st->clean_path, O_RDONLY | O_CLOEXEC);
	size_t tl;
	bool v1 = false;

	*clean_seq = 0;
	if (fd >= 0) {
		n = read(fd, have, sizeof have - 1);
		close(fd);
	}
	have[n > 0 ? n : 0] = '\0';
	tl = strlen(STORE_CLEAN_TAG);
	if (n >= (ssize_t)tl && memcmp(have, STORE_CLEAN_TAG1, tl) == 0)
		v1 = true;
	if (stat(st->path, &sb) < 0 || sb.st_size == 0)
		st->check_why = NULL; /* a new database: nothing to check */
	else if (fd < 0)
		st->check_why = "no record of a clean stop";
	else if (!v1 && strncmp(have, STORE_CLEAN_TAG, tl) != 0)
		st->check_why = "the clean-stop record is unreadable";
	else if (store_clean_line(st, want, sizeof want) < 0 ||
		 strncmp(have + tl, want, strlen(want)) != 0)
		st->check_why = "the file changed after the last clean stop";
	else {
		const char *s = have + tl + strlen(want);
		unsigned long long v = 0;

		if (!v1 && sscanf(s, "seq %llu", &v) != 1) {
			st->check_why = "the clean-stop record is unreadable";
		} else {
			st->check_why = NULL;
			*clean_seq = v1 ? 1 : (uint64_t)v + 1;
			log_info("store: %s was closed cleanly: not checked at this start (sluicectl"
				 " check reads every page on demand)", st->path);
		}
	}
	/* before the database is opened: from here on, a stop that is not clean shows */
	if (fd >= 0 && fileio_remove_durably(st->clean_path) < 0)
		log_warn("store: cannot remove %s (a start after a crash may then skip its"
			 " check)", st->clean_path);
}

/* -------------------------------------------------------------------------------- */
/* Seqs: where this run goes on (the opening comment says why each case is safe)     */

/* The highest seq the database shows: its rows, its delivery mark, last_seq. */
static int store_db_last(struct store *st, uint64_t *last)
{
	int64_t v;

	if (store_query_int(st, "SELECT max(x) FROM ("
			    "SELECT max(seq) AS x FROM readings UNION ALL "
			    "SELECT max(seq) FROM events UNION ALL "
			    "SELECT max(seq) FROM legacy UNION ALL "
			    "SELECT max(upto) FROM delivered UNION ALL "
			    "SELECT value FROM counters WHERE name = 'last_seq')",
			    &v, "cannot read the last seq") < 0)
		return -1;
	*last = v > 0 ? (uint64_t)v : 0;
	return 0;
}

/* How this open found the seq space. */
struct seq_found {
	uint64_t clean;   /* a clean stop's highest seq + 1 (1: clean, none said), 0: not clean */
	uint64_t mark;    /* the mark, believed (this boot), 0: none */
	bool mark_existed; /* there was a mark file, believed or not */
	bool running;     /* a reopen while running: next_seq is what this run handed out */
	bool replaced;    /* a fresh database in place of a damaged one ... */
	bool known;       /* ... whose last seq could be read */
	uint64_t lost_lo, lost_hi; /* seqs of the damaged file that could not be read */
};

static int store_seq_init(struct store *st, struct seq_found *f)
{
	uint64_t last, handed, next, skipped = 0;
	char stream_db[64] = "";
	bool new_stream = false, ceiling_known = st->seq.ceiling > 0;
	char sql[160];

	if (store_db_last(st, &last) < 0 ||
	    store_query_text(st, "SELECT value FROM meta WHERE key = 'stream'", stream_db,
			     sizeof stream_db, "cannot read the stream id") < 0)
		return -1;
	if (f->running) {
		/* what this run handed out is known exactly */
		handed = st->next_seq ? st->next_seq - 1 : 0;
		if (last > handed)
			handed = last;
	} else if (f->clean) {
		/* every seq handed out is stored, spilled, or counted in lost_at_stop */
		handed = f->clean - 1 > last ? f->clean - 1 : last;
	} else if (f->mark) {
		/* a crash in this boot: the mark is exact (the first run of a boot starts it
		 * at or above anything handed out before) */
		handed = f->mark > last ? f->mark : last;
	} else if (last > 0 && !f->replaced && !f->mark_existed) {
		/* no run of this release ever handed out a seq it had not stored */
		handed = last;
	} else if (f->replaced && f->known && !ceiling_known) {
		handed = last;
	} else {
		/* a power cut, another boot, or a database lost: above the ceiling */
		handed = st->seq.ceiling > last + 1 ? st->seq.ceiling - 1 : last;
	}
	next = handed + 1;
	if (!f->clean && !f->running && next > last + 1)
		skipped = next - 1 - last;
	if (f->lost_hi >= f->lost_lo && f->lost_lo)
		skipped += f->lost_hi - f->lost_lo + 1;
	/* the stream: the database's; else, the seq space going on, the ceiling's; else new */
	if (strlen(stream_db) == STORE_STREAM_LEN) {
		memcpy(st->seq.stream, stream_db, STORE_STREAM_LEN + 1);
	} else if (!(handed > 0 && st->seq.stream[0])) {
		store_seq_new_stream(&st->seq);
		new_stream = true;
	}
	if (strcmp(stream_db, st->seq.stream) != 0 || skipped) {
		if (store_exec(st, "BEGIN IMMEDIATE", "cannot begin a transaction") < 0)
			return -1;
		snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO meta (key, value) VALUES"
			 " ('stream', '%s')", st->seq.stream);
		if (store_exec(st, sql, "cannot record the stream id") < 0 ||
		    (skipped && store_counter_add(st, "skipped", store_i64(skipped)) < 0) ||
		    store_exec(st, "COMMIT", "cannot record the stream id") < 0) {
			store_rollback(st);
			return -1;
		}
	}
	st->next_seq = next;
	if (new_stream && handed == 0)
		log_info("store: %s starts a new seq space, stream %s", st->path, st->seq.stream);
	else if (new_stream)
		log_info("store: %s goes on after seq %" PRIu64 " under the stream id %s (new: the"
			 " seq space had none)", st->path, handed, st->seq.stream);
	if (skipped && next > last + 1)
		log_warnx("store: seqs %" PRIu64 "..%" PRIu64 " are skipped (%s): readings among them"
			  " that the platform did not receive were published before they were stored"
			  " and lost with the process, or never used; counted in skipped",
			  last + 1, next - 1,
			  f->mark ? "sluiced stopped without storing what it had handed out"
				  : "the seqs handed out before the stop cannot be known");
	/* a ceiling above what this run starts with, and the stream beside it (failing, it
	 * is said, and seqs wait for their rows to be stored: store_next_seq) */
	(void)store_seq_raise(&st->seq, next + STORE_SEQ_BLOCK / 2, STORE_SEQ_BLOCK);
	store_seq_mark(&st->seq, handed);
	return 0;
}

/* The next seq, raising the ceiling first when it would pass it. */
uint64_t store_next_seq(struct store *st)
{
	uint64_t s = st->next_seq;

	if (st->ro || s == 0)
		return 0;
	if (s >= st->seq.ceiling &&
	    store_seq_raise(&st->seq, s + STORE_SEQ_BLOCK / 2, STORE_SEQ_BLOCK) < 0)
		return 0;
	/* before the seq can be published: a crash from here on goes on above it */
	store_seq_mark(&st->seq, s);
	st->next_seq = s + 1;
	return s;
}

/* Raise the ceiling ahead of need (store_maintain), off the path of a reading. */
void store_seq_ahead(struct store *st)
{
	if (!st->ro && st->next_seq + STORE_SEQ_BLOCK / 2 > st->seq.ceiling)
		(void)store_seq_raise(&st->seq, st->next_seq + STORE_SEQ_BLOCK / 2, STORE_SEQ_BLOCK);
}

const char *store_stream(const struct store *st)
{
	return st->seq.stream;
}

/* -------------------------------------------------------------------------------- */
/* a damaged database: set aside, kept, replaced                                     */

static int store_cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Keep the newest STORE_KEEP_DAMAGED copies (their names sort by time). */
static void store_prune_damaged(struct store *st)
{
	char *dir = strdup(st->path), *slash, **names = NULL, *base;
	size_t n = 0, cap = 0, blen;
	struct dirent *de;
	DIR *d;

	if (!dir)
		return;
	slash = strrchr(dir, '/');
	base = slash ? slash + 1 : dir;
	blen = strlen(base);
	if (slash)
		*slash = '\0';
	d = opendir(slash ? dir : ".");
	if (!d) {
		free(dir);
		return;
	}
	while ((de = readdir(d))) {
		size_t l = strlen(de->d_name);
		if (l <= blen + 9 || strncmp(de->d_name, base, blen) != 0 ||
		    strncmp(de->d_name + blen, ".damaged-", 9) != 0 ||
		    (l > 4 && (strcmp(de->d_name + l - 4, "-wal") == 0 ||
			       strcmp(de->d_name + l - 4, "-shm") == 0)))
			continue;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 8;
			char **p = realloc(names, nc * sizeof *p);
			if (!p)
				break;
			names = p;
			cap = nc;
		}
		if (!(names[n] = strdup(de->d_name)))
			break;
		n++;
	}
	closedir(d);
	if (n > 0)
		qsort(names, n, sizeof *names, store_cmp_names);
	for (size_t i = 0; i < n; i++) {
		if (i + STORE_KEEP_DAMAGED < n) {
			static const char *const sfx[] = { "", "-wal", "-shm" };
			for (size_t k = 0; k < 3; k++) {
				char p[4096];
				snprintf(p, sizeof p, "%s/%s%s", slash ? dir : ".", names[i], sfx[k]);
				if (unlink(p) == 0 && k == 0)
					log_warnx("store: removed %s (only the newest %d damaged copies"
						  " are kept)", p, STORE_KEEP_DAMAGED);
			}
		}
		free(names[i]);
	}
	free(names);
	free(dir);
}

/* Rename the damaged file (and its WAL) to path.damaged-<UTC time>; aside gets the name. */
static int store_set_aside(struct store *st, char *aside, size_t len)
{
	char stamp[48], from[4200], to[4200];
	int64_t ms = clock_real_ms();
	time_t now = (time_t)(ms / 1000);
	struct tm tm;
	size_t k;

	/* to the millisecond, so that the names sort by when (see store_prune_damaged) */
	gmtime_r(&now, &tm);
	k = strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%S", &tm);
	snprintf(stamp + k, sizeof stamp - k, ".%03dZ", (int)(ms % 1000));
	snprintf(aside, len, "%s.damaged-%s", st->path, stamp);
	for (int i = 1; access(aside, F_OK) == 0 && i < 100; i++)
		snprintf(aside, len, "%s.damaged-%s-%d", st->path, stamp, i);
	if (rename(st->path, aside) < 0) {
		store_setf(st, "%s is damaged and cannot be set aside as %s: %s", st->path, aside,
			   strerror(errno));
		return -1;
	}
	snprintf(from, sizeof from, "%s", st->wal_path);
	snprintf(to, sizeof to, "%s-wal", aside);
	if (rename(from, to) < 0 && errno != ENOENT)
		log_warn("store: cannot move %s to %s", from, to);
	snprintf(from, sizeof from, "%s-shm", st->path);
	unlink(from);
	return 0;
}

struct salvage {
	uint64_t last_seq;        /* the highest seq the damaged file shows */
	bool seq_known;           /* read from its own record of seqs: exact */
	int64_t dropped;          /* its drop counter */
	uint64_t rows, unsent, aside; /* copied */
	uint64_t gap_lo, gap_hi;  /* seqs in between could not be read (0: none) */
};

/* 0 when the query ran (a row or none), -1 when it failed; *out keeps the larger */
static int store_salvage_int(sqlite3 *old, const char *sql, int64_t *out)
{
	sqlite3_stmt *s = NULL;
	int rc = SQLITE_ERROR;

	if (sqlite3_prepare_v2(old, sql, -1, &s, NULL) == SQLITE_OK) {
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW && sqlite3_column_int64(s, 0) > *out)
			*out = sqlite3_column_int64(s, 0);
	}
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/*
 * Copy what `select` (on the damaged file) returns into the fresh database through
 * `insert`, whose parameters are the select's columns in order; `keep`, when not NULL,
 * is the select's column that says whether to keep the row. The select is run from the
 * bottom in seq order and, when a damaged page stops it, again from the top (`desc`,
 * with ?1 the seq reached), so what lies on either side of the damage is kept. Returns
 * how far up and down it read (0: the pass never started).
 */
static void store_salvage_table(sqlite3 *old, sqlite3 *db, const char *asc, const char *desc,
				const char *insert, int ncols, int keep, bool unsent_col,
				struct salvage *sv, uint64_t *up, uint64_t *down, bool *failed)
{
	sqlite3_stmt *ins = NULL;

	*up = *down = 0;
	*failed = false;
	if (sqlite3_prepare_v2(db, insert, -1, &ins, NULL) != SQLITE_OK)
		return;
	for (int pass = 0; pass < 2; pass++) {
		sqlite3_stmt *s = NULL;
		int rc;

		if (pass == 1 && !*failed)
			break;
		if (sqlite3_prepare_v2(old, pass ? desc : asc, -1, &s, NULL) != SQLITE_OK) {
			*failed = true;
			break;
		}
		if (pass == 1)
			sqlite3_bind_int64(s, 1, store_i64(*up));
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			uint64_t seq = (uint64_t)sqlite3_column_int64(s, 0);
			if (pass == 0)
				*up = seq;
			else
				*down = seq;
			if (keep >= 0 && !sqlite3_column_int(s, keep))
				continue;
			for (int k = 0; k < ncols; k++)
				sqlite3_bind_value(ins, k + 1, sqlite3_column_value(s, k));
			if (sqlite3_step(ins) == SQLITE_DONE) {
				sv->rows++;
				if (unsent_col)
					sv->unsent++;
			}
			sqlite3_reset(ins);
			sqlite3_clear_bindings(ins);
		}
		if (pass == 0)
			*failed = rc != SQLITE_DONE;
		sqlite3_finalize(s);
	}
	sqlite3_finalize(ins);
}

/* A damaged file of schema 3: readings (undelivered, or set aside), transitions,
 * legacy rows, devices, the aside table, the delivery mark. */
static void store_salvage_v3(struct store *st, sqlite3 *old, struct salvage *sv)
{
	uint64_t up, down;
	bool failed;
	int64_t hwm = 0;
	char sel[512], seld[512];

	(void)store_salvage_int(old, "SELECT upto FROM delivered ORDER BY rowid DESC LIMIT 1", &hwm);
	/* the mark first, so that what the copies say delivered stays so */
	{
		char sql[128];
		snprintf(sql, sizeof sql, "INSERT INTO delivered (at, upto) VALUES (%" PRId64
			 ", %" PRId64 ")", clock_real_ms(), hwm);
		sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	}
	struct salvage other = { 0 };

	store_salvage_table(old, st->db, "SELECT dev, device, hash, since, schema FROM devices"
			    " ORDER BY dev", "SELECT dev, device, hash, since, schema FROM devices"
			    " WHERE dev > ?1 ORDER BY dev DESC",
			    "INSERT OR IGNORE INTO devices (dev, device, hash, since, schema)"
			    " VALUES (?1, ?2, ?3, ?4, ?5)", 5, -1, false, &other, &up, &down, &failed);
	other.rows = 0;
	store_salvage_table(old, st->db, "SELECT seq, since, reason FROM aside ORDER BY seq",
			    "SELECT seq, since, reason FROM aside WHERE seq > ?1 ORDER BY seq DESC",
			    "INSERT OR IGNORE INTO aside (seq, since, reason) VALUES (?1, ?2, ?3)",
			    3, -1, false, &other, &up, &down, &failed);
	sv->aside = other.rows;
	/* readings: the undelivered ones (above the mark, or set aside), with their seqs */
	snprintf(sel, sizeof sel, "SELECT seq, dev, ts, prev, vals, (seq > %" PRId64 " OR seq IN"
		 " (SELECT seq FROM aside)) FROM readings NOT INDEXED ORDER BY seq", hwm);
	snprintf(seld, sizeof seld, "SELECT seq, dev, ts, prev, vals, (seq > %" PRId64 " OR seq IN"
		 " (SELECT seq FROM aside)) FROM readings NOT INDEXED WHERE seq > ?1"
		 " ORDER BY seq DESC", hwm);
	store_salvage_table(old, st->db, sel, seld, "INSERT OR IGNORE INTO readings"
			    " (seq, dev, ts, prev, vals) VALUES (?1, ?2, ?3, ?4, ?5)", 5, 5, true,
			    sv, &up, &down, &failed);
	if (failed) {
		sv->gap_lo = up + 1;
		sv->gap_hi = down ? down - 1 : sv->last_seq;
	}
	/* transitions: all of them (the retained state sluicectl shows), sent or not */
	store_salvage_table(old, st->db, "SELECT seq, ts, topic, body, retain, sent_at, sent_at"
			    " IS NULL FROM events NOT INDEXED ORDER BY seq",
			    "SELECT seq, ts, topic, body, retain, sent_at, sent_at IS NULL FROM events"
			    " NOT INDEXED WHERE seq > ?1 ORDER BY seq DESC",
			    "INSERT OR IGNORE INTO events (seq, ts, topic, body, retain, sent_at)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)", 6, -1, false, sv, &up, &down, &failed);
	/* the older release's readings not yet delivered */
	store_salvage_table(old, st->db, "SELECT seq, kind, ts, topic, body, retain, sent_at,"
			    " sent_at IS NULL FROM legacy NOT INDEXED ORDER BY seq",
			    "SELECT seq, kind, ts, topic, body, retain, sent_at, sent_at IS NULL FROM"
			    " legacy NOT INDEXED WHERE seq > ?1 ORDER BY seq DESC",
			    "INSERT OR IGNORE INTO legacy (seq, kind, ts, topic, body, retain, sent_at)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", 7, 7, true, sv, &up, &down, &failed);
}

/* A damaged file of schema 1 or 2 (found at the start that would have migrated it):
 * its outbox's undelivered rows and every alert row, as schema 3 keeps them. */
static void store_salvage_v2(struct store *st, sqlite3 *old, struct salvage *sv)
{
	uint64_t up, down;
	bool failed;

	store_salvage_table(old, st->db, "SELECT seq, ts, topic, body, retain, sent_at, kind = 1"
			    " FROM outbox NOT INDEXED ORDER BY seq",
			    "SELECT seq, ts, topic, body, retain, sent_at, kind = 1 FROM outbox"
			    " NOT INDEXED WHERE seq > ?1 ORDER BY seq DESC",
			    "INSERT OR IGNORE INTO events (seq, ts, topic, body, retain, sent_at)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6)", 6, 6, false, sv, &up, &down, &failed);
	store_salvage_table(old, st->db, "SELECT seq, kind, ts, topic, body, retain, sent_at,"
			    " kind = 0 AND sent_at IS NULL FROM outbox NOT INDEXED ORDER BY seq",
			    "SELECT seq, kind, ts, topic, body, retain, sent_at, kind = 0 AND sent_at"
			    " IS NULL FROM outbox NOT INDEXED WHERE seq > ?1 ORDER BY seq DESC",
			    "INSERT OR IGNORE INTO legacy (seq, kind, ts, topic, body, retain, sent_at)"
			    " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", 7, 7, true, sv, &up, &down, &failed);
	if (failed) {
		sv->gap_lo = up + 1;
		sv->gap_hi = down ? down - 1 : sv->last_seq;
	}
	/* rows set aside by schema 2 come back unsent: tried again, set aside again */
	{
		int64_t hwm = 0;
		char sql[160];
		(void)store_salvage_int(old, "SELECT min(seq) - 1 FROM outbox WHERE kind = 0 AND"
					" sent_at IS NULL", &hwm);
		if (hwm <= 0)
			hwm = (int64_t)sv->last_seq;
		snprintf(sql, sizeof sql, "INSERT INTO delivered (at, upto) VALUES (%" PRId64
			 ", %" PRId64 ")", clock_real_ms(), hwm);
		sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	}
}

/*
 * What can still be read from the damaged copy goes into the fresh database: the
 * undelivered rows with their seqs (sent again, the same messages), the rows set aside
 * (still counted as such: each is a gap until delivered), the transitions (the
 * retained state sluicectl shows), the devices the readings name, meta (the alert
 * engine's state, the stream), the counters, and the highest seq, so that seqs go on
 * above it. Best effort: reads stop at the first damaged page, from each end of a table.
 */
static int store_salvage(struct store *st, const char *aside, struct salvage *sv)
{
	sqlite3 *old = NULL;
	sqlite3_stmt *s = NULL, *ins = NULL;
	int64_t v = 0, ver = 0;
	char shm[4200];
	static const char *const counters[] = { "dropped", "lost_at_stop", "skipped" };

	memset(sv, 0, sizeof *sv);
	if (sqlite3_open_v2(aside, &old, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		sqlite3_close_v2(old);
		return 0;
	}
	sqlite3_busy_timeout(old, 100);
	(void)store_salvage_int(old, "PRAGMA user_version", &ver);
	if (ver >= 3) {
		sv->seq_known = store_salvage_int(old, "SELECT value FROM counters WHERE name ="
						  " 'last_seq'", &v) == 0;
		(void)store_salvage_int(old, "SELECT max(seq) FROM readings", &v);
		(void)store_salvage_int(old, "SELECT max(seq) FROM events", &v);
		(void)store_salvage_int(old, "SELECT max(upto) FROM delivered", &v);
		(void)store_salvage_int(old, "SELECT max(seq) FROM legacy", &v);
	} else {
		sv->seq_known = store_salvage_int(old, "SELECT seq FROM sqlite_sequence"
						  " WHERE name = 'outbox'", &v) == 0;
		(void)store_salvage_int(old, "SELECT max(seq) FROM outbox", &v);
	}
	sv->last_seq = (uint64_t)v;
	(void)store_salvage_int(old, "SELECT value FROM counters WHERE name = 'dropped'",
				&sv->dropped);

	if (store_exec(st, "BEGIN IMMEDIATE", "cannot begin the salvage") < 0)
		goto out;
	if (ver >= 3)
		store_salvage_v3(st, old, sv);
	else
		store_salvage_v2(st, old, sv);
	if (sqlite3_prepare_v2(old, "SELECT key, value FROM meta", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
			       -1, &ins, NULL) == SQLITE_OK) {
		while (sqlite3_step(s) == SQLITE_ROW) {
			sqlite3_bind_value(ins, 1, sqlite3_column_value(s, 0));
			sqlite3_bind_value(ins, 2, sqlite3_column_value(s, 1));
			sqlite3_step(ins);
			sqlite3_reset(ins);
		}
	}
	sqlite3_finalize(s);
	sqlite3_finalize(ins);
	for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
		char sql[96];

		v = 0;
		snprintf(sql, sizeof sql, "SELECT value FROM counters WHERE name = '%s'", counters[i]);
		if (store_salvage_int(old, sql, &v) == 0 && v > 0)
			(void)store_counter_add(st, counters[i], v);
	}
	if (sv->seq_known) {
		char sql[128];
		snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO counters (name, value) VALUES"
			 " ('last_seq', %" PRId64 ")", store_i64(sv->last_seq));
		sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	}
	if (store_exec(st, "COMMIT", "cannot commit the salvage") < 0)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_close_v2(old);
	/* the reader's index beside the copy; the copy itself is left as it was found */
	snprintf(shm, sizeof shm, "%s-shm", aside);
	unlink(shm);
	return 0;
}

static int store_configure(struct store *st)
{
	char mode[16], sql[96];
	uint64_t allow;
	int64_t v;

	/* The first read checks the file's header: a damaged or foreign file is named
	 * here, before anything is changed. (A new, empty file reads as version 0.) */
	if (store_query_int(st, "PRAGMA schema_version", &v, "cannot open the database") < 0)
		return -1;
	if (st->check_why && store_check(st) < 0)
		return -1;
	/*
	 * Both only take effect on a database that is still empty (schema_version 0),
	 * hence before anything else touches it, and only then: setting auto_vacuum
	 * writes the header page, which on a full disk would fail the start. 4096-byte
	 * pages line up with the file system's blocks and the flash's write unit, so
	 * writing one page never rewrites a neighbour. INCREMENTAL auto-vacuum lets
	 * store_maintain give free pages back to the file system when the file is over its
	 * bound (a lowered max_size); without it a SQLite file never shrinks.
	 */
	if (v == 0 &&
	    (store_exec(st, "PRAGMA page_size = 4096", "cannot set the page size") < 0 ||
	     store_exec(st, "PRAGMA auto_vacuum = INCREMENTAL", "cannot set auto_vacuum") < 0))
		return -1;
	/*
	 * WAL: a commit appends to the WAL instead of rewriting pages in place (less
	 * written, fewer syncs), and readers (sluicectl) never block the writer. The mode
	 * is persistent in the file; the result says whether it took (a file system
	 * without shared memory support would refuse).
	 */
	if (store_query_text(st, "PRAGMA journal_mode = WAL", mode, sizeof mode,
			     "cannot open the database") < 0)
		return -1;
	if (strcmp(mode, "wal") != 0) {
		store_setf(st, "%s: cannot use WAL mode (journal mode stays %s)", st->path, mode);
		return -1;
	}
	/*
	 * NORMAL in WAL mode syncs only at checkpoints: every commit survives a crash of
	 * the process, the last ones may be lost on power loss. FULL syncs the WAL at each
	 * commit: one sync per batch, which is why the core batches.
	 */
	if (store_exec(st, st->buf.durability == DURABILITY_FULL ? "PRAGMA synchronous = FULL"
								   : "PRAGMA synchronous = NORMAL",
		       "cannot set synchronous") < 0)
		return -1;
	/* Sort and temporary b-trees stay in memory: nothing of ours needs a big one, and
	 * temporary files would be flash writes for nothing. */
	if (store_exec(st, "PRAGMA temp_store = MEMORY", "cannot set temp_store") < 0)
		return -1;

	/*
	 * The WAL is bounded by checkpoints: an automatic (passive) one at commit once the
	 * WAL holds wal_allow bytes, and journal_size_limit truncates the file back to that
	 * size when the WAL restarts, so a burst does not leave a big file behind.
	 */
	allow = st->buf.max_size ? st->buf.max_size / 8 : STORE_WAL_MAX;
	if (allow > STORE_WAL_MAX)
		allow = STORE_WAL_MAX;
	if (allow < STORE_WAL_MIN)
		allow = STORE_WAL_MIN;
	st->wal_allow = allow;
	snprintf(sql, sizeof sql, "PRAGMA wal_autocheckpoint = %u",
		 (unsigned)(allow / STORE_PAGE_SIZE));
	if (store_exec(st, sql, "cannot set wal_autocheckpoint") < 0)
		return -1;
	snprintf(sql, sizeof sql, "PRAGMA journal_size_limit = %" PRIu64, allow);
	if (store_exec(st, sql, "cannot set journal_size_limit") < 0)
		return -1;
	return 0;
}

/*
 * The database file created 0640 (or an older one brought down to it) before SQLite
 * opens it, with its -wal and -shm: SQLite gives those the database's mode, and would
 * create the database itself 0644 less the umask.
 */
static void store_own_files(struct store *st)
{
	const char *const sfx[] = { "", "-wal", "-shm" };
	char p[4200];
	struct stat sb;
	int fd;

	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof p, "%s%s", st->path, sfx[i]);
		if (stat(p, &sb) == 0 && S_ISREG(sb.st_mode) && (sb.st_mode & 0137))
			log_info("store: %s was mode %04o; now %04o", p,
				 (unsigned)(sb.st_mode & 07777),
				 (unsigned)(sb.st_mode & 07777 & STORE_FILE_MODE));
		if (i > 0) {
			(void)fileio_restrict(p, STORE_FILE_MODE);
			continue;
		}
		/* failing here is SQLite's to say, at its open, in its words */
		fd = fileio_open(p, O_RDWR, STORE_FILE_MODE);
		if (fd >= 0)
			close(fd);
	}
}

/* Open (creating) the database file and bring it to the current schema. */
static int store_open_db(struct store *st)
{
	int rc;

	store_own_files(st);
	/* NOMUTEX: one connection, used by the core thread only. */
	rc = sqlite3_open_v2(st->path, &st->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		if (st->db)
			return store_sqlerr(st, "cannot open the database");
		store_setf(st, "%s: cannot open the database: out of memory", st->path);
		return -1;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_RW_MS);
	if (store_configure(st) < 0 || store_migrate(st) < 0 || store_prepare_all(st) < 0)
		return -1;
	return 0;
}

/*
 * A damaged file (not readable as SQLite, or failing the check) is never a reason
 * not to start: that would be a crash loop on a box nobody visits. It is set aside
 * as sluice.db.damaged-<time>, kept for whoever wants to look, what can be read from
 * it is carried over, and the daemon goes on with a fresh database.
 */
static int store_replace_damaged(struct store *st, struct seq_found *f)
{
	char why[sizeof st->err], aside[4096];
	struct salvage sv;

	snprintf(why, sizeof why, "%s", st->err);
	store_shut(st);
	if (store_set_aside(st, aside, sizeof aside) < 0)
		return -1;
	log_errx("store: %s", why);
	log_errx("store: the damaged file is kept as %s; starting a fresh database", aside);
	st->damaged = false;
	st->check_why = NULL; /* a new file */
	if (store_open_db(st) < 0)
		return -1;
	store_salvage(st, aside, &sv);
	log_warnx("store: carried over from the damaged file: %" PRIu64 " rows (%" PRIu64
		  " undelivered), %" PRIu64 " rows set aside, %" PRId64 " counted drops; its last"
		  " seq was %" PRIu64, sv.rows, sv.unsent, sv.aside, sv.dropped, sv.last_seq);
	if (sv.gap_lo && sv.gap_hi >= sv.gap_lo) {
		log_warnx("store: rows with seqs %" PRIu64 "..%" PRIu64 " of the damaged file"
			  " could not be read; undelivered ones among them are lost (counted in"
			  " skipped)", sv.gap_lo, sv.gap_hi);
		f->lost_lo = sv.gap_lo;
		f->lost_hi = sv.gap_hi;
	}
	store_prune_damaged(st);
	/* an exact last seq carries on without a gap; otherwise above the mark or ceiling */
	f->replaced = true;
	f->known = sv.seq_known;
	return 0;
}

static int store_open_all(struct store *st, struct seq_found *f)
{
	if (store_open_db(st) < 0) {
		if (!st->damaged || store_replace_damaged(st, f) < 0)
			return -1;
	}
	if (store_seq_init(st, f) < 0 || store_outbox_load(st) < 0) {
		/* a read that found damage past the check */
		if (!st->damaged || f->replaced || store_replace_damaged(st, f) < 0 ||
		    store_seq_init(st, f) < 0 || store_outbox_load(st) < 0)
			return -1;
	}
	return 0;
}

int store_reopen(struct store *st, char *err, size_t errlen)
{
	struct seq_found f = { .running = true };

	if (st->ro) {
		store_setf(st, "%s: opened read-only", st->path);
		store_copyerr(st, err, errlen);
		return -1;
	}
	store_shut(st);
	store_outbox_free(st);
	st->damaged = false;
	st->check_why = "a read found it damaged";
	if (store_open_all(st, &f) < 0) {
		store_copyerr(st, err, errlen);
		store_shut(st);
		return -1;
	}
	return 0;
}

struct store *store_open(const char *data_dir, const struct buffer_cfg *buf, char *err,
			 size_t errlen)
{
	struct store *st = store_alloc(data_dir, false, err, errlen);
	struct seq_found f = { 0 };

	if (!st)
		return NULL;
	if (buf) {
		st->buf = *buf;
	} else {
		st->buf.max_size = STORE_DEF_MAX_SIZE;
		st->buf.durability = DURABILITY_NORMAL;
		st->buf.keep_sent_ms = STORE_DEF_KEEP_SENT;
	}
	if (store_mkdir(st, data_dir) < 0 || store_lock(st) < 0)
		goto fail;
	store_take_clean_mark(st, &f.clean);
	store_seq_open(&st->seq, st->seq_path, st->mark_path, &f.mark, &f.mark_existed);
	if (store_open_all(st, &f) < 0)
		goto fail;
	store_spill_start(st);
	st->opened = true;
	return st;
fail:
	store_copyerr(st, err, errlen);
	store_close(st);
	return NULL;
}

/* A path as a file: URI, for the immutable flag. */
static char *store_uri(const char *path, const char *query)
{
	size_t n = strlen(path), q = strlen(query);
	char *u = malloc(5 + n * 3 + 1 + q + 1), *p;

	if (!u)
		return NULL;
	p = u;
	memcpy(p, "file:", 5);
	p += 5;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)path[i];
		if (c == '%' || c == '?' || c == '#') {
			p += sprintf(p, "%%%02x", c);
		} else {
			*p++ = (char)c;
		}
	}
	*p++ = '?';
	memcpy(p, query, q + 1);
	return u;
}

/* What a file that is not a regular one is, for the message that refuses it. */
static const char *store_file_kind(mode_t mode)
{
	if (S_ISFIFO(mode))
		return "a FIFO (named pipe)";
	if (S_ISDIR(mode))
		return "a directory";
	if (S_ISSOCK(mode))
		return "a socket";
	if (S_ISCHR(mode))
		return "a character device";
	if (S_ISBLK(mode))
		return "a block device";
	return "not a regular file";
}

/*
 * The database and, when they exist, its -wal and -shm must be regular files before a
 * reader opens them: SQLite opens without O_NONBLOCK, so a FIFO in their place (in a
 * data directory someone else can write, with sluicectl run as root) would hang the
 * reader in open() for as long as nobody writes to it. A file swapped in after this
 * check still could; the check takes away the standing trap, not that race.
 */
static int store_check_files(struct store *st, const struct stat *db)
{
	const char *suffixes[] = { "-wal", "-shm" };

	if (!S_ISREG(db->st_mode)) {
		store_setf(st, "%s is %s, not a database file: sluicectl reads only a regular file",
			   st->path, store_file_kind(db->st_mode));
		return -1;
	}
	for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
		struct stat sb;
		char *path = NULL;

		if (asprintf(&path, "%s%s", st->path, suffixes[i]) < 0) {
			store_setf(st, "store: out of memory");
			return -1;
		}
		if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
			store_setf(st, "%s is %s, not the database's %s file: sluicectl reads only "
				   "regular files", path, store_file_kind(sb.st_mode), suffixes[i] + 1);
			free(path);
			return -1;
		}
		free(path);
	}
	return 0;
}

/* store_open_ro's open, on a handle from store_alloc: 0, or -1 (st->err; st->damaged
 * when SQLite found the file damaged). */
static int store_ro_open(struct store *st, bool prepare)
{
	struct stat sb;
	int64_t ver, app;
	char *uri = NULL;
	int rc;

	if (stat(st->path, &sb) < 0) {
		if (errno == ENOENT)
			store_setf(st, "no database at %s: has sluiced run with this data_dir?", st->path);
		else
			store_setf(st, "cannot read %s: %s", st->path, strerror(errno));
		return -1;
	}
	if (store_check_files(st, &sb) < 0)
		return -1;
	/*
	 * A WAL-mode database opened read-only creates its -wal and -shm files when they
	 * are missing, and as a reader it can never checkpoint them away: run as root while
	 * sluiced is stopped, it would leave root-owned files that the daemon, as its own
	 * user, then cannot write. Every open WAL connection keeps the -wal file, so none
	 * means no sluiced has the database open: the file alone is complete, and we read
	 * it as immutable, creating nothing. (A sluiced starting during this short read
	 * only writes its WAL; its first checkpoint is seconds away.)
	 */
	if (access(st->wal_path, F_OK) < 0 && errno == ENOENT) {
		uri = store_uri(st->path, "immutable=1");
		if (!uri) {
			store_setf(st, "store: out of memory");
			return -1;
		}
	}
	rc = sqlite3_open_v2(uri ? uri : st->path, &st->db,
			     SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX | (uri ? SQLITE_OPEN_URI : 0),
			     NULL);
	free(uri);
	if (rc != SQLITE_OK) {
		if (st->db)
			store_sqlerr(st, "cannot open the database");
		else
			store_setf(st, "%s: cannot open the database: out of memory", st->path);
		return -1;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_RO_MS);
	if (store_query_int(st, "PRAGMA user_version", &ver, "cannot read the database") < 0 ||
	    store_query_int(st, "PRAGMA application_id", &app, "cannot read the database") < 0)
		return -1;
	if (ver == 0 || app != STORE_APP_ID) {
		store_setf(st, "%s: not a sluice database (or sluiced has not finished creating it)",
			   st->path);
		return -1;
	}
	if (!prepare)
		return 0;
	if (ver != STORE_SCHEMA_VERSION) {
		store_setf(st, "%s: schema version %" PRId64 ", this build reads version %d%s",
			   st->path, ver, STORE_SCHEMA_VERSION,
			   ver < STORE_SCHEMA_VERSION ? ": start sluiced once to migrate it"
						      : ": install a newer sluicectl");
		return -1;
	}
	if (store_prepare_all(st) < 0 || store_outbox_load(st) < 0)
		return -1;
	(void)store_query_text(st, "SELECT value FROM meta WHERE key = 'stream'", st->seq.stream,
			       sizeof st->seq.stream, "cannot read the stream id");
	return 0;
}

struct store *store_open_ro(const char *data_dir, char *err, size_t errlen)
{
	struct store *st = store_alloc(data_dir, true, err, errlen);

	if (!st)
		return NULL;
	if (store_ro_open(st, true) < 0) {
		store_copyerr(st, err, errlen);
		store_close(st);
		return NULL;
	}
	return st;
}

int store_check_dir(const char *data_dir, char *what, size_t len)
{
	struct store *st = store_alloc(data_dir, true, what, len);
	sqlite3_stmt *s = NULL;
	size_t used = 0, more = 0;
	int rc, r = -1;

	if (!st)
		return -1;
	/* any schema: a file of an older release is checked as it is */
	if (store_ro_open(st, false) < 0) {
		r = st->damaged ? 1 : -1;
		store_copyerr(st, what, len);
		goto out;
	}
	/* up to 20 problems: enough to tell a few torn pages from a file that is junk */
	if (sqlite3_prepare_v2(st->db, "PRAGMA quick_check(20)", -1, &s, NULL) != SQLITE_OK) {
		store_sqlerr(st, "cannot check the database");
		r = st->damaged ? 1 : -1;
		store_copyerr(st, what, len);
		goto out;
	}
	what[0] = '\0';
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *line = (const char *)sqlite3_column_text(s, 0);
		size_t l;

		if (!line || strcmp(line, "ok") == 0)
			continue;
		/* whole lines only, and how many did not fit */
		l = strlen(line) + (used ? 1 : 0);
		if (used + l + 16 >= len) {
			more++;
			continue;
		}
		snprintf(what + used, len - used, "%s%s", used ? "\n" : "", line);
		used += l;
	}
	if (rc != SQLITE_DONE) {
		/* SQLite gave up on a page it could not read at all */
		store_sqlerr(st, "cannot check the database");
		if (st->damaged && used + 64 < len)
			snprintf(what + used, len - used, "%sreading stopped: %s", used ? "\n" : "",
				 sqlite3_errmsg(st->db));
		else if (!st->damaged)
			store_copyerr(st, what, len);
		r = st->damaged ? 1 : -1;
	} else if (used || more) {
		if (more)
			snprintf(what + used, len - used, "%s(%zu more)", used ? "\n" : "", more);
		r = 1;
	} else {
		snprintf(what, len, "%s: ok", st->path);
		r = 0;
	}
	sqlite3_finalize(s);
out:
	store_close(st);
	return r;
}
