/*
 * config: the one module that reads YAML (libyaml's document API). It turns the gateway
 * config and the device profiles it names into the plain structs of config.h, checks
 * everything the daemon would refuse, and reports every mistake it finds as
 * FILE:LINE:COL: message, sorted by file and position, so that a technician fixes a file
 * in one pass rather than one error per run.
 *
 * It must never: open a socket or a database, log, exit, or keep state between calls.
 * Files the config names (TLS, password, serial devices) are only stat()ed and opened
 * for reading to prove that they can be; their contents are not read here.
 *
 * How a file is read: libyaml composes a node tree with line/column marks; each mapping
 * is walked against a table of the keys it may hold (struct key). The walk reports
 * duplicate keys (libyaml keeps them silently), unknown keys (with the closest known
 * one), values of the wrong shape and values out of range, and keeps going. Sections
 * are processed in dependency order (buses, devices, then alerts), whatever their
 * order in the file, and messages are sorted at the end. To add a key: add a row to its
 * table; when it needs more than a range check, give it a K_FN handler or check it
 * after the walk (keys of kind K_NODE are handed back to the caller in seen[]).
 *
 * Ranges, chosen for what real equipment and the daemon can do:
 *   uplink.port, tcp.port         1..65535
 *   uplink.keepalive              5s..65535s (MQTT's field is 16 bits of seconds)
 *   uplink.inflight               1..65535 (MQTT packet ids are 16 bits)
 *   uplink.health_interval        1s..1d
 *   uplink.qos                    1 or 2: the outbox deletes a row on the broker's ack
 *   buffer.max_size               at least 1 MiB (below that SQLite's own pages dominate)
 *   buffer.keep_sent              0..3650d
 *   bus timeout                   10ms..60s;  guard 0..10s
 *   rtu.baud                      1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200,
 *                                 230400, 460800, 921600
 *   rtu.data_bits 7|8, rtu.stop_bits 1|2, rtu.parity none|even|odd
 *   device unit_id                0..255 on tcp (gateways route by it; 255 is common),
 *                                 1..247 on serial lines (Modbus serial addressing)
 *   device interval               100ms..1d;  offline_after 1..1000
 *   device max_registers          1..125 (the Modbus limit for one read);  max_gap 0..125
 *   point address                 0..65535, and address + width <= 65536
 *   point bit                     0..15, only for bool in input/holding registers
 *   point length                  1..64 registers, only for string (and required there)
 *   point scale                   finite, not 0;  offset finite
 *   rule for                      0..7d;  hysteresis >= 0
 *   leakage window                1h..31d;  max_loss_ratio 0 < x < 1
 *   rise.within                   1s..1d;  pv min_output_ratio 0..1, peer_ratio 0 < x <= 1
 *   stuck.for                     1m..31d;  night.baseline 0..60 nights
 *   burst.for                     0..1d;  burst.days 1..28
 */
#include "config.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <yaml.h>

#include "codec.h"

#ifndef SLUICE_DATADIR
#define SLUICE_DATADIR "/usr/share/sluice"
#endif

#define ZONEINFO "/usr/share/zoneinfo"
#define FILE_MAX (16u << 20) /* a config or profile bigger than this is not one */
#define MAXKEYS 32           /* rows in the largest key table */
#define SEC_MS 1000
#define MIN_MS (60 * SEC_MS)
#define HOUR_MS (60 * MIN_MS)
#define DAY_MS (24 * HOUR_MS)
#define MIB (1024 * 1024)

/* ---- state of one load ------------------------------------------------------------ */

struct msg {
	char *text;
	bool err;
	size_t file; /* index into cfg->files: messages are sorted by file, line, column */
	int line, col;
	size_t seq;  /* order of discovery, the last sort key */
};

/* A profile file, read once however many devices name it. */
struct profile {
	char *name;
	bool found;          /* a file was found (and read, well or not) */
	bool ok;             /* it had no errors */
	char *display;       /* its name: line */
	struct point_def *points;
	struct src_loc *locs;
	bool *valid;
	size_t n;
	bool has_max_registers, has_max_gap;
	unsigned max_registers, max_gap;
};

struct ld {
	struct config *cfg;     /* files[] lives here, also for config_load_profile */
	char *devdir;           /* "<config dir>/devices" or "devices"; NULL: none */
	char *absdir;           /* the config's directory, absolute; for relative paths */
	char **pdirs;           /* the other profile directories, in search order */
	size_t npdirs;
	struct msg *msgs;
	size_t nmsgs, capmsgs;
	size_t nerrors, nwarnings;
	bool oom;
	struct profile *profiles;
	size_t nprofiles;
	/* per bus, device, rule: where its id was given, for "first at line N" */
	struct src_loc *bus_idloc, *dev_idloc, *rule_idloc;
	bool *dev_incomplete;   /* its points could not all be read: no "no such point" */
	bool skip_secret_files; /* config_opts.skip_secret_files */
	/* config_load_buffer: the config's text is here, not in the file named; profiles
	 * and the other files it names are still read from disk */
	const unsigned char *mem;
	size_t memlen;
};

struct ydoc {
	yaml_document_t doc;
	bool loaded;
	const char *file;       /* owned by cfg->files */
	size_t fileno;
};

struct ctx {
	struct ld *ld;
	struct ydoc *d;
	char where[200];        /* "devices[2] (booster-pump)"; "" at the top level */
	const char *prefix;     /* key path inside where: "rtu.", "on_fire[0]." */
	/* rules: a key of another kind gets a better message than "unknown key" */
	bool (*foreign)(struct ctx *c, yaml_node_t *k);
	int kind;
	char kbuf[2][128];
	int kb;
	char qbuf[6][128];
	int qb;
};

static void *xcalloc(struct ld *ld, size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);

	if (!p)
		ld->oom = true;
	return p;
}

static char *xstrdup(struct ld *ld, const char *s)
{
	char *p = strdup(s);

	if (!p)
		ld->oom = true;
	return p;
}

static void setstr(struct ld *ld, char **dst, const char *s)
{
	free(*dst);
	*dst = xstrdup(ld, s);
}

/* ---- messages ----------------------------------------------------------------------- */

static void msg_push(struct ld *ld, bool err, size_t file, int line, int col, char *text)
{
	if (err)
		ld->nerrors++;
	else
		ld->nwarnings++;
	if (!text) {
		ld->oom = true;
		return;
	}
	if (ld->nmsgs == ld->capmsgs) {
		size_t cap = ld->capmsgs ? ld->capmsgs * 2 : 16;
		struct msg *m = realloc(ld->msgs, cap * sizeof *m);
		if (!m) {
			free(text);
			ld->oom = true;
			return;
		}
		ld->msgs = m;
		ld->capmsgs = cap;
	}
	ld->msgs[ld->nmsgs] = (struct msg){ text, err, file, line, col, ld->nmsgs };
	ld->nmsgs++;
}

/* "FILE:LINE:COL: [warning: ][WHERE: ]BODY", or "FILE: ..." without a position. */
static void vemit(struct ld *ld, bool err, size_t fileno, int line, int col, const char *where,
		  const char *fmt, va_list ap)
{
	char *body = NULL, *text = NULL;
	/* no file (config_load_profile when nothing was found): the bare message */
	const char *file = fileno < ld->cfg->nfiles ? ld->cfg->files[fileno] : NULL;
	const char *sep = where && *where ? ": " : "";
	char pos[48] = "";

	if (vasprintf(&body, fmt, ap) < 0)
		body = NULL;
	if (line > 0)
		snprintf(pos, sizeof pos, ":%d:%d", line, col);
	if (body && asprintf(&text, "%s%s%s%s%s%s%s", file ? file : "", pos, file ? ": " : "",
			     err ? "" : "warning: ", where ? where : "", sep, body) < 0)
		text = NULL;
	free(body);
	msg_push(ld, err, fileno, line, col, text);
}

static void emit(struct ld *ld, bool err, size_t fileno, int line, int col, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));
static void emit(struct ld *ld, bool err, size_t fileno, int line, int col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vemit(ld, err, fileno, line, col, NULL, fmt, ap);
	va_end(ap);
}

static size_t file_index(struct ld *ld, const char *file)
{
	for (size_t i = 0; i < ld->cfg->nfiles; i++)
		if (ld->cfg->files[i] == file)
			return i;
	return SIZE_MAX;
}

static void cmsg(struct ctx *c, bool err, yaml_node_t *n, const char *fmt, va_list ap)
{
	int line = n ? (int)n->start_mark.line + 1 : 0;
	int col = n ? (int)n->start_mark.column + 1 : 0;

	vemit(c->ld, err, c->d->fileno, line, col, c->where, fmt, ap);
}

static void c_err(struct ctx *c, yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void c_err(struct ctx *c, yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmsg(c, true, n, fmt, ap);
	va_end(ap);
}

static void c_warn(struct ctx *c, yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void c_warn(struct ctx *c, yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cmsg(c, false, n, fmt, ap);
	va_end(ap);
}

/* An error at a src_loc (a point defined elsewhere, perhaps in a profile file). */
static void c_err_loc(struct ctx *c, const struct src_loc *loc, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void c_err_loc(struct ctx *c, const struct src_loc *loc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vemit(c->ld, true, file_index(c->ld, loc->file), loc->line, loc->col, c->where, fmt, ap);
	va_end(ap);
}

static int msg_cmp(const void *a, const void *b)
{
	const struct msg *x = a, *y = b;

	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Sort the messages and hand them to diag (or drop them). */
static void ld_finish_msgs(struct ld *ld, struct config_diag *diag)
{
	if (ld->oom)
		emit(ld, true, 0, 0, 0, "out of memory while reading the configuration");
	if (ld->nmsgs)
		qsort(ld->msgs, ld->nmsgs, sizeof *ld->msgs, msg_cmp);
	if (diag) {
		diag->msgs = calloc(ld->nmsgs ? ld->nmsgs : 1, sizeof *diag->msgs);
		diag->is_error = calloc(ld->nmsgs ? ld->nmsgs : 1, sizeof *diag->is_error);
		diag->nerrors = ld->nerrors;
		diag->nwarnings = ld->nwarnings;
		if (diag->msgs && diag->is_error) {
			for (size_t i = 0; i < ld->nmsgs; i++) {
				diag->msgs[i] = ld->msgs[i].text;
				diag->is_error[i] = ld->msgs[i].err;
				ld->msgs[i].text = NULL;
			}
			diag->n = ld->nmsgs;
		} else {
			free(diag->msgs);
			free(diag->is_error);
			diag->msgs = NULL;
			diag->is_error = NULL;
		}
	}
	for (size_t i = 0; i < ld->nmsgs; i++)
		free(ld->msgs[i].text);
	free(ld->msgs);
	ld->msgs = NULL;
	ld->nmsgs = ld->capmsgs = 0;
}

void config_diag_free(struct config_diag *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		free(d->msgs[i]);
	free(d->msgs);
	free(d->is_error);
	memset(d, 0, sizeof *d);
}

/* ---- text shown in messages --------------------------------------------------------- */

/* A key name with its path: "rtu.baud". */
static const char *kn(struct ctx *c, const char *name)
{
	char *b = c->kbuf[c->kb++ & 1];

	snprintf(b, sizeof c->kbuf[0], "%s%s", c->prefix ? c->prefix : "", name);
	return b;
}

/*
 * A value as shown in a message: control characters escaped, long text cut at a
 * character boundary, so that one bad line cannot make the message unreadable.
 */
static const char *q(struct ctx *c, const char *s)
{
	char *b = c->qbuf[c->qb++ % 6];
	size_t n = 0, cap = sizeof c->qbuf[0] - 8;

	for (; *s && n < cap; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch < 0x20 || ch == 0x7f) {
			if (n + 4 >= cap)
				break;
			n += (size_t)snprintf(b + n, 5, "\\x%02x", ch);
		} else {
			b[n++] = (char)ch;
		}
	}
	if (*s) {
		/* *s is the first byte left out: never leave half a character */
		while (n > 0 && ((unsigned char)*s & 0xc0) == 0x80) {
			n--;
			s--;
		}
		memcpy(b + n, "...", 4);
	} else {
		b[n] = '\0';
	}
	return b;
}

/* ---- "did you mean" ----------------------------------------------------------------- */

struct sugg {
	const char *word;
	char best[128];
	size_t d;
	char text[160];
};

/* Edit distance with transpositions (optimal string alignment), ignoring ASCII case. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[3][128];
	size_t *p2 = d[0], *p1 = d[1], *cur = d[2];

	if (la >= 127 || lb >= 127)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		p1[j] = j;
	for (size_t i = 1; i <= la; i++) {
		cur[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			int ca = tolower((unsigned char)a[i - 1]), cb = tolower((unsigned char)b[j - 1]);
			size_t v = p1[j - 1] + (ca != cb);
			if (p1[j] + 1 < v)
				v = p1[j] + 1;
			if (cur[j - 1] + 1 < v)
				v = cur[j - 1] + 1;
			if (i > 1 && j > 1 && ca == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == cb && p2[j - 2] + 1 < v)
				v = p2[j - 2] + 1;
			cur[j] = v;
		}
		size_t *t = p2;
		p2 = p1;
		p1 = cur;
		cur = t;
	}
	return p1[lb];
}

static void sugg_init(struct sugg *s, const char *word)
{
	s->word = word;
	s->best[0] = '\0';
	s->d = SIZE_MAX;
	s->text[0] = '\0';
}

static void sugg_try(struct sugg *s, const char *cand)
{
	size_t lw = strlen(s->word), lim = lw <= 4 ? 1 : lw <= 10 ? 2 : 3;
	size_t d;

	if (!cand || !*cand || strcmp(cand, s->word) == 0 || strlen(cand) >= sizeof s->best)
		return;
	d = edit_distance(s->word, cand);
	if (d <= lim && d < strlen(cand) && d < s->d) {
		s->d = d;
		strcpy(s->best, cand);
	}
}

/* " (did you mean 'PREFIXbest'?)" or "". */
static const char *sugg_text(struct sugg *s, const char *prefix)
{
	if (!s->best[0])
		return "";
	snprintf(s->text, sizeof s->text, " (did you mean '%s%s'?)", prefix ? prefix : "", s->best);
	return s->text;
}

/* Offer the names in a directory (NAME.suffix files, or all entries when suffix is NULL). */
static void sugg_dir(struct sugg *s, const char *dir, const char *suffix, const char *prefix)
{
	DIR *dp = opendir(dir);
	struct dirent *e;
	char name[128];

	if (!dp)
		return;
	while ((e = readdir(dp))) {
		size_t n = strlen(e->d_name), ls = suffix ? strlen(suffix) : 0;
		if (e->d_name[0] == '.' || n <= ls || n >= sizeof name)
			continue;
		if (suffix && strcmp(e->d_name + n - ls, suffix) != 0)
			continue;
		if (snprintf(name, sizeof name, "%s%.*s", prefix, (int)(n - ls), e->d_name) >=
		    (int)sizeof name)
			continue;
		sugg_try(s, name);
	}
	closedir(dp);
}

/* ---- value syntaxes ----------------------------------------------------------------- */

/* A plain decimal: digits, optionally '.' and more digits. Advances *sp. */
static int num_prefix(const char **sp, double *v)
{
	const char *s = *sp;
	double x = 0, f = 0.1;

	if (!isdigit((unsigned char)*s))
		return -1;
	while (isdigit((unsigned char)*s))
		x = x * 10 + (*s++ - '0');
	if (*s == '.') {
		s++;
		if (!isdigit((unsigned char)*s))
			return -1;
		while (isdigit((unsigned char)*s)) {
			x += (*s++ - '0') * f;
			f /= 10;
		}
	}
	*sp = s;
	*v = x;
	return 0;
}

struct unit {
	const char *name;
	double mult;
};

/* NUMBER [spaces] UNIT, the unit one of units[] (longest names first). */
static int num_unit(const char **sp, const struct unit *units, double *out)
{
	const char *s = *sp;
	double v;

	if (num_prefix(&s, &v) < 0)
		return -1;
	while (*s == ' ')
		s++;
	for (const struct unit *u = units; u->name; u++) {
		size_t n = strlen(u->name);
		if (strncmp(s, u->name, n) == 0 && !isalpha((unsigned char)s[n]) && s[n] != '/') {
			*out = v * u->mult;
			*sp = s + n;
			return 0;
		}
	}
	return -1;
}

int config_parse_duration(const char *s, int64_t *ms)
{
	static const struct unit units[] = {
		{ "ms", 1 }, { "min", MIN_MS }, { "s", SEC_MS }, { "m", MIN_MS },
		{ "h", HOUR_MS }, { "d", DAY_MS }, { NULL, 0 },
	};
	double total = 0, v;
	int parts = 0;

	if (!s || !*s)
		return -1;
	if (strcmp(s, "0") == 0) {
		*ms = 0;
		return 0;
	}
	/* "1h30m" as well as "90m" */
	while (*s) {
		if (num_unit(&s, units, &v) < 0)
			return -1;
		total += v;
		parts++;
		while (*s == ' ')
			s++;
	}
	if (!parts || total > 1e15)
		return -1;
	*ms = (int64_t)llround(total);
	return 0;
}

int config_parse_size(const char *s, uint64_t *bytes)
{
	static const struct unit units[] = {
		{ "KiB", 1024.0 }, { "MiB", 1048576.0 }, { "GiB", 1073741824.0 },
		{ "TiB", 1099511627776.0 }, { "kB", 1e3 }, { "KB", 1e3 }, { "MB", 1e6 },
		{ "GB", 1e9 }, { "TB", 1e12 }, { "B", 1 }, { NULL, 0 },
	};
	const char *p = s;
	double v;

	if (!s || !*s)
		return -1;
	if (num_unit(&p, units, &v) == 0) {
		if (*p)
			return -1;
	} else {
		/* a bare whole number is bytes */
		p = s;
		if (num_prefix(&p, &v) < 0 || *p || strchr(s, '.'))
			return -1;
	}
	if (v > 1.8e19)
		return -1;
	*bytes = (uint64_t)floor(v);
	return 0;
}

int config_parse_power(const char *s, double *watts)
{
	static const struct unit units[] = {
		{ "kW", 1e3 }, { "KW", 1e3 }, { "MW", 1e6 }, { "W", 1 }, { NULL, 0 },
	};
	double v;

	if (!s || num_unit(&s, units, &v) < 0 || *s)
		return -1;
	*watts = v;
	return 0;
}

int config_parse_time_of_day(const char *s, int *secs)
{
	int h = 0, m, sec = 0, nd = 0;

	if (!s)
		return -1;
	while (isdigit((unsigned char)*s) && nd < 2) {
		h = h * 10 + (*s++ - '0');
		nd++;
	}
	if (nd == 0 || *s++ != ':')
		return -1;
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
		return -1;
	m = (s[0] - '0') * 10 + (s[1] - '0');
	s += 2;
	if (*s == ':') {
		s++;
		if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]))
			return -1;
		sec = (s[0] - '0') * 10 + (s[1] - '0');
		s += 2;
	}
	if (*s || m > 59 || sec > 59)
		return -1;
	/* 24:00 is the end of the day, for a window that runs to midnight */
	if (h > 24 || (h == 24 && (m || sec)))
		return -1;
	*secs = h * 3600 + m * 60 + sec;
	return 0;
}

int config_id_valid(const char *s)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (; s[n]; n++) {
		unsigned char ch = (unsigned char)s[n];
		if (!isalnum(ch) || ch > 0x7f)
			if (ch != '_' && ch != '-')
				return 0;
	}
	return n > 0 && n < ID_MAX;
}

/*
 * Decimal or 0x hex, with an optional sign for decimal. A number too big for 64 bits
 * saturates, so that the caller's range check names it as out of range.
 */
static int parse_int(const char *s, int64_t *out)
{
	char *end;
	long long v;
	unsigned long long u;

	errno = 0;
	if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		if (!isxdigit((unsigned char)s[2]))
			return -1;
		u = strtoull(s + 2, &end, 16);
		if (*end || (errno && errno != ERANGE))
			return -1;
		*out = u > INT64_MAX ? INT64_MAX : (int64_t)u;
		return 0;
	}
	if (!isdigit((unsigned char)s[s[0] == '-' || s[0] == '+']))
		return -1;
	v = strtoll(s, &end, 10);
	if (*end || (errno && errno != ERANGE))
		return -1;
	*out = v; /* LLONG_MAX or LLONG_MIN on overflow */
	return 0;
}

/* A finite decimal number: [+-]digits[.digits][e[+-]digits], or .5 */
static int parse_num(const char *s, double *out)
{
	char *end;
	double v;
	const char *p = s;

	if (*p == '+' || *p == '-')
		p++;
	if (!isdigit((unsigned char)*p) && !(*p == '.' && isdigit((unsigned char)p[1])))
		return -1;
	for (const char *t = p; *t; t++)
		if (!isdigit((unsigned char)*t) && !strchr(".eE+-", *t))
			return -1;
	errno = 0;
	v = strtod(s, &end);
	if (*end || !isfinite(v))
		return -1;
	*out = v;
	return 0;
}

static int parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "true", "yes", "on", NULL };
	static const char *const no[] = { "false", "no", "off", NULL };

	for (int i = 0; yes[i]; i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* For messages: 1d, 2h, 5m, 60s, 500ms (a minute reads better as 60s in a range). */
static const char *fmt_ms(int64_t ms, char *buf, size_t len)
{
	if (ms == 0)
		snprintf(buf, len, "0");
	else if (ms % DAY_MS == 0)
		snprintf(buf, len, "%lldd", (long long)(ms / DAY_MS));
	else if (ms && ms % HOUR_MS == 0)
		snprintf(buf, len, "%lldh", (long long)(ms / HOUR_MS));
	else if (ms > MIN_MS && ms % MIN_MS == 0)
		snprintf(buf, len, "%lldm", (long long)(ms / MIN_MS));
	else if (ms && ms % SEC_MS == 0)
		snprintf(buf, len, "%llds", (long long)(ms / SEC_MS));
	else
		snprintf(buf, len, "%lldms", (long long)ms);
	return buf;
}

static const char *fmt_size(uint64_t b, char *buf, size_t len)
{
	if (b && b % (1024ull * MIB) == 0)
		snprintf(buf, len, "%lluGiB", (unsigned long long)(b / (1024ull * MIB)));
	else if (b && b % MIB == 0)
		snprintf(buf, len, "%lluMiB", (unsigned long long)(b / MIB));
	else if (b && b % 1024 == 0)
		snprintf(buf, len, "%lluKiB", (unsigned long long)(b / 1024));
	else
		snprintf(buf, len, "%lluB", (unsigned long long)b);
	return buf;
}

/* ---- names -------------------------------------------------------------------------- */

struct enumval {
	const char *name;
	int val;
};

static const struct enumval severities[] = {
	{ "blue", SEV_BLUE }, { "yellow", SEV_YELLOW }, { "orange", SEV_ORANGE },
	{ "red", SEV_RED }, { NULL, 0 },
};

static const struct enumval rule_kinds[] = {
	{ "threshold", RULE_THRESHOLD }, { "waterlogging", RULE_WATERLOGGING },
	{ "leakage", RULE_LEAKAGE }, { "pv", RULE_PV }, { NULL, 0 },
};

static const struct enumval log_levels[] = {
	{ "error", LOG_LVL_ERROR }, { "warning", LOG_LVL_WARNING }, { "info", LOG_LVL_INFO },
	{ "debug", LOG_LVL_DEBUG }, { NULL, 0 },
};

static const struct enumval protocols[] = {
	{ "mqtt311", MQTT_311 }, { "mqtt5", MQTT_5 }, { NULL, 0 },
};

static const struct enumval durabilities[] = {
	{ "normal", DURABILITY_NORMAL }, { "full", DURABILITY_FULL }, { NULL, 0 },
};

static const struct enumval parities[] = {
	{ "none", 'N' }, { "even", 'E' }, { "odd", 'O' }, { NULL, 0 },
};

static const struct enumval orders[] = {
	{ "big", ORDER_BIG }, { "little", ORDER_LITTLE }, { NULL, 0 },
};

static const struct enumval tables[] = {
	{ "coil", MB_COIL }, { "discrete", MB_DISCRETE }, { "input", MB_INPUT },
	{ "holding", MB_HOLDING }, { NULL, 0 },
};

static const struct enumval types[] = {
	{ "bool", PT_BOOL }, { "int16", PT_INT16 }, { "uint16", PT_UINT16 },
	{ "int32", PT_INT32 }, { "uint32", PT_UINT32 }, { "int64", PT_INT64 },
	{ "uint64", PT_UINT64 }, { "float32", PT_FLOAT32 }, { "float64", PT_FLOAT64 },
	{ "string", PT_STRING }, { NULL, 0 },
};

static const char *enum_name(const struct enumval *ev, int val)
{
	for (; ev->name; ev++)
		if (ev->val == val)
			return ev->name;
	return NULL;
}

static int enum_find(const struct enumval *ev, const char *s, int *val)
{
	for (; ev->name; ev++)
		if (strcasecmp(ev->name, s) == 0) {
			*val = ev->val;
			return 0;
		}
	return -1;
}

/* "a, b, c" */
static const char *enum_list(const struct enumval *ev, char *buf, size_t len)
{
	size_t n = 0;

	buf[0] = '\0';
	for (; ev->name && n < len; ev++)
		n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "", ev->name);
	return buf;
}

const char *severity_name(int sev)
{
	return sev == SEV_NONE ? NULL : enum_name(severities, sev);
}

int severity_from_name(const char *s)
{
	int v;

	return s && enum_find(severities, s, &v) == 0 ? v : -1;
}

const char *rule_kind_name(int kind)
{
	const char *n = enum_name(rule_kinds, kind);

	return n ? n : "unknown";
}

/* "holding registers" / "coils": the table as a technician's manual names it. */
static const char *table_words(enum mb_table t)
{
	switch (t) {
	case MB_COIL:
		return "coils";
	case MB_DISCRETE:
		return "discrete inputs";
	case MB_INPUT:
		return "input registers";
	case MB_HOLDING:
		return "holding registers";
	}
	return "registers";
}

static const char *table_word(enum mb_table t)
{
	switch (t) {
	case MB_COIL:
		return "coil";
	case MB_DISCRETE:
		return "discrete input";
	case MB_INPUT:
		return "input register";
	case MB_HOLDING:
		return "holding register";
	}
	return "register";
}

/* ---- YAML files ---------------------------------------------------------------------- */

static size_t ld_addfile(struct ld *ld, const char *path)
{
	struct config *cfg = ld->cfg;
	char **f = realloc(cfg->files, (cfg->nfiles + 1) * sizeof *f);

	if (!f) {
		ld->oom = true;
		return SIZE_MAX;
	}
	cfg->files = f;
	if (!(f[cfg->nfiles] = xstrdup(ld, path)))
		return SIZE_MAX;
	return cfg->nfiles++;
}

static int read_whole(const char *path, unsigned char **buf, size_t *len, char *why, size_t wlen)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	size_t n = 0;

	*buf = NULL;
	if (fd < 0) {
		snprintf(why, wlen, "cannot be opened for reading: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(why, wlen, "is not a regular file");
		close(fd);
		return -1;
	}
	if ((uint64_t)st.st_size > FILE_MAX) {
		snprintf(why, wlen, "is larger than %u MiB: not a configuration file", FILE_MAX >> 20);
		close(fd);
		return -1;
	}
	if (!(*buf = malloc((size_t)st.st_size + 1))) {
		snprintf(why, wlen, "out of memory");
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t r = read(fd, *buf + n, (size_t)st.st_size - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			snprintf(why, wlen, "cannot be read: %s", strerror(errno));
			free(*buf);
			*buf = NULL;
			close(fd);
			return -1;
		}
		if (r == 0 || (n += (size_t)r) == (size_t)st.st_size)
			break;
	}
	close(fd);
	*len = n;
	return 0;
}

/* libyaml's reader reports a byte offset, not a mark: count lines and characters. */
static void offset_pos(const unsigned char *buf, size_t len, size_t off, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < off && i < len; i++) {
		if (buf[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if ((buf[i] & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

static void yaml_syntax_error(struct ld *ld, struct ydoc *d, const yaml_parser_t *p,
			      const unsigned char *buf, size_t len)
{
	const char *problem = p->problem ? p->problem : "cannot be parsed";
	char context[200] = "";
	const char *hint = "";
	int line, col;

	if (p->error == YAML_MEMORY_ERROR) {
		ld->oom = true;
		return;
	}
	if (p->error == YAML_READER_ERROR) {
		offset_pos(buf, len, p->problem_offset, &line, &col);
		emit(ld, true, d->fileno, line, col,
		     "YAML syntax error: %s (the file must be UTF-8 text)", problem);
		return;
	}
	line = (int)p->problem_mark.line + 1;
	col = (int)p->problem_mark.column + 1;
	if (p->context)
		snprintf(context, sizeof context, " (%s at line %d column %d)", p->context,
			 (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
	if (p->problem_mark.index < len && buf[p->problem_mark.index] == '\t')
		hint = "; YAML does not allow tabs for indentation: use spaces";
	emit(ld, true, d->fileno, line, col, "YAML syntax error: %s%s%s", problem, context, hint);
}

/*
 * Read and compose one file. 0: d->doc has a root node. -1: an error was reported;
 * ydoc_free is still to be called.
 */
static int ydoc_load(struct ld *ld, const char *path, struct ydoc *d)
{
	yaml_parser_t p;
	yaml_document_t extra;
	unsigned char *buf;
	size_t len = 0;
	char why[200];
	yaml_node_t *root;

	memset(d, 0, sizeof *d);
	if ((d->fileno = ld_addfile(ld, path)) == SIZE_MAX)
		return -1;
	d->file = ld->cfg->files[d->fileno];
	if (ld->mem && d->fileno == 0) {
		/* a copy, so that the buffer is freed like one read from a file */
		if (ld->memlen > FILE_MAX) {
			emit(ld, true, d->fileno, 0, 0, "is larger than %u MiB: not a configuration "
			     "file", FILE_MAX >> 20);
			return -1;
		}
		if (!(buf = malloc(ld->memlen + 1))) {
			ld->oom = true;
			return -1;
		}
		if (ld->memlen)
			memcpy(buf, ld->mem, ld->memlen);
		len = ld->memlen;
	} else if (read_whole(path, &buf, &len, why, sizeof why) < 0) {
		emit(ld, true, d->fileno, 0, 0, "%s", why);
		return -1;
	}
	if (!yaml_parser_initialize(&p)) {
		free(buf);
		ld->oom = true;
		return -1;
	}
	yaml_parser_set_input_string(&p, buf, len);
	if (!yaml_parser_load(&p, &d->doc)) {
		/* libyaml frees a partial document itself */
		yaml_syntax_error(ld, d, &p, buf, len);
		yaml_parser_delete(&p);
		free(buf);
		return -1;
	}
	d->loaded = true;
	root = yaml_document_get_root_node(&d->doc);
	if (!root) {
		emit(ld, true, d->fileno, 0, 0, "the file is empty");
		yaml_parser_delete(&p);
		free(buf);
		return -1;
	}
	/* One file, one document: a second one would be silently ignored otherwise. */
	if (!yaml_parser_load(&p, &extra)) {
		yaml_syntax_error(ld, d, &p, buf, len);
	} else {
		yaml_node_t *r2 = yaml_document_get_root_node(&extra);
		if (r2)
			emit(ld, true, d->fileno, (int)extra.start_mark.line + 1,
			     (int)extra.start_mark.column + 1,
			     "a second YAML document starts here: the file must hold one document");
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&p);
	free(buf);
	return 0;
}

static void ydoc_free(struct ydoc *d)
{
	if (d->loaded)
		yaml_document_delete(&d->doc);
	d->loaded = false;
}

static yaml_node_t *node(struct ydoc *d, int id)
{
	return yaml_document_get_node(&d->doc, id);
}

static const char *sval(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static bool is_null(const yaml_node_t *n)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	s = sval(n);
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

static size_t map_len(const yaml_node_t *m)
{
	return (size_t)(m->data.mapping.pairs.top - m->data.mapping.pairs.start);
}

static size_t seq_len(const yaml_node_t *s)
{
	return (size_t)(s->data.sequence.items.top - s->data.sequence.items.start);
}

static yaml_node_t *seq_item(struct ydoc *d, const yaml_node_t *s, size_t i)
{
	return node(d, s->data.sequence.items.start[i]);
}

/* The value of a scalar key in a mapping, without checks (for "where" texts). */
static yaml_node_t *map_peek(struct ydoc *d, const yaml_node_t *m, const char *key)
{
	if (m->type != YAML_MAPPING_NODE)
		return NULL;
	for (size_t i = 0; i < map_len(m); i++) {
		yaml_node_t *k = node(d, m->data.mapping.pairs.start[i].key);
		yaml_node_t *v = node(d, m->data.mapping.pairs.start[i].value);
		if (k && v && k->type == YAML_SCALAR_NODE && strcmp(sval(k), key) == 0)
			return v;
	}
	return NULL;
}

static const char *peek_scalar(struct ydoc *d, const yaml_node_t *m, const char *key)
{
	yaml_node_t *v = map_peek(d, m, key);

	return v && v->type == YAML_SCALAR_NODE && !is_null(v) ? sval(v) : NULL;
}

/* ---- shapes --------------------------------------------------------------------------- */

/* WHAT must be EXPECT, not ... */
static void want(struct ctx *c, yaml_node_t *n, const char *what, const char *expect)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		if (is_null(n))
			c_err(c, n, "%s has no value (expected %s)", what, expect);
		else
			c_err(c, n, "%s must be %s, not the value '%s'", what, expect, q(c, sval(n)));
		break;
	case YAML_SEQUENCE_NODE:
		c_err(c, n, "%s must be %s, not a list", what, expect);
		break;
	case YAML_MAPPING_NODE:
		c_err(c, n, "%s must be %s, not a mapping (key: value lines)", what, expect);
		break;
	default:
		c_err(c, n, "%s must be %s", what, expect);
		break;
	}
}

#define EXPECT_MAP "a mapping (key: value lines)"
#define EXPECT_LIST "a list (lines starting with '- ')"

static bool is_map(struct ctx *c, yaml_node_t *n, const char *what)
{
	if (n->type == YAML_MAPPING_NODE)
		return true;
	want(c, n, what, EXPECT_MAP);
	return false;
}

static bool is_list(struct ctx *c, yaml_node_t *n, const char *what)
{
	if (n->type == YAML_SEQUENCE_NODE)
		return true;
	/* "buses:" with nothing under it is an empty list, not a mistake */
	if (is_null(n))
		return false;
	want(c, n, what, EXPECT_LIST);
	return false;
}

/* The text of a scalar value, or NULL after saying what is wrong with it. */
static const char *scalar(struct ctx *c, yaml_node_t *v, const char *what)
{
	if (v->type != YAML_SCALAR_NODE || is_null(v)) {
		want(c, v, what, "a single value");
		return NULL;
	}
	if (strlen(sval(v)) != v->data.scalar.length) {
		c_err(c, v, "%s contains a NUL character", what);
		return NULL;
	}
	return sval(v);
}

static void ctx_sub(struct ctx *c, const struct ctx *parent, const char *prefix, const char *fmt,
		    ...) __attribute__((format(printf, 4, 5)));
static void ctx_sub(struct ctx *c, const struct ctx *parent, const char *prefix, const char *fmt,
		    ...)
{
	va_list ap;

	memset(c, 0, sizeof *c);
	c->ld = parent->ld;
	c->d = parent->d;
	c->prefix = prefix;
	va_start(ap, fmt);
	vsnprintf(c->where, sizeof c->where, fmt, ap);
	va_end(ap);
}

/* ---- key tables ------------------------------------------------------------------------ */

enum ktype {
	K_NODE,  /* handed back in seen[] for the caller */
	K_FN,    /* k->fn(c, k, value, obj) */
	K_STR,   /* char *, strdup'ed; not empty */
	K_TEXT,  /* any single value, not kept (description, source) */
	K_ID,    /* char[ID_MAX], [A-Za-z0-9_-]+ */
	K_CHARS, /* char[size] */
	K_BOOL,
	K_INT,   /* min..max (no upper bound when max is 0); stored in size bytes */
	K_NUM,   /* double; bounds by KF_ flags */
	K_DUR,   /* int64_t ms; min..max as for K_INT */
	K_SIZE,  /* uint64_t bytes; min..max as for K_INT */
	K_ENUM,  /* ev names, stored in size bytes */
};

enum {
	KF_REQ = 1 << 0,
	KF_MIN = 1 << 1,     /* K_NUM: >= min */
	KF_MAX = 1 << 2,     /* K_NUM: <= max */
	KF_XMIN = 1 << 3,    /* K_NUM: > min */
	KF_XMAX = 1 << 4,    /* K_NUM: < max */
	KF_NONZERO = 1 << 5, /* K_NUM: not 0 */
};

struct key;
typedef void key_fn(struct ctx *c, const struct key *k, yaml_node_t *v, void *obj);

struct key {
	const char *name;
	enum ktype type;
	size_t off, size;        /* the field in the object the table fills */
	double min, max;
	const struct enumval *ev;
	key_fn *fn;
	unsigned flags;
	size_t has;              /* HAS(): 1 + offset of a bool set when the key is given */
};

#define OFF(t, f) offsetof(t, f), .size = sizeof(((t *)0)->f)
#define HAS(t, f) (offsetof(t, f) + 1)

static void *field(void *obj, const struct key *k)
{
	return (char *)obj + k->off;
}

static void store_uint(void *p, size_t size, uint64_t v)
{
	switch (size) {
	case 1: {
		uint8_t x = (uint8_t)v;
		memcpy(p, &x, 1);
		break;
	}
	case 2: {
		uint16_t x = (uint16_t)v;
		memcpy(p, &x, 2);
		break;
	}
	case 4: {
		uint32_t x = (uint32_t)v;
		memcpy(p, &x, 4);
		break;
	}
	default:
		memcpy(p, &v, 8);
		break;
	}
}

static const char *num_range_text(const struct key *k, char *buf, size_t len)
{
	const char *lo = k->flags & KF_XMIN ? "more than" : "at least";
	const char *hi = k->flags & KF_XMAX ? "less than" : "at most";
	bool hmin = k->flags & (KF_MIN | KF_XMIN), hmax = k->flags & (KF_MAX | KF_XMAX);

	if (hmin && hmax && !(k->flags & (KF_XMIN | KF_XMAX)))
		snprintf(buf, len, "%g..%g", k->min, k->max);
	else if (hmin && hmax)
		snprintf(buf, len, "%s %g and %s %g", lo, k->min, hi, k->max);
	else if (hmin)
		snprintf(buf, len, "%s %g", lo, k->min);
	else
		snprintf(buf, len, "%s %g", hi, k->max);
	return buf;
}

static void key_enum(struct ctx *c, const struct key *k, yaml_node_t *v, const char *s, void *p)
{
	char list[200];
	struct sugg sg;
	int val;

	if (enum_find(k->ev, s, &val) == 0) {
		store_uint(p, k->size, (uint64_t)(int64_t)val);
		return;
	}
	sugg_init(&sg, s);
	for (const struct enumval *e = k->ev; e->name; e++)
		sugg_try(&sg, e->name);
	c_err(c, v, "%s '%s' is not one of %s%s", kn(c, k->name), q(c, s),
	      enum_list(k->ev, list, sizeof list), sugg_text(&sg, NULL));
}

static void key_apply(struct ctx *c, const struct key *k, yaml_node_t *v, void *obj)
{
	void *p = field(obj, k);
	const char *name, *s;
	char a[80], b[40];
	int64_t iv;
	double dv;
	uint64_t uv;
	bool bv;

	if (k->type == K_NODE)
		return;
	if (k->type == K_FN) {
		k->fn(c, k, v, obj);
		return;
	}
	name = kn(c, k->name);
	if (!(s = scalar(c, v, name)))
		return;
	switch (k->type) {
	case K_NODE:
	case K_FN:
		break;
	case K_STR:
		if (!*s)
			c_err(c, v, "%s is empty", name);
		else
			setstr(c->ld, p, s);
		break;
	case K_TEXT:
		break;
	case K_ID:
		if (!config_id_valid(s))
			c_err(c, v, "%s '%s' is not a valid id: use only letters, digits, '-' and '_' "
			      "(at most %d bytes)", name, q(c, s), ID_MAX - 1);
		/* kept when it fits, valid or not, so references to it still resolve */
		if (strlen(s) < ID_MAX)
			memcpy(p, s, strlen(s) + 1);
		break;
	case K_CHARS:
		if (strlen(s) >= k->size)
			c_err(c, v, "%s '%s' is too long (at most %zu bytes)", name, q(c, s),
			      k->size - 1);
		else
			memcpy(p, s, strlen(s) + 1);
		break;
	case K_BOOL:
		if (parse_bool(s, &bv) < 0)
			c_err(c, v, "%s '%s' is not true or false", name, q(c, s));
		else
			*(bool *)p = bv;
		break;
	case K_INT:
		if (parse_int(s, &iv) < 0)
			c_err(c, v, "%s '%s' is not a whole number", name, q(c, s));
		else if (iv < (int64_t)k->min || (k->max > 0 && iv > (int64_t)k->max))
			c_err(c, v, "%s %s is out of range (expected %s%.0f%s%.0f)", name, q(c, s),
			      k->max > 0 ? "" : "at least ", k->min, k->max > 0 ? ".." : "",
			      k->max > 0 ? k->max : 0);
		else
			store_uint(p, k->size, (uint64_t)iv);
		break;
	case K_NUM:
		if (parse_num(s, &dv) < 0) {
			c_err(c, v, "%s '%s' is not a number", name, q(c, s));
		} else if ((k->flags & KF_NONZERO) && dv == 0) {
			c_err(c, v, "%s must not be 0", name);
		} else if (((k->flags & KF_MIN) && dv < k->min) ||
			   ((k->flags & KF_XMIN) && dv <= k->min) ||
			   ((k->flags & KF_MAX) && dv > k->max) ||
			   ((k->flags & KF_XMAX) && dv >= k->max)) {
			c_err(c, v, "%s %s is out of range (expected %s)", name, q(c, s),
			      num_range_text(k, a, sizeof a));
		} else {
			*(double *)p = dv;
		}
		break;
	case K_DUR:
		if (config_parse_duration(s, &iv) < 0)
			c_err(c, v, "%s '%s' is not a duration (expected a number and a unit: 500ms, "
			      "10s, 5m, 2h, 1d)", name, q(c, s));
		else if (iv < (int64_t)k->min || (k->max > 0 && iv > (int64_t)k->max)) {
			if (k->max > 0)
				c_err(c, v, "%s %s is out of range (expected %s..%s)", name, q(c, s),
				      fmt_ms((int64_t)k->min, a, sizeof a),
				      fmt_ms((int64_t)k->max, b, sizeof b));
			else
				c_err(c, v, "%s %s is too short (expected at least %s)", name, q(c, s),
				      fmt_ms((int64_t)k->min, a, sizeof a));
		} else
			*(int64_t *)p = iv;
		break;
	case K_SIZE:
		if (config_parse_size(s, &uv) < 0)
			c_err(c, v, "%s '%s' is not a size (expected a number and a unit: 64KiB, "
			      "512MiB, 2GiB)", name, q(c, s));
		else if (uv < (uint64_t)k->min || (k->max > 0 && uv > (uint64_t)k->max))
			c_err(c, v, "%s %s is too small (expected at least %s)", name, q(c, s),
			      fmt_size((uint64_t)k->min, a, sizeof a));
		else
			*(uint64_t *)p = uv;
		break;
	case K_ENUM:
		key_enum(c, k, v, s, p);
		break;
	}
}

/*
 * Check a pair: its key is a single value and not a repeat of an earlier key of the
 * same mapping (libyaml keeps both silently; the second would win unseen).
 */
static bool pair_get(struct ctx *c, yaml_node_t *m, size_t i, const char *word, yaml_node_t **kp,
		     yaml_node_t **vp)
{
	yaml_node_pair_t *pairs = m->data.mapping.pairs.start;
	yaml_node_t *k = node(c->d, pairs[i].key), *v = node(c->d, pairs[i].value);

	if (!k || !v)
		return false;
	if (k->type != YAML_SCALAR_NODE) {
		c_err(c, k, "a key must be a single word, not a %s",
		      k->type == YAML_SEQUENCE_NODE ? "list" : "mapping");
		return false;
	}
	for (size_t j = 0; j < i; j++) {
		yaml_node_t *kj = node(c->d, pairs[j].key);
		if (kj && kj->type == YAML_SCALAR_NODE &&
		    kj->data.scalar.length == k->data.scalar.length &&
		    memcmp(kj->data.scalar.value, k->data.scalar.value, k->data.scalar.length) == 0) {
			c_err(c, k, "duplicate %s '%s' (first at line %d)", word,
			      q(c, kn(c, sval(k))), (int)kj->start_mark.line + 1);
			return false;
		}
	}
	*kp = k;
	*vp = v;
	return true;
}

static size_t keys_count(const struct key *keys)
{
	size_t n = 0;

	while (keys[n].name)
		n++;
	return n;
}

static yaml_node_t *seen_of(const struct key *keys, yaml_node_t **seen, const char *name)
{
	for (size_t i = 0; keys[i].name; i++)
		if (strcmp(keys[i].name, name) == 0)
			return seen[i];
	return NULL;
}

static void unknown_key(struct ctx *c, yaml_node_t *k, const struct key *keys)
{
	struct sugg sg;

	if (c->foreign && c->foreign(c, k))
		return;
	if (strcmp(sval(k), "<<") == 0) {
		c_err(c, k, "YAML merge keys (<<) are not supported: write the keys out");
		return;
	}
	sugg_init(&sg, sval(k));
	for (size_t i = 0; keys[i].name; i++)
		sugg_try(&sg, keys[i].name);
	c_err(c, k, "unknown key '%s'%s", q(c, kn(c, sval(k))), sugg_text(&sg, c->prefix));
}

/* Walk mapping m (already known to be one) against keys, filling obj. */
static void keys_walk(struct ctx *c, yaml_node_t *m, const struct key *keys, void *obj,
		      yaml_node_t **seen)
{
	size_t nk = keys_count(keys);

	memset(seen, 0, nk * sizeof *seen);
	for (size_t i = 0; i < map_len(m); i++) {
		yaml_node_t *k, *v;
		size_t ki;

		if (!pair_get(c, m, i, "key", &k, &v))
			continue;
		for (ki = 0; ki < nk && strcmp(keys[ki].name, sval(k)) != 0; ki++)
			;
		if (ki == nk) {
			unknown_key(c, k, keys);
			continue;
		}
		seen[ki] = v;
		if (keys[ki].has)
			*(bool *)((char *)obj + keys[ki].has - 1) = true;
		key_apply(c, &keys[ki], v, obj);
	}
	for (size_t ki = 0; ki < nk; ki++)
		if ((keys[ki].flags & KF_REQ) && !seen[ki])
			c_err(c, m, "missing required key '%s'", kn(c, keys[ki].name));
}

/* ---- paths and files named by the config ---------------------------------------------- */

static char *path_join(struct ld *ld, const char *dir, const char *name)
{
	char *p;

	if (!dir || !*dir || name[0] == '/')
		return xstrdup(ld, name);
	while (name[0] == '.' && name[1] == '/')
		name += 2;
	if (asprintf(&p, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", name) < 0) {
		ld->oom = true;
		return NULL;
	}
	return p;
}

/* A relative path in the config means: relative to the config file's directory. */
static void path_resolve(struct ld *ld, char **path)
{
	char *p;

	if (!*path || (*path)[0] == '/' || !ld->absdir)
		return;
	if ((p = path_join(ld, ld->absdir, *path))) {
		free(*path);
		*path = p;
	}
}

/*
 * A file the daemon will read: TLS material, the password. It must exist and open for
 * reading; a secret must not be readable by others nor writable by anyone but its
 * owner (the expected layout is root:sluice 0640).
 */
static void check_file(struct ctx *c, yaml_node_t *v, const char *key, char **path, bool secret)
{
	struct stat st;
	int fd;

	if (!*path || !v)
		return;
	path_resolve(c->ld, path);
	if (c->ld->skip_secret_files)
		return;
	if (stat(*path, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			c_err(c, v, "%s '%s' does not exist", key, q(c, *path));
		else
			c_err(c, v, "%s '%s' cannot be checked: %s", key, q(c, *path), strerror(errno));
		return;
	}
	if (S_ISDIR(st.st_mode)) {
		c_err(c, v, "%s '%s' is a directory, not a file", key, q(c, *path));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		c_err(c, v, "%s '%s' is not a regular file", key, q(c, *path));
		return;
	}
	if ((fd = open(*path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) < 0) {
		c_err(c, v, "%s '%s' cannot be opened for reading: %s", key, q(c, *path),
		      strerror(errno));
		return;
	}
	close(fd);
	if (!secret)
		return;
	if (st.st_mode & 0004)
		c_err(c, v, "%s '%s' can be read by every user (mode %04o): it holds a secret; "
		      "make it owner root, group sluice, mode 0640", key, q(c, *path),
		      (unsigned)(st.st_mode & 07777));
	if (st.st_mode & 0022)
		c_err(c, v, "%s '%s' can be written by users other than its owner (mode %04o); "
		      "make it owner root, group sluice, mode 0640", key, q(c, *path),
		      (unsigned)(st.st_mode & 07777));
}

/* ---- gateway ------------------------------------------------------------------------------ */

static const struct key gateway_keys[] = {
	{ .name = "id", .type = K_ID, .off = OFF(struct gateway_cfg, id), .flags = KF_REQ },
	{ .name = "name", .type = K_STR, .off = OFF(struct gateway_cfg, name) },
	{ .name = "timezone", .type = K_STR, .off = OFF(struct gateway_cfg, timezone) },
	{ .name = "data_dir", .type = K_STR, .off = OFF(struct gateway_cfg, data_dir) },
	{ .name = "log_level", .type = K_ENUM, .off = OFF(struct gateway_cfg, log_level),
	  .ev = log_levels },
	{ .name = "description", .type = K_TEXT },
	{ NULL },
};

/* Only checked where the zone database is installed: a bare box may lack it. */
static void check_timezone(struct ctx *c, yaml_node_t *v, const char *tz)
{
	struct stat st;
	char path[PATH_MAX], region[PATH_MAX + 32];
	const char *slash;
	struct sugg sg;

	if (strcmp(tz, "UTC") == 0 || stat(ZONEINFO, &st) < 0 || !S_ISDIR(st.st_mode))
		return;
	if (tz[0] != '/' && !strstr(tz, "..") &&
	    snprintf(path, sizeof path, "%s/%s", ZONEINFO, tz) < (int)sizeof path &&
	    stat(path, &st) == 0 && S_ISREG(st.st_mode))
		return;
	sugg_init(&sg, tz);
	if ((slash = strrchr(tz, '/')) && !strstr(tz, "..") && tz[0] != '/') {
		char pre[PATH_MAX];
		snprintf(pre, sizeof pre, "%.*s", (int)(slash - tz + 1), tz);
		snprintf(region, sizeof region, "%s/%s", ZONEINFO, pre);
		sugg_dir(&sg, region, NULL, pre);
	} else {
		sugg_dir(&sg, ZONEINFO, NULL, "");
	}
	if (sg.best[0])
		c_err(c, v, "timezone '%s' is not a known time zone%s", q(c, tz),
		      sugg_text(&sg, NULL));
	else
		c_err(c, v, "timezone '%s' is not a known time zone (expected a name from the "
		      "zone database, such as Asia/Shanghai)", q(c, tz));
}

static void gateway_parse(struct ctx *root, yaml_node_t *m)
{
	struct ld *ld = root->ld;
	struct gateway_cfg *g = &ld->cfg->gateway;
	yaml_node_t *seen[MAXKEYS], *v;
	struct ctx c;

	if (!is_map(root, m, "gateway"))
		return;
	ctx_sub(&c, root, "", "gateway");
	keys_walk(&c, m, gateway_keys, g, seen);
	if ((v = seen_of(gateway_keys, seen, "timezone")) && g->timezone)
		check_timezone(&c, v, g->timezone);
	path_resolve(ld, &g->data_dir);
}

/* ---- uplink --------------------------------------------------------------------------------- */

static void qos_fn(struct ctx *c, const struct key *k, yaml_node_t *v, void *obj)
{
	struct uplink_cfg *u = obj;
	const char *name = kn(c, k->name), *s = scalar(c, v, name);
	int64_t n;

	if (!s)
		return;
	if (parse_int(s, &n) < 0)
		c_err(c, v, "%s '%s' is not a whole number (expected 1 or 2)", name, q(c, s));
	else if (n == 0)
		c_err(c, v, "%s 0 is not allowed: the outbox deletes a reading only when the broker "
		      "acknowledges it, and QoS 0 has no acknowledgement (use 1 or 2)", name);
	else if (n != 1 && n != 2)
		c_err(c, v, "%s %s is out of range (expected 1 or 2)", name, q(c, s));
	else
		u->qos = (int)n;
}

static const struct key uplink_keys[] = {
	{ .name = "host", .type = K_STR, .off = OFF(struct uplink_cfg, host), .flags = KF_REQ },
	{ .name = "port", .type = K_INT, .off = OFF(struct uplink_cfg, port), .min = 1,
	  .max = 65535 },
	{ .name = "protocol", .type = K_ENUM, .off = OFF(struct uplink_cfg, protocol),
	  .ev = protocols },
	{ .name = "client_id", .type = K_STR, .off = OFF(struct uplink_cfg, client_id) },
	{ .name = "username", .type = K_STR, .off = OFF(struct uplink_cfg, username) },
	{ .name = "password_file", .type = K_STR, .off = OFF(struct uplink_cfg, password_file) },
	{ .name = "tls", .type = K_NODE },
	{ .name = "topic_prefix", .type = K_STR, .off = OFF(struct uplink_cfg, topic_prefix) },
	{ .name = "qos", .type = K_FN, .fn = qos_fn },
	{ .name = "keepalive", .type = K_DUR, .off = OFF(struct uplink_cfg, keepalive_ms),
	  .min = 5 * SEC_MS, .max = 65535.0 * SEC_MS },
	{ .name = "inflight", .type = K_INT, .off = OFF(struct uplink_cfg, inflight), .min = 1,
	  .max = 65535 },
	{ .name = "health_interval", .type = K_DUR,
	  .off = OFF(struct uplink_cfg, health_interval_ms), .min = SEC_MS, .max = DAY_MS },
	{ NULL },
};

static const struct key tls_keys[] = {
	{ .name = "ca_file", .type = K_STR, .off = OFF(struct uplink_cfg, ca_file) },
	{ .name = "cert_file", .type = K_STR, .off = OFF(struct uplink_cfg, cert_file) },
	{ .name = "key_file", .type = K_STR, .off = OFF(struct uplink_cfg, key_file) },
	{ NULL },
};

/* A host name or address; the port goes in port:, IPv6 without brackets. */
static void check_host(struct ctx *c, yaml_node_t *v, const char *key, const char *host)
{
	const char *colon;

	if (!v || !host)
		return;
	colon = strchr(host, ':');
	if (strpbrk(host, " \t/"))
		c_err(c, v, "%s '%s' is not a host name or address", key, q(c, host));
	else if (host[0] == '[')
		c_err(c, v, "%s '%s': write an IPv6 address without brackets, in quotes "
		      "(\"2001:db8::1\")", key, q(c, host));
	else if (colon && !strchr(colon + 1, ':'))
		c_err(c, v, "%s '%s' includes a port: give the port in port:", key, q(c, host));
}

static void check_topic_prefix(struct ctx *c, yaml_node_t *v, const char *t)
{
	size_t n = strlen(t);

	if (strpbrk(t, "+#"))
		c_err(c, v, "topic_prefix '%s' must not contain the MQTT wildcards + or #", q(c, t));
	else if (t[0] == '/' || t[n - 1] == '/')
		c_err(c, v, "topic_prefix '%s' must not begin or end with '/'", q(c, t));
	else if (strstr(t, "//"))
		c_err(c, v, "topic_prefix '%s' has an empty level ('//')", q(c, t));
	else if (t[0] == '$')
		c_err(c, v, "topic_prefix '%s' must not begin with '$' (topics beginning with $ "
		      "belong to the broker)", q(c, t));
}

static void uplink_parse(struct ctx *root, yaml_node_t *m)
{
	struct ld *ld = root->ld;
	struct uplink_cfg *u = &ld->cfg->uplink;
	yaml_node_t *seen[MAXKEYS], *tls_seen[MAXKEYS], *v;
	struct ctx c, t;
	bool b;

	if (!is_map(root, m, "uplink"))
		return;
	u->loc = (struct src_loc){ root->d->file, (int)m->start_mark.line + 1,
				   (int)m->start_mark.column + 1 };
	ctx_sub(&c, root, "", "uplink");
	keys_walk(&c, m, uplink_keys, u, seen);
	check_host(&c, seen_of(uplink_keys, seen, "host"), "host", u->host);
	if ((v = seen_of(uplink_keys, seen, "topic_prefix")) && u->topic_prefix)
		check_topic_prefix(&c, v, u->topic_prefix);
	check_file(&c, seen_of(uplink_keys, seen, "password_file"), "password_file",
		   &u->password_file, true);
	if ((v = seen_of(uplink_keys, seen, "tls"))) {
		/* tls: true (the system's CAs), or a block naming the files */
		if (v->type == YAML_SCALAR_NODE && !is_null(v) && parse_bool(sval(v), &b) == 0) {
			u->tls = b;
		} else if (is_map(&c, v, "tls")) {
			u->tls = true;
			ctx_sub(&t, &c, "tls.", "uplink");
			keys_walk(&t, v, tls_keys, u, tls_seen);
			check_file(&t, seen_of(tls_keys, tls_seen, "ca_file"), "tls.ca_file",
				   &u->ca_file, false);
			check_file(&t, seen_of(tls_keys, tls_seen, "cert_file"), "tls.cert_file",
				   &u->cert_file, false);
			/* the client key is as secret as the password */
			check_file(&t, seen_of(tls_keys, tls_seen, "key_file"), "tls.key_file",
				   &u->key_file, true);
			if (!u->cert_file != !u->key_file)
				c_err(&c, v, "tls.cert_file and tls.key_file go together (a client "
				      "certificate needs its key)");
		}
	}
	if ((v = seen_of(uplink_keys, seen, "password_file")) && !u->username)
		c_err(&c, v, "password_file needs a username (MQTT sends a password only "
		      "with a user name)");
	if (!seen_of(uplink_keys, seen, "port"))
		u->port = u->tls ? 8883 : 1883;
}

/* ---- buffer ----------------------------------------------------------------------------- */

static const struct key buffer_keys[] = {
	{ .name = "max_size", .type = K_SIZE, .off = OFF(struct buffer_cfg, max_size), .min = MIB },
	{ .name = "durability", .type = K_ENUM, .off = OFF(struct buffer_cfg, durability),
	  .ev = durabilities },
	{ .name = "keep_sent", .type = K_DUR, .off = OFF(struct buffer_cfg, keep_sent_ms),
	  .max = 3650.0 * DAY_MS },
	{ NULL },
};

static void buffer_parse(struct ctx *root, yaml_node_t *m)
{
	yaml_node_t *seen[MAXKEYS];
	struct ctx c;

	if (!is_map(root, m, "buffer"))
		return;
	ctx_sub(&c, root, "", "buffer");
	keys_walk(&c, m, buffer_keys, &root->ld->cfg->buffer, seen);
}

/* ---- buses ------------------------------------------------------------------------------- */

static void baud_fn(struct ctx *c, const struct key *k, yaml_node_t *v, void *obj)
{
	static const unsigned rates[] = { 1200, 2400, 4800, 9600, 19200, 38400, 57600,
					  115200, 230400, 460800, 921600 };
	struct bus_cfg *b = obj;
	const char *name = kn(c, k->name), *s = scalar(c, v, name);
	int64_t n;

	if (!s)
		return;
	if (parse_int(s, &n) < 0) {
		c_err(c, v, "%s '%s' is not a whole number", name, q(c, s));
		return;
	}
	for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++)
		if (n == rates[i]) {
			b->baud = rates[i];
			return;
		}
	c_err(c, v, "%s %s is not a standard rate (expected 1200, 2400, 4800, 9600, 19200, 38400, "
	      "57600, 115200, 230400, 460800 or 921600)", name, q(c, s));
}

static const struct key bus_keys[] = {
	{ .name = "id", .type = K_ID, .off = OFF(struct bus_cfg, id), .flags = KF_REQ },
	{ .name = "tcp", .type = K_NODE },
	{ .name = "rtu", .type = K_NODE },
	{ .name = "rtu_over_tcp", .type = K_NODE },
	{ .name = "timeout", .type = K_DUR, .off = OFF(struct bus_cfg, timeout_ms), .min = 10,
	  .max = 60 * SEC_MS },
	{ .name = "guard", .type = K_DUR, .off = OFF(struct bus_cfg, guard_ms), .min = 0,
	  .max = 10 * SEC_MS },
	{ .name = "description", .type = K_TEXT },
	{ NULL },
};

static const struct key tcp_keys[] = {
	{ .name = "host", .type = K_STR, .off = OFF(struct bus_cfg, host), .flags = KF_REQ },
	{ .name = "port", .type = K_INT, .off = OFF(struct bus_cfg, port), .min = 1, .max = 65535 },
	{ NULL },
};

static const struct key rtu_keys[] = {
	{ .name = "device", .type = K_STR, .off = OFF(struct bus_cfg, device), .flags = KF_REQ },
	{ .name = "baud", .type = K_FN, .fn = baud_fn },
	{ .name = "parity", .type = K_ENUM, .off = OFF(struct bus_cfg, parity), .ev = parities },
	{ .name = "data_bits", .type = K_INT, .off = OFF(struct bus_cfg, data_bits), .min = 7,
	  .max = 8 },
	{ .name = "stop_bits", .type = K_INT, .off = OFF(struct bus_cfg, stop_bits), .min = 1,
	  .max = 2 },
	{ .name = "rs485", .type = K_BOOL, .off = OFF(struct bus_cfg, rs485) },
	{ NULL },
};

static const char *const transports[] = { "tcp", "rtu", "rtu_over_tcp" };

/* The serial device may be a USB adapter not plugged in yet: a warning, not an error. */
static void check_serial(struct ctx *c, yaml_node_t *v, const char *dev)
{
	struct stat st;

	if (!v || !dev)
		return;
	if (stat(dev, &st) < 0)
		c_warn(c, v, "rtu.device '%s' does not exist (yet); sluiced will keep trying to "
		       "open it", q(c, dev));
	else if (!S_ISCHR(st.st_mode))
		c_warn(c, v, "rtu.device '%s' is not a serial device (character device)",
		       q(c, dev));
}

static void bus_parse(struct ctx *root, yaml_node_t *m, size_t idx)
{
	struct ld *ld = root->ld;
	struct config *cfg = ld->cfg;
	struct bus_cfg *b = &cfg->buses[cfg->nbuses];
	yaml_node_t *seen[MAXKEYS], *tseen[MAXKEYS], *tv = NULL, *v;
	const char *id = peek_scalar(root->d, m, "id");
	int ntrans = 0;
	struct ctx c, t;
	char what[40];

	snprintf(what, sizeof what, "buses[%zu]", idx);
	if (!is_map(root, m, what))
		return;
	cfg->nbuses++;
	*b = (struct bus_cfg){ .kind = -1, .port = 502, .baud = 9600, .parity = 'N',
			       .data_bits = 8, .stop_bits = 1, .timeout_ms = SEC_MS };
	b->loc = (struct src_loc){ root->d->file, (int)m->start_mark.line + 1,
				   (int)m->start_mark.column + 1 };
	if (id)
		ctx_sub(&c, root, "", "buses[%zu] (%s)", idx, q(root, id));
	else
		ctx_sub(&c, root, "", "buses[%zu]", idx);
	keys_walk(&c, m, bus_keys, b, seen);

	if ((v = seen_of(bus_keys, seen, "id")) && b->id[0]) {
		ld->bus_idloc[idx] = (struct src_loc){ root->d->file, (int)v->start_mark.line + 1,
						       (int)v->start_mark.column + 1 };
		for (size_t i = 0; i + 1 < cfg->nbuses; i++)
			if (strcmp(cfg->buses[i].id, b->id) == 0) {
				c_err(&c, v, "duplicate bus id '%s' (first at line %d)", q(&c, b->id),
				      ld->bus_idloc[i].line);
				break;
			}
	}
	for (int i = 0; i < 3; i++) {
		yaml_node_t *x = seen_of(bus_keys, seen, transports[i]);
		if (!x)
			continue;
		if (ntrans++) {
			c_err(&c, x, "give only one of tcp:, rtu: or rtu_over_tcp: (found %s: and %s:)",
			      transports[b->kind], transports[i]);
			continue;
		}
		b->kind = i;
		tv = x;
	}
	if (!ntrans) {
		c_err(&c, m, "missing the transport: give one of tcp:, rtu: or rtu_over_tcp:");
		return;
	}
	if (!seen_of(bus_keys, seen, "guard") && b->kind != BUS_TCP)
		b->guard_ms = 5;
	if (!is_map(&c, tv, transports[b->kind]))
		return;
	if (b->kind == BUS_RTU) {
		ctx_sub(&t, &c, "rtu.", "%s", c.where);
		keys_walk(&t, tv, rtu_keys, b, tseen);
		check_serial(&t, seen_of(rtu_keys, tseen, "device"), b->device);
		for (size_t i = 0; b->device && i + 1 < cfg->nbuses; i++)
			if (cfg->buses[i].device && strcmp(cfg->buses[i].device, b->device) == 0)
				c_err(&t, seen_of(rtu_keys, tseen, "device"), "rtu.device '%s' is "
				      "already the line of bus %s (one bus per serial line)",
				      q(&c, b->device), q(&c, cfg->buses[i].id));
	} else {
		ctx_sub(&t, &c, b->kind == BUS_TCP ? "tcp." : "rtu_over_tcp.", "%s", c.where);
		keys_walk(&t, tv, tcp_keys, b, tseen);
		check_host(&t, seen_of(tcp_keys, tseen, "host"), kn(&t, "host"), b->host);
	}
}

/* ---- points ------------------------------------------------------------------------------- */

struct pointset {
	struct point_def *p;
	struct src_loc *loc;
	bool *valid;         /* parsed without error: worth checking for overlaps */
	size_t n, cap;
	size_t nprofile;     /* the first nprofile came from the device's profile */
	const char *profile; /* its name, for messages */
};

static int ps_add(struct ld *ld, struct pointset *ps, const struct point_def *p,
		  const struct src_loc *loc, bool valid)
{
	if (ps->n == ps->cap) {
		size_t cap = ps->cap ? ps->cap * 2 : 8;
		struct point_def *np = realloc(ps->p, cap * sizeof *np);
		if (np)
			ps->p = np;
		struct src_loc *nl = realloc(ps->loc, cap * sizeof *nl);
		if (nl)
			ps->loc = nl;
		bool *nv = realloc(ps->valid, cap * sizeof *nv);
		if (nv)
			ps->valid = nv;
		if (!np || !nl || !nv) {
			ld->oom = true;
			return -1;
		}
		ps->cap = cap;
	}
	ps->p[ps->n] = *p;
	ps->loc[ps->n] = *loc;
	ps->valid[ps->n] = valid;
	ps->n++;
	return 0;
}

static const struct key point_keys[] = {
	{ .name = "table", .type = K_ENUM, .off = OFF(struct point_def, table), .ev = tables,
	  .flags = KF_REQ },
	{ .name = "address", .type = K_INT, .off = OFF(struct point_def, address), .min = 0,
	  .max = 65535, .flags = KF_REQ },
	{ .name = "type", .type = K_ENUM, .off = OFF(struct point_def, type), .ev = types,
	  .flags = KF_REQ },
	{ .name = "bit", .type = K_INT, .off = OFF(struct point_def, bit), .min = 0, .max = 15 },
	{ .name = "length", .type = K_INT, .off = OFF(struct point_def, length), .min = 1,
	  .max = POINT_STRING_MAX_REGS },
	{ .name = "byte_order", .type = K_ENUM, .off = OFF(struct point_def, byte_order),
	  .ev = orders },
	{ .name = "word_order", .type = K_ENUM, .off = OFF(struct point_def, word_order),
	  .ev = orders },
	{ .name = "scale", .type = K_NUM, .off = OFF(struct point_def, scale),
	  .flags = KF_NONZERO },
	{ .name = "offset", .type = K_NUM, .off = OFF(struct point_def, offset) },
	{ .name = "unit", .type = K_CHARS, .off = OFF(struct point_def, unit) },
	{ .name = "writable", .type = K_BOOL, .off = OFF(struct point_def, writable) },
	{ .name = "description", .type = K_TEXT },
	{ NULL },
};

/* What the fields of one point say together; each key alone was checked by the walk. */
static void point_check(struct ctx *c, yaml_node_t **seen, struct point_def *p)
{
	yaml_node_t *vtype = seen_of(point_keys, seen, "type");
	yaml_node_t *vtable = seen_of(point_keys, seen, "table");
	yaml_node_t *v;
	bool bits = p->table == MB_COIL || p->table == MB_DISCRETE;
	unsigned width;

	/* a table or type that did not parse was reported; what follows would be noise */
	if (!vtype || !vtable || (unsigned)p->table > MB_HOLDING || (unsigned)p->type > PT_STRING)
		return;
	if (bits && p->type != PT_BOOL)
		c_err(c, vtype, "type %s cannot be read from a %s: %ss hold single bits (use type "
		      "bool)", enum_name(types, p->type), table_word(p->table),
		      table_word(p->table));
	if ((v = seen_of(point_keys, seen, "bit"))) {
		if (p->type != PT_BOOL)
			c_err(c, v, "bit is only for type bool (a bool inside a register)");
		else if (bits)
			c_err(c, v, "bit is only for input and holding registers: a %s is a single "
			      "bit already", table_word(p->table));
	}
	if ((v = seen_of(point_keys, seen, "length")) && p->type != PT_STRING)
		c_err(c, v, "length is only for type string");
	if (p->type == PT_STRING && !seen_of(point_keys, seen, "length"))
		c_err(c, vtype, "a string point needs length: (its size in registers, 1..%d)",
		      POINT_STRING_MAX_REGS);
	if (p->type == PT_BOOL || p->type == PT_STRING) {
		if ((v = seen_of(point_keys, seen, "scale")))
			c_err(c, v, "scale applies to numbers, not to type %s",
			      enum_name(types, p->type));
		if ((v = seen_of(point_keys, seen, "offset")))
			c_err(c, v, "offset applies to numbers, not to type %s",
			      enum_name(types, p->type));
	}
	if ((v = seen_of(point_keys, seen, "writable")) && p->writable &&
	    (p->table == MB_INPUT || p->table == MB_DISCRETE))
		c_err(c, v, "writable: %ss are read-only (only coil and holding points can be "
		      "written)", table_word(p->table));
	width = bits ? 1 : p->type == PT_STRING ? p->length : codec_type_regs(p->type);
	if (width && seen_of(point_keys, seen, "address") && (unsigned)p->address + width > 65536)
		c_err(c, seen_of(point_keys, seen, "address"), "the point runs past the last "
		      "address: %s %u-%u (addresses end at 65535)", table_words(p->table),
		      (unsigned)p->address, (unsigned)p->address + width - 1);
}

/*
 * Read a points: mapping (name -> point) into ps. owner names the device ("device
 * pump-1", or "devices[3]" without an id) for inline points; NULL in a profile (the
 * file names the profile).
 */
static void points_parse(struct ctx *c, yaml_node_t *m, const char *owner, struct pointset *ps)
{
	struct ld *ld = c->ld;

	if (!is_map(c, m, "points"))
		return;
	for (size_t i = 0; i < map_len(m); i++) {
		yaml_node_t *k, *v, *seen[MAXKEYS];
		struct point_def p = { .bit = -1, .scale = 1.0 };
		struct src_loc loc;
		size_t before = ld->nerrors;
		const char *name;
		bool clash = false;
		struct ctx pc;

		if (!pair_get(c, m, i, "point", &k, &v))
			continue;
		/* out of range until the walk sets them: see point_check */
		p.table = (enum mb_table)(MB_HOLDING + 1);
		p.type = (enum pt_type)(PT_STRING + 1);
		name = sval(k);
		if (!config_id_valid(name) || strlen(name) >= POINT_NAME_MAX) {
			c_err(c, k, "point name '%s' is not valid: use only letters, digits, '-' and "
			      "'_' (at most %d bytes)", q(c, name), POINT_NAME_MAX - 1);
			continue;
		}
		for (size_t j = 0; j < ps->nprofile; j++)
			if (strcmp(ps->p[j].name, name) == 0) {
				c_err(c, k, "point '%s' is already defined by profile %s (%s:%d)",
				      q(c, name), q(c, ps->profile), ps->loc[j].file, ps->loc[j].line);
				clash = true;
			}
		if (clash)
			continue;
		if (owner)
			ctx_sub(&pc, c, "", "point '%s' of %s", name, q(c, owner));
		else
			ctx_sub(&pc, c, "", "point '%s'", name);
		if (v->type != YAML_MAPPING_NODE) {
			char what[POINT_NAME_MAX + 16];
			snprintf(what, sizeof what, "point '%s'", name);
			want(c, v, what, "a mapping (table, address, type, ...)");
			continue;
		}
		keys_walk(&pc, v, point_keys, &p, seen);
		point_check(&pc, seen, &p);
		memcpy(p.name, name, strlen(name) + 1);
		loc = (struct src_loc){ c->d->file, (int)v->start_mark.line + 1,
					(int)v->start_mark.column + 1 };
		ps_add(ld, ps, &p, &loc, ld->nerrors == before);
	}
}

static void fmt_range(char *buf, size_t len, unsigned a, unsigned w)
{
	if (w <= 1)
		snprintf(buf, len, "%u", a);
	else
		snprintf(buf, len, "%u-%u", a, a + w - 1);
}

/*
 * Points of one table must not share registers (two readings of one quantity are a
 * mistake in the map), except bools naming different bits of one register. A point is
 * reported once, at its definition, with the first earlier point it overlaps (moving it
 * fixes them all); only points at index >= from are checked (the earlier ones were
 * checked where they were defined: the profile file).
 */
static void overlap_check(struct ctx *c, const struct pointset *ps, size_t from)
{
	for (size_t j = from; j < ps->n; j++) {
		const struct point_def *b = &ps->p[j];
		if (!ps->valid[j])
			continue;
		for (size_t i = 0; i < j; i++) {
			const struct point_def *a = &ps->p[i];
			unsigned wa, wb;
			char ra[24], rb[24], other[POINT_NAME_MAX + 80];

			if (!ps->valid[i] || a->table != b->table)
				continue;
			wa = codec_width(a);
			wb = codec_width(b);
			if ((unsigned)a->address + wa <= b->address ||
			    (unsigned)b->address + wb <= a->address)
				continue;
			if (i < ps->nprofile && j >= ps->nprofile)
				snprintf(other, sizeof other, "'%s' of profile %s", a->name,
					 ps->profile);
			else
				snprintf(other, sizeof other, "'%s'", a->name);
			if (a->type == PT_BOOL && b->type == PT_BOOL && a->bit >= 0 && b->bit >= 0 &&
			    a->address == b->address) {
				if (a->bit != b->bit)
					continue;
				c_err_loc(c, &ps->loc[j], "point '%s' overlaps point %s (both are bit "
					  "%d of %s %u)", b->name, other, b->bit,
					  table_word(b->table), (unsigned)b->address);
				break;
			}
			fmt_range(rb, sizeof rb, b->address, wb);
			fmt_range(ra, sizeof ra, a->address, wa);
			if (strcmp(ra, rb) == 0)
				c_err_loc(c, &ps->loc[j], "point '%s' overlaps point %s (both use %s %s)",
					  b->name, other, wb > 1 ? table_words(b->table) :
					  table_word(b->table), rb);
			else
				c_err_loc(c, &ps->loc[j], "point '%s' overlaps point %s (%s %s and %s)",
					  b->name, other, table_words(b->table), rb, ra);
			break;
		}
	}
}

/* ---- profiles --------------------------------------------------------------------------- */

static const struct key profile_keys[] = {
	{ .name = "profile", .type = K_NODE, .flags = KF_REQ },
	{ .name = "name", .type = K_STR, .off = OFF(struct profile, display) },
	{ .name = "description", .type = K_TEXT },
	{ .name = "source", .type = K_TEXT },
	{ .name = "points", .type = K_NODE, .flags = KF_REQ },
	{ .name = "max_registers", .type = K_INT, .off = OFF(struct profile, max_registers),
	  .min = 1, .max = 125, .has = HAS(struct profile, has_max_registers) },
	{ .name = "max_gap", .type = K_INT, .off = OFF(struct profile, max_gap), .min = 0,
	  .max = 125, .has = HAS(struct profile, has_max_gap) },
	{ NULL },
};

/* The directories searched after devices/ beside the config, in order. */
static int ld_dirs(struct ld *ld, const struct config_opts *opts)
{
	const char *path = opts ? opts->profile_path : NULL;
	char *copy, *save = NULL;

	if (!path)
		path = getenv("SLUICE_PROFILE_PATH");
	if (!path || !*path)
		path = SLUICE_DATADIR "/devices";
	if (!(copy = xstrdup(ld, path)))
		return -1;
	for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
		char **d = realloc(ld->pdirs, (ld->npdirs + 1) * sizeof *d);
		if (!d) {
			ld->oom = true;
			break;
		}
		ld->pdirs = d;
		if (!(d[ld->npdirs] = xstrdup(ld, dir)))
			break;
		ld->npdirs++;
	}
	free(copy);
	return ld->oom ? -1 : 0;
}

/* The file that holds profile name, or NULL. */
static char *profile_path(struct ld *ld, const char *name)
{
	size_t n = ld->npdirs + 1;

	for (size_t i = 0; i < n; i++) {
		const char *dir = i == 0 ? ld->devdir : ld->pdirs[i - 1];
		struct stat st;
		char *p;

		if (!dir)
			continue;
		if (asprintf(&p, "%s/%s.yaml", dir, name) < 0) {
			ld->oom = true;
			return NULL;
		}
		if (stat(p, &st) == 0 && S_ISREG(st.st_mode))
			return p;
		free(p);
	}
	return NULL;
}

static void profile_not_found(struct ctx *c, yaml_node_t *v, const char *name)
{
	struct ld *ld = c->ld;
	char dirs[600];
	size_t n = 0;
	struct sugg sg;

	sugg_init(&sg, name);
	dirs[0] = '\0';
	for (size_t i = 0; i < ld->npdirs + 1; i++) {
		const char *dir = i == 0 ? ld->devdir : ld->pdirs[i - 1];
		if (!dir || n >= sizeof dirs)
			continue;
		n += (size_t)snprintf(dirs + n, sizeof dirs - n, "%s%s", n ? ", " : "", dir);
		sugg_dir(&sg, dir, ".yaml", "");
	}
	c_err(c, v, "profile '%s' not found: no file %s.yaml in %s%s", q(c, name), q(c, name), dirs,
	      sugg_text(&sg, NULL));
}

/* Read profile file path into pr; errors are located in that file. */
static void profile_read(struct ld *ld, struct profile *pr, const char *path)
{
	struct ydoc d;
	struct ctx c;
	yaml_node_t *root, *seen[MAXKEYS], *v;
	struct pointset ps = { 0 };
	size_t before = ld->nerrors;
	const char *s;

	pr->found = true;
	if (ydoc_load(ld, path, &d) < 0)
		goto done;
	memset(&c, 0, sizeof c);
	c.ld = ld;
	c.d = &d;
	c.prefix = "";
	root = yaml_document_get_root_node(&d.doc);
	if (!is_map(&c, root, "a profile"))
		goto done;
	keys_walk(&c, root, profile_keys, pr, seen);
	if ((v = seen_of(profile_keys, seen, "profile")) && (s = scalar(&c, v, "profile")) &&
	    strcmp(s, pr->name) != 0)
		c_err(&c, v, "profile '%s' does not match the file's name: a profile is found by "
		      "its file name, so this file must say profile: %s", q(&c, s), q(&c, pr->name));
	if ((v = seen_of(profile_keys, seen, "points"))) {
		points_parse(&c, v, NULL, &ps);
		overlap_check(&c, &ps, 0);
	}
	pr->points = ps.p;
	pr->locs = ps.loc;
	pr->valid = ps.valid;
	pr->n = ps.n;
done:
	ydoc_free(&d);
	pr->ok = !ld->oom && ld->nerrors == before;
}

/* The profile called name, read on first use; NULL when no file has that name. */
static struct profile *profile_get(struct ld *ld, const char *name)
{
	struct profile *pr, *np;
	char *path;

	for (size_t i = 0; i < ld->nprofiles; i++)
		if (strcmp(ld->profiles[i].name, name) == 0)
			return ld->profiles[i].found ? &ld->profiles[i] : NULL;
	if (!(np = realloc(ld->profiles, (ld->nprofiles + 1) * sizeof *np))) {
		ld->oom = true;
		return NULL;
	}
	ld->profiles = np;
	pr = &ld->profiles[ld->nprofiles];
	memset(pr, 0, sizeof *pr);
	if (!(pr->name = xstrdup(ld, name)))
		return NULL;
	ld->nprofiles++;
	if (!(path = profile_path(ld, name)))
		return NULL;
	profile_read(ld, pr, path);
	free(path);
	return pr;
}

static void profiles_free(struct ld *ld)
{
	for (size_t i = 0; i < ld->nprofiles; i++) {
		free(ld->profiles[i].name);
		free(ld->profiles[i].display);
		free(ld->profiles[i].points);
		free(ld->profiles[i].locs);
		free(ld->profiles[i].valid);
	}
	free(ld->profiles);
	ld->profiles = NULL;
	ld->nprofiles = 0;
}

/* ---- devices ---------------------------------------------------------------------------- */

static const struct key device_keys[] = {
	{ .name = "id", .type = K_ID, .off = OFF(struct device_cfg, id), .flags = KF_REQ },
	{ .name = "name", .type = K_STR, .off = OFF(struct device_cfg, name) },
	{ .name = "bus", .type = K_NODE, .flags = KF_REQ },
	{ .name = "unit_id", .type = K_NODE },
	{ .name = "profile", .type = K_NODE },
	{ .name = "points", .type = K_NODE },
	{ .name = "interval", .type = K_DUR, .off = OFF(struct device_cfg, interval_ms),
	  .min = 100, .max = DAY_MS },
	{ .name = "offline_after", .type = K_INT, .off = OFF(struct device_cfg, offline_after),
	  .min = 1, .max = 1000 },
	{ .name = "max_registers", .type = K_INT, .off = OFF(struct device_cfg, max_registers),
	  .min = 1, .max = 125 },
	{ .name = "max_gap", .type = K_INT, .off = OFF(struct device_cfg, max_gap), .min = 0,
	  .max = 125 },
	{ .name = "description", .type = K_TEXT },
	{ NULL },
};

static long find_bus(const struct config *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->nbuses; i++)
		if (strcmp(cfg->buses[i].id, id) == 0)
			return (long)i;
	return -1;
}

static void device_parse(struct ctx *root, yaml_node_t *m, size_t idx)
{
	struct ld *ld = root->ld;
	struct config *cfg = ld->cfg;
	size_t di = cfg->ndevices;
	struct device_cfg *dev = &cfg->devices[di];
	yaml_node_t *seen[MAXKEYS], *v;
	const char *id = peek_scalar(root->d, m, "id"), *s;
	struct pointset ps = { 0 };
	struct profile *pr = NULL;
	long bus = -1;
	struct ctx c;
	char what[40];

	snprintf(what, sizeof what, "devices[%zu]", idx);
	if (!is_map(root, m, what))
		return;
	cfg->ndevices++;
	*dev = (struct device_cfg){ .unit_id = 1, .interval_ms = 10 * SEC_MS, .offline_after = 3 };
	dev->loc = (struct src_loc){ root->d->file, (int)m->start_mark.line + 1,
				     (int)m->start_mark.column + 1 };
	if (id)
		ctx_sub(&c, root, "", "devices[%zu] (%s)", idx, q(root, id));
	else
		ctx_sub(&c, root, "", "devices[%zu]", idx);
	keys_walk(&c, m, device_keys, dev, seen);

	if ((v = seen_of(device_keys, seen, "id")) && dev->id[0]) {
		ld->dev_idloc[di] = (struct src_loc){ root->d->file, (int)v->start_mark.line + 1,
						      (int)v->start_mark.column + 1 };
		for (size_t i = 0; i < di; i++)
			if (strcmp(cfg->devices[i].id, dev->id) == 0) {
				c_err(&c, v, "duplicate device id '%s' (first at line %d)",
				      q(&c, dev->id), ld->dev_idloc[i].line);
				break;
			}
	}
	if ((v = seen_of(device_keys, seen, "bus")) && (s = scalar(&c, v, "bus"))) {
		if ((bus = find_bus(cfg, s)) < 0) {
			struct sugg sg;
			sugg_init(&sg, s);
			for (size_t i = 0; i < cfg->nbuses; i++)
				sugg_try(&sg, cfg->buses[i].id);
			c_err(&c, v, "bus '%s' does not exist%s", q(&c, s),
			      sugg_text(&sg, NULL));
		} else {
			dev->bus = (size_t)bus;
		}
	}
	if ((v = seen_of(device_keys, seen, "unit_id")) && (s = scalar(&c, v, "unit_id"))) {
		/* on a serial line 0 is broadcast and 248..255 reserved; a TCP gateway routes
		 * by any byte, and 255 is what many TCP-only devices expect */
		bool serial = bus >= 0 && cfg->buses[bus].kind != BUS_TCP;
		int lo = serial ? 1 : 0, hi = serial ? 247 : 255;
		int64_t n;
		if (parse_int(s, &n) < 0)
			c_err(&c, v, "unit_id '%s' is not a whole number", q(&c, s));
		else if (n < lo || n > hi)
			c_err(&c, v, "unit_id %s is out of range%s%s (expected %d..%d)", q(&c, s),
			      serial ? " for serial bus " : "", serial ? cfg->buses[bus].id : "", lo,
			      hi);
		else
			dev->unit_id = (uint8_t)n;
	}
	if ((v = seen_of(device_keys, seen, "profile")) && (s = scalar(&c, v, "profile"))) {
		setstr(ld, &dev->profile, s);
		if (strcmp(s, "sunspec") == 0) {
			dev->sunspec = true;
		} else if (!config_id_valid(s)) {
			c_err(&c, v, "profile '%s' is not a valid profile name (letters, digits, '-' "
			      "and '_')", q(&c, s));
			ld->dev_incomplete[di] = true;
		} else if (!(pr = profile_get(ld, s))) {
			if (!ld->oom)
				profile_not_found(&c, v, s);
			ld->dev_incomplete[di] = true;
		} else {
			if (!pr->ok)
				ld->dev_incomplete[di] = true;
			for (size_t i = 0; i < pr->n; i++)
				ps_add(ld, &ps, &pr->points[i], &pr->locs[i], pr->valid[i]);
			ps.nprofile = ps.n;
			ps.profile = pr->name;
		}
	} else if (v) {
		ld->dev_incomplete[di] = true;
	}
	if ((v = seen_of(device_keys, seen, "points"))) {
		size_t e = ld->nerrors;
		char owner[ID_MAX + 16];
		if (dev->id[0])
			snprintf(owner, sizeof owner, "device %s", dev->id);
		else
			snprintf(owner, sizeof owner, "%s", what);
		points_parse(&c, v, owner, &ps);
		if (ld->nerrors != e)
			ld->dev_incomplete[di] = true;
	}
	if (!seen_of(device_keys, seen, "profile") && !seen_of(device_keys, seen, "points")) {
		c_err(&c, m, "give profile: or points: (what to read from the device)");
		ld->dev_incomplete[di] = true;
	}
	overlap_check(&c, &ps, ps.nprofile);
	if (!seen_of(device_keys, seen, "max_registers"))
		dev->max_registers = pr && pr->has_max_registers ? pr->max_registers : 125;
	if (!seen_of(device_keys, seen, "max_gap"))
		dev->max_gap = pr && pr->has_max_gap ? pr->max_gap : 8;
	if (ps.n > 65535) {
		c_err(&c, m, "a device has at most 65535 points");
		ld->dev_incomplete[di] = true;
	}
	dev->points = ps.p;
	dev->point_locs = ps.loc;
	dev->npoints = ps.n;
	free(ps.valid);
}

/* ---- rules ------------------------------------------------------------------------------- */

static bool unit_in(const char *u, const char *const *set)
{
	for (; *set; set++)
		if (strcmp(u, *set) == 0)
			return true;
	return false;
}

static const char *const level_units[] = { "m", "cm", "mm", NULL };
static const char *const volume_units[] = { "m3", "m³", "L", NULL };
static const char *const flow_units[] = { "m3/h", "m³/h", "L/s", "L/min", NULL };

/*
 * Resolve "device.point" into r. Returns the point's definition, or NULL: for a SunSpec
 * device whose points are found at run time (r->point = -1), or after an error (*bad).
 */
static const struct point_def *ref_parse(struct ctx *c, yaml_node_t *v, const char *key,
					 bool writable, struct point_ref *r, bool *bad)
{
	struct ld *ld = c->ld;
	const struct config *cfg = ld->cfg;
	const char *s = scalar(c, v, key), *dot;
	const struct device_cfg *dev;
	char devid[ID_MAX];
	long di, pi;
	struct sugg sg;

	*bad = true;
	memset(r, 0, sizeof *r);
	if (!s)
		return NULL;
	r->loc = (struct src_loc){ c->d->file, (int)v->start_mark.line + 1,
				   (int)v->start_mark.column + 1 };
	dot = strchr(s, '.');
	if (!dot || dot == s || !dot[1]) {
		c_err(c, v, "%s '%s' is not a point reference (expected device.point, e.g. "
		      "booster-pump.pressure)", key, q(c, s));
		return NULL;
	}
	if ((size_t)(dot - s) >= sizeof devid) {
		c_err(c, v, "%s '%s': there is no such device", key, q(c, s));
		return NULL;
	}
	memcpy(devid, s, (size_t)(dot - s));
	devid[dot - s] = '\0';
	if ((di = config_find_device(cfg, devid)) < 0) {
		sugg_init(&sg, devid);
		for (size_t i = 0; i < cfg->ndevices; i++)
			sugg_try(&sg, cfg->devices[i].id);
		c_err(c, v, "%s '%s': there is no device '%s'%s", key, q(c, s), q(c, devid),
		      sugg_text(&sg, NULL));
		return NULL;
	}
	dev = &cfg->devices[di];
	r->device = (size_t)di;
	if (strlen(dot + 1) >= sizeof r->name || !config_id_valid(dot + 1)) {
		c_err(c, v, "%s '%s': '%s' is not a valid point name", key, q(c, s), q(c, dot + 1));
		return NULL;
	}
	strcpy(r->name, dot + 1);
	if ((pi = config_find_point(dev, r->name)) < 0) {
		if (dev->sunspec) {
			/* SunSpec points are named after discovery; writability is checked then */
			r->point = -1;
			*bad = false;
			return NULL;
		}
		if (ld->dev_incomplete[di])
			return NULL; /* its points could not all be read: that error suffices */
		sugg_init(&sg, r->name);
		for (size_t i = 0; i < dev->npoints; i++)
			sugg_try(&sg, dev->points[i].name);
		c_err(c, v, "%s '%s': device %s has no point '%s'%s", key, q(c, s), dev->id,
		      q(c, r->name), sugg_text(&sg, NULL));
		return NULL;
	}
	r->point = pi;
	if (writable && !dev->points[pi].writable) {
		c_err(c, v, "%s '%s': point %s of device %s is not writable (it needs writable: "
		      "true, on a coil or holding register)", key, q(c, s), r->name, dev->id);
		return NULL;
	}
	*bad = false;
	return &dev->points[pi];
}

/* A value an action may write: a number, or true/false for 1/0. */
static void value_fn(struct ctx *c, const struct key *k, yaml_node_t *v, void *obj)
{
	const char *name = kn(c, k->name), *s = scalar(c, v, name);
	double *p = field(obj, k);
	bool b;

	if (!s)
		return;
	if (parse_bool(s, &b) == 0)
		*p = b;
	else if (parse_num(s, p) < 0)
		c_err(c, v, "%s '%s' is not a number", name, q(c, s));
}

/* Does value fit the point it is written to? (value - offset) / scale in the raw type. */
static void check_write_value(struct ctx *c, yaml_node_t *v, const char *key,
			      const struct point_def *p, double value)
{
	double raw, lo, hi;

	if (p->type == PT_STRING) {
		c_err(c, v, "%s: point %s is a string; an action writes numbers", key, p->name);
		return;
	}
	if (p->type == PT_BOOL) {
		if (value != 0 && value != 1)
			c_err(c, v, "%s %g cannot be written to bool point %s (expected 0 or 1, or "
			      "false or true)", key, value, p->name);
		return;
	}
	switch (p->type) {
	case PT_INT16:
		lo = INT16_MIN, hi = INT16_MAX;
		break;
	case PT_UINT16:
		lo = 0, hi = UINT16_MAX;
		break;
	case PT_INT32:
		lo = INT32_MIN, hi = INT32_MAX;
		break;
	case PT_UINT32:
		lo = 0, hi = UINT32_MAX;
		break;
	case PT_INT64:
		lo = -9.2e18, hi = 9.2e18;
		break;
	case PT_UINT64:
		lo = 0, hi = 1.8e19;
		break;
	case PT_FLOAT32:
		lo = -3.4e38, hi = 3.4e38;
		break;
	default:
		return;
	}
	raw = (value - p->offset) / p->scale;
	if (p->type != PT_FLOAT32)
		raw = round(raw);
	if (raw < lo || raw > hi) {
		double a = lo * p->scale + p->offset, b = hi * p->scale + p->offset;
		c_err(c, v, "%s %g does not fit point %s (%s%s: expected %g..%g)", key, value,
		      p->name, enum_name(types, p->type),
		      p->scale != 1 || p->offset != 0 ? " with scale and offset" : "",
		      a < b ? a : b, a < b ? b : a);
	}
}

static const struct key fire_keys[] = {
	{ .name = "severity", .type = K_ENUM, .off = OFF(struct action_cfg, severity),
	  .ev = severities },
	{ .name = "write", .type = K_NODE, .flags = KF_REQ },
	{ .name = "value", .type = K_FN, .fn = value_fn, .off = OFF(struct action_cfg, value),
	  .flags = KF_REQ },
	{ NULL },
};

static const struct key resolve_keys[] = {
	{ .name = "write", .type = K_NODE, .flags = KF_REQ },
	{ .name = "value", .type = K_FN, .fn = value_fn, .off = OFF(struct action_cfg, value),
	  .flags = KF_REQ },
	{ NULL },
};

static void actions_parse(struct ctx *c, yaml_node_t *seq, const char *key, bool fire,
			  struct action_cfg **out, size_t *n)
{
	struct ld *ld = c->ld;
	const struct key *keys = fire ? fire_keys : resolve_keys;

	if (!is_list(c, seq, key))
		return;
	if (!(*out = xcalloc(ld, seq_len(seq), sizeof **out)))
		return;
	for (size_t i = 0; i < seq_len(seq); i++) {
		yaml_node_t *it = seq_item(c->d, seq, i), *seen[MAXKEYS], *v;
		struct action_cfg *a = &(*out)[*n];
		char prefix[64], what[48];
		const struct point_def *p;
		struct ctx ac;
		size_t before = ld->nerrors;
		bool bad;

		snprintf(what, sizeof what, "%s[%zu]", key, i);
		if (!is_map(c, it, what))
			continue;
		(*n)++;
		a->loc = (struct src_loc){ c->d->file, (int)it->start_mark.line + 1,
					   (int)it->start_mark.column + 1 };
		snprintf(prefix, sizeof prefix, "%s.", what);
		ctx_sub(&ac, c, prefix, "%s", c->where);
		keys_walk(&ac, it, keys, a, seen);
		if (!(v = seen_of(keys, seen, "write")))
			continue;
		p = ref_parse(&ac, v, kn(&ac, "write"), true, &a->target, &bad);
		if (p && ld->nerrors == before)
			check_write_value(&ac, seen_of(keys, seen, "value"), kn(&ac, "value"), p,
					  a->value);
	}
}

/* The unit a rule needs of a point; a SunSpec point (unknown yet) passes. */
static void check_unit(struct ctx *c, yaml_node_t *v, const char *key, const struct point_ref *r,
		       const struct point_def *p, bool level)
{
	const char *u;

	if (!p)
		return;
	u = p->unit;
	if (level ? unit_in(u, level_units) : unit_in(u, volume_units) || unit_in(u, flow_units))
		return;
	if (level)
		c_err(c, v, "%s '%s.%s' %s%s%s; a waterlogging rule needs a water level in m, cm "
		      "or mm", key, c->ld->cfg->devices[r->device].id, r->name,
		      *u ? "has unit '" : "has no unit", *u ? q(c, u) : "", *u ? "'" : "");
	else
		c_err(c, v, "%s '%s.%s' %s%s%s; a leakage rule needs a volume (m3, m³, L) or a flow "
		      "(m3/h, m³/h, L/s, L/min)", key, c->ld->cfg->devices[r->device].id, r->name,
		      *u ? "has unit '" : "has no unit", *u ? q(c, u) : "", *u ? "'" : "");
}

static void tod_fn(struct ctx *c, const struct key *k, yaml_node_t *v, void *obj)
{
	const char *name = kn(c, k->name), *s = scalar(c, v, name);

	if (s && config_parse_time_of_day(s, field(obj, k)) < 0)
		c_err(c, v, "%s '%s' is not a time of day (expected hours:minutes, e.g. \"02:00\")",
		      name, q(c, s));
}

static void power_fn(struct ctx *c, const struct key *k, yaml_node_t *v, void *obj)
{
	const char *name = kn(c, k->name), *s = scalar(c, v, name);
	double w;

	if (!s)
		return;
	if (config_parse_power(s, &w) < 0)
		c_err(c, v, "%s '%s' is not a power (expected a number and a unit: 800W, 30kW, "
		      "1.2MW)", name, q(c, s));
	else if (w <= 0)
		c_err(c, v, "%s must be more than 0", name);
	else
		*(double *)field(obj, k) = w;
}

#define RULE_COMMON_KEYS                                                                   \
	{ .name = "id", .type = K_ID, .off = OFF(struct rule_cfg, id), .flags = KF_REQ },  \
	{ .name = "kind", .type = K_NODE, .flags = KF_REQ },                               \
	{ .name = "name", .type = K_STR, .off = OFF(struct rule_cfg, name) },              \
	{ .name = "description", .type = K_TEXT },                                         \
	{ .name = "severity", .type = K_ENUM, .off = OFF(struct rule_cfg, severity),       \
	  .ev = severities },                                                              \
	{ .name = "for", .type = K_DUR, .off = OFF(struct rule_cfg, for_ms), .min = 0,     \
	  .max = 7.0 * DAY_MS },                                                           \
	{ .name = "hysteresis", .type = K_NUM, .off = OFF(struct rule_cfg, hysteresis),    \
	  .min = 0, .flags = KF_MIN },                                                     \
	{ .name = "on_fire", .type = K_NODE },                                             \
	{ .name = "on_resolve", .type = K_NODE }

static const struct key common_rule_keys[] = { RULE_COMMON_KEYS, { NULL } };

static const struct key threshold_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "point", .type = K_NODE, .flags = KF_REQ },
	{ .name = "above", .type = K_NUM, .off = OFF(struct rule_cfg, above),
	  .has = HAS(struct rule_cfg, has_above) },
	{ .name = "below", .type = K_NUM, .off = OFF(struct rule_cfg, below),
	  .has = HAS(struct rule_cfg, has_below) },
	{ NULL },
};

static const struct key waterlogging_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "point", .type = K_NODE, .flags = KF_REQ },
	{ .name = "levels", .type = K_NODE },
	{ .name = "rise", .type = K_NODE },
	{ .name = "spike", .type = K_NUM, .off = OFF(struct rule_cfg, spike), .min = 0,
	  .flags = KF_MIN },
	{ .name = "stuck", .type = K_NODE },
	{ NULL },
};

static const struct key leakage_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "inflow", .type = K_NODE, .flags = KF_REQ },
	{ .name = "outflow", .type = K_NODE },
	{ .name = "window", .type = K_DUR, .off = OFF(struct rule_cfg, window_ms),
	  .min = HOUR_MS, .max = 31.0 * DAY_MS },
	{ .name = "max_loss_ratio", .type = K_NUM, .off = OFF(struct rule_cfg, max_loss_ratio),
	  .min = 0, .max = 1, .flags = KF_XMIN | KF_XMAX },
	{ .name = "night", .type = K_NODE },
	{ .name = "burst", .type = K_NODE },
	{ .name = "rollover", .type = K_NUM, .off = OFF(struct rule_cfg, rollover), .min = 0,
	  .flags = KF_XMIN },
	{ NULL },
};

static const struct key pv_keys[] = {
	RULE_COMMON_KEYS,
	{ .name = "inverter", .type = K_NODE, .flags = KF_REQ },
	{ .name = "rated_power", .type = K_FN, .fn = power_fn,
	  .off = OFF(struct rule_cfg, rated_power_w) },
	{ .name = "daylight", .type = K_NODE },
	{ .name = "min_output_ratio", .type = K_NUM,
	  .off = OFF(struct rule_cfg, min_output_ratio), .min = 0, .max = 1,
	  .flags = KF_MIN | KF_MAX },
	{ .name = "power", .type = K_NODE },
	{ .name = "fault", .type = K_NODE },
	{ .name = "peer_ratio", .type = K_NUM, .off = OFF(struct rule_cfg, peer_ratio), .min = 0,
	  .max = 1, .flags = KF_XMIN | KF_MAX },
	{ NULL },
};

static const struct key levels_keys[] = {
	{ .name = "blue", .type = K_NUM, .off = OFF(struct rule_cfg, levels[SEV_BLUE]) },
	{ .name = "yellow", .type = K_NUM, .off = OFF(struct rule_cfg, levels[SEV_YELLOW]) },
	{ .name = "orange", .type = K_NUM, .off = OFF(struct rule_cfg, levels[SEV_ORANGE]) },
	{ .name = "red", .type = K_NUM, .off = OFF(struct rule_cfg, levels[SEV_RED]) },
	{ NULL },
};

static const struct key rise_keys[] = {
	{ .name = "by", .type = K_NUM, .off = OFF(struct rule_cfg, rise_by), .min = 0,
	  .flags = KF_REQ | KF_XMIN },
	{ .name = "within", .type = K_DUR, .off = OFF(struct rule_cfg, rise_within_ms),
	  .min = SEC_MS, .max = DAY_MS, .flags = KF_REQ },
	{ NULL },
};

static const struct key night_keys[] = {
	{ .name = "from", .type = K_FN, .fn = tod_fn, .off = OFF(struct rule_cfg, night_from_s),
	  .flags = KF_REQ },
	{ .name = "to", .type = K_FN, .fn = tod_fn, .off = OFF(struct rule_cfg, night_to_s),
	  .flags = KF_REQ },
	{ .name = "max_flow", .type = K_NUM, .off = OFF(struct rule_cfg, night_max_flow),
	  .min = 0, .flags = KF_MIN, .has = HAS(struct rule_cfg, has_night_max_flow) },
	{ .name = "baseline", .type = K_INT, .off = OFF(struct rule_cfg, night_baseline),
	  .min = 0, .max = 60 },
	{ .name = "ratio", .type = K_NUM, .off = OFF(struct rule_cfg, night_ratio), .min = 0,
	  .flags = KF_MIN },
	{ .name = "by", .type = K_NUM, .off = OFF(struct rule_cfg, night_by), .min = 0,
	  .flags = KF_MIN },
	{ .name = "weekly", .type = K_BOOL, .off = OFF(struct rule_cfg, night_weekly) },
	{ NULL },
};

static const struct key burst_keys[] = {
	{ .name = "ratio", .type = K_NUM, .off = OFF(struct rule_cfg, burst_ratio), .min = 0,
	  .flags = KF_MIN },
	{ .name = "by", .type = K_NUM, .off = OFF(struct rule_cfg, burst_by), .min = 0,
	  .flags = KF_MIN },
	{ .name = "for", .type = K_DUR, .off = OFF(struct rule_cfg, burst_for_ms), .min = 0,
	  .max = DAY_MS },
	{ .name = "days", .type = K_INT, .off = OFF(struct rule_cfg, burst_days), .min = 1,
	  .max = 28 },
	{ NULL },
};

static const struct key stuck_keys[] = {
	{ .name = "for", .type = K_DUR, .off = OFF(struct rule_cfg, stuck_for_ms),
	  .min = MIN_MS, .max = 31.0 * DAY_MS, .flags = KF_REQ },
	{ .name = "tolerance", .type = K_NUM, .off = OFF(struct rule_cfg, stuck_tolerance),
	  .min = 0, .flags = KF_MIN },
	{ NULL },
};

static const struct key daylight_keys[] = {
	{ .name = "from", .type = K_FN, .fn = tod_fn,
	  .off = OFF(struct rule_cfg, daylight_from_s), .flags = KF_REQ },
	{ .name = "to", .type = K_FN, .fn = tod_fn, .off = OFF(struct rule_cfg, daylight_to_s),
	  .flags = KF_REQ },
	{ NULL },
};

static void threshold_post(struct ctx *c, yaml_node_t *m, yaml_node_t **seen, struct rule_cfg *r);
static void waterlogging_post(struct ctx *c, yaml_node_t *m, yaml_node_t **seen,
			      struct rule_cfg *r);
static void leakage_post(struct ctx *c, yaml_node_t *m, yaml_node_t **seen, struct rule_cfg *r);
static void pv_post(struct ctx *c, yaml_node_t *m, yaml_node_t **seen, struct rule_cfg *r);

/* One row per rule kind, indexed by enum rule_kind. */
static const struct rule_spec {
	const struct key *keys;
	void (*post)(struct ctx *c, yaml_node_t *m, yaml_node_t **seen, struct rule_cfg *r);
} rule_specs[] = {
	[RULE_THRESHOLD] = { threshold_keys, threshold_post },
	[RULE_WATERLOGGING] = { waterlogging_keys, waterlogging_post },
	[RULE_LEAKAGE] = { leakage_keys, leakage_post },
	[RULE_PV] = { pv_keys, pv_post },
};

#define NKINDS (sizeof rule_specs / sizeof rule_specs[0])

/* A key of another kind of rule: say whose it is rather than "unknown". */
static bool rule_foreign(struct ctx *c, yaml_node_t *k)
{
	char kinds[80] = "";
	size_t n = 0;

	for (size_t i = 0; i < NKINDS; i++) {
		if ((int)i == c->kind)
			continue;
		for (const struct key *kk = rule_specs[i].keys; kk->name; kk++)
			if (strcmp(kk->name, sval(k)) == 0 && n < sizeof kinds)
				n += (size_t)snprintf(kinds + n, sizeof kinds - n, "%s%s",
						      n ? " and " : "", rule_kinds[i].name);
	}
	if (!n)
		return false;
	if (c->kind < 0)
		return true; /* the kind is wrong or missing: that error says enough */
	c_err(c, k, "key '%s' is not for %s rules (it belongs to %s rules)", q(c, sval(k)),
	      rule_kinds[c->kind].name, kinds);
	return true;
}

static struct point_ref *refs_parse(struct ctx *c, yaml_node_t *v, const char *key, size_t *n,
				    bool level)
{
	struct ld *ld = c->ld;
	size_t cnt = v->type == YAML_SEQUENCE_NODE ? seq_len(v) : 1;
	struct point_ref *refs;

	*n = 0;
	if (v->type == YAML_MAPPING_NODE || (v->type == YAML_SEQUENCE_NODE && cnt == 0) ||
	    is_null(v)) {
		want(c, v, key, "a device.point, or a list of them");
		return NULL;
	}
	if (!(refs = xcalloc(ld, cnt, sizeof *refs)))
		return NULL;
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = v->type == YAML_SEQUENCE_NODE ? seq_item(c->d, v, i) : v;
		const struct point_def *p;
		bool bad;

		p = ref_parse(c, it, key, false, &refs[*n], &bad);
		if (bad)
			continue;
		check_unit(c, it, key, &refs[*n], p, level);
		(*n)++;
	}
	return refs;
}

static void threshold_post(struct ctx *c, yaml_node_t *m, yaml_node_t **seen, struct rule_cfg *r)
{
	yaml_node_t *v;
	bool bad;

	if ((v = seen_of(threshold_keys, seen, "point"))) {
		ref_parse(c, v, "point", false, &r->point, &bad);
		r->has_point = !bad;
	}
	if (!seen_of(threshold_keys, seen, "above") && !seen_of(threshold_keys, seen, "below"))
		c_err(c, m, "a threshold rule needs above:, below: or both");
	else if (r->has_above && r->has_below && r->above <= r->below)
		c_err(c, seen_of(threshold_keys, seen, "above"), "above (%g) must be more than "
		      "below (%g), or the rule would always fire", r->above, r->below);
}

static void waterlogging_post(struct ctx *c, yaml_node_t *m, yaml_node_t **seen,
			      struct rule_cfg *r)
{
	yaml_node_t *v, *ls[MAXKEYS];
	const struct point_def *p;
	struct ctx sc;
	bool bad;

	if ((v = seen_of(waterlogging_keys, seen, "point"))) {
		p = ref_parse(c, v, "point", false, &r->point, &bad);
		r->has_point = !bad;
		if (!bad)
			check_unit(c, v, "point", &r->point, p, true);
	}
	if ((v = seen_of(waterlogging_keys, seen, "levels")) && is_map(c, v, "levels")) {
		int last = 0;
		ctx_sub(&sc, c, "levels.", "%s", c->where);
		keys_walk(&sc, v, levels_keys, r, ls);
		for (int g = SEV_BLUE; g <= SEV_RED; g++) {
			if (!ls[g - 1] || isnan(r->levels[g]))
				continue;
			if (last && r->levels[g] <= r->levels[last])
				c_err(c, ls[g - 1], "levels.%s %g must be higher than levels.%s %g "
				      "(the grades rise: blue, yellow, orange, red)",
				      severity_name(g), r->levels[g], severity_name(last),
				      r->levels[last]);
			last = g;
		}
		if (!map_len(v))
			c_err(c, v, "levels needs at least one of blue, yellow, orange, red");
	}
	if ((v = seen_of(waterlogging_keys, seen, "rise")) && is_map(c, v, "rise")) {
		ctx_sub(&sc, c, "rise.", "%s", c->where);
		keys_walk(&sc, v, rise_keys, r, ls);
		r->has_rise = true;
	}
	if ((v = seen_of(waterlogging_keys, seen, "stuck")) && is_map(c, v, "stuck")) {
		ctx_sub(&sc, c, "stuck.", "%s", c->where);
		keys_walk(&sc, v, stuck_keys, r, ls);
		r->has_stuck = true;
	}
	if (!seen_of(waterlogging_keys, seen, "levels") && !seen_of(waterlogging_keys, seen, "rise"))
		c_err(c, m, "a waterlogging rule needs levels: (or rise:)");
}

static void leakage_post(struct ctx *c, yaml_node_t *m, yaml_node_t **seen, struct rule_cfg *r)
{
	yaml_node_t *v, *ns[MAXKEYS];
	struct ctx sc;

	(void)m;
	if ((v = seen_of(leakage_keys, seen, "inflow")))
		r->inflow = refs_parse(c, v, "inflow", &r->ninflow, false);
	if ((v = seen_of(leakage_keys, seen, "outflow")))
		r->outflow = refs_parse(c, v, "outflow", &r->noutflow, false);
	if ((v = seen_of(leakage_keys, seen, "max_loss_ratio")) && !seen_of(leakage_keys, seen,
									    "outflow"))
		c_err(c, v, "max_loss_ratio compares inflow with outflow: give outflow: too");
	if (seen_of(leakage_keys, seen, "outflow"))
		r->has_max_loss_ratio = true; /* the plan's 8.5 % unless given */
	if ((v = seen_of(leakage_keys, seen, "night")) && is_map(c, v, "night")) {
		ctx_sub(&sc, c, "night.", "%s", c->where);
		r->night_from_s = r->night_to_s = -1; /* -1 until parsed */
		keys_walk(&sc, v, night_keys, r, ns);
		r->has_night = true;
		if (r->night_from_s >= 0 && r->night_from_s == r->night_to_s)
			c_err(c, ns[1], "night.to is the same time as night.from: the window is empty");
		/* a night check that names the keys of the nightly verdict gets that verdict */
		r->night_legacy = seen_of(night_keys, ns, "baseline") || seen_of(night_keys, ns, "ratio") ||
				  seen_of(night_keys, ns, "by") || seen_of(night_keys, ns, "weekly") ||
				  seen_of(night_keys, ns, "max_flow");
		if (r->night_legacy && !r->has_night_max_flow && r->night_baseline == 0)
			c_err(c, v, "night needs max_flow:, a baseline: of at least 1 night, or both");
	}
	if ((v = seen_of(leakage_keys, seen, "burst")) && is_map(c, v, "burst")) {
		ctx_sub(&sc, c, "burst.", "%s", c->where);
		keys_walk(&sc, v, burst_keys, r, ns);
		r->has_burst = true;
	}
}

static void pv_post(struct ctx *c, yaml_node_t *m, yaml_node_t **seen, struct rule_cfg *r)
{
	yaml_node_t *v, *ds[MAXKEYS];
	struct ctx sc;
	const char *s;
	long di;

	(void)m;
	if ((v = seen_of(pv_keys, seen, "inverter")) && (s = scalar(c, v, "inverter"))) {
		if ((di = config_find_device(c->ld->cfg, s)) < 0) {
			struct sugg sg;
			sugg_init(&sg, s);
			for (size_t i = 0; i < c->ld->cfg->ndevices; i++)
				sugg_try(&sg, c->ld->cfg->devices[i].id);
			c_err(c, v, "inverter '%s': there is no device '%s'%s", q(c, s), q(c, s),
			      sugg_text(&sg, NULL));
		} else {
			r->has_inverter = true;
			r->inverter = (size_t)di;
		}
	}
	for (int w = 0; w < 2; w++) {
		const char *key = w ? "fault" : "power";
		struct point_ref *ref = w ? &r->fault : &r->power;
		const struct point_def *p;
		bool bad;

		if (!(v = seen_of(pv_keys, seen, key)))
			continue;
		p = ref_parse(c, v, key, false, ref, &bad);
		if (bad)
			continue;
		if (r->has_inverter && ref->device != r->inverter)
			c_err(c, v, "%s '%s.%s' is not a point of the inverter %s", key,
			      c->ld->cfg->devices[ref->device].id, ref->name,
			      c->ld->cfg->devices[r->inverter].id);
		else if (!w && p && strcmp(p->unit, "W") != 0 && strcmp(p->unit, "kW") != 0)
			c_err(c, v, "power '%s.%s' %s%s%s; a pv rule needs a power in W or kW",
			      c->ld->cfg->devices[ref->device].id, ref->name,
			      *p->unit ? "has unit '" : "has no unit", *p->unit ? q(c, p->unit) : "",
			      *p->unit ? "'" : "");
		else if (w)
			r->has_fault = true;
		else
			r->has_power = true;
	}
	if (r->has_inverter && !c->ld->cfg->devices[r->inverter].sunspec &&
	    !seen_of(pv_keys, seen, "power"))
		c_err(c, m, "inverter %s is not a SunSpec device: give power: (its AC power point)",
		      c->ld->cfg->devices[r->inverter].id);
	if ((v = seen_of(pv_keys, seen, "daylight")) && is_map(c, v, "daylight")) {
		ctx_sub(&sc, c, "daylight.", "%s", c->where);
		r->daylight_from_s = r->daylight_to_s = -1; /* -1 until parsed */
		keys_walk(&sc, v, daylight_keys, r, ds);
		r->has_daylight = true;
		if (r->daylight_from_s >= 0 && r->daylight_to_s >= 0 &&
		    r->daylight_from_s >= r->daylight_to_s)
			c_err(c, ds[1], "daylight.to must be later than daylight.from");
	}
}

static void rule_parse(struct ctx *root, yaml_node_t *m, size_t idx)
{
	struct ld *ld = root->ld;
	struct config *cfg = ld->cfg;
	size_t ri = cfg->nrules;
	struct rule_cfg *r = &cfg->rules[ri];
	const char *id = peek_scalar(root->d, m, "id"), *s;
	const struct key *keys = common_rule_keys;
	yaml_node_t *seen[MAXKEYS], *v;
	struct ctx c;
	char what[40];

	snprintf(what, sizeof what, "alerts[%zu]", idx);
	if (!is_map(root, m, what))
		return;
	cfg->nrules++;
	*r = (struct rule_cfg){ .kind = -1, .severity = SEV_YELLOW, .window_ms = DAY_MS,
				.max_loss_ratio = 0.085, .min_output_ratio = 0.1, .spike = NAN,
				.night_baseline = 7, .night_ratio = 0.1, .night_allowance = 1.5,
				.night_decision = 6, .night_learn = 21, .night_pump_steps = true,
				.burst_ratio = 0.5,
				.burst_for_ms = HOUR_MS, .burst_days = 7, .peer_ratio = 0.5 };
	for (int g = 0; g < 5; g++)
		r->levels[g] = NAN;
	r->loc = (struct src_loc){ root->d->file, (int)m->start_mark.line + 1,
				   (int)m->start_mark.column + 1 };
	if (id)
		ctx_sub(&c, root, "", "alerts[%zu] (%s)", idx, q(root, id));
	else
		ctx_sub(&c, root, "", "alerts[%zu]", idx);
	c.foreign = rule_foreign;
	c.kind = -1;

	/* the kind decides which keys belong: read it first */
	if ((v = map_peek(c.d, m, "kind")) && (s = scalar(&c, v, "kind"))) {
		int k;
		if (enum_find(rule_kinds, s, &k) == 0) {
			r->kind = c.kind = k;
			keys = rule_specs[k].keys;
		} else {
			char list[80];
			struct sugg sg;
			sugg_init(&sg, s);
			for (size_t i = 0; i < NKINDS; i++)
				sugg_try(&sg, rule_kinds[i].name);
			c_err(&c, v, "kind '%s' is not one of %s%s", q(&c, s),
			      enum_list(rule_kinds, list, sizeof list), sugg_text(&sg, NULL));
		}
	}
	keys_walk(&c, m, keys, r, seen);
	if ((v = seen_of(keys, seen, "id")) && r->id[0]) {
		ld->rule_idloc[ri] = (struct src_loc){ root->d->file, (int)v->start_mark.line + 1,
						       (int)v->start_mark.column + 1 };
		for (size_t i = 0; i < ri; i++)
			if (strcmp(cfg->rules[i].id, r->id) == 0) {
				c_err(&c, v, "duplicate rule id '%s' (first at line %d)",
				      q(&c, r->id), ld->rule_idloc[i].line);
				break;
			}
	}
	if (r->kind >= 0)
		rule_specs[r->kind].post(&c, m, seen, r);
	if ((v = seen_of(keys, seen, "on_fire")))
		actions_parse(&c, v, "on_fire", true, &r->on_fire, &r->non_fire);
	if ((v = seen_of(keys, seen, "on_resolve")))
		actions_parse(&c, v, "on_resolve", false, &r->on_resolve, &r->non_resolve);
}

/* ---- the whole file ------------------------------------------------------------------------- */

static const struct key root_keys[] = {
	{ .name = "gateway", .type = K_NODE, .flags = KF_REQ },
	{ .name = "uplink", .type = K_NODE, .flags = KF_REQ },
	{ .name = "buffer", .type = K_NODE },
	{ .name = "buses", .type = K_NODE },
	{ .name = "devices", .type = K_NODE },
	{ .name = "alerts", .type = K_NODE },
	{ NULL },
};

static void defaults(struct ld *ld)
{
	struct config *cfg = ld->cfg;

	cfg->gateway.timezone = xstrdup(ld, "UTC");
	cfg->gateway.data_dir = xstrdup(ld, "/var/lib/sluice");
	cfg->gateway.log_level = LOG_LVL_INFO;
	cfg->uplink.protocol = MQTT_311;
	cfg->uplink.topic_prefix = xstrdup(ld, "sluice");
	cfg->uplink.qos = 1;
	cfg->uplink.keepalive_ms = 30 * SEC_MS;
	cfg->uplink.inflight = 64;
	cfg->uplink.health_interval_ms = 60 * SEC_MS;
	cfg->buffer.max_size = 256ull * MIB;
	cfg->buffer.durability = DURABILITY_NORMAL;
	cfg->buffer.keep_sent_ms = 7ll * DAY_MS;
}

/* A list section: allocate its array and parse each item. */
static void list_parse(struct ctx *c, yaml_node_t *v, const char *what, void **arr, size_t elsize,
		       struct src_loc **idloc, void (*item)(struct ctx *, yaml_node_t *, size_t))
{
	size_t n;

	if (!v || !is_list(c, v, what))
		return;
	n = seq_len(v);
	*arr = xcalloc(c->ld, n, elsize);
	*idloc = xcalloc(c->ld, n, sizeof **idloc);
	if (!*arr || !*idloc)
		return;
	for (size_t i = 0; i < n; i++)
		item(c, seq_item(c->d, v, i), i);
}

static void ld_init(struct ld *ld, struct config *cfg)
{
	memset(ld, 0, sizeof *ld);
	ld->cfg = cfg;
}

static void ld_free(struct ld *ld)
{
	profiles_free(ld);
	for (size_t i = 0; i < ld->npdirs; i++)
		free(ld->pdirs[i]);
	free(ld->pdirs);
	free(ld->devdir);
	free(ld->absdir);
	free(ld->bus_idloc);
	free(ld->dev_idloc);
	free(ld->rule_idloc);
	free(ld->dev_incomplete);
	free(ld->msgs);
}

/* devdir: "<dir>/devices" ("devices" for a bare file name); absdir: dir, absolute. */
static void ld_config_dir(struct ld *ld, const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir, resolved[PATH_MAX];

	if (!slash)
		dir = xstrdup(ld, ".");
	else if (slash == path)
		dir = xstrdup(ld, "/");
	else
		dir = strndup(path, (size_t)(slash - path));
	if (!dir) {
		ld->oom = true;
		return;
	}
	if (!slash)
		ld->devdir = xstrdup(ld, "devices");
	else if (asprintf(&ld->devdir, "%s/devices", strcmp(dir, "/") ? dir : "") < 0)
		ld->devdir = NULL, ld->oom = true;
	if (realpath(dir, resolved))
		ld->absdir = xstrdup(ld, resolved);
	free(dir);
}

static struct config *config_load_mem(const char *path, const unsigned char *mem, size_t memlen,
				      const struct config_opts *opts, struct config_diag *diag)
{
	struct config *cfg = calloc(1, sizeof *cfg);
	yaml_node_t *root, *seen[MAXKEYS], *v;
	struct ld ld;
	struct ydoc d;
	struct ctx c;

	if (diag)
		memset(diag, 0, sizeof *diag);
	if (!cfg) {
		if (diag) {
			diag->msgs = calloc(1, sizeof *diag->msgs);
			diag->is_error = calloc(1, sizeof *diag->is_error);
			if (diag->msgs && diag->is_error &&
			    asprintf(&diag->msgs[0], "%s: out of memory", path) >= 0) {
				diag->is_error[0] = true;
				diag->n = 1;
			}
			diag->nerrors = 1;
		}
		return NULL;
	}
	ld_init(&ld, cfg);
	memset(&d, 0, sizeof d);
	cfg->path = xstrdup(&ld, path);
	defaults(&ld);
	ld_config_dir(&ld, path);
	ld_dirs(&ld, opts);
	ld.skip_secret_files = opts && opts->skip_secret_files;
	ld.mem = mem;
	ld.memlen = memlen;
	if (ld.oom || ydoc_load(&ld, path, &d) < 0)
		goto out;

	memset(&c, 0, sizeof c);
	c.ld = &ld;
	c.d = &d;
	c.prefix = "";
	root = yaml_document_get_root_node(&d.doc);
	if (!is_map(&c, root, "the configuration"))
		goto out;
	keys_walk(&c, root, root_keys, cfg, seen);
	/* dependency order, whatever the order in the file */
	if ((v = seen_of(root_keys, seen, "gateway")))
		gateway_parse(&c, v);
	if ((v = seen_of(root_keys, seen, "uplink")))
		uplink_parse(&c, v);
	if (!cfg->uplink.client_id && cfg->gateway.id[0])
		cfg->uplink.client_id = xstrdup(&ld, cfg->gateway.id);
	if ((v = seen_of(root_keys, seen, "buffer")))
		buffer_parse(&c, v);
	list_parse(&c, seen_of(root_keys, seen, "buses"), "buses", (void **)&cfg->buses,
		   sizeof *cfg->buses, &ld.bus_idloc, bus_parse);
	if ((v = seen_of(root_keys, seen, "devices")) && v->type == YAML_SEQUENCE_NODE &&
	    !(ld.dev_incomplete = xcalloc(&ld, seq_len(v), sizeof *ld.dev_incomplete)))
		goto out;
	list_parse(&c, v, "devices", (void **)&cfg->devices, sizeof *cfg->devices, &ld.dev_idloc,
		   device_parse);
	if (!cfg->ndevices && !ld.nerrors)
		c_warn(&c, root, "no devices are configured: nothing will be polled");
	list_parse(&c, seen_of(root_keys, seen, "alerts"), "alerts", (void **)&cfg->rules,
		   sizeof *cfg->rules, &ld.rule_idloc, rule_parse);
out:
	ydoc_free(&d);
	ld_finish_msgs(&ld, diag);
	if (ld.nerrors || ld.oom) {
		ld_free(&ld);
		config_free(cfg);
		return NULL;
	}
	ld_free(&ld);
	return cfg;
}

struct config *config_load(const char *path, const struct config_opts *opts,
			   struct config_diag *diag)
{
	return config_load_mem(path, NULL, 0, opts, diag);
}

/* For the fuzzer (tests/fuzz/fuzz_config.c) and tests: no file to write first. */
struct config *config_load_buffer(const char *name, const void *text, size_t len,
				  const struct config_opts *opts, struct config_diag *diag)
{
	/* a non-NULL pointer marks "from memory", also for an empty text */
	static const unsigned char empty[1];

	return config_load_mem(name, text ? text : empty, text ? len : 0, opts, diag);
}

int config_load_profile(const char *name, const char *config_dir, const struct config_opts *opts,
			struct point_def **points, size_t *npoints, char **display_name,
			struct config_diag *diag)
{
	struct config tmp = { 0 };
	struct profile *pr = NULL;
	struct ld ld;
	int rc = -1;

	*points = NULL;
	*npoints = 0;
	*display_name = NULL;
	if (diag)
		memset(diag, 0, sizeof *diag);
	ld_init(&ld, &tmp);
	if (config_dir && asprintf(&ld.devdir, "%s/devices", config_dir) < 0) {
		ld.devdir = NULL;
		ld.oom = true;
	}
	ld_dirs(&ld, opts);
	if (ld.oom)
		goto out;
	if (strcmp(name, "sunspec") == 0) {
		*display_name = xstrdup(&ld, "SunSpec (points discovered at run time)");
		rc = ld.oom ? -1 : 0;
		goto out;
	}
	if (!config_id_valid(name)) {
		emit(&ld, true, SIZE_MAX, 0, 0, "'%s' is not a valid profile name (letters, digits, "
		     "'-' and '_')", name);
		goto out;
	}
	if (!(pr = profile_get(&ld, name))) {
		if (!ld.oom) {
			struct ctx c = { .ld = &ld };
			struct ydoc none = { .fileno = SIZE_MAX };
			c.d = &none;
			profile_not_found(&c, NULL, name);
		}
		goto out;
	}
	if (!pr->ok)
		goto out;
	*points = pr->points;
	*npoints = pr->n;
	*display_name = pr->display;
	pr->points = NULL;
	pr->display = NULL;
	rc = 0;
out:
	/* "sluice" stands in for a file name when there is none */
	ld_finish_msgs(&ld, diag);
	if (ld.nerrors && rc == 0) {
		free(*points);
		free(*display_name);
		*points = NULL;
		*display_name = NULL;
		*npoints = 0;
		rc = -1;
	}
	ld_free(&ld);
	for (size_t i = 0; i < tmp.nfiles; i++)
		free(tmp.files[i]);
	free(tmp.files);
	return rc;
}

/* ---- the rest of the interface -------------------------------------------------------- */

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	free(cfg->path);
	for (size_t i = 0; i < cfg->nfiles; i++)
		free(cfg->files[i]);
	free(cfg->files);
	free(cfg->gateway.name);
	free(cfg->gateway.timezone);
	free(cfg->gateway.data_dir);
	free(cfg->uplink.host);
	free(cfg->uplink.client_id);
	free(cfg->uplink.username);
	free(cfg->uplink.password_file);
	free(cfg->uplink.ca_file);
	free(cfg->uplink.cert_file);
	free(cfg->uplink.key_file);
	free(cfg->uplink.topic_prefix);
	for (size_t i = 0; i < cfg->nbuses; i++) {
		free(cfg->buses[i].host);
		free(cfg->buses[i].device);
	}
	free(cfg->buses);
	for (size_t i = 0; i < cfg->ndevices; i++) {
		free(cfg->devices[i].name);
		free(cfg->devices[i].profile);
		free(cfg->devices[i].points);
		free(cfg->devices[i].point_locs);
	}
	free(cfg->devices);
	for (size_t i = 0; i < cfg->nrules; i++) {
		free(cfg->rules[i].name);
		free(cfg->rules[i].inflow);
		free(cfg->rules[i].outflow);
		free(cfg->rules[i].night_exclude);
		free(cfg->rules[i].on_fire);
		free(cfg->rules[i].on_resolve);
	}
	free(cfg->rules);
	free(cfg);
}

void config_summary(const struct config *cfg, char *buf, size_t len)
{
	size_t npoints = 0, nsunspec = 0;
	char sun[40] = "";

	for (size_t i = 0; i < cfg->ndevices; i++) {
		npoints += cfg->devices[i].npoints;
		nsunspec += cfg->devices[i].sunspec;
	}
	if (nsunspec)
		snprintf(sun, sizeof sun, " (%zu SunSpec)", nsunspec);
	snprintf(buf, len, "%zu bus%s, %zu device%s%s, %zu point%s, %zu rule%s", cfg->nbuses,
		 cfg->nbuses == 1 ? "" : "es", cfg->ndevices, cfg->ndevices == 1 ? "" : "s", sun,
		 npoints, npoints == 1 ? "" : "s", cfg->nrules, cfg->nrules == 1 ? "" : "s");
}

struct site config_site(const struct config *cfg)
{
	struct site s = {
		.buses = cfg->buses,
		.nbuses = cfg->nbuses,
		.devices = cfg->devices,
		.ndevices = cfg->ndevices,
	};

	return s;
}

long config_find_device(const struct config *cfg, const char *id)
{
	for (size_t i = 0; i < cfg->ndevices; i++)
		if (strcmp(cfg->devices[i].id, id) == 0)
			return (long)i;
	return -1;
}

long config_find_point(const struct device_cfg *d, const char *name)
{
	for (size_t i = 0; i < d->npoints; i++)
		if (strcmp(d->points[i].name, name) == 0)
			return (long)i;
	return -1;
}
