/*
 * sluicectl: the operator's command line. Reads the daemon's database read-only
 * (through store, the one module that speaks SQL) while sluiced runs; never writes it.
 * Only `retry` signals the daemon (SIGUSR1: send the rows set aside again); the other
 * commands' kill(pid, 0) only asks whether it exists.
 *
 *   sluicectl [-c FILE | -D DIR] [--json] status
 *   sluicectl [-c FILE | -D DIR] [--json] [-n N] alerts
 *   sluicectl [-c FILE | -D DIR] [--json] [-n N] backlog
 *   sluicectl [-c FILE | -D DIR] [--json] [-n N] tail DEVICE
 *   sluicectl [-c FILE | -D DIR] [--json] retry
 *   sluicectl [-c FILE | -D DIR] [--json] check
 *
 * Output for people is aligned tables (textwidth: Chinese names take two columns a
 * character); --json prints one JSON object per command, for scripts. The daemon's
 * status snapshot (meta "status") is its own JSON, read back with jread.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>

#include "clock.h"
#include "codec.h"
#include "config.h"
#include "ctlclient.h"
#include "jread.h"
#include "json.h"
#include "mberr.h"
#include "payload.h"
#include "probe.h"
#include "replay.h"
#include "store.h"
#include "textwidth.h"

#define DEFAULT_CONFIG SLUICECTL_CONFIG
#define STATUS_KEY "status"
/* The daemon rewrites its snapshot every max(30 s, 10 ms a device) (daemon/status.c);
 * one not updated for three periods, and at least 2 minutes, belongs to a daemon that is
 * not running. */
#define STALE_MIN_MS (120 * 1000)
/* How far back alerts looks for the start of a firing streak. */
#define STREAK_ROWS 256

static void usage(FILE *f)
{
	fprintf(f,
		"usage: sluicectl [-c FILE | -D DIR] [--json] COMMAND (options before or after it)\n"
		"\n"
		"commands:\n"
		"  status          is sluiced running; uplink, buses, devices, backlog, drops\n"
		"  alerts          active alerts, and the recent transitions (-n N, default 10)\n"
		"  backlog         rows waiting for the broker, the age of the oldest, and the\n"
		"                  rows the broker refused, set aside (-n N of them, default 10)\n"
		"  retry           ask sluiced to send the rows set aside again\n"
		"  tail DEVICE     the device's most recent readings (-n N, default 10)\n"
		"  check           read every page of the database: ok, or what is wrong\n"
		"                  (exit 0 ok, 1 damaged, 3 it could not be checked)\n"
		"  probe ...       read a device once, now (sluicectl probe --help)\n"
		"  replay ...      run recorded readings through the alert rules\n"
		"                  (sluicectl replay --help)\n"
		"\n"
		"options:\n"
		"  -c, --config FILE    the daemon's configuration (default " DEFAULT_CONFIG ");\n"
		"                       its gateway.data_dir holds the database\n"
		"  -D, --data-dir DIR   the data directory, instead of reading a config\n"
		"  -n N                 how many readings (tail), transitions (alerts) or rows\n"
		"                       set aside (backlog)\n"
		"  -j, --json           machine-readable output: one JSON object\n");
}

/* ---- formatting ---------------------------------------------------------------- */

static void fmt_time(int64_t ms, char *buf, size_t len)
{
	time_t t = (time_t)(ms / 1000);
	struct tm tm;

	if (ms <= 0) {
		snprintf(buf, len, "-");
		return;
	}
	localtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void fmt_age(int64_t secs, char *buf, size_t len)
{
	if (secs < 0)
		secs = 0;
	if (secs < 120)
		snprintf(buf, len, "%llds", (long long)secs);
	else if (secs < 7200)
		snprintf(buf, len, "%lldm%02llds", (long long)(secs / 60), (long long)(secs % 60));
	else if (secs < 2 * 86400)
		snprintf(buf, len, "%lldh%02lldm", (long long)(secs / 3600),
			 (long long)(secs % 3600 / 60));
	else
		snprintf(buf, len, "%lldd%02lldh", (long long)(secs / 86400),
			 (long long)(secs % 86400 / 3600));
}

/* The age of a real-time ms stamp, "-" for none. */
static void fmt_since(int64_t ms, int64_t now, char *buf, size_t len)
{
	if (ms <= 0)
		snprintf(buf, len, "-");
	else
		fmt_age((now - ms) / 1000, buf, len);
}

static void fmt_bytes(uint64_t n, char *buf, size_t len)
{
	if (n < 10 * 1024 * 1024)
		snprintf(buf, len, "%.0f KiB", (double)n / 1024.0);
	else
		snprintf(buf, len, "%.1f MiB", (double)n / (1024.0 * 1024.0));
}

/* ---- tables for people ------------------------------------------------------------ */

/*
 * A table of text cells, printed with each column as wide as its widest cell in
 * terminal columns. Cells are copied and made printable: controls become spaces, bytes
 * that are not UTF-8 become U+FFFD, so a name or an error from a device cannot move the
 * cursor or break the alignment. Allocation failure is sticky, like jbuf.
 */
struct tbl {
	size_t ncols, n, cap;   /* n cells so far */
	const char *const *heads;
	unsigned right;         /* bit i: column i right-aligned */
	char **cells;
	bool oom;
};

static void tbl_init(struct tbl *t, size_t ncols, const char *const *heads, unsigned right)
{
	memset(t, 0, sizeof *t);
	t->ncols = ncols;
	t->heads = heads;
	t->right = right;
}

static char *tbl_clean(const char *s)
{
	size_t n = strlen(s), o = 0;
	char *out = malloc(n * 3 + 1); /* a bad byte (1) becomes U+FFFD (3) */

	if (!out)
		return NULL;
	for (size_t i = 0; i < n;) {
		uint32_t cp;
		size_t len = textwidth_decode(s + i, n - i, &cp);

		if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) {
			out[o++] = ' ';
		} else if (cp == 0xFFFD && len == 1) {
			memcpy(out + o, "\xEF\xBF\xBD", 3);
			o += 3;
		} else {
			memcpy(out + o, s + i, len);
			o += len;
		}
		i += len;
	}
	out[o] = '\0';
	return out;
}

static void tbl_cell(struct tbl *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void tbl_cell(struct tbl *t, const char *fmt, ...)
{
	char buf[1024], *c;
	va_list ap;

	if (t->oom)
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof buf, fmt, ap);
	va_end(ap);
	if (t->n == t->cap) {
		size_t nc = t->cap ? t->cap * 2 : 64;
		char **np = realloc(t->cells, nc * sizeof *np);
		if (!np) {
			t->oom = true;
			return;
		}
		t->cells = np;
		t->cap = nc;
	}
	if (!(c = tbl_clean(buf))) {
		t->oom = true;
		return;
	}
	t->cells[t->n++] = c;
}

static void tbl_pad(FILE *f, size_t n)
{
	while (n--)
		fputc(' ', f);
}

static void tbl_row(const struct tbl *t, FILE *f, const char *const *row, const size_t *w,
		    size_t indent)
{
	size_t pending = indent; /* blanks owed before the next text: none at line end */

	for (size_t c = 0; c < t->ncols; c++) {
		size_t cw = textwidth_str(row[c]);
		bool right = t->right & (1u << c);

		if (right)
			pending += w[c] - cw;
		if (row[c][0]) {
			tbl_pad(f, pending);
			fputs(row[c], f);
			pending = 0;
		}
		pending += (right ? 0 : w[c] - cw) + 2;
	}
	fputc('\n', f);
}

static int tbl_print(struct tbl *t, FILE *f, size_t indent)
{
	size_t w[32] = { 0 };

	if (t->oom || t->ncols > 32) {
		fprintf(stderr, "sluicectl: out of memory\n");
		return -1;
	}
	for (size_t c = 0; c < t->ncols; c++)
		w[c] = textwidth_str(t->heads[c]);
	for (size_t i = 0; i + t->ncols <= t->n; i += t->ncols)
		for (size_t c = 0; c < t->ncols; c++) {
			size_t cw = textwidth_str(t->cells[i + c]);
			if (cw > w[c])
				w[c] = cw;
		}
	tbl_row(t, f, t->heads, w, indent);
	for (size_t i = 0; i + t->ncols <= t->n; i += t->ncols)
		tbl_row(t, f, (const char *const *)t->cells + i, w, indent);
	return 0;
}

static void tbl_free(struct tbl *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof *t);
}

/* ---- JSON out ----------------------------------------------------------------- */

static int json_print(struct jbuf *b)
{
	int rc = 0;

	if (b->oom) {
		fprintf(stderr, "sluicectl: out of memory\n");
		rc = 1;
	} else {
		fputs(jb_cstr_get(b), stdout);
		fputc('\n', stdout);
	}
	jb_free(b);
	return rc;
}

/* A member copied from a parsed object, when it is there. */
static void json_copy(struct jbuf *b, const struct jval *obj, const char *key, bool *first)
{
	const struct jval *v = jread_get(obj, key);

	if (!v)
		return;
	jb_key(b, key, first);
	jread_emit(b, v);
}

/* ---- reading the store ------------------------------------------------------------- */

/*
 * An outbox row as sluiced publishes it (the default format): its relative topic into
 * topic, its payload into out. A transition is its stored text in the envelope; a
 * reading is built from its values and its device as stored. -1 (said) when the row
 * cannot be read back.
 */
static int row_message(struct store *st, const struct store_row *r, struct jbuf *out,
		       char *topic, size_t tlen)
{
	const struct payload_format *fmt = payload_format_find(PAYLOAD_FORMAT_DEFAULT);
	const struct device_cfg *d;
	struct payload_msg m;
	struct reading *rd;
	int rc;

	if (!r->dev) {
		snprintf(topic, tlen, "%s", r->topic);
		return fmt->envelope(out, r->seq, r->body);
	}
	snprintf(topic, tlen, "telemetry/?");
	d = store_device(st, r->dev);
	rd = d ? store_row_reading(r) : NULL;
	if (!rd) {
		fprintf(stderr, "sluicectl: reading %" PRIu64 " cannot be read back: %s\n", r->seq,
			d ? "its values are damaged" : store_error(st));
		return -1;
	}
	payload_msg_init(&m);
	rc = fmt->reading(&m, d, rd);
	reading_free(rd);
	if (rc == 0)
		rc = fmt->envelope(out, r->seq, jb_cstr_get(&m.body));
	snprintf(topic, tlen, "%s", m.topic);
	payload_msg_free(&m);
	return rc;
}

/* An outbox row's payload as an object, as it is published. NULL (and a warning) when
 * the row is damaged. */
static struct jval *row_payload(struct store *st, const struct store_row *r)
{
	char topic[PAYLOAD_TOPIC_MAX], err[128];
	struct jbuf b;
	struct jval *v = NULL;

	jb_init(&b);
	if (row_message(st, r, &b, topic, sizeof topic) == 0 && !b.oom) {
		v = jread_parse(b.p, b.len, err, sizeof err);
		if (!v)
			fprintf(stderr, "sluicectl: row %" PRIu64 " (%s) is damaged: %s\n", r->seq,
				topic, err);
	}
	jb_free(&b);
	return v;
}

static void rows_free(struct store_row *rows, long n)
{
	for (long i = 0; i < n; i++)
		store_row_clear(&rows[i]);
	free(rows);
}

/*
 * The daemon's status snapshot. 0 with *snap set; 1 when there is none (the daemon
 * never got as far as writing one), with the message printed; -1 on error (printed).
 */
static int load_snapshot(struct store *st, const char *data_dir, struct jval **snap)
{
	char *text = NULL, err[128];

	*snap = NULL;
	if (store_meta_get(st, STATUS_KEY, &text) < 0) {
		fprintf(stderr, "sluicectl: %s\n", store_error(st));
		return -1;
	}
	if (!text) {
		fprintf(stderr,
			"sluicectl: sluiced has not run with %s yet: the database holds no status "
			"(a sluiced that is just starting writes it within seconds)\n", data_dir);
		return 1;
	}
	*snap = jread_parse(text, strlen(text), err, sizeof err);
	free(text);
	if (!*snap || (*snap)->type != J_OBJ) {
		fprintf(stderr, "sluicectl: the status in the database is damaged: %s\n",
			*snap ? "not an object" : err);
		jread_free(*snap);
		*snap = NULL;
		return -1;
	}
	return 0;
}

enum life { LIFE_RUNNING, LIFE_STOPPED, LIFE_GONE, LIFE_STALE };
static const char *const life_names[] = { "running", "stopped", "gone", "stale" };

/* Is the daemon that wrote snap still running? */
static enum life daemon_life(const struct jval *snap, int64_t now)
{
	int64_t pid = jread_i64(snap, "pid", 0), updated = jread_i64(snap, "updated", 0);
	const struct jval *devs = jread_get(snap, "devices");
	int64_t ndev = devs && devs->type == J_ARR ? (int64_t)devs->n : 0;
	int64_t every = ndev * 10 < 30000 ? 30000 : ndev * 10;
	int64_t stale = 3 * every < STALE_MIN_MS ? STALE_MIN_MS : 3 * every;

	if (!jread_bool(snap, "running", false))
		return LIFE_STOPPED;
	/* EPERM: it exists, as another user (sluicectl run by an operator) */
	if (pid <= 0 || (kill((pid_t)pid, 0) < 0 && errno == ESRCH))
		return LIFE_GONE;
	if (now - updated > stale)
		return LIFE_STALE;
	return LIFE_RUNNING;
}

/* The newest row of each alert check, and how many of them are firing. */
struct latest {
	struct store_row *rows;
	struct jval **pl;   /* payloads, NULL for a damaged row */
	long n;
};

static int latest_load(struct store *st, const char *prefix, struct latest *l)
{
	memset(l, 0, sizeof *l);
	l->n = store_latest(st, prefix, &l->rows);
	if (l->n < 0) {
		fprintf(stderr, "sluicectl: %s\n", store_error(st));
		return -1;
	}
	l->pl = calloc((size_t)l->n + 1, sizeof *l->pl);
	if (!l->pl) {
		fprintf(stderr, "sluicectl: out of memory\n");
		rows_free(l->rows, l->n);
		l->n = 0;
		return -1;
	}
	for (long i = 0; i < l->n; i++)
		l->pl[i] = row_payload(st, &l->rows[i]);
	return 0;
}

static void latest_free(struct latest *l)
{
	for (long i = 0; i < l->n; i++)
		jread_free(l->pl[i]);
	free(l->pl);
	rows_free(l->rows, l->n);
	memset(l, 0, sizeof *l);
}

static bool is_firing(const struct jval *pl)
{
	const char *s = jread_str(pl, "state");
	return s && strcmp(s, "firing") == 0;
}

/* ---- status ----------------------------------------------------------------- */

/* The latest device/<id> row's payload and time, for "state since". */
static const struct jval *device_row(const struct latest *dl, const char *id, int64_t *ts)
{
	for (long i = 0; i < dl->n; i++) {
		const char *t = dl->rows[i].topic;
		if (strncmp(t, "device/", 7) == 0 && strcmp(t + 7, id) == 0 && dl->pl[i]) {
			*ts = dl->rows[i].ts_ms;
			return dl->pl[i];
		}
	}
	*ts = 0;
	return NULL;
}

/* When the device entered the state the snapshot shows (0: unknown). */
static int64_t device_since(const struct latest *dl, const struct jval *dev)
{
	const char *id = jread_str(dev, "id"), *state = jread_str(dev, "state"), *rs;
	const struct jval *row;
	int64_t ts;

	if (!id || !state || !(row = device_row(dl, id, &ts)))
		return 0;
	rs = jread_str(row, "state");
	return rs && strcmp(rs, state) == 0 ? ts : 0;
}

static void status_json(const struct jval *snap, enum life life, bool live,
			const struct store_stats *s, const struct latest *dl, long firing,
			int64_t now)
{
	const struct jval *devs = jread_get(snap, "devices"), *up = jread_get(snap, "uplink");
	int64_t started = jread_i64(snap, "started", 0), updated = jread_i64(snap, "updated", 0);
	struct jbuf b;
	bool first = true;

	jb_init(&b);
	jb_cstr(&b, "{");
	json_copy(&b, snap, "gateway", &first);
	json_copy(&b, snap, "version", &first);
	json_copy(&b, snap, "pid", &first);
	jb_key(&b, "running", &first);
	jb_bool(&b, life == LIFE_RUNNING);
	/* running, or why not: stopped cleanly, gone (the pid no longer exists), stale
	 * (the pid exists but the status is not being updated) */
	jb_key(&b, "state", &first);
	jb_str(&b, life_names[life]);
	/* where it comes from: the running sluiced, asked now, or the status it stored */
	jb_key(&b, "source", &first);
	jb_str(&b, live ? "sluiced" : "stored");
	json_copy(&b, snap, "started", &first);
	json_copy(&b, snap, "updated", &first);
	jb_key(&b, "uptime_s", &first);
	jb_i64(&b, ((life == LIFE_RUNNING ? now : updated) - started) / 1000);
	if (up) {
		jb_key(&b, "uplink", &first);
		jread_emit(&b, up);
	}
	json_copy(&b, snap, "buses", &first);
	jb_key(&b, "devices", &first);
	jb_cstr(&b, "[");
	for (size_t i = 0, k = 0; devs && devs->type == J_ARR && i < devs->n; i++) {
		const struct jval *d = devs->items[i];
		int64_t since = device_since(dl, d);
		bool f2 = true;

		if (d->type != J_OBJ)
			continue;
		jb_cstr(&b, k++ ? ",{" : "{");
		for (size_t k = 0; k < d->n; k++) {
			jb_key(&b, d->keys[k], &f2);
			jread_emit(&b, d->items[k]);
		}
		/* when it entered its state, from its device/<id> transitions */
		jb_key(&b, "since", &f2);
		if (since)
			jb_i64(&b, since);
		else
			jb_cstr(&b, "null");
		jb_cstr(&b, "}");
	}
	jb_cstr(&b, "]");
	jb_key(&b, "backlog_rows", &first);
	jb_u64(&b, s->unsent);
	jb_key(&b, "backlog_age_s", &first);
	jb_i64(&b, s->oldest_unsent_ms ? (now - s->oldest_unsent_ms) / 1000 : 0);
	jb_key(&b, "oldest_unsent_ts", &first);
	jb_i64(&b, s->oldest_unsent_ms);
	jb_key(&b, "dropped", &first);
	jb_u64(&b, s->dropped);
	jb_key(&b, "set_aside_rows", &first);
	jb_u64(&b, s->aside);
	jb_key(&b, "alerts_firing", &first);
	jb_i64(&b, firing);
	jb_key(&b, "rows", &first);
	jb_u64(&b, s->rows);
	jb_key(&b, "last_seq", &first);
	jb_u64(&b, s->last_seq);
	jb_key(&b, "skipped_seqs", &first);
	jb_u64(&b, s->skipped);
	jb_key(&b, "stream", &first);
	jb_str(&b, s->stream);
	jb_key(&b, "db_bytes", &first);
	jb_u64(&b, s->db_bytes);
	jb_cstr(&b, "}");
	json_print(&b);
}

/*
 * The uplink line. While sluiced runs, its state and how long it has held; once it is not
 * running, the state it was last seen in, with the time it ended there: a "connected
 * since" of a stopped daemon would keep growing although nothing is connected.
 */
static void show_uplink(const struct jval *up, enum life life, int64_t now, int64_t updated)
{
	int64_t since = jread_i64(up, "since", 0);
	const char *err = jread_str(up, "error"), *host = jread_str(up, "host");
	bool connected = jread_bool(up, "connected", false);
	char when[32], age[32], end[32];

	fmt_time(since, when, sizeof when);
	fmt_time(updated, end, sizeof end);
	printf("uplink    %s:%" PRId64 " ", host ? host : "?", jread_i64(up, "port", 0));
	if (life == LIFE_RUNNING) {
		fmt_since(since, now, age, sizeof age);
		if (connected)
			printf("connected since %s (%s)", when, age);
		else if (since)
			printf("disconnected since %s (%s)", when, age);
		else
			printf("not connected yet");
	} else {
		/* stopped: it says when; gone or stale: only when it was last seen */
		const char *until = life == LIFE_STOPPED ? "until sluiced stopped at"
							 : "and still when last seen at";

		fmt_since(since, updated, age, sizeof age);
		if (since && updated >= since)
			printf("was %s from %s %s %s (%s)", connected ? "connected" : "disconnected",
			       when, until, end, age);
		else if (connected)
			printf("was connected when last seen at %s", end);
		else
			printf("had not connected %s %s", life == LIFE_STOPPED ? "when sluiced stopped at"
									 : "when last seen at", end);
	}
	if (!connected && err)
		printf(": %s", err);
	printf("\n");
}

/*
 * A refused address that may be a manual's 3xxxx/4xxxx number: under the table, for
 * point (of device in cfg), the hint that names the wire address to try, after header
 * when *said is still false. No config (-D): nothing to look the point up in.
 */
static void point_address_hint(const struct config *cfg, const char *device, const char *point,
			       const char *header, bool *said)
{
	const struct device_cfg *d;
	const struct point_def *p;
	char hint[200];
	long di, pi;

	if (!cfg || (di = config_find_device(cfg, device)) < 0)
		return;
	d = &cfg->devices[di];
	if ((pi = config_find_point(d, point)) < 0)
		return;
	p = &d->points[pi];
	if (!mb_numbered_hint(hint, sizeof hint, MBE_EXC_BASE + 2, (int)p->table, p->address,
			      MB_HINT_CONFIG))
		return;
	if (!*said)
		printf("%s", header);
	*said = true;
	printf("  %s (%s %u): %s\n", p->name, codec_table_name(p->table), p->address, hint);
}

/* A device whose last error is a refused address: the hints for its 3xxxx/4xxxx points. */
static void device_address_hints(const struct config *cfg, const char *device, const char *err)
{
	char header[200];
	bool said = false;
	long di;

	if (!cfg || !err || strcmp(err, mb_strerror(MBE_EXC_BASE + 2)) != 0 ||
	    (di = config_find_device(cfg, device)) < 0)
		return;
	snprintf(header, sizeof header, "\n%s: %s; its points at 3xxxx/4xxxx addresses "
		 "(sluicectl tail %s shows which failed):\n", device, err, device);
	for (size_t i = 0; i < cfg->devices[di].npoints; i++)
		point_address_hint(cfg, device, cfg->devices[di].points[i].name, header, &said);
}

static int status_people(const struct jval *snap, enum life life, bool live, const char *why,
			 const struct store_stats *s, const struct latest *dl, long firing,
			 int64_t now, const struct config *cfg)
{
	static const char *const bus_heads[] = { "BUS", "KIND", "ADDRESS" };
	static const char *const dev_heads[] = { "DEVICE", "NAME", "BUS", "STATE", "SINCE",
						 "LAST POLL", "LAST OK", "POLLS OK", "FAILED",
						 "LAST ERROR" };
	const struct jval *buses = jread_get(snap, "buses"), *devs = jread_get(snap, "devices");
	const struct jval *up = jread_get(snap, "uplink");
	int64_t started = jread_i64(snap, "started", 0), updated = jread_i64(snap, "updated", 0);
	int64_t pid = jread_i64(snap, "pid", 0);
	const char *gw = jread_str(snap, "gateway"), *ver = jread_str(snap, "version");
	char t1[32], t2[32], a1[32];
	struct tbl t;
	int rc = 0;

	printf("gateway   %s (sluiced %s)\n", gw ? gw : "?", ver ? ver : "?");
	fmt_time(started, t1, sizeof t1);
	fmt_time(updated, t2, sizeof t2);
	switch (life) {
	case LIFE_RUNNING:
		fmt_age((now - started) / 1000, a1, sizeof a1);
		printf("sluiced   running, pid %" PRId64 ", up %s (since %s)\n", pid, a1, t1);
		if (!live) {
			/* asked nothing: what it stored a few seconds ago, and why */
			fmt_since(updated, now, a1, sizeof a1);
			printf("          (as it stored it %s ago%s%s)\n", a1, why[0] ? ": " : "",
			       why);
		}
		break;
	case LIFE_STOPPED:
		fmt_age((updated - started) / 1000, a1, sizeof a1);
		printf("sluiced   not running: stopped at %s, after %s\n", t2, a1);
		break;
	case LIFE_GONE:
		fmt_since(updated, now, a1, sizeof a1);
		printf("sluiced   not running: pid %" PRId64 " is gone, last seen at %s (%s ago); "
		       "it did not stop cleanly\n", pid, t2, a1);
		break;
	case LIFE_STALE:
		fmt_since(updated, now, a1, sizeof a1);
		printf("sluiced   not running: no status since %s (%s ago), though pid %" PRId64
		       " exists: stuck, or another process now has its pid\n", t2, a1, pid);
		break;
	}
	if (up)
		show_uplink(up, life, now, updated);
	printf("backlog   %" PRIu64 " rows", s->unsent);
	if (s->unsent) {
		fmt_time(s->oldest_unsent_ms, t1, sizeof t1);
		fmt_since(s->oldest_unsent_ms, now, a1, sizeof a1);
		printf(", the oldest from %s (%s ago)", t1, a1);
	}
	printf("\n");
	printf("dropped   %" PRIu64 "%s\n", s->dropped,
	       s->dropped ? " undelivered readings (buffer.max_size was reached)" : "");
	if (s->aside)
		printf("set aside %" PRIu64 " rows the broker refused (sluicectl backlog, sluicectl "
		       "retry)\n", s->aside);
	printf("alerts    %ld firing%s\n", firing, firing ? " (sluicectl alerts)" : "");
	fmt_bytes(s->db_bytes, t1, sizeof t1);
	printf("database  %s, %" PRIu64 " rows, last seq %" PRIu64 " (stream %s)\n", t1, s->rows,
	       s->last_seq, s->stream[0] ? s->stream : "-");
	if (s->skipped)
		printf("skipped   %" PRIu64 " seqs passed over at starts after a crash or a power"
		       " cut (sluicectl backlog)\n", s->skipped);

	printf("\n");
	tbl_init(&t, 3, bus_heads, 0);
	for (size_t i = 0; buses && buses->type == J_ARR && i < buses->n; i++) {
		const struct jval *bv = buses->items[i];
		const char *id = jread_str(bv, "id"), *kind = jread_str(bv, "kind");
		const char *addr = jread_str(bv, "address");

		tbl_cell(&t, "%s", id ? id : "?");
		tbl_cell(&t, "%s", kind ? kind : "?");
		tbl_cell(&t, "%s", addr ? addr : "?");
	}
	rc |= tbl_print(&t, stdout, 0);
	tbl_free(&t);

	printf("\n");
	if (life != LIFE_RUNNING)
		printf("as last seen at %s:\n", t2);
	tbl_init(&t, 10, dev_heads, 1u << 7 | 1u << 8);
	for (size_t i = 0; devs && devs->type == J_ARR && i < devs->n; i++) {
		const struct jval *d = devs->items[i];
		const char *id = jread_str(d, "id"), *name = jread_str(d, "name");
		const char *bus = jread_str(d, "bus"), *state = jread_str(d, "state");
		const char *err = jread_str(d, "last_error");
		int64_t since = device_since(dl, d), ref = life == LIFE_RUNNING ? now : updated;
		char s1[32], s2[32], s3[32];

		fmt_since(since, ref, s1, sizeof s1);
		fmt_since(jread_i64(d, "last_poll", 0), ref, s2, sizeof s2);
		fmt_since(jread_i64(d, "last_ok", 0), ref, s3, sizeof s3);
		tbl_cell(&t, "%s", id ? id : "?");
		tbl_cell(&t, "%s", name ? name : "");
		tbl_cell(&t, "%s", bus ? bus : "?");
		tbl_cell(&t, "%s", state ? state : "?");
		tbl_cell(&t, "%s", s1);
		tbl_cell(&t, "%s%s", s2, strcmp(s2, "-") ? " ago" : "");
		tbl_cell(&t, "%s%s", s3, strcmp(s3, "-") ? " ago" : "");
		tbl_cell(&t, "%" PRId64, jread_i64(d, "polls_ok", 0));
		tbl_cell(&t, "%" PRId64, jread_i64(d, "polls_failed", 0));
		tbl_cell(&t, "%s", err ? err : "");
	}
	rc |= tbl_print(&t, stdout, 0);
	tbl_free(&t);
	for (size_t i = 0; devs && devs->type == J_ARR && i < devs->n; i++) {
		const char *id = jread_str(devs->items[i], "id");
		if (id)
			device_address_hints(cfg, id, jread_str(devs->items[i], "last_error"));
	}
	return rc ? 1 : 0;
}

/*
 * The running sluiced's status, asked over its control socket: the same content as the
 * snapshot it stores, but as it is now (the stored one is rewritten every few seconds, to
 * spare the SD card). NULL when no daemon answers for data_dir; *why then says why, when
 * one may be running but could not be asked.
 */
static struct jval *live_status(const char *data_dir, char *why, size_t whylen)
{
	struct ctlclient *c;
	struct jval *v = NULL;
	const struct jval *s;

	why[0] = '\0';
	switch (ctlclient_open(data_dir, &c, why, whylen)) {
	case CTL_FOUND:
		v = ctlclient_call(c, "{\"v\":1,\"op\":\"status\"}", CTLCLIENT_TIMEOUT_MS, why,
				   whylen);
		ctlclient_close(c);
		s = jread_get(v, "status");
		if (v && (!jread_bool(v, "ok", false) || !s || s->type != J_OBJ)) {
			snprintf(why, whylen, "sluiced: %s", jread_str(v, "message")
								     ? jread_str(v, "message")
								     : "no status in its answer");
			jread_free(v);
			v = NULL;
		}
		return v;
	case CTL_NONE:
		why[0] = '\0'; /* not running: the stored status says when it stopped */
		return NULL;
	default:
		return NULL;
	}
}

static int cmd_status(struct store *st, const char *data_dir, int json,
		      const struct config *cfg)
{
	struct store_stats s;
	struct jval *snap = NULL, *live;
	const struct jval *cur;
	struct latest al, dl;
	enum life life;
	long firing = 0;
	int64_t now = clock_real_ms();
	char why[400];
	int rc;

	live = live_status(data_dir, why, sizeof why);
	if (!live && load_snapshot(st, data_dir, &snap) != 0)
		return 1;
	cur = live ? jread_get(live, "status") : snap;
	if (store_stats(st, &s) != 0) {
		fprintf(stderr, "sluicectl: %s\n", store_error(st));
		jread_free(snap);
		jread_free(live);
		return 1;
	}
	if (latest_load(st, "alert/", &al) < 0) {
		jread_free(snap);
		jread_free(live);
		return 1;
	}
	if (latest_load(st, "device/", &dl) < 0) {
		latest_free(&al);
		jread_free(snap);
		jread_free(live);
		return 1;
	}
	for (long i = 0; i < al.n; i++)
		firing += al.pl[i] && is_firing(al.pl[i]);
	life = live ? LIFE_RUNNING : daemon_life(cur, now);
	rc = 0;
	if (json)
		status_json(cur, life, live != NULL, &s, &dl, firing, now);
	else
		rc = status_people(cur, life, live != NULL, why, &s, &dl, firing, now, cfg);
	latest_free(&al);
	latest_free(&dl);
	jread_free(snap);
	jread_free(live);
	return rc;
}

/* ---- backlog ------------------------------------------------------------------ */

/* The message's size as sluiced publishes it, and its topic (in topic). */
static size_t published_bytes(struct store *st, const struct store_row *r, char *topic,
			      size_t tlen)
{
	struct jbuf b;
	size_t n;

	jb_init(&b);
	n = row_message(st, r, &b, topic, tlen) == 0 ? b.len : r->nvals;
	jb_free(&b);
	return n;
}

static int cmd_backlog(struct store *st, long n, int json)
{
	static const char *const heads[] = { "SEQ", "TIME", "TOPIC", "BYTES", "SET ASIDE",
					     "WHY" };
	struct store_stats s;
	struct store_aside *aside;
	int64_t now = clock_real_ms(), age_s;
	char when[32], age[32];
	long na;
	int rc = 0;

	if (store_stats(st, &s) != 0) {
		fprintf(stderr, "sluicectl: %s\n", store_error(st));
		return 1;
	}
	aside = calloc((size_t)n, sizeof *aside);
	if (!aside) {
		fprintf(stderr, "sluicectl: out of memory\n");
		return 1;
	}
	na = store_aside_list(st, (size_t)n, aside);
	if (na < 0) {
		fprintf(stderr, "sluicectl: %s\n", store_error(st));
		free(aside);
		return 1;
	}
	age_s = s.oldest_unsent_ms ? (now - s.oldest_unsent_ms) / 1000 : 0;
	if (json) {
		struct jbuf b;
		bool first = true;

		jb_init(&b);
		jb_cstr(&b, "{");
		jb_key(&b, "backlog_rows", &first);
		jb_u64(&b, s.unsent);
		jb_key(&b, "backlog_age_s", &first);
		jb_i64(&b, age_s);
		jb_key(&b, "oldest_unsent_ts", &first);
		jb_i64(&b, s.oldest_unsent_ms);
		jb_key(&b, "dropped", &first);
		jb_u64(&b, s.dropped);
		jb_key(&b, "set_aside_rows", &first);
		jb_u64(&b, s.aside);
		/* the first n of them */
		jb_key(&b, "set_aside", &first);
		jb_cstr(&b, "[");
		for (long i = 0; i < na; i++) {
			const struct store_aside *a = &aside[i];
			char topic[PAYLOAD_TOPIC_MAX];
			size_t bytes = published_bytes(st, &a->row, topic, sizeof topic);
			bool f2 = true;

			jb_cstr(&b, i ? ",{" : "{");
			jb_key(&b, "seq", &f2);
			jb_u64(&b, a->row.seq);
			jb_key(&b, "ts", &f2);
			jb_i64(&b, a->row.ts_ms);
			jb_key(&b, "topic", &f2);
			jb_str(&b, topic);
			jb_key(&b, "bytes", &f2);
			jb_u64(&b, bytes);
			jb_key(&b, "since", &f2);
			jb_i64(&b, a->since_ms);
			jb_key(&b, "reason", &f2);
			jb_str(&b, a->reason);
			/* a state transition a newer one replaced: never sent again */
			jb_key(&b, "superseded", &f2);
			jb_bool(&b, a->superseded);
			jb_cstr(&b, "}");
		}
		jb_cstr(&b, "]");
		jb_key(&b, "last_seq", &first);
		jb_u64(&b, s.last_seq);
		jb_key(&b, "skipped_seqs", &first);
		jb_u64(&b, s.skipped);
		jb_key(&b, "stream", &first);
		jb_str(&b, s.stream);
		jb_key(&b, "rows", &first);
		jb_u64(&b, s.rows);
		jb_key(&b, "db_bytes", &first);
		jb_u64(&b, s.db_bytes);
		jb_cstr(&b, "}");
		rc = json_print(&b);
		goto out;
	}
	fmt_time(s.oldest_unsent_ms, when, sizeof when);
	fmt_age(age_s, age, sizeof age);
	printf("backlog   %" PRIu64 " rows waiting for the broker\n", s.unsent);
	if (s.unsent)
		printf("oldest    %s (%s ago)\n", when, age);
	printf("dropped   %" PRIu64 "\n", s.dropped);
	printf("set aside %" PRIu64 " rows the broker refused%s\n", s.aside,
	       s.aside ? ": tried again once per connection, and by sluicectl retry" : "");
	printf("skipped   %" PRIu64 " seqs%s\n", s.skipped, s.skipped ? ", passed over at starts"
	       " after a crash or a power cut: never sent again (docs/mqtt.md)" : "");
	printf("last seq  %" PRIu64 ", stream %s\n", s.last_seq, s.stream[0] ? s.stream : "-");
	fmt_bytes(s.db_bytes, when, sizeof when);
	printf("database  %s, %" PRIu64 " rows (delivered ones kept for buffer.keep_sent)\n", when,
	       s.rows);
	if (na > 0) {
		struct tbl t;

		printf("\n");
		if ((uint64_t)na < s.aside)
			printf("the first %ld of the rows set aside (-n for more):\n", na);
		tbl_init(&t, 6, heads, 1u << 0 | 1u << 3);
		for (long i = 0; i < na; i++) {
			const struct store_aside *a = &aside[i];
			char since[32], topic[PAYLOAD_TOPIC_MAX];
			size_t bytes = published_bytes(st, &a->row, topic, sizeof topic);

			fmt_time(a->row.ts_ms, when, sizeof when);
			fmt_since(a->since_ms, now, since, sizeof since);
			tbl_cell(&t, "%" PRIu64, a->row.seq);
			tbl_cell(&t, "%s", when);
			tbl_cell(&t, "%s", topic);
			tbl_cell(&t, "%zu", bytes);
			tbl_cell(&t, "%s ago", since);
			tbl_cell(&t, "%s%s", a->reason,
				 a->superseded ? " (a newer state was sent: not sent again)" : "");
		}
		rc = tbl_print(&t, stdout, 0) ? 1 : 0;
		tbl_free(&t);
	}
out:
	for (long i = 0; i < na; i++)
		store_aside_clear(&aside[i]);
	free(aside);
	return rc;
}

/* ---- retry -------------------------------------------------------------------- */

/* Ask the running daemon to send the rows set aside again (SIGUSR1). */
static int cmd_retry(struct store *st, const char *data_dir, int json)
{
	struct store_stats s;
	struct jval *snap;
	int64_t pid;
	enum life life;
	int rc;

	if ((rc = load_snapshot(st, data_dir, &snap)) != 0)
		return 1;
	if (store_stats(st, &s) != 0) {
		fprintf(stderr, "sluicectl: %s\n", store_error(st));
		jread_free(snap);
		return 1;
	}
	pid = jread_i64(snap, "pid", 0);
	life = daemon_life(snap, clock_real_ms());
	jread_free(snap);
	if (life != LIFE_RUNNING) {
		fprintf(stderr, "sluicectl: sluiced is not running (%s): the %" PRIu64 " rows set "
			"aside are sent again at its next connection\n", life_names[life], s.aside);
		return 1;
	}
	if (kill((pid_t)pid, SIGUSR1) < 0) {
		fprintf(stderr, "sluicectl: cannot signal sluiced (pid %" PRId64 "): %s%s\n", pid,
			strerror(errno), errno == EPERM ? ": run this as root, or as the user "
			"sluiced runs as" : "");
		return 1;
	}
	if (json) {
		struct jbuf b;
		bool first = true;

		jb_init(&b);
		jb_cstr(&b, "{");
		jb_key(&b, "asked", &first);
		jb_bool(&b, true);
		jb_key(&b, "pid", &first);
		jb_i64(&b, pid);
		jb_key(&b, "set_aside_rows", &first);
		jb_u64(&b, s.aside);
		jb_cstr(&b, "}");
		return json_print(&b);
	}
	printf("asked sluiced (pid %" PRId64 ") to send the %" PRIu64 " rows set aside again; "
	       "sluicectl backlog shows what is left\n", pid, s.aside);
	return 0;
}

/* ---- alerts ------------------------------------------------------------------ */

/* "0.42 m", "3", "-" */
static void fmt_value(const struct jval *pl, char *buf, size_t len)
{
	const struct jval *v = jread_get(pl, "value");
	const char *unit = jread_str(pl, "unit");

	if (!v || v->type == J_NULL)
		snprintf(buf, len, "-");
	else if (v->type == J_NUM)
		snprintf(buf, len, "%.*g%s%s", 6, v->num, unit ? " " : "", unit ? unit : "");
	else if (v->type == J_BOOL)
		snprintf(buf, len, "%s", v->b ? "true" : "false");
	else
		snprintf(buf, len, "?");
}

/* When the check's current firing streak began: the oldest row of its topic in the
 * run of firing rows that ends with the newest. */
static int64_t firing_since(struct store *st, const struct store_row *latest)
{
	struct store_row *rows = calloc(STREAK_ROWS, sizeof *rows);
	int64_t since = latest->ts_ms;
	long n;

	if (!rows)
		return since;
	n = store_recent(st, latest->topic, STREAK_ROWS, rows);
	for (long i = 0; i < n; i++) {
		struct jval *pl = row_payload(st, &rows[i]);
		bool firing = pl && is_firing(pl);

		jread_free(pl);
		if (!firing)
			break;
		since = rows[i].ts_ms;
	}
	rows_free(rows, n > 0 ? n : 0);
	return since;
}

static int cmd_alerts(struct store *st, long n, int json)
{
	static const char *const act_heads[] = { "SEVERITY", "ALERT", "SINCE", "FOR", "VALUE",
						 "MESSAGE" };
	static const char *const rec_heads[] = { "TIME", "ALERT", "STATE", "SEVERITY", "VALUE",
						 "MESSAGE" };
	struct store_row *rec;
	struct latest al;
	struct jbuf b;
	struct tbl t;
	int64_t now = clock_real_ms();
	long got, nact = 0;
	bool first = true;
	int rc = 0;

	if (latest_load(st, "alert/", &al) < 0)
		return 1;
	rec = calloc((size_t)n, sizeof *rec);
	if (!rec) {
		latest_free(&al);
		fprintf(stderr, "sluicectl: out of memory\n");
		return 1;
	}
	got = store_recent_prefix(st, "alert/", (size_t)n, rec);
	if (got < 0) {
		fprintf(stderr, "sluicectl: %s\n", store_error(st));
		free(rec);
		latest_free(&al);
		return 1;
	}

	jb_init(&b);
	jb_cstr(&b, "{");
	jb_key(&b, "active", &first);
	jb_cstr(&b, "[");
	tbl_init(&t, 6, act_heads, 0);
	for (long i = 0; i < al.n; i++) {
		const struct jval *pl = al.pl[i];
		const char *rule = jread_str(pl, "rule"), *check = jread_str(pl, "check");
		const char *sev = jread_str(pl, "severity"), *msg = jread_str(pl, "message");
		int64_t since;
		char when[32], age[32], val[64];
		bool f2 = true;

		if (!pl || !is_firing(pl))
			continue;
		since = firing_since(st, &al.rows[i]);
		if (json) {
			jb_cstr(&b, nact ? ",{" : "{");
			jb_key(&b, "alert", &f2);
			jb_str(&b, al.rows[i].topic + 6);
			/* since: the first firing of this streak; ts: the latest transition
			 * (a change of severity) */
			jb_key(&b, "since", &f2);
			jb_i64(&b, since);
			for (size_t k = 0; k < pl->n; k++) {
				jb_key(&b, pl->keys[k], &f2);
				jread_emit(&b, pl->items[k]);
			}
			jb_cstr(&b, "}");
		} else {
			fmt_time(since, when, sizeof when);
			fmt_since(since, now, age, sizeof age);
			fmt_value(pl, val, sizeof val);
			tbl_cell(&t, "%s", sev ? sev : "?");
			tbl_cell(&t, "%s/%s", rule ? rule : "?", check ? check : "?");
			tbl_cell(&t, "%s", when);
			tbl_cell(&t, "%s", age);
			tbl_cell(&t, "%s", val);
			tbl_cell(&t, "%s", msg ? msg : "");
		}
		nact++;
	}
	jb_cstr(&b, "]");
	if (!json) {
		printf("active alerts: %ld\n", nact);
		if (nact)
			rc |= tbl_print(&t, stdout, 2);
	}
	tbl_free(&t);

	jb_key(&b, "recent", &first);
	jb_cstr(&b, "[");
	tbl_init(&t, 6, rec_heads, 0);
	/* oldest first, like a log */
	for (long i = got - 1, k = 0; i >= 0; i--) {
		struct jval *pl = row_payload(st, &rec[i]);
		const char *rule = jread_str(pl, "rule"), *check = jread_str(pl, "check");
		const char *sev = jread_str(pl, "severity"), *msg = jread_str(pl, "message");
		const char *state = jread_str(pl, "state");
		char when[32], val[64];

		if (!pl)
			continue;
		if (json) {
			if (k++)
				jb_cstr(&b, ",");
			jread_emit(&b, pl);
		} else {
			fmt_time(rec[i].ts_ms, when, sizeof when);
			fmt_value(pl, val, sizeof val);
			tbl_cell(&t, "%s", when);
			tbl_cell(&t, "%s/%s", rule ? rule : "?", check ? check : "?");
			tbl_cell(&t, "%s", state ? state : "?");
			tbl_cell(&t, "%s", sev ? sev : "?");
			tbl_cell(&t, "%s", val);
			tbl_cell(&t, "%s", msg ? msg : "");
		}
		jread_free(pl);
	}
	jb_cstr(&b, "]}");
	if (json) {
		rc |= json_print(&b);
	} else {
		jb_free(&b);
		printf("\nrecent transitions: %ld%s\n", got, got == n ? " (more with -n)" : "");
		if (got)
			rc |= tbl_print(&t, stdout, 2);
	}
	tbl_free(&t);
	rows_free(rec, got);
	latest_free(&al);
	return rc ? 1 : 0;
}

/* ---- tail --------------------------------------------------------------------- */

/* Is the device in the snapshot? -1: no snapshot to ask. */
static int snapshot_has_device(struct store *st, const char *id, struct jbuf *known)
{
	const struct jval *devs;
	struct jval *snap = NULL;
	char *text = NULL;
	char err[64];
	int found = -1;

	if (store_meta_get(st, STATUS_KEY, &text) < 0 || !text)
		return -1;
	snap = jread_parse(text, strlen(text), err, sizeof err);
	free(text);
	devs = jread_get(snap, "devices");
	if (devs && devs->type == J_ARR) {
		found = 0;
		for (size_t i = 0; i < devs->n; i++) {
			const char *d = jread_str(devs->items[i], "id");
			if (!d)
				continue;
			if (strcmp(d, id) == 0)
				found = 1;
			if (known->len)
				jb_cstr(known, ", ");
			jb_cstr(known, d);
		}
	}
	jread_free(snap);
	return found;
}

static int cmd_tail(struct store *st, const char *device, long n, int json,
		    const struct config *cfg)
{
	char topic[ID_MAX + 16];
	struct store_row *rows;
	struct jval **pls;
	const char **cols = NULL;
	size_t ncols = 0;
	struct jbuf b;
	long got;
	int rc = 0;

	if (!config_id_valid(device)) {
		fprintf(stderr, "sluicectl: '%s' is not a device id\n", device);
		return 2;
	}
	snprintf(topic, sizeof topic, "telemetry/%s", device);
	rows = calloc((size_t)n, sizeof *rows);
	pls = calloc((size_t)n, sizeof *pls);
	if (!rows || !pls) {
		free(rows);
		free(pls);
		fprintf(stderr, "sluicectl: out of memory\n");
		return 1;
	}
	got = store_recent(st, topic, (size_t)n, rows);
	if (got < 0) {
		fprintf(stderr, "sluicectl: %s\n", store_error(st));
		free(rows);
		free(pls);
		return 1;
	}
	if (got == 0) {
		struct jbuf known;
		int has;

		jb_init(&known);
		has = snapshot_has_device(st, device, &known);
		if (has == 0) {
			fprintf(stderr, "sluicectl: no device '%s' (the daemon polls: %s)\n", device,
				known.len ? jb_cstr_get(&known) : "none");
			jb_free(&known);
			free(rows);
			free(pls);
			return 1;
		}
		jb_free(&known);
	}
	for (long i = 0; i < got; i++)
		pls[i] = row_payload(st, &rows[i]);

	if (json) {
		bool first = true;

		jb_init(&b);
		jb_cstr(&b, "{");
		jb_key(&b, "device", &first);
		jb_str(&b, device);
		jb_key(&b, "readings", &first);
		jb_cstr(&b, "[");
		/* oldest first, like tail(1) */
		for (long i = got - 1, k = 0; i >= 0; i--) {
			if (!pls[i])
				continue;
			if (k++)
				jb_cstr(&b, ",");
			jread_emit(&b, pls[i]);
		}
		jb_cstr(&b, "]}");
		rc = json_print(&b);
		goto out;
	}
	if (got == 0) {
		printf("no readings of %s stored\n", device);
		goto out;
	}
	/* one column a point, in the order they first appear, newest reading first (so a
	 * point added by a reload is there too) */
	cols = calloc(33, sizeof *cols);
	if (!cols) {
		fprintf(stderr, "sluicectl: out of memory\n");
		rc = 1;
		goto out;
	}
	cols[0] = "TIME";
	cols[1] = "SEQ";
	ncols = 2;
	for (long i = 0; i < got; i++) {
		const struct jval *groups[2] = { jread_get(pls[i], "values"),
						 jread_get(pls[i], "errors") };
		for (int g = 0; g < 2; g++) {
			for (size_t k = 0; groups[g] && groups[g]->type == J_OBJ && k < groups[g]->n;
			     k++) {
				size_t c;
				for (c = 2; c < ncols && strcmp(cols[c], groups[g]->keys[k]); c++)
					;
				if (c == ncols && ncols < 32)
					cols[ncols++] = groups[g]->keys[k];
			}
		}
	}
	{
		struct tbl t;
		unsigned right = 0;

		for (size_t c = 1; c < ncols; c++)
			right |= 1u << c;
		tbl_init(&t, ncols, cols, right);
		for (long i = got - 1; i >= 0; i--) {
			const struct jval *vals = jread_get(pls[i], "values");
			const struct jval *errs = jread_get(pls[i], "errors");
			char when[32];

			fmt_time(rows[i].ts_ms, when, sizeof when);
			tbl_cell(&t, "%s", when);
			tbl_cell(&t, "%" PRIu64, rows[i].seq);
			for (size_t c = 2; c < ncols; c++) {
				const struct jval *v = jread_get(vals, cols[c]);
				const char *e = jread_str(errs, cols[c]);

				if (e)
					tbl_cell(&t, "(%s)", e);
				else if (!v || v->type == J_NULL)
					tbl_cell(&t, "-");
				else if (v->type == J_NUM || v->type == J_STR)
					tbl_cell(&t, "%s", v->str);
				else if (v->type == J_BOOL)
					tbl_cell(&t, "%s", v->b ? "true" : "false");
				else
					tbl_cell(&t, "?");
			}
		}
		rc = tbl_print(&t, stdout, 0) ? 1 : 0;
		tbl_free(&t);
	}
	/* a point refused at a 3xxxx/4xxxx address: what to try, under the table */
	for (size_t c = 2, said_any = 0; c < ncols; c++) {
		bool refused = false, said = said_any;
		for (long i = 0; i < got && !refused; i++) {
			const char *e = jread_str(jread_get(pls[i], "errors"), cols[c]);
			refused = e && strcmp(e, mb_strerror(MBE_EXC_BASE + 2)) == 0;
		}
		if (refused)
			point_address_hint(cfg, device, cols[c], "\nillegal data address:\n",
					   &said);
		said_any = said;
	}
out:
	free(cols);
	for (long i = 0; i < got; i++)
		jread_free(pls[i]);
	free(pls);
	rows_free(rows, got);
	return rc;
}

/* ---- check ------------------------------------------------------------------- */

/*
 * SQLite's quick_check over every page, read-only (store_check_dir): what sluiced runs
 * at a start after a stop that was not clean, on demand. Exit 0 sound, 1 damaged, 3 it
 * could not be checked: a script can tell a bad card from a wrong path.
 */
static int cmd_check(const char *data_dir, int json)
{
	char what[4096];
	int r = store_check_dir(data_dir, what, sizeof what);

	if (r < 0) {
		fprintf(stderr, "sluicectl: %s\n", what);
		return 3;
	}
	if (json) {
		struct jbuf b;
		bool first = true;
		char *db = malloc(strlen(data_dir) + sizeof "/sluice.db");

		if (db)
			sprintf(db, "%s/sluice.db", data_dir);
		jb_init(&b);
		jb_cstr(&b, "{");
		jb_key(&b, "database", &first);
		jb_str(&b, db ? db : data_dir);
		jb_key(&b, "ok", &first);
		jb_bool(&b, r == 0);
		jb_key(&b, "problems", &first);
		jb_cstr(&b, "[");
		for (char *line = what, *nl; r == 1 && line; line = nl) {
			nl = strchr(line, '\n');
			if (nl)
				*nl++ = '\0';
			if (line != what)
				jb_cstr(&b, ",");
			jb_str(&b, line);
		}
		jb_cstr(&b, "]}");
		free(db);
		if (json_print(&b) != 0)
			return 3;
		return r;
	}
	if (r == 0) {
		printf("%s\n", what);
		return 0;
	}
	printf("%s/sluice.db is damaged:\n", data_dir);
	for (char *line = what, *nl; line; line = nl) {
		nl = strchr(line, '\n');
		if (nl)
			*nl++ = '\0';
		printf("  %s\n", line);
	}
	return 1;
}

/* ---- main -------------------------------------------------------------------- */

/*
 * A command that parses its own options (probe, replay), found after the global options:
 * run it with -c FILE and --json (--help) given before it passed on as its --config and
 * --json, so that `sluicectl --json probe ...` means what `sluicectl probe --json ...`
 * does. -D and -n belong to the database commands and are refused here. Returns the
 * command's exit status, or -1 when the command is another one.
 */
static int sub_command(int argc, char **argv, const struct option *opts)
{
	static char *none[] = { "sluicectl", NULL };
	static const struct option no_opts[] = { { NULL, 0, NULL, 0 } };
	const char *cfgpath = NULL, *cmd, *db_opt = NULL;
	char **sub;
	bool json = false, help = false;
	int ch, n = 0, rc;

	optind = 0;
	opterr = 0; /* the full parse after this one reports what is wrong */
	while ((ch = getopt_long(argc, argv, "+c:D:jn:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			help = true;
			break;
		case 'D':
			db_opt = "-D (--data-dir)";
			break;
		case 'n':
			db_opt = "-n";
			break;
		default:
			opterr = 1;
			return -1;
		}
	}
	opterr = 1;
	if (optind >= argc)
		return -1;
	cmd = argv[optind];
	if (strcmp(cmd, "probe") != 0 && strcmp(cmd, "replay") != 0)
		return -1;
	if (db_opt) {
		fprintf(stderr, "sluicectl: %s is for status, alerts, backlog and tail, not %s\n",
			db_opt, cmd);
		return 2;
	}
	if (!(sub = calloc((size_t)argc + 4, sizeof *sub))) {
		fprintf(stderr, "sluicectl: out of memory\n");
		return 1;
	}
	sub[n++] = argv[optind];
	if (cfgpath) {
		sub[n++] = "--config";
		sub[n++] = (char *)cfgpath;
	}
	if (json)
		sub[n++] = "--json";
	if (help)
		sub[n++] = "--help";
	for (int i = optind + 1; i < argc; i++)
		sub[n++] = argv[i];
	/* glibc keeps the "+" (stop at the first non-option) of the parse above until getopt
	 * is reinitialised with optind 0; a command that starts at optind 1 would inherit it */
	optind = 0;
	getopt_long(1, none, "", no_opts, NULL);
	rc = strcmp(cmd, "probe") == 0 ? probe_main(n, sub) : replay_main(n, sub);
	free(sub);
	return rc;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "data-dir", required_argument, NULL, 'D' },
		{ "json", no_argument, NULL, 'j' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *cfgpath = DEFAULT_CONFIG, *datadir = NULL, *cmd;
	struct config *cfg = NULL;
	struct store *st;
	char err[512], *end;
	long n = 10;
	int json = 0, ch, rc, nargs;

	/* probe and replay parse their own options: hand them the global ones given before */
	if ((rc = sub_command(argc, argv, opts)) >= 0)
		return rc;

	optind = 0; /* GNU: reinitialise; options may come before or after the command */
	while ((ch = getopt_long(argc, argv, "c:D:jn:h", opts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			cfgpath = optarg;
			break;
		case 'D':
			datadir = optarg;
			break;
		case 'j':
			json = 1;
			break;
		case 'n':
			errno = 0;
			n = strtol(optarg, &end, 10);
			if (errno || end == optarg || *end || n < 1 || n > 100000) {
				fprintf(stderr, "sluicectl: -n takes 1 to 100000, not '%s'\n", optarg);
				return 2;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		usage(stderr);
		return 2;
	}
	cmd = argv[optind];
	nargs = argc - optind - 1;
	if (!((strcmp(cmd, "status") == 0 && nargs == 0) ||
	      (strcmp(cmd, "backlog") == 0 && nargs == 0) ||
	      (strcmp(cmd, "retry") == 0 && nargs == 0) ||
	      (strcmp(cmd, "alerts") == 0 && nargs == 0) ||
	      (strcmp(cmd, "check") == 0 && nargs == 0) ||
	      (strcmp(cmd, "tail") == 0 && nargs == 1))) {
		if (strcmp(cmd, "tail") == 0)
			fprintf(stderr, "sluicectl: tail takes one device id\n");
		else if (strcmp(cmd, "status") && strcmp(cmd, "backlog") && strcmp(cmd, "alerts") &&
			 strcmp(cmd, "retry") && strcmp(cmd, "check"))
			fprintf(stderr, "sluicectl: no command '%s'\n", cmd);
		else
			fprintf(stderr, "sluicectl: %s takes no arguments\n", cmd);
		usage(stderr);
		return 2;
	}
	if (!datadir) {
		struct config_diag diag = { 0 };
		struct config_opts copts = { .skip_secret_files = true };

		cfg = config_load(cfgpath, &copts, &diag);
		if (!cfg) {
			for (size_t i = 0; i < diag.n; i++)
				fprintf(stderr, "%s\n", diag.msgs[i]);
			fprintf(stderr, "sluicectl: cannot use %s (give the data directory with -D)\n",
				cfgpath);
			config_diag_free(&diag);
			return strcmp(cmd, "check") == 0 ? 3 : 1;
		}
		config_diag_free(&diag);
		datadir = cfg->gateway.data_dir;
	}
	if (strcmp(cmd, "check") == 0) {
		rc = cmd_check(datadir, json);
		config_free(cfg);
		return rc;
	}
	st = store_open_ro(datadir, err, sizeof err);
	if (!st) {
		fprintf(stderr, "sluicectl: %s\n", err);
		if (strstr(err, "ermission denied"))
			fprintf(stderr, "sluicectl: reading the database takes root, or the user or "
					"group sluiced runs as\n");
		config_free(cfg);
		return 1;
	}
	if (strcmp(cmd, "status") == 0)
		rc = cmd_status(st, datadir, json, cfg);
	else if (strcmp(cmd, "backlog") == 0)
		rc = cmd_backlog(st, n, json);
	else if (strcmp(cmd, "retry") == 0)
		rc = cmd_retry(st, datadir, json);
	else if (strcmp(cmd, "alerts") == 0)
		rc = cmd_alerts(st, n, json);
	else
		rc = cmd_tail(st, argv[optind + 1], n, json, cfg);
	store_close(st);
	config_free(cfg);
	return rc;
}
