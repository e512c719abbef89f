/*
 * store: owns the sqlite3 handle, every SQL string, the schema and its migrations, and
 * the on-disk bound of data_dir/sluice.db. It is the outbox between the alert engine
 * and the uplink, the local history, and the place where state that must survive a
 * restart (meta, counters) lives.
 *
 * It must never speak MQTT or JSON (a body is opaque text), call exit(), or hold the
 * core loop for long: writes are batched, deletions are chunked, busy waits bounded.
 *
 * Durability, in short (details at each pragma and transaction below):
 *  - WAL mode: a commit is an append to data_dir/sluice.db-wal. Once COMMIT returns,
 *    the rows are in the kernel's page cache, so a crash of the process loses nothing.
 *  - synchronous=NORMAL (durability: normal) does not fsync at commit, only at
 *    checkpoints: a power cut may roll back the last commits, never corrupt the file.
 *  - synchronous=FULL (durability: full) fsyncs the WAL at every commit: what
 *    store_append returned 0 for survives power loss.
 *  - Every multi-row change is one transaction, so a batch is all in or all out.
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

#include <sqlite3.h>

#include "clock.h"
#include "fileio.h"
#include "log.h"
#include "spill.h"

#define STORE_DB_NAME    "sluice.db"
#define STORE_LOCK_NAME  "sluice.lock"
#define STORE_SEQ_NAME   "sluice.seq"
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
/*
 * The spill file's reserve (spill.h): a sixteenth of max_size, between 64 KiB and
 * 4 MiB — 4 MiB holds the 20,000 rows the core keeps in memory at most when they are
 * about 200 bytes each, a reading of a dozen points.
 */
#define STORE_SPILL_MIN  ((uint64_t)64 << 10)
#define STORE_SPILL_MAX  ((uint64_t)4 << 20)
/* meta: the id of the last spill taken in, committed with its rows (never twice) */
#define STORE_SPILL_TAKEN "spill_taken"
/*
 * The seq ceiling (sluice.seq beside the database) is raised in blocks: one small
 * file write per this many seqs, about every 17 minutes at 1,000 rows a second. A
 * database lost to damage costs at most one block of unused seqs, never a repeat.
 */
#define STORE_SEQ_BLOCK  ((uint64_t)1 << 20)
/* Damaged databases set aside and kept (sluice.db.damaged-*): the newest this many. */
#define STORE_KEEP_DAMAGED 2
/* Tells our file from any other SQLite file: 0x736c7563, "sluc". */
#define STORE_APP_ID     1936487779
#define STORE_STR_(x)    #x
#define STORE_STR(x)     STORE_STR_(x)
#define STORE_PAGE_SIZE  4096       /* the file system block, and the write unit of most SD/eMMC */

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
 */
#define STORE_WAL_MAX ((uint64_t)4 << 20)
#define STORE_WAL_MIN ((uint64_t)16 * STORE_PAGE_SIZE)

/* Rows per deleting transaction: small enough to bound the WAL and the pause. */
#define STORE_CHUNK_MIN 16
#define STORE_CHUNK_FIRST 64
#define STORE_CHUNK_MAX 16384
/* keep_sent pruning per store_maintain call; the rest waits for the next call. */
#define STORE_PRUNE_MAX 131072

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
};
#define STORE_SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

#define ROW_COLS "seq, kind, ts, topic, body, retain"

enum {
	S_BEGIN_W,
	S_BEGIN_R,
	S_COMMIT,
	S_ROLLBACK,
	S_INSERT,
	S_FETCH,
	S_MARK,
	S_PRUNE_SENT,
	S_DROP_UNSENT,
	S_DROPPED_ADD,
	S_DROPPED_GET,
	S_LOST_ADD,
	S_LOST_GET,
	S_LAST_SEQ,
	S_COUNT_ROWS,
	S_COUNT_UNSENT,
	S_OLDEST_UNSENT,
	S_RECENT,
	S_RECENT_PREFIX,
	S_LATEST,
	S_META_GET,
	S_META_PUT,
	S_META_DEL,
	S_PAGE_COUNT,
	S_FREELIST,
	S_CHECKPOINT,
	S_ASIDE_PUT,
	S_ASIDE_GONE,
	S_ASIDE_FETCH,
	S_ASIDE_LIST,
	S_COUNT_ASIDE,
	S_NSTMT
};

static const char *const stmt_sql[S_NSTMT] = {
	/*
	 * IMMEDIATE takes the write lock at BEGIN: if it cannot be had, we learn it before
	 * touching a row, instead of failing to upgrade a read lock half-way.
	 */
	[S_BEGIN_W] = "BEGIN IMMEDIATE",
	[S_BEGIN_R] = "BEGIN",
	[S_COMMIT] = "COMMIT",
	[S_ROLLBACK] = "ROLLBACK",
	[S_INSERT] = "INSERT INTO outbox (kind, ts, topic, body, retain) VALUES (?1, ?2, ?3, ?4, ?5)",
	/* not the rows set aside: they wait for a retry (S_ASIDE_FETCH) */
	[S_FETCH] = "SELECT " ROW_COLS " FROM outbox"
		    " WHERE kind = ?1 AND sent_at IS NULL AND seq > ?2"
		    " AND seq NOT IN (SELECT seq FROM aside) ORDER BY seq LIMIT ?3",
	[S_MARK] = "UPDATE outbox SET sent_at = ?1 WHERE seq = ?2 AND sent_at IS NULL",
	/*
	 * Delivered history, oldest first — but never the newest row of a retained state
	 * topic (alert/, device/): it is what says an alert is still firing, however long
	 * ago it was sent (the outbox_topic index finds that newest row).
	 */
	[S_PRUNE_SENT] = "DELETE FROM outbox WHERE seq IN (SELECT o.seq FROM outbox o"
			 " WHERE o.sent_at IS NOT NULL AND o.sent_at < ?1"
			 " AND (o.kind = 0 OR o.seq < (SELECT max(l.seq) FROM outbox l"
			 " WHERE l.topic = o.topic))"
			 " ORDER BY o.sent_at, o.seq LIMIT ?2)",
	/* not the rows in flight (seq <= ?2): they may be delivered, and then a drop
	 * counted for them would be a loss that never happened */
	[S_DROP_UNSENT] = "DELETE FROM outbox WHERE seq IN (SELECT seq FROM outbox"
			  " WHERE kind = 0 AND sent_at IS NULL AND seq > ?2 ORDER BY seq LIMIT ?1)",
	[S_DROPPED_ADD] = "UPDATE counters SET value = value + ?1 WHERE name = 'dropped'",
	[S_DROPPED_GET] = "SELECT value FROM counters WHERE name = 'dropped'",
	/* rows that waited in memory at a stop and were lost (store_spill): a counter row
	 * of its own, made at its first use, so that no schema change is needed */
	[S_LOST_ADD] = "INSERT INTO counters (name, value) VALUES ('lost_at_stop', ?1)"
		       " ON CONFLICT (name) DO UPDATE SET value = value + excluded.value",
	[S_LOST_GET] = "SELECT value FROM counters WHERE name = 'lost_at_stop'",
	[S_LAST_SEQ] = "SELECT seq FROM sqlite_sequence WHERE name = 'outbox'",
	[S_COUNT_ROWS] = "SELECT count(*) FROM outbox",
	[S_COUNT_UNSENT] = "SELECT count(*) FROM outbox WHERE kind IN (0, 1) AND sent_at IS NULL",
	/*
	 * The oldest unsent row is taken as the first queued of each kind (two index
	 * probes), not min(ts) over the backlog, which would read every backlog row: after
	 * a long outage that is a million random reads on an SD card, every health tick.
	 */
	[S_OLDEST_UNSENT] = "SELECT min(ts) FROM ("
		"SELECT (SELECT ts FROM outbox WHERE kind = 0 AND sent_at IS NULL"
		" AND seq NOT IN (SELECT seq FROM aside) ORDER BY seq LIMIT 1) AS ts"
		" UNION ALL "
		"SELECT (SELECT ts FROM outbox WHERE kind = 1 AND sent_at IS NULL"
		" AND seq NOT IN (SELECT seq FROM aside) ORDER BY seq LIMIT 1))",
	[S_RECENT] = "SELECT " ROW_COLS " FROM outbox WHERE topic = ?1 ORDER BY seq DESC LIMIT ?2",
	/*
	 * A topic prefix as a range [?1, ?2) on outbox_topic, not LIKE (case-insensitive,
	 * and '_' is a wildcard) nor substr() (no index): with only a few alert rows among
	 * a million readings, both would read every row.
	 */
	[S_RECENT_PREFIX] = "SELECT " ROW_COLS " FROM outbox INDEXED BY outbox_topic"
			    " WHERE topic >= ?1 AND topic < ?2 ORDER BY seq DESC LIMIT ?3",
	[S_LATEST] = "SELECT " ROW_COLS " FROM outbox WHERE seq IN ("
		     "SELECT max(seq) FROM outbox INDEXED BY outbox_topic"
		     " WHERE topic >= ?1 AND topic < ?2 GROUP BY topic) ORDER BY topic",
	[S_META_GET] = "SELECT value FROM meta WHERE key = ?1",
	[S_META_PUT] = "INSERT INTO meta (key, value) VALUES (?1, ?2)"
		       " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
	[S_META_DEL] = "DELETE FROM meta WHERE key = ?1",
	[S_PAGE_COUNT] = "PRAGMA page_count",
	[S_FREELIST] = "PRAGMA freelist_count",
	[S_CHECKPOINT] = "PRAGMA wal_checkpoint(TRUNCATE)",
	/* rows set aside: see "set aside" below */
	[S_ASIDE_PUT] = "INSERT OR IGNORE INTO aside (seq, since, reason)"
			" SELECT seq, ?2, ?3 FROM outbox WHERE seq = ?1 AND sent_at IS NULL",
	/* entries whose row was delivered or dropped since */
	[S_ASIDE_GONE] = "DELETE FROM aside WHERE seq NOT IN"
			 " (SELECT seq FROM outbox WHERE sent_at IS NULL)",
	/* a state transition only while it is its topic's newest row: sent after a newer
	 * one, it would set the retained state back */
	[S_ASIDE_FETCH] = "SELECT " ROW_COLS " FROM outbox o WHERE seq IN"
			  " (SELECT seq FROM aside WHERE seq > ?1) AND sent_at IS NULL"
			  " AND (kind = 0 OR seq = (SELECT max(l.seq) FROM outbox l"
			  " WHERE l.topic = o.topic)) ORDER BY seq LIMIT ?2",
	[S_ASIDE_LIST] = "SELECT o.seq, o.kind, o.ts, o.topic, o.body, o.retain, a.since, a.reason,"
			 " (o.kind = 1 AND o.seq < (SELECT max(l.seq) FROM outbox l"
			 " WHERE l.topic = o.topic))"
			 " FROM aside a JOIN outbox o ON o.seq = a.seq ORDER BY a.seq LIMIT ?1",
	[S_COUNT_ASIDE] = "SELECT count(*) FROM aside",
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
	/*
	 * Rows and backlog, counted once at open and then kept up to date after each
	 * commit (only this handle writes; the lock file sees to that), so store_stats
	 * costs no O(rows) count. A read-only handle counts instead.
	 */
	int64_t nrows, nunsent;
	int64_t naside;    /* of nunsent, the rows set aside */
	sqlite3_stmt *stmt[S_NSTMT];
	/*
	 * Seqs: next_seq is the one the next row gets; every seq ever handed out is below
	 * seq_ceiling, which sluice.seq holds on disk, so a fresh database (the old one
	 * damaged and set aside, or deleted) starts above anything the platform has seen.
	 */
	char *seq_path;
	uint64_t next_seq, seq_ceiling;
	bool ceiling_warned;
	bool damaged;      /* the last error says the file is damaged (not merely failing) */
	uint64_t in_flight; /* telemetry up to this seq is in flight: not dropped */
	/*
	 * A clean stop: store_close writes sluice.clean last, naming the database file as
	 * it left it; store_open removes it before anything is written. The every-page
	 * check runs when check_why says why (NULL: the last stop was clean, or there is
	 * nothing to check); store_reopen always checks.
	 */
	char *clean_path;
	const char *check_why;
	bool opened;       /* store_open succeeded: a close may be recorded as clean */
	/*
	 * The spill file (spill.h): rows a stopping daemon held in memory. spill_in is
	 * what the last stop left and is not yet in the outbox (spill_pending): it goes in
	 * before any other row. spill_taken: the id of the last spill taken in.
	 */
	char *spill_path;
	struct spill *spill;
	struct spill_content spill_in;
	bool spill_pending, spill_warned;
	uint64_t spill_taken;
	char err[512];
};

static void store_setf(struct store *st, const char *fmt, ...) PRINTF(2, 3);

static void store_setf(struct store *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof st->err, fmt, ap);
	va_end(ap);
}

/* "PATH: what: sqlite's message". Returns -1 for the caller's convenience. */
static int store_sqlerr(struct store *st, const char *what)
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

static void store_copyerr(const struct store *st, char *err, size_t errlen)
{
	if (err && errlen)
		snprintf(err, errlen, "%s", st->err);
}

const char *store_error(const struct store *st)
{
	return st ? st->err : "no store";
}

void store_set_in_flight(struct store *st, uint64_t seq)
{
	st->in_flight = seq;
}

bool store_damaged(const struct store *st)
{
	return st && st->damaged;
}

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
	st->ro = ro;
	st->path = store_join(data_dir, STORE_DB_NAME);
	st->lock_path = store_join(data_dir, STORE_LOCK_NAME);
	st->seq_path = store_join(data_dir, STORE_SEQ_NAME);
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
	if (!st->path || !st->lock_path || !st->wal_path || !st->seq_path || !st->clean_path ||
	    !st->spill_path) {
		if (err && errlen)
			snprintf(err, errlen, "store: out of memory");
		store_close(st);
		return NULL;
	}
	return st;
}

static void store_mark_clean(struct store *st);

void store_close(struct store *st)
{
	bool clean;

	if (!st)
		return;
	clean = st->opened && !st->ro && st->db && !st->damaged;
	for (int i = 0; i < S_NSTMT; i++)
		sqlite3_finalize(st->stmt[i]);
	/*
	 * The last connection to close checkpoints the WAL into the database and deletes
	 * it; sqlite3_close_v2 still releases everything if a statement were left behind.
	 */
	if (st->db && sqlite3_close_v2(st->db) != SQLITE_OK)
		clean = false;
	/* After the close, as the last write: the marker vouches for the file as closed. */
	if (clean)
		store_mark_clean(st);
	spill_close(st->spill);
	spill_content_free(&st->spill_in);
	/* The lock goes only after the database is closed and checkpointed. */
	if (st->lock_fd >= 0)
		close(st->lock_fd);
	free(st->path);
	free(st->wal_path);
	free(st->lock_path);
	free(st->seq_path);
	free(st->clean_path);
	free(st->spill_path);
	free(st);
}

/* -------------------------------------------------------------------------------- */
/* statement helpers                                                                 */

/* Step a statement that returns no row we want; reset it either way. */
static int store_run(struct store *st, int id, const char *what)
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
static int store_int(struct store *st, int id, int64_t *out, const char *what)
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

/* Rows, unsent rows and those of them set aside. O(rows): the whole outbox's smallest
 * index is walked. */
static int store_count(struct store *st, int64_t *rows, int64_t *unsent, int64_t *aside)
{
	if (store_int(st, S_COUNT_ROWS, rows, "cannot count rows") < 0 ||
	    store_int(st, S_COUNT_UNSENT, unsent, "cannot count the backlog") < 0 ||
	    store_int(st, S_COUNT_ASIDE, aside, "cannot count the rows set aside") < 0)
		return -1;
	return 0;
}

static void store_rollback(struct store *st)
{
	/* Some errors (disk full, I/O, out of memory) roll back on their own. */
	if (!sqlite3_get_autocommit(st->db)) {
		sqlite3_step(st->stmt[S_ROLLBACK]);
		sqlite3_reset(st->stmt[S_ROLLBACK]);
	}
}

static int store_commit(struct store *st)
{
	if (store_run(st, S_COMMIT, "cannot commit") < 0) {
		store_rollback(st);
		return -1;
	}
	return 0;
}

/* Not open: a damaged file could not be replaced (store_reopen failed). */
static int store_usable(struct store *st)
{
	if (st->db)
		return 0;
	store_setf(st, "%s: no database open (replacing the damaged file failed)", st->path);
	return -1;
}

static int store_writable(struct store *st)
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
static int store_exec(struct store *st, const char *sql, const char *what)
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
		if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
				       &st->stmt[i], NULL) != SQLITE_OK)
			return store_sqlerr(st, "cannot prepare a statement (wrong schema?)");
	}
	return 0;
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
 * inode, size and modification time. store_close writes it after the database is
 * closed (the WAL checkpointed into it, synced), as its last write and whole (fileio);
 * store_open reads it and removes it, durably, before the database is opened (SQLite
 * may write at open: WAL recovery). So a start finds it only when the last stop was
 * clean and nothing ran on the database since. One that names the file as it is now
 * spares the start the reading of every page (seconds on an SD card). Every other
 * start checks: after a crash, a power cut, SIGKILL or the OOM killer, an older
 * sluiced, or a file changed since (copied back, edited, cut short). A card that rots
 * while the box is off changes nothing the marker sees: sluicectl check is for that.
 */
#define STORE_CLEAN_TAG "sluice clean stop 1\n"

static int store_clean_line(const struct store *st, char *buf, size_t len)
{
	struct stat sb;

	if (stat(st->path, &sb) < 0)
		return -1;
	return snprintf(buf, len, STORE_CLEAN_TAG "%ju %jd %jd.%09ld\n", (uintmax_t)sb.st_ino,
			(intmax_t)sb.st_size, (intmax_t)sb.st_mtim.tv_sec,
			(long)sb.st_mtim.tv_nsec);
}

static void store_mark_clean(struct store *st)
{
	char line[160];
	int n = store_clean_line(st, line, sizeof line);

	/* not written: the next start checks every page, slower and never wrong */
	if (n < 0 || (size_t)n >= sizeof line ||
	    fileio_write_whole(st->clean_path, line, (size_t)n, STORE_FILE_MODE) < 0)
		log_debug("store: cannot write %s: %s", st->clean_path, strerror(errno));
}

/* Read and remove the marker; check_why says whether and why to check (NULL: not). */
static void store_take_clean_mark(struct store *st)
{
	char want[160], have[160];
	struct stat sb;
	ssize_t n = 0;
	int fd = open(st->clean_path, O_RDONLY | O_CLOEXEC);

	if (fd >= 0) {
		n = read(fd, have, sizeof have - 1);
		close(fd);
	}
	have[n > 0 ? n : 0] = '\0';
	if (stat(st->path, &sb) < 0 || sb.st_size == 0)
		st->check_why = NULL; /* a new database: nothing to check */
	else if (fd < 0)
		st->check_why = "no record of a clean stop";
	else if (strncmp(have, STORE_CLEAN_TAG, strlen(STORE_CLEAN_TAG)) != 0)
		st->check_why = "the clean-stop record is unreadable";
	else if (store_clean_line(st, want, sizeof want) < 0 || strcmp(have, want) != 0)
		st->check_why = "the file changed after the last clean stop";
	else {
		st->check_why = NULL;
		log_info("store: %s was closed cleanly: not checked at this start (sluicectl check"
			 " reads every page on demand)", st->path);
	}
	/* before the database is opened: from here on, a stop that is not clean shows */
	if (fd >= 0 && fileio_remove_durably(st->clean_path) < 0)
		log_warn("store: cannot remove %s (a start after a crash may then skip its"
			 " check)", st->clean_path);
}

/* -------------------------------------------------------------------------------- */
/* the seq ceiling                                                                   */

static uint64_t store_read_ceiling(struct store *st)
{
	char buf[32];
	unsigned long long v;
	char *end;
	ssize_t n;
	int fd = open(st->seq_path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno != ENOENT)
			log_warn("store: cannot read %s", st->seq_path);
		return 0;
	}
	n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (errno || end == buf || (*end && *end != '\n')) {
		log_warnx("store: %s does not hold a number; ignored", st->seq_path);
		return 0;
	}
	return (uint64_t)v;
}

/* Write sluice.seq as a whole (temporary file, sync, rename, sync the directory). */
static int store_write_ceiling(struct store *st, uint64_t ceiling)
{
	char buf[32];
	int len = snprintf(buf, sizeof buf, "%" PRIu64 "\n", ceiling);

	return fileio_write_whole(st->seq_path, buf, (size_t)len, STORE_FILE_MODE);
}

/*
 * Before seqs up to next_seq + n - 1 are handed out. Failing to raise it (a full
 * disk) does not stop the append: the database stays the record of the seqs, and
 * the ceiling only matters once it is lost too.
 */
static void store_raise_ceiling(struct store *st, size_t n)
{
	uint64_t want = st->next_seq + n, c;

	if (want <= st->seq_ceiling)
		return;
	c = (want / STORE_SEQ_BLOCK + 1) * STORE_SEQ_BLOCK;
	if (store_write_ceiling(st, c) == 0) {
		st->seq_ceiling = c;
		if (st->ceiling_warned)
			log_info("store: %s written again", st->seq_path);
		st->ceiling_warned = false;
	} else if (!st->ceiling_warned) {
		log_warn("store: cannot write %s (seqs go on; only a later loss of the"
			 " database could repeat them)", st->seq_path);
		st->ceiling_warned = true;
	}
}

/* The seq that comes next; a new database starts above salvaged and the ceiling. */
/* How a database's first seq is found (store_seq_init). */
enum seq_from {
	SEQ_OWN,     /* its own sqlite_sequence; the ceiling only if it never gave a seq */
	SEQ_EXACT,   /* replaces a damaged file whose last seq could be read */
	SEQ_CEILING, /* replaces a damaged file whose last seq is unknown */
};

static int store_seq_init(struct store *st, uint64_t salvaged_last, enum seq_from from)
{
	int64_t last;
	uint64_t floor;
	char sql[160];

	if (store_int(st, S_LAST_SEQ, &last, "cannot read the last seq") < 0)
		return -1;
	st->seq_ceiling = store_read_ceiling(st);
	/* the ceiling counts only for a database that has handed out no seq yet (or one
	 * that replaces a damaged file): elsewhere it is merely ahead, by design */
	floor = salvaged_last;
	if (((from == SEQ_OWN && last == 0) || from == SEQ_CEILING) &&
	    st->seq_ceiling > floor + 1)
		floor = st->seq_ceiling - 1;
	if ((uint64_t)last < floor) {
		/* AUTOINCREMENT continues from sqlite_sequence: start it where the lost
		 * database left off (or above, at the ceiling) */
		snprintf(sql, sizeof sql, "DELETE FROM sqlite_sequence WHERE name = 'outbox';"
			 "INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox', %" PRIu64 ");",
			 floor);
		if (store_exec(st, "BEGIN IMMEDIATE", "cannot begin a transaction") < 0)
			return -1;
		if (store_exec(st, sql, "cannot set the first seq") < 0 ||
		    store_exec(st, "COMMIT", "cannot set the first seq") < 0) {
			store_rollback(st);
			return -1;
		}
		log_info("store: %s is new; seqs continue after %" PRIu64, st->path, floor);
		last = (int64_t)floor;
	}
	st->next_seq = (uint64_t)last + 1;
	if (st->seq_ceiling < st->next_seq)
		st->seq_ceiling = 0; /* unknown or stale: written at the first append */
	return 0;
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

struct salvage {
	uint64_t last_seq;        /* the highest seq the damaged file shows */
	bool seq_known;           /* read from its sqlite_sequence: exact */
	int64_t dropped;          /* its drop counter */
	uint64_t rows, unsent;    /* copied */
	uint64_t gap_lo, gap_hi;  /* seqs in between could not be read (0: none) */
};

/* One pass over the damaged outbox in seq order (desc: from the top), copying unsent
 * rows and every alert row into the fresh database. Stops at the first error. */
static void store_salvage_pass(sqlite3 *old, sqlite3_stmt *ins, bool desc, uint64_t bound,
			       struct salvage *sv, uint64_t *reached, bool *failed)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*failed = true;
	if (sqlite3_prepare_v2(old, desc ? "SELECT seq, kind, ts, topic, body, retain, sent_at"
				" FROM outbox NOT INDEXED WHERE seq > ?1 ORDER BY seq DESC"
			     : "SELECT seq, kind, ts, topic, body, retain, sent_at"
				" FROM outbox NOT INDEXED ORDER BY seq", -1, &s, NULL) != SQLITE_OK)
		return;
	if (desc)
		sqlite3_bind_int64(s, 1, (int64_t)bound);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		bool unsent = sqlite3_column_type(s, 6) == SQLITE_NULL;
		*reached = (uint64_t)sqlite3_column_int64(s, 0);
		if (!unsent && sqlite3_column_int(s, 1) != ROW_ALERT)
			continue;
		for (int k = 0; k < 7; k++)
			sqlite3_bind_value(ins, k + 1, sqlite3_column_value(s, k));
		if (sqlite3_step(ins) == SQLITE_DONE) {
			sv->rows++;
			sv->unsent += unsent;
		}
		sqlite3_reset(ins);
		sqlite3_clear_bindings(ins);
	}
	*failed = rc != SQLITE_DONE;
	sqlite3_finalize(s);
}

/* 0 when the query ran (a row or none), -1 when it failed */
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
 * What can still be read from the damaged copy goes into the fresh database: the
 * undelivered rows with their seqs (sent again, the same messages), the alert rows
 * (the retained state sluicectl shows), meta (the alert engine's state), the drop
 * counter, and the highest seq, so that seqs go on above it. Best effort: reads stop
 * at the first damaged page, from each end of the outbox.
 */
static int store_salvage(struct store *st, const char *aside, struct salvage *sv)
{
	sqlite3 *old = NULL;
	sqlite3_stmt *ins = NULL, *s = NULL;
	uint64_t up = 0, down = 0;
	bool failed_up, failed_down = false;
	int64_t v = 0;
	char shm[4200];

	memset(sv, 0, sizeof *sv);
	if (sqlite3_open_v2(aside, &old, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) !=
	    SQLITE_OK) {
		sqlite3_close_v2(old);
		return 0;
	}
	sqlite3_busy_timeout(old, 100);
	sv->seq_known = store_salvage_int(old, "SELECT seq FROM sqlite_sequence"
					  " WHERE name = 'outbox'", &v) == 0;
	store_salvage_int(old, "SELECT max(seq) FROM outbox", &v);
	sv->last_seq = (uint64_t)v;
	(void)store_salvage_int(old, "SELECT value FROM counters WHERE name = 'dropped'",
				&sv->dropped);

	if (store_exec(st, "BEGIN IMMEDIATE", "cannot begin the salvage") < 0)
		goto out;
	if (sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO outbox"
			       " (seq, kind, ts, topic, body, retain, sent_at)"
			       " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)", -1, &ins, NULL) == SQLITE_OK) {
		store_salvage_pass(old, ins, false, 0, sv, &up, &failed_up);
		if (failed_up) {
			store_salvage_pass(old, ins, true, up, sv, &down, &failed_down);
			sv->gap_lo = up + 1;
			sv->gap_hi = down ? down - 1 : sv->last_seq;
		}
	}
	sqlite3_finalize(ins);
	ins = NULL;
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
	if (sv->dropped > 0) {
		char sql[96];
		snprintf(sql, sizeof sql, "UPDATE counters SET value = %" PRId64
			 " WHERE name = 'dropped'", sv->dropped);
		sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	}
	v = 0;
	if (store_salvage_int(old, "SELECT value FROM counters WHERE name = 'lost_at_stop'",
			      &v) == 0 && v > 0) {
		sqlite3_bind_int64(st->stmt[S_LOST_ADD], 1, v);
		(void)store_run(st, S_LOST_ADD, "cannot carry the lost counter over");
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
static int store_replace_damaged(struct store *st)
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
		  " undelivered), %" PRId64 " counted drops; its last seq was %" PRIu64,
		  sv.rows, sv.unsent, sv.dropped, sv.last_seq);
	if (sv.gap_lo && sv.gap_hi >= sv.gap_lo)
		log_warnx("store: rows with seqs %" PRIu64 "..%" PRIu64 " of the damaged file"
			  " could not be read; undelivered ones among them are lost",
			  sv.gap_lo, sv.gap_hi);
	store_prune_damaged(st);
	/* an exact last seq carries on without a gap; otherwise above the ceiling */
	return store_seq_init(st, sv.last_seq, sv.seq_known ? SEQ_EXACT : SEQ_CEILING);
}

static int store_open_all(struct store *st)
{
	if (store_open_db(st) < 0 || store_seq_init(st, 0, SEQ_OWN) < 0) {
		if (!st->damaged || store_replace_damaged(st) < 0)
			return -1;
	}
	return store_count(st, &st->nrows, &st->nunsent, &st->naside);
}

int store_reopen(struct store *st, char *err, size_t errlen)
{
	if (st->ro) {
		store_setf(st, "%s: opened read-only", st->path);
		store_copyerr(st, err, errlen);
		return -1;
	}
	store_shut(st);
	st->damaged = false;
	st->check_why = "a read found it damaged";
	if (store_open_all(st) < 0) {
		store_copyerr(st, err, errlen);
		store_shut(st);
		return -1;
	}
	return 0;
}

static void store_spill_start(struct store *st);

struct store *store_open(const char *data_dir, const struct buffer_cfg *buf, char *err,
			 size_t errlen)
{
	struct store *st = store_alloc(data_dir, false, err, errlen);

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
	store_take_clean_mark(st);
	if (store_open_all(st) < 0)
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
static int store_ro_open(struct store *st)
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
		goto fail;
	}
	if (store_check_files(st, &sb) < 0)
		goto fail;
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
			goto fail;
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
		goto fail;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, STORE_BUSY_RO_MS);
	if (store_query_int(st, "PRAGMA user_version", &ver, "cannot read the database") < 0 ||
	    store_query_int(st, "PRAGMA application_id", &app, "cannot read the database") < 0)
		goto fail;
	if (ver == 0 || app != STORE_APP_ID) {
		store_setf(st, "%s: not a sluice database (or sluiced has not finished creating it)",
			   st->path);
		goto fail;
	}
	if (ver != STORE_SCHEMA_VERSION) {
		store_setf(st, "%s: schema version %" PRId64 ", this build reads version %d%s",
			   st->path, ver, STORE_SCHEMA_VERSION,
			   ver < STORE_SCHEMA_VERSION ? ": start sluiced once to migrate it"
						      : ": install a newer sluicectl");
		goto fail;
	}
	if (store_prepare_all(st) < 0)
		goto fail;
	return 0;
fail:
	return -1;
}

struct store *store_open_ro(const char *data_dir, char *err, size_t errlen)
{
	struct store *st = store_alloc(data_dir, true, err, errlen);

	if (!st)
		return NULL;
	if (store_ro_open(st) < 0) {
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
	if (store_ro_open(st) < 0) {
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

/* -------------------------------------------------------------------------------- */
/* outbox                                                                            */

int store_append(struct store *st, struct store_row *rows, size_t n, char *err, size_t errlen)
{
	return store_append_meta(st, rows, n, NULL, NULL, err, errlen);
}

/* Insert rows in the open transaction, each given its seq. -1: the caller rolls back. */
static int store_insert_rows(struct store *st, struct store_row *rows, size_t n)
{
	sqlite3_stmt *ins = st->stmt[S_INSERT];

	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int(ins, 1, rows[i].kind);
		sqlite3_bind_int64(ins, 2, rows[i].ts_ms);
		/* STATIC: the caller's strings outlive the step; bindings are cleared below. */
		sqlite3_bind_text(ins, 3, rows[i].topic, -1, SQLITE_STATIC);
		sqlite3_bind_text(ins, 4, rows[i].body, -1, SQLITE_STATIC);
		sqlite3_bind_int(ins, 5, rows[i].retain ? 1 : 0);
		if (sqlite3_step(ins) != SQLITE_DONE) {
			char what[64];
			snprintf(what, sizeof what, "cannot append row %zu of %zu", i + 1, n);
			store_sqlerr(st, what);
			sqlite3_reset(ins);
			sqlite3_clear_bindings(ins);
			return -1;
		}
		sqlite3_reset(ins);
		rows[i].seq = (uint64_t)sqlite3_last_insert_rowid(st->db);
	}
	sqlite3_clear_bindings(ins);
	return 0;
}

/* key := value in the open transaction. -1: the caller rolls back. */
static int store_meta_set(struct store *st, const char *key, const char *value)
{
	sqlite3_stmt *m = st->stmt[S_META_PUT];
	int r = 0;

	sqlite3_bind_text(m, 1, key, -1, SQLITE_STATIC);
	sqlite3_bind_text(m, 2, value ? value : "", -1, SQLITE_STATIC);
	if (sqlite3_step(m) != SQLITE_DONE)
		r = store_sqlerr(st, "cannot write meta");
	sqlite3_reset(m);
	sqlite3_clear_bindings(m);
	return r;
}

static int store_take_spill(struct store *st);

int store_append_meta(struct store *st, struct store_row *rows, size_t n, const char *key,
		      const char *value, char *err, size_t errlen)
{
	if (n == 0 && !key)
		return 0;
	if (store_writable(st) < 0)
		goto fail;
	/* what the last stop kept in the spill file waited longer: it goes in first */
	if (st->spill_pending && store_take_spill(st) < 0)
		goto unseq;
	store_raise_ceiling(st, n);
	/*
	 * One transaction per batch: one WAL append and (durability full) one sync for
	 * the lot, and a batch is all in or all out.
	 */
	if (store_run(st, S_BEGIN_W, "cannot begin a transaction") < 0)
		goto fail;
	/* the state that produced these rows commits with them: after a crash both are
	 * there or neither (an alert transition is never stored twice) */
	if (store_insert_rows(st, rows, n) < 0 || (key && store_meta_set(st, key, value) < 0)) {
		store_rollback(st);
		goto unseq;
	}
	if (store_commit(st) < 0)
		goto unseq;
	if (n > 0)
		st->next_seq = rows[n - 1].seq + 1;
	st->nrows += (int64_t)n;
	st->nunsent += (int64_t)n;
	return 0;
unseq:
	/* Rolled back: the seqs handed out were never stored and will be given again. */
	for (size_t j = 0; j < n; j++)
		rows[j].seq = 0;
fail:
	store_copyerr(st, err, errlen);
	return -1;
}

static char *store_coldup(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	int len = sqlite3_column_bytes(s, col);
	char *d;

	if (!t)
		t = (const unsigned char *)"", len = 0;
	d = malloc((size_t)len + 1);
	if (d) {
		memcpy(d, t, (size_t)len);
		d[len] = '\0';
	}
	return d;
}

void store_row_clear(struct store_row *r)
{
	if (!r)
		return;
	free(r->topic);
	free(r->body);
	r->topic = NULL;
	r->body = NULL;
}

/*
 * Step a statement returning ROW_COLS into out[0..max), leaving it where it stopped
 * (the caller resets it), so that a caller can go on reading into a grown array. On
 * error nothing is left to free.
 */
static long store_read_rows_more(struct store *st, sqlite3_stmt *s, size_t max,
				 struct store_row *out, const char *what)
{
	size_t n = 0;
	int rc = SQLITE_ROW;

	while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_row *r = &out[n];
		r->seq = (uint64_t)sqlite3_column_int64(s, 0);
		r->kind = sqlite3_column_int(s, 1);
		r->ts_ms = sqlite3_column_int64(s, 2);
		r->topic = store_coldup(s, 3);
		r->body = store_coldup(s, 4);
		r->retain = sqlite3_column_int(s, 5) != 0;
		n++;
		if (!r->topic || !r->body) {
			store_setf(st, "%s: %s: out of memory", st->path, what);
			goto fail;
		}
	}
	if (n < max && rc != SQLITE_DONE) {
		store_sqlerr(st, what);
		goto fail;
	}
	return (long)n;
fail:
	for (size_t i = 0; i < n; i++)
		store_row_clear(&out[i]);
	return -1;
}

/* Step a statement returning ROW_COLS into out[0..max), then reset it. */
static long store_read_rows(struct store *st, sqlite3_stmt *s, size_t max, struct store_row *out,
			    const char *what)
{
	long n = store_read_rows_more(st, s, max, out, what);

	sqlite3_reset(s);
	return n;
}

static int64_t store_limit(size_t max)
{
	return max > (size_t)INT64_MAX ? INT64_MAX : (int64_t)max;
}

long store_fetch_unsent(struct store *st, int kind, uint64_t after, size_t max,
			struct store_row *out)
{
	sqlite3_stmt *s = st->stmt[S_FETCH];

	if (store_usable(st) < 0)
		return -1;
	if (max == 0)
		return 0;
	sqlite3_bind_int(s, 1, kind);
	sqlite3_bind_int64(s, 2, after > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)after);
	sqlite3_bind_int64(s, 3, store_limit(max));
	return store_read_rows(st, s, max, out, "cannot read the backlog");
}

int store_mark_sent(struct store *st, const uint64_t *seqs, size_t n)
{
	sqlite3_stmt *s = st->stmt[S_MARK];
	int64_t now = clock_real_ms();
	int64_t marked = 0, gone = 0;

	if (n == 0)
		return 0;
	if (store_writable(st) < 0)
		return -1;
	/*
	 * One transaction for all the acks gathered in a loop turn. A mark lost to a power
	 * cut only means the row is sent again: delivery is at least once by design.
	 */
	if (store_run(st, S_BEGIN_W, "cannot begin a transaction") < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		sqlite3_bind_int64(s, 1, now);
		sqlite3_bind_int64(s, 2, (int64_t)seqs[i]);
		if (store_run(st, S_MARK, "cannot mark a row sent") < 0) {
			store_rollback(st);
			return -1;
		}
		marked += sqlite3_changes(st->db);
	}
	/* delivered at last: no longer set aside (a probe per entry, only when there are) */
	if (st->naside > 0 && marked > 0) {
		if (store_run(st, S_ASIDE_GONE, "cannot forget delivered rows set aside") < 0) {
			store_rollback(st);
			return -1;
		}
		gone = sqlite3_changes(st->db);
	}
	if (store_commit(st) < 0)
		return -1;
	st->nunsent -= marked;
	st->naside -= gone;
	return 0;
}

/* -------------------------------------------------------------------------------- */
/* set aside: rows the broker refused for good                                       */
/*
 * Kept apart from the rest on purpose: the outbox will change shape (delivery marked
 * by ranges), and these rows are the exceptions to whatever marks delivery. What this
 * section owns: the aside table, and the S_ASIDE_* statements; the outbox's fetch and
 * backlog age skip what it holds, store_mark_sent and the size bound's drop forget
 * entries whose row went.
 */

int store_aside_put(struct store *st, uint64_t seq, const char *reason)
{
	sqlite3_stmt *s = st->stmt[S_ASIDE_PUT];
	int n;

	if (store_writable(st) < 0)
		return -1;
	sqlite3_bind_int64(s, 1, seq > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)seq);
	sqlite3_bind_int64(s, 2, clock_real_ms());
	sqlite3_bind_text(s, 3, reason ? reason : "", -1, SQLITE_STATIC);
	/* one statement: its own transaction, like a meta put; refusals are rare */
	if (store_run(st, S_ASIDE_PUT, "cannot set a row aside") < 0) {
		sqlite3_clear_bindings(s);
		return -1;
	}
	sqlite3_clear_bindings(s);
	n = sqlite3_changes(st->db);
	st->naside += n;
	return n > 0 ? 1 : 0;
}

long store_fetch_aside(struct store *st, uint64_t after, size_t max, struct store_row *out)
{
	sqlite3_stmt *s = st->stmt[S_ASIDE_FETCH];

	if (store_usable(st) < 0)
		return -1;
	if (max == 0)
		return 0;
	sqlite3_bind_int64(s, 1, after > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)after);
	sqlite3_bind_int64(s, 2, store_limit(max));
	return store_read_rows(st, s, max, out, "cannot read the rows set aside");
}

long store_aside_list(struct store *st, size_t max, struct store_aside *out)
{
	sqlite3_stmt *s = st->stmt[S_ASIDE_LIST];
	size_t n = 0;
	int rc = SQLITE_ROW;
	bool oom = false;

	if (store_usable(st) < 0)
		return -1;
	if (max == 0)
		return 0;
	sqlite3_bind_int64(s, 1, store_limit(max));
	while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_aside *a = &out[n++];

		*a = (struct store_aside){
			.row = { .seq = (uint64_t)sqlite3_column_int64(s, 0),
				 .kind = sqlite3_column_int(s, 1),
				 .ts_ms = sqlite3_column_int64(s, 2),
				 .topic = store_coldup(s, 3),
				 .body = store_coldup(s, 4),
				 .retain = sqlite3_column_int(s, 5) != 0 },
			.since_ms = sqlite3_column_int64(s, 6),
			.reason = store_coldup(s, 7),
			.superseded = sqlite3_column_int(s, 8) != 0,
		};
		if (!a->reason || !a->row.topic || !a->row.body) {
			oom = true;
			break;
		}
	}
	if (oom || (n < max && rc != SQLITE_DONE)) {
		if (oom)
			store_setf(st, "%s: cannot list the rows set aside: out of memory", st->path);
		else
			store_sqlerr(st, "cannot list the rows set aside");
		sqlite3_reset(s);
		for (size_t i = 0; i < n; i++)
			store_aside_clear(&out[i]);
		return -1;
	}
	sqlite3_reset(s);
	return (long)n;
}

void store_aside_clear(struct store_aside *a)
{
	if (!a)
		return;
	store_row_clear(&a->row);
	free(a->reason);
	a->reason = NULL;
}

/* -------------------------------------------------------------------------------- */
/* maintenance and the size bound                                                    */

static uint64_t store_wal_bytes(const struct store *st)
{
	struct stat sb;

	return stat(st->wal_path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

static int store_pages(struct store *st, int64_t *pages, int64_t *freepages)
{
	if (store_int(st, S_PAGE_COUNT, pages, "cannot read page_count") < 0 ||
	    store_int(st, S_FREELIST, freepages, "cannot read freelist_count") < 0)
		return -1;
	return 0;
}

/*
 * Copy the WAL into the database and truncate it to zero. TRUNCATE waits (busy
 * timeout) for readers; when one holds on, the checkpoint stops short, which is fine:
 * the next call tries again. Not an error either way unless SQLite fails.
 */
static int store_checkpoint(struct store *st)
{
	int64_t busy;

	return store_int(st, S_CHECKPOINT, &busy, "cannot checkpoint");
}

/* Delete up to chunk delivered rows that were sent before cutoff, oldest first. */
static long store_prune_chunk(struct store *st, int64_t cutoff, int64_t chunk)
{
	sqlite3_stmt *s = st->stmt[S_PRUNE_SENT];

	sqlite3_bind_int64(s, 1, cutoff);
	sqlite3_bind_int64(s, 2, chunk);
	/* One statement, one transaction of its own: chunks keep it short. */
	if (store_run(st, S_PRUNE_SENT, "cannot prune delivered rows") < 0)
		return -1;
	st->nrows -= sqlite3_changes(st->db);
	return sqlite3_changes(st->db);
}

/* Drop up to chunk of the oldest unsent telemetry rows, and count them. */
static long store_drop_chunk(struct store *st, int64_t chunk)
{
	long n, gone = 0;

	/*
	 * The rows and the counter change in one transaction, so every drop is counted
	 * exactly once, whatever happens to the process in between.
	 */
	if (store_run(st, S_BEGIN_W, "cannot begin a transaction") < 0)
		return -1;
	sqlite3_bind_int64(st->stmt[S_DROP_UNSENT], 1, chunk);
	sqlite3_bind_int64(st->stmt[S_DROP_UNSENT], 2,
			   st->in_flight > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)st->in_flight);
	if (store_run(st, S_DROP_UNSENT, "cannot drop unsent telemetry") < 0)
		goto fail;
	n = sqlite3_changes(st->db);
	sqlite3_bind_int64(st->stmt[S_DROPPED_ADD], 1, n);
	if (n > 0 && store_run(st, S_DROPPED_ADD, "cannot count dropped rows") < 0)
		goto fail;
	/* a row set aside that went is counted as dropped, no longer as set aside */
	if (n > 0 && st->naside > 0) {
		if (store_run(st, S_ASIDE_GONE, "cannot forget dropped rows set aside") < 0)
			goto fail;
		gone = sqlite3_changes(st->db);
	}
	if (store_commit(st) < 0)
		return -1;
	st->nrows -= n;
	st->nunsent -= n;
	st->naside -= gone;
	return n;
fail:
	store_rollback(st);
	return -1;
}

/*
 * The size bound, exactly:
 *
 *   on disk   = page_count * page_size          (the database file)
 *             + size of sluice.db-wal           (the WAL)
 *             (+ the -shm index, 32 KiB, not counted)
 *   live      = (page_count - freelist_count) * page_size
 *   wal_allow = max_size / 8, clamped to [64 KiB, 4 MiB]
 *   budget    = max_size - wal_allow
 *
 * Deleting rows does not shrink the file: the pages go to the freelist and later
 * inserts reuse them. So rows are deleted until live <= budget, and free pages beyond
 * the budget are handed back with incremental_vacuum; the file then holds at most
 * budget bytes. The WAL is bounded separately, by checkpoints, to about wal_allow:
 * deleting rows would not help there (a delete is itself written to the WAL). Between
 * two calls the file may grow by what was appended meanwhile, and a reader that holds
 * a snapshot for long keeps the WAL from being reset; both are caught up next call.
 *
 * Deleted first: delivered history, oldest sent first. Then unsent telemetry, oldest
 * seq first, each counted in counters.dropped. Alert transitions are never dropped:
 * when only they remain over the bound, it is logged and they stay.
 */
static int store_enforce_size(struct store *st)
{
	uint64_t budget = st->buf.max_size > st->wal_allow ? st->buf.max_size - st->wal_allow : 0;
	int64_t budget_pages = (int64_t)(budget / STORE_PAGE_SIZE);
	int64_t pages, freepages, live, live0 = -1;
	long n, pruned = 0, dropped = 0;
	int64_t chunk = STORE_CHUNK_FIRST;
	char sql[64];

	for (;;) {
		if (store_pages(st, &pages, &freepages) < 0)
			return -1;
		live = pages - freepages;
		if (live0 < 0)
			live0 = live;
		if (live <= budget_pages)
			break;
		/*
		 * Aim close: every reading dropped past the bound is lost for nothing. Once
		 * deleting has freed pages, estimate the rows the excess needs at the rate
		 * seen so far in this call, and take half: the first rows deleted mostly thin
		 * out pages that others still share, so the early rate overstates the rows
		 * needed. A rate from a few rows says little, so a chunk grows at most
		 * fourfold; until a page came free, it doubles.
		 */
		if (pruned + dropped > 0) {
			int64_t prev = chunk;
			if (live0 > live) {
				chunk = (live - budget_pages) * (pruned + dropped) / (live0 - live) / 2;
				if (chunk > prev * 4)
					chunk = prev * 4;
			} else {
				chunk = prev * 2;
			}
			if (chunk < STORE_CHUNK_MIN)
				chunk = STORE_CHUNK_MIN;
			if (chunk > STORE_CHUNK_MAX)
				chunk = STORE_CHUNK_MAX;
		}
		if (store_wal_bytes(st) > st->wal_allow && store_checkpoint(st) < 0)
			return -1;
		n = store_prune_chunk(st, INT64_MAX, chunk);
		if (n < 0)
			return -1;
		pruned += n;
		if (n == 0) {
			n = store_drop_chunk(st, chunk);
			if (n < 0)
				return -1;
			dropped += n;
		}
		if (n == 0) {
			log_warnx("store: %s holds %" PRId64 " KiB of alert transitions and"
				  " schema, over its budget of %" PRIu64 " KiB (max_size less"
				  " the WAL); alerts are never dropped",
				  st->path, (pages - freepages) * STORE_PAGE_SIZE / 1024,
				  budget / 1024);
			break;
		}
	}
	if (dropped > 0)
		log_warnx("store: buffer full (max_size %" PRIu64 " bytes): dropped the %ld"
			  " oldest unsent readings", st->buf.max_size, dropped);
	if (pruned > 0)
		/* debug: at the bound this is every call, and nothing undelivered is lost */
		log_debug("store: buffer full: deleted %ld delivered rows of history early", pruned);

	/* Give free pages past the budget back: the file shrinks at the next checkpoint. */
	if (store_pages(st, &pages, &freepages) < 0)
		return -1;
	if (pages > budget_pages && freepages > 0) {
		int64_t give = pages - budget_pages;
		if (give > freepages)
			give = freepages;
		snprintf(sql, sizeof sql, "PRAGMA incremental_vacuum(%" PRId64 ")", give);
		if (store_exec(st, sql, "cannot vacuum") < 0)
			return -1;
		if (store_checkpoint(st) < 0)
			return -1;
	}
	return 0;
}

int store_maintain(struct store *st, int64_t now_ms)
{
	int64_t keep = st->buf.keep_sent_ms > 0 ? st->buf.keep_sent_ms : 0;
	int64_t cutoff = now_ms - keep;
	long n, pruned = 0;

	if (store_writable(st) < 0)
		return -1;
	/*
	 * History past keep_sent, on the real-time clock (sent_at is real time): after a
	 * clock step forward, history goes early; after one backward, it stays longer.
	 * Chunked and capped per call so a large expiry never stalls the core loop.
	 */
	while (pruned < STORE_PRUNE_MAX) {
		n = store_prune_chunk(st, cutoff, STORE_CHUNK_MAX);
		if (n < 0)
			return -1;
		pruned += n;
		if (n < STORE_CHUNK_MAX)
			break;
		if (store_wal_bytes(st) > st->wal_allow && store_checkpoint(st) < 0)
			return -1;
	}
	if (pruned > 0)
		log_debug("store: pruned %ld delivered rows older than keep_sent", pruned);
	if (st->buf.max_size > 0 && store_enforce_size(st) < 0)
		return -1;
	if (store_wal_bytes(st) > st->wal_allow && store_checkpoint(st) < 0)
		return -1;
	return 0;
}

/* -------------------------------------------------------------------------------- */
/* reading                                                                           */

int store_stats(struct store *st, struct store_stats *out)
{
	int64_t rows = st->nrows, unsent = st->nunsent, aside = st->naside;
	int64_t oldest, last, dropped, lost, pages, freepages;

	memset(out, 0, sizeof *out);
	if (store_usable(st) < 0)
		return -1;
	/* One read transaction: the numbers come from one snapshot. */
	if (store_run(st, S_BEGIN_R, "cannot begin a read") < 0)
		return -1;
	if ((st->ro && store_count(st, &rows, &unsent, &aside) < 0) ||
	    store_int(st, S_OLDEST_UNSENT, &oldest, "cannot read the backlog age") < 0 ||
	    store_int(st, S_LAST_SEQ, &last, "cannot read the last seq") < 0 ||
	    store_int(st, S_DROPPED_GET, &dropped, "cannot read the drop counter") < 0 ||
	    store_int(st, S_LOST_GET, &lost, "cannot read the lost counter") < 0 ||
	    store_pages(st, &pages, &freepages) < 0) {
		store_rollback(st);
		return -1;
	}
	if (store_commit(st) < 0)
		return -1;
	out->rows = (uint64_t)rows;
	out->unsent = (uint64_t)(unsent - aside);
	out->aside = (uint64_t)aside;
	out->oldest_unsent_ms = oldest;
	out->last_seq = (uint64_t)last;
	out->dropped = (uint64_t)dropped;
	out->lost_at_stop = (uint64_t)lost;
	out->db_bytes = (uint64_t)pages * STORE_PAGE_SIZE + store_wal_bytes(st);
	return 0;
}

long store_recent(struct store *st, const char *topic, size_t max, struct store_row *out)
{
	sqlite3_stmt *s = st->stmt[S_RECENT];
	long n;

	if (store_usable(st) < 0)
		return -1;
	if (max == 0)
		return 0;
	sqlite3_bind_text(s, 1, topic, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, store_limit(max));
	n = store_read_rows(st, s, max, out, "cannot read recent rows");
	sqlite3_clear_bindings(s);
	return n;
}

/* The end of the range of topics starting with prefix: the prefix with its last byte
 * incremented (dropping trailing 0xff bytes); NULL when there is no end (every topic
 * from prefix on matches), or out of memory (*oom). */
static char *store_prefix_end(const char *prefix, bool *oom)
{
	size_t n = strlen(prefix);
	char *end;

	*oom = false;
	while (n > 0 && (unsigned char)prefix[n - 1] == 0xff)
		n--;
	if (n == 0)
		return NULL;
	end = strndup(prefix, n);
	if (!end) {
		*oom = true;
		return NULL;
	}
	end[n - 1] = (char)((unsigned char)end[n - 1] + 1);
	return end;
}

/* Bind the range [prefix, end) to ?1 and ?2; end NULL: no upper bound. */
static int store_bind_prefix(struct store *st, sqlite3_stmt *s, const char *prefix, char **end)
{
	bool oom;

	*end = store_prefix_end(prefix, &oom);
	if (oom) {
		store_setf(st, "%s: out of memory", st->path);
		return -1;
	}
	sqlite3_bind_text(s, 1, prefix, -1, SQLITE_STATIC);
	/* a topic is text: every text sorts below a blob, so a blob bounds "no end" */
	if (*end)
		sqlite3_bind_text(s, 2, *end, -1, SQLITE_STATIC);
	else
		sqlite3_bind_blob(s, 2, "", 0, SQLITE_STATIC);
	return 0;
}

long store_recent_prefix(struct store *st, const char *prefix, size_t max, struct store_row *out)
{
	sqlite3_stmt *s = st->stmt[S_RECENT_PREFIX];
	char *end;
	long n;

	if (store_usable(st) < 0)
		return -1;
	if (max == 0)
		return 0;
	if (store_bind_prefix(st, s, prefix, &end) < 0)
		return -1;
	sqlite3_bind_int64(s, 3, store_limit(max));
	n = store_read_rows(st, s, max, out, "cannot read recent rows");
	sqlite3_clear_bindings(s);
	free(end);
	return n;
}

long store_latest(struct store *st, const char *prefix, struct store_row **out)
{
	sqlite3_stmt *s = st->stmt[S_LATEST];
	struct store_row *rows = NULL;
	size_t n = 0, cap = 0;
	char *end;
	long got;

	*out = NULL;
	if (store_usable(st) < 0)
		return -1;
	if (store_bind_prefix(st, s, prefix, &end) < 0)
		return -1;
	/* One read transaction, so that rows fetched in chunks come from one snapshot. */
	if (store_run(st, S_BEGIN_R, "cannot begin a read") < 0)
		goto fail;
	do {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct store_row *nr = realloc(rows, nc * sizeof *nr);
			if (!nr) {
				store_setf(st, "%s: latest rows: out of memory", st->path);
				store_rollback(st);
				goto fail;
			}
			rows = nr;
			cap = nc;
		}
		/* store_read_rows resets the statement when it returns, so read it all in
		 * one go: ask for what is left of the array, and grow while it fills up */
		got = store_read_rows_more(st, s, cap - n, rows + n, "cannot read the latest rows");
		if (got < 0) {
			store_rollback(st);
			goto fail;
		}
		n += (size_t)got;
	} while (n == cap);
	sqlite3_reset(s);
	if (store_commit(st) < 0)
		goto fail;
	sqlite3_clear_bindings(s);
	free(end);
	*out = rows;
	return (long)n;
fail:
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	for (size_t i = 0; i < n; i++)
		store_row_clear(&rows[i]);
	free(rows);
	free(end);
	return -1;
}

int store_meta_get(struct store *st, const char *key, char **value)
{
	sqlite3_stmt *s = st->stmt[S_META_GET];
	int rc;

	*value = NULL;
	if (store_usable(st) < 0)
		return -1;
	/* a pair the last stop kept in the spill file is newer than the database's */
	for (size_t i = st->spill_pending ? st->spill_in.nmeta : 0; i-- > 0;) {
		if (strcmp(st->spill_in.meta[i].key, key) != 0)
			continue;
		if (!(*value = strdup(st->spill_in.meta[i].value))) {
			store_setf(st, "%s: meta %s: out of memory", st->path, key);
			return -1;
		}
		return 0;
	}
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) != SQLITE_NULL) {
		*value = store_coldup(s, 0);
		if (!*value) {
			store_setf(st, "%s: meta %s: out of memory", st->path, key);
			rc = SQLITE_NOMEM;
		}
	} else if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
		store_sqlerr(st, "cannot read meta");
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

int store_meta_put(struct store *st, const char *key, const char *value)
{
	int id = value ? S_META_PUT : S_META_DEL;
	sqlite3_stmt *s = st->stmt[id];
	int r;

	if (store_writable(st) < 0)
		return -1;
	/* the spill's pairs are older than this one: in first, or they would overwrite it */
	if (st->spill_pending && store_take_spill(st) < 0)
		return -1;
	sqlite3_bind_text(s, 1, key, -1, SQLITE_STATIC);
	if (value)
		sqlite3_bind_text(s, 2, value, -1, SQLITE_STATIC);
	/* A single statement is its own transaction. */
	r = store_run(st, id, "cannot write meta");
	sqlite3_clear_bindings(s);
	return r;
}

/* -------------------------------------------------------------------------------- */
/* the spill file: rows a stopping daemon held in memory (spill.h)                   */

static uint64_t store_spill_reserve(const struct store *st)
{
	uint64_t r = st->buf.max_size ? st->buf.max_size / 16 : STORE_SPILL_MAX;

	return r < STORE_SPILL_MIN ? STORE_SPILL_MIN : r > STORE_SPILL_MAX ? STORE_SPILL_MAX : r;
}

/* The id of the last spill taken in (meta spill_taken), 0 when none. */
static uint64_t store_spill_taken_id(struct store *st)
{
	sqlite3_stmt *s = st->stmt[S_META_GET];
	uint64_t id = 0;

	sqlite3_bind_text(s, 1, STORE_SPILL_TAKEN, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_text(s, 0))
		id = strtoull((const char *)sqlite3_column_text(s, 0), NULL, 10);
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return id;
}

/*
 * What the last stop kept in the spill file goes into the outbox before any other row:
 * one transaction with its meta pairs (the alert engine's state as the rows left it),
 * the count of rows lost at that stop, and the spill's id as meta spill_taken. Then the
 * file is emptied. A crash in between leaves a file whose id the database has: the next
 * open empties it, taking nothing twice. Seqs are given here: rows in memory had none.
 */
static int store_take_spill(struct store *st)
{
	struct spill_content *c = &st->spill_in;
	char idtext[24], err[512];

	snprintf(idtext, sizeof idtext, "%" PRIu64, c->id);
	if (c->nrows > 0)
		store_raise_ceiling(st, c->nrows);
	if (store_run(st, S_BEGIN_W, "cannot begin a transaction") < 0)
		goto fail;
	if (store_insert_rows(st, c->rows, c->nrows) < 0)
		goto rollback;
	for (size_t i = 0; i < c->nmeta; i++)
		if (store_meta_set(st, c->meta[i].key, c->meta[i].value) < 0)
			goto rollback;
	if (c->lost > 0) {
		sqlite3_bind_int64(st->stmt[S_LOST_ADD], 1,
				   c->lost > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)c->lost);
		if (store_run(st, S_LOST_ADD, "cannot count the rows lost at the last stop") < 0)
			goto rollback;
	}
	if (c->id && store_meta_set(st, STORE_SPILL_TAKEN, idtext) < 0)
		goto rollback;
	if (store_commit(st) < 0)
		goto fail;
	if (c->nrows > 0) {
		st->next_seq = c->rows[c->nrows - 1].seq + 1;
		log_warnx("store: stored the %zu rows kept in %s at the last stop (seqs %" PRIu64
			  "..%" PRIu64 ")", c->nrows, st->spill_path, c->rows[0].seq,
			  c->rows[c->nrows - 1].seq);
	}
	if (c->lost > 0)
		log_errx("store: %" PRIu64 " rows that waited in memory were lost at the last stop"
			 " (counted in lost_at_stop)", c->lost);
	st->nrows += (int64_t)c->nrows;
	st->nunsent += (int64_t)c->nrows;
	if (c->id)
		st->spill_taken = c->id;
	if (c->id && st->spill && spill_clear(st->spill, err, sizeof err) < 0)
		log_warnx("store: %s (its rows are stored; they will not be taken again)", err);
	spill_content_free(c);
	memset(c, 0, sizeof *c);
	st->spill_pending = false;
	st->spill_warned = false;
	return 0;
rollback:
	store_rollback(st);
fail:
	for (size_t i = 0; i < c->nrows; i++)
		c->rows[i].seq = 0;
	if (!st->spill_warned)
		log_warnx("store: the %zu rows kept in %s at the last stop cannot be stored yet"
			  " (%s); they go in first once the store writes", c->nrows,
			  st->spill_path, st->err);
	st->spill_warned = true;
	return -1;
}

/* At open, after the database: the spill file's reserve, and what the last stop left. */
static void store_spill_start(struct store *st)
{
	struct spill_content *c = &st->spill_in;
	char err[512];

	st->spill = spill_open(st->spill_path, store_spill_reserve(st), c, err, sizeof err);
	if (!st->spill)
		log_warnx("store: %s: rows waiting in memory at a stop while the store cannot"
			  " write would be lost", err);
	st->spill_taken = store_spill_taken_id(st);
	if (c->id == 0 && c->lost == 0)
		return;
	if (c->id && c->id == st->spill_taken) {
		/* taken in already: the last start stopped between its commit and here */
		if (spill_clear(st->spill, err, sizeof err) < 0)
			log_warnx("store: %s", err);
		log_info("store: %s had been stored already; emptied", st->spill_path);
		spill_content_free(c);
		memset(c, 0, sizeof *c);
		return;
	}
	st->spill_pending = true;
	(void)store_take_spill(st); /* failing, it says so, and is tried before each write */
}

size_t store_spill(struct store *st, const struct store_row *rows, size_t n, const char *key,
		   const char *value)
{
	char err[512];
	size_t kept = 0;

	if (n == 0)
		return 0;
	if (st->ro || !st->spill) {
		snprintf(err, sizeof err, "%s could not be opened at start", st->spill_path);
		goto lost;
	}
	/* still the contents taken in (emptying it failed then): never append to those */
	if (st->spill_taken && spill_id(st->spill) == st->spill_taken &&
	    spill_clear(st->spill, err, sizeof err) < 0)
		goto lost;
	if (spill_append(st->spill, rows, n, key, value, &kept, err, sizeof err) < 0)
		goto lost;
	if (kept == n)
		log_warnx("store: the %zu rows that waited in memory are kept in %s: the next"
			  " start stores them before anything else", n, st->spill_path);
	else
		log_errx("store: %zu of the %zu rows that waited in memory are kept in %s, the"
			 " other %zu (the oldest readings) are lost: counted in lost_at_stop at the"
			 " next start", kept, n, st->spill_path, n - kept);
	return n - kept;
lost:
	log_errx("store: the %zu rows that waited in memory are lost (%s), and neither the"
		 " store nor the spill file can keep them (%s); this count is in this log only",
		 n, st->err, err);
	return n;
}
