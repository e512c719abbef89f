/*
 * core: the event loop on the daemon's main thread.
 *
 * One poll() over three things: the queue's eventfd (readings from the pollers), the
 * MQTT socket (driven here through uplink, never by a libmosquitto thread), and time
 * (uplink keepalive and reconnects, health, store maintenance). Each turn:
 *
 *   1. take every queued reading, turn each into one outbox row, append them all in
 *      ONE store transaction (batching is what keeps writes to an SD card low);
 *   2. let the uplink read and write; PUBACKs collected by the ack callback are marked
 *      sent in one transaction per turn;
 *   3. top up the in-flight window from the outbox: alert transitions first, then
 *      telemetry in seq order.
 *
 * Step 1 always runs before 3, and 3 publishes at most the window, so draining a
 * large backlog never starves the storing of live readings.
 *
 * Delivery is at least once. A row is marked sent only when its PUBACK arrives. When
 * the connection drops, everything in flight is forgotten (the uplink destroys its
 * libmosquitto handle, so nothing is retried behind our back) and the outbox is read
 * again from the start: rows sent but not acknowledged go out again, with their seq,
 * which is how a platform drops the duplicates.
 *
 * Never here: SQL (store), MQTT (uplink), Modbus (drivers), YAML (config).
 */
#include "core.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "alert.h"
#include "clock.h"
#include "json.h"
#include "log.h"
#include "mberr.h"
#include "notify.h"
#include "queue.h"
#include "reading.h"
#include "serpoll.h"
#include "store.h"
#include "sunspec_setup.h"
#include "tcpoll.h"
#include "uplink.h"

#define BATCH_MAX 1024           /* readings per store transaction */
#define MAINTAIN_EVERY_MS 2000   /* pruning and the size bound (cheap: indexed deletes, a stat) */
#define SHUTDOWN_DRAIN_MS 3000   /* SIGTERM: time given to deliver what is stored */
#define STATE_SAVE_MS 60000      /* alert engine windows and baselines, between transitions */
/*
 * Rows wait at most COMMIT_MS (or until COMMIT_ROWS are pending) for one transaction.
 * A WAL commit writes whole pages: a commit per reading costs kilobytes per value on an
 * SD card, a commit per half second a few hundred bytes. A row is published only once
 * committed, so the wait delays delivery, never makes it unsafe; what a crash can take
 * is what was still in memory, as it always could (the queue). Alert transitions
 * commit at once.
 */
#define COMMIT_MS 500
#define COMMIT_ROWS 512
/*
 * Acknowledgements are marked in the store at most this long after they arrive, in one
 * transaction: a mark per PUBACK would be a transaction per message. The price: a crash
 * re-sends what was acknowledged in the last ACKS_MS — duplicates with the same seq,
 * which the platform drops, never a loss.
 */
#define ACKS_MS 250
/*
 * When the store cannot write (the file system full, a file size limit, an I/O error),
 * rows wait in memory and the write is tried again every STORE_RETRY_MS; polling and
 * alerts go on. At most HELD_MAX rows wait: past that the oldest telemetry goes, and
 * is counted (health not_stored); alert and device state rows always wait.
 */
#define STORE_RETRY_MS 1000
#define HELD_MAX 20000
/* A database found damaged while running is replaced at most this often. */
#define REOPEN_EVERY_MS 10000
/* Acks that could not be marked wait for the next try, up to this many. */
#define ACKS_KEEP_MAX 65536
#define ALERT_STATE_KEY "alert_state"

static volatile sig_atomic_t got_term, got_hup;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else
		got_term = 1;
}

struct flight {
	int mid;
	uint64_t seq;
	int kind;
	char *topic; /* alerts only: one transition per check in flight */
};

/* Rows of one store transaction. */
struct rowbuf {
	struct store_row *r;
	size_t n, cap;
};

/* What the core knows of each device, for device/<id> and health. */
struct devstate {
	uint64_t ok, failed;   /* polls since start */
	int published;         /* -1 nothing yet, 0 offline, 1 online: last device/<id> stored */
	int last_err;          /* MBE_* of the last failed poll, 0 before any */
	int64_t last_poll_ms;  /* real time of the last reading */
	int64_t last_ok_ms;    /* real time of the last reading without a failed point */
};

/*
 * How late polls start against their schedule, per health interval: buckets of
 * 1 ms below 64 ms, then doubling, so p50 and p99 cost no sorting and no memory per poll.
 */
#define LAG_LINEAR 64
#define LAG_BUCKETS (LAG_LINEAR + 16)
struct lag_hist {
	uint64_t n[LAG_BUCKETS];
	uint64_t total;
};

static void lag_add(struct lag_hist *h, int64_t ms)
{
	size_t b;

	if (ms < 0)
		ms = 0;
	if (ms < LAG_LINEAR) {
		b = (size_t)ms;
	} else {
		b = LAG_LINEAR;
		for (int64_t top = LAG_LINEAR * 2; ms >= top && b < LAG_BUCKETS - 1; top *= 2)
			b++;
	}
	h->n[b]++;
	h->total++;
}

/* The upper bound of the bucket holding quantile q. */
static int64_t lag_quantile(const struct lag_hist *h, double q)
{
	uint64_t want = (uint64_t)(q * (double)h->total), seen = 0;

	for (size_t b = 0; b < LAG_BUCKETS; b++) {
		seen += h->n[b];
		if (seen > want)
			return b < LAG_LINEAR ? (int64_t)b : (int64_t)LAG_LINEAR << (b - LAG_LINEAR + 1);
	}
	return 0;
}

/* An action's write, waiting for the poller's word; what it carries back into the alert
 * if it fails. */
struct pending_write {
	uint64_t tag;
	struct alert_transition t;  /* the transition that asked for it */
	size_t device, point;
	double value;
};

/* A write's result, from a poller thread to the core. */
struct write_result {
	uint64_t tag;
	int err;
};

#define MAX_PENDING_WRITES 256

struct core {
	struct config *cfg;
	struct lag_hist lag;   /* since the last health message */
	struct pending_write *pw;  /* MAX_PENDING_WRITES slots; tag 0 = free */
	uint64_t next_tag;
	pthread_mutex_t wmu;       /* guards wres, written by poller threads */
	struct write_result wres[MAX_PENDING_WRITES];
	size_t nwres;
	int wfd;                   /* eventfd: results are waiting */
	bool uplink_up;            /* for the status snapshot */
	int64_t uplink_since_ms;
	char uplink_why[160];
	int64_t started_ms, next_snapshot;
	char last_status[200];     /* the last STATUS= sent */
	struct devstate *dev;  /* one per cfg->devices */
	uint32_t generation;
	struct store *st;
	struct uplink *up;
	struct queue *q;
	struct tcpoll *tp;
	struct serpoll *sp;
	struct alert_engine *ae;
	struct alert_out ao;
	int64_t next_tick, next_state_save;

	struct flight *fl; /* in flight, unordered */
	size_t nfl, capfl;
	uint64_t after[2];  /* per row kind: highest seq handed to the uplink this session */
	bool alerts_blocked;/* an alert row waits for its check's previous transition */

	uint64_t *acked;    /* seqs acknowledged, not yet marked in the store */
	size_t nacked, capacked;
	int64_t acked_since;   /* mono ms of the oldest unmarked ack, 0 when none */

	struct rowbuf *pend;    /* rows waiting for their transaction */
	int64_t pend_since;     /* mono ms of the oldest, 0 when none */
	struct jbuf jb;
	int64_t start_mono, next_health, next_maintain, next_watchdog, watchdog_ms;
	uint64_t published, acks, store_errors;
	uint64_t polls_ok, polls_failed;
	bool store_failing;
	struct rowbuf *held;    /* rows the store could not take yet, in order */
	bool held_state;        /* held rows include transitions: save the engine with them */
	int64_t retry_at;       /* mono ms of the next try of the held rows */
	int64_t next_reopen;    /* mono ms: a damaged database may be replaced again */
	char store_err[256];    /* why the store fails, for health */
	struct clock_watch clockw;  /* steps of the wall clock (clock_look) */
	int64_t clockw_next_file;   /* mono ms: the test hook's file is read again */
};

/* ---- readings -> outbox rows -------------------------------------------------- */

/* The payload members after seq: "ts":...,"values":{...}[,"errors":{...}] */
static void reading_body(struct jbuf *b, const struct device_cfg *d, const struct reading *r)
{
	bool first = true, any_err = false;

	jb_cstr(b, "\"ts\":");
	jb_i64(b, r->ts_ms);
	jb_cstr(b, ",\"values\":{");
	for (uint16_t i = 0; i < r->nvalues && i < d->npoints; i++) {
		if (r->values[i].kind == VAL_NONE) {
			any_err = true;
			continue;
		}
		jb_key(b, d->points[i].name, &first);
		jb_point_value(b, &d->points[i], &r->values[i]);
	}
	jb_cstr(b, "}");
	if (!any_err)
		return;
	first = true;
	jb_cstr(b, ",\"errors\":{");
	for (uint16_t i = 0; i < r->nvalues && i < d->npoints; i++) {
		if (r->values[i].kind != VAL_NONE)
			continue;
		jb_key(b, d->points[i].name, &first);
		jb_str(b, mb_strerror(r->values[i].err));
	}
	jb_cstr(b, "}");
}

/* A device/<id> transition when the poller's circuit breaker changed its mind (or on
 * the first reading after start, so the retained state is always current). */
static bool device_row(struct core *c, const struct device_cfg *d, struct devstate *ds,
		       const struct reading *r, struct store_row *row)
{
	char topic[ID_MAX + 16];

	if (ds->published == (int)r->online)
		return false;
	/* a device never heard from is not "online" because its breaker has not tripped
	 * yet: its first state waits for an answer, or for offline_after failures */
	if (ds->published < 0 && r->online) {
		bool answered = false;

		for (uint16_t k = 0; k < r->nvalues; k++)
			answered |= r->values[k].kind != VAL_NONE ||
				    r->values[k].err >= MBE_EXC_BASE;
		if (!answered && r->nvalues > 0)
			return false;
	}
	ds->published = r->online;
	jb_reset(&c->jb);
	jb_cstr(&c->jb, "\"ts\":");
	jb_i64(&c->jb, r->ts_ms);
	jb_cstr(&c->jb, ",\"state\":");
	jb_str(&c->jb, r->online ? "online" : "offline");
	if (d->name) {
		jb_cstr(&c->jb, ",\"name\":");
		jb_str(&c->jb, d->name);
	}
	if (r->last_err) {
		jb_cstr(&c->jb, ",\"last_error\":");
		jb_str(&c->jb, mb_strerror(r->last_err));
	}
	snprintf(topic, sizeof topic, "device/%s", d->id);
	*row = (struct store_row){
		.kind = ROW_ALERT,
		.ts_ms = r->ts_ms,
		.topic = strdup(topic),
		.body = c->jb.oom ? NULL : strdup(jb_cstr_get(&c->jb)),
		.retain = true,
	};
	if (!row->topic || !row->body) {
		store_row_clear(row);
		ds->published = -1;
		return false;
	}
	return true;
}


static struct store_row *rowbuf_add(struct rowbuf *b)
{
	if (b->n == b->cap) {
		size_t ncap = b->cap ? b->cap * 2 : 256;
		struct store_row *p = realloc(b->r, ncap * sizeof *p);
		if (!p)
			return NULL;
		b->r = p;
		b->cap = ncap;
	}
	b->r[b->n] = (struct store_row){ 0 };
	return &b->r[b->n++];
}

static void rowbuf_clear(struct rowbuf *b)
{
	for (size_t i = 0; i < b->n; i++)
		store_row_clear(&b->r[i]);
	b->n = 0;
}

static void alert_body(struct jbuf *b, const struct config *cfg, const struct alert_transition *t,
		       const struct pending_write *failed, int err)
{
	long r = -1;

	for (size_t i = 0; i < cfg->nrules; i++)
		if (strcmp(cfg->rules[i].id, t->rule) == 0)
			r = (long)i;
	jb_cstr(b, "\"ts\":");
	jb_i64(b, t->ts_ms);
	jb_cstr(b, ",\"rule\":");
	jb_str(b, t->rule);
	jb_cstr(b, ",\"check\":");
	jb_str(b, t->check);
	jb_cstr(b, ",\"state\":");
	jb_str(b, t->state == ALERT_FIRING ? "firing" : "resolved");
	jb_cstr(b, ",\"severity\":");
	if (severity_name(t->severity))
		jb_str(b, severity_name(t->severity));
	else
		jb_cstr(b, "null");
	jb_cstr(b, ",\"value\":");
	jb_double(b, t->value);
	jb_cstr(b, ",\"threshold\":");
	jb_double(b, t->threshold);
	if (t->unit[0]) {
		jb_cstr(b, ",\"unit\":");
		jb_str(b, t->unit);
	}
	jb_cstr(b, ",\"message\":");
	jb_str(b, t->message);
	if (r >= 0 && cfg->rules[r].name) {
		jb_cstr(b, ",\"name\":");
		jb_str(b, cfg->rules[r].name);
	}
	if (failed) {
		const struct device_cfg *d = &cfg->devices[failed->device];
		char ref[ID_MAX + POINT_NAME_MAX + 2];

		snprintf(ref, sizeof ref, "%s.%s", d->id, d->points[failed->point].name);
		jb_cstr(b, ",\"action\":{\"write\":");
		jb_str(b, ref);
		jb_cstr(b, ",\"value\":");
		jb_double(b, failed->value);
		jb_cstr(b, ",\"error\":");
		jb_str(b, mb_strerror(err));
		jb_cstr(b, "}");
	}
}

static void send_action(struct core *c, const struct alert_action *a,
			const struct alert_transition *t)
{
	const struct device_cfg *d = &c->cfg->devices[a->device];
	const struct point_def *p = &d->points[a->point];
	struct pending_write *slot = NULL;
	uint64_t tag = 0;
	int rc;

	for (size_t i = 0; i < MAX_PENDING_WRITES && t; i++)
		if (c->pw[i].tag == 0) {
			slot = &c->pw[i];
			break;
		}
	if (slot) {
		tag = ++c->next_tag;
		*slot = (struct pending_write){ .tag = tag, .t = *t, .device = a->device,
						.point = a->point, .value = a->value };
	}
	/* said before it is queued: the poller may report it done before we return */
	log_info("alert %s/%s: writing %s.%s = %g", a->rule, a->check, d->id, p->name, a->value);
	if (c->cfg->buses[d->bus].kind == BUS_TCP)
		rc = c->tp ? tcpoll_write(c->tp, (uint32_t)a->device, (uint16_t)a->point, a->value,
					  tag) : -1;
	else
		rc = c->sp ? serpoll_write(c->sp, (uint32_t)a->device, (uint16_t)a->point, a->value,
					   tag) : -1;
	if (rc != 0) {
		log_warn("alert %s/%s: write %s.%s = %g refused", a->rule, a->check, d->id, p->name,
			 a->value);
		if (slot)
			slot->tag = 0;
	}
}

/* The transition of this action's check in this batch, if any. */
static const struct alert_transition *action_cause(const struct alert_out *o,
						   const struct alert_action *a)
{
	const struct alert_transition *t = NULL;

	for (size_t i = 0; i < o->nt; i++)
		if (strcmp(o->t[i].rule, a->rule) == 0 && strcmp(o->t[i].check, a->check) == 0)
			t = &o->t[i];
	return t;
}

/* What the engine said: transitions become outbox rows (retained alert/<rule>/<check>),
 * notes go to the log, actions to the poller that owns the device. */
static size_t take_alert_out(struct core *c, struct rowbuf *rb)
{
	struct alert_out *o = &c->ao;
	size_t rows = 0;

	for (size_t i = 0; i < o->nn; i++)
		log_info("alert %s/%s: %s", o->n[i].rule, o->n[i].check, o->n[i].message);
	for (size_t i = 0; i < o->nt; i++) {
		const struct alert_transition *t = &o->t[i];
		char topic[ID_MAX + ALERT_CHECK_MAX + 16];
		struct store_row *row;

		if (t->state == ALERT_FIRING)
			log_warnx("alert %s/%s firing (%s): %s", t->rule, t->check,
				  severity_name(t->severity) ? severity_name(t->severity) : "-",
				  t->message);
		else
			log_info("alert %s/%s resolved: %s", t->rule, t->check, t->message);
		jb_reset(&c->jb);
		alert_body(&c->jb, c->cfg, t, NULL, 0);
		snprintf(topic, sizeof topic, "alert/%s/%s", t->rule, t->check);
		row = rowbuf_add(rb);
		if (!row || c->jb.oom) {
			log_errx("out of memory: alert %s/%s not stored", t->rule, t->check);
			continue;
		}
		*row = (struct store_row){ .kind = ROW_ALERT, .ts_ms = t->ts_ms, .retain = true,
					   .topic = strdup(topic),
					   .body = strdup(jb_cstr_get(&c->jb)) };
		if (!row->topic || !row->body) {
			store_row_clear(row);
			rb->n--;
			log_errx("out of memory: alert %s/%s not stored", t->rule, t->check);
			continue;
		}
		rows++;
	}
	for (size_t i = 0; i < o->na; i++)
		send_action(c, &o->a[i], action_cause(o, &o->a[i]));
	alert_out_reset(o);
	return rows;
}

/* Move every row of from to the end of to (both keep their order). */
static int rowbuf_move(struct rowbuf *to, struct rowbuf *from)
{
	if (from->n == 0)
		return 0;
	if (to->n + from->n > to->cap) {
		size_t ncap = to->cap ? to->cap : 256;
		struct store_row *p;
		while (ncap < to->n + from->n)
			ncap *= 2;
		p = realloc(to->r, ncap * sizeof *p);
		if (!p)
			return -1;
		to->r = p;
		to->cap = ncap;
	}
	memcpy(to->r + to->n, from->r, from->n * sizeof *from->r);
	to->n += from->n;
	from->n = 0;
	return 0;
}

/* Past HELD_MAX, the oldest held telemetry goes (counted); state rows stay. */
static void held_trim(struct core *c)
{
	struct rowbuf *h = c->held;
	size_t excess, w = 0, dropped = 0;

	if (h->n <= HELD_MAX)
		return;
	excess = h->n - HELD_MAX;
	for (size_t i = 0; i < h->n; i++) {
		if (dropped < excess && h->r[i].kind == ROW_TELEMETRY) {
			store_row_clear(&h->r[i]);
			dropped++;
			continue;
		}
		h->r[w++] = h->r[i];
	}
	h->n = w;
	c->store_errors += dropped;
}

/* rb's rows wait behind those already held (rb may be the held rows themselves). */
static void hold_rows(struct core *c, struct rowbuf *rb, bool transitions)
{
	if (rb != c->held && rowbuf_move(c->held, rb) != 0) {
		c->store_errors += rb->n;
		log_errx("out of memory: %zu rows not stored", rb->n);
		rowbuf_clear(rb);
	}
	c->held_state |= transitions;
	held_trim(c);
}

/* A damaged database found while running: set aside and replaced (store_reopen). */
static void store_check_damage(struct core *c)
{
	char err[512];

	if (!store_damaged(c->st) || clock_mono_ms() < c->next_reopen)
		return;
	c->next_reopen = clock_mono_ms() + REOPEN_EVERY_MS;
	log_errx("store: the database is damaged (%s); replacing it", store_error(c->st));
	if (store_reopen(c->st, err, sizeof err) != 0) {
		log_errx("store: %s; trying again in %d s", err, REOPEN_EVERY_MS / 1000);
		return;
	}
	/* the fresh file holds what could be read, under the same seqs: read it afresh */
	c->after[ROW_TELEMETRY] = c->after[ROW_ALERT] = 0;
	c->retry_at = 0;
	log_info("store: running on a fresh database");
}

/*
 * One transaction; with transitions, the engine's state commits with them. When the
 * store fails, the rows are held (in order, before anything newer) and tried again
 * every STORE_RETRY_MS; once it writes again they go in first, with the state.
 */
static void commit_rows(struct core *c, struct rowbuf *rb, bool transitions)
{
	char err[256], *state = NULL;
	int64_t now = clock_mono_ms();
	int rc;

	if (c->held->n > 0) {
		hold_rows(c, rb, transitions);
		if (now < c->retry_at)
			return;
		rb = c->held;
		transitions = c->held_state;
	}
	if (rb->n == 0)
		return;
	if (transitions && c->ae)
		state = alert_save(c->ae);
	rc = store_append_meta(c->st, rb->r, rb->n, state ? ALERT_STATE_KEY : NULL, state, err,
			       sizeof err);
	free(state);
	if (rc != 0) {
		size_t n = rb->n;
		hold_rows(c, rb, transitions);
		c->retry_at = now + STORE_RETRY_MS;
		snprintf(c->store_err, sizeof c->store_err, "%s", err);
		if (!c->store_failing)
			log_errx("store: cannot write %zu rows: %s; they wait in memory (at most %d"
				 " readings) and the write is tried every %d s; polling and alerts go"
				 " on", n, err, HELD_MAX, STORE_RETRY_MS / 1000);
		c->store_failing = true;
		store_check_damage(c);
		return;
	}
	if (c->store_failing) {
		log_info("store: writing again (%zu rows that waited are stored)", rb->n);
		c->store_failing = false;
		c->store_err[0] = '\0';
	}
	if (rb == c->held)
		c->held_state = false;
	rowbuf_clear(rb);
}

/* Commit what waits, when it has waited long enough (or now, with force). */
static void commit_pending(struct core *c, bool force)
{
	if (c->held->n > 0) {
		if (force || clock_mono_ms() >= c->retry_at) {
			if (force)
				c->retry_at = 0;
			commit_rows(c, c->pend, false);
			c->pend_since = 0;
		}
		return;
	}
	if (c->pend->n == 0)
		return;
	if (!force && c->pend->n < COMMIT_ROWS && clock_mono_ms() - c->pend_since < COMMIT_MS)
		return;
	commit_rows(c, c->pend, false);
	c->pend_since = 0;
}

static void store_readings(struct core *c)
{
	void *items[BATCH_MAX];
	struct rowbuf *rb = c->pend;
	size_t n;

	while ((n = queue_pop(c->q, items, BATCH_MAX)) > 0) {
		size_t transitions;

		for (size_t i = 0; i < n; i++) {
			struct reading *r = items[i];
			const struct device_cfg *d;
			struct store_row *row;
			char topic[ID_MAX + 16];
			bool failed = false;

			if (r->generation != c->generation || r->device >= c->cfg->ndevices) {
				reading_free(r);
				continue;
			}
			d = &c->cfg->devices[r->device];
			for (uint16_t k = 0; k < r->nvalues; k++)
				failed |= r->values[k].kind == VAL_NONE;
			c->dev[r->device].last_poll_ms = r->ts_ms;
			if (failed) {
				c->polls_failed++;
				c->dev[r->device].failed++;
				for (uint16_t k = 0; k < r->nvalues; k++)
					if (r->values[k].kind == VAL_NONE)
						c->dev[r->device].last_err = r->values[k].err;
			} else {
				c->polls_ok++;
				c->dev[r->device].ok++;
				c->dev[r->device].last_ok_ms = r->ts_ms;
			}
			lag_add(&c->lag, r->start_mono_ms - r->sched_mono_ms);
			if ((row = rowbuf_add(rb)) && !device_row(c, d, &c->dev[r->device], r, row))
				rb->n--;
			if (c->ae && alert_feed(c->ae, r->device, r->ts_ms, r->values, r->nvalues,
						&c->ao) != 0)
				log_warnx("alerts: out of memory evaluating a reading of %s", d->id);
			jb_reset(&c->jb);
			reading_body(&c->jb, d, r);
			snprintf(topic, sizeof topic, "telemetry/%s", d->id);
			row = rowbuf_add(rb);
			if (row)
				*row = (struct store_row){
					.kind = ROW_TELEMETRY,
					.ts_ms = r->ts_ms,
					.topic = strdup(topic),
					.body = c->jb.oom ? NULL : strdup(jb_cstr_get(&c->jb)),
				};
			reading_free(r);
			if (!row || !row->topic || !row->body) {
				if (row) {
					store_row_clear(row);
					rb->n--;
				}
				c->store_errors++;
				log_warnx("out of memory: a reading of %s was not stored", d->id);
			}
		}
		transitions = take_alert_out(c, rb);
		if (transitions > 0) {
			/* alerts are not kept waiting; the engine state commits with them */
			commit_rows(c, rb, true);
			c->pend_since = 0;
		} else if (rb->n > 0 && c->pend_since == 0) {
			c->pend_since = clock_mono_ms();
		}
		commit_pending(c, false);
		if (n < BATCH_MAX)
			break;
	}
}

/* Time passes for the engine: days complete, 'for' durations run out. */
static void alert_time(struct core *c, int64_t now_real)
{
	if (!c->ae)
		return;
	if (alert_tick(c->ae, now_real, &c->ao) != 0)
		log_warnx("alerts: out of memory on a tick");
	if (take_alert_out(c, c->pend) > 0) {
		commit_rows(c, c->pend, true);
		c->pend_since = 0;
	}
}

/*
 * The wall clock, looked at before each batch of readings: the test hook's file about
 * once a second (SLUICE_TEST_CLOCK_FILE, docs/operations.md), then a step of the
 * real-time clock, injected or real (NTP after a boot without RTC), so that the engine
 * re-bases onto the step before it sees a reading stamped after it. Schedules run on
 * the monotonic clock and never notice.
 */
static void clock_log(int rc, const char *msg)
{
	if (rc > 0)
		log_info("%s", msg);
	else if (rc < 0)
		log_warnx("%s", msg);
}

static void clock_start(struct core *c)
{
	char msg[256];

	clock_log(clock_watch_init(&c->clockw, getenv("SLUICE_TEST_CLOCK_FILE"), msg, sizeof msg),
		  msg);
	c->clockw_next_file = clock_mono_ms() + 1000;
}

static void clock_look(struct core *c)
{
	char msg[256];
	int64_t now = clock_mono_ms(), delta;

	if (c->clockw.test_file && now >= c->clockw_next_file) {
		c->clockw_next_file = now + 1000;
		clock_log(clock_watch_test_file(&c->clockw, msg, sizeof msg), msg);
	}
	if (!clock_watch_stepped(&c->clockw, &delta))
		return;
	log_warnx("wall clock stepped by %+.1f s", (double)delta / 1000);
	if (c->ae)
		alert_clock_step(c->ae, delta);
}

static void save_alert_state(struct core *c)
{
	char *state;

	if (!c->ae || !(state = alert_save(c->ae)))
		return;
	if (store_meta_put(c->st, ALERT_STATE_KEY, state) != 0 && !c->store_failing)
		log_warnx("store: could not save the alert state: %s", store_error(c->st));
	free(state);
}

static struct alert_engine *alert_start(const struct config *cfg, const char *state)
{
	struct alert_engine *ae;
	char err[256];

	ae = alert_new(cfg, err, sizeof err);
	if (!ae) {
		log_errx("alerts: %s; no alert is evaluated", err);
		return NULL;
	}
	if (state && alert_restore(ae, state, err, sizeof err) != 0)
		log_warnx("alerts: the saved state could not be restored (%s); starting afresh",
			  err);
	return ae;
}

/* ---- outbox -> uplink ---------------------------------------------------------- */

static void flight_forget_all(struct core *c)
{
	for (size_t i = 0; i < c->nfl; i++)
		free(c->fl[i].topic);
	c->nfl = 0;
	c->after[ROW_TELEMETRY] = c->after[ROW_ALERT] = 0;
}

static void flush_acks(struct core *c, bool force);

static void on_connected(void *ctx)
{
	struct core *c = ctx;
	flush_acks(c, true); /* before the outbox is read again from its start */
	flight_forget_all(c);
	c->uplink_up = true;
	c->uplink_since_ms = clock_real_ms();
	c->uplink_why[0] = '\0';
}

static void on_disconnected(void *ctx, const char *why)
{
	struct core *c = ctx;
	flush_acks(c, true);
	flight_forget_all(c);
	if (c->uplink_up || !c->uplink_since_ms)
		c->uplink_since_ms = clock_real_ms();
	c->uplink_up = false;
	snprintf(c->uplink_why, sizeof c->uplink_why, "%s", why ? why : "");
}

static void on_acked(void *ctx, int mid)
{
	struct core *c = ctx;

	for (size_t i = 0; i < c->nfl; i++) {
		if (c->fl[i].mid != mid)
			continue;
		if (c->nacked == c->capacked) {
			size_t ncap = c->capacked ? c->capacked * 2 : 256;
			uint64_t *p = realloc(c->acked, ncap * sizeof *p);
			if (!p)
				return; /* stays unacked: sent again later, a duplicate, never a loss */
			c->acked = p;
			c->capacked = ncap;
		}
		if (c->nacked == 0)
			c->acked_since = clock_mono_ms();
		c->acked[c->nacked++] = c->fl[i].seq;
		free(c->fl[i].topic);
		c->fl[i] = c->fl[--c->nfl];
		c->acks++;
		return;
	}
}

static void flush_acks(struct core *c, bool force)
{
	if (c->nacked == 0)
		return;
	if (!force && c->nacked < 1024 && clock_mono_ms() - c->acked_since < ACKS_MS)
		return;
	c->acked_since = 0;
	if (store_mark_sent(c->st, c->acked, c->nacked) != 0) {
		/*
		 * Kept for the next try (a full disk frees up); past ACKS_KEEP_MAX they go:
		 * those rows are sent again after a restart, a duplicate, never a loss.
		 */
		if (c->nacked < ACKS_KEEP_MAX) {
			c->acked_since = clock_mono_ms();
			return;
		}
		log_warnx("store: could not mark %zu rows delivered: %s", c->nacked,
			  store_error(c->st));
		store_check_damage(c);
	}
	c->nacked = 0;
}

static bool topic_in_flight(const struct core *c, const char *topic)
{
	for (size_t i = 0; i < c->nfl; i++)
		if (c->fl[i].topic && strcmp(c->fl[i].topic, topic) == 0)
			return true;
	return false;
}

static int publish_row(struct core *c, struct store_row *r)
{
	int mid;

	jb_reset(&c->jb);
	jb_cstr(&c->jb, "{\"seq\":");
	jb_u64(&c->jb, r->seq);
	jb_cstr(&c->jb, ",");
	jb_cstr(&c->jb, r->body);
	jb_cstr(&c->jb, "}");
	if (c->jb.oom)
		return -1;
	if (uplink_publish(c->up, r->topic, c->jb.p, c->jb.len, c->cfg->uplink.qos, r->retain,
			   &mid) != 0)
		return -1;
	c->fl[c->nfl++] = (struct flight){
		.mid = mid,
		.seq = r->seq,
		.kind = r->kind,
		.topic = r->kind == ROW_ALERT ? r->topic : NULL,
	};
	if (r->kind == ROW_ALERT)
		r->topic = NULL; /* now owned by the flight */
	c->after[r->kind] = r->seq;
	c->published++;
	return 0;
}

/* Fill the window: alert transitions first, in seq order, never two of one check in
 * flight (a retained state must not go backwards); then telemetry in seq order. */
static void drain_outbox(struct core *c)
{
	static const int kinds[] = { ROW_ALERT, ROW_TELEMETRY };
	struct store_row rows[256];

	if (!uplink_connected(c->up))
		return;
	for (size_t k = 0; k < 2; k++) {
		int kind = kinds[k];

		while (c->nfl < c->capfl) {
			size_t want = c->capfl - c->nfl;
			long n;
			bool stop = false;

			if (want > 256)
				want = 256;
			n = store_fetch_unsent(c->st, kind, c->after[kind], want, rows);
			if (n <= 0)
				break;
			for (long i = 0; i < n; i++) {
				if (!stop && kind == ROW_ALERT && topic_in_flight(c, rows[i].topic))
					stop = true;
				if (!stop && publish_row(c, &rows[i]) != 0)
					stop = true;
				store_row_clear(&rows[i]);
			}
			if (stop || (size_t)n < want)
				break;
		}
		/* telemetry waits while an alert transition is held back */
		if (kind == ROW_ALERT && c->nfl >= c->capfl)
			return;
	}
}

/* ---- status snapshot ------------------------------------------------------------- */

/*
 * What sluicectl status shows of the running daemon: a JSON snapshot in the store's
 * meta table (key "status"), rewritten every few seconds — more seldom on a large site,
 * so that an SD card is not rewritten with a thousand devices' state every 5 s.
 */
#define STATUS_KEY "status"

static int64_t snapshot_every_ms(const struct config *cfg)
{
	int64_t ms = (int64_t)cfg->ndevices * 10; /* 10 ms per device: 5,000 -> 50 s */
	return ms < 5000 ? 5000 : ms;
}

static void write_snapshot(struct core *c, bool stopping)
{
	struct jbuf b;
	bool first = true;

	jb_init(&b);
	jb_cstr(&b, "{");
	jb_key(&b, "pid", &first);
	jb_i64(&b, (int64_t)getpid());
	jb_key(&b, "version", &first);
	jb_str(&b, SLUICE_VERSION);
	jb_key(&b, "gateway", &first);
	jb_str(&b, c->cfg->gateway.id);
	jb_key(&b, "started", &first);
	jb_i64(&b, c->started_ms);
	jb_key(&b, "updated", &first);
	jb_i64(&b, clock_real_ms());
	jb_key(&b, "running", &first);
	jb_bool(&b, !stopping);
	jb_key(&b, "uplink", &first);
	jb_cstr(&b, "{\"host\":");
	jb_str(&b, c->cfg->uplink.host);
	jb_cstr(&b, ",\"port\":");
	jb_i64(&b, c->cfg->uplink.port);
	jb_cstr(&b, ",\"connected\":");
	jb_bool(&b, c->uplink_up);
	jb_cstr(&b, ",\"since\":");
	jb_i64(&b, c->uplink_since_ms);
	if (!c->uplink_up && c->uplink_why[0]) {
		jb_cstr(&b, ",\"error\":");
		jb_str(&b, c->uplink_why);
	}
	jb_cstr(&b, "}");
	jb_key(&b, "buses", &first);
	jb_cstr(&b, "[");
	for (size_t i = 0; i < c->cfg->nbuses; i++) {
		const struct bus_cfg *bus = &c->cfg->buses[i];
		static const char *kinds[] = { "tcp", "rtu", "rtu_over_tcp" };

		if (i)
			jb_cstr(&b, ",");
		jb_cstr(&b, "{\"id\":");
		jb_str(&b, bus->id);
		jb_cstr(&b, ",\"kind\":");
		jb_str(&b, kinds[bus->kind]);
		jb_cstr(&b, ",\"address\":");
		if (bus->kind == BUS_RTU) {
			jb_str(&b, bus->device);
		} else {
			char addr[300];
			snprintf(addr, sizeof addr, strchr(bus->host, ':') ? "[%s]:%u" : "%s:%u",
				 bus->host, bus->port);
			jb_str(&b, addr);
		}
		jb_cstr(&b, "}");
	}
	jb_cstr(&b, "]");
	jb_key(&b, "devices", &first);
	jb_cstr(&b, "[");
	for (size_t i = 0; i < c->cfg->ndevices; i++) {
		const struct device_cfg *d = &c->cfg->devices[i];
		const struct devstate *ds = &c->dev[i];

		if (i)
			jb_cstr(&b, ",");
		jb_cstr(&b, "{\"id\":");
		jb_str(&b, d->id);
		if (d->name) {
			jb_cstr(&b, ",\"name\":");
			jb_str(&b, d->name);
		}
		jb_cstr(&b, ",\"bus\":");
		jb_str(&b, c->cfg->buses[d->bus].id);
		jb_cstr(&b, ",\"state\":");
		jb_str(&b, ds->published < 0 ? (ds->last_poll_ms ? "unknown" : "not polled")
					     : ds->published ? "online" : "offline");
		jb_cstr(&b, ",\"last_poll\":");
		jb_i64(&b, ds->last_poll_ms);
		jb_cstr(&b, ",\"last_ok\":");
		jb_i64(&b, ds->last_ok_ms);
		jb_cstr(&b, ",\"polls_ok\":");
		jb_u64(&b, ds->ok);
		jb_cstr(&b, ",\"polls_failed\":");
		jb_u64(&b, ds->failed);
		if (ds->last_err) {
			jb_cstr(&b, ",\"last_error\":");
			jb_str(&b, mb_strerror(ds->last_err));
		}
		jb_cstr(&b, "}");
	}
	jb_cstr(&b, "]}");
	if (!b.oom && store_meta_put(c->st, STATUS_KEY, jb_cstr_get(&b)) != 0 && !c->store_failing)
		log_warnx("store: could not write the status snapshot: %s", store_error(c->st));
	jb_free(&b);
}

/* systemd's STATUS=: one line for `systemctl status`, sent when it changes. */
static void notify_status(struct core *c)
{
	char line[200];
	size_t online = 0, polled = 0;
	struct store_stats st = { 0 };

	for (size_t i = 0; i < c->cfg->ndevices; i++) {
		polled += c->dev[i].last_poll_ms != 0;
		online += c->dev[i].published == 1;
	}
	store_stats(c->st, &st);
	snprintf(line, sizeof line, "STATUS=%zu of %zu devices online, backlog %" PRIu64
		 " rows, uplink %s", online, polled, st.unsent,
		 c->uplink_up ? "connected" : "disconnected");
	if (strcmp(line, c->last_status) != 0) {
		notify_send(line);
		snprintf(c->last_status, sizeof c->last_status, "%s", line);
	}
}

/* ---- health ----------------------------------------------------------------------- */

static void publish_health(struct core *c, int64_t now_mono)
{
	struct store_stats s = { 0 };
	int mid;
	bool first = true;

	if (!uplink_connected(c->up))
		return;
	store_stats(c->st, &s);
	jb_reset(&c->jb);
	jb_cstr(&c->jb, "{");
	jb_key(&c->jb, "ts", &first);
	jb_i64(&c->jb, clock_real_ms());
	jb_key(&c->jb, "uptime_s", &first);
	jb_i64(&c->jb, (now_mono - c->start_mono) / 1000);
	jb_key(&c->jb, "polls_ok", &first);
	jb_u64(&c->jb, c->polls_ok);
	jb_key(&c->jb, "polls_failed", &first);
	jb_u64(&c->jb, c->polls_failed);
	jb_key(&c->jb, "backlog_rows", &first);
	jb_u64(&c->jb, s.unsent);
	jb_key(&c->jb, "backlog_age_s", &first);
	/* never negative: after a wall clock step back, rows stamped before it look young */
	jb_i64(&c->jb, s.oldest_unsent_ms && clock_real_ms() > s.oldest_unsent_ms
			       ? (clock_real_ms() - s.oldest_unsent_ms) / 1000 : 0);
	jb_key(&c->jb, "dropped", &first);
	jb_u64(&c->jb, s.dropped);
	jb_key(&c->jb, "not_stored", &first);
	jb_u64(&c->jb, queue_refused(c->q) + c->store_errors);
	if (c->store_failing) {
		jb_key(&c->jb, "store_error", &first);
		jb_str(&c->jb, c->store_err);
	}
	jb_key(&c->jb, "held_rows", &first);
	jb_u64(&c->jb, c->held->n);
	jb_key(&c->jb, "db_bytes", &first);
	jb_u64(&c->jb, s.db_bytes);
	jb_key(&c->jb, "last_seq", &first);
	jb_u64(&c->jb, s.last_seq);
	jb_key(&c->jb, "poll_lag_ms", &first);
	jb_cstr(&c->jb, "{\"p50\":");
	jb_i64(&c->jb, lag_quantile(&c->lag, 0.50));
	jb_cstr(&c->jb, ",\"p99\":");
	jb_i64(&c->jb, lag_quantile(&c->lag, 0.99));
	jb_cstr(&c->jb, ",\"polls\":");
	jb_u64(&c->jb, c->lag.total);
	jb_cstr(&c->jb, "}");
	memset(&c->lag, 0, sizeof c->lag);
	jb_key(&c->jb, "devices", &first);
	jb_cstr(&c->jb, "{");
	for (size_t i = 0, dfirst = 1; i < c->cfg->ndevices; i++) {
		const struct devstate *ds = &c->dev[i];
		bool f = dfirst;

		if (ds->published < 0)
			continue; /* not polled in this build */
		jb_key(&c->jb, c->cfg->devices[i].id, &f);
		dfirst = 0;
		jb_cstr(&c->jb, "{\"polls_ok\":");
		jb_u64(&c->jb, ds->ok);
		jb_cstr(&c->jb, ",\"polls_failed\":");
		jb_u64(&c->jb, ds->failed);
		jb_cstr(&c->jb, ",\"online\":");
		jb_bool(&c->jb, ds->published == 1);
		jb_cstr(&c->jb, "}");
	}
	jb_cstr(&c->jb, "}}");
	if (!c->jb.oom)
		uplink_publish(c->up, "health", c->jb.p, c->jb.len, 0, false, &mid);
}

/* ---- set-up and the loop ---------------------------------------------------------- */

static void reading_free_item(void *p)
{
	reading_free(p);
}

static void sink_emit(void *ctx, struct reading *r)
{
	struct core *c = ctx;
	if (queue_push(c->q, r) != 0)
		reading_free(r); /* counted by the queue, reported in health */
}

/* From a poller thread: the log (thread-safe), and the result handed to the core under
 * wmu, with wfd to wake it. */
static void sink_write_done(void *ctx, uint32_t device, uint16_t point, uint64_t tag, int err)
{
	struct core *c = ctx;
	/* device and point index the config the write was asked under; a reload joins the
	 * pollers before it frees that config, so both are still valid here */
	const struct device_cfg *d = &c->cfg->devices[device];
	uint64_t one = 1;

	if (err)
		log_warnx("write %s.%s failed: %s", d->id, d->points[point].name, mb_strerror(err));
	else
		log_info("write %s.%s done", d->id, d->points[point].name);
	if (tag == 0)
		return;
	pthread_mutex_lock(&c->wmu);
	if (c->nwres < MAX_PENDING_WRITES)
		c->wres[c->nwres++] = (struct write_result){ .tag = tag, .err = err };
	pthread_mutex_unlock(&c->wmu);
	if (write(c->wfd, &one, sizeof one) < 0) {
		/* the counter is saturated: the core is awake anyway */
	}
}

/* Write results: a failed action write is stored and published in its alert — the
 * check's retained state again, with "action":{"write","value","error"} — so the
 * platform sees that the sign did not switch. */
static void take_write_results(struct core *c)
{
	struct write_result res[MAX_PENDING_WRITES];
	struct rowbuf rb = { 0 };
	uint64_t v;
	size_t n;

	if (read(c->wfd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn("write results");
	pthread_mutex_lock(&c->wmu);
	n = c->nwres;
	memcpy(res, c->wres, n * sizeof *res);
	c->nwres = 0;
	pthread_mutex_unlock(&c->wmu);
	for (size_t i = 0; i < n; i++) {
		struct pending_write *pw = NULL;
		char topic[ID_MAX + ALERT_CHECK_MAX + 16];
		struct store_row *row;

		for (size_t k = 0; k < MAX_PENDING_WRITES; k++)
			if (c->pw[k].tag == res[i].tag)
				pw = &c->pw[k];
		if (!pw)
			continue;
		if (res[i].err) {
			jb_reset(&c->jb);
			pw->t.ts_ms = clock_real_ms();
			alert_body(&c->jb, c->cfg, &pw->t, pw, res[i].err);
			snprintf(topic, sizeof topic, "alert/%s/%s", pw->t.rule, pw->t.check);
			row = rowbuf_add(&rb);
			if (row && !c->jb.oom) {
				*row = (struct store_row){ .kind = ROW_ALERT, .ts_ms = pw->t.ts_ms,
							   .retain = true, .topic = strdup(topic),
							   .body = strdup(jb_cstr_get(&c->jb)) };
				if (!row->topic || !row->body) {
					store_row_clear(row);
					rb.n--;
				}
			} else if (row) {
				rb.n--;
			}
		}
		pw->tag = 0;
	}
	commit_rows(c, &rb, false);
	free(rb.r);
}

/* Both kinds of pollers for cfg; serial lines first, so that the descriptors libmodbus
 * must select() on are low (DESIGN.md: descriptors past 1023). */
static int pollers_start(struct core *c, const struct poller_sink *sink)
{
	char err[512];
	struct site site = config_site(c->cfg);

	c->sp = serpoll_new(&site, c->generation, sink, err, sizeof err);
	if (!c->sp) {
		log_errx("serial pollers: %s", err);
		return -1;
	}
	c->tp = tcpoll_new(&site, c->generation, 0, sink, err, sizeof err);
	if (!c->tp) {
		log_errx("pollers: %s", err);
		return -1;
	}
	if (serpoll_start(c->sp) != 0 || tcpoll_start(c->tp) != 0) {
		log_errx("pollers: could not start threads");
		return -1;
	}
	return 0;
}

static void pollers_stop(struct core *c)
{
	if (c->sp)
		serpoll_stop(c->sp);
	if (c->tp)
		tcpoll_stop(c->tp);
}

static void pollers_free(struct core *c)
{
	pollers_stop(c);
	if (c->sp)
		serpoll_free(c->sp);
	if (c->tp)
		tcpoll_free(c->tp);
	c->sp = NULL;
	c->tp = NULL;
}

static size_t pollers_ndevices(const struct core *c)
{
	return (c->tp ? tcpoll_ndevices(c->tp) : 0) + (c->sp ? serpoll_ndevices(c->sp) : 0);
}

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Would the uplink connect differently under b than under a? */
static bool uplink_changed(const struct config *a, const struct config *b)
{
	const struct uplink_cfg *x = &a->uplink, *y = &b->uplink;

	return strcmp(a->gateway.id, b->gateway.id) != 0 || !str_eq(a->gateway.name, b->gateway.name) ||
	       !str_eq(x->host, y->host) || x->port != y->port || x->protocol != y->protocol ||
	       !str_eq(x->client_id, y->client_id) || !str_eq(x->username, y->username) ||
	       !str_eq(x->password_file, y->password_file) || x->tls != y->tls ||
	       !str_eq(x->ca_file, y->ca_file) || !str_eq(x->cert_file, y->cert_file) ||
	       !str_eq(x->key_file, y->key_file) || !str_eq(x->topic_prefix, y->topic_prefix) ||
	       x->keepalive_ms != y->keepalive_ms || x->inflight != y->inflight;
}

/*
 * SIGHUP: validate the file again; if it is good, swap. Pollers are rebuilt (their
 * devices, buses and schedules may all have changed); readings already taken are
 * stored under the config they were taken with; the uplink is kept unless how it
 * connects changed, so a reload does not make the gateway look offline. The data
 * directory and buffer settings are the store's, opened once: they need a restart.
 */
static void reload(struct core *c, const struct poller_sink *sink, const struct uplink_events *ev)
{
	struct config_diag diag = { 0 };
	struct config *old = c->cfg, *nc;
	struct devstate *ndev;
	char err[512], sum[160];

	notify_send("RELOADING=1");
	log_info("SIGHUP: reloading %s", old->path);
	nc = config_load(old->path, NULL, &diag);
	for (size_t i = 0; i < diag.n; i++)
		if (diag.is_error[i])
			log_errx("%s", diag.msgs[i]);
		else
			log_warnx("%s", diag.msgs[i]);
	config_diag_free(&diag);
	if (!nc) {
		log_errx("reload: %s is not valid; the running configuration is kept", old->path);
		notify_send("READY=1");
		return;
	}
	/* the running pollers go on while the new config's SunSpec devices are discovered */
	if (sunspec_setup(nc, err, sizeof err) < 0) {
		log_errx("reload: %s; the running configuration is kept", err);
		config_free(nc);
		notify_send("READY=1");
		return;
	}
	if (!str_eq(nc->gateway.data_dir, old->gateway.data_dir) ||
	    nc->buffer.max_size != old->buffer.max_size ||
	    nc->buffer.durability != old->buffer.durability ||
	    nc->buffer.keep_sent_ms != old->buffer.keep_sent_ms)
		log_warnx("reload: gateway.data_dir and buffer settings take effect at the next "
			  "restart");
	ndev = calloc(nc->ndevices ? nc->ndevices : 1, sizeof *ndev);
	if (!ndev) {
		log_errx("reload: out of memory; the running configuration is kept");
		config_free(nc);
		notify_send("READY=1");
		return;
	}

	pollers_stop(c);
	store_readings(c); /* under the config they were taken with */
	commit_pending(c, true);
	take_write_results(c);
	pollers_free(c);
	/* writes still queued in the old pollers were dropped with them */
	memset(c->pw, 0, MAX_PENDING_WRITES * sizeof *c->pw);

	if (uplink_changed(old, nc)) {
		struct flight *fl = calloc(nc->uplink.inflight, sizeof *fl);
		struct uplink *up;

		log_info("reload: the uplink settings changed; reconnecting");
		uplink_shutdown(c->up, 1000);
		flush_acks(c, true);
		uplink_free(c->up);
		flight_forget_all(c);
		up = uplink_new(nc, ev, err, sizeof err);
		if (!up || !fl) {
			/* the new uplink cannot even be set up (its files were checked a moment
			 * ago): keep storing; a restart will say why again */
			log_errx("reload: uplink: %s", up ? "out of memory" : err);
			free(fl);
			if (up)
				uplink_free(up);
			up = uplink_new(old, ev, err, sizeof err);
			if (!up)
				fatalx("reload: cannot restore the previous uplink: %s", err);
			config_free(nc);
			free(ndev);
			nc = old;
		} else {
			free(c->fl);
			c->fl = fl;
			c->capfl = nc->uplink.inflight;
		}
		c->up = up;
	}
	if (nc != old) {
		/* local time for night windows and calendar days */
		if (!str_eq(nc->gateway.timezone, old->gateway.timezone)) {
			setenv("TZ", nc->gateway.timezone, 1);
			tzset();
		}
		/* the engine's state carries over by rule id and check */
		char *state = c->ae ? alert_save(c->ae) : NULL;
		struct alert_engine *ae = alert_start(nc, state);

		free(state);
		if (ae) {
			alert_free(c->ae);
			c->ae = ae;
		}
		for (size_t i = 0; i < nc->ndevices; i++) {
			long j = config_find_device(old, nc->devices[i].id);
			ndev[i] = j >= 0 ? c->dev[j] : (struct devstate){ .published = -1 };
		}
		free(c->dev);
		c->dev = ndev;
		c->cfg = nc;
		c->generation++;
	}
	if (pollers_start(c, sink) != 0)
		fatalx("reload: the pollers could not be started");
	if (nc == c->cfg && nc != old) {
		config_free(old);
		config_summary(c->cfg, sum, sizeof sum);
		log_info("reloaded: %s, %zu devices polled", sum, pollers_ndevices(c));
	}
	notify_send("READY=1");
}

static int64_t min64(int64_t a, int64_t b)
{
	return a < b ? a : b;
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* a file size limit (ulimit -f, LimitFSIZE=) must fail a write with EFBIG, which
	 * the store reports and survives, not kill the daemon */
	signal(SIGXFSZ, SIG_IGN);
}

static void shutdown_drain(struct core *c)
{
	int64_t end = clock_mono_ms() + SHUTDOWN_DRAIN_MS;

	store_readings(c);
	commit_pending(c, true);
	while (uplink_connected(c->up) && clock_mono_ms() < end) {
		struct store_stats s;
		struct pollfd pfd;
		int fd;

		drain_outbox(c);
		if (c->nfl == 0 && store_stats(c->st, &s) == 0 && s.unsent == 0)
			break;
		fd = uplink_fd(c->up);
		if (fd < 0)
			break;
		pfd = (struct pollfd){ .fd = fd, .events = POLLIN };
		if (uplink_want_write(c->up))
			pfd.events |= POLLOUT;
		if (poll(&pfd, 1, 50) > 0)
			uplink_io(c->up, pfd.revents);
		uplink_tick(c->up, clock_mono_ms());
		flush_acks(c, true);
	}
	flush_acks(c, true);
}

int core_run(struct config *cfg)
{
	struct core c = { .cfg = cfg, .generation = 1, .wfd = -1 };
	struct uplink_events ev = { .ctx = &c, .connected = on_connected,
				    .disconnected = on_disconnected, .acked = on_acked };
	struct poller_sink sink = { .ctx = &c, .emit = sink_emit, .write_done = sink_write_done };
	char err[512];
	int rc = 1;
	size_t qcap;

	install_signals();
	clock_start(&c); /* the test hook's offset, before anything is stamped */
	jb_init(&c.jb);
	c.start_mono = clock_mono_ms();
	c.started_ms = clock_real_ms();
	c.capfl = cfg->uplink.inflight;
	c.fl = calloc(c.capfl, sizeof *c.fl);
	qcap = cfg->ndevices * 4 < 4096 ? 4096 : cfg->ndevices * 4;
	c.q = queue_new(qcap);
	c.dev = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *c.dev);
	c.pw = calloc(MAX_PENDING_WRITES, sizeof *c.pw);
	c.pend = calloc(1, sizeof *c.pend);
	c.held = calloc(1, sizeof *c.held);
	c.wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&c.wmu, NULL);
	for (size_t i = 0; c.dev && i < cfg->ndevices; i++)
		c.dev[i].published = -1;
	if (!c.fl || !c.q || !c.dev || !c.pw || !c.pend || !c.held || c.wfd < 0) {
		log_errx("out of memory at start");
		goto out;
	}
	c.st = store_open(cfg->gateway.data_dir, &cfg->buffer, err, sizeof err);
	if (!c.st) {
		log_errx("store: %s", err);
		goto out;
	}
	/* The MQTT socket is made before the many Modbus sockets, so it gets a low
	 * descriptor; the uplink itself only ever poll()s it. */
	c.up = uplink_new(cfg, &ev, err, sizeof err);
	if (!c.up) {
		log_errx("uplink: %s", err);
		goto out;
	}
	uplink_tick(c.up, clock_mono_ms());
	/* SunSpec devices get their points before the alert engine resolves rule points
	 * by name and before the pollers are built */
	if (sunspec_setup(cfg, err, sizeof err) < 0) {
		log_errx("sunspec: %s", err);
		goto out;
	}
	{
		char *state = NULL;

		if (store_meta_get(c.st, ALERT_STATE_KEY, &state) != 0)
			log_warnx("store: could not read the saved alert state");
		c.ae = alert_start(cfg, state);
		free(state);
	}
	if (pollers_start(&c, &sink) != 0)
		goto out;
	{
		char sum[128];
		config_summary(cfg, sum, sizeof sum);
		log_info("sluiced %s started: gateway %s, %s, %zu devices polled", SLUICE_VERSION,
			 cfg->gateway.id, sum, pollers_ndevices(&c));
	}
	/* sluicectl status has something to show from the first moment */
	write_snapshot(&c, false);
	notify_send("READY=1");
	c.watchdog_ms = notify_watchdog_ms();
	c.next_watchdog = c.start_mono;
	c.next_health = c.start_mono + cfg->uplink.health_interval_ms;
	c.next_maintain = c.start_mono + MAINTAIN_EVERY_MS;
	c.next_tick = c.start_mono;
	c.next_state_save = c.start_mono + STATE_SAVE_MS;
	c.next_snapshot = c.start_mono + 1000;

	while (!got_term) {
		struct pollfd pfd[3];
		nfds_t n = 0;
		int64_t now = clock_mono_ms(), wait;
		int ufd;

		if (got_hup) {
			got_hup = 0;
			reload(&c, &sink, &ev);
			cfg = c.cfg;
		}
		wait = min64(uplink_tick(c.up, now), c.next_health - now);
		wait = min64(wait, c.next_maintain - now);
		wait = min64(wait, c.next_tick - now);
		if (c.watchdog_ms > 0)
			wait = min64(wait, c.next_watchdog - now);
		if (c.pend_since)
			wait = min64(wait, c.pend_since + COMMIT_MS - now);
		if (c.held->n > 0)
			wait = min64(wait, c.retry_at - now);
		if (c.acked_since)
			wait = min64(wait, c.acked_since + ACKS_MS - now);
		if (wait < 0)
			wait = 0;
		if (wait > 1000)
			wait = 1000;

		pfd[n++] = (struct pollfd){ .fd = queue_fd(c.q), .events = POLLIN };
		pfd[n++] = (struct pollfd){ .fd = c.wfd, .events = POLLIN };
		ufd = uplink_fd(c.up);
		if (ufd >= 0) {
			pfd[n] = (struct pollfd){ .fd = ufd, .events = POLLIN };
			if (uplink_want_write(c.up))
				pfd[n].events |= POLLOUT;
			n++;
		}
		if (poll(pfd, n, (int)wait) < 0 && errno != EINTR) {
			log_err("poll");
			break;
		}
		clock_look(&c);
		if (pfd[0].revents & POLLIN)
			store_readings(&c);
		if (pfd[1].revents & POLLIN)
			take_write_results(&c);
		if (n > 2 && pfd[2].revents)
			uplink_io(c.up, pfd[2].revents);
		now = clock_mono_ms();
		uplink_tick(c.up, now);
		commit_pending(&c, false);
		flush_acks(&c, false);
		drain_outbox(&c);
		store_check_damage(&c);

		if (now >= c.next_health) {
			publish_health(&c, now);
			c.next_health = now + cfg->uplink.health_interval_ms;
		}
		if (now >= c.next_tick) {
			alert_time(&c, clock_real_ms());
			c.next_tick = now + 1000;
		}
		if (now >= c.next_snapshot) {
			write_snapshot(&c, false);
			notify_status(&c);
			c.next_snapshot = now + snapshot_every_ms(c.cfg);
		}
		if (now >= c.next_state_save) {
			save_alert_state(&c);
			c.next_state_save = now + STATE_SAVE_MS;
		}
		if (now >= c.next_maintain) {
			/* acks first: a delivered row still marked unsent would be dropped and
			 * counted as lost */
			flush_acks(&c, true);
			store_set_in_flight(c.st, c.nfl ? c.after[ROW_TELEMETRY] : 0);
			store_maintain(c.st, clock_real_ms());
			c.next_maintain = now + MAINTAIN_EVERY_MS;
		}
		if (c.watchdog_ms > 0 && now >= c.next_watchdog) {
			notify_send("WATCHDOG=1");
			c.next_watchdog = now + c.watchdog_ms / 2;
		}
	}
	notify_send("STOPPING=1");
	pollers_stop(&c);
	log_info("stopping: polling stopped, delivering what is stored");
	shutdown_drain(&c);
	save_alert_state(&c);
	write_snapshot(&c, true);
	uplink_shutdown(c.up, 1000);
	flush_acks(&c, true); /* acks that arrived while shutting down */
	rc = 0;
out:
	pollers_free(&c);
	if (c.q) {
		if (c.st && c.pend && c.held) {
			store_readings(&c);
			commit_pending(&c, true);
			if (c.held->n > 0)
				log_errx("store: %zu rows that waited in memory are lost: %s",
					 c.held->n, c.store_err);
		}
		queue_free(c.q, reading_free_item);
	}
	if (c.up)
		uplink_free(c.up);
	if (c.st) {
		struct store_stats s;
		if (store_stats(c.st, &s) == 0)
			log_info("stopped: last seq %" PRIu64 ", %" PRIu64 " rows not yet delivered",
				 s.last_seq, s.unsent);
		store_close(c.st);
	}
	flight_forget_all(&c);
	alert_free(c.ae);
	alert_out_free(&c.ao);
	free(c.pw);
	if (c.pend) {
		rowbuf_clear(c.pend);
		free(c.pend->r);
		free(c.pend);
	}
	if (c.held) {
		rowbuf_clear(c.held);
		free(c.held->r);
		free(c.held);
	}
	if (c.wfd >= 0)
		close(c.wfd);
	pthread_mutex_destroy(&c.wmu);
	free(c.fl);
	free(c.dev);
	free(c.acked);
	jb_free(&c.jb);
	config_free(c.cfg);
	return rc;
}
