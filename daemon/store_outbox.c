/*
 * store_outbox: what goes into the database and out of it — devices and their
 * descriptions, appends, the backlog's fetch, delivery (the mark, transitions one by
 * one), rows set aside, pruning and the size bound, the counts, what sluicectl reads,
 * meta, and taking in the spill file. store.c owns the handle, the schema and the
 * files; store.c's opening comment says why each transaction here is durable.
 *
 * Never here: MQTT, JSON (a body is opaque text, values are store_codec.c's bytes),
 * unbounded work in one call.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "clock.h"
#include "log.h"
#include "store_int.h"

/*
 * The delivery mark is written at most this often, with an append (in its transaction:
 * no page write of its own but the mark's page), or by store_maintain when no append
 * came: one small row every few seconds instead of a write per message. A crash sends
 * the readings acknowledged since the last write again (at least once): a few seconds
 * of them.
 */
#define DELIVERED_WRITE_MS 5000
/* The chains' heads are written this often (and at a clean stop): a reader starts from
 * them and looks at most this far back for newer readings. */
#define HEADS_EVERY_MS 60000

/* Rows per deleting transaction: small enough to bound the WAL and the pause. */
#define STORE_CHUNK_MIN 16
#define STORE_CHUNK_FIRST 64
#define STORE_CHUNK_MAX 16384
/* keep_sent pruning per store_maintain call; the rest waits for the next call. */
#define STORE_PRUNE_MAX 131072
/* sluicectl tail: how many readings a reader scans back for a device's newest one past
 * the heads (HEADS_EVERY_MS of them, at most, unless the daemon crashed). */
#define STORE_BACK_MAX 4000000

/* The spill file's reserve (spill.h): a sixteenth of max_size, between 64 KiB and
 * 4 MiB — 4 MiB holds the 20,000 rows the core keeps in memory at most. */
#define STORE_SPILL_MIN  ((uint64_t)64 << 10)
#define STORE_SPILL_MAX  ((uint64_t)4 << 20)
/* meta: the id of the last spill taken in, committed with its rows (never twice) */
#define STORE_SPILL_TAKEN "spill_taken"
#define STORE_PAGE 4096

static uint64_t store_committed(const struct store *st)
{
	uint64_t m = st->rd_max;

	if (st->ev_max > m)
		m = st->ev_max;
	if (st->leg_max > m)
		m = st->leg_max;
	return m;
}

void store_set_in_flight(struct store *st, uint64_t seq)
{
	st->in_flight = seq;
}

int store_counter_get(struct store *st, const char *name, int64_t *v)
{
	sqlite3_bind_text(st->stmt[S_COUNTER_GET], 1, name, -1, SQLITE_STATIC);
	return store_int(st, S_COUNTER_GET, v, "cannot read a counter");
}

int store_counter_add(struct store *st, const char *name, int64_t v)
{
	sqlite3_stmt *s = st->stmt[S_COUNTER_ADD];

	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, v);
	return store_run(st, S_COUNTER_ADD, "cannot count");
}

/* counters.last_seq, before rows that may hold the highest seq are deleted */
static int store_keep_last(struct store *st)
{
	sqlite3_stmt *s = st->stmt[S_COUNTER_SET];

	sqlite3_bind_text(s, 1, "last_seq", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, store_i64(st->next_seq ? st->next_seq - 1 : store_committed(st)));
	return store_run(st, S_COUNTER_SET, "cannot record the last seq");
}

/* -------------------------------------------------------------------------------- */
/* rows                                                                              */

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
	free(r->vals);
	r->topic = NULL;
	r->body = NULL;
	r->vals = NULL;
	r->nvals = 0;
}

/* A text row from columns seq, ts, topic, body, retain. false: out of memory. */
static bool store_text_row(sqlite3_stmt *s, int kind, struct store_row *r)
{
	*r = (struct store_row){ .seq = (uint64_t)sqlite3_column_int64(s, 0), .kind = kind,
				 .ts_ms = sqlite3_column_int64(s, 1),
				 .topic = store_coldup(s, 2), .body = store_coldup(s, 3),
				 .retain = sqlite3_column_int(s, 4) != 0 };
	if (!r->topic || !r->body) {
		store_row_clear(r);
		return false;
	}
	return true;
}

/* A reading from columns seq, dev, ts, vals. false: out of memory. */
static bool store_reading_row(sqlite3_stmt *s, struct store_row *r)
{
	const void *b = sqlite3_column_blob(s, 3);
	int n = sqlite3_column_bytes(s, 3);

	*r = (struct store_row){ .seq = (uint64_t)sqlite3_column_int64(s, 0), .kind = ROW_TELEMETRY,
				 .dev = (uint32_t)sqlite3_column_int64(s, 1),
				 .ts_ms = sqlite3_column_int64(s, 2) };
	r->vals = malloc(n > 0 ? (size_t)n : 1);
	if (!r->vals)
		return false;
	if (n > 0)
		memcpy(r->vals, b, (size_t)n);
	r->nvals = n > 0 ? (size_t)n : 0;
	return true;
}

/*
 * Step s into out[0..max) (readings when reading, else text rows of kind), then reset
 * it. Returns the count, or -1 with nothing left to free.
 */
static long store_read_rows(struct store *st, sqlite3_stmt *s, bool reading, int kind,
			    size_t max, struct store_row *out, const char *what)
{
	size_t n = 0;
	int rc = SQLITE_ROW;

	while (n < max && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (!(reading ? store_reading_row(s, &out[n]) : store_text_row(s, kind, &out[n]))) {
			store_row_clear(&out[n]);
			store_setf(st, "%s: %s: out of memory", st->path, what);
			goto fail;
		}
		n++;
	}
	if (n < max && rc != SQLITE_DONE) {
		store_sqlerr(st, what);
		goto fail;
	}
	sqlite3_reset(s);
	return (long)n;
fail:
	sqlite3_reset(s);
	for (size_t i = 0; i < n; i++)
		store_row_clear(&out[i]);
	return -1;
}

/* The row of seq from whichever table holds it: 1 found, 0 none, -1 error. */
static int store_load_row(struct store *st, uint64_t seq, struct store_row *r)
{
	static const struct { int id; bool reading; int kind; } where[] = {
		{ S_READING_GET, true, ROW_TELEMETRY },
		{ S_EVENT_GET, false, ROW_ALERT },
		{ S_LEGACY_GET, false, ROW_TELEMETRY },
	};

	for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
		sqlite3_stmt *s = st->stmt[where[i].id];
		long n;

		sqlite3_bind_int64(s, 1, store_i64(seq));
		n = store_read_rows(st, s, where[i].reading, where[i].kind, 1, r, "cannot read a row");
		if (n != 0)
			return n < 0 ? -1 : 1;
	}
	return 0;
}

/* -------------------------------------------------------------------------------- */
/* devices                                                                           */

static int store_cmp_cur(const void *a, const void *b)
{
	const struct store_devcur *x = a, *y = b;

	return x->dev < y->dev ? -1 : x->dev > y->dev;
}

static const struct device_cfg *store_cur(const struct store *st, uint32_t dev)
{
	struct store_devcur key = { .dev = dev }, *c;

	if (!st->ncur)
		return NULL;
	c = bsearch(&key, st->cur, st->ncur, sizeof *st->cur, store_cmp_cur);
	return c ? c->d : NULL;
}

/* Write the descriptions not yet in the database, in the open transaction. */
static int store_write_devices(struct store *st)
{
	sqlite3_stmt *s = st->stmt[S_INS_DEVICE];

	for (size_t i = 0; i < st->npend; i++) {
		struct store_devpend *p = &st->pend[i];

		sqlite3_bind_int64(s, 1, p->dev);
		sqlite3_bind_text(s, 2, p->id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, (int64_t)p->hash);
		sqlite3_bind_int64(s, 4, clock_real_ms());
		sqlite3_bind_blob(s, 5, p->blob, (int)p->len, SQLITE_STATIC);
		if (store_run(st, S_INS_DEVICE, "cannot record a device") < 0) {
			sqlite3_clear_bindings(s);
			return -1;
		}
	}
	sqlite3_clear_bindings(s);
	return 0;
}

static void store_devices_written(struct store *st)
{
	for (size_t i = 0; i < st->npend; i++)
		free(st->pend[i].blob);
	st->npend = 0;
}

/* The number of a description: pending, stored, or a new one (pending). 0: out of
 * memory or a database error. Takes blob (freed, or kept in pend). */
static uint32_t store_dev_number(struct store *st, const char *id, unsigned char *blob,
				 size_t len)
{
	sqlite3_stmt *s = st->stmt[S_FIND_DEVICE];
	uint64_t h = store_hash(blob, len);
	uint32_t dev = 0;
	struct store_devpend *np;
	int rc;

	for (size_t i = 0; i < st->npend && !dev; i++)
		if (st->pend[i].hash == h && st->pend[i].len == len &&
		    memcmp(st->pend[i].blob, blob, len) == 0)
			dev = st->pend[i].dev;
	sqlite3_bind_int64(s, 1, (int64_t)h);
	while (!dev && (rc = sqlite3_step(s)) == SQLITE_ROW)
		if ((size_t)sqlite3_column_bytes(s, 1) == len &&
		    memcmp(sqlite3_column_blob(s, 1), blob, len) == 0)
			dev = (uint32_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (dev) {
		free(blob);
		return dev;
	}
	np = realloc(st->pend, (st->npend + 1) * sizeof *np);
	if (!np) {
		free(blob);
		return 0;
	}
	st->pend = np;
	np = &st->pend[st->npend++];
	*np = (struct store_devpend){ .dev = st->next_dev++, .hash = h, .blob = blob, .len = len };
	snprintf(np->id, sizeof np->id, "%s", id);
	return np->dev;
}

int store_devices(struct store *st, const struct device_cfg *devs, size_t n, uint32_t *ids)
{
	struct store_devcur *cur = calloc(n ? n : 1, sizeof *cur);

	if (!cur || store_writable(st) < 0) {
		free(cur);
		if (st->db && !st->ro)
			store_setf(st, "%s: devices: out of memory", st->path);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		unsigned char *blob;
		size_t len;

		if (store_dev_encode(&devs[i], &blob, &len) < 0 ||
		    !(ids[i] = store_dev_number(st, devs[i].id, blob, len))) {
			store_setf(st, "%s: devices: out of memory", st->path);
			free(cur);
			return -1;
		}
		cur[i] = (struct store_devcur){ .dev = ids[i], .d = &devs[i] };
	}
	qsort(cur, n, sizeof *cur, store_cmp_cur);
	free(st->cur);
	st->cur = cur;
	st->ncur = n;
	/* written now when the store writes; else with the next append that does */
	if (st->npend && store_run(st, S_BEGIN_W, "cannot begin a transaction") == 0) {
		if (store_write_devices(st) == 0 && store_commit(st) == 0)
			store_devices_written(st);
		else
			store_rollback(st);
	}
	return 0;
}

const struct device_cfg *store_device(struct store *st, uint32_t dev)
{
	const struct device_cfg *d = store_cur(st, dev);
	struct store_devcache *slot = &st->cache[0];
	struct device_cfg *nd = NULL;

	if (d)
		return d;
	for (size_t i = 0; i < STORE_DEVCACHE; i++) {
		if (st->cache[i].d && st->cache[i].dev == dev) {
			st->cache[i].used = ++st->cache_tick;
			return st->cache[i].d;
		}
		if (!st->cache[i].d || st->cache[i].used < slot->used)
			slot = &st->cache[i];
	}
	for (size_t i = 0; i < st->npend && !nd; i++)
		if (st->pend[i].dev == dev && !(nd = store_dev_decode(st->pend[i].blob, st->pend[i].len)))
			goto bad;
	if (!nd) {
		sqlite3_stmt *s = st->stmt[S_GET_DEVICE];
		int rc;

		if (store_usable(st) < 0)
			return NULL;
		sqlite3_bind_int64(s, 1, dev);
		rc = sqlite3_step(s);
		if (rc == SQLITE_ROW)
			nd = store_dev_decode(sqlite3_column_blob(s, 0),
					      (size_t)sqlite3_column_bytes(s, 0));
		else if (rc != SQLITE_DONE)
			store_sqlerr(st, "cannot read a device");
		sqlite3_reset(s);
		if (rc != SQLITE_ROW) {
			if (rc == SQLITE_DONE)
				store_setf(st, "%s: no device %" PRIu32 " is recorded", st->path, dev);
			return NULL;
		}
		if (!nd)
			goto bad;
	}
	store_dev_free(slot->d);
	*slot = (struct store_devcache){ .dev = dev, .d = nd, .used = ++st->cache_tick };
	return nd;
bad:
	store_setf(st, "%s: device %" PRIu32 "'s description is damaged (or out of memory)",
		   st->path, dev);
	return NULL;
}

/* -------------------------------------------------------------------------------- */
/* the chains' heads: the newest reading of each device id                           */

static uint64_t store_strhash(const char *s)
{
	return store_hash(s, strlen(s));
}

/* The slot of id, or of where it goes; (size_t)-1 when the table is not there. */
static size_t heads_find(const struct store_heads *h, const char *id)
{
	size_t i;

	if (!h->cap)
		return (size_t)-1;
	for (i = store_strhash(id) & (h->cap - 1); h->id[i]; i = (i + 1) & (h->cap - 1))
		if (strcmp(h->id[i], id) == 0)
			break;
	return i;
}

static int heads_grow(struct store_heads *h)
{
	struct store_heads n = { .cap = h->cap ? h->cap * 2 : 256 };

	n.id = calloc(n.cap, sizeof *n.id);
	n.seq = calloc(n.cap, sizeof *n.seq);
	n.dirty = calloc(n.cap, sizeof *n.dirty);
	if (!n.id || !n.seq || !n.dirty) {
		free(n.id);
		free(n.seq);
		free(n.dirty);
		return -1;
	}
	for (size_t i = 0; i < h->cap; i++) {
		size_t k;

		if (!h->id[i])
			continue;
		k = heads_find(&n, h->id[i]);
		n.id[k] = h->id[i];
		n.seq[k] = h->seq[i];
		n.dirty[k] = h->dirty[i];
		n.n++;
	}
	n.any_dirty = h->any_dirty;
	free(h->id);
	free(h->seq);
	free(h->dirty);
	*h = n;
	return 0;
}

/* The slot of id, made when missing; (size_t)-1 out of memory. */
static size_t heads_slot(struct store_heads *h, const char *id)
{
	size_t i;

	if ((h->n + 1) * 2 > h->cap && heads_grow(h) < 0)
		return (size_t)-1;
	i = heads_find(h, id);
	if (!h->id[i]) {
		if (!(h->id[i] = strdup(id)))
			return (size_t)-1;
		h->seq[i] = 0;
		h->dirty[i] = false;
		h->n++;
	}
	return i;
}

static void heads_free(struct store_heads *h)
{
	for (size_t i = 0; i < h->cap; i++)
		free(h->id[i]);
	free(h->id);
	free(h->seq);
	free(h->dirty);
	memset(h, 0, sizeof *h);
}

/* The device id a reading's device number stands for (NULL: unknown, store_error). */
static const char *store_dev_id(struct store *st, uint32_t dev)
{
	const struct device_cfg *d = store_device(st, dev);

	return d ? d->id : NULL;
}

/* The heads table, then the readings written after it (a crash since) over it. */
static int store_heads_load(struct store *st)
{
	sqlite3_stmt *s = NULL;
	int64_t at = 0;
	int rc;

	if (store_counter_get(st, "heads_at", &at) < 0)
		return -1;
	st->heads_at = at > 0 ? (uint64_t)at : 0;
	if (sqlite3_prepare_v2(st->db, "SELECT device, seq FROM heads", -1, &s, NULL) != SQLITE_OK)
		return store_sqlerr(st, "cannot read the heads");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		size_t i = heads_slot(&st->heads, (const char *)sqlite3_column_text(s, 0));
		if (i == (size_t)-1)
			break;
		st->heads.seq[i] = (uint64_t)sqlite3_column_int64(s, 1);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE) {
		if (rc == SQLITE_ROW)
			store_setf(st, "%s: heads: out of memory", st->path);
		else
			store_sqlerr(st, "cannot read the heads");
		return -1;
	}
	if (sqlite3_prepare_v2(st->db, "SELECT r.seq, d.device FROM readings r JOIN devices d"
			       " ON d.dev = r.dev WHERE r.seq > ?1 ORDER BY r.seq", -1, &s,
			       NULL) != SQLITE_OK)
		return store_sqlerr(st, "cannot read the newest readings");
	sqlite3_bind_int64(s, 1, store_i64(st->heads_at));
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		size_t i = heads_slot(&st->heads, (const char *)sqlite3_column_text(s, 1));
		if (i == (size_t)-1)
			break;
		st->heads.seq[i] = (uint64_t)sqlite3_column_int64(s, 0);
		st->heads.dirty[i] = true;
		st->heads.any_dirty = true;
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return rc == SQLITE_ROW ? (store_setf(st, "%s: heads: out of memory", st->path), -1)
					: store_sqlerr(st, "cannot read the newest readings");
	return 0;
}

/* The heads that changed, and how far they cover, in one transaction of their own. */
static int store_heads_write(struct store *st)
{
	sqlite3_stmt *s = st->stmt[S_HEAD_PUT];
	sqlite3_stmt *c = st->stmt[S_COUNTER_SET];

	if (!st->heads.any_dirty && st->heads_at >= st->rd_max)
		return 0;
	if (store_run(st, S_BEGIN_W, "cannot begin a transaction") < 0)
		return -1;
	for (size_t i = 0; i < st->heads.cap; i++) {
		if (!st->heads.id[i] || !st->heads.dirty[i])
			continue;
		sqlite3_bind_text(s, 1, st->heads.id[i], -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, store_i64(st->heads.seq[i]));
		if (store_run(st, S_HEAD_PUT, "cannot write a head") < 0)
			goto fail;
	}
	sqlite3_bind_text(c, 1, "heads_at", -1, SQLITE_STATIC);
	sqlite3_bind_int64(c, 2, store_i64(st->rd_max));
	if (store_run(st, S_COUNTER_SET, "cannot write the heads") < 0 || store_commit(st) < 0)
		goto fail;
	for (size_t i = 0; i < st->heads.cap; i++)
		st->heads.dirty[i] = false;
	st->heads.any_dirty = false;
	st->heads_at = st->rd_max;
	st->heads_written = clock_mono_ms();
	return 0;
fail:
	sqlite3_clear_bindings(s);
	store_rollback(st);
	return -1;
}

/* -------------------------------------------------------------------------------- */
/* open and close (store.c calls these)                                              */

/* Counts and maxima of one table: count(*) and max(seq), plus those unsent (where). */
static int store_table_counts(struct store *st, const char *table, const char *unsent,
			      int64_t *rows, int64_t *nunsent, uint64_t *max)
{
	char sql[256];
	sqlite3_stmt *s = NULL;
	int rc;

	snprintf(sql, sizeof sql, "SELECT count(*), max(seq), (SELECT count(*) FROM %s WHERE %s)"
		 " FROM %s", table, unsent, table);
	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return store_sqlerr(st, "cannot count rows");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*rows = sqlite3_column_int64(s, 0);
		*max = (uint64_t)sqlite3_column_int64(s, 1);
		*nunsent = sqlite3_column_int64(s, 2);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return store_sqlerr(st, "cannot count rows");
	return 0;
}

static int store_read_hwm(struct store *st, uint64_t *hwm)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*hwm = 0;
	if (sqlite3_prepare_v2(st->db, "SELECT upto FROM delivered ORDER BY rowid DESC LIMIT 1",
			       -1, &s, NULL) != SQLITE_OK)
		return store_sqlerr(st, "cannot read the delivery mark");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*hwm = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0
						     : store_sqlerr(st, "cannot read the delivery mark");
}

int store_outbox_load(struct store *st)
{
	int64_t above, aside_below, next;
	char sql[256];

	/* a reader reads the mark when it needs it, as it is then */
	if (st->ro)
		return 0;
	if (store_read_hwm(st, &st->hwm) < 0)
		return -1;
	st->hwm_disk = st->hwm;
	if (store_table_counts(st, "readings", "0", &st->n_readings, &above, &st->rd_max) < 0 ||
	    store_table_counts(st, "events", "sent_at IS NULL", &st->n_events, &st->ev_unsent,
			       &st->ev_max) < 0 ||
	    store_table_counts(st, "legacy", "kind = 0 AND sent_at IS NULL", &st->n_legacy,
			       &st->leg_unsent, &st->leg_max) < 0)
		return -1;
	snprintf(sql, sizeof sql, "SELECT count(*) FROM readings WHERE seq > %" PRIu64, st->hwm);
	if (store_exec(st, "SELECT 1", "cannot read") < 0)
		return -1;
	{
		sqlite3_stmt *s = NULL;
		int rc = SQLITE_ERROR;

		if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK &&
		    (rc = sqlite3_step(s)) == SQLITE_ROW)
			above = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
		if (rc != SQLITE_ROW)
			return store_sqlerr(st, "cannot count the backlog");
		snprintf(sql, sizeof sql, "SELECT count(*) FROM aside a JOIN readings r ON r.seq ="
			 " a.seq WHERE a.seq <= %" PRIu64, st->hwm);
		rc = SQLITE_ERROR;
		if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK &&
		    (rc = sqlite3_step(s)) == SQLITE_ROW)
			aside_below = sqlite3_column_int64(s, 0);
		sqlite3_finalize(s);
		if (rc != SQLITE_ROW)
			return store_sqlerr(st, "cannot count the rows set aside");
		rc = SQLITE_ERROR;
		if (sqlite3_prepare_v2(st->db, "SELECT count(*), (SELECT coalesce(max(dev), 0) + 1"
				       " FROM devices) FROM aside", -1, &s, NULL) == SQLITE_OK &&
		    (rc = sqlite3_step(s)) == SQLITE_ROW) {
			st->naside = sqlite3_column_int64(s, 0);
			next = sqlite3_column_int64(s, 1);
		}
		sqlite3_finalize(s);
		if (rc != SQLITE_ROW)
			return store_sqlerr(st, "cannot count the rows set aside");
	}
	st->rd_undelivered = above + aside_below;
	st->next_dev = (uint32_t)next;
	st->hwm_at = clock_mono_ms();
	if (store_heads_load(st) < 0)
		return -1;
	return 0;
}

void store_outbox_free(struct store *st)
{
	free(st->cur);
	st->cur = NULL;
	st->ncur = 0;
	store_devices_written(st);
	free(st->pend);
	st->pend = NULL;
	for (size_t i = 0; i < STORE_DEVCACHE; i++)
		store_dev_free(st->cache[i].d);
	memset(st->cache, 0, sizeof st->cache);
	heads_free(&st->heads);
	for (size_t i = 0; i < st->npaside; i++)
		free(st->paside[i].reason);
	free(st->paside);
	st->paside = NULL;
	st->npaside = 0;
}

/* The delivery mark as it is in memory, in the open transaction. */
static int store_put_mark(struct store *st)
{
	sqlite3_stmt *s = st->stmt[S_DELIVERED_PUT];

	sqlite3_bind_int64(s, 1, clock_real_ms());
	sqlite3_bind_int64(s, 2, store_i64(st->hwm));
	return store_run(st, S_DELIVERED_PUT, "cannot write the delivery mark");
}

/* The delivery mark in a transaction of its own, when it moved. */
static int store_write_mark(struct store *st)
{
	if (st->hwm == st->hwm_disk)
		return 0;
	if (store_run(st, S_BEGIN_W, "cannot begin a transaction") < 0)
		return -1;
	if (store_put_mark(st) < 0) {
		store_rollback(st);
		return -1;
	}
	if (store_commit(st) < 0)
		return -1;
	st->hwm_disk = st->hwm;
	st->hwm_at = clock_mono_ms();
	return 0;
}

int store_flush(struct store *st)
{
	if (store_writable(st) < 0)
		return -1;
	return store_outbox_flush(st);
}

int store_outbox_flush(struct store *st)
{
	int r = 0;

	if (store_write_mark(st) < 0)
		r = -1;
	if (store_heads_write(st) < 0)
		r = -1;
	if (st->next_seq && st->next_seq - 1 > store_committed(st) && store_keep_last(st) < 0)
		r = -1;
	return r;
}

/* -------------------------------------------------------------------------------- */
/* appending                                                                         */

int store_append(struct store *st, struct store_row *rows, size_t n, char *err, size_t errlen)
{
	return store_append_meta(st, rows, n, NULL, NULL, err, errlen);
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

/* What an append changed, to be undone if it rolls back and counted if it commits. */
struct append_undo {
	uint64_t next_seq;
	size_t *slot;          /* heads slots changed, with what they held */
	uint64_t *old;
	bool *olddirty;
	size_t nslot;
	int64_t readings, above, events, legacy;
	uint64_t rd_max, ev_max, leg_max;
	int64_t aside, aside_below;
	size_t paside_done;
};

/* The chain: how far back this device's previous reading is (0: none), and this one as
 * its newest. */
static int store_chain(struct store *st, const struct store_row *r, struct append_undo *u,
		       int64_t *prev)
{
	const char *id = store_dev_id(st, r->dev);
	size_t i;

	*prev = 0;
	if (!id)
		return -1;
	i = heads_slot(&st->heads, id);
	if (i == (size_t)-1) {
		store_setf(st, "%s: heads: out of memory", st->path);
		return -1;
	}
	if (st->heads.seq[i] && st->heads.seq[i] < r->seq)
		*prev = (int64_t)(r->seq - st->heads.seq[i]);
	if (st->heads.seq[i] < r->seq) {
		u->slot[u->nslot] = i;
		u->old[u->nslot] = st->heads.seq[i];
		u->olddirty[u->nslot] = st->heads.dirty[i];
		u->nslot++;
		st->heads.seq[i] = r->seq;
		st->heads.dirty[i] = true;
		st->heads.any_dirty = true;
	}
	return 0;
}

/* Insert rows in the open transaction, each given its seq. -1: the caller rolls back. */
static int store_insert_rows(struct store *st, struct store_row *rows, size_t n,
			     struct append_undo *u)
{
	for (size_t i = 0; i < n; i++) {
		struct store_row *r = &rows[i];
		sqlite3_stmt *s;
		int id;
		int64_t prev = 0;

		if ((r->kind != ROW_TELEMETRY && r->kind != ROW_ALERT) ||
		    (r->dev ? r->kind != ROW_TELEMETRY || !r->vals : !r->topic || !r->body)) {
			store_setf(st, "%s: cannot append row %zu of %zu: neither a reading (device"
				   " and values) nor a text row (topic and body)", st->path, i + 1, n);
			goto fail;
		}
		if (!r->seq) {
			r->seq = st->next_seq++;
			store_seq_mark(&st->seq, r->seq);
		}
		if (r->kind == ROW_TELEMETRY && r->dev) {
			id = S_INS_READING;
			if (store_chain(st, r, u, &prev) < 0)
				goto fail;
			s = st->stmt[id];
			sqlite3_bind_int64(s, 1, store_i64(r->seq));
			sqlite3_bind_int64(s, 2, r->dev);
			sqlite3_bind_int64(s, 3, r->ts_ms);
			sqlite3_bind_int64(s, 4, prev);
			/* STATIC: the caller's bytes outlive the step; bindings are cleared below */
			sqlite3_bind_blob(s, 5, r->vals, (int)r->nvals, SQLITE_STATIC);
			u->readings++;
			u->above += r->seq > st->hwm;
			if (r->seq > u->rd_max)
				u->rd_max = r->seq;
		} else {
			/* a transition, or (from a spill of the release before) a reading as text */
			id = r->kind == ROW_ALERT ? S_INS_EVENT : S_INS_LEGACY;
			s = st->stmt[id];
			sqlite3_bind_int64(s, 1, store_i64(r->seq));
			sqlite3_bind_int64(s, 2, r->ts_ms);
			sqlite3_bind_text(s, 3, r->topic, -1, SQLITE_STATIC);
			sqlite3_bind_text(s, 4, r->body, -1, SQLITE_STATIC);
			sqlite3_bind_int(s, 5, r->retain ? 1 : 0);
			if (r->kind == ROW_ALERT) {
				u->events++;
				if (r->seq > u->ev_max)
					u->ev_max = r->seq;
			} else {
				u->legacy++;
				if (r->seq > u->leg_max)
					u->leg_max = r->seq;
			}
		}
		if (sqlite3_step(s) != SQLITE_DONE) {
			char what[64];
			snprintf(what, sizeof what, "cannot append row %zu of %zu", i + 1, n);
			store_sqlerr(st, what);
			sqlite3_reset(s);
			sqlite3_clear_bindings(s);
			goto fail;
		}
		sqlite3_reset(s);
		sqlite3_clear_bindings(s);
	}
	return 0;
fail:
	return -1;
}

/* The rows set aside before they were stored, now that they are. */
static int store_apply_aside(struct store *st, uint64_t upto, struct append_undo *u)
{
	sqlite3_stmt *s = st->stmt[S_ASIDE_PUT];

	u->paside_done = 0;
	for (size_t i = 0; i < st->npaside && st->paside[i].seq <= upto; i++) {
		int ch;

		sqlite3_bind_int64(s, 1, store_i64(st->paside[i].seq));
		sqlite3_bind_int64(s, 2, st->paside[i].since);
		sqlite3_bind_text(s, 3, st->paside[i].reason, -1, SQLITE_STATIC);
		if (store_run(st, S_ASIDE_PUT, "cannot set a row aside") < 0) {
			sqlite3_clear_bindings(s);
			return -1;
		}
		ch = sqlite3_changes(st->db);
		u->aside += ch;
		/* a reading the mark has passed is undelivered only by being set aside */
		if (ch && st->paside[i].seq <= st->hwm && st->paside[i].seq <= u->rd_max)
			u->aside_below++;
		u->paside_done = i + 1;
	}
	sqlite3_clear_bindings(s);
	return 0;
}

static int store_take_spill(struct store *st);

/* Extra things an append commits with its rows: meta pairs, and for a spill taken in,
 * the rows lost at that stop and the spill's id. */
struct append_extra {
	const struct spill_meta *meta;
	size_t nmeta;
	uint64_t lost;
	const char *spill_id;
};

static int store_append_tx(struct store *st, struct store_row *rows, size_t n,
			   const struct append_extra *x, char *err, size_t errlen)
{
	struct append_undo u = { 0 };
	bool mark;
	int64_t now = clock_mono_ms();

	if (store_writable(st) < 0)
		goto fail;
	/* what the last stop kept in the spill file waited longer: it goes in first */
	if (st->spill_pending && store_take_spill(st) < 0)
		goto fail;
	u.next_seq = st->next_seq;
	u.slot = malloc((n ? n : 1) * sizeof *u.slot);
	u.old = malloc((n ? n : 1) * sizeof *u.old);
	u.olddirty = malloc((n ? n : 1) * sizeof *u.olddirty);
	if (!u.slot || !u.old || !u.olddirty) {
		store_setf(st, "%s: append: out of memory", st->path);
		goto fail;
	}
	/*
	 * One transaction per batch: one WAL append and (durability full) one sync for the
	 * lot, and a batch is all in or all out. The devices the rows name, and the delivery
	 * mark when it is due, go in the same transaction: no page write of their own.
	 */
	mark = st->hwm != st->hwm_disk && now - st->hwm_at >= DELIVERED_WRITE_MS;
	if (store_run(st, S_BEGIN_W, "cannot begin a transaction") < 0)
		goto fail;
	if ((st->npend && store_write_devices(st) < 0) || store_insert_rows(st, rows, n, &u) < 0 ||
	    (st->npaside && store_apply_aside(st, st->next_seq - 1, &u) < 0) ||
	    (mark && store_put_mark(st) < 0))
		goto rollback;
	/* the state that produced these rows commits with them: after a crash both are
	 * there or neither (an alert transition is never stored twice) */
	for (size_t i = 0; x && i < x->nmeta; i++)
		if (store_meta_set(st, x->meta[i].key, x->meta[i].value) < 0)
			goto rollback;
	if (x && x->lost > 0 && store_counter_add(st, "lost_at_stop", store_i64(x->lost)) < 0)
		goto rollback;
	if (x && x->spill_id && store_meta_set(st, STORE_SPILL_TAKEN, x->spill_id) < 0)
		goto rollback;
	if (store_commit(st) < 0)
		goto undo;
	/* "stored" (store.c): what a test of power loss holds the store to */
	if (n > 0)
		log_debug("store: stored %zu rows, seqs %" PRIu64 "..%" PRIu64 "%s", n, rows[0].seq,
			  rows[n - 1].seq, st->buf.durability == DURABILITY_FULL ? ", synced" : "");
	store_devices_written(st);
	st->n_readings += u.readings;
	st->rd_undelivered += u.above + u.aside_below;
	st->n_events += u.events;
	st->ev_unsent += u.events;
	st->n_legacy += u.legacy;
	st->leg_unsent += u.legacy;
	st->naside += u.aside;
	if (u.rd_max > st->rd_max)
		st->rd_max = u.rd_max;
	if (u.ev_max > st->ev_max)
		st->ev_max = u.ev_max;
	if (u.leg_max > st->leg_max)
		st->leg_max = u.leg_max;
	if (u.paside_done) {
		for (size_t i = 0; i < u.paside_done; i++)
			free(st->paside[i].reason);
		memmove(st->paside, st->paside + u.paside_done,
			(st->npaside - u.paside_done) * sizeof *st->paside);
		st->npaside -= u.paside_done;
	}
	if (mark) {
		st->hwm_disk = st->hwm;
		st->hwm_at = now;
	}
	free(u.slot);
	free(u.old);
	free(u.olddirty);
	return 0;
rollback:
	store_rollback(st);
undo:
	/* Rolled back: the seqs given here were never stored and will be given again; the
	 * chains are as they were. */
	for (size_t j = u.nslot; j-- > 0;) {
		st->heads.seq[u.slot[j]] = u.old[j];
		st->heads.dirty[u.slot[j]] = u.olddirty[j];
	}
	for (size_t j = 0; j < n; j++)
		if (rows[j].seq >= u.next_seq)
			rows[j].seq = 0;
	st->next_seq = u.next_seq;
fail:
	free(u.slot);
	free(u.old);
	free(u.olddirty);
	store_copyerr(st, err, errlen);
	return -1;
}

int store_append_meta(struct store *st, struct store_row *rows, size_t n, const char *key,
		      const char *value, char *err, size_t errlen)
{
	struct spill_meta m = { .key = (char *)key, .value = (char *)(value ? value : "") };
	struct append_extra x = { .meta = &m, .nmeta = key ? 1 : 0 };

	if (n == 0 && !key)
		return 0;
	return store_append_tx(st, rows, n, &x, err, errlen);
}

/* -------------------------------------------------------------------------------- */
/* the backlog                                                                       */

long store_fetch_unsent(struct store *st, int kind, uint64_t after, size_t max,
			struct store_row *out)
{
	sqlite3_stmt *s;
	long n = 0, m;
	uint64_t from;

	if (store_usable(st) < 0)
		return -1;
	if (max == 0)
		return 0;
	if (kind == ROW_ALERT) {
		if (!st->ro && (st->ev_unsent == 0 || after >= st->ev_max))
			return 0;
		s = st->stmt[S_FETCH_EVENTS];
		sqlite3_bind_int64(s, 1, store_i64(after));
		sqlite3_bind_int64(s, 2, store_limit(max));
		return store_read_rows(st, s, false, ROW_ALERT, max, out, "cannot read the backlog");
	}
	/* the older release's readings first: every one of them is older */
	if (st->ro || (st->leg_unsent > 0 && after < st->leg_max)) {
		s = st->stmt[S_FETCH_LEGACY];
		sqlite3_bind_int64(s, 1, store_i64(after));
		sqlite3_bind_int64(s, 2, store_limit(max));
		n = store_read_rows(st, s, false, ROW_TELEMETRY, max, out, "cannot read the backlog");
		if (n < 0 || (size_t)n == max)
			return n;
	}
	if (st->ro && store_read_hwm(st, &st->hwm) < 0) {
		for (long i = 0; i < n; i++)
			store_row_clear(&out[i]);
		return -1;
	}
	from = after > st->hwm ? after : st->hwm;
	if (!st->ro && st->rd_max <= from)
		return n;
	s = st->stmt[S_FETCH_READINGS];
	sqlite3_bind_int64(s, 1, store_i64(from));
	sqlite3_bind_int64(s, 2, store_limit(max - (size_t)n));
	m = store_read_rows(st, s, true, ROW_TELEMETRY, max - (size_t)n, out + n,
			    "cannot read the backlog");
	if (m < 0) {
		for (long i = 0; i < n; i++)
			store_row_clear(&out[i]);
		return -1;
	}
	return n + m;
}

/* -------------------------------------------------------------------------------- */
/* delivery                                                                          */

static int64_t store_count_range(struct store *st, int id, uint64_t lo, uint64_t hi)
{
	int64_t v = 0;

	sqlite3_bind_int64(st->stmt[id], 1, store_i64(lo));
	sqlite3_bind_int64(st->stmt[id], 2, store_i64(hi));
	if (store_int(st, id, &v, "cannot count delivered rows") < 0)
		return -1;
	return v;
}

void store_delivered(struct store *st, uint64_t upto)
{
	int64_t n = 0, k = 0;

	if (st->ro || !st->db || upto <= st->hwm)
		return;
	/* the readings the mark passes, but for those set aside, leave the backlog */
	if (st->rd_max > st->hwm) {
		n = store_count_range(st, S_COUNT_READINGS_RANGE, st->hwm, upto);
		k = st->naside ? store_count_range(st, S_COUNT_ASIDE_READINGS_RANGE, st->hwm, upto) : 0;
		if (n < 0 || k < 0) {
			log_warnx("store: %s", st->err);
			n = k = 0;
		}
	}
	/* the older release's readings have their sent_at: a range of them, now */
	if (st->leg_unsent > 0 && st->hwm < st->leg_max) {
		sqlite3_stmt *s = st->stmt[S_MARK_LEGACY_UPTO];

		sqlite3_bind_int64(s, 1, clock_real_ms());
		sqlite3_bind_int64(s, 2, store_i64(st->hwm));
		sqlite3_bind_int64(s, 3, store_i64(upto));
		if (store_run(st, S_MARK_LEGACY_UPTO, "cannot mark rows sent") == 0)
			st->leg_unsent -= sqlite3_changes(st->db);
		else
			log_warnx("store: %s", st->err);
	}
	st->rd_undelivered -= n - k;
	st->hwm = upto;
}

int store_mark_sent(struct store *st, const uint64_t *seqs, size_t n)
{
	int64_t now = clock_real_ms();
	int64_t ev = 0, leg = 0, gone = 0, below = 0;

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
		sqlite3_stmt *s;

		/* delivered at last: no longer set aside */
		if (st->naside > 0) {
			sqlite3_bind_int64(st->stmt[S_ASIDE_DEL], 1, store_i64(seqs[i]));
			if (store_run(st, S_ASIDE_DEL, "cannot forget a row set aside") < 0)
				goto fail;
			if (sqlite3_changes(st->db)) {
				gone++;
				/* a reading below the mark was undelivered only by being aside */
				if (seqs[i] <= st->hwm && seqs[i] <= st->rd_max)
					below++;
			}
		}
		s = st->stmt[S_MARK_EVENT];
		sqlite3_bind_int64(s, 1, now);
		sqlite3_bind_int64(s, 2, store_i64(seqs[i]));
		if (store_run(st, S_MARK_EVENT, "cannot mark a row sent") < 0)
			goto fail;
		ev += sqlite3_changes(st->db);
		if (st->leg_unsent > 0) {
			s = st->stmt[S_MARK_LEGACY];
			sqlite3_bind_int64(s, 1, now);
			sqlite3_bind_int64(s, 2, store_i64(seqs[i]));
			if (store_run(st, S_MARK_LEGACY, "cannot mark a row sent") < 0)
				goto fail;
			leg += sqlite3_changes(st->db);
		}
	}
	if (store_commit(st) < 0)
		return -1;
	st->ev_unsent -= ev;
	st->leg_unsent -= leg;
	st->naside -= gone;
	st->rd_undelivered -= below;
	return 0;
fail:
	store_rollback(st);
	return -1;
}

/* -------------------------------------------------------------------------------- */
/* set aside: rows the broker refused for good                                       */
/*
 * The exceptions to the delivery mark: a reading the broker refused is not delivered,
 * whatever the mark says, until a retry delivers it. What this section owns: the aside
 * table, and the S_ASIDE_* statements; the backlog's fetch and age skip what it holds,
 * store_mark_sent and the size bound's drop forget entries whose row went.
 */

int store_aside_put(struct store *st, uint64_t seq, const char *reason)
{
	sqlite3_stmt *s = st->stmt[S_ASIDE_PUT];
	int n;

	if (store_writable(st) < 0)
		return -1;
	if (seq > store_committed(st)) {
		/* handed its seq, not stored yet: set aside with it */
		struct store_pend_aside *p;

		for (size_t i = 0; i < st->npaside; i++)
			if (st->paside[i].seq == seq)
				return 0;
		p = realloc(st->paside, (st->npaside + 1) * sizeof *p);
		if (!p) {
			store_setf(st, "%s: out of memory", st->path);
			return -1;
		}
		st->paside = p;
		p[st->npaside] = (struct store_pend_aside){ .seq = seq, .since = clock_real_ms(),
							    .reason = strdup(reason ? reason : "") };
		if (!p[st->npaside].reason) {
			store_setf(st, "%s: out of memory", st->path);
			return -1;
		}
		st->npaside++;
		return 1;
	}
	sqlite3_bind_int64(s, 1, store_i64(seq));
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
	if (n && seq <= st->hwm && seq <= st->rd_max)
		st->rd_undelivered++;
	return n > 0 ? 1 : 0;
}

/* Whether an aside entry's row is a transition that a newer one superseded. */
static int store_superseded(struct store *st, const struct store_row *r)
{
	sqlite3_stmt *s = st->stmt[S_EVENT_SUPERSEDED];
	int64_t v;

	if (r->kind != ROW_ALERT)
		return 0;
	sqlite3_bind_text(s, 1, r->topic, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, store_i64(r->seq));
	if (store_int(st, S_EVENT_SUPERSEDED, &v, "cannot read the rows set aside") < 0)
		return -1;
	return v != 0;
}

/*
 * The entries of the aside table after `after`, with their rows, in seq order, into
 * rows/asides (either may be NULL); with skip_superseded, a superseded transition is
 * passed over. Returns the count, or -1.
 */
static long store_aside_walk(struct store *st, uint64_t after, size_t max, bool skip_superseded,
			     struct store_row *rows, struct store_aside *asides)
{
	sqlite3_stmt *s = st->stmt[S_ASIDE_AFTER];
	size_t n = 0;

	if (store_usable(st) < 0)
		return -1;
	while (n < max) {
		uint64_t seqs[64];
		int64_t since[64];
		char *why[64] = { 0 };
		size_t k = 0;
		int rc;

		sqlite3_bind_int64(s, 1, store_i64(after));
		sqlite3_bind_int64(s, 2, 64);
		while (k < 64 && (rc = sqlite3_step(s)) == SQLITE_ROW) {
			seqs[k] = (uint64_t)sqlite3_column_int64(s, 0);
			since[k] = sqlite3_column_int64(s, 1);
			why[k] = asides ? store_coldup(s, 2) : NULL;
			k++;
		}
		sqlite3_reset(s);
		if (k < 64 && rc != SQLITE_DONE) {
			store_sqlerr(st, "cannot read the rows set aside");
			goto fail_why;
		}
		for (size_t i = 0; i < k; i++) {
			struct store_row r;
			int got = n < max ? store_load_row(st, seqs[i], &r) : 0, sup = 0;

			after = seqs[i];
			if (got < 0)
				goto fail_why;
			if (got == 0)
				continue;
			sup = store_superseded(st, &r);
			if (sup < 0) {
				store_row_clear(&r);
				goto fail_why;
			}
			if (sup && skip_superseded) {
				store_row_clear(&r);
				continue;
			}
			if (asides) {
				asides[n] = (struct store_aside){ .row = r, .since_ms = since[i],
								  .reason = why[i], .superseded = sup };
				why[i] = NULL;
				if (!asides[n].reason) {
					n++;
					store_setf(st, "%s: out of memory", st->path);
					goto fail_why;
				}
			} else {
				rows[n] = r;
			}
			n++;
		}
		for (size_t i = 0; i < k; i++)
			free(why[i]);
		if (k < 64)
			break;
		continue;
fail_why:
		for (size_t i = 0; i < k; i++)
			free(why[i]);
		for (size_t i = 0; i < n; i++) {
			if (asides)
				store_aside_clear(&asides[i]);
			else
				store_row_clear(&rows[i]);
		}
		return -1;
	}
	return (long)n;
}

long store_fetch_aside(struct store *st, uint64_t after, size_t max, struct store_row *out)
{
	if (max == 0 || (!st->ro && st->naside == 0))
		return 0;
	return store_aside_walk(st, after, max, true, out, NULL);
}

long store_aside_list(struct store *st, size_t max, struct store_aside *out)
{
	if (max == 0)
		return 0;
	return store_aside_walk(st, 0, max, false, NULL, out);
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

/*
 * One deleting statement (bound to ?1 and ?2), a transaction of its own. Returns the
 * rows deleted, or -1. History only: the newest seq stays known without counters.last_seq
 * (the delivery mark's newest row is never pruned, nor each topic's newest transition),
 * and a transaction that deletes nothing writes nothing.
 */
static long store_delete_chunk(struct store *st, int id, int64_t a, int64_t b)
{
	sqlite3_bind_int64(st->stmt[id], 1, a);
	sqlite3_bind_int64(st->stmt[id], 2, b);
	if (store_run(st, id, "cannot prune delivered rows") < 0)
		return -1;
	return sqlite3_changes(st->db);
}

/* Up to chunk delivered readings up to upto (the mark as written), oldest first. */
static long store_prune_readings(struct store *st, uint64_t upto, int64_t chunk)
{
	long n = upto ? store_delete_chunk(st, S_PRUNE_READINGS, store_i64(upto), chunk) : 0;

	if (n > 0)
		st->n_readings -= n;
	return n;
}

/* Up to chunk delivered transitions and legacy rows sent before cutoff. */
static long store_prune_text(struct store *st, int64_t cutoff, int64_t chunk)
{
	long a = store_delete_chunk(st, S_PRUNE_EVENTS, cutoff, chunk), b = 0;

	if (a < 0)
		return -1;
	st->n_events -= a;
	if (st->n_legacy > st->leg_unsent) {
		b = store_delete_chunk(st, S_PRUNE_LEGACY, cutoff, chunk);
		if (b < 0)
			return -1;
		st->n_legacy -= b;
	}
	return a + b;
}

/* Drop up to chunk of the oldest unsent telemetry rows (not those in flight), and count
 * them: the older release's first, then the readings set aside, then the backlog. */
static long store_drop_chunk(struct store *st, int64_t chunk)
{
	static const int order[] = { S_DROP_LEGACY, S_DROP_ASIDE_READINGS, S_DROP_READINGS };
	long n = 0, gone = 0;
	int which = -1;

	/*
	 * The rows and the counter change in one transaction, so every drop is counted
	 * exactly once, whatever happens to the process in between.
	 */
	if (store_run(st, S_BEGIN_W, "cannot begin a transaction") < 0)
		return -1;
	if (store_keep_last(st) < 0)
		goto fail;
	for (size_t i = 0; i < sizeof order / sizeof order[0] && n == 0; i++) {
		uint64_t floor = st->in_flight;

		if (order[i] == S_DROP_LEGACY && st->leg_unsent == 0)
			continue;
		if (order[i] == S_DROP_ASIDE_READINGS && st->naside == 0)
			continue;
		if (order[i] == S_DROP_READINGS && st->hwm > floor)
			floor = st->hwm;
		sqlite3_bind_int64(st->stmt[order[i]], 1, chunk);
		sqlite3_bind_int64(st->stmt[order[i]], 2, store_i64(floor));
		if (order[i] == S_DROP_ASIDE_READINGS)
			sqlite3_bind_int64(st->stmt[order[i]], 3, store_i64(st->hwm));
		if (store_run(st, order[i], "cannot drop unsent telemetry") < 0)
			goto fail;
		n = sqlite3_changes(st->db);
		which = order[i];
	}
	if (n > 0 && store_counter_add(st, "dropped", n) < 0)
		goto fail;
	/* a row set aside that went is counted as dropped, no longer as set aside */
	if (n > 0 && st->naside > 0) {
		if (store_run(st, S_ASIDE_GONE, "cannot forget dropped rows set aside") < 0)
			goto fail;
		gone = sqlite3_changes(st->db);
	}
	if (store_commit(st) < 0)
		return -1;
	if (which == S_DROP_LEGACY) {
		st->n_legacy -= n;
		st->leg_unsent -= n;
	} else if (n > 0) {
		st->n_readings -= n;
		st->rd_undelivered -= n;
	}
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
 * Deleted first: delivered history, oldest first (readings up to the delivery mark as
 * written, then transitions but each topic's newest, then legacy rows). Then unsent
 * telemetry, oldest seq first, each counted in counters.dropped. Alert transitions are
 * never dropped: when only they remain over the bound, it is logged and they stay.
 */
static int store_enforce_size(struct store *st)
{
	uint64_t budget = st->buf.max_size > st->wal_allow ? st->buf.max_size - st->wal_allow : 0;
	int64_t budget_pages = (int64_t)(budget / STORE_PAGE);
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
		/* history goes by the mark as written: write it now, when it moved */
		if (store_write_mark(st) < 0)
			return -1;
		n = store_prune_readings(st, st->hwm_disk, chunk);
		if (n == 0)
			n = store_prune_text(st, INT64_MAX, chunk);
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
				  st->path, (pages - freepages) * STORE_PAGE / 1024,
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

/* History past keep_sent: readings by the delivery mark as it was then, transitions and
 * legacy rows by their sent_at. Chunked and capped per call. */
static int store_prune_history(struct store *st, int64_t cutoff)
{
	sqlite3_stmt *s = st->stmt[S_MARKS_BEFORE];
	uint64_t upto = 0;
	int64_t markid = 0;
	long n, pruned = 0;
	int rc;

	sqlite3_bind_int64(s, 1, cutoff);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		upto = (uint64_t)sqlite3_column_int64(s, 0);
		markid = sqlite3_column_int64(s, 1);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sqlerr(st, "cannot read the delivery marks");
	while (upto && pruned < STORE_PRUNE_MAX) {
		n = store_prune_readings(st, upto, STORE_CHUNK_MAX);
		if (n < 0)
			return -1;
		pruned += n;
		if (n < STORE_CHUNK_MAX)
			break;
		if (store_wal_bytes(st) > st->wal_allow && store_checkpoint(st) < 0)
			return -1;
	}
	/* the marks older than the one just used: their readings are gone */
	if (markid > 1 && pruned < STORE_PRUNE_MAX) {
		sqlite3_bind_int64(st->stmt[S_PRUNE_MARKS], 1, markid);
		if (store_run(st, S_PRUNE_MARKS, "cannot prune delivery marks") < 0)
			return -1;
	}
	while (pruned < STORE_PRUNE_MAX) {
		n = store_prune_text(st, cutoff, STORE_CHUNK_MAX);
		if (n < 0)
			return -1;
		pruned += n;
		if (n < STORE_CHUNK_MAX)
			break;
	}
	if (pruned > 0)
		log_debug("store: pruned %ld delivered rows older than keep_sent", pruned);
	return 0;
}

int store_maintain(struct store *st, int64_t now_ms)
{
	int64_t keep = st->buf.keep_sent_ms > 0 ? st->buf.keep_sent_ms : 0;

	if (store_writable(st) < 0)
		return -1;
	/* the delivery mark, when no append took it: pruning and the size bound go by the
	 * written one */
	if (clock_mono_ms() - st->hwm_at >= DELIVERED_WRITE_MS && store_write_mark(st) < 0)
		return -1;
	if ((st->heads.any_dirty || st->heads_at < st->rd_max) &&
	    (!st->heads_written || clock_mono_ms() - st->heads_written >= HEADS_EVERY_MS) &&
	    store_heads_write(st) < 0)
		return -1;
	store_seq_ahead(st);
	/*
	 * History past keep_sent, on the real-time clock: after a clock step forward,
	 * history goes early; after one backward, it stays longer.
	 */
	if (store_prune_history(st, now_ms - keep) < 0)
		return -1;
	if (st->buf.max_size > 0 && store_enforce_size(st) < 0)
		return -1;
	if (store_wal_bytes(st) > st->wal_allow && store_checkpoint(st) < 0)
		return -1;
	return 0;
}

/* -------------------------------------------------------------------------------- */
/* reading                                                                           */

/* A read-only handle's counts, from one snapshot. */
static int store_count_ro(struct store *st, int64_t *rows, int64_t *unsent, int64_t *aside,
			  uint64_t *last)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (store_read_hwm(st, &st->hwm) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "SELECT (SELECT count(*) FROM readings)"
			       " + (SELECT count(*) FROM events) + (SELECT count(*) FROM legacy),"
			       " (SELECT count(*) FROM readings WHERE seq > ?1)"
			       " + (SELECT count(*) FROM aside a JOIN readings r ON r.seq = a.seq"
			       " WHERE a.seq <= ?1)"
			       " + (SELECT count(*) FROM events WHERE sent_at IS NULL)"
			       " + (SELECT count(*) FROM legacy WHERE kind = 0 AND sent_at IS NULL),"
			       " (SELECT count(*) FROM aside),"
			       " (SELECT max(x) FROM (SELECT max(seq) AS x FROM readings UNION ALL"
			       " SELECT max(seq) FROM events UNION ALL SELECT max(seq) FROM legacy"
			       " UNION ALL SELECT max(upto) FROM delivered UNION ALL"
			       " SELECT value FROM counters WHERE name = 'last_seq'))",
			       -1, &s, NULL) != SQLITE_OK)
		return store_sqlerr(st, "cannot count the outbox");
	sqlite3_bind_int64(s, 1, store_i64(st->hwm));
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*rows = sqlite3_column_int64(s, 0);
		*unsent = sqlite3_column_int64(s, 1);
		*aside = sqlite3_column_int64(s, 2);
		*last = (uint64_t)sqlite3_column_int64(s, 3);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW)
		return store_sqlerr(st, "cannot count the outbox");
	return 0;
}

int store_stats(struct store *st, struct store_stats *out)
{
	int64_t rows = st->n_readings + st->n_events + st->n_legacy;
	int64_t unsent = st->rd_undelivered + st->ev_unsent + st->leg_unsent;
	int64_t aside = st->naside;
	int64_t oldest, dropped, lost, skipped, pages, freepages;
	uint64_t last = st->next_seq ? st->next_seq - 1 : 0;

	memset(out, 0, sizeof *out);
	if (store_usable(st) < 0)
		return -1;
	/* One read transaction: the numbers come from one snapshot. */
	if (store_run(st, S_BEGIN_R, "cannot begin a read") < 0)
		return -1;
	if ((st->ro && store_count_ro(st, &rows, &unsent, &aside, &last) < 0))
		goto fail;
	sqlite3_bind_int64(st->stmt[S_OLDEST_UNSENT], 1, store_i64(st->hwm));
	if (store_int(st, S_OLDEST_UNSENT, &oldest, "cannot read the backlog age") < 0 ||
	    store_counter_get(st, "dropped", &dropped) < 0 ||
	    store_counter_get(st, "lost_at_stop", &lost) < 0 ||
	    store_counter_get(st, "skipped", &skipped) < 0 ||
	    store_pages(st, &pages, &freepages) < 0)
		goto fail;
	if (store_commit(st) < 0)
		return -1;
	/* rows set aside before they were stored count as set aside already */
	aside += (int64_t)st->npaside;
	out->rows = (uint64_t)rows;
	out->unsent = (uint64_t)(unsent - (aside - (int64_t)st->npaside));
	out->aside = (uint64_t)aside;
	out->oldest_unsent_ms = oldest;
	out->last_seq = last;
	out->dropped = (uint64_t)dropped;
	out->lost_at_stop = (uint64_t)lost;
	out->skipped = (uint64_t)skipped;
	out->db_bytes = (uint64_t)pages * STORE_PAGE + store_wal_bytes(st);
	snprintf(out->stream, sizeof out->stream, "%s", st->seq.stream);
	return 0;
fail:
	store_rollback(st);
	return -1;
}

/* The devices that id has been (readings name a device by the number of its
 * description: one per config it was polled under). */
static long store_devs_of(struct store *st, const char *id, uint32_t *devs, size_t max)
{
	sqlite3_stmt *s = st->stmt[S_DEVICES_OF];
	size_t n = 0;
	int rc;

	sqlite3_bind_text(s, 1, id, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		if (n < max)
			devs[n++] = (uint32_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sqlerr(st, "cannot read the devices");
	return (long)n;
}

/* The newest reading of device id: the daemon knows it; a reader starts from the heads
 * table and looks for newer ones written since. 0: none. */
static int store_head_of(struct store *st, const char *id, uint64_t *head)
{
	sqlite3_stmt *s;
	uint32_t devs[256];
	int64_t at = 0, h = 0, scanned = 0;
	long nd;
	int rc;

	*head = 0;
	if (!st->ro) {
		size_t i = heads_find(&st->heads, id);
		if (i != (size_t)-1 && st->heads.id[i])
			*head = st->heads.seq[i];
		return 0;
	}
	nd = store_devs_of(st, id, devs, sizeof devs / sizeof devs[0]);
	if (nd <= 0)
		return (int)nd;
	sqlite3_bind_text(st->stmt[S_HEAD_GET], 1, id, -1, SQLITE_STATIC);
	if (store_int(st, S_HEAD_GET, &h, "cannot read the heads") < 0 ||
	    store_counter_get(st, "heads_at", &at) < 0)
		return -1;
	*head = h > 0 ? (uint64_t)h : 0;
	s = st->stmt[S_READINGS_BACK];
	sqlite3_bind_int64(s, 1, at > (int64_t)*head ? at : (int64_t)*head);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW && scanned++ < STORE_BACK_MAX) {
		uint32_t dev = (uint32_t)sqlite3_column_int64(s, 1);
		bool mine = false;

		for (long i = 0; i < nd && !mine; i++)
			mine = devs[i] == dev;
		if (mine) {
			*head = (uint64_t)sqlite3_column_int64(s, 0);
			break;
		}
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sqlerr(st, "cannot read recent readings");
	return 0;
}

/* A device's readings newest first, along its chain, then its readings of the release
 * before (text rows) by their topic. */
static long store_recent_readings(struct store *st, const char *topic, size_t max,
				  struct store_row *out)
{
	sqlite3_stmt *s = st->stmt[S_READING_GET];
	uint64_t seq, below = (uint64_t)INT64_MAX;
	size_t n = 0;
	long m;

	if (store_head_of(st, topic + strlen("telemetry/"), &seq) < 0)
		return -1;
	while (seq && n < max) {
		int64_t prev;
		int rc;

		sqlite3_bind_int64(s, 1, store_i64(seq));
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(s);
			if (rc == SQLITE_DONE)
				break; /* pruned or dropped: the chain ends here */
			store_sqlerr(st, "cannot read recent readings");
			goto fail;
		}
		prev = sqlite3_column_int64(s, 4);
		if (!store_reading_row(s, &out[n])) {
			store_row_clear(&out[n]);
			sqlite3_reset(s);
			store_setf(st, "%s: recent readings: out of memory", st->path);
			goto fail;
		}
		sqlite3_reset(s);
		below = seq;
		n++;
		seq = prev > 0 && (uint64_t)prev < seq ? seq - (uint64_t)prev : 0;
	}
	if (n < max) {
		s = st->stmt[S_LEGACY_RECENT];
		sqlite3_bind_text(s, 1, topic, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, store_i64(below));
		sqlite3_bind_int64(s, 3, store_limit(max - n));
		m = store_read_rows(st, s, false, ROW_TELEMETRY, max - n, out + n,
				    "cannot read recent rows");
		sqlite3_clear_bindings(s);
		if (m < 0)
			goto fail;
		n += (size_t)m;
	}
	return (long)n;
fail:
	for (size_t i = 0; i < n; i++)
		store_row_clear(&out[i]);
	return -1;
}

long store_recent(struct store *st, const char *topic, size_t max, struct store_row *out)
{
	sqlite3_stmt *s = st->stmt[S_RECENT_EVENTS];
	long n;

	if (store_usable(st) < 0)
		return -1;
	if (max == 0)
		return 0;
	if (strncmp(topic, "telemetry/", 10) == 0)
		return store_recent_readings(st, topic, max, out);
	sqlite3_bind_text(s, 1, topic, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, store_limit(max));
	n = store_read_rows(st, s, false, ROW_ALERT, max, out, "cannot read recent rows");
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
	n = store_read_rows(st, s, false, ROW_ALERT, max, out, "cannot read recent rows");
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
	int rc = SQLITE_ROW;

	*out = NULL;
	if (store_usable(st) < 0)
		return -1;
	if (store_bind_prefix(st, s, prefix, &end) < 0)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 64;
			struct store_row *nr = realloc(rows, nc * sizeof *nr);
			if (!nr)
				goto oom;
			rows = nr;
			cap = nc;
		}
		if (!store_text_row(s, ROW_ALERT, &rows[n]))
			goto oom;
		n++;
	}
	if (rc != SQLITE_DONE) {
		store_sqlerr(st, "cannot read the latest rows");
		goto fail;
	}
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	free(end);
	*out = rows;
	return (long)n;
oom:
	store_setf(st, "%s: latest rows: out of memory", st->path);
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

/* The spill's device numbers, as this database numbers the same descriptions. */
static int store_spill_devices(struct store *st, struct spill_content *c)
{
	uint32_t *map = calloc(c->ndevs ? c->ndevs : 1, sizeof *map);

	if (!map) {
		store_setf(st, "%s: out of memory", st->spill_path);
		return -1;
	}
	for (size_t i = 0; i < c->ndevs; i++) {
		struct device_cfg *d = store_dev_decode(c->devs[i].blob, c->devs[i].len);
		unsigned char *copy = d ? malloc(c->devs[i].len ? c->devs[i].len : 1) : NULL;

		if (copy) {
			memcpy(copy, c->devs[i].blob, c->devs[i].len);
			map[i] = store_dev_number(st, d->id, copy, c->devs[i].len);
		}
		store_dev_free(d);
		if (!map[i]) {
			store_setf(st, "%s: a device description is damaged (or out of memory)",
				   st->spill_path);
			free(map);
			return -1;
		}
	}
	for (size_t k = 0; k < c->nrows; k++) {
		size_t i;

		if (!c->rows[k].dev)
			continue;
		for (i = 0; i < c->ndevs && c->devs[i].dev != c->rows[k].dev; i++)
			;
		if (i == c->ndevs) {
			store_setf(st, "%s: a reading names no device it holds", st->spill_path);
			free(map);
			return -1;
		}
		c->rows[k].dev = map[i];
	}
	/* numbered now: taken again after a failed append, they must not be mapped twice */
	for (size_t i = 0; i < c->ndevs; i++)
		c->devs[i].dev = map[i];
	free(map);
	return 0;
}

/*
 * What the last stop kept in the spill file goes into the outbox before any other row:
 * one transaction with its meta pairs (the alert engine's state as the rows left it),
 * the count of rows lost at that stop, and the spill's id as meta spill_taken. Then the
 * file is emptied. A crash in between leaves a file whose id the database has: the next
 * open empties it, taking nothing twice. Rows keep the seqs they were handed (they may
 * have been published); those without one get theirs here.
 */
static int store_take_spill(struct store *st)
{
	struct spill_content *c = &st->spill_in;
	struct append_extra x = { .meta = c->meta, .nmeta = c->nmeta, .lost = c->lost };
	char idtext[24], err[512];
	int rc;

	snprintf(idtext, sizeof idtext, "%" PRIu64, c->id);
	x.spill_id = c->id ? idtext : NULL;
	if (c->ndevs && !c->devs_mapped) {
		if (store_spill_devices(st, c) < 0)
			goto fail;
		c->devs_mapped = true;
	}
	/* through the append, which must not take the spill again */
	st->spill_pending = false;
	rc = store_append_tx(st, c->rows, c->nrows, &x, err, sizeof err);
	if (rc < 0) {
		st->spill_pending = true;
		goto fail;
	}
	if (c->nrows > 0)
		log_warnx("store: stored the %zu rows kept in %s at the last stop (seqs %" PRIu64
			  "..%" PRIu64 ")", c->nrows, st->spill_path, c->rows[0].seq,
			  c->rows[c->nrows - 1].seq);
	if (c->lost > 0)
		log_errx("store: %" PRIu64 " rows that waited in memory were lost at the last stop"
			 " (counted in lost_at_stop)", c->lost);
	if (c->id)
		st->spill_taken = c->id;
	if (c->id && st->spill && spill_clear(st->spill, err, sizeof err) < 0)
		log_warnx("store: %s (its rows are stored; they will not be taken again)", err);
	spill_content_free(c);
	memset(c, 0, sizeof *c);
	st->spill_warned = false;
	return 0;
fail:
	if (!st->spill_warned)
		log_warnx("store: the %zu rows kept in %s at the last stop cannot be stored yet"
			  " (%s); they go in first once the store writes", c->nrows,
			  st->spill_path, st->err);
	st->spill_warned = true;
	return -1;
}

/* At open, after the database: the spill file's reserve, and what the last stop left. */
void store_spill_start(struct store *st)
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

/* The description of every device rows name, for the spill file. */
static struct spill_dev *store_spill_descs(struct store *st, const struct store_row *rows,
					   size_t n, size_t *ndevs)
{
	struct spill_dev *devs = NULL;
	size_t nd = 0;

	*ndevs = 0;
	for (size_t i = 0; i < n; i++) {
		const struct device_cfg *d;
		struct spill_dev *nv;
		size_t k;

		if (!rows[i].dev)
			continue;
		for (k = 0; k < nd && devs[k].dev != rows[i].dev; k++)
			;
		if (k < nd)
			continue;
		d = store_device(st, rows[i].dev);
		nv = d ? realloc(devs, (nd + 1) * sizeof *nv) : NULL;
		if (!nv)
			goto fail;
		devs = nv;
		devs[nd] = (struct spill_dev){ .dev = rows[i].dev };
		if (store_dev_encode(d, &devs[nd].blob, &devs[nd].len) < 0)
			goto fail;
		nd++;
	}
	*ndevs = nd;
	return devs ? devs : calloc(1, sizeof *devs);
fail:
	for (size_t k = 0; k < nd; k++)
		free(devs[k].blob);
	free(devs);
	return NULL;
}

size_t store_spill(struct store *st, const struct store_row *rows, size_t n, const char *key,
		   const char *value)
{
	struct spill_dev *devs = NULL;
	size_t kept = 0, ndevs = 0;
	char err[512];

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
	devs = store_spill_descs(st, rows, n, &ndevs);
	if (!devs) {
		snprintf(err, sizeof err, "the devices of the rows cannot be described: %.300s",
			 st->err);
		goto lost;
	}
	if (spill_append(st->spill, rows, n, devs, ndevs, key, value, &kept, err, sizeof err) < 0)
		goto lost;
	for (size_t k = 0; k < ndevs; k++)
		free(devs[k].blob);
	free(devs);
	if (kept == n)
		log_warnx("store: the %zu rows that waited in memory are kept in %s: the next"
			  " start stores them before anything else", n, st->spill_path);
	else
		log_errx("store: %zu of the %zu rows that waited in memory are kept in %s, the"
			 " other %zu (the oldest readings) are lost: counted in lost_at_stop at the"
			 " next start", kept, n, st->spill_path, n - kept);
	return n - kept;
lost:
	for (size_t k = 0; k < ndevs; k++)
		free(devs[k].blob);
	free(devs);
	log_errx("store: the %zu rows that waited in memory are lost (%s), and neither the"
		 " store nor the spill file can keep them (%s); this count is in this log only",
		 n, st->err, err);
	return n;
}
