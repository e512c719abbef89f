/*
 * web: owns the page's state and its core-thread side (daemon/web.h): each device's last
 * reading, the overview's JSON, the answers to what the HTTP thread asks, and the page's
 * start, reload and stop. Serving is web_http.c's, history web_hist.c's.
 *
 * It must never block the core loop: every answer is built from what the core holds in
 * memory (no SQL, no file, no socket here once started), the overview at most every
 * WEB_STATUS_EVERY_MS, and a probe is handed to the control module, which hands it to
 * the poller and answers later. It must never touch a connection but to resume it.
 */
#include "web_int.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "clock.h"
#include "codec.h"
#include "log.h"
#include "mberr.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "dev"
#endif

#define WEB_PEM_MAX (64 * 1024)

/* ---- files ---------------------------------------------------------------------------- */

/* A whole small file, NUL-terminated, into *out (malloc'ed): 0, or -1 with err. */
static int read_small(const char *path, size_t max, char **out, char *err, size_t errlen)
{
	char *buf = malloc(max + 1);
	size_t len = 0;
	ssize_t n;
	int fd;

	if (!buf) {
		snprintf(err, errlen, "%s: out of memory", path);
		return -1;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		free(buf);
		return -1;
	}
	while (len <= max && (n = read(fd, buf + len, max + 1 - len)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errlen, "%s: %s", path, strerror(errno));
			close(fd);
			free(buf);
			return -1;
		}
		len += (size_t)n;
	}
	close(fd);
	if (len > max) {
		snprintf(err, errlen, "%s: larger than %zu bytes", path, max);
		free(buf);
		return -1;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* The certificate and key as PEM: what GnuTLS will be given. */
static int read_pem(const struct web_cfg *cfg, char **cert, char **key, char *err, size_t errlen)
{
	char why[300];

	*cert = *key = NULL;
	if (read_small(cfg->cert_file, WEB_PEM_MAX, cert, why, sizeof why) != 0) {
		snprintf(err, errlen, "web.cert_file %s", why);
		return -1;
	}
	if (!strstr(*cert, "-----BEGIN CERTIFICATE-----")) {
		snprintf(err, errlen, "web.cert_file %s: no PEM certificate in it (-----BEGIN "
			 "CERTIFICATE-----)", cfg->cert_file);
		goto fail;
	}
	if (read_small(cfg->key_file, WEB_PEM_MAX, key, why, sizeof why) != 0) {
		snprintf(err, errlen, "web.key_file %s", why);
		goto fail;
	}
	if (!strstr(*key, "-----BEGIN ") || !strstr(*key, "PRIVATE KEY-----")) {
		snprintf(err, errlen, "web.key_file %s: no PEM private key in it (-----BEGIN ... "
			 "PRIVATE KEY-----)", cfg->key_file);
		goto fail;
	}
	return 0;
fail:
	free(*cert);
	free_secret(*key);
	*cert = *key = NULL;
	return -1;
}

int web_check(const struct web_cfg *cfg, char *err, size_t errlen)
{
	struct web_users users;
	char *cert, *key, why[300];

	if (!cfg->listen)
		return 0;
	if (cfg->password_file) {
		if (web_users_load(cfg->password_file, &users, why, sizeof why) != 0) {
			snprintf(err, errlen, "web.password_file %s", why);
			return -1;
		}
		web_users_free(&users);
	}
	if (cfg->cert_file && cfg->key_file) {
		if (!web_http_tls()) {
			snprintf(err, errlen, "web.cert_file: this sluiced's libmicrohttpd was built "
				 "without TLS (GnuTLS): HTTPS cannot be served");
			return -1;
		}
		if (read_pem(cfg, &cert, &key, err, errlen) != 0)
			return -1;
		free(cert);
		free_secret(key);
	}
	return 0;
}

/* ---- answers ------------------------------------------------------------------------- */

void web_answer(struct web_req *rq, unsigned code, const char *text, size_t len)
{
	struct web *w = rq->w;
	char *copy = malloc(len + 1);

	if (copy) {
		memcpy(copy, text, len);
		copy[len] = '\0';
	}
	pthread_mutex_lock(&w->mu);
	rq->text = copy;
	rq->len = copy ? len : 0;
	rq->code = copy ? code : 500;
	rq->answered = true;
	pthread_mutex_unlock(&w->mu);
	/* suspended until now, so libmicrohttpd kept rq alive; it may be gone once resumed */
	web_http_resume(rq);
}

void web_answer_error(struct web_req *rq, unsigned code, const char *error, const char *msg)
{
	struct jbuf b;

	jb_init(&b);
	jb_cstr(&b, "{\"error\":");
	jb_str(&b, error);
	jb_cstr(&b, ",\"message\":");
	jb_str(&b, msg);
	jb_cstr(&b, "}");
	web_answer(rq, b.oom ? 500 : code, b.oom ? "{}" : jb_cstr_get(&b), b.oom ? 2 : b.len);
	jb_free(&b);
}

/* ---- the devices ---------------------------------------------------------------------- */

static const char *const kind_names[] = { "tcp", "rtu", "rtu_over_tcp" };

static void bus_address(char *buf, size_t len, const struct bus_cfg *b)
{
	if (b->kind == BUS_RTU)
		snprintf(buf, len, "%s", b->device);
	else
		snprintf(buf, len, strchr(b->host, ':') ? "[%s]:%u" : "%s:%u", b->host, b->port);
}

/* The order: a point's registers take, as manuals (and the config) write it. */
static const char *order_name(const struct point_def *p)
{
	static const char *const names[] = { "AB", "BA", "ABCD", "CDAB", "BADC", "DCBA",
					     "ABCDEFGH", "GHEFCDAB", "BADCFEHG", "HGFEDCBA", NULL };
	unsigned regs = codec_type_regs(p->type);

	if (p->table == MB_COIL || p->table == MB_DISCRETE || p->type == PT_STRING ||
	    (p->type == PT_BOOL && p->bit >= 0))
		return NULL;
	for (size_t i = 0; names[i]; i++) {
		uint8_t bo, wo;

		if (config_order_flags(names[i], regs, &bo, &wo) == 0 && bo == p->byte_order &&
		    (regs < 2 || wo == p->word_order))
			return names[i];
	}
	return NULL;
}

/* The last reading of device i, when it still fits the device's points. */
static const struct reading *last_of(const struct web *w, const struct config *cfg, size_t i)
{
	const struct reading *r = i < w->nlast ? w->last[i] : NULL;

	return r && r->nvalues == cfg->devices[i].npoints ? r : NULL;
}

static void point_json(struct jbuf *b, const struct point_def *p, const struct reading *r,
		       size_t k, bool detail)
{
	bool first = true;

	jb_cstr(b, "{");
	jb_key(b, "name", &first);
	jb_str(b, p->name);
	if (p->unit[0]) {
		jb_key(b, "unit", &first);
		jb_str(b, p->unit);
	}
	if (r && r->values[k].kind != VAL_NONE) {
		jb_key(b, "value", &first);
		jb_point_value(b, p, &r->values[k]);
	} else if (r) {
		jb_key(b, "error", &first);
		jb_str(b, mb_strerror(r->values[k].err));
	}
	if (detail) {
		const char *order = order_name(p);

		jb_key(b, "table", &first);
		jb_str(b, codec_table_name(p->table));
		jb_key(b, "address", &first);
		jb_u64(b, p->address);
		jb_key(b, "type", &first);
		jb_str(b, codec_type_name(p->type));
		jb_key(b, "regs", &first);
		jb_u64(b, p->type == PT_STRING ? p->length : codec_type_regs(p->type));
		if (order) {
			jb_key(b, "order", &first);
			jb_str(b, order);
		}
		if (p->bit >= 0) {
			jb_key(b, "bit", &first);
			jb_i64(b, p->bit);
		}
		jb_key(b, "scale", &first);
		jb_double(b, p->scale);
		jb_key(b, "offset", &first);
		jb_double(b, p->offset);
		jb_key(b, "writable", &first);
		jb_bool(b, p->writable);
	}
	jb_cstr(b, "}");
}

static void device_json(const struct web *w, struct jbuf *b, const struct config *cfg,
			const struct status *st, size_t i, bool detail)
{
	const struct device_cfg *d = &cfg->devices[i];
	const struct dev_status *ds = &st->dev[i];
	const struct reading *r = last_of(w, cfg, i);
	bool first = true;

	jb_cstr(b, "{");
	jb_key(b, "id", &first);
	jb_str(b, d->id);
	if (d->name) {
		jb_key(b, "name", &first);
		jb_str(b, d->name);
	}
	jb_key(b, "bus", &first);
	jb_str(b, cfg->buses[d->bus].id);
	jb_key(b, "unit", &first);
	jb_u64(b, d->unit_id);
	jb_key(b, "interval_ms", &first);
	jb_i64(b, d->interval_ms);
	jb_key(b, "state", &first);
	jb_str(b, status_device_state(ds));
	jb_key(b, "last_poll", &first);
	jb_i64(b, ds->last_poll_ms);
	jb_key(b, "last_ok", &first);
	jb_i64(b, ds->last_ok_ms);
	jb_key(b, "polls_ok", &first);
	jb_u64(b, ds->ok);
	jb_key(b, "polls_failed", &first);
	jb_u64(b, ds->failed);
	if (ds->last_err) {
		jb_key(b, "last_error", &first);
		jb_str(b, mb_strerror(ds->last_err));
	}
	if (d->profile) {
		jb_key(b, "profile", &first);
		jb_str(b, d->profile);
	}
	if (r) {
		jb_key(b, "values_ts", &first);
		jb_i64(b, r->ts_ms);
	}
	jb_key(b, "points", &first);
	jb_cstr(b, "[");
	for (size_t k = 0; k < d->npoints; k++) {
		if (k)
			jb_cstr(b, ",");
		point_json(b, &d->points[k], r, k, detail);
	}
	jb_cstr(b, "]}");
}

/* ---- alerts ------------------------------------------------------------------------------ */

/* The engine's active alerts (firing only, or pending too) as a JSON array. */
static void alerts_json(struct jbuf *b, const struct config *cfg, const struct alert_engine *ae,
			bool firing_only)
{
	struct alert_transition *t = NULL;
	size_t n = 0, cap = 64, k = 0;

	jb_cstr(b, "[");
	while (ae) {
		struct alert_transition *nt = realloc(t, cap * sizeof *t);

		if (!nt) {
			b->oom = true;
			break;
		}
		t = nt;
		n = alert_active(ae, t, cap);
		if (n < cap || cap >= 65536)
			break;
		cap *= 2;
	}
	for (size_t i = 0; i < n; i++) {
		const struct alert_transition *a = &t[i];
		const char *name = NULL;
		bool first = true;

		if (firing_only && a->state != ALERT_FIRING)
			continue;
		for (size_t r = 0; r < cfg->nrules; r++)
			if (strcmp(cfg->rules[r].id, a->rule) == 0)
				name = cfg->rules[r].name;
		jb_cstr(b, k++ ? ",{" : "{");
		jb_key(b, "rule", &first);
		jb_str(b, a->rule);
		jb_key(b, "check", &first);
		jb_str(b, a->check);
		if (name) {
			jb_key(b, "name", &first);
			jb_str(b, name);
		}
		/* a device's own comms alert: the page links it to the device */
		if (strncmp(a->rule, "comms-", 6) == 0 && config_find_device(cfg, a->rule + 6) >= 0) {
			jb_key(b, "device", &first);
			jb_str(b, a->rule + 6);
		}
		jb_key(b, "state", &first);
		jb_str(b, a->state == ALERT_FIRING ? "firing" : "pending");
		jb_key(b, "severity", &first);
		jb_str(b, severity_name(a->severity));
		jb_key(b, "since", &first);
		jb_i64(b, a->ts_ms);
		jb_key(b, "value", &first);
		if (a->value_f32)
			jb_float32(b, a->value);
		else
			jb_double(b, a->value);
		jb_key(b, "threshold", &first);
		if (a->threshold_f32)
			jb_float32(b, a->threshold);
		else
			jb_double(b, a->threshold);
		if (a->unit[0]) {
			jb_key(b, "unit", &first);
			jb_str(b, a->unit);
		}
		jb_key(b, "message", &first);
		jb_str(b, a->message);
		jb_cstr(b, "}");
	}
	jb_cstr(b, "]");
	free(t);
}

/* ---- the overview ------------------------------------------------------------------------ */

static void status_build(struct web *w, int64_t now_mono)
{
	const struct config *cfg = w->core.config(w->core.ctx);
	const struct status *st = w->core.status(w->core.ctx);
	struct web_backlog bl = { 0 };
	struct jbuf *b = &w->status;
	int64_t now = clock_real_ms();
	bool first = true, f2 = true;
	char addr[300];

	w->core.backlog(w->core.ctx, &bl);
	jb_reset(b);
	jb_cstr(b, "{");
	jb_key(b, "gateway", &first);
	jb_cstr(b, "{");
	jb_key(b, "id", &f2);
	jb_str(b, cfg->gateway.id);
	if (cfg->gateway.name) {
		jb_key(b, "name", &f2);
		jb_str(b, cfg->gateway.name);
	}
	jb_key(b, "version", &f2);
	jb_str(b, SLUICE_VERSION);
	jb_key(b, "started", &f2);
	jb_i64(b, st->started_ms);
	jb_key(b, "uptime_s", &f2);
	jb_i64(b, (now_mono - st->start_mono) / 1000);
	jb_key(b, "timezone", &f2);
	jb_str(b, cfg->gateway.timezone);
	jb_cstr(b, "}");
	/* the box's clock: a phone's may be off, so ages are reckoned from this */
	jb_key(b, "now", &first);
	jb_i64(b, now);
	jb_key(b, "uplink", &first);
	f2 = true;
	jb_cstr(b, "{");
	jb_key(b, "host", &f2);
	jb_str(b, cfg->uplink.host);
	jb_key(b, "port", &f2);
	jb_u64(b, cfg->uplink.port);
	jb_key(b, "connected", &f2);
	jb_bool(b, st->uplink_up);
	jb_key(b, "since", &f2);
	jb_i64(b, st->uplink_since_ms);
	if (!st->uplink_up && st->uplink_why[0]) {
		jb_key(b, "error", &f2);
		jb_str(b, st->uplink_why);
	}
	jb_key(b, "backlog", &f2);
	jb_u64(b, bl.rows);
	jb_key(b, "backlog_oldest", &f2);
	jb_i64(b, bl.oldest_ms);
	jb_key(b, "backlog_age_s", &f2);
	jb_i64(b, bl.oldest_ms && now > bl.oldest_ms ? (now - bl.oldest_ms) / 1000 : 0);
	jb_key(b, "dropped", &f2);
	jb_u64(b, bl.dropped);
	jb_key(b, "not_stored", &f2);
	jb_u64(b, bl.not_stored);
	jb_key(b, "set_aside", &f2);
	jb_u64(b, bl.set_aside);
	jb_key(b, "db_bytes", &f2);
	jb_u64(b, bl.db_bytes);
	if (bl.store_error) {
		jb_key(b, "store_error", &f2);
		jb_str(b, bl.store_error);
	}
	jb_cstr(b, "}");
	jb_key(b, "buses", &first);
	jb_cstr(b, "[");
	for (size_t i = 0; i < cfg->nbuses; i++) {
		bool f3 = true;

		bus_address(addr, sizeof addr, &cfg->buses[i]);
		jb_cstr(b, i ? ",{" : "{");
		jb_key(b, "id", &f3);
		jb_str(b, cfg->buses[i].id);
		jb_key(b, "kind", &f3);
		jb_str(b, kind_names[cfg->buses[i].kind]);
		jb_key(b, "address", &f3);
		jb_str(b, addr);
		jb_cstr(b, "}");
	}
	jb_cstr(b, "]");
	jb_key(b, "devices", &first);
	jb_cstr(b, "[");
	for (size_t i = 0; i < cfg->ndevices; i++) {
		if (i)
			jb_cstr(b, ",");
		device_json(w, b, cfg, st, i, false);
	}
	jb_cstr(b, "]");
	jb_key(b, "alerts", &first);
	alerts_json(b, cfg, w->core.alerts(w->core.ctx), true);
	jb_cstr(b, "}");
	w->status_at = now_mono;
}

static void answer_status(struct web *w, struct web_req *rq)
{
	int64_t now = clock_mono_ms();

	if (w->status.len == 0 || w->status.oom || now - w->status_at >= WEB_STATUS_EVERY_MS)
		status_build(w, now);
	if (w->status.oom) {
		jb_reset(&w->status);
		web_answer_error(rq, 500, "internal", "out of memory");
		return;
	}
	web_answer(rq, 200, w->status.p, w->status.len);
}

static void answer_device(struct web *w, struct web_req *rq)
{
	const struct config *cfg = w->core.config(w->core.ctx);
	long i = config_find_device(cfg, rq->device);
	char msg[200];

	if (i < 0) {
		snprintf(msg, sizeof msg, "no device %s in the configuration", rq->device);
		web_answer_error(rq, 404, "not_found", msg);
		return;
	}
	jb_reset(&w->out);
	device_json(w, &w->out, cfg, w->core.status(w->core.ctx), (size_t)i, true);
	if (w->out.oom)
		web_answer_error(rq, 500, "internal", "out of memory");
	else
		web_answer(rq, 200, w->out.p, w->out.len);
}

static void answer_alerts(struct web *w, struct web_req *rq)
{
	jb_reset(&w->out);
	alerts_json(&w->out, w->core.config(w->core.ctx), w->core.alerts(w->core.ctx), false);
	if (w->out.oom)
		web_answer_error(rq, 500, "internal", "out of memory");
	else
		web_answer(rq, 200, w->out.p, w->out.len);
}

/* ---- probes ---------------------------------------------------------------------------- */

/* The control module's reply: wrapped in what the page asked (rq->text holds the front
 * of the wrapping until now: {"bus":...,"probe":). */
static void probe_answered(void *actx, const char *line, size_t len)
{
	struct web_req *rq = actx;
	struct web *w = rq->w;
	struct jbuf b;

	for (struct web_req **pp = &w->probes; *pp; pp = &(*pp)->next)
		if (*pp == rq) {
			*pp = rq->next;
			break;
		}
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	jb_init(&b);
	jb_cstr(&b, rq->text ? rq->text : "{\"probe\":");
	jb_raw(&b, line, len);
	jb_cstr(&b, "}");
	free(rq->text);
	rq->text = NULL;
	if (b.oom)
		web_answer_error(rq, 500, "internal", "out of memory");
	else
		web_answer(rq, 200, b.p, b.len);
	jb_free(&b);
}

/* The control request for what the page asked, into b, and the front of the page's
 * answer into front; or -1 with the HTTP code and message for the page. */
static int probe_request(const struct config *cfg, const struct web_probe *p, struct jbuf *b,
			 struct jbuf *front, unsigned *code, char *msg, size_t msglen)
{
	const struct device_cfg *d = NULL;
	const struct bus_cfg *bus;
	struct web_probe dp;
	bool first = true, f2 = true;
	long i;

	if (p->device[0]) {
		if ((i = config_find_device(cfg, p->device)) < 0) {
			snprintf(msg, msglen, "no device %s in the configuration", p->device);
			*code = 404;
			return -1;
		}
		d = &cfg->devices[i];
		if (d->npoints == 0) {
			snprintf(msg, msglen, "device %s has no points%s", d->id,
				 d->sunspec ? " yet (SunSpec discovery has not found them)" : "");
			*code = 409;
			return -1;
		}
		dp = (struct web_probe){ .unit = d->unit_id };
		p = &dp;
		bus = &cfg->buses[d->bus];
	} else {
		for (i = 0; i < (long)cfg->nbuses && strcmp(cfg->buses[i].id, p->bus) != 0; i++)
			;
		if (i == (long)cfg->nbuses) {
			snprintf(msg, msglen, "no bus %s in the configuration", p->bus);
			*code = 404;
			return -1;
		}
		bus = &cfg->buses[i];
	}
	jb_cstr(b, "{");
	jb_key(b, "v", &first);
	jb_i64(b, CONTROL_PROTOCOL);
	jb_key(b, "op", &first);
	jb_str(b, "probe");
	jb_key(b, "target", &first);
	jb_cstr(b, "{");
	jb_key(b, "kind", &f2);
	jb_str(b, kind_names[bus->kind]);
	if (bus->kind == BUS_RTU) {
		jb_key(b, "device", &f2);
		jb_str(b, bus->device);
	} else {
		jb_key(b, "host", &f2);
		jb_str(b, bus->host);
		jb_key(b, "port", &f2);
		jb_u64(b, bus->port);
	}
	jb_cstr(b, "}");
	jb_key(b, "unit", &first);
	jb_u64(b, p->unit);
	if (p->timeout_ms) {
		jb_key(b, "timeout_ms", &first);
		jb_i64(b, p->timeout_ms);
	}
	/* a device that does not answer costs one timeout, not one per point */
	jb_key(b, "stop_on_silence", &first);
	jb_bool(b, d != NULL);
	jb_key(b, "reads", &first);
	jb_cstr(b, "[");
	first = true;
	jb_cstr(front, "{\"bus\":");
	jb_str(front, bus->id);
	jb_cstr(front, ",\"unit\":");
	jb_u64(front, p->unit);
	if (d) {
		/* one read per point: each point's own registers, as the device page shows them */
		size_t n = d->npoints < POLLER_PROBE_READS_MAX ? d->npoints : POLLER_PROBE_READS_MAX;

		jb_cstr(front, ",\"device\":");
		jb_str(front, d->id);
		jb_cstr(front, ",\"points\":[");
		for (size_t k = 0; k < n; k++) {
			const struct point_def *pt = &d->points[k];
			unsigned count = pt->type == PT_STRING ? pt->length : codec_type_regs(pt->type);

			if (pt->table == MB_COIL || pt->table == MB_DISCRETE || count == 0)
				count = 1;
			jb_cstr(b, k ? ",{" : "{");
			jb_cstr(b, "\"table\":");
			jb_str(b, codec_table_name(pt->table));
			jb_cstr(b, ",\"address\":");
			jb_u64(b, pt->address);
			jb_cstr(b, ",\"count\":");
			jb_u64(b, count);
			jb_cstr(b, "}");
			if (k)
				jb_cstr(front, ",");
			jb_str(front, pt->name);
		}
		jb_cstr(front, "]");
		if (n < d->npoints) {
			jb_cstr(front, ",\"points_left_out\":");
			jb_u64(front, d->npoints - n);
		}
	} else {
		for (size_t k = 0; k < p->nreads; k++) {
			jb_cstr(b, k ? ",{" : "{");
			jb_cstr(b, "\"table\":");
			jb_str(b, codec_table_name(p->reads[k].table));
			jb_cstr(b, ",\"address\":");
			jb_u64(b, p->reads[k].address);
			jb_cstr(b, ",\"count\":");
			jb_u64(b, p->reads[k].count);
			jb_cstr(b, "}");
		}
	}
	jb_cstr(b, "]}");
	jb_cstr(front, ",\"probe\":");
	return 0;
}

static void answer_probe(struct web *w, struct web_req *rq)
{
	struct control *ctl = w->core.control(w->core.ctx);
	struct jbuf req, front;
	unsigned code = 400;
	char msg[300];

	if (!ctl) {
		web_answer_error(rq, 503, "unavailable", "sluiced runs without its control socket "
				 "(see its log at start): probes cannot go through it");
		return;
	}
	jb_init(&req);
	jb_init(&front);
	if (probe_request(w->core.config(w->core.ctx), &rq->probe, &req, &front, &code, msg,
			  sizeof msg) != 0) {
		web_answer_error(rq, code, code == 404 ? "not_found" : "refused", msg);
	} else if (req.oom || front.oom || !(rq->text = strdup(jb_cstr_get(&front)))) {
		web_answer_error(rq, 500, "internal", "out of memory");
	} else {
		/* listed first: control may answer at once (a refusal) */
		rq->next = w->probes;
		w->probes = rq;
		log_info("web: probe asked through the page");
		control_handle(ctl, req.p, req.len, probe_answered, rq);
	}
	jb_free(&req);
	jb_free(&front);
}

/* ---- the core's entry points ------------------------------------------------------------- */

int web_fd(const struct web *w)
{
	return w->efd;
}

void web_io(struct web *w)
{
	struct web_req *q;
	uint64_t v;

	if (read(w->efd, &v, sizeof v) < 0 && errno != EAGAIN)
		log_warn("web: eventfd");
	pthread_mutex_lock(&w->mu);
	q = w->queue;
	w->queue = NULL;
	w->queue_tail = &w->queue;
	pthread_mutex_unlock(&w->mu);
	while (q) {
		struct web_req *rq = q;

		q = q->next;
		rq->next = NULL;
		switch (rq->ask) {
		case WEB_ASK_STATUS:
			answer_status(w, rq);
			break;
		case WEB_ASK_DEVICE:
			answer_device(w, rq);
			break;
		case WEB_ASK_ALERTS:
			answer_alerts(w, rq);
			break;
		case WEB_ASK_PROBE:
			answer_probe(w, rq);
			break;
		default:
			web_answer_error(rq, 500, "internal", "unknown question");
			break;
		}
	}
}

bool web_keep(struct web *w, struct reading *r)
{
	if (!w || r->device >= w->nlast)
		return false;
	reading_free(w->last[r->device]);
	w->last[r->device] = r;
	return true;
}

/* ---- start, stop, reload ---------------------------------------------------------------- */

/* Answer everything that waits for the core (503) and stop serving; the state stays. */
static void web_stop(struct web *w)
{
	struct control *ctl = w->core.control(w->core.ctx);
	struct web_req *q;

	pthread_mutex_lock(&w->mu);
	w->closing = true;
	q = w->queue;
	w->queue = NULL;
	w->queue_tail = &w->queue;
	pthread_mutex_unlock(&w->mu);
	while (q) {
		struct web_req *rq = q;
		q = q->next;
		web_answer_error(rq, 503, "stopping", "sluiced is stopping or reloading: try again");
	}
	while ((q = w->probes)) {
		w->probes = q->next;
		if (ctl)
			control_forget(ctl, q);
		free(q->text);
		q->text = NULL;
		web_answer_error(q, 503, "stopping", "sluiced is stopping or reloading: try again");
	}
	web_http_stop(w);
}

/* Serve what cfg's web: says, with w's state. 0 or -1 with err. */
static int web_start(struct web *w, const struct config *cfg, char *err, size_t errlen)
{
	const struct web_cfg *wc = &cfg->web;
	struct web_users users = { 0 };
	char *cert = NULL, *key = NULL;

	if (config_parse_listen(wc->listen, &w->addr) != 0) {
		snprintf(err, errlen, "web.listen '%s' is not an address and port", wc->listen);
		return -1;
	}
	if (wc->password_file &&
	    web_users_load(wc->password_file, &users, err, errlen) != 0)
		return -1;
	if (wc->cert_file && wc->key_file && read_pem(wc, &cert, &key, err, errlen) != 0) {
		web_users_free(&users);
		return -1;
	}
	free(w->listen);
	free(w->pwfile);
	free(w->tls_cert);
	free_secret(w->tls_key);
	w->listen = strdup(wc->listen);
	w->pwfile = wc->password_file ? strdup(wc->password_file) : NULL;
	w->tls_cert = cert;
	w->tls_key = key;
	w->https = cert != NULL;
	w->login = wc->password_file != NULL;
	/* the HTTP thread is not running (not yet, or stopped for this): the sessions and
	 * the users are not being read. Sessions of users gone, or whose password changed,
	 * end. */
	for (size_t i = 0; i < WEB_SESSIONS_MAX; i++) {
		struct web_session *s = &w->sessions.s[i];
		bool keep = false;

		for (size_t k = 0; s->token[0] && k < users.n; k++)
			for (size_t j = 0; j < w->users.n; j++)
				keep |= strcmp(users.u[k].name, s->user) == 0 &&
					strcmp(w->users.u[j].name, s->user) == 0 &&
					strcmp(users.u[k].hash, w->users.u[j].hash) == 0;
		if (!keep)
			memset(s, 0, sizeof *s);
	}
	web_users_free(&w->users);
	w->users = users;
	pthread_mutex_lock(&w->mu);
	w->closing = false;
	pthread_mutex_unlock(&w->mu);
	if (!w->listen || (wc->password_file && !w->pwfile)) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return web_http_start(w, err, errlen);
}

static void web_free(struct web *w)
{
	for (size_t i = 0; i < w->nlast; i++)
		reading_free(w->last[i]);
	free(w->last);
	jb_free(&w->status);
	jb_free(&w->out);
	web_users_free(&w->users);
	free(w->listen);
	free(w->pwfile);
	free(w->data_dir);
	free(w->tls_cert);
	free_secret(w->tls_key);
	if (w->crypt) {
		explicit_bzero(w->crypt, sizeof(struct crypt_data));
		free(w->crypt);
	}
	explicit_bzero(&w->sessions, sizeof w->sessions);
	if (w->efd >= 0)
		close(w->efd);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

struct web *web_open(const struct config *cfg, const struct web_core *core, char *err,
		     size_t errlen)
{
	struct web *w = calloc(1, sizeof *w);

	if (!w) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	w->core = *core;
	w->efd = -1;
	pthread_mutex_init(&w->mu, NULL);
	w->queue_tail = &w->queue;
	jb_init(&w->status);
	jb_init(&w->out);
	w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	w->nlast = cfg->ndevices;
	w->last = calloc(cfg->ndevices ? cfg->ndevices : 1, sizeof *w->last);
	w->data_dir = strdup(cfg->gateway.data_dir);
	w->crypt = calloc(1, sizeof(struct crypt_data));
	if (w->efd < 0 || !w->last || !w->data_dir || !w->crypt) {
		snprintf(err, errlen, "%s", w->efd < 0 ? strerror(errno) : "out of memory");
		web_free(w);
		return NULL;
	}
	if (web_token(w->open_csrf) != 0) {
		snprintf(err, errlen, "no random bytes from the kernel: %s", strerror(errno));
		web_free(w);
		return NULL;
	}
	if (web_start(w, cfg, err, errlen) != 0) {
		web_free(w);
		return NULL;
	}
	return w;
}

void web_close(struct web *w)
{
	if (!w)
		return;
	web_stop(w);
	web_free(w);
}

/* Do two points read the same? Then a reading of one shows the other. */
static bool same_points(const struct device_cfg *a, const struct device_cfg *b)
{
	if (a->npoints != b->npoints)
		return false;
	for (size_t k = 0; k < a->npoints; k++)
		if (strcmp(a->points[k].name, b->points[k].name) != 0 ||
		    a->points[k].type != b->points[k].type || a->points[k].scale != b->points[k].scale)
			return false;
	return true;
}

static bool str_same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* Would the page be served otherwise under nc: its address, its files, or what is in
 * them? (The files are read again: a renewed certificate, a changed password.) */
static bool web_changed(const struct web *w, const struct web_cfg *nc)
{
	struct web_users users;
	char *cert = NULL, *key = NULL, err[300];
	bool changed = false;

	if (!str_same(w->listen, nc->listen) || !str_same(w->pwfile, nc->password_file) ||
	    w->https != (nc->cert_file != NULL))
		return true;
	if (nc->password_file) {
		if (web_users_load(nc->password_file, &users, err, sizeof err) != 0)
			return true; /* said when it is started again */
		changed = users.n != w->users.n;
		for (size_t i = 0; !changed && i < users.n; i++)
			changed = strcmp(users.u[i].name, w->users.u[i].name) != 0 ||
				  strcmp(users.u[i].hash, w->users.u[i].hash) != 0;
		web_users_free(&users);
	}
	if (!changed && nc->cert_file) {
		if (read_pem(nc, &cert, &key, err, sizeof err) != 0)
			return true;
		changed = strcmp(cert, w->tls_cert) != 0 || strcmp(key, w->tls_key) != 0;
		free(cert);
		free_secret(key);
	}
	return changed;
}

void web_reload(struct web **wp, const struct config *old, const struct config *nc,
		const struct web_core *core)
{
	struct web *w = *wp;
	struct reading **last;
	char err[400];

	if (!nc->web.listen) {
		if (w)
			log_info("web: no web: section any more: the page is off");
		web_close(w);
		*wp = NULL;
		return;
	}
	if (!w) {
		if (web_check(&nc->web, err, sizeof err) != 0 ||
		    !(*wp = web_open(nc, core, err, sizeof err)))
			log_errx("web: %s; sluiced runs on without the page", err);
		else
			log_info("web: serving the page at %s%s", nc->web.listen,
				 nc->web.cert_file ? " (HTTPS)" : "");
		return;
	}
	/* the last readings follow their devices */
	last = calloc(nc->ndevices ? nc->ndevices : 1, sizeof *last);
	if (last) {
		for (size_t i = 0; i < nc->ndevices; i++) {
			long j = config_find_device(old, nc->devices[i].id);

			if (j >= 0 && (size_t)j < w->nlast &&
			    same_points(&old->devices[j], &nc->devices[i])) {
				last[i] = w->last[j];
				last[i]->device = (uint32_t)i;
				w->last[j] = NULL;
			}
		}
		for (size_t j = 0; j < w->nlast; j++)
			reading_free(w->last[j]);
		free(w->last);
		w->last = last;
		w->nlast = nc->ndevices;
	} else {
		for (size_t j = 0; j < w->nlast; j++) {
			reading_free(w->last[j]);
			w->last[j] = NULL;
		}
		w->nlast = 0;
	}
	w->status.len = 0; /* the overview is built again for the new config */
	if (!web_changed(w, &nc->web))
		return;
	log_info("web: its settings or files changed: serving the page again at %s",
		 nc->web.listen);
	web_stop(w);
	if (web_check(&nc->web, err, sizeof err) != 0 || web_start(w, nc, err, sizeof err) != 0) {
		log_errx("web: %s; sluiced runs on without the page", err);
		web_close(w);
		*wp = NULL;
	}
}
