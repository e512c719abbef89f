/*
 * web_hist: the page's one way into what the store keeps — a device's readings of the
 * last hours for its plot, the recent alert transitions for the alerts page — on the
 * HTTP thread, through a read-only store handle opened for the question and closed
 * after, as `sluicectl tail` and `sluicectl alerts` read them (store_recent*).
 *
 * Why a handle of its own rather than a question to the core: a plot reads thousands of
 * rows, tens of milliseconds on a small box, which the core loop must not spend (its
 * commits and deliveries would wait); SQLite in WAL mode lets a reader on its own
 * connection read beside the daemon's writer without blocking it, which is how sluicectl
 * reads a running daemon's store. Only store.c speaks SQL: this file calls store.h.
 * Opened per question, it never holds a snapshot between them (the WAL checkpoints),
 * and follows a database replaced after damage.
 *
 * A device's readings come through its own chain in the store (store_recent on
 * telemetry/<device>: a few page reads each, however many other devices there are), as
 * values (store_row_reading) named by the device's description as it was stored
 * (store_device): a device whose points changed plots the old readings under their old
 * names. A reading stored before schema 3 is a text row, read as the "sluice" format
 * wrote it ("values"); one in another format is skipped. Transitions are text rows.
 */
#include "web_hist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jread.h"
#include "reading.h"
#include "site.h"
#include "store.h"

#define SERIES_MAX 64

struct series {
	char *point;
	int64_t *t;
	double *v;
	size_t n, cap;
};

static struct series *series_of(struct series *s, size_t *ns, const char *point)
{
	for (size_t i = 0; i < *ns; i++)
		if (strcmp(s[i].point, point) == 0)
			return &s[i];
	if (*ns == SERIES_MAX)
		return NULL;
	s[*ns] = (struct series){ .point = strdup(point) };
	return s[*ns].point ? &s[(*ns)++] : NULL;
}

static int series_add(struct series *s, int64_t t, double v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 256;
		int64_t *nt = realloc(s->t, cap * sizeof *nt);
		double *nv;

		if (!nt)
			return -1;
		s->t = nt;
		nv = realloc(s->v, cap * sizeof *nv);
		if (!nv)
			return -1;
		s->v = nv;
		s->cap = cap;
	}
	s->t[s->n] = t;
	s->v[s->n++] = v;
	return 0;
}

/* A point's value as the plot draws it: numbers and booleans; false for the rest (a
 * string, a point that failed this poll). */
static bool value_plotted(const struct value *v, double *out)
{
	switch (v->kind) {
	case VAL_BOOL:
		*out = v->v.b;
		return true;
	case VAL_INT:
		*out = (double)v->v.i;
		return true;
	case VAL_UINT:
		*out = (double)v->v.u;
		return true;
	case VAL_DOUBLE:
		*out = v->v.d;
		return true;
	default:
		return false;
	}
}

/*
 * A reading stored as values, into the series of its points (named as its device was
 * described when it was stored). 1: added; 0: it cannot be read back (skipped, as a
 * damaged row is by sluicectl tail); -1: out of memory.
 */
static int add_values(struct store *st, const struct store_row *row, struct series *ser,
		      size_t *nser)
{
	const struct device_cfg *d = store_device(st, row->dev);
	struct reading *r = d ? store_row_reading(row) : NULL;
	int rc = 1;

	if (!r)
		return 0;
	for (size_t k = 0; k < r->nvalues && k < d->npoints; k++) {
		struct series *s;
		double v;

		if (!value_plotted(&r->values[k], &v))
			continue;
		s = series_of(ser, nser, d->points[k].name);
		if (s && series_add(s, row->ts_ms, v) != 0) {
			rc = -1;
			break;
		}
	}
	reading_free(r);
	return rc;
}

/* A reading stored as text before schema 3, as the "sluice" format wrote it: as
 * add_values. text is scratch space. */
static int add_text(const struct store_row *row, struct series *ser, size_t *nser,
		    struct jbuf *text)
{
	const struct jval *vals;
	struct jval *pl;
	char perr[96];
	int rc = 1;

	jb_reset(text);
	jb_cstr(text, "{");
	jb_cstr(text, row->body ? row->body : "");
	jb_cstr(text, "}");
	if (text->oom || !(pl = jread_parse(text->p, text->len, perr, sizeof perr)))
		return 0;
	vals = jread_get(pl, "values");
	if (!vals || vals->type != J_OBJ) {
		jread_free(pl);
		return 0;
	}
	for (size_t k = 0; k < vals->n; k++) {
		const struct jval *v = vals->items[k];
		struct series *s;

		if (v->type != J_NUM && v->type != J_BOOL)
			continue;
		s = series_of(ser, nser, vals->keys[k]);
		if (s && series_add(s, row->ts_ms, v->type == J_NUM ? v->num : v->b) != 0) {
			rc = -1;
			break;
		}
	}
	jread_free(pl);
	return rc;
}

static void emit_point(struct jbuf *b, int64_t t, double v, bool *first_t, struct jbuf *vb)
{
	if (!*first_t) {
		jb_cstr(b, ",");
		jb_cstr(vb, ",");
	}
	*first_t = false;
	jb_i64(b, t);
	jb_double(vb, v);
}

/*
 * A series in at most 2 * WEB_HISTORY_BUCKETS points: in each bucket of time, its lowest
 * and its highest reading in the order they came, so that a spike a plot a few hundred
 * pixels wide would average away stays in sight.
 */
static void emit_series(struct jbuf *b, const struct series *s, int64_t from, int64_t to)
{
	struct jbuf vb;
	bool first = true, f2 = true;
	int64_t width = (to - from) / WEB_HISTORY_BUCKETS + 1;

	jb_init(&vb);
	jb_cstr(b, "{");
	jb_key(b, "point", &f2);
	jb_str(b, s->point);
	jb_key(b, "t", &f2);
	jb_cstr(b, "[");
	if (s->n <= 2 * WEB_HISTORY_BUCKETS) {
		for (size_t i = 0; i < s->n; i++)
			emit_point(b, s->t[i], s->v[i], &first, &vb);
	} else {
		size_t i = 0;

		while (i < s->n) {
			int64_t bucket = (s->t[i] - from) / width;
			size_t lo = i, hi = i;

			for (; i < s->n && (s->t[i] - from) / width == bucket; i++) {
				if (s->v[i] < s->v[lo])
					lo = i;
				if (s->v[i] > s->v[hi])
					hi = i;
			}
			emit_point(b, s->t[lo < hi ? lo : hi], s->v[lo < hi ? lo : hi], &first, &vb);
			if (lo != hi)
				emit_point(b, s->t[lo < hi ? hi : lo], s->v[lo < hi ? hi : lo], &first,
					   &vb);
		}
	}
	jb_cstr(b, "]");
	jb_key(b, "v", &f2);
	jb_cstr(b, "[");
	jb_raw(b, vb.p ? vb.p : "", vb.len);
	b->oom |= vb.oom;
	jb_cstr(b, "]}");
	jb_free(&vb);
}

int web_hist_device(const char *data_dir, const char *device, int64_t now_ms, struct jbuf *b,
		    char *err, size_t errlen)
{
	struct store *st = store_open_ro(data_dir, err, errlen);
	struct store_row *rows = NULL;
	struct series *ser = NULL;
	size_t nser = 0, used = 0;
	int64_t from = now_ms - WEB_HISTORY_MS, oldest = now_ms;
	char topic[ID_MAX + 16];
	struct jbuf text;
	long n;
	int rc = -1;
	bool first = true;

	if (!st)
		return -1;
	jb_init(&text);
	rows = calloc(WEB_HISTORY_ROWS, sizeof *rows);
	ser = calloc(SERIES_MAX, sizeof *ser);
	if (!rows || !ser) {
		snprintf(err, errlen, "out of memory");
		goto out;
	}
	snprintf(topic, sizeof topic, "telemetry/%s", device);
	n = store_recent(st, topic, WEB_HISTORY_ROWS, rows);
	if (n < 0) {
		snprintf(err, errlen, "%s", store_error(st));
		goto out;
	}
	/* oldest first: each series in time order */
	for (long i = n - 1; i >= 0; i--) {
		int got;

		if (rows[i].ts_ms < from || rows[i].ts_ms > now_ms)
			continue;
		got = rows[i].dev ? add_values(st, &rows[i], ser, &nser)
				  : add_text(&rows[i], ser, &nser, &text);
		if (got < 0) {
			snprintf(err, errlen, "out of memory");
			goto out;
		}
		if (got == 0)
			continue;
		if (rows[i].ts_ms < oldest)
			oldest = rows[i].ts_ms;
		used++;
	}
	/* the window is shorter than asked when the rows read did not reach back to it */
	if (n == WEB_HISTORY_ROWS && used > 0)
		from = oldest;
	jb_cstr(b, "{");
	jb_key(b, "from", &first);
	jb_i64(b, from);
	jb_key(b, "to", &first);
	jb_i64(b, now_ms);
	jb_key(b, "readings", &first);
	jb_u64(b, used);
	jb_key(b, "series", &first);
	jb_cstr(b, "[");
	for (size_t i = 0; i < nser; i++) {
		if (i)
			jb_cstr(b, ",");
		emit_series(b, &ser[i], from, now_ms);
	}
	jb_cstr(b, "]}");
	rc = 0;
out:
	for (long i = 0; rows && i < WEB_HISTORY_ROWS; i++)
		store_row_clear(&rows[i]);
	for (size_t i = 0; i < nser; i++) {
		free(ser[i].point);
		free(ser[i].t);
		free(ser[i].v);
	}
	free(ser);
	free(rows);
	jb_free(&text);
	store_close(st);
	return rc;
}

int web_hist_alerts(const char *data_dir, size_t max, struct jbuf *b, char *err, size_t errlen)
{
	struct store *st = store_open_ro(data_dir, err, errlen);
	struct store_row *rows;
	struct jbuf text;
	char perr[96];
	long n;
	size_t k = 0;

	if (!st)
		return -1;
	rows = calloc(max ? max : 1, sizeof *rows);
	if (!rows) {
		snprintf(err, errlen, "out of memory");
		store_close(st);
		return -1;
	}
	n = store_recent_prefix(st, "alert/", max, rows);
	if (n < 0) {
		snprintf(err, errlen, "%s", store_error(st));
		free(rows);
		store_close(st);
		return -1;
	}
	jb_init(&text);
	jb_cstr(b, "[");
	for (long i = 0; i < n; i++) {
		struct jval *pl;

		jb_reset(&text);
		jb_cstr(&text, "{\"seq\":");
		jb_u64(&text, rows[i].seq);
		if (rows[i].body[0])
			jb_cstr(&text, ",");
		jb_cstr(&text, rows[i].body);
		jb_cstr(&text, "}");
		if (!text.oom && (pl = jread_parse(text.p, text.len, perr, sizeof perr))) {
			if (k++)
				jb_cstr(b, ",");
			jread_emit(b, pl);
			jread_free(pl);
		}
		store_row_clear(&rows[i]);
	}
	jb_cstr(b, "]");
	jb_free(&text);
	free(rows);
	store_close(st);
	return 0;
}
