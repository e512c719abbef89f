/*
 * core: the event loop on the daemon's main thread.
 *
 * One poll() over three things: the queue's eventfd (readings from the pollers), the
 * MQTT socket (driven here through uplink, never by a libmosquitto thread), and time
 * (one table of deadlines: uplink keepalive and reconnects, commits, health, store
 * maintenance...); and the control socket's descriptors (daemon/control.c), the page's
 * questions (daemon/web.c) and a SunSpec discovery round's end (daemon/sunspec_setup.c).
 * Each turn:
 *
 *   1. take every queued reading: each becomes an outbox row in memory with its seq
 *      (store_next_seq), its values as the store keeps them; a reading is published
 *      at once, from memory, and stored with the others of the last second in ONE
 *      store transaction (batching is what keeps writes to an SD card low). A
 *      transition (alert, device state) is stored before it is published: the rows
 *      before it go out first, then it is committed, with them, at once;
 *   2. let the uplink read and write; PUBACKs move the delivery mark (readings, which
 *      go out in seq order) or mark transitions sent, written in batches;
 *   3. top up the in-flight window: transitions before the telemetry of an outage's
 *      backlog, otherwise everything in seq order; the backlog from the store, then
 *      what is still in memory;
 *   4. run the jobs whose deadline has come.
 *
 * Step 1 always runs before 3, and 3 publishes at most the window, so draining a
 * large backlog never starves the storing of live readings.
 *
 * Delivery is at least once. A reading counts as delivered only when its PUBACK
 * arrives and every reading published before it was acknowledged (or set aside): the
 * delivery mark. When the connection drops, everything in flight is forgotten (the
 * uplink destroys its libmosquitto handle, so nothing is retried behind our back) and
 * the outbox is read again from the mark: rows sent but not acknowledged go out again,
 * with their seq, which is how a platform drops the duplicates.
 *
 * A row the broker refuses for good — refused at publish (too large for it), refused in
 * its acknowledgement (MQTT 5), or found by suspect.c to end every session it is sent
 * in (MQTT 3.1.1 cannot say why) — is set aside in the store, logged once, and the rows
 * behind it go on. Rows set aside are tried again once per session, after everything
 * else, one at a time, and on `sluicectl retry` (SIGUSR1); a session that ends while
 * one of them is in flight turns the automatic retry off until a session ends for
 * another reason, so such a row cannot make a session storm of its own.
 *
 * Never here: SQL (store), MQTT (uplink), Modbus (drivers), YAML (config), the bytes
 * of a message (payload), the daemon's counters of itself (status).
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
#include "control.h"
#include "json.h"
#include "log.h"
#include "mberr.h"
#include "notify.h"
#include "command.h"
#include "jread.h"
#include "payload.h"
#include "payload_sparkplug.h"
#include "payload_thingsboard.h"
#include "queue.h"
#include "reading.h"
#include "serpoll.h"
#include "status.h"
#include "store.h"
#include "sunspec_setup.h"
#include "suspect.h"
#include "tcpoll.h"
#include "uplink.h"
#include "web.h"

#define BATCH_MAX 1024           /* readings taken from the queue at once */
#define MAINTAIN_EVERY_MS 2000   /* pruning and the size bound (cheap: indexed deletes, a stat) */
#define SHUTDOWN_DRAIN_MS 3000   /* SIGTERM: time given to deliver what is stored */
#define STATE_SAVE_MS 60000      /* alert engine windows and baselines, between transitions */
#define ALERT_TICK_MS 1000       /* the engine's clock: days complete, 'for' runs out */
/*
 * Readings wait at most COMMIT_MS (or until COMMIT_ROWS are pending) for one
 * transaction. A WAL commit writes whole pages: the page the newest rows fill (again,
 * at every commit, until it is full), the pages they completed, and now and then the
 * delivery mark's; a commit per reading is kilobytes per value on an SD card, a commit
 * every 2 s at 20 devices a second about 30 bytes per value all told. A reading is
 * published before it is committed, so the wait delays nothing but its storing: what
 * a crash can take is what was still in memory, as it always could (the queue) — when
 * the uplink is up, already delivered — and its seq is then counted as skipped
 * (store.c, "Seqs"). Transitions commit at once.
 */
#define COMMIT_MS 2000
#define COMMIT_ROWS 1024
/*
 * Acknowledgements move the delivery mark and mark transitions at most this long after
 * they arrive: a mark per PUBACK would be a query per message. The store writes the
 * mark at most 5 s later (store_outbox.c, DELIVERED_WRITE_MS); a crash re-sends what
 * was acknowledged meanwhile — duplicates with the same seq, which the platform drops,
 * never a loss.
 */
#define ACKS_MS 250
#define ACKS_AT_ONCE 1024        /* ... or as soon as this many wait */
/*
 * When the store cannot write (the file system full, a file size limit, an I/O error),
 * rows wait in memory and the write is tried again every STORE_RETRY_MS; polling,
 * alerts and publishing (of readings: transitions wait to be stored) go on. At most
 * HELD_MAX rows wait: past that the oldest telemetry goes, and is counted (health
 * not_stored); alert and device state rows always wait. Stopped while the store still
 * cannot write, they go to the spill file (store_spill), which the next start stores
 * before anything else.
 */
#define STORE_RETRY_MS 1000
#define HELD_MAX 20000
/* A database found damaged while running is replaced at most this often. */
#define REOPEN_EVERY_MS 10000
/* Acks that could not be marked wait for the next try, up to this many. */
#define ACKS_KEEP_MAX 65536
#define ALERT_STATE_KEY "alert_state"
#define CLOCK_FILE_EVERY_MS 1000 /* the clock test hook's file is read again */
/* The loop wakes at least this often: the wall clock's steps and a damaged database
 * are looked for on every turn. */
#define LOOP_WAIT_MAX_MS 1000
/* Rows fetched from the store at once to fill the window. */
#define FETCH_MAX 256
/*
 * After a turn that took readings or acknowledgements, the queue and the MQTT socket's
 * input are left alone for GATHER_MS: the turn after takes all that came meanwhile. A
 * thousand devices a second would otherwise wake the core a thousand times and more (a
 * reading, its PUBACK), each wake a context switch and a poll — most of what the core
 * spends. It delays a reading's publishing by at most this, well inside the 50 ms the
 * platform is promised at the 99th percentile (docs/performance.md). The socket is
 * read at once all the same while rows wait for room in the window (a drain, a burst):
 * there the acknowledgements are what lets the next rows go, and gathering them would
 * cap delivery at uplink.inflight rows per GATHER_MS (6,400 a second at 64).
 */
#define GATHER_MS 10

static volatile sig_atomic_t got_term, got_hup, got_retry;

static void on_signal(int sig)
{
	if (sig == SIGHUP)
		got_hup = 1;
	else if (sig == SIGUSR1)
		got_retry = 1;
	else
		got_term = 1;
}

struct flight {
	int mid;
	uint64_t seq;
	int kind;
	char *topic; /* for the log, and for alerts: one transition per check in flight */
	size_t bytes; /* as published */
	bool aside;  /* a row set aside, tried again */
};

/* Rows in memory, in seq order. */
struct rowbuf {
	struct store_row *r;
	size_t n, cap;
};

/*
 * The readings published this session, in seq order, and whether each is done with
 * (acknowledged, or set aside): the delivery mark is the last of the done ones at the
 * front. A ring.
 */
struct pubq {
	uint64_t *seq;
	bool *done;
	size_t head, n, cap;
};

/* A command from the platform being carried out: its writes, queued to the poller
 * that owns the device, and what their results said so far. */
struct cmd_job {
	struct command cmd;
	size_t left;                /* writes not yet answered */
	int err;                    /* the first failed write's MBE_* (0: none failed) */
	size_t failed;              /* its index in cmd.writes */
};

/* An action's or a command's write, waiting for the poller's word; what it carries back
 * into the alert if it fails, or the command it is part of. */
struct pending_write {
	uint64_t tag;
	struct alert_transition t;  /* the transition that asked for it (job NULL) */
	struct cmd_job *job;        /* the command that asked for it, or NULL */
	size_t device, point;
	double value;
};

/* A write's result, from a poller thread to the core. */
struct write_result {
	uint64_t tag;
	int err;
};

#define MAX_PENDING_WRITES 256

/* Rows of one topic set aside since start: the log says the first, then the 10th,
 * 100th, ... (a device whose every reading is too large must not flood the journal). */
struct aside_log {
	char *topic;
	uint64_t n;
};

/*
 * The loop's deadlines, one per job that waits for a time: monotonic ms, DL_NEVER while
 * it waits for nothing. The loop sleeps until the earliest (loop_wait), as OpenBSD
 * ntpd and Redis's ae.c do. The jobs that run on a period are periodic_jobs[]; the
 * others are armed by what they wait on (rows pending, acks, held rows, the uplink).
 */
enum deadline {
	DL_UPLINK,      /* keepalive and reconnects: uplink_tick says when */
	DL_COMMIT,      /* the pending rows' transaction: COMMIT_MS after the first */
	DL_ACKS,        /* marking delivered rows: ACKS_MS after the first ack */
	DL_STORE_RETRY, /* rows held while the store cannot write are tried again */
	DL_CLOCK_FILE,  /* the clock test hook's file is read again (only with the hook) */
	DL_HEALTH,      /* the health message, every uplink.health_interval */
	DL_ALERT_TICK,  /* time passes for the alert engine */
	DL_SNAPSHOT,    /* sluicectl status's snapshot and systemd's STATUS= */
	DL_STATE_SAVE,  /* the alert engine's state, between transitions */
	DL_MAINTAIN,    /* the store's pruning and size bound */
	DL_WATCHDOG,    /* WATCHDOG=1, at half of systemd's WATCHDOG_USEC (only when asked) */
	DL_GATHER,      /* the queue and the MQTT socket are read again (GATHER_MS) */
	DL_CONTROL,     /* the control socket's earliest client deadline */
	DL_DISCOVER,    /* the next SunSpec discovery round, while a device is missing */
	DL_COUNT
};
#define DL_NEVER INT64_MAX

/*
 * The platform's session in a format that has one (uplink.format sparkplug or
 * thingsboard; docs/mqtt.md): what this session has said already, so that each message
 * built at publish time can say what comes first — Sparkplug's NBIRTH, a device's
 * DBIRTH before its DDATA, the node's seq; ThingsBoard's connect before a device's
 * telemetry. Forgotten at every connect.
 */
struct wire {
	bool born;             /* Sparkplug: NBIRTH published this session */
	bool announced;        /* every device online then born (DBIRTH) or connected */
	uint8_t seq;           /* Sparkplug: the next message's seq (0..255) */
	bool *up;              /* per device of the config: DBIRTH, or ThingsBoard's connect,
				  published this session */
	size_t nup;
	bool host_online;      /* Sparkplug: the primary host's STATE (true without one) */
	bool refused;          /* the broker refused one of the session's messages: said once */
	/* Sparkplug: the alert checks the NBIRTH names (their aliases: the index), each with
	 * its latest transition; a check not among them asks for a rebirth */
	struct alert_transition *checks;
	size_t nchecks;
};

struct core {
	/* The config in force; readings of an older generation (before a reload) are
	 * dropped. fmt writes every message; rowfmt the transitions as stored (the sluice
	 * format's text, which a publish in another format reads back). devs: the store's
	 * number of each device; devidx the config's index of each store number (-1: none). */
	struct config *cfg;
	uint32_t generation;
	const struct payload_format *fmt;
	const struct payload_format *rowfmt;
	uint32_t *devs;
	int32_t *devidx;
	size_t ndevidx;
	struct wire w;

	/* Pollers: one per serial line (serpoll), a few for every TCP endpoint (tcpoll). */
	struct serpoll *sp;
	struct tcpoll *tp;

	/* Readings from the pollers' threads. */
	struct queue *q;

	/*
	 * The outbox in memory: rows handed their seq and waiting for their transaction
	 * (pend, COMMIT_MS), and rows held while the store cannot write (held: older than
	 * pend's, before anything newer). Readings among them are published from here.
	 * seqless: a row waits without a seq (store_next_seq could not hand one out): the
	 * rows after it wait without one too, and get theirs when stored.
	 */
	struct store *st;
	struct rowbuf *pend;
	struct rowbuf *held;
	size_t mem_next;        /* rows of held + pend before this are published (a hint) */
	int64_t gather_until;   /* mono ms: the queue and acks are left to gather until then */
	bool window_full;       /* the last drain_outbox left rows waiting for the window */
	bool seqless;
	uint64_t top_seq;       /* the highest seq handed out to a row */
	bool held_state;        /* held rows include transitions: save the engine with them */
	bool store_failing;
	char store_err[256];    /* why the store fails, for health */
	int64_t reopen_after;   /* mono ms: a damaged database may be replaced again */
	struct payload_msg msg; /* the message being built */

	/* Uplink and delivery: rows in flight (unordered), the readings published this
	 * session (the delivery mark), transitions acknowledged not yet marked; the window
	 * (suspect.c narrows it while sessions die right after a publish); the rows set
	 * aside and their retries. */
	struct uplink *up;
	struct flight *fl;
	size_t nfl, capfl;
	struct pubq pq;
	struct suspect sus;
	int64_t published_at;   /* mono ms of the last row published */
	int64_t connected_at;   /* mono ms of this session's CONNACK */
	uint64_t backlog_end;   /* seqs handed out before this session: the outage's backlog */
	uint64_t start_seq;     /* the last seq the store had handed out when sluiced started */
	uint64_t hist_end;      /* rows up to this seq are history to the platform (Sparkplug's
				   is_historical): handed out before this session, or before
				   this start */
	bool aside_pass;        /* a retry of the rows set aside is under way ... */
	bool aside_asked;       /* ... asked for by sluicectl retry ... */
	uint64_t aside_after;   /* ... and has reached this seq */
	bool aside_auto;        /* each new session starts one */
	bool health_refused;    /* said once: the broker will not take the health message */
	struct aside_log *alog; /* per topic: rows set aside this run, for the log */
	size_t nalog;
	uint64_t after[2];      /* per row kind: highest seq handed to the uplink this session */
	uint64_t *acked;        /* seqs of transitions (and rows set aside) acknowledged, not
				   yet marked in the store */
	size_t nacked, capacked;
	bool mark_moved;        /* the delivery mark moved since it was given to the store */
	uint64_t delivered;     /* the mark as last given to the store */
	struct jbuf wire;       /* a row's payload as published */

	/* Alerts: the engine, what it said, and the writes its actions asked of the
	 * pollers, whose results come back from poller threads under wmu (wfd wakes us). */
	struct alert_engine *ae;
	struct alert_out ao;
	struct pending_write *pw;  /* MAX_PENDING_WRITES slots; tag 0 = free */
	uint64_t next_tag;
	pthread_mutex_t wmu;
	struct write_result wres[MAX_PENDING_WRITES];
	size_t nwres;
	int wfd;

	/* Status and health: counters per device, poll lag, the uplink's state; when the
	 * snapshot is written next (mono ms). */
	struct status status;
	int64_t snapshot_at;

	/* Commands from the platform: the ones seen lately (redeliveries answered again). */
	struct command_dedup *dedup;

	/* The control socket (sluicectl status, probe); NULL when it could not be made. */
	struct control *ctl;

	/* The technicians' page (web:); NULL when there is none. It keeps each device's
	 * last reading. */
	struct web *web;

	/* SunSpec discovery: the round running (NULL between rounds), the rounds since the
	 * config was loaded, the wait before the next; over: its end was seen. */
	struct sunspec_round *disc;
	unsigned disc_attempt;
	int64_t disc_pace;
	bool disc_over;

	/* Timers: the deadline table, systemd's watchdog period, the wall clock's watch. */
	int64_t dl[DL_COUNT];
	int64_t watchdog_ms;
	struct clock_watch clockw;
};

/* ---- rows ----------------------------------------------------------------------- */

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

static void rowbuf_free(struct rowbuf *b)
{
	if (!b)
		return;
	rowbuf_clear(b);
	free(b->r);
	free(b);
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

/* A row's seq, now: before it can be published (store.c, "Seqs"). */
static void give_seq(struct core *c, struct store_row *row)
{
	row->seq = c->seqless ? 0 : store_next_seq(c->st);
	if (!row->seq)
		c->seqless = true;
	else
		c->top_seq = row->seq;
}

/* The message just built (c->msg) as a transition row at the end of pend; false when
 * out of memory. */
static bool add_event(struct core *c, int64_t ts_ms)
{
	struct store_row *row = rowbuf_add(c->pend);

	if (!row)
		return false;
	*row = (struct store_row){ .kind = ROW_ALERT, .ts_ms = ts_ms, .retain = c->msg.retain,
				   .topic = strdup(c->msg.topic),
				   .body = strdup(jb_cstr_get(&c->msg.body)) };
	if (!row->topic || !row->body) {
		store_row_clear(row);
		c->pend->n--;
		return false;
	}
	give_seq(c, row);
	return true;
}

/* A reading as a row at the end of pend: its values as the store keeps them. */
static bool add_reading(struct core *c, const struct reading *r)
{
	struct store_row *row;

	if (r->device >= c->cfg->ndevices || !c->devs || !c->devs[r->device])
		return false;
	row = rowbuf_add(c->pend);
	if (!row)
		return false;
	*row = (struct store_row){ .kind = ROW_TELEMETRY, .ts_ms = r->ts_ms,
				   .dev = c->devs[r->device] };
	if (store_row_set_reading(row, r) != 0) {
		c->pend->n--;
		return false;
	}
	give_seq(c, row);
	return true;
}

static bool has_events(const struct rowbuf *b)
{
	for (size_t i = 0; i < b->n; i++)
		if (b->r[i].kind == ROW_ALERT)
			return true;
	return false;
}

/* The rule's name, which its alerts carry. */
static const char *rule_name(const struct config *cfg, const char *id)
{
	const char *name = NULL;

	for (size_t i = 0; i < cfg->nrules; i++)
		if (strcmp(cfg->rules[i].id, id) == 0)
			name = cfg->rules[i].name;
	return name;
}

/* The config's index of each store number in c->devs (-1 where none): a reading
 * published in a format that names devices by their place in the config (Sparkplug's
 * aliases) finds it without a search. */
static void devices_index(struct core *c, const struct config *cfg)
{
	uint32_t max = 0;
	int32_t *idx;

	for (size_t i = 0; i < cfg->ndevices; i++)
		if (c->devs[i] > max)
			max = c->devs[i];
	idx = malloc(((size_t)max + 1) * sizeof *idx);
	free(c->devidx);
	c->devidx = idx;
	c->ndevidx = idx ? (size_t)max + 1 : 0;
	for (size_t i = 0; i < c->ndevidx; i++)
		idx[i] = -1;
	for (size_t i = 0; idx && i < cfg->ndevices; i++)
		if (c->devs[i])
			idx[c->devs[i]] = (int32_t)i;
}

/* The store's number of each device of cfg (store_devices), replacing c->devs. */
static void devices_register(struct core *c, const struct config *cfg)
{
	uint32_t *devs = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *devs);

	if (!devs || store_devices(c->st, cfg->devices, cfg->ndevices, devs) != 0) {
		/* their readings are then counted as not stored */
		log_errx("store: the devices cannot be recorded: %s", devs ? store_error(c->st)
									  : "out of memory");
		free(devs);
		devs = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *devs);
	}
	free(c->devs);
	c->devs = devs;
	devices_index(c, cfg);
}

/* ---- rows -> store ----------------------------------------------------------------- */

/* Past HELD_MAX, the oldest held telemetry goes (counted); state rows stay. A reading
 * that goes had its seq, perhaps: then it is a gap, counted here too. */
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
	c->mem_next = 0;
	c->status.not_stored += dropped;
}

/* pend's rows wait behind those already held. */
static void hold_rows(struct core *c, bool transitions)
{
	if (rowbuf_move(c->held, c->pend) != 0) {
		c->status.not_stored += c->pend->n;
		log_errx("out of memory: %zu rows not stored", c->pend->n);
		rowbuf_clear(c->pend);
	}
	c->held_state |= transitions;
	held_trim(c);
}

static void flight_forget_all(struct core *c);

/* A damaged database found while running: set aside and replaced (store_reopen). */
static void store_check_damage(struct core *c)
{
	char err[512];

	if (!store_damaged(c->st) || clock_mono_ms() < c->reopen_after)
		return;
	c->reopen_after = clock_mono_ms() + REOPEN_EVERY_MS;
	log_errx("store: the database is damaged (%s); replacing it", store_error(c->st));
	if (store_reopen(c->st, err, sizeof err) != 0) {
		log_errx("store: %s; trying again in %d s", err, REOPEN_EVERY_MS / 1000);
		return;
	}
	/* the fresh file holds what could be read, under the same seqs: read it afresh
	 * (what is in flight comes again: a duplicate, never a loss) */
	c->after[ROW_TELEMETRY] = c->after[ROW_ALERT] = 0;
	c->pq.n = 0;
	if (c->held->n > 0)
		c->dl[DL_STORE_RETRY] = 0;
	log_info("store: running on a fresh database");
}

/*
 * One transaction of everything in memory (held first); with transitions, the
 * engine's state commits with them. When the store fails, the rows are held (in order,
 * before anything newer) and tried again every STORE_RETRY_MS; once it writes again
 * they go in first, with the state.
 */
static void commit_rows(struct core *c, bool transitions)
{
	char err[256], *state = NULL;
	int64_t now = clock_mono_ms();
	struct rowbuf *rb = c->pend;
	int rc;

	if (c->held->n > 0) {
		hold_rows(c, transitions);
		if (now < c->dl[DL_STORE_RETRY])
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
		if (rb == c->pend)
			hold_rows(c, transitions);
		c->dl[DL_STORE_RETRY] = now + STORE_RETRY_MS;
		snprintf(c->store_err, sizeof c->store_err, "%s", err);
		if (!c->store_failing)
			log_errx("store: cannot write %zu rows: %s; they wait in memory (at most %d"
				 " readings) and the write is tried every %d s; polling, alerts and"
				 " publishing go on", n, err, HELD_MAX, STORE_RETRY_MS / 1000);
		c->store_failing = true;
		store_check_damage(c);
		return;
	}
	if (c->store_failing) {
		log_info("store: writing again (%zu rows that waited are stored)", rb->n);
		c->store_failing = false;
		c->store_err[0] = '\0';
	}
	if (rb == c->held) {
		c->held_state = false;
		c->dl[DL_STORE_RETRY] = DL_NEVER;
	}
	/* rows that got their seq only now: everything in memory is stored */
	if (c->seqless && rb->r[rb->n - 1].seq > c->top_seq)
		c->top_seq = rb->r[rb->n - 1].seq;
	c->seqless = false;
	rowbuf_clear(rb);
	c->mem_next = 0;
}

/* Commit what waits, when it has waited long enough (or now, with force). */
static void commit_pending(struct core *c, bool force)
{
	int64_t now = clock_mono_ms();

	if (c->held->n > 0) {
		if (force || now >= c->dl[DL_STORE_RETRY]) {
			if (force)
				c->dl[DL_STORE_RETRY] = 0;
			commit_rows(c, false);
			c->dl[DL_COMMIT] = DL_NEVER;
		} else if (c->pend->n > 0) {
			/* they go with the held rows, at the next try */
			c->dl[DL_COMMIT] = c->dl[DL_STORE_RETRY];
		}
		return;
	}
	if (c->pend->n == 0)
		return;
	if (!force && c->pend->n < COMMIT_ROWS && now < c->dl[DL_COMMIT])
		return;
	commit_rows(c, false);
	c->dl[DL_COMMIT] = DL_NEVER;
}

/* ---- readings and alerts -> rows ------------------------------------------------ */

/* A write queued to the poller that owns the device (tag: its result's, 0 none). */
static int queue_write(struct core *c, size_t device, size_t point, double value, uint64_t tag)
{
	const struct device_cfg *d = &c->cfg->devices[device];

	if (c->cfg->buses[d->bus].kind == BUS_TCP)
		return c->tp ? tcpoll_write(c->tp, (uint32_t)device, (uint16_t)point, value, tag) : -1;
	return c->sp ? serpoll_write(c->sp, (uint32_t)device, (uint16_t)point, value, tag) : -1;
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
static size_t take_alert_out(struct core *c)
{
	struct alert_out *o = &c->ao;
	size_t rows = 0;

	for (size_t i = 0; i < o->nn; i++)
		log_info("alert %s/%s: %s", o->n[i].rule, o->n[i].check, o->n[i].message);
	for (size_t i = 0; i < o->nt; i++) {
		const struct alert_transition *t = &o->t[i];

		if (t->state == ALERT_FIRING)
			log_warnx("alert %s/%s firing (%s): %s", t->rule, t->check,
				  severity_name(t->severity) ? severity_name(t->severity) : "-",
				  t->message);
		else
			log_info("alert %s/%s resolved: %s", t->rule, t->check, t->message);
		if (c->rowfmt->alert(&c->msg, t, rule_name(c->cfg, t->rule), NULL) != 0 ||
		    !add_event(c, t->ts_ms)) {
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

/* One reading: its device's state when it changed (device/<id>, before the reading),
 * the engine fed, the reading itself. */
static void take_reading(struct core *c, const struct reading *r)
{
	const struct device_cfg *d = &c->cfg->devices[r->device];
	struct dev_status *ds = &c->status.dev[r->device];

	status_reading(&c->status, r);
	if (status_device_turned(ds, r) &&
	    (c->rowfmt->device_state(&c->msg, d, r->online, r->ts_ms, r->last_err) != 0 ||
	     !add_event(c, r->ts_ms)))
		ds->published = -1; /* out of memory: said with a later reading */
	if (c->ae && alert_feed(c->ae, r->device, r->ts_ms, r->values, r->nvalues, &c->ao) != 0)
		log_warnx("alerts: out of memory evaluating a reading of %s", d->id);
	if (!add_reading(c, r)) {
		c->status.not_stored++;
		log_warnx("a reading of %s was not stored (out of memory, or its device could not"
			  " be recorded)", d->id);
	}
}

static void drain_outbox(struct core *c);

/*
 * Transitions in memory are stored before they are published: a retained state must
 * be in the store before the broker has it, or a crash could leave the store sending
 * an older one after it. The readings before the first of them go out first (seq
 * order, docs/mqtt.md), then everything pending is committed at once.
 */
static void commit_transitions(struct core *c, bool alerts)
{
	drain_outbox(c);
	commit_rows(c, alerts);
	c->dl[DL_COMMIT] = DL_NEVER;
}

static void store_readings(struct core *c)
{
	void *items[BATCH_MAX];
	size_t n;

	while ((n = queue_pop(c->q, items, BATCH_MAX)) > 0) {
		size_t alerts;

		for (size_t i = 0; i < n; i++) {
			struct reading *r = items[i];

			if (r->generation == c->generation && r->device < c->cfg->ndevices) {
				take_reading(c, r);
				/* the page shows it until the next one */
				if (c->web && web_keep(c->web, r))
					continue;
			}
			reading_free(r);
		}
		alerts = take_alert_out(c);
		if (alerts > 0 || has_events(c->pend)) {
			/* the engine state commits with its transitions */
			commit_transitions(c, alerts > 0);
		} else if (c->pend->n > 0 && c->dl[DL_COMMIT] == DL_NEVER) {
			c->dl[DL_COMMIT] = clock_mono_ms() + COMMIT_MS;
		}
		commit_pending(c, false);
		/* the new readings, at once */
		drain_outbox(c);
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
	if (take_alert_out(c) > 0)
		commit_transitions(c, true);
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
	if (c->clockw.test_file)
		c->dl[DL_CLOCK_FILE] = clock_mono_ms() + CLOCK_FILE_EVERY_MS;
}

static void clock_look(struct core *c)
{
	char msg[256];
	int64_t now = clock_mono_ms(), delta;

	if (now >= c->dl[DL_CLOCK_FILE]) {
		c->dl[DL_CLOCK_FILE] = now + CLOCK_FILE_EVERY_MS;
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

/* ---- the delivery mark --------------------------------------------------------------- */

/* A reading published (done: set aside without being sent). false: out of memory, then
 * the mark stays behind it this session (sent again next session: a duplicate). */
static bool pubq_push(struct pubq *q, uint64_t seq, bool done)
{
	if (q->n == q->cap) {
		size_t ncap = q->cap ? q->cap * 2 : 1024;
		uint64_t *ns = malloc(ncap * sizeof *ns);
		bool *nd = malloc(ncap * sizeof *nd);

		if (!ns || !nd) {
			free(ns);
			free(nd);
			return false;
		}
		for (size_t i = 0; i < q->n; i++) {
			ns[i] = q->seq[(q->head + i) % q->cap];
			nd[i] = q->done[(q->head + i) % q->cap];
		}
		free(q->seq);
		free(q->done);
		q->seq = ns;
		q->done = nd;
		q->cap = ncap;
		q->head = 0;
	}
	q->seq[(q->head + q->n) % q->cap] = seq;
	q->done[(q->head + q->n) % q->cap] = done;
	q->n++;
	return true;
}

/* The reading seq is done with (acknowledged or set aside). Seqs are in order: a
 * binary search. */
static void pubq_done(struct pubq *q, uint64_t seq)
{
	size_t lo = 0, hi = q->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t s = q->seq[(q->head + mid) % q->cap];

		if (s == seq) {
			q->done[(q->head + mid) % q->cap] = true;
			return;
		}
		if (s < seq)
			lo = mid + 1;
		else
			hi = mid;
	}
}

/* The mark: the last of the done readings at the front, taken off; 0 when none moved. */
static uint64_t pubq_mark(struct pubq *q)
{
	uint64_t mark = 0;

	while (q->n > 0 && q->done[q->head]) {
		mark = q->seq[q->head];
		q->head = (q->head + 1) % q->cap;
		q->n--;
	}
	return mark;
}

/* ---- outbox -> uplink ---------------------------------------------------------- */

static void flight_forget_all(struct core *c)
{
	for (size_t i = 0; i < c->nfl; i++)
		free(c->fl[i].topic);
	c->nfl = 0;
	c->after[ROW_TELEMETRY] = c->after[ROW_ALERT] = 0;
	c->pq.n = 0;
	c->mem_next = 0;
}

static void flush_acks(struct core *c, bool force);
static void wire_forget(struct core *c);

/* How many rows of topic were set aside this run, this one included (0: out of
 * memory, not counted). */
static uint64_t aside_count(struct core *c, const char *topic)
{
	struct aside_log *n;
	char *copy;

	for (size_t i = 0; i < c->nalog; i++)
		if (strcmp(c->alog[i].topic, topic) == 0)
			return ++c->alog[i].n;
	copy = strdup(topic);
	n = copy ? realloc(c->alog, (c->nalog + 1) * sizeof *n) : NULL;
	if (!n) {
		free(copy);
		return 0;
	}
	c->alog = n;
	c->alog[c->nalog++] = (struct aside_log){ .topic = copy, .n = 1 };
	return 1;
}

/*
 * Set row seq aside (store.h): the broker refuses it for good. Logged with its topic
 * and size the first time a row of its topic is set aside, then at the 10th, 100th,
 * ... of that topic (health counts every one); a retry refused again says nothing.
 */
static void set_aside(struct core *c, uint64_t seq, const char *topic, size_t bytes,
		      const char *why)
{
	int rc = store_aside_put(c->st, seq, why);
	uint64_t n;

	if (rc < 0) {
		/* it is sent again on the next session, and refused again */
		log_warnx("uplink: the broker refuses %s (seq %" PRIu64 "): %s; it could not be "
			  "set aside: %s", topic, seq, why, store_error(c->st));
		return;
	}
	if (rc == 0)
		return;
	n = aside_count(c, topic);
	if (n == 1)
		log_warnx("uplink: the broker refuses %s (seq %" PRIu64 ", a message of %zu bytes): %s; set "
			  "aside, and the rows behind it go on (sluicectl backlog lists it, "
			  "sluicectl retry sends it again)", topic, seq, bytes, why);
	else if (n > 1 && (n == 10 || n == 100 || n == 1000 || n % 10000 == 0))
		log_warnx("uplink: %" PRIu64 " rows of %s set aside since start; the last, seq %"
			  PRIu64 " (%zu bytes): %s", n, topic, seq, bytes, why);
	else
		log_debug("uplink: %s (seq %" PRIu64 ", %zu bytes) set aside: %s", topic, seq,
			  bytes, why);
}

static void on_connected(void *ctx)
{
	struct core *c = ctx;
	flush_acks(c, true); /* before the outbox is read again from its start */
	flight_forget_all(c);
	c->connected_at = clock_mono_ms();
	/* what was handed out before this session is the outage's backlog: transitions go
	 * before its telemetry (docs/mqtt.md) */
	c->backlog_end = c->top_seq;
	c->hist_end = c->top_seq > c->start_seq ? c->top_seq : c->start_seq;
	/* the rows set aside get one more chance, after everything else */
	c->aside_pass = c->aside_auto || c->aside_asked;
	c->aside_after = 0;
	/* the platform's session begins again: births, connects */
	wire_forget(c);
	c->w.refused = false;
	c->w.host_online = !c->cfg->uplink.sparkplug_primary_host;
	status_uplink(&c->status, true, NULL, clock_real_ms());
}

static void on_disconnected(void *ctx, const char *why, enum uplink_end end)
{
	struct core *c = ctx;
	uint64_t *seqs = NULL, culprit = 0;
	const struct flight *cf = NULL;
	size_t n = 0;
	bool retrying = false, telling;

	flush_acks(c, true);
	/* what was in flight when the session ended: suspect.c decides whether one of
	 * them is refused without a word (MQTT 3.1.1) */
	for (size_t i = 0; i < c->nfl; i++)
		retrying |= c->fl[i].aside;
	if (retrying) {
		/* put down to the row set aside, which is tried again after a session that
		 * ends for another reason, or on sluicectl retry */
		if (c->aside_asked)
			log_info("uplink: the session ended while a row set aside was sent again; "
				 "the retry stops there");
		c->aside_auto = false;
		c->aside_asked = false;
	} else if (end != UPLINK_END_ATTEMPT && c->nfl > 0 &&
		   (seqs = malloc(c->nfl * sizeof *seqs)) != NULL) {
		for (size_t i = 0; i < c->nfl; i++)
			seqs[n++] = c->fl[i].seq;
		culprit = suspect_dropped(&c->sus, seqs, n, clock_mono_ms() - c->published_at,
					  end == UPLINK_END_BROKER, &telling);
		/* each such session says more: back soon, not after a growing backoff */
		if (telling)
			uplink_reconnect_soon(c->up);
		for (size_t i = 0; i < c->nfl && culprit; i++)
			if (c->fl[i].seq == culprit)
				cf = &c->fl[i];
		if (cf) {
			char reason[200];
			snprintf(reason, sizeof reason, "the broker ended the session right after it, "
				 "%d times in a row (it gives no reason: a packet size limit? "
				 "uplink.max_packet_size says it up front)", SUSPECT_STRIKES);
			set_aside(c, cf->seq, cf->topic, cf->bytes, reason);
			if (suspect_learn(&c->sus, cf->topic, cf->bytes, cf->seq) != 0)
				log_warnx("out of memory: rows of %s as large as seq %" PRIu64
					  " will each end a session", cf->topic, cf->seq);
		}
		free(seqs);
	}
	if (end != UPLINK_END_ATTEMPT && !retrying)
		c->aside_auto = true;
	flight_forget_all(c);
	status_uplink(&c->status, false, why, clock_real_ms());
}

/* The flight of message mid, or NULL. */
static struct flight *flight_find(struct core *c, int mid)
{
	for (size_t i = 0; i < c->nfl; i++)
		if (c->fl[i].mid == mid)
			return &c->fl[i];
	return NULL;
}

static void flight_drop(struct core *c, struct flight *f)
{
	free(f->topic);
	*f = c->fl[--c->nfl];
}

/* A transition or a row set aside, acknowledged: marked in the store one by one. */
static void ack_one(struct core *c, uint64_t seq)
{
	if (c->nacked == c->capacked) {
		size_t ncap = c->capacked ? c->capacked * 2 : 256;
		uint64_t *p = realloc(c->acked, ncap * sizeof *p);
		if (!p)
			return; /* stays unacked: sent again later, a duplicate, never a loss */
		c->acked = p;
		c->capacked = ncap;
	}
	if (c->nacked == 0 && c->dl[DL_ACKS] == DL_NEVER)
		c->dl[DL_ACKS] = clock_mono_ms() + ACKS_MS;
	c->acked[c->nacked++] = seq;
}

static void on_acked(void *ctx, int mid)
{
	struct core *c = ctx;
	struct flight *f = flight_find(c, mid);

	if (!f)
		return;
	suspect_answered(&c->sus, f->seq);
	if (f->aside)
		log_info("uplink: %s (seq %" PRIu64 "), set aside before, is delivered", f->topic,
			 f->seq);
	suspect_delivered(&c->sus, f->topic, f->bytes);
	if (f->kind == ROW_TELEMETRY && !f->aside) {
		pubq_done(&c->pq, f->seq);
		if (!c->mark_moved && c->dl[DL_ACKS] == DL_NEVER)
			c->dl[DL_ACKS] = clock_mono_ms() + ACKS_MS;
		c->mark_moved = true;
	} else {
		ack_one(c, f->seq);
	}
	flight_drop(c, f);
}

/* MQTT 5: acknowledged with a reason of 0x80 or more. Not delivered: set aside. */
static void on_refused(void *ctx, int mid, const char *why)
{
	struct core *c = ctx;
	struct flight *f = flight_find(c, mid);

	if (!f)
		return;
	suspect_answered(&c->sus, f->seq);
	if (!f->aside) {
		set_aside(c, f->seq, f->topic, f->bytes, why);
		/* the mark passes it: set aside, it is the mark's exception */
		if (f->kind == ROW_TELEMETRY)
			pubq_done(&c->pq, f->seq);
	} else {
		log_debug("uplink: seq %" PRIu64 ", set aside, refused again: %s", f->seq, why);
	}
	flight_drop(c, f);
}

static void flush_acks(struct core *c, bool force)
{
	uint64_t mark;

	if (!force && c->nacked < ACKS_AT_ONCE && clock_mono_ms() < c->dl[DL_ACKS])
		return;
	c->dl[DL_ACKS] = DL_NEVER;
	/* readings: the mark, in memory now, written by the store within a second */
	if (c->mark_moved) {
		c->mark_moved = false;
		mark = pubq_mark(&c->pq);
		if (mark > c->delivered) {
			store_delivered(c->st, mark);
			c->delivered = mark;
		}
	}
	if (c->nacked == 0)
		return;
	if (store_mark_sent(c->st, c->acked, c->nacked) != 0) {
		/*
		 * Kept for the next try (a full disk frees up); past ACKS_KEEP_MAX they go:
		 * those rows are sent again after a restart, a duplicate, never a loss.
		 */
		if (c->nacked < ACKS_KEEP_MAX) {
			c->dl[DL_ACKS] = clock_mono_ms() + ACKS_MS;
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
		if (c->fl[i].kind == ROW_ALERT && strcmp(c->fl[i].topic, topic) == 0)
			return true;
	return false;
}

/* ---- the platform's formats: Sparkplug's session, ThingsBoard's devices ----------- */

#define BDSEQ_KEY "sparkplug_bdseq"

static bool is_sparkplug(const struct core *c)
{
	return c->cfg->uplink.format == FORMAT_SPARKPLUG;
}

static bool is_thingsboard(const struct core *c)
{
	return c->cfg->uplink.format == FORMAT_THINGSBOARD;
}

/* The QoS of every message that carries a row, and of births: uplink.qos, or in
 * Sparkplug uplink.sparkplug.qos (docs/mqtt.md: QoS 0 is "written to the socket"). */
static int row_qos(const struct core *c)
{
	return is_sparkplug(c) ? c->cfg->uplink.sparkplug_qos : c->cfg->uplink.qos;
}

/* A new session (a connect, a rebirth, the primary host back online): nothing said yet. */
static void wire_forget(struct core *c)
{
	c->w.born = false;
	c->w.announced = false;
	c->w.seq = 0;
	if (c->w.nup != c->cfg->ndevices) {
		bool *up = calloc(c->cfg->ndevices ? c->cfg->ndevices : 1, sizeof *up);
		if (up) {
			free(c->w.up);
			c->w.up = up;
			c->w.nup = c->cfg->ndevices;
		}
	}
	if (c->w.up)
		memset(c->w.up, 0, c->w.nup * sizeof *c->w.up);
}

static struct payload_sparkplug_node wire_node(const struct core *c)
{
	return (struct payload_sparkplug_node){ .group = c->cfg->uplink.sparkplug_group,
						.id = c->cfg->gateway.id,
						.name = c->cfg->gateway.name,
						.version = SLUICE_VERSION,
						.bdseq = uplink_bdseq(c->up) };
}

/* A message of the session itself (a birth, a connect), not of a row: at the rows' QoS,
 * not tracked (its acknowledgement is nobody's). 0, or -1 when not now. */
static int wire_send(struct core *c, const struct payload_msg *m)
{
	int mid, rc = uplink_publish(c->up, m->topic, m->body.p, m->body.len, row_qos(c), false,
				     &mid);

	if (rc == UPLINK_REFUSED && !c->w.refused) {
		/* tried again at every turn: said once a session */
		c->w.refused = true;
		log_warnx("uplink: the broker refuses %s: %s; nothing that needs it goes out",
			  m->topic, uplink_refusal(c->up));
	}
	if (rc == 0 && is_sparkplug(c))
		c->w.seq++;   /* uint8_t: 255 is followed by 0 */
	return rc == 0 ? 0 : -1;
}

/* The device index of the config a stored row's device has, or -1. */
static long wire_device(const struct core *c, uint32_t dev)
{
	return dev < c->ndevidx ? c->devidx[dev] : -1;
}

static long wire_device_by_id(const struct core *c, const char *id)
{
	for (size_t i = 0; i < c->cfg->ndevices; i++)
		if (strcmp(c->cfg->devices[i].id, id) == 0)
			return (long)i;
	return -1;
}

static long wire_check(struct core *c, const struct alert_transition *t, bool *rebirth);

/* NBIRTH (seq 0): every alert check known so far, the health numbers now. */
static int wire_nbirth(struct core *c)
{
	struct payload_sparkplug_node n = wire_node(c);
	struct health h;
	int rc;

	status_health(&c->status, c->cfg, c->st, clock_real_ms(), clock_mono_ms(), &h);
	h.not_stored += queue_refused(c->q);
	h.store_error = c->store_failing ? c->store_err : NULL;
	h.held_rows = c->held->n;
	wire_forget(c);
	/* every alert check of the engine, declared (a firing one with what it fired with) */
	if (c->ae) {
		size_t na = alert_checks(c->ae, NULL, 0);
		struct alert_transition *all = na ? calloc(na, sizeof *all) : NULL;
		bool added;

		if (all)
			(void)alert_checks(c->ae, all, na);
		for (size_t i = 0; all && i < na; i++) {
			long k = wire_check(c, &all[i], &added);
			/* a check published since keeps its last transition */
			if (k >= 0 && !added && all[i].state == ALERT_FIRING &&
			    c->w.checks[k].state != ALERT_FIRING)
				c->w.checks[k] = all[i];
		}
		free(all);
	}
	rc = payload_sparkplug_nbirth(&c->msg, &n, &h, c->w.checks, c->w.nchecks, 0,
				      clock_real_ms());
	if (rc != 0 || wire_send(c, &c->msg) != 0)
		return -1;
	c->w.born = true;
	c->w.announced = false;   /* the DBIRTHs follow */
	log_info("sparkplug: NBIRTH published (bdSeq %" PRIu64 ", %zu alert checks)", n.bdseq,
		 c->w.nchecks);
	return 0;
}

static int wire_device_up(struct core *c, size_t di, const struct value *values, size_t nv,
			  int64_t ts_ms, uint64_t row_seq);

/* Every device online now, said to the platform: a device polled seldom would otherwise
 * wait for its next reading to be born (DBIRTH, its values null until its next DDATA) or
 * connected. 0, or -1 when not all could go now (those done are not said again). */
static int wire_announce(struct core *c)
{
	for (size_t i = 0; i < c->cfg->ndevices && i < c->w.nup; i++)
		if (!c->w.up[i] && c->status.dev[i].published == 1 &&
		    wire_device_up(c, i, NULL, 0, clock_real_ms(), 0) != 0)
			return -1;
	return 0;
}

/*
 * May rows be published now? Sparkplug: not while the primary host is offline, and only
 * after this session's NBIRTH and the DBIRTH of every device online (published here when
 * they are due); ThingsBoard: after the connect of every device online.
 */
static bool wire_ready(struct core *c)
{
	if (!is_sparkplug(c) && !is_thingsboard(c))
		return true;
	if (is_sparkplug(c)) {
		if (!c->w.host_online)
			return false;
		if (!c->w.born && wire_nbirth(c) != 0)
			return false;
	}
	if (!c->w.announced) {
		if (wire_announce(c) != 0)
			return false;
		c->w.announced = true;
	}
	return true;
}

/* Device di said this session: DBIRTH (Sparkplug; values NULL: null until its first
 * DDATA), or connect and its description (ThingsBoard). */
static int wire_device_up(struct core *c, size_t di, const struct value *values, size_t nv,
			  int64_t ts_ms, uint64_t row_seq)
{
	const struct device_cfg *d = &c->cfg->devices[di];

	if (is_sparkplug(c)) {
		struct payload_sparkplug_node n = wire_node(c);
		if (payload_sparkplug_dbirth(&c->msg, &n, d, di, values, nv, ts_ms, row_seq, c->w.seq,
					     clock_real_ms()) != 0 ||
		    wire_send(c, &c->msg) != 0)
			return -1;
	} else {
		if (payload_thingsboard_connect(&c->msg, d, true) != 0 ||
		    wire_send(c, &c->msg) != 0 || payload_thingsboard_describe(&c->msg, d) != 0 ||
		    wire_send(c, &c->msg) != 0)
			return -1;
	}
	if (di < c->w.nup)
		c->w.up[di] = true;
	return 0;
}

/* The stored device description d (of the config the reading was taken under) still
 * matches the config's device cd point for point: aliases and units are the config's. */
static bool same_points(const struct device_cfg *d, const struct device_cfg *cd)
{
	if (d == cd)
		return true;
	if (d->npoints != cd->npoints)
		return false;
	for (size_t i = 0; i < d->npoints; i++)
		if (strcmp(d->points[i].name, cd->points[i].name) != 0 ||
		    d->points[i].type != cd->points[i].type)
			return false;
	return true;
}

/*
 * A reading in Sparkplug (DDATA by alias, after its device's DBIRTH) or ThingsBoard
 * (telemetry, after its device's connect), into c->msg. 0, -1 not now, 1 it cannot be
 * said in this format (*why).
 */
static int wire_reading(struct core *c, const struct store_row *r, const struct device_cfg *d,
			const struct reading *rd, const char **why)
{
	long di = wire_device(c, r->dev);
	bool historical = r->seq <= c->hist_end;

	if (di < 0 || !same_points(d, &c->cfg->devices[di])) {
		*why = "its device is no longer in the config as it was (a format that names "
		       "points by the config's aliases cannot say it)";
		if (is_thingsboard(c) && di < 0)
			return payload_thingsboard_telemetry(&c->msg, d, rd->values, rd->nvalues,
							     r->ts_ms, r->seq) == 0 ? 0 : -1;
		if (is_thingsboard(c))
			di = -1;
		else
			return 1;
	}
	if (di >= 0 && (size_t)di < c->w.nup && !c->w.up[di] &&
	    /* a birth says the current values: not an outage's */
	    wire_device_up(c, (size_t)di, historical ? NULL : rd->values,
			   historical ? 0 : rd->nvalues, r->ts_ms, 0) != 0)
		return -1;
	if (is_thingsboard(c))
		return payload_thingsboard_telemetry(&c->msg, d, rd->values, rd->nvalues, r->ts_ms,
						     r->seq) == 0 ? 0 : -1;
	{
		struct payload_sparkplug_node n = wire_node(c);
		return payload_sparkplug_ddata(&c->msg, &n, &c->cfg->devices[di], (size_t)di,
					       rd->values, rd->nvalues, r->ts_ms, historical, r->seq,
					       c->w.seq, clock_real_ms()) == 0 ? 0 : -1;
	}
}

/* MBE_* from its text (mb_strerror), 0 when none matches. */
static int mberr_from_text(const char *s)
{
	if (!s)
		return 0;
	for (int e = 1; e < MBE_EXC_BASE + 256; e++)
		if (strcmp(mb_strerror(e), s) == 0)
			return e;
	return 0;
}

static int severity_from_text(const char *s)
{
	for (int v = SEV_BLUE; s && v <= SEV_RED; v++)
		if (strcmp(severity_name(v), s) == 0)
			return v;
	return SEV_NONE;
}

static double num_or_nan(const struct jval *v, const char *key)
{
	const struct jval *x = jread_get(v, key);
	return x && x->type == J_NUM ? x->num : NAN;
}

/* A stored transition's text (the sluice format's members after seq), read back. */
static struct jval *wire_parse_row(const struct store_row *r)
{
	char err[100];
	size_t n = strlen(r->body);
	char *text = malloc(n + 3);
	struct jval *v;

	if (!text)
		return NULL;
	text[0] = '{';
	memcpy(text + 1, r->body, n);
	text[n + 1] = '}';
	text[n + 2] = '\0';
	v = jread_parse(text, n + 2, err, sizeof err);
	free(text);
	return v;
}

/* The alert check's index among those the NBIRTH named; a new one is added, and a
 * rebirth is due (its aliases are in no birth yet). */
static long wire_check(struct core *c, const struct alert_transition *t, bool *rebirth)
{
	struct alert_transition *p;

	*rebirth = false;
	for (size_t i = 0; i < c->w.nchecks; i++)
		if (strcmp(c->w.checks[i].rule, t->rule) == 0 &&
		    strcmp(c->w.checks[i].check, t->check) == 0)
			return (long)i;
	if (c->w.nchecks >= PSP_ALERTS_MAX)
		return -1;
	p = realloc(c->w.checks, (c->w.nchecks + 1) * sizeof *p);
	if (!p)
		return -1;
	c->w.checks = p;
	c->w.checks[c->w.nchecks] = *t;
	*rebirth = true;
	return (long)c->w.nchecks++;
}

/*
 * A transition (device/<id> or alert/<rule>/<check>, stored as the sluice format
 * writes it) in Sparkplug or ThingsBoard, into c->msg; *after: ThingsBoard's device to
 * disconnect once it is published (-1 none). 0, -1 not now, 1 it cannot be said (*why).
 */
static int wire_transition(struct core *c, const struct store_row *r, long *after,
			   const char **why)
{
	struct payload_sparkplug_node n;
	struct jval *v;
	int rc = -1;

	*after = -1;
	*why = "its stored text cannot be read back";
	if (!(v = wire_parse_row(r)))
		return 1;
	n = wire_node(c);
	if (strncmp(r->topic, "device/", 7) == 0) {
		long di = wire_device_by_id(c, r->topic + 7);
		const char *state = jread_str(v, "state");
		bool online = state && strcmp(state, "online") == 0;

		if (di < 0) {
			*why = "its device is no longer in the config";
			rc = 1;
		} else if (is_sparkplug(c)) {
			if (online) {
				rc = payload_sparkplug_dbirth(&c->msg, &n, &c->cfg->devices[di],
							      (size_t)di, NULL, 0, r->ts_ms, r->seq,
							      c->w.seq, clock_real_ms());
			} else {
				rc = payload_sparkplug_ddeath(&c->msg, &n, &c->cfg->devices[di],
							      (size_t)di, r->seq, c->w.seq,
							      clock_real_ms());
			}
			if (rc == 0 && (size_t)di < c->w.nup)
				c->w.up[di] = online;
			rc = rc == 0 ? 0 : -1;
		} else {
			if (online && (size_t)di < c->w.nup && !c->w.up[di] &&
			    wire_device_up(c, (size_t)di, NULL, 0, r->ts_ms, 0) != 0)
				goto out;
			rc = payload_thingsboard_device_state(
				     &c->msg, &c->cfg->devices[di], online, r->ts_ms,
				     mberr_from_text(jread_str(v, "last_error")), r->seq) == 0 ? 0 : -1;
			if (!online)
				*after = di;
		}
	} else if (strncmp(r->topic, "alert/", 6) == 0) {
		struct alert_transition t = { 0 };
		const struct jval *act = jread_get(v, "action");
		struct payload_write_failure f = { 0 };
		char ref[ID_MAX + POINT_NAME_MAX + 2] = "";
		const char *s;

		snprintf(t.rule, sizeof t.rule, "%s", jread_str(v, "rule") ? jread_str(v, "rule") : "");
		snprintf(t.check, sizeof t.check, "%s",
			 jread_str(v, "check") ? jread_str(v, "check") : "");
		s = jread_str(v, "state");
		t.state = s && strcmp(s, "firing") == 0 ? ALERT_FIRING : ALERT_RESOLVED;
		t.severity = severity_from_text(jread_str(v, "severity"));
		t.ts_ms = r->ts_ms;
		t.value = num_or_nan(v, "value");
		t.threshold = num_or_nan(v, "threshold");
		snprintf(t.unit, sizeof t.unit, "%s", jread_str(v, "unit") ? jread_str(v, "unit") : "");
		snprintf(t.message, sizeof t.message, "%s",
			 jread_str(v, "message") ? jread_str(v, "message") : "");
		if (act && act->type == J_OBJ && jread_str(act, "write")) {
			char *dot;
			snprintf(ref, sizeof ref, "%s", jread_str(act, "write"));
			dot = strchr(ref, '.');
			if (dot)
				*dot = '\0';
			f = (struct payload_write_failure){ .device = ref,
							    .point = dot ? dot + 1 : "",
							    .value = num_or_nan(act, "value"),
							    .err = mberr_from_text(jread_str(act, "error")) };
		}
		if (is_thingsboard(c)) {
			rc = payload_thingsboard_alert(&c->msg, &t, jread_str(v, "name"),
						       ref[0] ? &f : NULL, r->seq) == 0 ? 0 : -1;
		} else {
			bool rebirth;
			long i = wire_check(c, &t, &rebirth);

			if (i < 0) {
				*why = "more alert checks than Sparkplug aliases are set aside for";
				rc = 1;
				goto out;
			}
			/* a check the NBIRTH did not name: born again with it */
			if (rebirth && wire_nbirth(c) != 0)
				goto out;
			c->w.checks[i] = t;
			rc = payload_sparkplug_alert(&c->msg, &n, &t, (size_t)i,
						     r->seq <= c->hist_end, r->seq, c->w.seq,
						     clock_real_ms()) == 0 ? 0 : -1;
		}
	} else if (strcmp(r->topic, "command/event") == 0) {
		/* the audit trail: the event's own text, as JSON in the format's envelope */
		if (is_thingsboard(c))
			rc = payload_thingsboard_command(&c->msg, r->body, r->ts_ms, r->seq) == 0 ? 0
												   : -1;
		else
			rc = payload_sparkplug_command(&c->msg, &n, r->body, r->ts_ms,
						       r->seq <= c->hist_end, r->seq, c->w.seq,
						       clock_real_ms()) == 0 ? 0 : -1;
	} else {
		*why = "it is no message this format has";
		rc = 1;
	}
out:
	jread_free(v);
	return rc;
}

/* The uplink's will carries this bdSeq: stored, so that the next start's is the one after. */
static void on_bdseq(void *ctx, uint64_t bdseq)
{
	struct core *c = ctx;
	char v[24];

	snprintf(v, sizeof v, "%" PRIu64, bdseq);
	if (store_meta_put(c->st, BDSEQ_KEY, v) != 0)
		log_warnx("store: could not keep the Sparkplug bdSeq: %s", store_error(c->st));
}

/* At start and after a new uplink: the bdSeq after the last one stored. */
static void wire_bdseq_start(struct core *c)
{
	char *v = NULL;

	if (store_meta_get(c->st, BDSEQ_KEY, &v) == 0 && v)
		uplink_set_bdseq(c->up, (strtoull(v, NULL, 10) + 1) % 256);
	free(v);
}

static bool dev_online(void *ctx, size_t device)
{
	struct core *c = ctx;
	return device < c->cfg->ndevices && c->status.dev[device].published == 1;
}

static void command_message(struct core *c, const char *topic, const void *payload, size_t len);

/* A message on one of the gateway's subscriptions. */
static void on_message(void *ctx, const char *topic, const void *payload, size_t len)
{
	struct core *c = ctx;
	struct command cmd;
	struct command_env env = { .cfg = c->cfg, .online = dev_online, .ctx = c,
				   .now_ms = clock_real_ms() };

	switch (command_parse(&env, topic, payload, len, &cmd)) {
	case COMMAND_REBIRTH:
		log_info("sparkplug: rebirth asked for (NCMD Node Control/Rebirth)");
		c->w.born = false;
		c->w.announced = false;
		break;
	case COMMAND_HOST:
		if (cmd.host_online != c->w.host_online)
			log_info("sparkplug: primary host %s is %s", c->cfg->uplink.sparkplug_primary_host,
				 cmd.host_online ? "online: publishing" : "offline: holding rows");
		/* back online: born again for it (Sparkplug 3.0) */
		if (cmd.host_online && !c->w.host_online)
			c->w.born = c->w.announced = false;
		c->w.host_online = cmd.host_online;
		break;
	case COMMAND_WRITE:
	case COMMAND_REFUSED:
		command_message(c, topic, payload, len);
		break;
	default:
		break;
	}
}

static bool add_event(struct core *c, int64_t ts_ms);
static void commit_transitions(struct core *c, bool alerts);
static int queue_write(struct core *c, size_t device, size_t point, double value, uint64_t tag);

/* The answer to a command in its format, when its format answers (not tracked: a reply
 * lost with the connection is asked for again by the platform's retry, which the memory
 * of commands answers). */
static void command_answer(struct core *c, const struct command *cmd, bool ok, const char *error)
{
	int mid;

	if (command_reply(&c->msg, cmd, ok, error) == 0 &&
	    uplink_publish(c->up, c->msg.topic, c->msg.body.p, c->msg.body.len, 1, false, &mid) != 0)
		log_warnx("command %s: the reply could not be sent now", cmd->id[0] ? cmd->id : "-");
}

/* A command's outcome: remembered (a redelivery is answered with it), stored as an event
 * with its seq (the audit trail, committed at once), answered. */
static void command_outcome(struct core *c, const struct command *cmd, bool ok, const char *error)
{
	command_dedup_done(c->dedup, cmd->key, ok, error);
	if (command_event(&c->msg, cmd, c->cfg, ok, error, clock_real_ms()) != 0 ||
	    !add_event(c, clock_real_ms()))
		log_errx("out of memory: the event of command %s is not stored",
			 cmd->id[0] ? cmd->id : "-");
	else
		commit_transitions(c, false);
	command_answer(c, cmd, ok, error);
}

/* A command's write the pollers dropped unsent when they were restarted (a reload, a
 * discovery): not an MBE_* (those are positive). */
#define COMMAND_WRITE_DROPPED (-1)

/* A write's result for command job (err MBE_*, 0 done, COMMAND_WRITE_DROPPED): the
 * outcome once every write of it has answered. */
static void command_write_done(struct core *c, struct cmd_job *job, size_t wi, int err)
{
	char why[2 * COMMAND_REASON_MAX];

	if (err && !job->err) {
		job->err = err;
		job->failed = wi;
	}
	if (--job->left > 0)
		return;
	if (job->err) {
		const struct command_write *w = &job->cmd.writes[job->failed];
		const struct device_cfg *d = &c->cfg->devices[w->device];
		if (job->err == COMMAND_WRITE_DROPPED)
			snprintf(why, sizeof why, "write %s.%s not carried out: the pollers were "
				 "restarted (a reload or a discovery) before it went out", d->id,
				 d->points[w->point].name);
		else
			snprintf(why, sizeof why, "write %s.%s failed: %s", d->id,
				 d->points[w->point].name, mb_strerror(job->err));
		log_warnx("command %s: %s", job->cmd.id[0] ? job->cmd.id : "-", why);
	} else {
		log_info("command %s carried out", job->cmd.id[0] ? job->cmd.id : "-");
	}
	command_outcome(c, &job->cmd, job->err == 0, job->err ? why : NULL);
	free(job);
}

/*
 * A command from the platform (command.h): refused with its reason, or its writes queued
 * to the poller that owns the device, one master per line as for an alert's action; a
 * redelivery answered again with the first answer, never carried out twice.
 */
static void command_message(struct core *c, const char *topic, const void *payload, size_t len)
{
	struct command_env env = { .cfg = c->cfg, .online = dev_online, .ctx = c,
				   .now_ms = clock_real_ms() };
	const struct command_seen *seen;
	struct cmd_job *job = calloc(1, sizeof *job);
	size_t nfree = 0;

	if (!job || !c->dedup) {
		log_errx("out of memory: a command on %s is not read", topic);
		free(job);
		return;
	}
	command_parse(&env, topic, payload, len, &job->cmd);
	if (job->cmd.what == COMMAND_REFUSED && job->cmd.format == FORMAT_SPARKPLUG &&
	    strstr(topic, "/STATE/")) {
		/* the primary host's STATE, unreadable: no command, nothing to answer */
		log_warnx("sparkplug: %s: %s", topic, job->cmd.reason);
		free(job);
		return;
	}
	seen = command_dedup(c->dedup, &job->cmd, env.now_ms);
	if (seen) {
		log_info("command %s on %s seen before: %s", job->cmd.id[0] ? job->cmd.id : "-",
			 topic, seen->state == COMMAND_SEEN_PENDING ? "still under way"
								     : "answered again, not carried out");
		if (seen->state != COMMAND_SEEN_PENDING)
			command_answer(c, &job->cmd, seen->state == COMMAND_SEEN_OK,
				       seen->state == COMMAND_SEEN_OK ? NULL : seen->error);
		free(job);
		return;
	}
	if (job->cmd.what == COMMAND_WRITE) {
		for (size_t i = 0; i < MAX_PENDING_WRITES; i++)
			nfree += c->pw[i].tag == 0;
		if (nfree < job->cmd.nwrites) {
			job->cmd.what = COMMAND_REFUSED;
			snprintf(job->cmd.reason, sizeof job->cmd.reason,
				 "too many writes under way: try again");
		}
	}
	if (job->cmd.what != COMMAND_WRITE) {
		log_warnx("command %s on %s refused: %s", job->cmd.id[0] ? job->cmd.id : "-", topic,
			  job->cmd.reason);
		command_outcome(c, &job->cmd, false, job->cmd.reason);
		free(job);
		return;
	}
	job->left = job->cmd.nwrites;
	for (size_t i = 0, k = 0; i < job->cmd.nwrites; i++) {
		const struct command_write *w = &job->cmd.writes[i];
		const struct device_cfg *d = &c->cfg->devices[w->device];
		uint64_t tag = ++c->next_tag;

		while (c->pw[k].tag)
			k++;
		c->pw[k] = (struct pending_write){ .tag = tag, .job = job, .device = w->device,
						   .point = w->point, .value = w->value };
		log_info("command %s: writing %s.%s = %g", job->cmd.id[0] ? job->cmd.id : "-", d->id,
			 d->points[w->point].name, w->value);
		if (queue_write(c, w->device, w->point, w->value, tag) != 0) {
			c->pw[k].tag = 0;
			/* the last one frees the job */
			command_write_done(c, job, i, MBE_IO);
			if (i + 1 < job->cmd.nwrites)
				continue;
			return;
		}
	}
}


/* How a row goes: for the first time, or set aside and tried again (by a new session,
 * or because sluicectl retry asked). */
enum send { SEND_NEW, SEND_RETRY, SEND_RETRY_ASKED };

/*
 * The topic and payload of a row as the format in force writes them, into *out (the
 * payload c->wire or c->msg.body): in the sluice format a transition's stored text in
 * its envelope, a reading built from its values and its device as stored (a reading
 * stored under an older config keeps that config's names); in Sparkplug and ThingsBoard
 * the session's messages that must come first are published here (wire_*), then the
 * row's own. *topic points into the row or c->msg. 0, -1 (out of memory, or a message
 * that must come first could not go: not now), or 1 (it cannot be published: *why — a
 * reading whose device's description or values are damaged, a row this format cannot
 * say). *after: ThingsBoard's device to disconnect once the row is out (-1: none).
 */
static int row_message(struct core *c, const struct store_row *r, const char **topic,
		       const struct jbuf **out, long *after, const char **why)
{
	const struct device_cfg *d;
	struct reading *rd;
	int rc;

	*after = -1;
	*why = "it cannot be read back: its device's description or its values are damaged";
	if (!r->dev) {
		if (c->fmt->envelope) {
			*topic = r->topic;
			*out = &c->wire;
			return c->fmt->envelope(&c->wire, r->seq, r->body) == 0 ? 0 : -1;
		}
		rc = wire_transition(c, r, after, why);
		*topic = c->msg.topic;
		*out = &c->msg.body;
		return rc;
	}
	d = store_device(c->st, r->dev);
	rd = d ? store_row_reading(r) : NULL;
	if (!rd)
		return 1;
	if (!c->fmt->envelope) {
		rc = wire_reading(c, r, d, rd, why);
		reading_free(rd);
		*topic = c->msg.topic;
		*out = &c->msg.body;
		return rc;
	}
	rc = c->fmt->reading(&c->msg, d, rd);
	reading_free(rd);
	if (rc != 0 || c->fmt->envelope(&c->wire, r->seq, jb_cstr_get(&c->msg.body)) != 0)
		return -1;
	*topic = c->msg.topic;
	*out = &c->wire;
	return 0;
}

/* 0 published, 1 not sent and never will be as it is (set aside now, or it was and
 * stays; the caller goes on), -1 not now. */
static int publish_row(struct core *c, const struct store_row *r, enum send how)
{
	bool aside = how != SEND_NEW;
	const char *topic = NULL, *why;
	const struct jbuf *w = NULL;
	char *ftopic;
	int mid, rc;
	uint64_t like;
	size_t lbytes;
	long after;

	rc = row_message(c, r, &topic, &w, &after, &why);
	if (rc < 0)
		return -1;
	if (rc > 0) {
		if (!aside)
			set_aside(c, r->seq, r->dev ? "a reading" : r->topic, r->nvals, why);
		return 1;
	}
	if (how != SEND_RETRY_ASKED &&
	    (like = suspect_refuses(&c->sus, topic, w->len, &lbytes)) != 0) {
		char reason[200];

		/* a new session's retry would cost the session: only when asked for (or after
		 * a restart, which forgets what was learnt) */
		if (aside)
			return 1;
		snprintf(reason, sizeof reason, "as large as seq %" PRIu64 " (%zu bytes), which "
			 "the broker ended the session for %d times in a row", like, lbytes,
			 SUSPECT_STRIKES);
		set_aside(c, r->seq, topic, w->len, reason);
		return 1;
	}
	ftopic = strdup(topic);
	if (!ftopic)
		return -1;
	rc = uplink_publish(c->up, topic, w->p, w->len, row_qos(c),
			    r->dev || c->fmt->envelope == NULL ? false : r->retain, &mid);
	if (rc == UPLINK_REFUSED) {
		if (!aside)
			set_aside(c, r->seq, topic, w->len, uplink_refusal(c->up));
		free(ftopic);
		return 1;
	}
	if (rc != 0) {
		free(ftopic);
		return -1;
	}
	c->fl[c->nfl++] = (struct flight){
		.mid = mid,
		.seq = r->seq,
		.kind = r->kind,
		.topic = ftopic,
		.bytes = w->len,
		.aside = aside,
	};
	c->published_at = clock_mono_ms();
	if (is_sparkplug(c))
		c->w.seq++;
	/* ThingsBoard: the device's last state is out, then it goes */
	if (after >= 0 && payload_thingsboard_connect(&c->msg, &c->cfg->devices[after], false) == 0 &&
	    wire_send(c, &c->msg) == 0 && (size_t)after < c->w.nup)
		c->w.up[after] = false;
	return 0;
}

/*
 * The rows set aside, once per pass, after everything else: one at a time, so that a
 * session that dies on one says which (and turns the automatic retry off).
 */
static void retry_aside(struct core *c, size_t window)
{
	struct store_row r;

	while (c->aside_pass && c->nfl < window) {
		for (size_t i = 0; i < c->nfl; i++)
			if (c->fl[i].aside)
				return;
		if (store_fetch_aside(c->st, c->aside_after, 1, &r) != 1) {
			c->aside_pass = false;
			break;
		}
		if (r.kind == ROW_ALERT && topic_in_flight(c, r.topic)) {
			store_row_clear(&r);
			return;
		}
		if (publish_row(c, &r, c->aside_asked ? SEND_RETRY_ASKED : SEND_RETRY) < 0) {
			store_row_clear(&r);
			return;
		}
		c->aside_after = r.seq;
		store_row_clear(&r);
	}
	/* the pass is over (or the session is): an asked-for retry was done */
	if (!c->aside_pass)
		c->aside_asked = false;
}

/*
 * The next reading in memory to publish (held, then pend, in seq order), or NULL: none,
 * or the next row cannot go from memory yet — a transition (it goes once stored) or a
 * row without its seq. *more says whether anything waits in memory.
 */
static const struct store_row *mem_next(struct core *c, bool *more)
{
	size_t total = c->held->n + c->pend->n;

	*more = false;
	for (size_t i = c->mem_next; i < total; i++) {
		const struct store_row *r = i < c->held->n ? &c->held->r[i]
							   : &c->pend->r[i - c->held->n];

		if (r->kind == ROW_TELEMETRY && r->seq &&
		    (r->seq <= c->after[ROW_TELEMETRY] || r->seq <= c->delivered)) {
			c->mem_next = i + 1;
			continue;
		}
		*more = true;
		if (r->kind != ROW_TELEMETRY || !r->seq)
			return NULL;
		return r;
	}
	return NULL;
}

/*
 * Fill the window (docs/mqtt.md, "Order"): transitions before the telemetry that waited
 * through an outage (seqs up to backlog_end), and never two of one check in flight (a
 * retained state must not go backwards); otherwise every row in seq order — a reading
 * before the alert it caused. Telemetry comes from the store, then from memory (not
 * stored yet: published at once). Then, when nothing else waits, the rows set aside.
 */
static void drain_outbox(struct core *c)
{
	struct store_row ev[FETCH_MAX], tel[FETCH_MAX];
	size_t window = suspect_window(&c->sus), want;
	long ne = 0, nt = 0, ie = 0, it = 0;
	bool tel_all, more = false, mem_more = false;

	c->window_full = false;
	if (!uplink_connected(c->up) || !wire_ready(c))
		return;
	/* while suspect.c searches, a session that a broker drops whatever is sent ends
	 * before a row is in flight (the loop wakes within LOOP_WAIT_MAX_MS) */
	if (clock_mono_ms() - c->connected_at < suspect_hold_ms(&c->sus))
		return;
	if (window > c->capfl)
		window = c->capfl;
	if (c->nfl >= window) {
		c->window_full = true;
		return;
	}
	want = window - c->nfl < FETCH_MAX ? window - c->nfl : FETCH_MAX;
	/* the store says at once, without SQL, when it has nothing beyond these */
	ne = store_fetch_unsent(c->st, ROW_ALERT, c->after[ROW_ALERT], want, ev);
	nt = store_fetch_unsent(c->st, ROW_TELEMETRY, c->after[ROW_TELEMETRY], want, tel);
	if (ne < 0)
		ne = 0;
	tel_all = nt >= 0 && (size_t)nt < want;
	if (nt < 0)
		nt = 0;
	while (c->nfl < window) {
		const struct store_row *e = ie < ne ? &ev[ie] : NULL, *t = NULL;
		bool t_mem = false, backlog;
		int rc;

		if (it < nt)
			t = &tel[it];
		else if (tel_all && (t = mem_next(c, &mem_more)) != NULL)
			t_mem = true;
		backlog = t && t->seq <= c->backlog_end;
		if (e && (!t || e->seq < t->seq || backlog)) {
			if (!topic_in_flight(c, e->topic)) {
				rc = publish_row(c, e, SEND_NEW);
				if (rc < 0)
					break;
				c->after[ROW_ALERT] = e->seq;
				ie++;
				continue;
			}
			/* held back: the backlog's telemetry does not wait for it, live rows do */
			if (!backlog)
				break;
		}
		if (!t)
			break;
		rc = publish_row(c, t, SEND_NEW);
		if (rc < 0)
			break;
		/* the mark: set aside at once (rc 1) is done with, as an acknowledgement */
		if (!pubq_push(&c->pq, t->seq, rc > 0))
			log_warnx("out of memory: the delivery mark stays before seq %" PRIu64
				  " this session", t->seq);
		c->after[ROW_TELEMETRY] = t->seq;
		if (!t_mem)
			it++;
	}
	more = ie < ne || it < nt || !tel_all || (size_t)ne == want || mem_more;
	if (!more) {
		(void)mem_next(c, &mem_more);
		more = mem_more;
	}
	for (long i = 0; i < ne; i++)
		store_row_clear(&ev[i]);
	for (long i = 0; i < nt; i++)
		store_row_clear(&tel[i]);
	if (!more && c->nfl < window)
		retry_aside(c, window);
	c->window_full = more && c->nfl >= window;
}

/* sluicectl retry (SIGUSR1): the rows set aside go again, now or at the next session. */
static void retry_requested(struct core *c)
{
	struct store_stats s;

	/* a row set aside in the last COMMIT_MS may still wait in memory, where the pass
	 * (store_fetch_aside) would not find it: everything set aside so far goes again */
	commit_pending(c, true);
	c->aside_auto = true;
	c->aside_asked = true;
	c->aside_pass = uplink_connected(c->up);
	c->aside_after = 0;
	if (store_stats(c->st, &s) != 0 || s.aside == 0) {
		log_info("retry asked for: no rows are set aside");
		return;
	}
	log_info("retry asked for: the %" PRIu64 " rows set aside are sent again%s", s.aside,
		 uplink_connected(c->up) ? "" : " once the uplink is connected");
}

/* Health is not buffered: sent only while connected, with no seq. */
static void publish_health(struct core *c, int64_t now_mono)
{
	struct health h;
	int mid;

	if (!uplink_connected(c->up) || !wire_ready(c))
		return;
	status_health(&c->status, c->cfg, c->st, clock_real_ms(), now_mono, &h);
	h.not_stored += queue_refused(c->q);
	h.store_error = c->store_failing ? c->store_err : NULL;
	h.held_rows = c->held->n;
	if (is_sparkplug(c)) {
		struct payload_sparkplug_node n = wire_node(c);
		/* NDATA of the node's health metrics, in the node's seq */
		if (payload_sparkplug_health(&c->msg, &n, &h, c->w.seq, clock_real_ms()) == 0)
			(void)wire_send(c, &c->msg);
		return;
	}
	if (c->fmt->health(&c->msg, &h) == 0 &&
	    uplink_publish(c->up, c->msg.topic, c->msg.body.p, c->msg.body.len, 0, c->msg.retain,
			   &mid) == UPLINK_REFUSED && !c->health_refused) {
		c->health_refused = true;
		log_warnx("uplink: the broker refuses the health message: %s", uplink_refusal(c->up));
	}
}

/* ---- pollers and their write results ---------------------------------------------- */

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
	bool any = false;
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

		for (size_t k = 0; k < MAX_PENDING_WRITES; k++)
			if (c->pw[k].tag == res[i].tag)
				pw = &c->pw[k];
		if (!pw)
			continue;
		if (pw->job) {
			struct cmd_job *job = pw->job;
			size_t wi = 0;

			for (size_t k = 0; k < job->cmd.nwrites; k++)
				if (job->cmd.writes[k].device == pw->device &&
				    job->cmd.writes[k].point == pw->point)
					wi = k;
			pw->tag = 0;
			command_write_done(c, job, wi, res[i].err);
			continue;
		}
		if (res[i].err) {
			const struct device_cfg *d = &c->cfg->devices[pw->device];
			struct payload_write_failure f = { .device = d->id,
							   .point = d->points[pw->point].name,
							   .value = pw->value, .err = res[i].err };

			pw->t.ts_ms = clock_real_ms();
			if (c->rowfmt->alert(&c->msg, &pw->t, rule_name(c->cfg, pw->t.rule), &f) == 0 &&
			    add_event(c, pw->t.ts_ms))
				any = true;
		}
		pw->tag = 0;
	}
	if (any)
		commit_transitions(c, false);
}

/* Both kinds of pollers for cfg; serial lines first, so that the descriptors libmodbus
 * must select() on are low (docs/design.md, "Threads": descriptors past 1023). */
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

/* A discovery round reads through the pollers: it is cancelled first, and its thread,
 * whose read the stopping pollers hand back, joined after (what it found is dropped: the
 * config may be about to change). */
static void pollers_stop(struct core *c)
{
	if (c->disc)
		sunspec_round_cancel(c->disc);
	if (c->sp)
		serpoll_stop(c->sp);
	if (c->tp)
		tcpoll_stop(c->tp);
	if (c->disc) {
		sunspec_round_join(c->disc);
		sunspec_round_free(c->disc);
		c->disc = NULL;
		c->disc_over = false;
	}
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

/* A probe (control, discovery) to the poller that owns bus. Also called from a discovery
 * round's thread: sp, tp and cfg do not change while a round runs (pollers_stop ends it
 * first). */
static int pollers_probe(void *ctx, size_t bus, struct poller_probe *p)
{
	struct core *c = ctx;

	if (bus >= c->cfg->nbuses) {
		errno = ENOENT;
		return -1;
	}
	if (c->cfg->buses[bus].kind == BUS_TCP)
		return tcpoll_probe(c->tp, bus, p);
	return serpoll_probe(c->sp, bus, p);
}

/* Stop the pollers and take in what they held, before they are rebuilt (a reload, a
 * discovery): readings under the config they were taken with, write results; writes
 * still queued were dropped with them. */
static void pollers_retire(struct core *c)
{
	pollers_stop(c);
	store_readings(c); /* under the config they were taken with */
	commit_pending(c, true);
	take_write_results(c);
	pollers_free(c);
	/* a command's writes dropped with them: it is answered, not left under way */
	for (size_t i = 0; i < MAX_PENDING_WRITES; i++)
		if (c->pw[i].tag && c->pw[i].job) {
			struct cmd_job *job = c->pw[i].job;
			size_t wi = 0;

			for (size_t k = 0; k < job->cmd.nwrites; k++)
				if (job->cmd.writes[k].device == c->pw[i].device &&
				    job->cmd.writes[k].point == c->pw[i].point)
					wi = k;
			c->pw[i].tag = 0;
			command_write_done(c, job, wi, COMMAND_WRITE_DROPPED);
		}
	memset(c->pw, 0, MAX_PENDING_WRITES * sizeof *c->pw);
}

/* ---- SunSpec discovery ------------------------------------------------------------ */

/* A round for the devices still missing, through the pollers running now. */
static void discovery_start(struct core *c)
{
	char err[256];

	c->dl[DL_DISCOVER] = DL_NEVER;
	c->disc = sunspec_round_start(c->cfg, pollers_probe, c, c->disc_attempt, err, sizeof err);
	if (!c->disc && err[0]) {
		log_errx("sunspec: %s; tried again in %lld s", err, (long long)c->disc_pace / 1000);
		c->dl[DL_DISCOVER] = clock_mono_ms() + c->disc_pace;
	}
}

/* The next round, while a device is missing: later each time, up to the most. */
static void discovery_again(struct core *c, size_t missing)
{
	c->disc_attempt++;
	if (missing == 0) {
		c->dl[DL_DISCOVER] = DL_NEVER;
		return;
	}
	c->dl[DL_DISCOVER] = clock_mono_ms() + c->disc_pace;
	c->disc_pace = c->disc_pace * 2 > SUNSPEC_RETRY_MAX_MS ? SUNSPEC_RETRY_MAX_MS
							      : c->disc_pace * 2;
}

/* A config was loaded: its sunspec devices are discovered now, then at the slow pace. */
static void discovery_reset(struct core *c)
{
	c->disc_attempt = 0;
	c->disc_pace = SUNSPEC_RETRY_MIN_MS;
	c->dl[DL_DISCOVER] = sunspec_missing(c->cfg) ? clock_mono_ms() : DL_NEVER;
}

/*
 * A round is over. When it found a device, the config gains its points the way a reload
 * swaps a config: the pollers are stopped and what they held is stored, the points go
 * in, the alert engine is built again (its state carried over by rule and check: rules
 * on the device's points come alive) and so are the pollers, under a new generation.
 */
static void discovery_apply(struct core *c, const struct poller_sink *sink)
{
	struct sunspec_round *r = c->disc;
	char err[256];
	long missing;

	c->disc = NULL;
	c->disc_over = false;
	if (sunspec_round_join(r) == 0) {
		sunspec_round_free(r);
		discovery_again(c, sunspec_missing(c->cfg));
		return;
	}
	pollers_retire(c);
	missing = sunspec_round_apply(r, c->cfg, err, sizeof err);
	sunspec_round_free(r);
	if (missing < 0)
		log_errx("sunspec: %s", err);
	/* the devices found have points now: a new description each, readings from now on
	 * under it */
	devices_register(c, c->cfg);
	{
		char *state = c->ae ? alert_save(c->ae) : NULL;
		struct alert_engine *ae = alert_start(c->cfg, state);

		free(state);
		if (ae) {
			alert_free(c->ae);
			c->ae = ae;
		}
	}
	c->generation++;
	if (pollers_start(c, sink) != 0)
		fatalx("sunspec: the pollers could not be started again");
	log_info("sunspec: pollers rebuilt with the devices found: %zu devices polled",
		 pollers_ndevices(c));
	discovery_again(c, missing < 0 ? sunspec_missing(c->cfg) : (size_t)missing);
}

/* ---- the control socket's view of the core ------------------------------------------ */

static const struct config *ctl_config(void *ctx)
{
	return ((struct core *)ctx)->cfg;
}

static const struct status *ctl_status(void *ctx)
{
	return &((struct core *)ctx)->status;
}

/* $RUNTIME_DIRECTORY/control (the unit's RuntimeDirectory=) with a link to it at
 * data_dir/control, else data_dir/control. A daemon that cannot make it runs without:
 * sluicectl then reads the stored status, and a probe cannot go through sluiced. */
static void control_start(struct core *c)
{
	static const struct control_core ops = { .config = ctl_config, .status = ctl_status,
						  .probe = pollers_probe };
	struct control_core core = ops;
	char path[128], link[128], err[300];

	core.ctx = c;
	if (control_socket_path(getenv("RUNTIME_DIRECTORY"), c->cfg->gateway.data_dir, path,
				sizeof path, link, sizeof link) != 0) {
		log_warnx("control: the socket's path (%s/%s) is longer than a socket address "
			  "takes; sluicectl status shows the stored status, and probe cannot go "
			  "through sluiced", c->cfg->gateway.data_dir, CONTROL_SOCKET_NAME);
		return;
	}
	c->ctl = control_open(path, link, &core, err, sizeof err);
	if (!c->ctl)
		log_warnx("control: %s; sluicectl status shows the stored status, and probe "
			  "cannot go through sluiced", err);
	else
		log_debug("control: listening at %s", path);
}

/* ---- the page's view of the core ---------------------------------------------------- */

static const struct alert_engine *web_alerts_of(void *ctx)
{
	return ((struct core *)ctx)->ae;
}

static struct control *web_control_of(void *ctx)
{
	return ((struct core *)ctx)->ctl;
}

static void web_backlog_of(void *ctx, struct web_backlog *out)
{
	struct core *c = ctx;
	struct store_stats s = { 0 };

	store_stats(c->st, &s);
	*out = (struct web_backlog){ .rows = s.unsent, .oldest_ms = s.oldest_unsent_ms,
				     .dropped = s.dropped, .set_aside = s.aside,
				     .not_stored = c->status.not_stored + queue_refused(c->q),
				     .db_bytes = s.db_bytes,
				     .store_error = c->store_failing ? c->store_err : NULL };
}

static const struct web_core web_ops = { .config = ctl_config, .status = ctl_status,
					 .alerts = web_alerts_of, .backlog = web_backlog_of,
					 .control = web_control_of };

/* The page as cfg's web: says: started, stopped, served again (old NULL at start). */
static void web_apply(struct core *c, const struct config *old)
{
	struct web_core ops = web_ops;

	ops.ctx = c;
	web_reload(&c->web, old, c->cfg, &ops);
}

/* ---- reload -------------------------------------------------------------------------- */

static bool str_eq(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}


/* The fallback brokers differ (in number, order or any key). */
static bool fallback_changed(const struct uplink_cfg *x, const struct uplink_cfg *y)
{
	if (x->nfallback != y->nfallback)
		return true;
	for (size_t i = 0; i < x->nfallback; i++) {
		const struct broker_cfg *a = &x->fallback[i], *b = &y->fallback[i];
		if (!str_eq(a->host, b->host) || a->port != b->port ||
		    !str_eq(a->client_id, b->client_id) || !str_eq(a->username, b->username) ||
		    !str_eq(a->password_file, b->password_file) || a->tls != b->tls ||
		    !str_eq(a->ca_file, b->ca_file) || !str_eq(a->cert_file, b->cert_file) ||
		    !str_eq(a->key_file, b->key_file))
			return true;
	}
	return false;
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
	       x->keepalive_ms != y->keepalive_ms || x->inflight != y->inflight ||
	       x->ack_timeout_ms != y->ack_timeout_ms || x->max_packet_size != y->max_packet_size ||
	       x->format != y->format || !str_eq(x->sparkplug_group, y->sparkplug_group) ||
	       !str_eq(x->sparkplug_primary_host, y->sparkplug_primary_host) ||
	       x->commands != y->commands || x->fallback_check_ms != y->fallback_check_ms ||
	       fallback_changed(x, y);
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
	struct dev_status *ndev;
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
	if (nc && web_check(&nc->web, err, sizeof err) != 0) {
		log_errx("%s: %s", old->path, err);
		config_free(nc);
		nc = NULL;
	}
	if (!nc) {
		log_errx("reload: %s is not valid; the running configuration is kept", old->path);
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

	pollers_retire(c);

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
			/* another broker, perhaps: what was learnt of the old one goes */
			suspect_free(&c->sus);
			suspect_init(&c->sus, (unsigned)c->capfl);
		}
		c->up = up;
		wire_bdseq_start(c);
		uplink_set_stream(c->up, store_stream(c->st));
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
		status_devices_swap(&c->status, old, nc, ndev);
		c->cfg = nc;
		c->generation++;
		c->fmt = payload_format_find(uplink_format_name(nc->uplink.format));
		/* aliases and devices as this config has them: born again */
		wire_forget(c);
		/* before the old config goes: the store stops pointing into it */
		devices_register(c, nc);
		web_apply(c, old);
	}
	if (pollers_start(c, sink) != 0)
		fatalx("reload: the pollers could not be started");
	/* the new config's SunSpec devices: discovered again, through the new pollers */
	discovery_reset(c);
	if (nc == c->cfg && nc != old) {
		config_free(old);
		config_summary(c->cfg, sum, sizeof sum);
		log_info("reloaded: %s, %zu devices polled", sum, pollers_ndevices(c));
	}
	notify_send("READY=1");
}

/* ---- the loop ------------------------------------------------------------------------- */

static int64_t job_health(struct core *c, int64_t now)
{
	publish_health(c, now);
	return c->cfg->uplink.health_interval_ms;
}

static int64_t job_alert_tick(struct core *c, int64_t now)
{
	(void)now;
	alert_time(c, clock_real_ms());
	return ALERT_TICK_MS;
}

/* systemd's STATUS= every NOTIFY_EVERY_MS; the snapshot in the store more seldom
 * (status_snapshot_every_ms: each is a few pages written) */
#define NOTIFY_EVERY_MS 5000
static int64_t job_snapshot(struct core *c, int64_t now)
{
	if (now >= c->snapshot_at) {
		status_write_snapshot(&c->status, c->cfg, c->st, false, c->store_failing);
		c->snapshot_at = now + status_snapshot_every_ms(c->cfg);
	}
	status_notify(&c->status, c->cfg, c->st);
	return NOTIFY_EVERY_MS;
}

static int64_t job_state_save(struct core *c, int64_t now)
{
	(void)now;
	save_alert_state(c);
	return STATE_SAVE_MS;
}

static int64_t job_maintain(struct core *c, int64_t now)
{
	(void)now;
	/* acks first: a delivered row still marked unsent would be dropped and counted as
	 * lost */
	flush_acks(c, true);
	store_set_in_flight(c->st, c->nfl ? c->after[ROW_TELEMETRY] : 0);
	store_maintain(c->st, clock_real_ms());
	return MAINTAIN_EVERY_MS;
}

static int64_t job_watchdog(struct core *c, int64_t now)
{
	(void)now;
	notify_send("WATCHDOG=1");
	return c->watchdog_ms / 2;
}

/* The jobs that run on a period, in the order they run in a turn; each returns the ms
 * until it is due again. */
static const struct periodic_job {
	enum deadline dl;
	int64_t (*run)(struct core *c, int64_t now);
} periodic_jobs[] = {
	{ DL_HEALTH, job_health },
	{ DL_ALERT_TICK, job_alert_tick },
	{ DL_SNAPSHOT, job_snapshot },
	{ DL_STATE_SAVE, job_state_save },
	{ DL_MAINTAIN, job_maintain },
	{ DL_WATCHDOG, job_watchdog },
};

/* The first time of each job, from the start. */
static void deadlines_start(struct core *c, int64_t start)
{
	c->dl[DL_HEALTH] = start + c->cfg->uplink.health_interval_ms;
	c->dl[DL_ALERT_TICK] = start;
	c->dl[DL_SNAPSHOT] = start + 1000;
	c->snapshot_at = start + status_snapshot_every_ms(c->cfg);
	c->dl[DL_STATE_SAVE] = start + STATE_SAVE_MS;
	c->dl[DL_MAINTAIN] = start + MAINTAIN_EVERY_MS;
	c->dl[DL_WATCHDOG] = c->watchdog_ms > 0 ? start : DL_NEVER;
}

/* ms until the earliest deadline, 0 when one has passed, at most LOOP_WAIT_MAX_MS. */
static int loop_wait(const struct core *c, int64_t now)
{
	int64_t at = DL_NEVER;

	for (size_t i = 0; i < DL_COUNT; i++)
		if (c->dl[i] < at)
			at = c->dl[i];
	if (at <= now)
		return 0;
	return at - now > LOOP_WAIT_MAX_MS ? LOOP_WAIT_MAX_MS : (int)(at - now);
}

static void install_signals(void)
{
	struct sigaction sa = { .sa_handler = on_signal };

	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sigaction(SIGUSR1, &sa, NULL); /* sluicectl retry */
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

/* One turn: wait for readings, write results, the uplink's socket or the earliest
 * deadline; then steps 1-4 of the comment at the top. */
static int loop_turn(struct core *c)
{
	struct pollfd pfd[5 + CONTROL_POLLFDS_MAX];
	nfds_t n = 0, up = 0, disc = 0, ctl = 0, web = 0;
	size_t nctl = 0;
	int64_t now = clock_mono_ms();
	int ufd;

	bool gather = now < c->gather_until;

	c->dl[DL_UPLINK] = now + uplink_tick(c->up, now);
	if (!gather)
		c->dl[DL_GATHER] = DL_NEVER;
	/* while gathering, poll leaves the queue (fd -1) and the socket's input alone; a
	 * hangup or an error on the socket is reported all the same */
	pfd[n++] = (struct pollfd){ .fd = gather ? -1 : queue_fd(c->q), .events = POLLIN };
	pfd[n++] = (struct pollfd){ .fd = c->wfd, .events = POLLIN };
	ufd = uplink_fd(c->up);
	if (ufd >= 0) {
		pfd[up = n] = (struct pollfd){ .fd = ufd,
					       .events = gather && !c->window_full ? 0 : POLLIN };
		if (uplink_want_write(c->up))
			pfd[n].events |= POLLOUT;
		n++;
	}
	if (c->disc)
		pfd[disc = n++] = (struct pollfd){ .fd = sunspec_round_fd(c->disc), .events = POLLIN };
	if (c->web)
		pfd[web = n++] = (struct pollfd){ .fd = web_fd(c->web), .events = POLLIN };
	if (c->ctl) {
		nctl = control_pollfds(c->ctl, pfd + (ctl = n), CONTROL_POLLFDS_MAX);
		n += nctl;
		c->dl[DL_CONTROL] = control_deadline(c->ctl);
	}
	if (poll(pfd, n, loop_wait(c, now)) < 0 && errno != EINTR) {
		log_err("poll");
		return -1;
	}
	clock_look(c);
	/* not again while gathering (the socket is read then when the window is full): the
	 * queue must be read every GATHER_MS however fast acknowledgements come */
	if (!gather && ((pfd[0].revents & POLLIN) || (up && (pfd[up].revents & POLLIN)))) {
		c->gather_until = clock_mono_ms() + GATHER_MS;
		c->dl[DL_GATHER] = c->gather_until;
	}
	if (pfd[0].revents & POLLIN)
		store_readings(c);
	if (pfd[1].revents & POLLIN)
		take_write_results(c);
	if (up && pfd[up].revents)
		uplink_io(c->up, pfd[up].revents);
	if (disc && pfd[disc].revents)
		c->disc_over = true; /* applied between turns, as a reload is */
	now = clock_mono_ms();
	if (c->ctl)
		control_io(c->ctl, pfd + ctl, nctl, now);
	if (web && pfd[web].revents)
		web_io(c->web); /* after control_io: a probe's answer is taken there */
	if (now >= c->dl[DL_DISCOVER])
		discovery_start(c);
	uplink_tick(c->up, now);
	commit_pending(c, false);
	flush_acks(c, false);
	drain_outbox(c);
	store_check_damage(c);
	for (size_t i = 0; i < sizeof periodic_jobs / sizeof periodic_jobs[0]; i++) {
		const struct periodic_job *j = &periodic_jobs[i];

		if (now >= c->dl[j->dl])
			c->dl[j->dl] = now + j->run(c, now);
	}
	return 0;
}

/* Everything core_run set up, in reverse; what still waits in memory is stored first. */
static void core_free(struct core *c)
{
	/* first: its probes are forgotten while control and the pollers are still there */
	web_close(c->web);
	c->web = NULL;
	pollers_free(c);
	control_close(c->ctl); /* after the pollers: a probe they held comes back to it */
	if (c->q) {
		if (c->st && c->pend && c->held) {
			store_readings(c);
			commit_pending(c, true);
			if (c->held->n > 0) {
				/* the store still cannot write them: kept for the next start,
				 * with the engine's state as it stands (store_spill) */
				char *state = c->ae ? alert_save(c->ae) : NULL;

				store_spill(c->st, c->held->r, c->held->n,
					    state ? ALERT_STATE_KEY : NULL, state);
				free(state);
			}
		}
		queue_free(c->q, reading_free_item);
	}
	if (c->up)
		uplink_free(c->up);
	if (c->st) {
		struct store_stats s;
		if (store_stats(c->st, &s) == 0)
			log_info("stopped: last seq %" PRIu64 ", %" PRIu64 " rows not yet delivered",
				 s.last_seq, s.unsent);
		store_close(c->st);
	}
	flight_forget_all(c);
	free(c->pq.seq);
	free(c->pq.done);
	free(c->devs);
	/* commands whose writes had not answered: each job freed by its last slot */
	for (size_t i = 0; c->pw && i < MAX_PENDING_WRITES; i++)
		if (c->pw[i].tag && c->pw[i].job && --c->pw[i].job->left == 0)
			free(c->pw[i].job);
	free(c->dedup);
	free(c->devidx);
	free(c->w.up);
	free(c->w.checks);
	suspect_free(&c->sus);
	for (size_t i = 0; i < c->nalog; i++)
		free(c->alog[i].topic);
	free(c->alog);
	alert_free(c->ae);
	alert_out_free(&c->ao);
	free(c->pw);
	rowbuf_free(c->pend);
	rowbuf_free(c->held);
	if (c->wfd >= 0)
		close(c->wfd);
	pthread_mutex_destroy(&c->wmu);
	free(c->fl);
	free(c->acked);
	status_free(&c->status);
	payload_msg_free(&c->msg);
	jb_free(&c->wire);
	config_free(c->cfg);
}

int core_run(struct config *cfg)
{
	struct core c = { .cfg = cfg, .generation = 1, .wfd = -1 };
	struct uplink_events ev = { .ctx = &c, .connected = on_connected,
				    .disconnected = on_disconnected, .acked = on_acked,
				    .refused = on_refused, .message = on_message,
				    .bdseq = on_bdseq };
	struct poller_sink sink = { .ctx = &c, .emit = sink_emit, .write_done = sink_write_done };
	char err[512];
	int rc = 1;
	size_t qcap;
	bool status_ok;

	install_signals();
	for (size_t i = 0; i < DL_COUNT; i++)
		c.dl[i] = DL_NEVER;
	clock_start(&c); /* the test hook's offset, before anything is stamped */
	payload_msg_init(&c.msg);
	jb_init(&c.wire);
	c.fmt = payload_format_find(uplink_format_name(cfg->uplink.format));
	c.rowfmt = payload_format_find(PAYLOAD_FORMAT_DEFAULT);
	status_ok = status_init(&c.status, cfg->ndevices, clock_real_ms(), clock_mono_ms()) == 0;
	c.capfl = cfg->uplink.inflight;
	c.fl = calloc(c.capfl, sizeof *c.fl);
	suspect_init(&c.sus, (unsigned)c.capfl);
	c.aside_auto = true;
	qcap = cfg->ndevices * 4 < 4096 ? 4096 : cfg->ndevices * 4;
	c.q = queue_new(qcap);
	c.pw = calloc(MAX_PENDING_WRITES, sizeof *c.pw);
	c.pend = calloc(1, sizeof *c.pend);
	c.dedup = calloc(1, sizeof *c.dedup);
	c.held = calloc(1, sizeof *c.held);
	c.wfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	pthread_mutex_init(&c.wmu, NULL);
	if (!status_ok || !c.fl || !c.q || !c.pw || !c.pend || !c.held || c.wfd < 0 || !c.dedup) {
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
	wire_bdseq_start(&c);
	{
		struct store_stats s;

		/* what the store holds from before this start is history to the platform */
		if (store_stats(c.st, &s) == 0)
			c.start_seq = s.last_seq;
	}
	uplink_tick(c.up, clock_mono_ms());
	/* with the data directory's lock held: no other daemon's socket is there */
	control_start(&c);
	/* the store's number for each device, as its readings name it (again whenever the
	 * config or a device's points change: a reload, a SunSpec discovery) */
	devices_register(&c, cfg);
	uplink_set_stream(c.up, store_stream(c.st));
	web_apply(&c, NULL);
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
	status_write_snapshot(&c.status, c.cfg, c.st, false, c.store_failing);
	notify_send("READY=1");
	c.watchdog_ms = notify_watchdog_ms();
	deadlines_start(&c, c.status.start_mono);
	/* SunSpec devices get their points from a round of discovery through the pollers
	 * just started; the rules on them come alive when it is applied */
	discovery_reset(&c);

	while (!got_term) {
		if (got_hup) {
			got_hup = 0;
			reload(&c, &sink, &ev);
		}
		if (got_retry) {
			got_retry = 0;
			retry_requested(&c);
		}
		if (c.disc_over)
			discovery_apply(&c, &sink);
		if (loop_turn(&c) != 0)
			break;
	}
	notify_send("STOPPING=1");
	/* the page goes first: nothing new is asked of pollers that are stopping */
	web_close(c.web);
	c.web = NULL;
	pollers_stop(&c);
	log_info("stopping: polling stopped, delivering what is stored");
	shutdown_drain(&c);
	save_alert_state(&c);
	status_write_snapshot(&c.status, c.cfg, c.st, true, c.store_failing);
	uplink_shutdown(c.up, 1000);
	flush_acks(&c, true); /* acks that arrived while shutting down */
	rc = 0;
out:
	core_free(&c);
	return rc;
}
